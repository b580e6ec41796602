import { describe, expect, it } from 'vitest';

import { encodeI2S, encodeTQ1, encodeTQ2 } from '../lib/format/ternary.js';
import {
  packTernaryTd3, repackTernaryTd3, td3Layout, ternaryTd3Gemm, ternaryToTd3, unpackTernaryTd3,
} from '../lib/kernels/td3.js';
import { ScaleMode, packTernary, quantizeActivationsI8, repackTernary, ternaryGemm } from '../lib/kernels/ternary.js';
import { binding } from '../lib/native.js';
import type { QuantizedActivations } from '../lib/reference/act_quant.js';
import {
  type TernaryTd3Matrix, TD3_BLOCK_BYTES, packTd3, packTd3FromT2, refTd3Gemm, td3BlockTails, td3BlockUnits, td3TileBytes,
  td3Tiles, td3WeightBytes, unpackTd3,
} from '../lib/reference/td3.js';
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

describe('TD3 layout and packing', () => {
  const [, ctx] = contexts[0]!;

  it('native and reference agree on the layout sizes', () => {
    for (const [M, K] of [[1, 16], [64, 256], [65, 272], [3840, 2560], [13824, 2560], [2560, 6912], [17, 8640]] as const) {
      expect(td3Layout(M, K)).toEqual({
        rows: 64, tiles: td3Tiles(M), blocks: Math.ceil(K / 256), weightBytes: td3WeightBytes(M, K), tileBytes: td3TileBytes(K),
      });
    }
    // 1.6875 bits per weight on full blocks and tiles; a block of r columns = 24·units + 16·tails.
    expect(td3WeightBytes(2560, 2560) * 8 / (2560 * 2560)).toBe(1.6875);
    expect(TD3_BLOCK_BYTES).toBe(3456);
    for (let r = 16; r <= 256; r += 16) expect(24 * td3BlockUnits(r, 0) + 16 * td3BlockTails(r, 0)).toBe(r);
  });

  it('native and reference packers produce identical bytes and round-trip', () => {
    const r = rng(21);
    for (const [M, K] of [[1, 16], [3, 32], [17, 48], [64, 256], [65, 304], [130, 1040], [70, 8640]] as const) {
      const trits = randomTrits(r, M * K);
      const w = packTernaryTd3(ctx, trits, M, K, ScaleMode.Tensor, Float32Array.of(1));
      expectSameInts(w.data, packTd3(trits, M, K), `bytes ${M}x${K}`);
      expectSameInts(unpackTernaryTd3(w), trits, `native unpack ${M}x${K}`);
      expectSameInts(unpackTd3(w.data, M, K), trits, `reference unpack ${M}x${K}`);
    }
  });

  it('repacking a T2R16 matrix gives the same bytes as packing its trits', () => {
    const r = rng(22);
    for (const [M, K] of [[1, 16], [33, 272], [70, 512]] as const) {
      const trits = randomTrits(r, M * K);
      const scales = randomScales(r, scaleCount(M, K, ScaleMode.Row));
      const t2 = packTernary(ctx, trits, M, K, ScaleMode.Row, scales);
      const td = ternaryToTd3(ctx, t2);
      expectSameInts(td.data, packTd3(trits, M, K), `from T2R16 ${M}x${K}`);
      expectSameInts(packTd3FromT2(packT2(trits, M, K), M, K), td.data, `reference from T2R16 ${M}x${K}`);
      expect(td.scales).toBe(t2.scales);
    }
  });

  it('repacks I2_S, TQ2_0 and TQ1_0 tensors straight to TD3, with repackTernary\'s scales', () => {
    const r = rng(23);
    for (const [M, K] of [[16, 256], [48, 512], [70, 768]] as const) {
      const trits = randomTrits(r, M * K);
      const nb = K / 256;
      const uniform = new Float32Array(M * nb).fill(0.75);
      const varied = Float32Array.from({ length: M * nb }, () => 0.25 + Math.round(r() * 16) / 16);
      const files: Array<['i2_s' | 'tq2_0' | 'tq1_0', Uint8Array]> = [
        ['i2_s', encodeI2S(trits, M, K, 0.625)],
        ['tq2_0', encodeTQ2(trits, M, K, uniform)], ['tq2_0', encodeTQ2(trits, M, K, varied)],
        ['tq1_0', encodeTQ1(trits, M, K, uniform)], ['tq1_0', encodeTQ1(trits, M, K, varied)],
      ];
      for (const [type, src] of files) {
        const td = repackTernaryTd3(ctx, type, src, M, K, 'w');
        const t2 = repackTernary(ctx, type, src, M, K, 'w');
        expectSameInts(td.data, packTd3(trits, M, K), `${type} ${M}x${K} bytes`);
        expect(td.scaleMode).toBe(t2.scaleMode);
        expectSameBits(td.scales, t2.scales, `${type} ${M}x${K} scales`);
        const a = quantizeActivationsI8(ctx, randomNormal(r, 3 * K), 3, K);
        expectSameBits(ternaryTd3Gemm(ctx, td, a), ternaryGemm(ctx, t2, a), `${type} ${M}x${K} gemm`);
      }
    }
  });

  it('fuses along M through T2R16 (concatenate the parts, then convert)', () => {
    const r = rng(24);
    const K = 512;
    const parts = [48, 16, 80].map((M) => randomTrits(r, M * K));
    const all = new Int8Array(parts.reduce((n, p) => n + p.length, 0));
    let o = 0;
    const codes: Uint8Array[] = [];
    for (const p of parts) {
      all.set(p, o);
      o += p.length;
      codes.push(packT2(p, p.length / K, K));
    }
    const fusedCodes = new Uint8Array(codes.reduce((n, c) => n + c.length, 0));
    o = 0;
    for (const c of codes) {
      fusedCodes.set(c, o);
      o += c.length;
    }
    const M = all.length / K;
    const td = ternaryToTd3(ctx, { codes: fusedCodes, scales: Float32Array.of(1), M, K, scaleMode: ScaleMode.Tensor });
    expectSameInts(td.data, packTd3(all, M, K), 'fused bytes');
  });
});

