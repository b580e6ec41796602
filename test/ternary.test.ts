import { describe, expect, it } from 'vitest';

import { decodeI2S, decodeTQ1, decodeTQ2, encodeI2S, encodeTQ1, encodeTQ2 } from '../lib/format/ternary.js';
import {
  ScaleMode,
  packTernary,
  quantizeActivationsI4,
  quantizeActivationsI8,
  repackTernary,
  repackTernaryF32,
  ternaryGemm,
  unpackTernary,
} from '../lib/kernels/ternary.js';
import type { QuantizedActivations } from '../lib/reference/act_quant.js';
import { refActQuantI8 } from '../lib/reference/act_quant.js';
import { halfToFloat } from '../lib/reference/numeric.js';
import { packT2, refTernaryGemm, scaleCount, t2Tiles, unpackT2 } from '../lib/reference/ternary.js';
import { contextsPerIsa, expectSameBits, expectSameInts, randInt, randomNormal, randomTrits, rng } from './helpers.js';

function randomScales(r: () => number, n: number, zeroProb = 0): Float32Array {
  const s = new Float32Array(n);
  for (let i = 0; i < n; i++) s[i] = r() < zeroProb ? 0 : 0.01 + r();
  return s;
}

function filledActs(B: number, K: number, value: (i: number) => number): QuantizedActivations {
  const q = new Int8Array(B * K);
  const sum = new Int32Array(B);
  for (let i = 0; i < B * K; i++) {
    q[i] = value(i);
    sum[Math.floor(i / K)]! += q[i]!;
  }
  return { q, scale: Float32Array.from({ length: B }, (_, b) => 3 + b), sum, B, K };
}

const modes = [ScaleMode.Tensor, ScaleMode.Row, ScaleMode.Block];
const contexts = contextsPerIsa();

describe('T2R16 packing', () => {
  it('native and reference packers produce identical bytes and round-trip', () => {
    const [, ctx] = contexts[0]!;
    const r = rng(7);
    for (const [M, K] of [[1, 16], [17, 48], [33, 256], [100, 272]] as const) {
      const trits = randomTrits(r, M * K);
      const w = packTernary(ctx, trits, M, K, ScaleMode.Tensor, Float32Array.of(1));
      expectSameInts(w.codes, packT2(trits, M, K), `codes ${M}x${K}`);
      expectSameInts(unpackTernary(w), trits, `native unpack ${M}x${K}`);
      expectSameInts(unpackT2(w.codes, M, K), trits, `reference unpack ${M}x${K}`);
    }
  });
});

