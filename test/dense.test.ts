import { describe, expect, it } from 'vitest';

import { KernelContext } from '../lib/kernels/context.js';
import {
  f16Gemm,
  f16GetRows,
  f16tGemm,
  f16tGetRows,
  q4Gemm,
  q4GetRows,
  q8Gemm,
  q8GetRows,
  repackF16T,
  repackQ4,
  repackQ8,
  unpackQ4ToQ4_0,
  unpackQ8ToQ8_0,
} from '../lib/kernels/dense.js';
import { quantizeActivationsI8 } from '../lib/kernels/ternary.js';
import { ModelFormatError } from '../lib/errors.js';
import { binding } from '../lib/native.js';
import { type QuantizedActivations, allocActivations } from '../lib/reference/act_quant.js';
import {
  F16T_CHUNK,
  type F16Matrix,
  type F16TMatrix,
  Q4_0_BLOCK_BYTES,
  Q8_0_BLOCK_BYTES,
  q4Bytes,
  q4_0Bytes,
  q8Bytes,
  q8_0Bytes,
  f16tElems,
  refF16Gemm,
  refF16GetRows,
  refF16TGemm,
  refF16TGetRows,
  refRepackF16T,
  refUnpackF16T,
  refQ4Gemm,
  refQ4GetRows,
  refQ8Gemm,
  refQ8GetRows,
  refQuantizeQ4,
  refQuantizeQ8,
  refRepackQ4FromQ4_0,
  refRepackQ8FromQ8_0,
  refUnpackQ4ToQ4_0,
  refUnpackQ8ToQ8_0,
} from '../lib/reference/dense.js';
import { floatToHalf, halfToFloat } from '../lib/reference/numeric.js';
import { contextsPerIsa, expectSameBits, expectSameInts, randInt, randomNormal, rng } from './helpers.js';

type Kind = 'normal' | 'extreme' | 'subnormal' | 'mixed';

function randomHalves(r: () => number, n: number, kind: Kind): Uint16Array {
  const h = new Uint16Array(n);
  for (let i = 0; i < n; i++) {
    const k = kind === 'mixed' ? (['normal', 'extreme', 'subnormal'] as const)[randInt(r, 0, 2)] : kind;
    if (k === 'extreme') h[i] = r() < 0.5 ? 0x7bff : 0xfbff; // ±65504
    else if (k === 'subnormal') h[i] = randInt(r, 1, 0x3ff) | (r() < 0.5 ? 0x8000 : 0);
    else h[i] = floatToHalf(randomNormal(r, 1, 0.05)[0]!);
  }
  return h;
}

/** GGUF Q8_0 bytes: random codes over the full int8 range and random scales (some zero / subnormal). */
function randomQ8_0(r: () => number, M: number, K: number, codes?: number): Uint8Array {
  const src = new Uint8Array(q8_0Bytes(M, K));
  for (let b = 0; b < M * (K / 32); b++) {
    const off = b * Q8_0_BLOCK_BYTES;
    const u = r();
    const d = u < 0.05 ? 0 : u < 0.1 ? randInt(r, 1, 0x3ff) : floatToHalf((0.5 + r()) * (r() < 0.5 ? 1e-3 : 2));
    src[off] = d & 0xff;
    src[off + 1] = d >> 8;
    for (let i = 0; i < 32; i++) src[off + 2 + i] = (codes ?? randInt(r, -128, 127)) & 0xff;
  }
  return src;
}

type Q4Fill = 'random' | 'zeros' | 'max' | 'min' | 'smallD';

/** GGUF Q4_0 bytes: random nibbles and scales (zero, subnormal, negative, ±65504 for 'max'), some all-zero rows. */
function randomQ4_0(r: () => number, M: number, K: number, fill: Q4Fill = 'random'): Uint8Array {
  const src = new Uint8Array(q4_0Bytes(M, K));
  const nb = K / 32;
  for (let m = 0; m < M; m++) {
    const zeroRow = fill === 'random' && r() < 0.1;
    for (let j = 0; j < nb; j++) {
      const off = (m * nb + j) * Q4_0_BLOCK_BYTES;
      const u = r();
      let d = fill === 'max' || fill === 'min' ? (r() < 0.5 ? 0x7bff : 0xfbff)
        : fill === 'smallD' || u < 0.1 ? randInt(r, 0, 0x3ff) | (r() < 0.5 ? 0x8000 : 0)
          : floatToHalf((r() - 0.5) * (r() < 0.5 ? 1e-3 : 4));
      if (zeroRow || fill === 'zeros' || u < 0.03) d = 0;
      src[off] = d & 0xff;
      src[off + 1] = d >> 8;
      for (let i = 0; i < 16; i++) {
        const lo = fill === 'zeros' ? 8 : fill === 'min' ? 0 : fill === 'max' ? (i % 2 ? 15 : 0) : randInt(r, 0, 15);
        const hi = fill === 'zeros' ? 8 : fill === 'min' ? 0 : fill === 'max' ? (i % 3 ? 0 : 15) : randInt(r, 0, 15);
        src[off + 2 + i] = lo | (hi << 4);
      }
    }
  }
  return src;
}

