import { describe, expect, it } from 'vitest';

import { binaryToLut, binaryLutGemm, binaryLutTables, packBinaryLut, unpackBinaryLut } from '../lib/kernels/binary-lut.js';
import { packBinary, prepareBinaryActivations, repackBinaryF32, repackBinaryOneBit, unpackBinary } from '../lib/kernels/binary.js';
import { ScaleMode } from '../lib/kernels/ternary.js';
import { binding } from '../lib/native.js';
import { b1BitsBytes, encodeOneBit } from '../lib/reference/binary.js';
import {
  type BinaryLutMatrix,
  b1lBytes,
  b1lTableFloats,
  binaryLutExact,
  packB1L,
  refB1LFromB1R16,
  refBinaryLutGemm,
  refBinaryLutTables,
  unpackB1L,
} from '../lib/reference/binary-lut.js';
import { contextsPerIsa, expectSameBits, expectSameInts, randomNormal, rng } from './helpers.js';

const contexts = contextsPerIsa();

function randomSigns(r: () => number, n: number): Int8Array {
  return Int8Array.from({ length: n }, () => (r() < 0.5 ? -1 : 1));
}

/** Asserts every |got − exact| is within the binary_lut.h bound. */
function expectWithinBound(got: Float32Array, exact: Float64Array, bound: Float64Array, what: string): void {
  for (let i = 0; i < got.length; i++) {
    const err = Math.abs(got[i]! - exact[i]!);
    if (!(err <= bound[i]! * (1 + 1e-9))) expect.fail(`${what}: element ${i} is ${got[i]}, exact ${exact[i]}, error ${err} > bound ${bound[i]}`);
  }
}

describe('B1L64 packing', () => {
  const [, ctx] = contexts[0]!;
  it('native and reference packers produce identical bytes and round-trip', () => {
    const r = rng(3);
    for (const [M, K] of [[1, 32], [15, 96], [64, 64], [65, 320], [130, 128]] as const) {
      const signs = randomSigns(r, M * K);
      const w = packBinaryLut(ctx, signs, M, K);
      expect(w.bits.length).toBe(b1lBytes(M, K));
      expectSameInts(w.bits, packB1L(signs, M, K), `bits ${M}x${K}`);
      expectSameInts(unpackBinaryLut(w), signs, `native unpack ${M}x${K}`);
      expectSameInts(unpackB1L(w.bits, M, K), signs, `reference unpack ${M}x${K}`);
    }
  });

  it('converts a B1R16 matrix to the same bits, mapping its scales to the row scale', () => {
    const r = rng(4);
    for (const [M, K] of [[17, 64], [64, 192], [100, 2560]] as const) {
      const signs = randomSigns(r, M * K);
      const rowScales = Float32Array.from({ length: M }, () => 0.1 + r());
      const b1 = packBinary(ctx, signs, M, K, ScaleMode.Row, rowScales);
      const lut = binaryToLut(ctx, b1);
      expectSameInts(lut.bits, packB1L(signs, M, K), `from B1R16 ${M}x${K}`);
      expectSameInts(refB1LFromB1R16(b1.bits, M, K), lut.bits, `reference from B1R16 ${M}x${K}`);
      expectSameBits(lut.rowScale!, rowScales, 'row scales');
      expect(binaryToLut(ctx, packBinary(ctx, signs, M, K)).rowScale).toBeUndefined();
      const t = binaryToLut(ctx, packBinary(ctx, signs, M, K, ScaleMode.Tensor, Float32Array.of(0.25)));
      expect(Array.from(t.rowScale!)).toEqual(new Array(M).fill(0.25));
    }
  });

  it('pads rows to 64 with zero bits', () => {
    const w = packBinaryLut(ctx, new Int8Array(65 * 32).fill(1), 65, 32);
    expect(w.bits.length).toBe(128 * 4);
    expect(w.bits.subarray(0, 256 + 4).every((b) => b === 255)).toBe(true);  // rows 0..64
    expect(w.bits.subarray(256 + 4).every((b) => b === 0)).toBe(true);  // rows 65..127
  });
});

