// Attention over f16, q8 and q3 KV caches at several context lengths, interleaved call by call in one
// process (a shared machine drifts too much between separate runs). The caches hold the same random
// K/V rows; each call is one decode step (B query tokens at the last positions) of a BitNet-2B-like
// layer (20 query heads, 5 kv heads, headDim 128).
//   node bench/kv-q3.mjs [--ctx 256,1024,4096] [--isa avx512,avx2] [--threads 1] [--batch 1]
//                        [--heads 20x5x128] [--seconds 1.5]
// Prints one JSON line per (ctx, isa, threads, batch): min and median ms per kind, cache bytes per
// K (or V) cache, and the ratios of the median times (q3/f16, q3/q8; < 1: q3 is faster); before them,
// one "store" line per (ctx, isa, threads): microseconds per token to store ctx tokens' K rows.
import { performance } from 'node:perf_hooks';

import { KernelContext } from '../dist/kernels/context.js';
import {
  attentionF16,
  attentionQ3,
  attentionQ8,
  kvCacheBytesQ3,
  kvCacheBytesQ8,
  kvCacheElements,
  kvStoreF16,
  kvStoreQ3,
  kvStoreQ8,
} from '../dist/kernels/ops.js';

const args = new Map();
for (let i = 2; i < process.argv.length; i += 2) args.set(process.argv[i].replace(/^--/, ''), process.argv[i + 1]);
const list = (k, d) => (args.get(k) ?? d).split(',');
const contexts = list('ctx', '256,1024,4096').map(Number);
const isas = list('isa', 'avx512,avx2');
const threads = list('threads', '1').map(Number);
const batches = list('batch', '1').map(Number);
const [nh, nkv, hd] = (args.get('heads') ?? '20x5x128').split('x').map(Number);
const seconds = Number(args.get('seconds') ?? 1.5);

let seed = 12345;
const rnd = () => ((seed = (Math.imul(seed, 1664525) + 1013904223) >>> 0) / 4294967296);
const normal = () => Math.sqrt(-2 * Math.log(rnd() + 1e-12)) * Math.cos(2 * Math.PI * rnd());
const median = (xs) => [...xs].sort((a, b) => a - b)[xs.length >> 1];

for (const ctxLen of contexts) {
  const shape = { nKvHeads: nkv, headDim: hd, capacity: ctxLen };
  const all = Int32Array.from({ length: ctxLen }, (_, i) => i);
  const kx = Float32Array.from({ length: ctxLen * nkv * hd }, normal);
  const vx = Float32Array.from({ length: ctxLen * nkv * hd }, normal);
  for (const isa of isas) {
    for (const nt of threads) {
      const ctx = new KernelContext({ isa, threads: nt });
      const caches = {
        f16: [new Uint16Array(kvCacheElements(shape)), new Uint16Array(kvCacheElements(shape))],
        q8: [new Uint8Array(kvCacheBytesQ8(shape)), new Uint8Array(kvCacheBytesQ8(shape))],
        q3: [new Uint8Array(kvCacheBytesQ3(shape)), new Uint8Array(kvCacheBytesQ3(shape))],
      };
      kvStoreF16(ctx, kx, all, caches.f16[0], shape);
      kvStoreF16(ctx, vx, all, caches.f16[1], shape);
      kvStoreQ8(ctx, kx, all, caches.q8[0], shape);
      kvStoreQ8(ctx, vx, all, caches.q8[1], shape);
      kvStoreQ3(ctx, kx, all, caches.q3[0], shape);
      kvStoreQ3(ctx, vx, all, caches.q3[1], shape);
      // Store: all ctxLen tokens' K rows at once (a prefill), interleaved like the attention below.
      const stores = {
        f16: () => kvStoreF16(ctx, kx, all, caches.f16[0], shape),
        q8: () => kvStoreQ8(ctx, kx, all, caches.q8[0], shape),
        q3: () => kvStoreQ3(ctx, kx, all, caches.q3[0], shape),
      };
      const storeTimes = { f16: [], q8: [], q3: [] };
      const storeUntil = performance.now() + seconds * 500;
      for (let i = 0; storeTimes.q3.length < 5 || performance.now() < storeUntil; i++) {
        for (let j = 0; j < 3; j++) {
          const k = ['f16', 'q8', 'q3'][(i + j) % 3];
          const t0 = performance.now();
          stores[k]();
          storeTimes[k].push(performance.now() - t0);
        }
      }
      const perTok = (k) => Math.round((median(storeTimes[k]) / ctxLen) * 1e6) / 1000; // us per token
      console.log(JSON.stringify({
        store: true, ctx: ctxLen, isa, threads: nt, heads: `${nkv}x${hd}`,
        us_per_token_median: { f16: perTok('f16'), q8: perTok('q8'), q3: perTok('q3') },
        q3_over_q8: Math.round((median(storeTimes.q3) / median(storeTimes.q8)) * 1000) / 1000,
      }));
      const fns = { f16: attentionF16, q8: attentionQ8, q3: attentionQ3 };
      const kinds = Object.keys(fns);
      for (const B of batches) {
        const pos = Int32Array.from({ length: B }, (_, b) => ctxLen - B + b);
        const q = Float32Array.from({ length: B * nh * hd }, normal);
        const out = new Float32Array(B * nh * hd);
        const times = Object.fromEntries(kinds.map((k) => [k, []]));
        const run = (k) => fns[k](ctx, q, caches[k][0], caches[k][1], pos, nh, shape, 1 / Math.sqrt(hd), out);
        for (const k of kinds) run(k); // warm up
        const until = performance.now() + seconds * 1000;
        for (let i = 0; times.q3.length < 20 || performance.now() < until; i++) {
          // Rotate which kind goes first, so none always follows another's cache footprint.
          for (let j = 0; j < kinds.length; j++) {
            const k = kinds[(i + j) % kinds.length];
            const t0 = performance.now();
            run(k);
            times[k].push(performance.now() - t0);
          }
        }
        const med = Object.fromEntries(kinds.map((k) => [k, median(times[k])]));
        const r3 = (x) => Math.round(x * 1000) / 1000;
        console.log(JSON.stringify({
          ctx: ctxLen, isa, threads: nt, batch: B, heads: `${nh}x${nkv}x${hd}`, calls: times.q3.length,
          ms_min: Object.fromEntries(kinds.map((k) => [k, r3(Math.min(...times[k]))])),
          ms_median: Object.fromEntries(kinds.map((k) => [k, r3(med[k])])),
          cache_bytes: { f16: caches.f16[0].byteLength, q8: caches.q8[0].byteLength, q3: caches.q3[0].byteLength },
          q3_over_f16: r3(med.q3 / med.f16), q3_over_q8: r3(med.q3 / med.q8), q8_over_f16: r3(med.q8 / med.f16),
        }));
      }
    }
  }
}
