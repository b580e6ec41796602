import { describe, expect, it } from 'vitest';

import { lutLayout, packTernaryLut, ternaryLutGemm, ternaryToLut, unpackTernaryLut } from '../lib/kernels/lut.js';
import { ScaleMode, packTernary, quantizeActivationsI8, ternaryGemm } from '../lib/kernels/ternary.js';
import { binding } from '../lib/native.js';
import type { QuantizedActivations } from '../lib/reference/act_quant.js';
import {
  type TernaryLutMatrix,
  lutGroups,
  lutTableBytes,
  lutTiles,
  lutWeightBytes,
  packLut,
  packLutFromT2,
  refLutBuildTables,
  refLutGemm,
  unpackLut,
} from '../lib/reference/lut.js';
import { packT2, refTernaryGemm, scaleCount } from '../lib/reference/ternary.js';
import { contextsPerIsa, expectSameBits, expectSameInts, randInt, randomNormal, randomTrits, rng } from './helpers.js';

const contexts = contextsPerIsa();
const modes = [ScaleMode.Tensor, ScaleMode.Row, ScaleMode.Block];

function randomScales(r: () => number, n: number): Float32Array {
  const s = new Float32Array(n);
  for (let i = 0; i < n; i++) s[i] = r() < 0.1 ? 0 : (r() < 0.2 ? -1 : 1) * (0.01 + r());
  return s;
}

function filledActs(B: number, K: number, value: (i: number) => number): QuantizedActivations {
  const q = new Int8Array(B * K);
  const sum = new Int32Array(B);
  for (let i = 0; i < B * K; i++) {
    q[i] = value(i);
    sum[Math.floor(i / K)]! += q[i]!;
  }
  return { q, scale: Float32Array.from({ length: B }, (_, b) => 0.75 + 2 * b), sum, B, K };
}

describe('TL3 layout and packing', () => {
  const [, ctx] = contexts[0]!;

  it('native and reference agree on the layout sizes', () => {
    for (const [M, K] of [[1, 1], [64, 256], [65, 257], [6912, 2560], [2560, 6912], [17, 1000]] as const) {
      const l = lutLayout(M, K);
      expect(l).toEqual({
        rows: 64, tiles: lutTiles(M), blocks: Math.ceil(K / 256), groups: lutGroups(K),
        weightBytes: lutWeightBytes(M, K), tableBytes: lutTableBytes(K),
      });
    }
    // 1.6875 bits per weight on full blocks and tiles.
    expect(lutWeightBytes(6912, 2560) * 8 / (6912 * 2560)).toBe(1.6875);
  });

  it('native and reference packers produce identical bytes and round-trip', () => {
    const r = rng(11);
    for (const [M, K] of [[1, 1], [3, 2], [17, 48], [64, 256], [65, 300], [130, 1000]] as const) {
      const trits = randomTrits(r, M * K);
      const w = packTernaryLut(ctx, trits, M, K, ScaleMode.Tensor, Float32Array.of(1));
      expectSameInts(w.data, packLut(trits, M, K), `bytes ${M}x${K}`);
      expectSameInts(unpackTernaryLut(w), trits, `native unpack ${M}x${K}`);
      expectSameInts(unpackLut(w.data, M, K), trits, `reference unpack ${M}x${K}`);
    }
  });

  it('repacking a T2R16 matrix gives the same bytes as packing its trits', () => {
    const r = rng(12);
    for (const [M, K] of [[1, 16], [33, 272], [70, 512]] as const) {
      const trits = randomTrits(r, M * K);
      const scales = randomScales(r, scaleCount(M, K, ScaleMode.Row));
      const t2 = packTernary(ctx, trits, M, K, ScaleMode.Row, scales);
      const lut = ternaryToLut(ctx, t2);
      expectSameInts(lut.data, packLut(trits, M, K), `from T2R16 ${M}x${K}`);
      expectSameInts(packLutFromT2(packT2(trits, M, K), M, K), lut.data, `reference from T2R16 ${M}x${K}`);
      expect(lut.scales).toBe(t2.scales);
    }
  });

  it('reference tables hold ±T[m] in the four byte planes', () => {
    const a = filledActs(1, 3, (i) => [-128, 127, -5][i]!);
    const t = refLutBuildTables(a);
    const entry = (m: number, neg: boolean) => {
      const o = neg ? 16 : 0;
      return ((t[o + m]! | (t[32 + o + m]! << 8)) << 16) >> 16;
    };
    // m = 13 = (1, 1, 1): b0 + b1 + b2; m = 5 = (1, -1, -1): b0 - b1 - b2.
    expect(entry(13, false)).toBe(-128 + 127 - 5);
    expect(entry(13, true)).toBe(128 - 127 + 5);
    expect(entry(5, false)).toBe(-128 - 127 + 5);
    expect(entry(14, false)).toBe(0);
  });
});