describe.each(contexts)('ternaryTd3Gemm on %s', (isa, ctx) => {
  const shapes: Array<[number, number, number]> = [
    [1, 16, 1], [2, 32, 2], [15, 48, 2], [16, 64, 3], [63, 240, 3], [64, 256, 4], [65, 272, 5], [100, 512, 8],
    [130, 768, 13], [64, 2560, 1], [200, 2560, 1], [40, 1024, 64], [17, 1040, 7], [70, 6912, 1], [33, 8640, 2],
  ];
  for (const mode of modes) {
    it.each(shapes)(`matches the reference and ternaryGemm bit-exactly (${ScaleMode[mode]} scales) M=%i K=%i B=%i`, (M, K, B) => {
      if (mode === ScaleMode.Block && K % 256 !== 0) return;
      const r = rng(M * 131 + K * 7 + B * 3 + mode);
      const trits = randomTrits(r, M * K);
      if (M > 2) trits.fill(0, K, 2 * K); // an all-zero row
      const scales = randomScales(r, scaleCount(M, K, mode));
      const a = quantizeActivationsI8(ctx, randomNormal(r, B * K, 2), B, K);
      const w = packTernaryTd3(ctx, trits, M, K, mode, scales);
      const got = ternaryTd3Gemm(ctx, w, a);
      expectSameBits(got, refTd3Gemm(w, a), `${isa} native vs TS reference`);
      const t2 = packTernary(ctx, trits, M, K, mode, scales);
      expectSameBits(got, ternaryGemm(ctx, t2, a), `${isa} TD3 vs MAD (ternaryGemm)`);
      expectSameBits(got, refTernaryGemm(t2, a), `${isa} TD3 vs MAD reference`);
    });
  }

  it.each([1, 2, 3, 4, 5, 6, 7, 8, 9, 13, 64, 128])('handles batch B=%i', (B) => {
    const r = rng(2000 + B);
    const M = 70;
    const K = 512;
    const trits = randomTrits(r, M * K);
    const scales = randomScales(r, scaleCount(M, K, ScaleMode.Block));
    const w = packTernaryTd3(ctx, trits, M, K, ScaleMode.Block, scales);
    const a = quantizeActivationsI8(ctx, randomNormal(r, B * K), B, K);
    expectSameBits(ternaryTd3Gemm(ctx, w, a), ternaryGemm(ctx, packTernary(ctx, trits, M, K, ScaleMode.Block, scales), a), `${isa} B=${B}`);
  });

  it('does not overflow with extreme activations and all-equal weights over K = 8192', () => {
    const M = 65;
    const K = 8192;
    for (const weight of [1, -1]) {
      const trits = new Int8Array(M * K).fill(weight);
      for (const [name, value] of [['+127', () => 127], ['-128', () => -128], ['alternating', (i: number) => (i & 1 ? 127 : -128)]] as const) {
        for (const B of [1, 3]) {
          const a = filledActs(B, K, value);
          for (const mode of modes) {
            const scales = Float32Array.from({ length: scaleCount(M, K, mode) }, (_, i) => 0.5 + (i % 5));
            const got = ternaryTd3Gemm(ctx, packTernaryTd3(ctx, trits, M, K, mode, scales), a);
            const want = ternaryGemm(ctx, packTernary(ctx, trits, M, K, mode, scales), a);
            expectSameBits(got, want, `${isa} weights ${weight} acts ${name} B=${B} ${ScaleMode[mode]}`);
          }
        }
      }
    }
  });

  it('writes only B*M outputs of a larger y', () => {
    const M = 33;
    const K = 96;
    const r = rng(5);
    const w = packTernaryTd3(ctx, randomTrits(r, M * K), M, K, ScaleMode.Tensor, Float32Array.of(0.5));
    const a = quantizeActivationsI8(ctx, randomNormal(r, 2 * K), 2, K);
    const y = new Float32Array(2 * M + 7).fill(-3);
    ternaryTd3Gemm(ctx, w, a, y);
    expect(Array.from(y.subarray(2 * M))).toEqual(new Array(7).fill(-3));
    expectSameBits(y.subarray(0, 2 * M), refTd3Gemm(w, a), `${isa} prefix`);
  });
});

