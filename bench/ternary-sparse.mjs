#!/usr/bin/env node
// Column-sparse ternary GEMV (TS256, ternarySparseGemm) against the dense TD3 and T2R16 GEMVs of the same
// matrix, out of cache: every kernel rotates through distinct copies totalling >= 256 MB (L3 is 32 MB),
// in weight memory (2 MiB pages) as the loader places layers. Kernels alternate pass by pass in one
// process, so the ratios compare the same machine state. Then B = 128 (prefill chunk) against the dense
// T2R16 GEMM, in cache. Prints JSON lines.
// On 1 thread `ms` is CPU time per call (clock: 'cpu'; the machine may be shared), on 2 threads wall time.
//   npm run build && node bench/ternary-sparse.mjs [--reps 15] [--threads 1,2] [--shapes down,o] [--zeros 0,0.5,0.8,0.9] [--no-gemm]
import {
  KernelContext, packTernary, packTernaryTd3, ternaryGemm, ternarySparseGemm, ternaryTd3Gemm, ternaryToSparse, weightBytes,
} from '../dist/kernels/index.js';

const argv = process.argv.slice(2);
const arg = (name, def) => (argv.includes(name) ? argv[argv.indexOf(name) + 1] : def);
const reps = Number(arg('--reps', 15));
const threadCounts = arg('--threads', '1,2').split(',').map(Number);
const PASS_BYTES = 256 * 2 ** 20;
// Zero rates of the decode rows; the first must be 0 (the dense kernels' activations).
const ZERO_RATES = arg('--zeros', '0,0.5,0.8,0.9').split(',').map(Number);
if (ZERO_RATES[0] !== 0) throw new Error('--zeros must start with 0');
const only = arg('--shapes', 'down,o').split(',');
const gemmToo = !argv.includes('--no-gemm');

function rng(seed) {
  let s = seed >>> 0;
  return () => ((s = (Math.imul(s, 1664525) + 1013904223) >>> 0) / 4294967296);
}

/** n >= PASS_BYTES / bytes copies of `proto` in one weight-memory block (64-byte aligned slots). */
function copies(proto) {
  const slot = Math.ceil(proto.byteLength / 64) * 64;
  const n = Math.ceil(PASS_BYTES / proto.byteLength);
  const buf = weightBytes(n * slot);
  return Array.from({ length: n }, (_, i) => {
    const d = buf.subarray(i * slot, i * slot + proto.byteLength);
    d.set(proto);
    return d;
  });
}

/** One token of int8 activations with a fraction `zeros` of exact zeros (random positions). */
function acts(r, B, K, zeros) {
  const q = new Int8Array(B * K), sum = new Int32Array(B);
  for (let i = 0; i < B * K; i++) {
    if (r() < zeros) continue;
    q[i] = (Math.floor(r() * 254) - 127) || 1;
    sum[Math.floor(i / K)] += q[i];
  }
  return { q, scale: new Float32Array(B).fill(0.03), sum, B, K };
}

const median = (v) => [...v].sort((p, q) => p - q)[v.length >> 1];
const round = (v, d = 4) => +v.toFixed(d);