describe.each(contexts)('binaryLut on %s', (isa, ctx) => {
  it('builds the reference tables bit for bit, with T[j ^ 15] = −T[j]', () => {
    const r = rng(5);
    for (const [B, K] of [[1, 4], [2, 36], [3, 2560]] as const) {
      const u = randomNormal(r, B * K, 3);
      for (let i = 0; i < u.length; i += 7) u[i] = i % 2 ? 1e-40 : -3e30;
      const t = binaryLutTables(ctx, u, B, K);
      expectSameBits(t, refBinaryLutTables(u, B, K), `${isa} tables B=${B} K=${K}`);
      for (let g = 0; g < (B * K) / 4; g++)
        for (let j = 0; j < 16; j++) if (!Object.is(t[16 * g + (j ^ 15)], -t[16 * g + j]!)) expect.fail(`${isa} mirror g=${g} j=${j}`);
    }
  });

  const shapes: Array<[number, number, number]> = [
    [1, 32, 1], [17, 64, 2], [63, 96, 3], [64, 32, 1], [65, 128, 5], [130, 256, 4], [200, 2560, 1], [129, 704, 2], [33, 320, 7], [70, 192, 9],
  ];
  for (const withScale of [false, true]) {
    for (const withBias of [false, true]) {
      it.each(shapes)(`matches the reference bit-exactly and the float bound (rowScale ${withScale}, tokBias ${withBias}) M=%i K=%i B=%i`, (M, K, B) => {
        const r = rng(M * 131 + K * 7 + B * 3 + (withScale ? 1 : 0) + (withBias ? 1000 : 0));
        const signs = randomSigns(r, M * K);
        const rowScale = withScale ? Float32Array.from({ length: M }, () => (r() < 0.1 ? 0 : 0.01 + r())) : undefined;
        const w = packBinaryLut(ctx, signs, M, K, rowScale);
        const u = randomNormal(r, B * K, 2);
        const tb = withBias ? randomNormal(r, B, 5) : undefined;
        const y = binaryLutGemm(ctx, w, u, B, tb);
        expectSameBits(y, refBinaryLutGemm(w, u, B, tb), `${isa} ${M}x${K} B=${B}`);
        const { exact, bound } = binaryLutExact(signs, M, K, u, B, rowScale, tb);
        expectWithinBound(y, exact, bound, `${isa} ${M}x${K} B=${B}`);
      });
    }
  }

  it('stays within the bound on adversarial inputs: cancellation, wide exponents, subnormals, all-equal rows', () => {
    const r = rng(9);
    const M = 67;
    const K = 1024;
    const B = 3;
    const rowsOf = (f: (m: number, k: number) => number): Int8Array => Int8Array.from({ length: M * K }, (_, i) => f(Math.floor(i / K), i % K));
    const weightSets = [rowsOf(() => 1), rowsOf(() => -1), rowsOf((m, k) => (m % 2 ? 1 : (k % 2 ? -1 : 1)))];
    const acts = [
      Float32Array.from({ length: B * K }, (_, i) => (i % 2 ? -1 : 1) * (1e6 + r())),
      Float32Array.from({ length: B * K }, () => (r() - 0.5) * 2 ** Math.floor(r() * 120 - 60)),
      Float32Array.from({ length: B * K }, () => (r() - 0.5) * 1e-39),
      new Float32Array(B * K),
      Float32Array.from({ length: B * K }, () => (r() - 0.5) * 3e33),
    ];
    const rowScale = Float32Array.from({ length: M }, (_, m) => (m % 5 === 0 ? 1e-30 : 0.5 + r()));
    for (const signs of weightSets) {
      const w = packBinaryLut(ctx, signs, M, K, rowScale);
      for (const u of acts) {
        const tb = Float32Array.from({ length: B }, (_, b) => b - 1.5);
        const y = binaryLutGemm(ctx, w, u, B, tb);
        expectSameBits(y, refBinaryLutGemm(w, u, B, tb), `${isa} adversarial`);
        const { exact, bound } = binaryLutExact(signs, M, K, u, B, rowScale, tb);
        expectWithinBound(y, exact, bound, `${isa} adversarial`);
      }
    }
  });

  it('splits few row blocks across threads by token with the same result', () => {
    const r = rng(77);
    const [M, K, B] = [16, 512, 37];
    const signs = randomSigns(r, M * K);
    const w = packBinaryLut(ctx, signs, M, K, Float32Array.from({ length: M }, () => r()));
    const u = randomNormal(r, B * K);
    const tb = randomNormal(r, B);
    expectSameBits(binaryLutGemm(ctx, w, u, B, tb), refBinaryLutGemm(w, u, B, tb), `${isa} token split`);
  });

  it('runs a 128-token batch over a 6912-column matrix exactly like the reference', () => {
    const r = rng(128);
    const [M, K, B] = [72, 6912, 128];
    const signs = randomSigns(r, M * K);
    const w = packBinaryLut(ctx, signs, M, K);
    const u = randomNormal(r, B * K);
    expectSameBits(binaryLutGemm(ctx, w, u, B), refBinaryLutGemm(w, u, B), `${isa} B=128`);
  });
});