function randomActs(r: () => number, B: number, K: number, kind: 'random' | 'extreme'): QuantizedActivations {
  const a = allocActivations(B, K);
  for (let i = 0; i < B * K; i++) a.q[i] = kind === 'extreme' ? (i % 3 === 0 ? 127 : -128) : randInt(r, -128, 127);
  for (let b = 0; b < B; b++) {
    a.scale[b] = Math.fround(0.5 + 100 * r());
    let s = 0;
    for (let k = 0; k < K; k++) s += a.q[b * K + k]!;
    a.sum[b] = s;
  }
  return a;
}

const f16Shapes: Array<[number, number, number]> = [
  [1, 1, 1], [15, 7, 3], [17, 32, 13], [33, 96, 1], [100, 250, 5], [16, 2560, 1], [17, 2560, 9], [5, 33, 64],
];

describe.each(contextsPerIsa())('dense kernels on %s', (isa, ctx) => {
  it.each(f16Shapes)('f16Gemm M=%i K=%i B=%i is within the documented bound of the float64 reference', (M, K, B) => {
    const r = rng(M * 131 + K * 7 + B);
    for (const kind of ['normal', 'mixed'] as const) {
      const w: F16Matrix = { data: randomHalves(r, M * K, kind), M, K };
      const x = randomNormal(r, B * K, kind === 'mixed' ? 1e-3 : 1);
      const got = f16Gemm(ctx, w, x, B);
      const { y, bound } = refF16Gemm(w, x, B);
      for (let i = 0; i < y.length; i++) {
        const err = Math.abs(got[i]! - y[i]!);
        if (!(err <= bound[i]!)) expect.fail(`${isa} ${kind} element ${i}: ${got[i]} vs ${y[i]} (bound ${bound[i]})`);
      }
    }
  });

  it('f16Gemm on extreme and subnormal halves, into a reused larger output', () => {
    const r = rng(5);
    for (const kind of ['extreme', 'subnormal'] as const) {
      const M = 19;
      const K = 300;
      const B = 2;
      const w: F16Matrix = { data: randomHalves(r, M * K, kind), M, K };
      const x = randomNormal(r, B * K, kind === 'extreme' ? 1e-3 : 1);
      const big = new Float32Array(B * M + 10).fill(-7);
      const got = f16Gemm(ctx, w, x, B, big);
      expect(got.length).toBe(B * M);
      expect(big[B * M]).toBe(-7);
      const { y, bound } = refF16Gemm(w, x, B);
      for (let i = 0; i < y.length; i++) expect(Math.abs(got[i]! - y[i]!)).toBeLessThanOrEqual(bound[i]!);
    }
  });

  it('f16GetRows is exact', () => {
    const r = rng(11);
    const M = 40;
    const K = 37;
    const w: F16Matrix = { data: randomHalves(r, M * K, 'mixed'), M, K };
    const rows = [0, 39, 3, 3, 17];
    expectSameBits(f16GetRows(ctx, w, rows), refF16GetRows(w, rows), `${isa} f16GetRows`);
    expect(f16GetRows(ctx, w, []).length).toBe(0);
  });

  // F16T32 (the F16 lm_head): 32-row tiles, partial last tiles, K off the 16-column chunk, every token group size.
  const f16tShapes: Array<[number, number, number]> = [
    [1, 1, 1], [31, 7, 3], [33, 32, 13], [64, 96, 1], [70, 250, 8], [40, 2560, 1], [97, 2560, 9], [5, 33, 20], [130, 17, 2],
  ];
  it.each(f16tShapes)('f16tGemm M=%i K=%i B=%i is within the f16 bound of the float64 reference', (M, K, B) => {
    const r = rng(M * 137 + K * 11 + B);
    for (const kind of ['normal', 'mixed', 'extreme', 'subnormal'] as const) {
      const rows: F16Matrix = { data: randomHalves(r, M * K, kind), M, K };
      const w = repackF16T(ctx, rows.data, M, K);
      const x = randomNormal(r, B * K, kind === 'normal' ? 1 : 1e-3);
      const got = f16tGemm(ctx, w, x, B);
      const { y, bound } = refF16TGemm(w, x, B);
      for (let i = 0; i < y.length; i++) {
        const err = Math.abs(got[i]! - y[i]!);
        if (!(err <= bound[i]!)) expect.fail(`${isa} ${kind} element ${i}: ${got[i]} vs ${y[i]} (bound ${bound[i]})`);
      }
    }
  });

  it("f16tGemm is batch-invariant: a token's outputs are the same bits alone, at any index of any batch", () => {
    const r = rng(77);
    const M = 100;
    const K = 301;
    const w = repackF16T(ctx, randomHalves(r, M * K, 'normal'), M, K);
    const B = 19;
    const x = randomNormal(r, B * K, 1);
    const all = f16tGemm(ctx, w, x, B);
    for (const b of [0, 7, 8, 9, 18]) {
      const alone = f16tGemm(ctx, w, x.subarray(b * K, (b + 1) * K), 1);
      expectSameBits(all.subarray(b * M, (b + 1) * M), alone, `${isa} token ${b} alone vs in B = ${B}`);
      // The same token first in a batch of 3 and last in a batch of 10.
      for (const [n, at] of [[3, 0], [10, 9]] as const) {
        const xs = new Float32Array(n * K);
        for (let i = 0; i < n; i++) xs.set(x.subarray(((b + i + 1) % B) * K, ((b + i + 1) % B + 1) * K), i * K);
        xs.set(x.subarray(b * K, (b + 1) * K), at * K);
        const y = f16tGemm(ctx, w, xs, n);
        expectSameBits(y.subarray(at * M, (at + 1) * M), alone, `${isa} token ${b} at ${at} of ${n}`);
      }
    }
  });

  if (isa === 'scalar')
    it('scalar f16tGemm sums each chunk of 16 columns from zero, then adds it to the total (float ops, no FMA)', () => {
      const r = rng(78);
      const M = 45;
      const K = 70;
      const B = 3;
      const rows = randomHalves(r, M * K, 'normal');
      const w = repackF16T(ctx, rows, M, K);
      const x = randomNormal(r, B * K, 1);
      const got = f16tGemm(ctx, w, x, B);
      const want = new Float32Array(B * M);
      for (let b = 0; b < B; b++)
        for (let m = 0; m < M; m++) {
          let tot = 0;
          for (let k0 = 0; k0 < K; k0 += F16T_CHUNK) {
            let s = 0;
            for (let k = k0; k < Math.min(K, k0 + F16T_CHUNK); k++) s = Math.fround(s + Math.fround(halfToFloat(rows[m * K + k]!) * x[b * K + k]!));
            tot = Math.fround(tot + s);
          }
          want[b * M + m] = tot;
        }
      expectSameBits(got, want, 'scalar f16t summation order');
    });

  it('repackF16T moves the half bits like the reference, round-trips, and rejects Inf / NaN by name', () => {
    const r = rng(79);
    for (const [M, K] of [[1, 1], [31, 9], [32, 16], [70, 33]] as const) {
      const src = randomHalves(r, M * K, 'mixed');
      const w = repackF16T(ctx, src, M, K);
      expect(w.data.length).toBe(f16tElems(M, K));
      expectSameInts(w.data, refRepackF16T(src, M, K).w.data, `${isa} F16T32 ${M}x${K}`);
      expectSameInts(refUnpackF16T(w).data, src, `${isa} F16T32 round trip ${M}x${K}`);
    }
    const bad = randomHalves(r, 40 * 8, 'normal');
    bad[17] = 0x7c00;
    bad[300] = 0x7e01;
    expect(() => repackF16T(ctx, bad, 40, 8, 'output.weight')).toThrow(ModelFormatError);
    expect(() => repackF16T(ctx, bad, 40, 8, 'output.weight')).toThrow(/output\.weight: 2 F16 values are Inf or NaN/);
    expect(refRepackF16T(bad, 40, 8).invalid).toBe(2);
  });

  it('f16tGetRows is exact and matches the rows it was packed from', () => {
    const r = rng(80);
    const M = 70;
    const K = 37;
    const rows: F16Matrix = { data: randomHalves(r, M * K, 'mixed'), M, K };
    const w: F16TMatrix = repackF16T(ctx, rows.data, M, K);
    const ids = [0, 69, 31, 32, 3, 3, 64];
    expectSameBits(f16tGetRows(ctx, w, ids), refF16TGetRows(w, ids), `${isa} f16tGetRows`);
    expectSameBits(f16tGetRows(ctx, w, ids), refF16GetRows(rows, ids), `${isa} f16tGetRows vs the GGUF rows`);
    expect(f16tGetRows(ctx, w, []).length).toBe(0);
    expect(() => f16tGetRows(ctx, w, [70])).toThrow(RangeError);
    expect(() => f16tGetRows(ctx, w, Int32Array.of(0, -1))).toThrow(RangeError);
  });

  it.each([[1, 32], [15, 96], [17, 64], [33, 2560], [100, 32]])('Q8_0 M=%i K=%i repacks like the reference and round-trips', (M, K) => {
    const src = randomQ8_0(rng(M + K), M, K);
    const w = repackQ8(ctx, 'q8_0', src, M, K);
    expectSameInts(w.data, refRepackQ8FromQ8_0(src, M, K).w.data, `${isa} Q8R16 bytes`);
    expectSameInts(unpackQ8ToQ8_0(w), src, `${isa} Q8_0 round trip`);
    expectSameInts(refUnpackQ8ToQ8_0(w), src, 'reference round trip');
  });

  it.each([[1, 32, 1], [15, 96, 3], [17, 64, 13], [33, 2560, 1], [100, 256, 64], [16, 128, 7]])(
    'q8Gemm M=%i K=%i B=%i matches the reference bit-exactly', (M, K, B) => {
      const r = rng(M * 3 + K + B);
      const w = repackQ8(ctx, 'q8_0', randomQ8_0(r, M, K), M, K);
      for (const kind of ['random', 'extreme'] as const) {
        const a = randomActs(r, B, K, kind);
        expectSameBits(q8Gemm(ctx, w, a), refQ8Gemm(w, a), `${isa} q8Gemm ${kind}`);
      }
      const x = randomNormal(r, B * K, 2);
      const a = quantizeActivationsI8(ctx, x, B, K);
      expectSameBits(q8Gemm(ctx, w, a), refQ8Gemm(w, a), `${isa} q8Gemm from act_quant_i8`);
    });

  it('q8Gemm with saturating codes (all -128 weights and activations, long K)', () => {
    const M = 20;
    const K = 4096;
    const w = repackQ8(ctx, 'q8_0', randomQ8_0(rng(9), M, K, -128), M, K);
    const a = allocActivations(3, K);
    a.q.fill(-128);
    a.scale.fill(1);
    a.sum.fill(-128 * K);
    expectSameBits(q8Gemm(ctx, w, a), refQ8Gemm(w, a), `${isa} q8Gemm -128`);
  });

  it('q8Gemm accepts reused larger activation buffers', () => {
    const r = rng(21);
    const M = 18;
    const K = 64;
    const w = repackQ8(ctx, 'q8_0', randomQ8_0(r, M, K), M, K);
    const big = randomActs(r, 5, K, 'random');
    const a = { ...big, B: 2 };
    expectSameBits(q8Gemm(ctx, w, a), refQ8Gemm(w, a), `${isa} q8Gemm B=2 of 5`);
  });

  it('q8GetRows dequantizes exactly', () => {
    const M = 35;
    const K = 96;
    const w = repackQ8(ctx, 'q8_0', randomQ8_0(rng(4), M, K), M, K);
    const rows = Int32Array.of(34, 0, 16, 15, 17, 34);
    expectSameBits(q8GetRows(ctx, w, rows), refQ8GetRows(w, rows), `${isa} q8GetRows`);
  });

  it('quantizes F16 and F32 rows like the reference', () => {
    const r = rng(77);
    const M = 19;
    const K = 96;
    const h = new Uint16Array(M * K);
    for (let i = 0; i < h.length; i++) {
      const j = Math.floor((i % K) / 32);
      h[i] = floatToHalf(randomNormal(r, 1, j === 0 ? 0.02 : j === 1 ? 1e-5 : 300)[0]!);
    }
    for (let k = 32; k < 64; k++) h[k] = 0; // an all-zero block
    const fromHalf = repackQ8(ctx, 'f16', h, M, K);
    expectSameInts(fromHalf.data, refQuantizeQ8(h, M, K).w.data, `${isa} f16 quantization`);
    const f = Float32Array.from(h, halfToFloat);
    const fromFloat = repackQ8(ctx, 'f32', f, M, K);
    expectSameInts(fromFloat.data, fromHalf.data, `${isa} f32 = f16 quantization`);
    const f2 = randomNormal(r, M * K, 5);
    expectSameInts(repackQ8(ctx, 'f32', f2, M, K).data, refQuantizeQ8(f2, M, K).w.data, `${isa} f32 quantization`);
  });

  // ---- q4 ----

  it.each([[1, 32], [15, 96], [17, 64], [33, 2560], [100, 32]])('Q4_0 M=%i K=%i repacks like the reference and round-trips', (M, K) => {
    const src = randomQ4_0(rng(M + K + 1), M, K);
    const w = repackQ4(ctx, 'q4_0', src, M, K);
    expect(w.data.length).toBe(q4Bytes(M, K));
    expectSameInts(w.data, refRepackQ4FromQ4_0(src, M, K).w.data, `${isa} Q4R16 bytes`);
    expectSameInts(unpackQ4ToQ4_0(w), src, `${isa} Q4_0 round trip`);
    expectSameInts(refUnpackQ4ToQ4_0(w), src, 'reference round trip');
  });

  it.each([[1, 32, 1], [15, 96, 3], [17, 64, 13], [33, 2560, 1], [100, 256, 64], [16, 128, 7], [31, 32, 2], [47, 160, 9]])(
    'q4Gemm M=%i K=%i B=%i matches the reference bit-exactly', (M, K, B) => {
      const r = rng(M * 5 + K + B);
      const w = repackQ4(ctx, 'q4_0', randomQ4_0(r, M, K), M, K);
      for (const kind of ['random', 'extreme'] as const) {
        const a = randomActs(r, B, K, kind);
        expectSameBits(q4Gemm(ctx, w, a), refQ4Gemm(w, a), `${isa} q4Gemm ${kind}`);
      }
      const x = randomNormal(r, B * K, 2);
      const a = quantizeActivationsI8(ctx, x, B, K);
      expectSameBits(q4Gemm(ctx, w, a), refQ4Gemm(w, a), `${isa} q4Gemm from act_quant_i8`);
    });

  it.each(['zeros', 'max', 'min', 'smallD'] as const)('q4Gemm on %s weights with saturating activations (±127 / -128, long K)', (fill) => {
    const M = 21;
    const K = 4096;
    const w = repackQ4(ctx, 'q4_0', randomQ4_0(rng(9), M, K, fill), M, K);
    for (const v of [127, -128, 0]) {
      const a = allocActivations(3, K);
      a.q.fill(v);
      a.q[5] = -128; // mixed with the extreme the other way
      a.scale.set([1, 1e-3, 300]);
      expectSameBits(q4Gemm(ctx, w, a), refQ4Gemm(w, a), `${isa} q4Gemm ${fill} ${v}`);
    }
    const a = randomActs(rng(10), 5, K, 'extreme');
    const y = q4Gemm(ctx, w, a);
    expectSameBits(y, refQ4Gemm(w, a), `${isa} q4Gemm ${fill} alternating`);
    if (fill === 'zeros') expect(y.every((v) => v === 0)).toBe(true);
  });

  it('q4Gemm accepts reused larger activation and output buffers', () => {
    const r = rng(22);
    const M = 18;
    const K = 64;
    const w = repackQ4(ctx, 'q4_0', randomQ4_0(r, M, K), M, K);
    const big = randomActs(r, 5, K, 'random');
    const a = { ...big, B: 2 };
    const out = new Float32Array(2 * M + 3).fill(-7);
    const y = q4Gemm(ctx, w, a, out);
    expect(y.length).toBe(2 * M);
    expect(out[2 * M]).toBe(-7);
    expectSameBits(y, refQ4Gemm(w, a), `${isa} q4Gemm B=2 of 5`);
  });

  it('q4GetRows dequantizes exactly', () => {
    const M = 35;
    const K = 96;
    const w = repackQ4(ctx, 'q4_0', randomQ4_0(rng(4), M, K), M, K);
    const rows = Int32Array.of(34, 0, 16, 15, 17, 34);
    expectSameBits(q4GetRows(ctx, w, rows), refQ4GetRows(w, rows), `${isa} q4GetRows`);
    expect(q4GetRows(ctx, w, []).length).toBe(0);
  });

  it('quantizes F16, BF16, F32 and Q8_0 to q4 like the reference', () => {
    const r = rng(78);
    const M = 19;
    const K = 160;
    const h = new Uint16Array(M * K);
    for (let i = 0; i < h.length; i++) {
      const j = Math.floor((i % K) / 32);
      h[i] = floatToHalf(randomNormal(r, 1, [0.02, 1e-5, 300, 1e-7, 1][j]!)[0]!);
    }
    for (let k = 32; k < 64; k++) h[k] = 0; // an all-zero block
    for (let k = 0; k < 32; k++) h[K + k] = floatToHalf(k % 2 ? 0.5 : -0.5); // ±max ties: the first wins
    const fromHalf = repackQ4(ctx, 'f16', h, M, K);
    expectSameInts(fromHalf.data, refQuantizeQ4('f16', h, M, K).w.data, `${isa} f16 q4 quantization`);
    const f = Float32Array.from(h, halfToFloat);
    expectSameInts(repackQ4(ctx, 'f32', f, M, K).data, fromHalf.data, `${isa} f32 = f16 q4 quantization`);
    const f2 = randomNormal(r, M * K, 5);
    expectSameInts(repackQ4(ctx, 'f32', f2, M, K).data, refQuantizeQ4('f32', f2, M, K).w.data, `${isa} f32 q4 quantization`);
    const bf = new Uint16Array(new Uint32Array(f2.buffer).map((v) => v >>> 16));
    expectSameInts(repackQ4(ctx, 'bf16', bf, M, K).data, refQuantizeQ4('bf16', bf, M, K).w.data, `${isa} bf16 q4 quantization`);
    const q8 = randomQ8_0(r, M, K);
    for (let b = 0; b < M * (K / 32); b++) if (q8[b * Q8_0_BLOCK_BYTES + 1]! >= 0x60) q8[b * Q8_0_BLOCK_BYTES + 1] = 0x3c; // keep scales in fp16 range after / 8
    const fromQ8 = repackQ4(ctx, 'q8_0', q8, M, K);
    expectSameInts(fromQ8.data, refQuantizeQ4('q8_0', q8, M, K).w.data, `${isa} q8_0 q4 quantization`);
    // Codes land within |d|/2 of the value over the block's range [-8.5 d, 7.5 d] (d signed), and the
    // block's first extreme on code -8 exactly.
    const back = q4GetRows(ctx, fromHalf, Int32Array.from({ length: M }, (_, i) => i));
    const q40 = unpackQ4ToQ4_0(fromHalf);
    let checked = 0;
    for (let m = 0; m < M; m++)
      for (let j = 0; j < K / 32; j++) {
        const off = (m * (K / 32) + j) * Q4_0_BLOCK_BYTES;
        const d = halfToFloat(q40[off]! | (q40[off + 1]! << 8));
        if (d === 0) continue;
        let at = m * K + j * 32;
        for (let i = 1; i < 32; i++) if (Math.abs(f[m * K + j * 32 + i]!) > Math.abs(f[at]!)) at = m * K + j * 32 + i;
        if (Math.abs(f[at]! / d + 8) < 0.5) expect(back[at]! / d).toBe(-8);
        for (let i = 0; i < 32; i++) {
          const k = m * K + j * 32 + i;
          const v = f[k]! / d;
          if (v >= -8.5 && v <= 7.5) {
            expect(Math.abs(f[k]! - back[k]!)).toBeLessThanOrEqual(Math.abs(d) / 2);
            checked++;
          }
        }
      }
    expect(checked).toBeGreaterThan(M * K * 0.8);
  });

  it('rejects non-finite q4 blocks with ModelFormatError', () => {
    const f = new Float32Array(64).fill(1);
    f[40] = Number.NaN;
    expect(() => repackQ4(ctx, 'f32', f, 1, 64, 'output.weight')).toThrow(ModelFormatError);
    expect(() => repackQ4(ctx, 'f32', Float32Array.of(...new Array<number>(32).fill(1e9)), 1, 32)).toThrow(/past fp16/);
    const q = new Uint8Array(q4_0Bytes(1, 32));
    q[1] = 0x7c; // d = +Inf
    expect(() => repackQ4(ctx, 'q4_0', q, 1, 32)).toThrow(ModelFormatError);
    expect(() => repackQ4(ctx, 'bf16', new Uint16Array(32).fill(0x7fc0), 1, 32)).toThrow(ModelFormatError);
    expect(() => repackQ4(ctx, 'f16', new Float32Array(32), 1, 32)).toThrow(TypeError);
    expect(refQuantizeQ4('f32', f, 1, 64).invalid).toBe(1);
  });

  it('rejects non-finite blocks with ModelFormatError', () => {
    const f = new Float32Array(64).fill(1);
    f[40] = Number.NaN;
    expect(() => repackQ8(ctx, 'f32', f, 1, 64, 'output.weight')).toThrow(ModelFormatError);
    expect(() => repackQ8(ctx, 'f32', Float32Array.of(...new Array<number>(32).fill(1e9)), 1, 32)).toThrow(/non-finite/);
    const q = new Uint8Array(q8_0Bytes(1, 32));
    q[1] = 0x7c; // d = +Inf
    expect(() => repackQ8(ctx, 'q8_0', q, 1, 32)).toThrow(ModelFormatError);
    expect(refQuantizeQ8(f, 1, 64).invalid).toBe(1);
  });
});

