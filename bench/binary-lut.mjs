// The exact float path (W1A16) of sign-weight projections against the int8 path, interleaved call by
// call in one process (the shared machine drifts too much between separate runs):
//   int8 = quantizeActivationsI8 + binaryGemm on B1R16 (what FBI-LLM / OneBit run with A8 inputs)
//   lut  = binaryLutGemm on B1L64, its per-token table build included (float activations, exact)
//   td3  = quantizeActivationsI8 + ternaryTd3Gemm on random trits of the same shape (the b1.58 decode
//          kernel, 1.6875 bits/weight), for scale
// Every matrix lives in weight memory (weightBytes: huge pages, as the loader places it) and each
// kernel rotates through copies totalling >= 256 MiB, so each call streams its weights from DRAM as
// decode does (L3: 32 MB).
//   node bench/binary-lut.mjs [--shapes 2560x6912,6912x2560,2560x2560] [--threads 1,2] [--batch 1]
//                             [--isa avx512] [--seconds 3] [--no-td3] [--cold-mib 256]
// Prints one JSON line per (shape, threads, batch): min / median ms per call of each path, weight GB/s
// at the median, and speed_lut_vs_int8 = int8 ms / lut ms (medians; >= 0.8 is the product target).
import { performance } from 'node:perf_hooks';

import { binaryToLut, binaryLutGemm } from '../dist/kernels/binary-lut.js';
import { binaryGemm, packBinary } from '../dist/kernels/binary.js';
import { KernelContext, weightBytes } from '../dist/kernels/context.js';
import { ternaryToTd3, ternaryTd3Gemm } from '../dist/kernels/td3.js';
import { ScaleMode, packTernary, quantizeActivationsI8 } from '../dist/kernels/ternary.js';

const args = new Map();
for (let i = 2; i < process.argv.length; i++) {
  const k = process.argv[i].replace(/^--/, '');
  if (k === 'no-td3') args.set(k, '1');
  else args.set(k, process.argv[++i]);
}
const list = (k, d) => (args.get(k) ?? d).split(',');
const shapes = list('shapes', '2560x6912,6912x2560,2560x2560').map((s) => s.split('x').map(Number));
const threads = list('threads', '1,2').map(Number);
const batches = list('batch', '1').map(Number);
const isa = args.get('isa');
const seconds = Number(args.get('seconds') ?? 3);
const withTd3 = !args.has('no-td3');
const coldBytes = Number(args.get('cold-mib') ?? 256) * 2 ** 20;  // 0: one copy (cache-resident)

let seed = 12345;
const rnd = () => ((seed = (Math.imul(seed, 1664525) + 1013904223) >>> 0) / 4294967296);

// n copies of `bytes` in weight memory.
const copiesOf = (bytes, n) => Array.from({ length: n }, () => {
  const c = weightBytes(bytes.length);
  c.set(bytes);
  return c;
});

for (const [M, K] of shapes) {
  const signs = Int8Array.from({ length: M * K }, () => (rnd() < 0.5 ? -1 : 1));
  const trits = Int8Array.from({ length: M * K }, () => Math.floor(rnd() * 3) - 1);
  for (const nt of threads) {
    const ctx = new KernelContext({ threads: nt, ...(isa ? { isa } : {}) });
    const b1 = packBinary(ctx, signs, M, K, ScaleMode.Row, Float32Array.from({ length: M }, () => 0.5 + rnd()));
    const lut = binaryToLut(ctx, b1, weightBytes);
    const td = withTd3 ? ternaryToTd3(ctx, packTernary(ctx, trits, M, K, ScaleMode.Tensor, Float32Array.of(0.5)), weightBytes) : null;
    for (const B of batches) {
      const n = (bytes) => (B <= 8 ? Math.max(1, Math.ceil(coldBytes / bytes)) : 1);
      const b1s = copiesOf(b1.bits, n(b1.bits.length)).map((bits) => ({ ...b1, bits }));
      const luts = copiesOf(lut.bits, n(lut.bits.length)).map((bits) => ({ ...lut, bits }));
      const tds = td ? copiesOf(td.data, n(td.data.length)).map((data) => ({ ...td, data })) : [];
      const xs = Float32Array.from({ length: B * K }, () => (rnd() - 0.5) * 4);
      const y = new Float32Array(B * M);
      const qa = quantizeActivationsI8(ctx, xs, B, K);  // reused: no allocation inside the timed calls
      const runs = [
        ['int8', (i) => binaryGemm(ctx, b1s[i % b1s.length], quantizeActivationsI8(ctx, xs, B, K, qa), undefined, y)],
        ['lut', (i) => binaryLutGemm(ctx, luts[i % luts.length], xs, B, undefined, y)],
        ...(td ? [['td3', (i) => ternaryTd3Gemm(ctx, tds[i % tds.length], quantizeActivationsI8(ctx, xs, B, K, qa), y)]] : []),
      ];
      const times = runs.map(() => []);
      for (const [, f] of runs) f(0);  // warm up (scratch, pool)
      const until = performance.now() + seconds * 1000;
      for (let i = 0; times[0].length < 20 || performance.now() < until; i++) {
        // Rotate which kernel goes first, so none always follows another's cache footprint.
        for (let j = 0; j < runs.length; j++) {
          const r = (i + j) % runs.length;
          const t0 = performance.now();
          runs[r][1](i);
          times[r].push(performance.now() - t0);
        }
      }
      const stat = (v) => {
        v.sort((p, q) => p - q);
        return { min: v[0], med: v[v.length >> 1] };
      };
      const rd = (v, d = 4) => Math.round(v * 10 ** d) / 10 ** d;
      const bytes = { int8: b1.bits.length, lut: lut.bits.length, td3: td?.data.length };
      const out = { m: M, k: K, batch: B, threads: nt, isa: ctx.isa, kernels: ctx.info().kernels.binary_lut, calls: times[0].length };
      const st = {};
      runs.forEach(([name], r) => {
        st[name] = stat(times[r]);
        out[`${name}_ms_min`] = rd(st[name].min);
        out[`${name}_ms_med`] = rd(st[name].med);
        out[`${name}_gbps`] = rd(bytes[name] / st[name].med / 1e6, 2);
      });
      out.speed_lut_vs_int8 = rd(st.int8.med / st.lut.med, 3);
      out.speed_lut_vs_int8_min = rd(st.int8.min / st.lut.min, 3);
      if (td) out.speed_lut_vs_td3 = rd(st.td3.med / st.lut.med, 3);
      console.log(JSON.stringify(out));
    }
  }
}