// The float path end to end: binary_prep's xs (one float multiply per element) and tokBias (a float
// sum of K products) feed the GEMM; its error adds to theirs, far below the int8 path's.
describe('end to end against float64 products', () => {
  const [, ctx] = contexts[contexts.length - 1]!;

  it('FBI-LLM: (α⊙x)·sign(W)ᵀ + Σβ·x equals W̃x, W̃ = α⊙sign(W) + β, within the float bound', () => {
    const r = rng(2024);
    const [M, K, B] = [40, 1024, 3];
    const W = randomNormal(r, M * K, 0.02);
    const alpha = Float32Array.from({ length: K }, () => 0.01 + 0.02 * r());
    const beta = randomNormal(r, K, 0.001);
    const b1 = repackBinaryF32(ctx, W, M, K);
    const signs = unpackBinary(b1);
    const w = binaryToLut(ctx, b1);
    const x = randomNormal(r, B * K);
    const prep = prepareBinaryActivations(ctx, x, B, K, { colScale: alpha, colBias: beta });
    const y = binaryLutGemm(ctx, w, prep.xs, B, prep.tokBias);
    const { bound } = binaryLutExact(signs, M, K, prep.xs, B, undefined, prep.tokBias);
    for (let b = 0; b < B; b++) {
      let xsMag = 0;
      let biasMag = 0;
      for (let j = 0; j < K; j++) {
        xsMag += Math.abs(alpha[j]! * x[b * K + j]!);
        biasMag += Math.abs(beta[j]! * x[b * K + j]!);
      }
      for (let o = 0; o < M; o++) {
        let exact = 0;
        for (let j = 0; j < K; j++) exact += (alpha[j]! * signs[o * K + j]! + beta[j]!) * x[b * K + j]!;
        // GEMM bound + the rounding of xs (2⁻²⁴ each) + the float β sum (K terms).
        const tol = bound[b * M + o]! + 2 ** -24 * xsMag + K * 2 ** -24 * biasMag;
        expect(Math.abs(y[b * M + o]! - exact), `b=${b} o=${o}`).toBeLessThanOrEqual(tol);
        expect(tol).toBeLessThan(1e-3 * xsMag);  // ~1000x tighter than the int8 path's K·max|xs|/254
      }
    }
  });

  it('OneBit: ((x⊙g)·Sᵀ)⊙h (before its LayerNorm) within the float bound', () => {
    const r = rng(7);
    const [M, K, B] = [33, 768, 2];
    const signs = randomSigns(r, M * K);
    const g = Float32Array.from({ length: K }, () => 0.5 + r());
    const h = Float32Array.from({ length: M }, () => 0.01 + r() * 0.05);
    const w = binaryToLut(ctx, repackBinaryOneBit(ctx, encodeOneBit(signs, M, K), M, K, h));
    expectSameBits(w.rowScale!, h, 'h is the row scale');
    const x = randomNormal(r, B * K);
    const prep = prepareBinaryActivations(ctx, x, B, K, { colScale: g });
    const y = binaryLutGemm(ctx, w, prep.xs, B);
    const { bound } = binaryLutExact(signs, M, K, prep.xs, B, h);
    for (let b = 0; b < B; b++) {
      let xsMag = 0;
      for (let j = 0; j < K; j++) xsMag += Math.abs(g[j]! * x[b * K + j]!);
      for (let o = 0; o < M; o++) {
        let exact = 0;
        for (let j = 0; j < K; j++) exact += signs[o * K + j]! * g[j]! * x[b * K + j]!;
        exact *= h[o]!;
        const tol = bound[b * M + o]! + 2 ** -24 * xsMag * h[o]!;
        expect(Math.abs(y[b * M + o]! - exact), `b=${b} o=${o}`).toBeLessThanOrEqual(tol);
      }
    }
  });
});