describe.each(contexts)('ternaryGemm on %s', (isa, ctx) => {
  const shapes: Array<[number, number, number]> = [
    [1, 16, 1], [15, 48, 2], [16, 256, 3], [17, 272, 5], [33, 512, 8], [100, 768, 13], [64, 2560, 1], [40, 1024, 64],
    [32, 33024, 1], [16, 16384, 2],
  ];
  for (const mode of modes) {
    it.each(shapes)(`matches the reference bit-exactly (${ScaleMode[mode]} scales) M=%i K=%i B=%i`, (M, K, B) => {
      if (mode === ScaleMode.Block && K % 256 !== 0) return;
      const r = rng(M * 31 + K * 7 + B + mode);
      const trits = randomTrits(r, M * K);
      const w = packTernary(ctx, trits, M, K, mode, randomScales(r, scaleCount(M, K, mode), mode === ScaleMode.Block ? 0.1 : 0));
      const a = quantizeActivationsI8(ctx, randomNormal(r, B * K), B, K);
      expectSameBits(ternaryGemm(ctx, w, a), refTernaryGemm(w, a), `${isa} ${M}x${K} B=${B}`);
    });
  }

  it('is exact at the int16-overflow extremes over long K', () => {
    const M = 32;
    const K = 8192;
    for (const t of [1, -1]) {
      const trits = new Int8Array(M * K).fill(t);
      for (const mode of modes) {
        const w = packTernary(ctx, trits, M, K, mode, new Float32Array(scaleCount(M, K, mode)).fill(0.5));
        for (const fill of [() => 127, () => -128, (i: number) => (i & 1 ? 127 : -128)]) {
          const a = filledActs(3, K, fill);
          expectSameBits(ternaryGemm(ctx, w, a), refTernaryGemm(w, a), `${isa} extreme t=${t} ${ScaleMode[mode]}`);
        }
      }
    }
  });

  it('gives zero for all-zero weight rows and zero activations', () => {
    const M = 20;
    const K = 512;
    const w = packTernary(ctx, new Int8Array(M * K), M, K, ScaleMode.Row, new Float32Array(t2Tiles(M) * 16).fill(2));
    const a = quantizeActivationsI8(ctx, randomNormal(rng(3), 2 * K), 2, K);
    expect(Array.from(ternaryGemm(ctx, w, a)).every((v) => v === 0)).toBe(true);
    const w2 = packTernary(ctx, randomTrits(rng(4), M * K), M, K, ScaleMode.Tensor, Float32Array.of(1));
    const z = quantizeActivationsI8(ctx, new Float32Array(K), 1, K);
    expect(Array.from(ternaryGemm(ctx, w2, z)).every((v) => v === 0)).toBe(true);
  });

  it('runs int4 activations (BitNet a4.8) through the same kernel', () => {
    const r = rng(11);
    const M = 48;
    const K = 1024;
    const w = packTernary(ctx, randomTrits(r, M * K), M, K, ScaleMode.Tensor, Float32Array.of(0.7));
    const a = quantizeActivationsI4(ctx, randomNormal(r, 4 * K), 4, K);
    expectSameBits(ternaryGemm(ctx, w, a), refTernaryGemm(w, a), `${isa} int4`);
  });

  it('approximates the float product within the int8 quantization error', () => {
    const r = rng(12);
    const M = 64;
    const K = 2560;
    const trits = randomTrits(r, M * K);
    const x = randomNormal(r, K);
    const gamma = 0.8;
    const y = ternaryGemm(ctx, packTernary(ctx, trits, M, K, ScaleMode.Tensor, Float32Array.of(gamma)), quantizeActivationsI8(ctx, x, 1, K));
    const amax = x.reduce((m, v) => Math.max(m, Math.abs(v)), 0);
    for (let m = 0; m < M; m++) {
      let exact = 0;
      let nnz = 0;
      for (let k = 0; k < K; k++) {
        exact += trits[m * K + k]! * x[k]! * gamma;
        nnz += trits[m * K + k] !== 0 ? 1 : 0;
      }
      // Each code is off by at most half a step (amax/254); the errors add up at most linearly.
      expect(Math.abs(y[m]! - exact)).toBeLessThanOrEqual((gamma * nnz * amax) / 254 + 1e-4);
    }
  });
});

