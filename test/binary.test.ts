import { describe, expect, it } from 'vitest';

import { ModelFormatError } from '../lib/errors.js';
import {
  binaryGemm,
  packBinary,
  prepareBinaryActivations,
  repackBinaryF32,
  repackBinaryOneBit,
  repackBinaryQ1_0,
  unpackBinary,
} from '../lib/kernels/binary.js';
import { ScaleMode, quantizeActivationsI8 } from '../lib/kernels/ternary.js';
import { binding } from '../lib/native.js';
import type { QuantizedActivations } from '../lib/reference/act_quant.js';
import { refActQuantI8 } from '../lib/reference/act_quant.js';
import {
  type BinaryMatrix,
  b1BitsBytes,
  b1Tiles,
  encodeOneBit,
  encodeQ1_0,
  packB1,
  refBinaryGemm,
  refBinaryPrep,
  refRepackB1F32,
  refRepackB1OneBit,
  refRepackB1Q1_0,
  unpackB1,
} from '../lib/reference/binary.js';
import { halfToFloat } from '../lib/reference/numeric.js';
import { contextsPerIsa, expectSameBits, expectSameInts, randInt, randomNormal, rng } from './helpers.js';

const contexts = contextsPerIsa();

function randomSigns(r: () => number, n: number): Int8Array {
  return Int8Array.from({ length: n }, () => (r() < 0.5 ? -1 : 1));
}

function randomScales(r: () => number, n: number): Float32Array {
  return Float32Array.from({ length: n }, () => (r() < 0.1 ? 0 : 0.01 + r()));
}

function filledActs(B: number, K: number, value: (i: number) => number): QuantizedActivations {
  const q = new Int8Array(B * K);
  const sum = new Int32Array(B);
  for (let i = 0; i < B * K; i++) {
    q[i] = value(i);
    sum[Math.floor(i / K)]! += q[i]!;
  }
  return { q, scale: Float32Array.from({ length: B }, (_, b) => 0.5 + 7 * b), sum, B, K };
}

function refMatrix(signs: Int8Array, M: number, K: number, mode: ScaleMode.Tensor | ScaleMode.Row, scales: Float32Array): BinaryMatrix {
  return { bits: packB1(signs, M, K), scales, M, K, scaleMode: mode };
}

describe('B1R16 packing', () => {
  it('native and reference packers produce identical bytes and round-trip', () => {
    const [, ctx] = contexts[0]!;
    const r = rng(5);
    for (const [M, K] of [[1, 64], [15, 192], [17, 704], [33, 128]] as const) {
      const signs = randomSigns(r, M * K);
      const w = packBinary(ctx, signs, M, K);
      expectSameInts(w.bits, packB1(signs, M, K), `bits ${M}x${K}`);
      expectSameInts(unpackBinary(w), signs, `native unpack ${M}x${K}`);
      expectSameInts(unpackB1(w.bits, M, K), signs, `reference unpack ${M}x${K}`);
    }
  });

  it('pads row scales given per real row to the 16-row tiles', () => {
    const [, ctx] = contexts[0]!;
    const w = packBinary(ctx, new Int8Array(17 * 64), 17, 64, ScaleMode.Row, new Float32Array(17).fill(2));
    expect(w.scales.length).toBe(32);
    expect(Array.from(w.scales.subarray(17))).toEqual(new Array(15).fill(0));
  });
});

