// A/B timing of the TD3 and T2R16 ternary GEMMs on the same trits, interleaved call by call in one
// process (a shared machine drifts too much between separate runs). Weights rotate through copies
// totalling >= 256 MiB for B <= 8, so every call streams its weights from DRAM as decode does.
//   node bench/td3-ab.mjs [--shapes 3840x2560,...] [--isa avx512,avx2] [--threads 1,2] [--batch 1,8,128]
//                         [--seconds 2]
// Prints one JSON line per (shape, isa, threads, batch): min and median ms of each kernel, GB/s of
// each at the median, GOP/s, and td3/t2 time ratios (< 1: TD3 is faster).
import { performance } from 'node:perf_hooks';

import { KernelContext } from '../dist/kernels/context.js';
import { ternaryToTd3, ternaryTd3Gemm } from '../dist/kernels/td3.js';
import { ScaleMode, packTernary, quantizeActivationsI8, ternaryGemm } from '../dist/kernels/ternary.js';

const args = new Map();
for (let i = 2; i < process.argv.length; i += 2) args.set(process.argv[i].replace(/^--/, ''), process.argv[i + 1]);
const list = (k, d) => (args.get(k) ?? d).split(',');
const shapes = list('shapes', '3840x2560,2560x2560,13824x2560,2560x6912').map((s) => s.split('x').map(Number));
const isas = list('isa', 'avx512,avx2');
const threads = list('threads', '1,2').map(Number);
const batches = list('batch', '1').map(Number);
const seconds = Number(args.get('seconds') ?? 2);
const coldBytes = 256 << 20;

let seed = 12345;
const rnd = () => ((seed = (Math.imul(seed, 1664525) + 1013904223) >>> 0) / 4294967296);

for (const [M, K] of shapes) {
  const trits = new Int8Array(M * K);
  for (let i = 0; i < trits.length; i++) trits[i] = Math.floor(rnd() * 3) - 1;
  for (const isa of isas) {
    for (const nt of threads) {
      const ctx = new KernelContext({ isa, threads: nt });
      const t2 = packTernary(ctx, trits, M, K, ScaleMode.Tensor, Float32Array.of(0.5));
      const td = ternaryToTd3(ctx, t2);
      for (const B of batches) {
        const copies = B <= 8 ? Math.max(1, Math.ceil(coldBytes / td.data.length)) : 1;
        const t2s = [t2];
        const tds = [td];
        for (let c = 1; c < copies; c++) {
          t2s.push({ ...t2, codes: t2.codes.slice() });
          tds.push({ ...td, data: td.data.slice() });
        }
        const x = new Float32Array(B * K);
        for (let i = 0; i < x.length; i++) x[i] = (rnd() - 0.5) * 4;
        const a = quantizeActivationsI8(ctx, x, B, K);
        const y1 = new Float32Array(B * M);
        const y2 = new Float32Array(B * M);
        ternaryGemm(ctx, t2, a, y1);
        ternaryTd3Gemm(ctx, td, a, y2);
        if (Buffer.compare(Buffer.from(y1.buffer), Buffer.from(y2.buffer)) !== 0) throw new Error(`${M}x${K} ${isa}: TD3 != T2R16`);
        const tA = [];
        const tB = [];
        const until = performance.now() + seconds * 1000;
        for (let i = 0; tA.length < 10 || performance.now() < until; i++) {
          const c = i % copies;
          // Alternate which kernel goes first, so neither always follows the other's cache footprint.
          const first = i & 1;
          for (const k of first ? [1, 0] : [0, 1]) {
            const t0 = performance.now();
            if (k === 0) ternaryGemm(ctx, t2s[c], a, y1);
            else ternaryTd3Gemm(ctx, tds[c], a, y2);
            (k === 0 ? tA : tB).push(performance.now() - t0);
          }
        }
        const stat = (v) => {
          v.sort((p, q) => p - q);
          return { min: v[0], med: v[v.length >> 1] };
        };
        const s2 = stat(tA);
        const s3 = stat(tB);
        const r = (v, d = 4) => Math.round(v * 10 ** d) / 10 ** d;
        console.log(JSON.stringify({
          m: M, k: K, isa, threads: nt, batch: B, calls: tA.length,
          t2_ms_min: r(s2.min), t2_ms_med: r(s2.med), td3_ms_min: r(s3.min), td3_ms_med: r(s3.med),
          t2_gbps: r(t2.codes.length / s2.med / 1e6, 2), td3_gbps: r(td.data.length / s3.med / 1e6, 2),
          t2_gops: r((2 * M * K * B) / s2.med / 1e6, 1), td3_gops: r((2 * M * K * B) / s3.med / 1e6, 1),
          ratio_med: r(s3.med / s2.med, 3), ratio_min: r(s3.min / s2.min, 3),
        }));
      }
    }
  }
}