describe('binary LUT binding argument checks', () => {
  const [, ctx] = contexts[0]!;
  const h = ctx.handle;
  const typedError = (fn: () => unknown): void => {
    let err: unknown;
    try {
      fn();
    } catch (e) {
      err = e;
    }
    expect(err instanceof TypeError || err instanceof RangeError, `threw ${String(err)}`).toBe(true);
  };
  type Fn = (...args: unknown[]) => unknown;
  const M = 17;
  const K = 128;
  const B = 2;
  const bits = new Uint8Array(b1lBytes(M, K));
  const good = {
    binaryLutGemm: [h, bits, M, K, new Float32Array(B * K), B, new Float32Array(M), new Float32Array(B), new Float32Array(B * M)],
    binaryLutTables: [h, new Float32Array(B * K), B, K, new Float32Array(B * b1lTableFloats(K))],
    packBinaryLutFromSigns: [h, new Int8Array(M * K), M, K, new Uint8Array(b1lBytes(M, K))],
    packBinaryLutFromB1r16: [h, new Uint8Array(b1BitsBytes(M, K)), M, K, new Uint8Array(b1lBytes(M, K))],
    unpackBinaryLutToSigns: [bits, M, K, new Int8Array(M * K)],
  } satisfies Record<string, unknown[]>;

  it.each(Object.keys(good))('%s accepts well-formed arguments', (name) => {
    expect(() => binding<Fn>(name)(...good[name as keyof typeof good])).not.toThrow();
  });

  const substitutes: unknown[] = [undefined, null, {}, 'x', -1, 1.5, NaN, 2 ** 40, 10n, new Float64Array(4), new Uint8Array(3), new Int8Array(1), new Float32Array(1)];
  const optional: Record<string, number[]> = { binaryLutGemm: [6, 7] };
  it.each(Object.keys(good))('%s throws TypeError/RangeError for every garbage argument', (name) => {
    const args = good[name as keyof typeof good];
    const fn = binding<Fn>(name);
    for (let i = 0; i < args.length; i++) {
      for (const sub of substitutes) {
        if ((sub === null || sub === undefined) && optional[name]?.includes(i)) continue;
        typedError(() => fn(...args.map((v, j) => (j === i ? sub : v))));
      }
    }
    typedError(() => fn());
  });

  it('rejects K not a multiple of 32 (64 from B1R16), wrong lengths and overlapping output', () => {
    const g = good.binaryLutGemm;
    const gemm = binding<Fn>('binaryLutGemm');
    expect(() => gemm(...g.map((v, j) => (j === 3 ? 80 : v)))).toThrow(/multiple of 32/);
    expect(() => gemm(...g.map((v, j) => (j === 6 ? new Float32Array(M + 1) : v)))).toThrow(/rowScale has 18 elements/);
    expect(() => gemm(...g.map((v, j) => (j === 8 ? new Float32Array(B * M + 1) : v)))).toThrow(RangeError);
    expect(() => gemm(...g.map((v, j) => (j === 6 || j === 7 ? null : v)))).not.toThrow();
    const shared = new Float32Array(B * K + B * M);
    expect(() => gemm(...g.map((v, j) => (j === 4 ? shared.subarray(0, B * K) : j === 8 ? shared.subarray(B * K - 1, B * K - 1 + B * M) : v)))).toThrow(/y overlaps u/);
    const fromR16 = binding<Fn>('packBinaryLutFromB1r16');
    expect(() => fromR16(...good.packBinaryLutFromB1r16.map((v, j) => (j === 3 ? 96 : v)))).toThrow(/multiple of 64/);
  });

  it('wrapper rejects short activations and a row scale of the wrong length', () => {
    const w: BinaryLutMatrix = packBinaryLut(ctx, new Int8Array(16 * 64), 16, 64);
    expect(() => binaryLutGemm(ctx, w, new Float32Array(100), 2)).toThrow(/need 128/);
    expect(() => binaryLutGemm(ctx, { ...w, rowScale: new Float32Array(15) }, new Float32Array(64), 1)).toThrow(/rowScale has 15/);
  });
});