describe.each(contexts)('binaryGemm on %s', (isa, ctx) => {
  const shapes: Array<[number, number, number]> = [
    [1, 64, 1], [15, 192, 2], [17, 704, 3], [33, 64, 4], [1, 704, 5], [15, 64, 7], [17, 192, 9], [33, 704, 13], [17, 192, 64], [48, 2560, 16],
  ];
  for (const mode of [ScaleMode.Tensor, ScaleMode.Row] as const) {
    for (const withBias of [false, true]) {
      it.each(shapes)(`matches the reference bit-exactly (${ScaleMode[mode]} scales, tokBias ${withBias}) M=%i K=%i B=%i`, (M, K, B) => {
        const r = rng(M * 131 + K * 7 + B * 3 + mode + (withBias ? 1000 : 0));
        const signs = randomSigns(r, M * K);
        const scales = mode === ScaleMode.Tensor ? Float32Array.of(0.0625 + r()) : randomScales(r, b1Tiles(M) * 16);
        const w = packBinary(ctx, signs, M, K, mode, scales);
        const a = quantizeActivationsI8(ctx, randomNormal(r, B * K, 2), B, K);
        const tb = withBias ? randomNormal(r, B, 5) : undefined;
        expectSameBits(binaryGemm(ctx, w, a, tb), refBinaryGemm(w, a, tb), `${isa} ${M}x${K} B=${B}`);
      });
    }
  }

  it('is exact for all-one / all-zero bit rows with ±127 / −128 activations over long K', () => {
    const M = 17;
    const K = 8192;
    for (const s of [1, -1]) {
      const signs = new Int8Array(M * K).fill(s);
      for (const mode of [ScaleMode.Tensor, ScaleMode.Row] as const) {
        const w = packBinary(ctx, signs, M, K, mode, new Float32Array(mode === ScaleMode.Tensor ? 1 : 32).fill(0.5));
        for (const fill of [() => 127, () => -128, (i: number) => (i & 1 ? 127 : -128), () => 0]) {
          for (const B of [1, 5, 20, 40]) {
            const a = filledActs(B, K, fill);
            const tb = Float32Array.from({ length: B }, (_, b) => b - 2.5);
            expectSameBits(binaryGemm(ctx, w, a, tb), refBinaryGemm(w, a, tb), `${isa} extreme s=${s} ${ScaleMode[mode]} B=${B}`);
          }
        }
      }
    }
  });

  it('splits few row tiles across threads by token with the same result', () => {
    const r = rng(77);
    const [M, K, B] = [16, 512, 37];
    const w = packBinary(ctx, randomSigns(r, M * K), M, K, ScaleMode.Row, randomScales(r, 16));
    const a = refActQuantI8(randomNormal(r, B * K), B, K);
    const tb = randomNormal(r, B);
    expectSameBits(binaryGemm(ctx, w, a, tb), refBinaryGemm(w, a, tb), `${isa} token split`);
  });

  it('prep matches the reference bit-exactly (xs and the 16-lane tokBias sum)', () => {
    const r = rng(31);
    for (const [B, K] of [[1, 1], [2, 15], [3, 17], [1, 64], [4, 100], [2, 2560], [1, 6913]] as const) {
      const x = randomNormal(r, B * K, 3);
      const colScale = Float32Array.from({ length: K }, () => r() * 2);
      const colBias = randomNormal(r, K, 0.1);
      for (const opts of [{}, { colScale }, { colBias }, { colScale, colBias }]) {
        const got = prepareBinaryActivations(ctx, x, B, K, opts);
        const want = refBinaryPrep(x, B, K, opts.colScale, opts.colBias);
        expectSameBits(got.xs, want.xs, `${isa} prep xs B=${B} K=${K}`);
        expect(got.tokBias === undefined).toBe(want.tokBias === undefined);
        if (got.tokBias) expectSameBits(got.tokBias, want.tokBias!, `${isa} prep tokBias B=${B} K=${K}`);
      }
    }
  });
});

