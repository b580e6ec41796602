import { describe, expect, it } from 'vitest';

import { quantizeActivationsI4, quantizeActivationsI8, quantizeActivationsTopkI8 } from '../lib/kernels/ternary.js';
import { refActQuantI4, refActQuantI8, refActQuantTopkI8 } from '../lib/reference/act_quant.js';
import { roundHalfEven } from '../lib/reference/numeric.js';
import { contextsPerIsa, expectSameBits, expectSameInts, randomNormal, rng } from './helpers.js';

const shapes: Array<[number, number]> = [[1, 1], [1, 3], [2, 17], [3, 255], [1, 2560], [5, 6912], [9, 64]];

function adversarial(B: number, K: number, kind: string): Float32Array {
  const x = new Float32Array(B * K);
  for (let i = 0; i < x.length; i++) {
    if (kind === 'huge') x[i] = (i % 2 ? 1 : -1) * 3.0e38;
    else if (kind === 'tiny') x[i] = (i % 3) * 1e-9;
    else if (kind === 'halves') x[i] = ((i % 11) - 5) * 0.5 * (127 / 5.5) / 127; // many exact .5 products
    else if (kind === 'onehot') x[i] = i % K === 0 ? -7 : 0.001;
  }
  return x;
}

describe.each(contextsPerIsa())('act_quant on %s', (isa, ctx) => {
  it.each(shapes)('i8 matches the reference bit-exactly for B=%i K=%i', (B, K) => {
    const x = randomNormal(rng(B * 1000 + K), B * K, 3);
    const got = quantizeActivationsI8(ctx, x, B, K);
    const want = refActQuantI8(x, B, K);
    expectSameInts(got.q, want.q, `${isa} q`);
    expectSameBits(got.scale, want.scale, `${isa} scale`);
    expectSameInts(got.sum, want.sum, `${isa} sum`);
  });

  it.each(shapes)('i4 matches the reference bit-exactly for B=%i K=%i', (B, K) => {
    const x = randomNormal(rng(B * 7 + K), B * K, 0.5);
    const got = quantizeActivationsI4(ctx, x, B, K);
    const want = refActQuantI4(x, B, K);
    expectSameInts(got.q, want.q, `${isa} q`);
    expectSameBits(got.scale, want.scale, `${isa} scale`);
    expectSameInts(got.sum, want.sum, `${isa} sum`);
  });

  it.each(['huge', 'tiny', 'halves', 'onehot'])('handles %s activations exactly', (kind) => {
    for (const [B, K] of [[2, 33], [1, 300]] as const) {
      const x = adversarial(B, K, kind);
      const got8 = quantizeActivationsI8(ctx, x, B, K);
      const want8 = refActQuantI8(x, B, K);
      expectSameInts(got8.q, want8.q, `${isa} ${kind} i8`);
      expectSameBits(got8.scale, want8.scale, `${isa} ${kind} i8 scale`);
      if (kind !== 'huge') {
        const got4 = quantizeActivationsI4(ctx, x, B, K);
        expectSameInts(got4.q, refActQuantI4(x, B, K).q, `${isa} ${kind} i4`);
      }
    }
  });

  it('maps an all-zero token to zero codes with the 1e-5 floor scale', () => {
    const a = quantizeActivationsI8(ctx, new Float32Array(40), 1, 40);
    expect(Array.from(a.q).every((v) => v === 0)).toBe(true);
    expect(a.scale[0]).toBe(Math.fround(127 / Math.fround(1e-5)));
    expect(a.sum[0]).toBe(0);
  });
});

describe('reference helpers', () => {
  it('rounds half to even', () => {
    expect([0.5, 1.5, 2.5, -0.5, -1.5, -2.5, 2.4999, -2.5001].map(roundHalfEven)).toEqual([0, 2, 2, 0, -2, -2, 2, -3]);
  });
  it('int8 quantization puts the largest magnitude at ±127', () => {
    const a = refActQuantI8(Float32Array.of(0.1, -4, 2), 1, 3);
    expect(Array.from(a.q)).toEqual([3, -127, 64]);
  });
});