// ---- accuracy: what the q8 / q4 heads cost against the F16 weights ----

describe('q8 / q4 logit error against F16 weights', () => {
  // Gaussian rows (per-row scale 0.01..0.03) and unit-normal activations: relative L2 error of the logits
  // vs the float64 product with the F16 weights. Measured (M = 16384, K = 2560, 8 tokens): q8 weights
  // alone 5.4e-3, q8 kernel with int8 activations 9.8e-3; q4 weights alone 8.6e-2, q4 kernel 8.6e-2.
  it('q8 stays under 1.5e-2 and q4 under 1e-1 relative L2 error', () => {
    const ctx = new KernelContext({ threads: 2 });
    const r = rng(2024);
    const M = 1024;
    const K = 2560;
    const B = 4;
    const h = new Uint16Array(M * K);
    for (let m = 0; m < M; m++) {
      const row = randomNormal(r, K, 0.01 + 0.02 * r());
      for (let k = 0; k < K; k++) h[m * K + k] = floatToHalf(row[k]!);
    }
    const x = randomNormal(r, B * K, 1);
    const { y: ref } = refF16Gemm({ data: h, M, K }, x, B);
    const a = quantizeActivationsI8(ctx, x, B, K);
    const relErr = (y: Float32Array): number => {
      let e = 0;
      let n = 0;
      for (let i = 0; i < y.length; i++) {
        e += (y[i]! - ref[i]!) ** 2;
        n += ref[i]! ** 2;
      }
      return Math.sqrt(e / n);
    };
    const e8 = relErr(q8Gemm(ctx, repackQ8(ctx, 'f16', h, M, K), a));
    const e4 = relErr(q4Gemm(ctx, repackQ4(ctx, 'f16', h, M, K), a));
    expect(e8).toBeLessThan(1.5e-2);
    expect(e8).toBeGreaterThan(3e-3);
    expect(e4).toBeLessThan(1e-1);
    expect(e4).toBeGreaterThan(5e-2);
  });
});

