// BiLLM GEMV vs the F16 GEMV of the same shape, interleaved call by call in one process (a shared
// machine drifts too much between separate runs). Weights rotate through copies totalling >= 256 MiB,
// so every call streams its weights from DRAM as decode does.
//   node bench/billm.mjs [--shapes 2560x6912,...] [--isa avx512,avx2] [--threads 1,2] [--seconds 3] [--batch 1]
// The BiLLM matrix is random but well formed: per block nS salient columns, nS uniform in 1..49 (the
// quantizer's search range), random sign / group / residual bits, fp16 scalars. The BiLLM time includes
// the int8 activation quantization (quantizeActivationsI8) that the F16 kernel does not need; the GEMM
// alone is reported too. One JSON line per (shape, isa, threads, batch); ratio = f16 / billm (> 1:
// BiLLM faster).
import { performance } from 'node:perf_hooks';

import { billmGemm, packBillmTiles } from '../dist/kernels/billm.js';
import { KernelContext } from '../dist/kernels/context.js';
import { f16Gemm } from '../dist/kernels/dense.js';
import { quantizeActivationsI8 } from '../dist/kernels/ternary.js';
import { billmBitsPerWeight, billmResidualLayout } from '../dist/quantize/billm.js';

const args = new Map();
for (let i = 2; i < process.argv.length; i += 2) args.set(process.argv[i].replace(/^--/, ''), process.argv[i + 1]);
const list = (k, d) => (args.get(k) ?? d).split(',');
const shapes = list('shapes', '2560x6912').map((s) => s.split('x').map(Number));
const isas = list('isa', 'avx512,avx2');
const threads = list('threads', '1,2').map(Number);
const batches = list('batch', '1').map(Number);
const seconds = Number(args.get('seconds') ?? 3);
const coldBytes = 256 << 20;

let seed = 12345;
const rnd = () => ((seed = (Math.imul(seed, 1664525) + 1013904223) >>> 0) / 4294967296);
const byte = () => Math.floor(rnd() * 256);

function randomBillm(M, K) {
  const nb = K / 128;
  const salient = new Uint8Array(K / 8);
  for (let j = 0; j < nb; j++) {
    const n = 1 + Math.floor(rnd() * 49);
    const cols = Array.from({ length: 128 }, (_, c) => c).sort(() => rnd() - 0.5).slice(0, n);
    for (const c of cols) salient[(j * 128 + c) >> 3] |= 1 << (c & 7);
  }
  const { stride } = billmResidualLayout(salient, K);
  const signs = Uint8Array.from({ length: (M * K) / 8 }, byte);
  const groups = Uint8Array.from({ length: (M * K) / 8 }, (_, i) => byte() & ~salient[i % (K / 8)]);
  const residual = Uint8Array.from({ length: M * stride }, byte); // padding bits are harmless to the kernel
  const scalars = Uint16Array.from({ length: M * nb * 8 }, () => 0x2000 + Math.floor(rnd() * 0x1000)); // ~1e-2 .. 4e-2
  return { M, K, salient, signs, groups, residual, scalars };
}
const billmBytes = (t) => t.salient.length + t.data.length;

for (const [M, K] of shapes) {
  const planes = randomBillm(M, K);
  const wb = packBillmTiles(new KernelContext({ threads: 1 }), planes);
  const wf = { data: Uint16Array.from({ length: M * K }, () => 0x2000 + Math.floor(rnd() * 0x1000) + (rnd() < 0.5 ? 0x8000 : 0)), M, K };
  const bBytes = billmBytes(wb), fBytes = 2 * M * K;
  const bCopies = Math.max(1, Math.ceil(coldBytes / bBytes)), fCopies = Math.max(1, Math.ceil(coldBytes / fBytes));
  const bs = [wb], fs = [wf];
  for (let c = 1; c < bCopies; c++) bs.push({ ...wb, data: wb.data.slice() });
  for (let c = 1; c < fCopies; c++) fs.push({ ...wf, data: wf.data.slice() });
  for (const isa of isas)
    for (const nt of threads) {
      const ctx = new KernelContext({ isa, threads: nt });
      for (const B of batches) {
        const x = Float32Array.from({ length: B * K }, () => (rnd() - 0.5) * 4);
        const yb = new Float32Array(B * M), yf = new Float32Array(B * M);
        const tB = [], tF = [], tG = [];
        const until = performance.now() + seconds * 1000;
        for (let i = 0; tB.length < 10 || performance.now() < until; i++) {
          const first = i & 1; // alternate which kernel goes first
          for (const k of first ? [1, 0] : [0, 1]) {
            const t0 = performance.now();
            if (k === 0) {
              const a = quantizeActivationsI8(ctx, x, B, K);
              const t1 = performance.now();
              billmGemm(ctx, bs[i % bCopies], a, yb);
              const t2 = performance.now();
              tB.push(t2 - t0);
              tG.push(t2 - t1);
            } else {
              f16Gemm(ctx, fs[i % fCopies], x, B, yf);
              tF.push(performance.now() - t0);
            }
          }
        }
        const med = (v) => v.sort((p, q) => p - q)[v.length >> 1];
        const min = (v) => Math.min(...v);
        const r = (v, d = 4) => Math.round(v * 10 ** d) / 10 ** d;
        const mb = med(tB), mg = med(tG), mf = med(tF);
        console.log(JSON.stringify({
          m: M, k: K, isa, threads: nt, batch: B, calls: tB.length, billm_bits_per_weight: r(billmBitsPerWeight(planes), 3), br16_bits_per_weight: r((8 * bBytes) / (M * K), 3),
          billm_ms_med: r(mb), billm_gemm_ms_med: r(mg), f16_ms_med: r(mf), billm_ms_min: r(min(tB)), f16_ms_min: r(min(tF)),
          billm_gbps: r(bBytes / mg / 1e6, 2), f16_gbps: r(fBytes / mf / 1e6, 2),
          ratio_med: r(mf / mb, 3), ratio_gemm_only_med: r(mf / mg, 3),
        }));
      }
    }
}