describe.each(contexts)('ternaryLutGemm on %s', (isa, ctx) => {
  const shapes: Array<[number, number, number]> = [
    [1, 1, 1], [2, 3, 2], [1, 16, 1], [15, 48, 2], [63, 250, 3], [64, 256, 4], [65, 272, 5], [100, 512, 8],
    [130, 768, 13], [64, 2560, 1], [40, 1024, 64], [17, 1000, 7],
  ];
  for (const mode of modes) {
    it.each(shapes)(`matches the reference and ternaryGemm bit-exactly (${ScaleMode[mode]} scales) M=%i K=%i B=%i`, (M, K, B) => {
      if (mode === ScaleMode.Block && K % 256 !== 0) return;
      const r = rng(M * 131 + K * 7 + B * 3 + mode);
      const trits = randomTrits(r, M * K);
      if (M > 2) trits.fill(0, K, 2 * K); // an all-zero row
      const scales = randomScales(r, scaleCount(M, K, mode));
      const x = randomNormal(r, B * K, 2);
      const a = quantizeActivationsI8(ctx, x, B, K);
      const w = packTernaryLut(ctx, trits, M, K, mode, scales);
      const got = ternaryLutGemm(ctx, w, a);
      expectSameBits(got, refLutGemm(w, a), `${isa} native vs TS reference`);
      if (K % 16 === 0) {
        const t2 = packTernary(ctx, trits, M, K, mode, scales);
        expectSameBits(got, ternaryGemm(ctx, t2, a), `${isa} LUT vs MAD (ternaryGemm)`);
        expectSameBits(got, refTernaryGemm(t2, a), `${isa} LUT vs MAD reference`);
      }
    });
  }

  it.each([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 64])('handles batch B=%i', (B) => {
    const r = rng(1000 + B);
    const M = 70;
    const K = 512;
    const trits = randomTrits(r, M * K);
    const scales = randomScales(r, scaleCount(M, K, ScaleMode.Block));
    const w = packTernaryLut(ctx, trits, M, K, ScaleMode.Block, scales);
    const a = quantizeActivationsI8(ctx, randomNormal(r, B * K), B, K);
    const got = ternaryLutGemm(ctx, w, a);
    expectSameBits(got, ternaryGemm(ctx, packTernary(ctx, trits, M, K, ScaleMode.Block, scales), a), `${isa} B=${B}`);
  });

  it('does not overflow with extreme activations and all-equal weights over K = 8192', () => {
    const M = 65;
    const K = 8192;
    for (const weight of [1, -1]) {
      const trits = new Int8Array(M * K).fill(weight);
      for (const [name, value] of [['+127', () => 127], ['-128', () => -128], ['alternating', (i: number) => (i & 1 ? 127 : -128)]] as const) {
        const a = filledActs(2, K, value);
        for (const mode of modes) {
          const scales = Float32Array.from({ length: scaleCount(M, K, mode) }, (_, i) => 0.5 + (i % 5));
          const w = packTernaryLut(ctx, trits, M, K, mode, scales);
          const got = ternaryLutGemm(ctx, w, a);
          const want = ternaryGemm(ctx, packTernary(ctx, trits, M, K, mode, scales), a);
          expectSameBits(got, want, `${isa} weights ${weight} acts ${name} ${ScaleMode[mode]}`);
        }
      }
    }
  });

  it('writes only B*M outputs of a larger y', () => {
    const M = 33;
    const K = 96;
    const r = rng(5);
    const w = packTernaryLut(ctx, randomTrits(r, M * K), M, K, ScaleMode.Tensor, Float32Array.of(0.5));
    const a = quantizeActivationsI8(ctx, randomNormal(r, 2 * K), 2, K);
    const y = new Float32Array(2 * M + 7).fill(-3);
    ternaryLutGemm(ctx, w, a, y);
    expect(Array.from(y.subarray(2 * M))).toEqual(new Array(7).fill(-3));
    expectSameBits(y.subarray(0, 2 * M), refLutGemm(w, a), `${isa} prefix`);
  });
});