describe.each(contextsPerIsa())('act_quant_topk_i8 on %s', (isa, ctx) => {
  const check = (x: Float32Array, B: number, K: number, ratio: number, what: string) => {
    const got = quantizeActivationsTopkI8(ctx, x, B, K, ratio);
    const want = refActQuantTopkI8(x, B, K, Math.floor(K * ratio));
    expectSameInts(got.q, want.q, `${isa} ${what} q`);
    expectSameBits(got.scale, want.scale, `${isa} ${what} scale`);
    expectSameInts(got.sum, want.sum, `${isa} ${what} sum`);
    return got;
  };

  it.each(shapes)('matches the reference bit-exactly for B=%i K=%i at ratios 0, 0.5, 0.2, 1', (B, K) => {
    const x = randomNormal(rng(B * 31 + K), B * K, 2);
    for (const ratio of [0, 0.5, 0.2, 1]) check(x, B, K, ratio, `ratio ${ratio}`);
  });

  it('keeps exactly floor(K·ratio) values, the largest, and quantizes them as act_quant_i8 does', () => {
    const K = 101;
    const x = randomNormal(rng(5), K, 1);
    const a = check(x, 1, K, 0.5, 'half');
    expect(a.q.filter((v) => v !== 0).length).toBeLessThanOrEqual(50);
    const full = quantizeActivationsI8(ctx, x, 1, K);
    expect(a.scale[0]).toBe(full.scale[0]);
    const kept = Array.from(x, (v, k) => [Math.abs(v), k] as const).sort((p, q) => q[0] - p[0]).slice(0, 50);
    for (const [, k] of kept) expect(a.q[k]).toBe(full.q[k]);
  });

  it('breaks ties at the threshold by lower index first', () => {
    // Magnitudes 3, then eight ties at 2 (mixed signs, -0 vs +0 below), then 1s: keep 5 = {3, first four 2s}.
    const x = Float32Array.of(1, -2, 2, 1, 3, -2, 2, 2, -1, 2, 2, -2, 0, -0);
    const a = check(x, 1, x.length, 5.5 / x.length, 'ties');
    expect(Array.from(a.q, (v) => v !== 0)).toEqual([false, true, true, false, true, true, true, false, false, false, false, false, false, false]);
  });

  it('handles all-equal rows, zero rows, odd K, ratio 0 and 1 and huge values', () => {
    for (const K of [1, 7, 33, 257]) {
      const eq = new Float32Array(3 * K).fill(-0.25);
      for (const ratio of [0, 0.5, 1, 0.999]) check(eq, 3, K, ratio, `equal K=${K} ratio ${ratio}`);
      for (const ratio of [0, 0.5, 1]) check(new Float32Array(2 * K), 2, K, ratio, `zeros K=${K}`);
      const huge = Float32Array.from({ length: 2 * K }, (_, i) => (i % 3 ? -3e38 : 1e-30));
      check(huge, 2, K, 0.5, `huge K=${K}`);
      const mixed = Float32Array.from({ length: 2 * K }, (_, i) => (i % 4 === 0 ? 0 : i % 4 === 1 ? -0 : ((i % 5) - 2) * 0.5));
      check(mixed, 2, K, 0.5, `mixed K=${K}`);
    }
    const none = quantizeActivationsTopkI8(ctx, Float32Array.of(5, -6, 7), 1, 3, 0);
    expect(Array.from(none.q)).toEqual([0, 0, 0]);
    expect(none.scale[0]).toBe(Math.fround(127 / Math.fround(1e-5)));
  });

  it('rejects a ratio outside [0, 1]', () => {
    expect(() => quantizeActivationsTopkI8(ctx, new Float32Array(4), 1, 4, 1.5)).toThrow(RangeError);
    expect(() => quantizeActivationsTopkI8(ctx, new Float32Array(4), 1, 4, Number.NaN)).toThrow(RangeError);
  });
});