describe('repacking binary layouts into B1R16', () => {
  const [, ctx] = contexts[contexts.length - 1]!;
  const r = rng(99);

  it('float weights: sign(w) with sign(0) = +1, same bytes as the reference', () => {
    const [M, K] = [19, 192];
    const w = Float32Array.from({ length: M * K }, (_, i) => (i % 7 === 0 ? 0 : i % 11 === 0 ? -0 : r() - 0.5));
    const m = repackBinaryF32(ctx, w, M, K);
    expectSameInts(m.bits, refRepackB1F32(w, M, K), 'f32 bits');
    expectSameInts(unpackBinary(m), Int8Array.from(w, (v) => (v < 0 ? -1 : 1)), 'f32 signs');
  });

  it('OneBit: bit 1 = −1 is flipped to B1R16 polarity; h becomes the row scales', () => {
    const [M, K] = [33, 320];
    const signs = randomSigns(r, M * K);
    const src = encodeOneBit(signs, M, K);
    const h = randomScales(r, M);
    const m = repackBinaryOneBit(ctx, src, M, K, h);
    expectSameInts(m.bits, refRepackB1OneBit(src, M, K), 'onebit bits');
    expectSameInts(unpackBinary(m), signs, 'onebit signs');
    expect(m.scaleMode).toBe(ScaleMode.Row);
    expectSameBits(m.scales.subarray(0, M), h, 'onebit h');
  });

  it('Q1_0: per-row |d| with sign-flipped blocks reproduces the dequantized weights', () => {
    const [M, K] = [21, 384];
    const nb = K / 128;
    const signs = randomSigns(r, M * K);
    const rowD = Float32Array.from({ length: M }, () => halfToFloat(0x2000 + randInt(r, 0, 4000)));
    const bs = Float32Array.from({ length: M * nb }, (_, i) => (r() < 0.5 ? -1 : 1) * rowD[Math.floor(i / nb)]!);
    const src = encodeQ1_0(signs, M, K, bs);
    const m = repackBinaryQ1_0(ctx, src, M, K);
    const ref = refRepackB1Q1_0(src, M, K);
    expectSameInts(m.bits, ref.bits, 'q1_0 bits');
    expect(m.scaleMode).toBe(ScaleMode.Row);
    expectSameBits(m.scales, ref.rowScales, 'q1_0 row scales');
    const back = unpackBinary(m);
    for (let row = 0; row < M; row++)
      for (let k = 0; k < K; k++) {
        const dequant = (signs[row * K + k]! > 0 ? 1 : -1) * bs[row * nb + Math.floor(k / 128)]!;
        if (back[row * K + k]! * m.scales[row]! !== dequant) expect.fail(`q1_0 weight (${row}, ${k})`);
      }
  });

  it('Q1_0: one scale for the whole tensor collapses to a tensor scale', () => {
    const [M, K] = [16, 256];
    const signs = randomSigns(r, M * K);
    const m = repackBinaryQ1_0(ctx, encodeQ1_0(signs, M, K, new Float32Array(M * 2).fill(0.125)), M, K);
    expect(m.scaleMode).toBe(ScaleMode.Tensor);
    expect(m.scales[0]).toBe(0.125);
    expectSameInts(unpackBinary(m), signs, 'q1_0 uniform signs');
  });

  it('Q1_0: rows mixing block magnitudes are a ModelFormatError naming the tensor', () => {
    const [M, K] = [3, 256];
    const bs = Float32Array.of(1, 1, 1, 1, 0.5, 1);
    const src = encodeQ1_0(randomSigns(r, M * K), M, K, bs);
    expect(refRepackB1Q1_0(src, M, K).nonUniformRows).toBe(1);
    expect(() => repackBinaryQ1_0(ctx, src, M, K, 'blk.0.ffn_up.weight')).toThrow(ModelFormatError);
    expect(() => repackBinaryQ1_0(ctx, src, M, K, 'blk.0.ffn_up.weight')).toThrow(/blk\.0\.ffn_up\.weight: 1 rows/);
  });
});

// Largest |error| of y = dot/s against the float product when each int8 code is off by at most half
// a step (max|xs| / 254) and every weight has magnitude |w_j|: Σ_j |w_j| · max|xs| / 254.
describe('end to end against float64 products', () => {
  const [, ctx] = contexts[contexts.length - 1]!;

  it('FBI-LLM: (α⊙x)·sign(W)ᵀ + Σβ·x equals W̃x, W̃ = α⊙sign(W) + β, within the int8 error', () => {
    const r = rng(2024);
    const [M, K, B] = [40, 1024, 3];
    const W = randomNormal(r, M * K, 0.02);
    const alpha = new Float64Array(K);
    const beta = new Float64Array(K);
    for (let j = 0; j < K; j++) {
      let s = 0;
      for (let o = 0; o < M; o++) s += W[o * K + j]!;
      beta[j] = s / M;
      let d = 0;
      for (let o = 0; o < M; o++) d += Math.abs(W[o * K + j]! - beta[j]!);
      alpha[j] = d / M;
    }
    const w = repackBinaryF32(ctx, W, M, K);
    const signs = unpackBinary(w);
    const x = randomNormal(r, B * K);
    const prep = prepareBinaryActivations(ctx, x, B, K, { colScale: Float32Array.from(alpha), colBias: Float32Array.from(beta) });
    const y = binaryGemm(ctx, w, quantizeActivationsI8(ctx, prep.xs, B, K), prep.tokBias);
    for (let b = 0; b < B; b++) {
      let amax = 0;
      let biasMag = 0;
      for (let j = 0; j < K; j++) {
        amax = Math.max(amax, Math.abs(prep.xs[b * K + j]!));
        biasMag += Math.abs(Math.fround(beta[j]!) * x[b * K + j]!);
      }
      for (let o = 0; o < M; o++) {
        let exact = 0;
        for (let j = 0; j < K; j++) exact += (Math.fround(alpha[j]!) * signs[o * K + j]! + Math.fround(beta[j]!)) * x[b * K + j]!;
        // int8 error + float32 rounding of the β sum (K terms) and of the epilogue.
        const tol = (K * amax) / 254 + K * 2 ** -24 * biasMag + 1e-6 * Math.abs(exact);
        expect(Math.abs(y[b * M + o]! - exact), `b=${b} o=${o}`).toBeLessThanOrEqual(tol);
      }
    }
  });

  it('OneBit: ((x⊙g)·Sᵀ)⊙h (before its LayerNorm) within the int8 error', () => {
    const r = rng(7);
    const [M, K, B] = [33, 768, 2];
    const signs = randomSigns(r, M * K);
    const g = Float32Array.from({ length: K }, () => 0.5 + r());
    const h = Float32Array.from({ length: M }, () => 0.01 + r() * 0.05);
    const w = repackBinaryOneBit(ctx, encodeOneBit(signs, M, K), M, K, h);
    const x = randomNormal(r, B * K);
    const prep = prepareBinaryActivations(ctx, x, B, K, { colScale: g });
    const y = binaryGemm(ctx, w, quantizeActivationsI8(ctx, prep.xs, B, K));
    for (let b = 0; b < B; b++) {
      let amax = 0;
      for (let j = 0; j < K; j++) amax = Math.max(amax, Math.abs(prep.xs[b * K + j]!));
      for (let o = 0; o < M; o++) {
        let exact = 0;
        for (let j = 0; j < K; j++) exact += signs[o * K + j]! * g[j]! * x[b * K + j]!;
        exact *= h[o]!;
        const tol = (h[o]! * K * amax) / 254 + 1e-6 * Math.abs(exact);
        expect(Math.abs(y[b * M + o]! - exact), `b=${b} o=${o}`).toBeLessThanOrEqual(tol);
      }
    }
  });
});