describe('TD3 bindings reject bad arguments', () => {
  const [, ctx] = contexts[0]!;
  const M = 5;
  const K = 32;
  const good = {
    trits: new Int8Array(M * K),
    data: new Uint8Array(td3WeightBytes(M, K)),
    scales: Float32Array.of(1),
    q: new Int8Array(2 * K),
    scale: Float32Array.of(1, 1),
    sum: new Int32Array(2),
    y: new Float32Array(2 * M),
  };
  type Call = (...args: unknown[]) => unknown;
  const call = (name: string, ...args: unknown[]) => () => binding<Call>(name)(...args);
  const matrix: TernaryTd3Matrix = { data: good.data, scales: good.scales, M, K, scaleMode: ScaleMode.Tensor };
  const gemmArgs = [ctx.handle, good.data, good.scales, M, K, 0, good.q, good.scale, good.sum, 2, good.y];

  it('accepts the well-formed calls', () => {
    expect(call('ternaryTd3Gemm', ...gemmArgs)).not.toThrow();
    expect(call('packTernaryTd3', ctx.handle, good.trits, M, K, good.data)).not.toThrow();
    expect(call('unpackTernaryTd3', good.data, M, K, good.trits)).not.toThrow();
    expect(() => ternaryTd3Gemm(ctx, matrix, filledActs(2, K, () => 1))).not.toThrow();
  });

  it('ternaryTd3Gemm: wrong types throw TypeError', () => {
    const bad: Array<[number, unknown]> = [
      [0, {}], [0, null], [1, new Int8Array(good.data.length)], [1, [1, 2]], [2, new Float64Array(1)], [3, '5'],
      [4, undefined], [5, null], [6, new Uint8Array(2 * K)], [7, new Float64Array(2)], [8, new Uint32Array(2)],
      [9, {}], [10, new Int32Array(2 * M)],
    ];
    for (const [i, v] of bad) {
      const args = gemmArgs.slice();
      args[i] = v;
      expect(call('ternaryTd3Gemm', ...args), `argument ${i}`).toThrow(TypeError);
    }
    expect(call('ternaryTd3Gemm')).toThrow(TypeError);
    expect(call('ternaryTd3Gemm', ctx.handle)).toThrow(TypeError);
  });

  it('ternaryTd3Gemm: wrong ranges, lengths and overlaps throw RangeError', () => {
    const bad: Array<[number, unknown]> = [
      [1, new Uint8Array(good.data.length - 1)], [1, new Uint8Array(good.data.length + 1)], [2, new Float32Array(2)],
      [3, 0], [3, -1], [3, 1.5], [3, Number.NaN], [3, 2 ** 40], [4, 0], [4, 20], [4, Infinity], [5, 3], [5, -1],
      [6, new Int8Array(2 * K - 1)], [7, new Float32Array(1)], [8, new Int32Array(1)], [9, 0], [9, 3], [9, 1e9],
      [10, new Float32Array(2 * M - 1)],
    ];
    for (const [i, v] of bad) {
      const args = gemmArgs.slice();
      args[i] = v;
      expect(call('ternaryTd3Gemm', ...args), `argument ${i} = ${String(v)}`).toThrow(RangeError);
    }
    // Block scales need K % 256 == 0.
    const args = gemmArgs.slice();
    args[5] = 2;
    expect(call('ternaryTd3Gemm', ...args)).toThrow(RangeError);
    // y overlapping an input.
    const shared = new ArrayBuffer(4 * 2 * M + 4 * 2);
    const y = new Float32Array(shared, 0, 2 * M);
    const scale = new Float32Array(shared, 4 * (2 * M - 1), 2);
    const ov = gemmArgs.slice();
    ov[7] = scale;
    ov[10] = y;
    expect(call('ternaryTd3Gemm', ...ov)).toThrow(RangeError);
  });

  it('packers, repack and layout: bad arguments throw, never crash', () => {
    expect(call('packTernaryTd3', {}, good.trits, M, K, good.data)).toThrow(TypeError);
    expect(call('packTernaryTd3', ctx.handle, new Uint8Array(M * K), M, K, good.data)).toThrow(TypeError);
    expect(call('packTernaryTd3', ctx.handle, good.trits, M, K, new Uint8Array(3))).toThrow(RangeError);
    expect(call('packTernaryTd3', ctx.handle, good.trits, M + 1, K, good.data)).toThrow(RangeError);
    expect(call('packTernaryTd3', ctx.handle, new Int8Array(M * 20), M, 20, good.data)).toThrow(RangeError);
    expect(call('packTernaryTd3FromT2', ctx.handle, new Uint8Array(64), 1, 20, new Uint8Array(64))).toThrow(RangeError);
    expect(call('packTernaryTd3FromT2', ctx.handle, new Uint8Array(63), 1, 16, new Uint8Array(td3WeightBytes(1, 16)))).toThrow(RangeError);
    expect(call('packTernaryTd3FromT2', ctx.handle, new Uint8Array(1024), 1, 16, new Uint8Array(1))).toThrow(RangeError);
    expect(call('packTernaryTd3FromT2', ctx.handle, 'codes', 1, 16, new Uint8Array(1))).toThrow(TypeError);
    expect(call('unpackTernaryTd3', good.data, M, K, new Int8Array(M * K - 1))).toThrow(RangeError);
    expect(call('unpackTernaryTd3', good.data, M, K, new Uint8Array(M * K))).toThrow(TypeError);
    expect(call('unpackTernaryTd3', new Uint8Array(1), M, K, good.trits)).toThrow(RangeError);
    expect(call('unpackTernaryTd3', good.data, 'M', K, good.trits)).toThrow(TypeError);
    expect(call('repackTernaryTd3', ctx.handle, 'q4_0', new Uint8Array(4096), 16, 256, new Uint8Array(td3WeightBytes(16, 256)))).toThrow(RangeError);
    expect(call('repackTernaryTd3', ctx.handle, 'tq1_0', new Uint8Array(10), 16, 256, new Uint8Array(td3WeightBytes(16, 256)), new Float32Array(16))).toThrow(RangeError);
    expect(call('repackTernaryTd3', ctx.handle, 'tq2_0', new Uint8Array(16 * 66), 16, 256, new Uint8Array(td3WeightBytes(16, 256)), new Float32Array(15))).toThrow(RangeError);
    expect(call('repackTernaryTd3', ctx.handle, 'tq2_0', new Uint8Array(16 * 66), 16, 272, new Uint8Array(td3WeightBytes(16, 272)), new Float32Array(16))).toThrow(RangeError);
    expect(call('repackTernaryTd3', ctx.handle, 'i2_s', new Uint8Array(10), 16, 256, new Uint8Array(td3WeightBytes(16, 256)))).toThrow(RangeError);
    expect(call('repackTernaryTd3', ctx.handle, 5, new Uint8Array(10), 16, 256, new Uint8Array(1))).toThrow(TypeError);
    expect(call('td3Layout', 0, 16)).toThrow(RangeError);
    expect(call('td3Layout', 5, 24)).toThrow(RangeError);
    expect(call('td3Layout', 5)).toThrow(TypeError);
  });

  it('the typed wrappers check shapes before calling native', () => {
    expect(() => packTernaryTd3(ctx, good.trits, M, K, ScaleMode.Row, Float32Array.of(1))).toThrow(RangeError);
    expect(() => ternaryTd3Gemm(ctx, matrix, filledActs(1, K + 16, () => 0))).toThrow(RangeError);
  });
});

describe('reference TD3 GEMM on random shapes', () => {
  it('agrees with refTernaryGemm', () => {
    const r = rng(199);
    for (let i = 0; i < 20; i++) {
      const M = randInt(r, 1, 80);
      const K = 16 * randInt(r, 1, 40);
      const B = randInt(r, 1, 4);
      const mode = K % 256 === 0 ? modes[randInt(r, 0, 2)]! : modes[randInt(r, 0, 1)]!;
      const trits = randomTrits(r, M * K);
      const scales = randomScales(r, scaleCount(M, K, mode));
      const a = filledActs(B, K, () => randInt(r, -128, 127));
      const td = { data: packTd3(trits, M, K), scales, M, K, scaleMode: mode };
      const t2 = { codes: packT2(trits, M, K), scales, M, K, scaleMode: mode };
      expectSameBits(refTd3Gemm(td, a), refTernaryGemm(t2, a), `M=${M} K=${K} B=${B} ${ScaleMode[mode]}`);
    }
  });
});
