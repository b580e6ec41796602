import { describe, expect, it } from 'vitest';

import { quantizeActivationsI4, quantizeActivationsI8 } from '../lib/kernels/ternary.js';
import { refActQuantI4, refActQuantI8 } from '../lib/reference/act_quant.js';
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
