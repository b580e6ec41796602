import { describe, expect, it } from 'vitest';

import { packTernarySparse, sparseLayout, ternarySparseGemm, ternaryToSparse, unpackTernarySparse } from '../lib/kernels/ternary-sparse.js';
import { ScaleMode, packTernary, quantizeActivationsTopkI8, repackTernary, ternaryGemm } from '../lib/kernels/ternary.js';
import { encodeI2S, encodeTQ2 } from '../lib/format/ternary.js';
import { binding } from '../lib/native.js';
import type { QuantizedActivations } from '../lib/reference/act_quant.js';
import { refPackTernarySparse, refTernarySparseGemm, tsBlocks, tsRow, tsWeightBytes } from '../lib/reference/ternary-sparse.js';
import { refTernaryGemm, scaleCount } from '../lib/reference/ternary.js';
import { contextsPerIsa, expectSameBits, expectSameInts, randomNormal, randomTrits, rng } from './helpers.js';

const contexts = contextsPerIsa();

function randomScales(r: () => number, n: number): Float32Array {
  const s = new Float32Array(n);
  for (let i = 0; i < n; i++) s[i] = r() < 0.1 ? 0 : (r() < 0.2 ? -1 : 1) * (0.01 + r());
  return s;
}

/** B tokens of int8 codes where each value is 0 with probability `zeros` (±128 extremes included). */
function sparseActs(r: () => number, B: number, K: number, zeros: number): QuantizedActivations {
  const q = new Int8Array(B * K);
  const sum = new Int32Array(B);
  for (let i = 0; i < B * K; i++) {
    if (r() < zeros) continue;
    const u = r();
    q[i] = u < 0.05 ? -128 : u < 0.1 ? 127 : Math.floor(r() * 255) - 127 || 1;
    sum[Math.floor(i / K)]! += q[i]!;
  }
  return { q, scale: Float32Array.from({ length: B }, () => 0.5 + 3 * r()), sum, B, K };
}

describe('TS256 layout and packing', () => {
  const [, ctx] = contexts[0]!;

  it('native and reference agree on the layout sizes (2 bits per weight, rows padded to 256)', () => {
    for (const [M, K] of [[1, 16], [256, 256], [257, 48], [2560, 6912], [2560, 2560], [6912, 2560]] as const)
      expect(sparseLayout(M, K)).toEqual({ rows: 256, blocks: tsBlocks(M), weightBytes: tsWeightBytes(M, K) });
    expect(tsWeightBytes(2560, 6912) * 8 / (2560 * 6912)).toBe(2);
    // Every (byte, bit pair) of a line is a distinct row of the block.
    const rows = new Set<number>();
    for (let p = 0; p < 64; p++) for (let l = 0; l < 4; l++) rows.add(tsRow(p, l));
    expect(rows.size).toBe(256);
  });

  it('native and reference packers produce identical bytes and round-trip', () => {
    const r = rng(41);
    for (const [M, K] of [[1, 16], [3, 32], [17, 48], [256, 64], [300, 80], [513, 32]] as const) {
      const trits = randomTrits(r, M * K);
      const w = packTernarySparse(ctx, trits, M, K, ScaleMode.Tensor, Float32Array.of(1));
      expectSameInts(w.data, refPackTernarySparse(trits, M, K), `bytes ${M}x${K}`);
      expectSameInts(unpackTernarySparse(w), trits, `unpack ${M}x${K}`);
    }
  });

  it('repacks any T2R16 matrix (here from I2_S and uniform TQ2_0 files) with its scales', () => {
    const r = rng(42);
    const M = 48, K = 512;
    const trits = randomTrits(r, M * K);
    const i2 = repackTernary(ctx, 'i2_s', encodeI2S(trits, M, K, 0.625), M, K);
    const tq = repackTernary(ctx, 'tq2_0', encodeTQ2(trits, M, K, new Float32Array(M * 2).fill(0.75)), M, K);
    for (const t2 of [i2, tq]) {
      const sp = ternaryToSparse(ctx, t2);
      expectSameInts(sp.data, refPackTernarySparse(trits, M, K), 'bytes');
      expect(sp.scales).toBe(t2.scales);
    }
    const blockScaled = packTernary(ctx, trits, M, K, ScaleMode.Block, new Float32Array(scaleCount(M, K, ScaleMode.Block)));
    expect(() => ternaryToSparse(ctx, blockScaled)).toThrow(/block scales/);
  });

  it('rejects bad shapes and arguments with typed errors', () => {
    const gemm = binding<(...args: unknown[]) => void>('ternarySparseGemm');
    const data = new Uint8Array(tsWeightBytes(16, 32));
    const ok = [ctx.handle, data, Float32Array.of(1), 16, 32, 0, new Int8Array(32), Float32Array.of(1), Int32Array.of(0), 1, new Float32Array(16)];
    expect(() => gemm(...ok)).not.toThrow();
    const bad: Array<[number, unknown]> = [[1, new Uint8Array(10)], [2, new Float32Array(2)], [4, 33], [4, 65552], [5, 2],
      [6, new Int8Array(31)], [9, 0], [10, new Float32Array(15)], [10, data]];
    for (const [i, v] of bad) {
      const args = [...ok];
      args[i] = v;
      expect(() => gemm(...args), `argument ${i}`).toThrow();
    }
  });
});