for (const [M, K, name] of [[2560, 6912, 'down'], [2560, 2560, 'o']].filter((s) => only.includes(s[2]))) {
  const r = rng(M * 7 + K);
  const trits = Int8Array.from({ length: M * K }, () => Math.floor(r() * 3) - 1);
  const ctx0 = new KernelContext({ threads: 2 });
  const t2 = packTernary(ctx0, trits, M, K, 0, Float32Array.of(1));
  const td3 = packTernaryTd3(ctx0, trits, M, K, 0, Float32Array.of(1));
  const sp = ternaryToSparse(ctx0, t2);
  const mats = {
    t2r16: copies(t2.codes).map((codes) => ({ ...t2, codes })),
    td3: copies(td3.data).map((data) => ({ ...td3, data })),
    sparse: copies(sp.data).map((data) => ({ ...sp, data })),
  };
  // Each call gets one of PATTERNS activation vectors, shifting by one per pass, so the lines a sparse call
  // touches differ from those of the same matrix's previous call (else they would stay in L3).
  const PATTERNS = 7;
  const a = Object.fromEntries(ZERO_RATES.map((z) => [z, Array.from({ length: PATTERNS }, () => acts(r, 1, K, z))]));
  let pass = 0;
  for (const threads of threadCounts) {
    const ctx = new KernelContext({ threads });
    const y = new Float32Array(M);
    const passes = {
      td3: () => { for (const w of mats.td3) ternaryTd3Gemm(ctx, w, a[0][0], y); return mats.td3.length; },
      t2r16: () => { for (const w of mats.t2r16) ternaryGemm(ctx, w, a[0][0], y); return mats.t2r16.length; },
    };
    for (const z of ZERO_RATES)
      passes[`sparse@${z}`] = () => {
        pass++;
        mats.sparse.forEach((w, i) => ternarySparseGemm(ctx, w, a[z][(i + pass) % PATTERNS], y));
        return mats.sparse.length;
      };
    // Wall time per call; on 1 thread (everything on this thread) also CPU time per call, which a
    // machine shared with other jobs inflates less (time slices lost to them are not counted).
    const ms = Object.fromEntries(Object.keys(passes).map((k) => [k, []]));
    const cpu = Object.fromEntries(Object.keys(passes).map((k) => [k, []]));
    for (const k of Object.keys(passes)) passes[k](); // warm-up: page tables, thread pool
    for (let rep = 0; rep < reps; rep++)
      for (const [k, pass] of Object.entries(passes)) {
        const c0 = process.cpuUsage();
        const t0 = process.hrtime.bigint();
        const n = pass();
        ms[k].push(Number(process.hrtime.bigint() - t0) / 1e6 / n);
        const c = process.cpuUsage(c0);
        cpu[k].push((c.user + c.system) / 1e3 / n);
      }
    if (threads === 1) for (const k of Object.keys(ms)) ms[k] = cpu[k];
    // Medians, and minima (`*_min`): on a shared machine other jobs only add time, so the minimum of
    // the passes is the better estimate of the kernel's own speed when the medians wander.
    const min = (v) => Math.min(...v);
    const clock = threads === 1 ? 'cpu' : 'wall';
    const td3Ms = median(ms.td3), t2Ms = median(ms.t2r16), td3Min = min(ms.td3), t2Min = min(ms.t2r16);
    console.log(JSON.stringify({ bench: 'gemv', shape: `${M}x${K}`, name, threads, B: 1, clock, kernel: 'td3', ms: round(td3Ms), ms_min: round(td3Min), gbps: round(td3.data.byteLength / td3Ms / 1e6, 1), isa: ctx.info().kernels.ternary_td3 }));
    console.log(JSON.stringify({ bench: 'gemv', shape: `${M}x${K}`, name, threads, B: 1, clock, kernel: 't2r16', ms: round(t2Ms), ms_min: round(t2Min), gbps: round(t2.codes.byteLength / t2Ms / 1e6, 1), isa: ctx.info().kernels.ternary_i2 }));
    for (const z of ZERO_RATES) {
      const s = median(ms[`sparse@${z}`]), sMin = min(ms[`sparse@${z}`]);
      console.log(JSON.stringify({
        bench: 'gemv', shape: `${M}x${K}`, name, threads, B: 1, clock, kernel: 'sparse', zeros: z, ms: round(s), ms_min: round(sMin),
        vs_td3: round(s / td3Ms, 3), vs_t2r16: round(s / t2Ms, 3), vs_td3_min: round(sMin / td3Min, 3), vs_t2r16_min: round(sMin / t2Min, 3),
        isa: ctx.info().kernels.ternary_sparse,
      }));
    }
  }
  // Prefill chunk: B = 128, in cache (compute-bound), 2 threads, alternated.
  if (gemmToo) {
    const ctx = new KernelContext({ threads: Math.max(...threadCounts) });
    const B = 128, y = new Float32Array(B * M);
    const batch = Object.fromEntries([0.5, 0.8, 0.9].map((z) => [z, acts(r, B, K, z)]));
    const runs = { t2r16: () => ternaryGemm(ctx, t2, batch[0.5], y) };
    for (const z of [0.5, 0.8, 0.9]) runs[`sparse@${z}`] = () => ternarySparseGemm(ctx, sp, batch[z], y);
    const ms = Object.fromEntries(Object.keys(runs).map((k) => [k, []]));
    for (const f of Object.values(runs)) f();
    for (let rep = 0; rep < Math.max(5, reps >> 1); rep++)
      for (const [k, f] of Object.entries(runs)) {
        const t0 = process.hrtime.bigint();
        f();
        ms[k].push(Number(process.hrtime.bigint() - t0) / 1e6);
      }
    const t2Ms = median(ms.t2r16);
    console.log(JSON.stringify({ bench: 'gemm', shape: `${M}x${K}`, name, threads: Math.max(...threadCounts), B, kernel: 't2r16', ms: round(t2Ms, 3) }));
    for (const z of [0.5, 0.8, 0.9]) {
      const s = median(ms[`sparse@${z}`]);
      console.log(JSON.stringify({ bench: 'gemm', shape: `${M}x${K}`, name, threads: Math.max(...threadCounts), B, kernel: 'sparse', zeros: z, ms: round(s, 3), vs_t2r16: round(s / t2Ms, 3) }));
    }
  }
}