// ---- garbage arguments: every binding throws TypeError / RangeError and never crashes ----

type Raw = (...args: unknown[]) => unknown;
const raw = (name: string): Raw => binding<Raw>(name);

function expectThrows(fn: () => unknown, type: typeof TypeError | typeof RangeError, what: string): void {
  let err: unknown;
  try {
    fn();
  } catch (e) {
    err = e;
  }
  if (!(err instanceof type)) expect.fail(`${what}: expected ${type.name}, got ${err === undefined ? 'no error' : String(err)}`);
}

describe('dense bindings reject garbage arguments', () => {
  const ctx = new KernelContext({ threads: 2 }).handle;
  const M = 17;
  const K = 64;
  const B = 2;
  const w16 = new Uint16Array(M * K);
  const x = new Float32Array(B * K);
  const y = new Float32Array(B * M);
  const data = new Uint8Array(q8Bytes(M, K));
  const data4 = new Uint8Array(q4Bytes(M, K));
  const q = new Int8Array(B * K);
  const scale = new Float32Array(B).fill(1);
  const sum = new Int32Array(B);
  const rows = Int32Array.of(0, 16);
  const out = new Float32Array(2 * K);

  const valid: Record<string, unknown[]> = {
    f16Gemm: [ctx, w16, M, K, x, B, y],
    f16GetRows: [ctx, w16, M, K, rows, out],
    repackQ8: [ctx, 'f16', w16, M, K, data],
    unpackQ8ToQ8_0: [data, M, K, new Uint8Array(q8_0Bytes(M, K))],
    q8Gemm: [ctx, data, M, K, q, scale, sum, B, y],
    q8GetRows: [ctx, data, M, K, rows, out],
    repackQ4: [ctx, 'f16', w16, M, K, data4],
    unpackQ4ToQ4_0: [data4, M, K, new Uint8Array(q4_0Bytes(M, K))],
    q4Gemm: [ctx, data4, M, K, q, scale, B, y],
    q4GetRows: [ctx, data4, M, K, rows, out],
  };

  it('accepts the valid calls', () => {
    for (const [name, args] of Object.entries(valid)) expect(() => raw(name)(...args), name).not.toThrow();
  });

  it('throws TypeError for wrong types and RangeError for wrong values, argument by argument', () => {
    const junk: unknown[] = [undefined, null, 3.5, -1, Number.NaN, 2 ** 40, 'x', {}, [], new Float64Array(8),
      new Uint8Array(3), new Int8Array(B * K), new Float32Array(0), new Uint16Array(M * K + 1), new Int32Array(1)];
    for (const [name, args] of Object.entries(valid)) {
      for (let i = 0; i < args.length; i++) {
        for (const j of junk) {
          if (j === args[i]) continue;
          const bad = [...args];
          bad[i] = j;
          let err: unknown;
          try {
            raw(name)(...bad);
          } catch (e) {
            err = e;
          }
          // Some substitutions stay valid (e.g. an equal-length array of the right type); the rest must
          // be TypeError or RangeError, never another error or a crash.
          if (err !== undefined && !(err instanceof TypeError) && !(err instanceof RangeError))
            expect.fail(`${name} arg ${i} = ${String(j)}: ${String(err)}`);
        }
      }
      expectThrows(() => raw(name)(), TypeError, `${name}()`);
      expectThrows(() => raw(name)(...args.slice(0, -1)), TypeError, `${name} missing last argument`);
    }
  });

  it('names the offending row id', () => {
    for (const name of ['f16GetRows', 'q8GetRows', 'q4GetRows']) {
      const args = [...valid[name]!];
      args[4] = Int32Array.of(0, 5, M);
      expect(() => raw(name)(...args)).toThrow(RangeError);
      expect(() => raw(name)(...args)).toThrow(/rows\[2\] = 17/);
      args[4] = Int32Array.of(-1, 0);
      expect(() => raw(name)(...args)).toThrow(/rows\[0\] = -1/);
    }
  });

  it('checks shapes, lengths, formats and overlaps', () => {
    expectThrows(() => raw('f16Gemm')(ctx, w16, M, K, x, B, new Float32Array(B * M + 1)), RangeError, 'y too long');
    expectThrows(() => raw('f16Gemm')(ctx, w16, M, K - 1, x, B, y), RangeError, 'w length vs K');
    expectThrows(() => raw('f16Gemm')(ctx, w16, M, K, x, 0, y), RangeError, 'B = 0');
    expectThrows(() => raw('f16Gemm')(ctx, new Int16Array(M * K), M, K, x, B, y), TypeError, 'Int16Array w');
    expectThrows(() => raw('f16Gemm')({}, w16, M, K, x, B, y), TypeError, 'bad context');
    const shared = new Float32Array(B * K + B * M);
    expectThrows(() => raw('f16Gemm')(ctx, w16, M, K, shared.subarray(0, B * K), B, shared.subarray(B * K - 1, B * K - 1 + B * M)),
      RangeError, 'y overlaps x');
    expectThrows(() => raw('q8Gemm')(ctx, data, M, 48, q, scale, sum, B, y), RangeError, 'K % 32');
    expectThrows(() => raw('q8Gemm')(ctx, data, M, K, q, scale, sum, B + 1, y), RangeError, 'B vs lengths');
    expectThrows(() => raw('q8Gemm')(ctx, data.subarray(1), M, K, q, scale, sum, B, y), RangeError, 'short data');
    expectThrows(() => raw('q8Gemm')(ctx, data, M, K, new Uint8Array(B * K), scale, sum, B, y), TypeError, 'Uint8Array q');
    expectThrows(() => raw('repackQ8')(ctx, 'q4_0', w16, M, K, data), RangeError, 'format');
    expectThrows(() => raw('repackQ8')(ctx, 7, w16, M, K, data), TypeError, 'format type');
    expectThrows(() => raw('repackQ8')(ctx, 'f32', w16, M, K, data), TypeError, 'f32 source type');
    expectThrows(() => raw('repackQ8')(ctx, 'q8_0', new Uint8Array(q8_0Bytes(M, K) - 1), M, K, data), RangeError, 'q8_0 length');
    const buf = new Uint8Array(q8Bytes(M, K) + q8_0Bytes(M, K));
    expectThrows(() => raw('repackQ8')(ctx, 'q8_0', buf.subarray(0, q8_0Bytes(M, K)), M, K, buf.subarray(1, 1 + q8Bytes(M, K))),
      RangeError, 'data overlaps src');
    expectThrows(() => raw('unpackQ8ToQ8_0')(data, M, K, new Uint8Array(5)), RangeError, 'dst length');
    expectThrows(() => raw('q4Gemm')(ctx, data4, M, 48, q, scale, B, y), RangeError, 'q4 K % 32');
    expectThrows(() => raw('q4Gemm')(ctx, data4, M, K, q, scale, B + 1, y), RangeError, 'q4 B vs lengths');
    expectThrows(() => raw('q4Gemm')(ctx, data, M, K, q, scale, B, y), RangeError, 'q4 data of the q8 size');
    expectThrows(() => raw('q4Gemm')(ctx, data4, M, K, new Uint8Array(B * K), scale, B, y), TypeError, 'q4 Uint8Array q');
    expectThrows(() => raw('q4Gemm')(ctx, data4, M, K, q, scale, B, new Float32Array(B * M - 1)), RangeError, 'q4 short y');
    const yq = new Float32Array(B * K + B * M);
    const qa = new Int8Array(yq.buffer, 0, B * K);
    expectThrows(() => raw('q4Gemm')(ctx, data4, M, K, qa, scale, B, yq.subarray(B * K / 4 - 1, B * K / 4 - 1 + B * M)), RangeError, 'q4 y overlaps q');
    expectThrows(() => raw('repackQ4')(ctx, 'q4_1', w16, M, K, data4), RangeError, 'q4 format');
    expectThrows(() => raw('repackQ4')(ctx, 'f16', w16, M, K, data), RangeError, 'q4 data length');
    expectThrows(() => raw('repackQ4')(ctx, 'bf16', new Float32Array(M * K), M, K, data4), TypeError, 'bf16 source type');
    expectThrows(() => raw('repackQ4')(ctx, 'q4_0', new Uint8Array(q4_0Bytes(M, K) + 1), M, K, data4), RangeError, 'q4_0 length');
    expectThrows(() => raw('repackQ4')(ctx, 'q8_0', new Uint8Array(q4_0Bytes(M, K)), M, K, data4), RangeError, 'q8_0 length for q4');
    const buf4 = new Uint8Array(q4Bytes(M, K) + q4_0Bytes(M, K));
    expectThrows(() => raw('repackQ4')(ctx, 'q4_0', buf4.subarray(0, q4_0Bytes(M, K)), M, K, buf4.subarray(1, 1 + q4Bytes(M, K))),
      RangeError, 'q4 data overlaps src');
    expectThrows(() => raw('unpackQ4ToQ4_0')(data4, M, K, new Uint8Array(5)), RangeError, 'q4 dst length');
    expect(() => q4GetRows(new KernelContext({ threads: 1 }), { data: data4, M, K }, [0, -1])).toThrow(/rows\[1\] = -1/);
    expect(() => f16GetRows(new KernelContext({ threads: 1 }), { data: w16, M, K }, [0, 1.5])).toThrow(/rows\[1\] = 1.5/);
  });

  it('survives a random argument fuzz', () => {
    const r = rng(1234);
    const pool: unknown[] = [ctx, w16, x, y, data, q, scale, sum, rows, out, 0, 1, 2, 17, 32, 64, -5, 1e9, 0.5,
      Number.POSITIVE_INFINITY, 'f16', 'q8_0', 'f32', 'bf16', 'q4_0', data4, undefined, null, {}, new Uint8Array(0), new Float32Array(1)];
    for (let it = 0; it < 3000; it++) {
      const name = Object.keys(valid)[randInt(r, 0, Object.keys(valid).length - 1)]!;
      const args = [...valid[name]!];
      for (let c = randInt(r, 1, 3); c > 0; c--) args[randInt(r, 0, args.length - 1)] = pool[randInt(r, 0, pool.length - 1)];
      try {
        raw(name)(...args);
      } catch (e) {
        if (!(e instanceof TypeError) && !(e instanceof RangeError)) expect.fail(`${name}(${args.map(String).join(', ')}): ${String(e)}`);
      }
    }
  });
});
