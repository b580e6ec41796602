// The SSD of one Bi-Mamba mixer layer at prefill: the chunked scan (ssdChunked, the prefill path) against the
// recurrence, both as one call over all T rows (ssdRecurrent with T rows) and token by token (T calls of one row:
// the decode path run over a prompt). Default shape: the 780M Bi-Mamba layer (dInner 3072, dState 128, 48 heads of
// 64, 1 group), T = 512. Kinds are interleaved call by call in one process (a shared machine drifts between runs).
//   node bench/mamba2-ssd.mjs [--isa avx512,avx2,scalar] [--threads 2] [--T 512] [--chunk 32,64,128]
//                             [--shape 3072x128x48x1] [--seconds 3]
// Prints one JSON line per (isa, threads): min and median ms per kind and the speedups of the best chunk
// (tokenByToken / chunked, recurrent / chunked); then one line for the conv and the gated norm of the same layer.
// Needs `npx tsc -p .` (dist/) and the built addon.
import { performance } from 'node:perf_hooks';

import { KernelContext, cpuInfo } from '../dist/kernels/context.js';
import { gatedRmsNorm, mamba2Conv, ssdChunked, ssdRecurrent } from '../dist/kernels/mamba2.js';
import { option } from './common.mjs';

const argv = process.argv.slice(2);
const isas = option(argv, '--isa', cpuInfo().supportedIsas.filter((i) => i !== 'scalar').reverse().join(',')).split(',');
const threads = Number(option(argv, '--threads', String(cpuInfo().physicalCores)));
const T = Number(option(argv, '--T', '512'));
const chunks = option(argv, '--chunk', '32,64,128').split(',').map(Number);
const [dInner, dState, nHeads, nGroups] = option(argv, '--shape', '3072x128x48x1').split('x').map(Number);
const seconds = Number(option(argv, '--seconds', '3'));
const d = { dInner, dState, nHeads, nGroups, dConv: 4 };
const P = dInner / nHeads;
const G = nGroups * dState;

let seed = 1;
const rand = (n, scale = 1) => Float32Array.from({ length: n }, () => {
  seed = (Math.imul(seed, 1664525) + 1013904223) >>> 0;
  return (seed / 2 ** 32 - 0.5) * 2 * scale;
});
const x = rand(T * dInner), B = rand(T * G), C = rand(T * G), dt = rand(T * nHeads, 2);
const p = { dtBias: rand(nHeads, 0.5), ALog: rand(nHeads, 1), D: rand(nHeads) };
const state0 = rand(nHeads * P * dState, 0.1);
const rowsOf = (a, w, t) => a.subarray(t * w, (t + 1) * w);

const median = (a) => [...a].sort((u, v) => u - v)[a.length >> 1];
for (const isa of isas) {
  const ctx = new KernelContext({ isa, threads });
  const state = new Float32Array(state0.length);
  const y = new Float32Array(T * dInner);
  const kinds = {
    tokenByToken: () => {
      for (let t = 0; t < T; t++)
        ssdRecurrent(ctx, d, rowsOf(x, dInner, t), rowsOf(B, G, t), rowsOf(C, G, t), rowsOf(dt, nHeads, t), 1, p, state, rowsOf(y, dInner, t));
    },
    recurrent: () => ssdRecurrent(ctx, d, x, B, C, dt, T, p, state, y),
  };
  for (const c of chunks) kinds[`chunked${c}`] = () => ssdChunked(ctx, d, x, B, C, dt, T, p, state, c, y);
  const times = Object.fromEntries(Object.keys(kinds).map((k) => [k, []]));
  const t0 = performance.now();
  for (let round = 0; round === 0 || performance.now() - t0 < seconds * 1000; round++)
    for (const [k, fn] of Object.entries(kinds)) {
      state.set(state0);
      const a = performance.now();
      fn();
      times[k].push(performance.now() - a);
    }
  const ms = Object.fromEntries(Object.entries(times).map(([k, v]) => [k, { min: +Math.min(...v).toFixed(3), median: +median(v).toFixed(3) }]));
  const best = chunks.map((c) => [c, ms[`chunked${c}`].median]).sort((a, b) => a[1] - b[1])[0];
  console.log(JSON.stringify({
    bench: 'mamba2-ssd', isa, threads, T, dInner, dState, nHeads, headDim: P, nGroups, rounds: times.recurrent.length, ms,
    bestChunk: best[0], speedupVsTokenByToken: +(ms.tokenByToken.median / best[1]).toFixed(2), speedupVsRecurrent: +(ms.recurrent.median / best[1]).toFixed(2),
  }));
  // The rest of the mixer's float work at the same shape: conv (+ state) and the gated norm.
  const Cd = dInner + 2 * G;
  const xBC = rand(T * Cd), w = rand(Cd * 4), bias = rand(Cd), cst = new Float32Array(3 * Cd), cout = new Float32Array(T * Cd);
  const z = rand(T * dInner), nw = rand(dInner), nout = new Float32Array(T * dInner);
  const conv = [], norm = [];
  for (let i = 0; i < 20; i++) {
    let a = performance.now();
    mamba2Conv(ctx, d, xBC, T, w, bias, cst, cout);
    conv.push(performance.now() - a);
    a = performance.now();
    gatedRmsNorm(ctx, d, y, z, nw, T, 1e-5, nout);
    norm.push(performance.now() - a);
  }
  console.log(JSON.stringify({ bench: 'mamba2-conv-norm', isa, threads, T, convMs: +median(conv).toFixed(3), gatedNormMs: +median(norm).toFixed(3) }));
}