describe.each(contexts)('ternary_sparse GEMM on %s', (isa, ctx) => {
  const zeroRates = [0, 0.5, 0.8, 0.99, 1];

  it('reports its variant in info().kernels', () => {
    expect(ctx.info().kernels['ternary_sparse']).toMatch(new RegExp(`^${isa}`));
  });

  it.each([[1, 16], [7, 48], [255, 64], [256, 160], [300, 272], [513, 96]] as const)(
    'is bit-exact with refTernaryGemm for M=%i K=%i (B=1 and B=3, every zero rate, tensor and row scales)', (M, K) => {
      const r = rng(M * 131 + K);
      const trits = randomTrits(r, M * K);
      for (const mode of [ScaleMode.Tensor, ScaleMode.Row]) {
        const scales = randomScales(r, scaleCount(M, K, mode));
        const t2 = packTernary(ctx, trits, M, K, mode, scales);
        const w = packTernarySparse(ctx, trits, M, K, mode, scales);
        for (const zeros of zeroRates)
          for (const B of [1, 3]) {
            const a = sparseActs(r, B, K, zeros);
            const want = refTernaryGemm(t2, a);
            expectSameBits(ternarySparseGemm(ctx, w, a), want, `${isa} ${M}x${K} mode ${mode} zeros ${zeros} B=${B}`);
            if (B === 1 && zeros === 0.8) expectSameBits(refTernarySparseGemm(w, a), want, `reference ${M}x${K}`);
          }
      }
    });

  it('is bit-exact with ternaryGemm on the down-projection shape at a4.8 sparsity (B=1 and B=5)', () => {
    const r = rng(77);
    const M = 2560, K = 6912;
    const trits = randomTrits(r, M * K);
    const t2 = packTernary(ctx, trits, M, K, ScaleMode.Tensor, Float32Array.of(0.8125));
    const w = ternaryToSparse(ctx, t2);
    for (const [B, zeros] of [[1, 0.8], [1, 0.9], [5, 0.85]] as const) {
      const a = sparseActs(r, B, K, zeros);
      expectSameBits(ternarySparseGemm(ctx, w, a), ternaryGemm(ctx, t2, a), `${isa} down B=${B} zeros ${zeros}`);
    }
  });

  it('is bit-exact after the TopK quantizer (o_proj input) and with all-ones / all-minus-ones weights', () => {
    const r = rng(78);
    const M = 70, K = 2560;
    const x = randomNormal(r, 4 * K, 1.5);
    const a = quantizeActivationsTopkI8(ctx, x, 4, K, 0.5);
    for (const fill of [1, -1, 0]) {
      const trits = new Int8Array(M * K).fill(fill);
      const t2 = packTernary(ctx, trits, M, K, ScaleMode.Tensor, Float32Array.of(1.25));
      const w = packTernarySparse(ctx, trits, M, K, ScaleMode.Tensor, Float32Array.of(1.25));
      expectSameBits(ternarySparseGemm(ctx, w, a), refTernaryGemm(t2, a), `${isa} trits ${fill}`);
    }
    // Extreme activations on every column: the largest dots the int32 accumulators see.
    const trits = randomTrits(r, M * K, 0);
    const q = new Int8Array(K).map((_, k) => (trits[k]! > 0 ? 127 : -128));
    const ext: QuantizedActivations = { q, scale: Float32Array.of(1), sum: Int32Array.of(q.reduce((s, v) => s + v, 0)), B: 1, K };
    const t2 = packTernary(ctx, trits, M, K, ScaleMode.Tensor, Float32Array.of(1));
    expectSameBits(ternarySparseGemm(ctx, packTernarySparse(ctx, trits, M, K, ScaleMode.Tensor, Float32Array.of(1)), ext),
      refTernaryGemm(t2, ext), `${isa} extremes`);
  });
});
