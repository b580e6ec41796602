// The sampler's selections over a logits row: the addon's logitsArgmax / logitsTopK (native/runtime/
// logits_select.h) against their references (lib/reference/select.ts), which a brute force checks in turn.
// Comparisons only, so the ids must be equal, heap order included, on random and adversarial rows (NaN,
// ±Infinity, ±0, heavy ties, all banned, lengths around the native 16-logit blocks); plus argument checks.
import { describe, expect, it } from 'vitest';

import { binding } from '../lib/native.js';
import { refArgmax, refTopKFinite } from '../lib/reference/select.js';
import { rng } from './helpers.js';

const nArgmax = binding<(x: Float32Array) => number>('logitsArgmax');
const nTopK = binding<(x: Float32Array, k: number, out: Int32Array) => number>('logitsTopK');

/** Rows of every kind the sampler can see, n elements. */
function rows(r: () => number, n: number): Float32Array[] {
  const pick = (vals: number[]) => Float32Array.from({ length: n }, () => vals[Math.floor(r() * vals.length)]!);
  const out = [
    Float32Array.from({ length: n }, () => (r() - 0.5) * 40),
    Float32Array.from({ length: n }, () => Math.floor(r() * 3) - 1), // heavy ties
    pick([NaN, -Infinity, 0, -0, 1, 1, Infinity]),
    pick([-Infinity, -Infinity, -Infinity, 2]), // mostly banned
    pick([NaN, -Infinity]), // no candidate
    pick([-0, 0]),
    Float32Array.from({ length: n }, (_, i) => i), // ascending: the heap turns over at every element
    Float32Array.from({ length: n }, (_, i) => -i),
    Float32Array.from({ length: n }, () => (r() < 0.01 ? 3.4e38 : -3.4e38)),
  ];
  return out;
}

describe('logits selections: native vs reference', () => {
  const r = rng(5);
  const sizes = [0, 1, 2, 15, 16, 17, 31, 33, 64, 100, 1000, 4099];

  it('logitsArgmax is refArgmax', () => {
    for (const n of sizes)
      for (const x of rows(r, n)) expect(nArgmax(x), `n=${n} ${x.slice(0, 8).join(',')}`).toBe(refArgmax(x));
    // The first of equal maxima, zeros of either sign equal.
    expect(nArgmax(Float32Array.from([-0, 0, -1]))).toBe(0);
    expect(nArgmax(Float32Array.from([NaN, 2, NaN, 2]))).toBe(1);
    expect(nArgmax(Float32Array.from([-Infinity, -Infinity]))).toBe(0);
    const big = new Float32Array(128256).fill(-1);
    big[128255] = 0;
    big[77] = 0;
    expect(nArgmax(big)).toBe(77);
  });

  it('logitsTopK is refTopKFinite: the same ids in the same heap order, the same count', () => {
    for (const n of sizes)
      for (const x of rows(r, n))
        for (const k of [1, 2, 3, 16, 40, 1024, n + 5]) {
          const a = new Int32Array(Math.max(1, Math.min(k, n))).fill(-7);
          const b = new Int32Array(Math.max(1, Math.min(k, n))).fill(-7);
          const ca = nTopK(x, k, a);
          const cb = refTopKFinite(x, k, b);
          expect(ca, `count n=${n} k=${k}`).toBe(cb);
          expect(Array.from(a.subarray(0, ca)), `ids n=${n} k=${k}`).toEqual(Array.from(b.subarray(0, cb)));
        }
  });

  it('the references against a brute force', () => {
    for (const n of sizes)
      for (const x of rows(r, n)) {
        const cand = Array.from(x.keys()).filter((i) => x[i]! > -Infinity);
        const best = cand.sort((a, b) => x[b]! - x[a]! || a - b);
        expect(refArgmax(x)).toBe(best.length > 0 ? best[0]! : 0);
        for (const k of [1, 7, 40]) {
          const out = new Int32Array(Math.max(1, Math.min(k, n)));
          const c = refTopKFinite(x, k, out);
          expect(Array.from(out.subarray(0, c)).sort((a, b) => x[b]! - x[a]! || a - b)).toEqual(best.slice(0, k));
        }
      }
  });

  it('rejects bad arguments with typed errors', () => {
    const x = new Float32Array(10);
    expect(() => nArgmax(new Float64Array(3) as unknown as Float32Array)).toThrow(TypeError);
    expect(() => nTopK(x, 0, new Int32Array(10))).toThrow(RangeError);
    expect(() => nTopK(x, 1.5, new Int32Array(10))).toThrow(RangeError);
    expect(() => nTopK(x, 4, new Int32Array(3))).toThrow(/out has 3 elements, needs at least 4/);
    expect(() => nTopK(x, 40, new Int32Array(9))).toThrow(/needs at least 10/);
    expect(() => nTopK(x, 2, new Uint32Array(2) as unknown as Int32Array)).toThrow(TypeError);
    const buf = new ArrayBuffer(64);
    expect(() => nTopK(new Float32Array(buf, 0, 16), 4, new Int32Array(buf, 0, 4))).toThrow(/overlaps/);
  });
});