describe('TL3 bindings reject bad arguments', () => {
  const [, ctx] = contexts[0]!;
  const M = 5;
  const K = 20;
  const good = {
    trits: new Int8Array(M * K),
    data: new Uint8Array(lutWeightBytes(M, K)),
    scales: Float32Array.of(1),
    q: new Int8Array(2 * K),
    scale: Float32Array.of(1, 1),
    sum: new Int32Array(2),
    y: new Float32Array(2 * M),
  };
  type Call = (...args: unknown[]) => unknown;
  const call = (name: string, ...args: unknown[]) => () => binding<Call>(name)(...args);
  const matrix: TernaryLutMatrix = { data: good.data, scales: good.scales, M, K, scaleMode: ScaleMode.Tensor };
  const gemmArgs = [ctx.handle, good.data, good.scales, M, K, 0, good.q, good.scale, good.sum, 2, good.y];

  it('accepts the well-formed calls', () => {
    expect(call('ternaryLutGemm', ...gemmArgs)).not.toThrow();
    expect(call('packTernaryLut', ctx.handle, good.trits, M, K, good.data)).not.toThrow();
    expect(call('unpackTernaryLut', good.data, M, K, good.trits)).not.toThrow();
    expect(() => ternaryLutGemm(ctx, matrix, filledActs(2, K, () => 1))).not.toThrow();
  });

  it('ternaryLutGemm: wrong types throw TypeError', () => {
    const bad: Array<[number, unknown]> = [
      [0, {}], [0, null], [1, new Int8Array(good.data.length)], [1, [1, 2]], [2, new Float64Array(1)], [3, '5'],
      [4, undefined], [5, null], [6, new Uint8Array(2 * K)], [7, new Float64Array(2)], [8, new Uint32Array(2)],
      [9, {}], [10, new Int32Array(2 * M)],
    ];
    for (const [i, v] of bad) {
      const args = gemmArgs.slice();
      args[i] = v;
      expect(call('ternaryLutGemm', ...args), `argument ${i}`).toThrow(TypeError);
    }
    expect(call('ternaryLutGemm')).toThrow(TypeError);
    expect(call('ternaryLutGemm', ctx.handle)).toThrow(TypeError);
  });

  it('ternaryLutGemm: wrong ranges and lengths throw RangeError', () => {
    const bad: Array<[number, unknown]> = [
      [1, new Uint8Array(good.data.length - 1)], [1, new Uint8Array(good.data.length + 1)], [2, new Float32Array(2)],
      [3, 0], [3, -1], [3, 1.5], [3, Number.NaN], [3, 2 ** 40], [4, 0], [4, Infinity], [5, 3], [5, -1],
      [6, new Int8Array(2 * K - 1)], [7, new Float32Array(1)], [8, new Int32Array(1)], [9, 0], [9, 3], [9, 1e9],
      [10, new Float32Array(2 * M - 1)],
    ];
    for (const [i, v] of bad) {
      const args = gemmArgs.slice();
      args[i] = v;
      expect(call('ternaryLutGemm', ...args), `argument ${i} = ${String(v)}`).toThrow(RangeError);
    }
    // Block scales need K % 256 == 0.
    const args = gemmArgs.slice();
    args[5] = 2;
    expect(call('ternaryLutGemm', ...args)).toThrow(RangeError);
  });

  it('packers and layout: bad arguments throw, never crash', () => {
    expect(call('packTernaryLut', {}, good.trits, M, K, good.data)).toThrow(TypeError);
    expect(call('packTernaryLut', ctx.handle, new Uint8Array(M * K), M, K, good.data)).toThrow(TypeError);
    expect(call('packTernaryLut', ctx.handle, good.trits, M, K, new Uint8Array(3))).toThrow(RangeError);
    expect(call('packTernaryLut', ctx.handle, good.trits, M + 1, K, good.data)).toThrow(RangeError);
    expect(call('packTernaryLut', ctx.handle, good.trits, M, 0, good.data)).toThrow(RangeError);
    expect(call('packTernaryLutFromT2', ctx.handle, new Uint8Array(64), 1, 20, new Uint8Array(lutWeightBytes(1, 20)))).toThrow(RangeError);
    expect(call('packTernaryLutFromT2', ctx.handle, new Uint8Array(63), 1, 16, new Uint8Array(lutWeightBytes(1, 16)))).toThrow(RangeError);
    expect(call('packTernaryLutFromT2', ctx.handle, new Uint8Array(64), 1, 16, new Uint8Array(1))).toThrow(RangeError);
    expect(call('packTernaryLutFromT2', ctx.handle, 'codes', 1, 16, new Uint8Array(1))).toThrow(TypeError);
    expect(call('unpackTernaryLut', good.data, M, K, new Int8Array(M * K - 1))).toThrow(RangeError);
    expect(call('unpackTernaryLut', good.data, M, K, new Uint8Array(M * K))).toThrow(TypeError);
    expect(call('unpackTernaryLut', new Uint8Array(1), M, K, good.trits)).toThrow(RangeError);
    expect(call('unpackTernaryLut', good.data, 'M', K, good.trits)).toThrow(TypeError);
    expect(call('lutLayout', 0, 5)).toThrow(RangeError);
    expect(call('lutLayout', 5)).toThrow(TypeError);
    expect(call('lutLayout', 5, 2.5)).toThrow(RangeError);
  });

  it('the typed wrappers check shapes before calling native', () => {
    expect(() => packTernaryLut(ctx, good.trits, M, K, ScaleMode.Row, Float32Array.of(1))).toThrow(RangeError);
    expect(() => ternaryLutGemm(ctx, matrix, filledActs(1, K + 1, () => 0))).toThrow(RangeError);
  });
});

describe('reference TL3 GEMM on random shapes', () => {
  it('agrees with refTernaryGemm', () => {
    const r = rng(99);
    for (let i = 0; i < 20; i++) {
      const M = randInt(r, 1, 80);
      const K = 16 * randInt(r, 1, 40);
      const B = randInt(r, 1, 4);
      const mode = K % 256 === 0 ? modes[randInt(r, 0, 2)]! : modes[randInt(r, 0, 1)]!;
      const trits = randomTrits(r, M * K);
      const scales = randomScales(r, scaleCount(M, K, mode));
      const a = filledActs(B, K, () => randInt(r, -128, 127));
      const lut = { data: packLut(trits, M, K), scales, M, K, scaleMode: mode };
      const t2 = { codes: packT2(trits, M, K), scales, M, K, scaleMode: mode };
      expectSameBits(refLutGemm(lut, a), refTernaryGemm(t2, a), `M=${M} K=${K} B=${B} ${ScaleMode[mode]}`);
    }
  });
});
