#!/usr/bin/env node
// Weight memory A/B: the same GEMVs over copies in plain JS-heap buffers (4 KiB pages) and in weight
// memory (weightBytes: 2 MiB-aligned, MADV_HUGEPAGE), alternated call by call in one process. Each pass
// streams >= 240 MB of copies, so every call reads from DRAM as decode does. Prints JSON lines.
//   npm run build && node bench/weight-memory.mjs [--threads 2] [--reps 30]
import {
  KernelContext, f16Gemm, packTernaryTd3, quantizeActivationsI8, ternaryTd3Gemm, weightBytes,
} from '../dist/kernels/index.js';

const argv = process.argv.slice(2);
const opt = (name, def) => (argv.includes(name) ? Number(argv[argv.indexOf(name) + 1]) : def);
const threads = opt('--threads', 2), reps = opt('--reps', 30);
const ctx = new KernelContext({ threads });
const PASS_BYTES = 240e6;

function rng(seed) {
  let s = seed >>> 0;
  return () => ((s = (Math.imul(s, 1664525) + 1013904223) >>> 0) / 4294967296);
}

/** copies of `proto` bytes, packed back to back in one buffer from `alloc` */
function copies(proto, alloc) {
  const slot = Math.ceil(proto.byteLength / 64) * 64;
  const n = Math.ceil(PASS_BYTES / proto.byteLength);
  const buf = alloc(n * slot);
  return Array.from({ length: n }, (_, i) => {
    const d = buf.subarray(i * slot, i * slot + proto.byteLength);
    d.set(proto);
    return d;
  });
}

const heap = (n) => new Uint8Array(n);
const cases = [];
for (const [M, K] of [[3840, 2560], [2560, 2560], [13824, 2560], [2560, 6912]]) {
  const r = rng(M + K);
  const trits = Int8Array.from({ length: M * K }, () => Math.floor(r() * 3) - 1);
  const w = packTernaryTd3(ctx, trits, M, K, 0, Float32Array.of(1));
  const a = quantizeActivationsI8(ctx, Float32Array.from({ length: K }, () => r() - 0.5), 1, K);
  const y = new Float32Array(M);
  const make = (alloc) => copies(w.data, alloc).map((data) => () => ternaryTd3Gemm(ctx, { ...w, data }, a, y));
  cases.push({ kernel: 'ternary_td3', shape: `${M}x${K}`, bytes: w.data.byteLength, heap: make(heap), huge: make(weightBytes) });
}
{
  const M = 16384, K = 2560, r = rng(7);
  const halves = Uint16Array.from({ length: M * K }, () => 0x3400 | Math.floor(r() * 0x7ff));
  const x = Float32Array.from({ length: K }, () => r() - 0.5), y = new Float32Array(M);
  const proto = new Uint8Array(halves.buffer);
  const make = (alloc) => copies(proto, alloc).map((d) => () => f16Gemm(ctx, { data: new Uint16Array(d.buffer, d.byteOffset, M * K), M, K }, x, 1, y));
  cases.push({ kernel: 'f16', shape: `${M}x${K}`, bytes: proto.byteLength, heap: make(heap), huge: make(weightBytes) });
}

const median = (v) => [...v].sort((p, q) => p - q)[v.length >> 1];
for (const c of cases) {
  const gbps = { heap: [], huge: [] };
  for (let rep = 0; rep < reps; rep++)
    for (const k of ['heap', 'huge']) {
      const t0 = process.hrtime.bigint();
      for (const call of c[k]) call();
      gbps[k].push((c.bytes * c[k].length) / Number(process.hrtime.bigint() - t0));
    }
  const h = median(gbps.heap), g = median(gbps.huge);
  console.log(JSON.stringify({ kernel: c.kernel, shape: c.shape, threads, heap_4k_gbps: +h.toFixed(1), huge_2m_gbps: +g.toFixed(1), ratio: +(g / h).toFixed(2) }));
}