describe('repacking file layouts into T2R16', () => {
  const [, ctx] = contexts[contexts.length - 1]!;
  const r = rng(99);

  it('I2_S: trits and the tensor scale survive, and the GEMM equals the reference on decoded trits', () => {
    for (const [M, K] of [[2, 64], [16, 128], [40, 384], [33, 2560]] as const) {
      const trits = randomTrits(r, M * K);
      const file = encodeI2S(trits, M, K, 0.0625);
      expectSameInts(decodeI2S(file, M, K).trits, trits, 'TS codec');
      const w = repackTernary(ctx, 'i2_s', file, M, K);
      expect(w.scaleMode).toBe(ScaleMode.Tensor);
      expect(w.scales[0]).toBe(0.0625);
      expectSameInts(unpackTernary(w), trits, `i2_s ${M}x${K}`);
    }
  });

  it('I2_S: the unused code 3 decodes to 0 as in bitnet.cpp', () => {
    const file = new Uint8Array(16 * 128 / 4 + 32).fill(0xff);
    new DataView(file.buffer).setFloat32(16 * 128 / 4, 1, true);
    const w = repackTernary(ctx, 'i2_s', file, 16, 128);
    expect(Array.from(unpackTernary(w)).every((v) => v === 0)).toBe(true);
  });

  for (const type of ['tq2_0', 'tq1_0'] as const) {
    const encode = type === 'tq2_0' ? encodeTQ2 : encodeTQ1;
    const decode = type === 'tq2_0' ? decodeTQ2 : decodeTQ1;

    it(`${type}: trits and block scales survive (varied scales → block mode)`, () => {
      for (const [M, K] of [[1, 512], [17, 512], [40, 2560]] as const) {
        const trits = randomTrits(r, M * K);
        const bs = Float32Array.from({ length: M * (K / 256) }, () => halfToFloat(0x2000 + randInt(r, 0, 4000)));
        const file = encode(trits, M, K, bs);
        const dec = decode(file, M, K);
        expectSameInts(dec.trits, trits, `${type} TS codec`);
        expectSameBits(dec.blockScales, bs, `${type} TS codec scales`);
        const w = repackTernary(ctx, type, file, M, K);
        expect(w.scaleMode).toBe(ScaleMode.Block);
        expectSameInts(unpackTernary(w), trits, `${type} ${M}x${K}`);
        const nb = K / 256;
        for (let m = 0; m < M; m++)
          for (let j = 0; j < nb; j++)
            expect(w.scales[(Math.floor(m / 16) * nb + j) * 16 + (m % 16)]).toBe(bs[m * nb + j]);
      }
    });

    it(`${type}: uniform block scales collapse to one tensor scale with identical results`, () => {
      const M = 24;
      const K = 768;
      const trits = randomTrits(r, M * K);
      const file = encode(trits, M, K, new Float32Array(M * 3).fill(0.0625));
      const w = repackTernary(ctx, type, file, M, K);
      expect(w.scaleMode).toBe(ScaleMode.Tensor);
      expect(w.scales[0]).toBe(0.0625);
      const a = refActQuantI8(randomNormal(r, 2 * K), 2, K);
      const wBlock = { ...w, scaleMode: ScaleMode.Block, scales: new Float32Array(scaleCount(M, K, ScaleMode.Block)).fill(0.0625) };
      const yT = ternaryGemm(ctx, w, a);
      const yB = refTernaryGemm(wBlock, a);
      for (let i = 0; i < yT.length; i++) expect(yT[i]).toBeCloseTo(yB[i]!, 4);
    });
  }

  it('TQ2_0: an invalid code 3 is a ModelFormatError naming the tensor', () => {
    const file = encodeTQ2(new Int8Array(256), 1, 256, Float32Array.of(1));
    file[5] = 0xff;
    expect(() => repackTernary(ctx, 'tq2_0', file, 1, 256, 'blk.0.attn_q.weight')).toThrow(/blk\.0\.attn_q\.weight: 4 invalid tq2_0 codes/);
  });

  it('the same trits as I2_S, TQ2_0 and TQ1_0 give identical GEMM results', () => {
    const M = 48;
    const K = 1024;
    const trits = randomTrits(r, M * K);
    const a = refActQuantI8(randomNormal(r, 3 * K), 3, K);
    const scale = 0.0625;
    const bs = new Float32Array(M * (K / 256)).fill(scale);
    const outs = [
      ternaryGemm(ctx, repackTernary(ctx, 'i2_s', encodeI2S(trits, M, K, scale), M, K), a),
      ternaryGemm(ctx, repackTernary(ctx, 'tq2_0', encodeTQ2(trits, M, K, bs), M, K), a),
      ternaryGemm(ctx, repackTernary(ctx, 'tq1_0', encodeTQ1(trits, M, K, bs), M, K), a),
    ];
    expectSameBits(outs[1]!, outs[0]!, 'tq2_0 vs i2_s');
    expectSameBits(outs[2]!, outs[0]!, 'tq1_0 vs i2_s');
  });

  it('float weights ternarize by absmean and keep gamma as the tensor scale', () => {
    const M = 20;
    const K = 64;
    const trits = randomTrits(r, M * K);
    const gamma = 0.37;
    const wf = Float32Array.from(trits, (t) => t * gamma * (0.9 + 0.2 * r()));
    const w = repackTernaryF32(ctx, wf, M, K, gamma);
    expectSameInts(unpackTernary(w), trits, 'f32 ternarize');
    expect(w.scales[0]).toBeCloseTo(gamma, 6);
  });
});