describe('binary binding argument checks', () => {
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
  const bits = new Uint8Array(b1BitsBytes(M, K));
  const good = {
    binaryGemm: [h, bits, new Float32Array(32), M, K, 1, new Int8Array(B * K), new Float32Array(B), new Int32Array(B), B, null, new Float32Array(B * M)],
    binaryPrep: [h, new Float32Array(B * K), B, K, null, new Float32Array(K), new Float32Array(B * K), new Float32Array(B)],
    packBinaryFromSigns: [h, new Int8Array(M * K), M, K, new Uint8Array(b1BitsBytes(M, K))],
    unpackBinaryToSigns: [bits, M, K, new Int8Array(M * K)],
    repackBinary: [h, 'q1_0', new Uint8Array(M * (K / 128) * 18), M, K, new Uint8Array(b1BitsBytes(M, K)), new Float32Array(32)],
    repackBinaryF32: [h, new Float32Array(M * K), M, K, new Uint8Array(b1BitsBytes(M, K))],
  } satisfies Record<string, unknown[]>;

  it.each(Object.keys(good))('%s accepts well-formed arguments', (name) => {
    expect(() => binding<Fn>(name)(...good[name as keyof typeof good])).not.toThrow();
  });

  const substitutes: unknown[] = [undefined, null, {}, 'x', -1, 1.5, NaN, 2 ** 40, 10n, new Float64Array(4), new Uint8Array(3), new Int8Array(1), new Float32Array(1)];
  // Arguments that may be null / undefined.
  const optional: Record<string, number[]> = { binaryGemm: [10], binaryPrep: [4, 5] };
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

  it('rejects K not a multiple of 64, block scale mode, mismatched lengths and unknown formats', () => {
    const g = good.binaryGemm;
    const gemm = binding<Fn>('binaryGemm');
    expect(() => gemm(...g.map((v, j) => (j === 4 ? 96 : v)))).toThrow(/multiple of 64/);
    expect(() => gemm(...g.map((v, j) => (j === 5 ? 2 : v)))).toThrow(/block scales/);
    expect(() => gemm(...g.map((v, j) => (j === 11 ? new Float32Array(B * M + 1) : v)))).toThrow(RangeError);
    expect(() => gemm(...g.map((v, j) => (j === 2 ? new Float32Array(17) : v)))).toThrow(RangeError);
    expect(() => gemm(...g.map((v, j) => (j === 5 ? 0 : v)))).toThrow(/scales has 32 elements, expected 1/);
    expect(() => gemm(...g.map((v, j) => (j === 5 ? 0 : j === 2 ? new Float32Array(1) : v)))).not.toThrow();
    const repack = binding<Fn>('repackBinary');
    expect(() => repack(...good.repackBinary.map((v, j) => (j === 1 ? 'q4_0' : v)))).toThrow(/not one of q1_0, onebit/);
    expect(() => repack(...good.repackBinary.map((v, j) => (j === 4 ? 64 : v)))).toThrow(RangeError);
    expect(() => repack(...good.repackBinary.map((v, j) => (j === 6 ? undefined : v)))).toThrow(TypeError);
  });

  it('wrapper rejects mismatched K between weights and activations', () => {
    const w = packBinary(ctx, new Int8Array(16 * 64), 16, 64);
    expect(() => binaryGemm(ctx, w, refActQuantI8(new Float32Array(128), 1, 128))).toThrow(/K = 128/);
  });
});
