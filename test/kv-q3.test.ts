// The 3-bit KV cache of BitNet a4.8 (native/kernels/ops.h kv_store_q3 / attention_q3): every native ISA
// against lib/reference/ops.ts (store bit for bit, attention within attention_f16's bound over the
// dequantized rows), the round-trip error, the block layout and the trainer's formula (train/evaluate.py
// kv_q3) on hand-computed blocks, and argument checking of both bindings.
import { describe, expect, it } from 'vitest';

import { KernelContext } from '../lib/kernels/context.js';
import {
  type KvCacheShape,
  attentionF16,
  attentionQ3,
  kvCacheBytesQ3,
  kvCacheElements,
  kvStoreF16,
  kvStoreQ3,
} from '../lib/kernels/ops.js';
import { binding } from '../lib/native.js';
import { clamp, f32, floatToHalf, halfToFloat, roundHalfEven } from '../lib/reference/numeric.js';
import { type RefResult, refAttentionQ3, refDequantQ3Row, refKvStoreQ3 } from '../lib/reference/ops.js';
import { contextsPerIsa, expectSameBits, expectSameInts, randInt, randomNormal, rng } from './helpers.js';

const contexts = contextsPerIsa();

/** Every element within its bound; reports the first failure. Returns the largest error / bound. */
function expectWithin(got: Float32Array, want: RefResult, what: string): number {
  expect(got.length, `${what}: length`).toBe(want.y.length);
  let worst = 0;
  for (let i = 0; i < got.length; i++) {
    const err = Math.abs(got[i]! - want.y[i]!);
    if (!(err <= want.bound[i]!)) expect.fail(`${what}: element ${i} is ${got[i]}, reference ${want.y[i]} (bound ${want.bound[i]})`);
    if (want.bound[i]! > 0) worst = Math.max(worst, err / want.bound[i]!);
  }
  return worst;
}

/**
 * The trainer's kv_q3 written out independently (torch float32 ops): d = (amax / 3.0).half().float();
 * value = clamp(round(x / d), -4, 3) * d where d > 0, else 0.
 */
function trainerKvQ3(x: ArrayLike<number>): Float64Array {
  const y = new Float64Array(x.length);
  for (let o = 0; o < x.length; o += 32) {
    let amax = 0;
    for (let i = 0; i < 32; i++) amax = Math.max(amax, Math.abs(x[o + i]!));
    const d = halfToFloat(floatToHalf(f32(amax / 3)));
    for (let i = 0; i < 32; i++) y[o + i] = d > 0 ? clamp(roundHalfEven(f32(x[o + i]! / d)), -4, 3) * d : 0;
  }
  return y;
}

const HALF_MIN_SUB = 2 ** -24;

/** x [B, nKvHeads, headDim] whose 32-blocks cycle through adversarial kinds. */
function adversarial(r: () => number, B: number, row: number): Float32Array {
  const x = new Float32Array(B * row);
  for (let i = 0; i < x.length; i++) {
    const kind = (Math.floor(i / row) * 3 + Math.floor((i % row) / 32)) % 11;
    const s = r() < 0.5 ? -1 : 1;
    let v: number;
    if (kind === 0) v = 0; // all-zero block: d = 0, codes 4
    else if (kind === 1) v = s * 3 * randInt(r, 0, 8) * 0.25; // amax 6 (d = 2) and exact ties k + 0.5
    else if (kind === 2) v = (r() - 0.5) * 1e-6; // subnormal-half d
    else if (kind === 3) v = (r() - 0.5) * 8 * HALF_MIN_SUB; // d of a few 2^-24 steps: clamps at +3 and -4
    else if (kind === 4) v = (r() - 0.5) * 2 * 3 * 2 ** -25; // near the d = 0 threshold
    else if (kind === 5) v = (r() - 0.5) * 3.9e5; // |x| up to 1.95e5: d near the top of the half range
    else if (kind === 6) v = s * (r() < 0.1 ? 196559 : r() * 1000); // amax 196559: d = 65504
    else if (kind === 7) v = s * (r() < 0.1 ? 3e5 : r()); // d overflows: +Inf, codes 4
    else if (kind === 8) v = s * (r() < 0.2 ? 7.5 : r() * 7.5); // ±max of the block many times
    else if (kind === 9) v = (r() - 0.5) * 1e-30; // f32(amax / 3) far below 2^-25: d = 0
    else v = (r() - 0.5) * 4;
    x[i] = v;
  }
  return x;
}

describe('q3 reference', () => {
  it('follows the block layout: d as little-endian half, code i in bits [3i, 3i + 3) of 12 bytes', () => {
    // q_i = (i % 8) - 4 needs d rounded down: amax = 2^-22, amax / 3 = 1.33 2^-24 -> d = 2^-24 (half 0x0001),
    // x / d = q exactly (the -4s are below -3.5 d, only possible when f16 rounded d down).
    const x = Float32Array.from({ length: 32 }, (_, i) => ((i % 8) - 4) * HALF_MIN_SUB);
    const cache = new Uint8Array(14);
    refKvStoreQ3(x, Int32Array.of(0), cache, 1, 32, 1);
    // Codes 0..7 in 24 bits: 0 | 1 << 3 | 2 << 6 | ... | 7 << 21 = 0xFAC688.
    expectSameInts(cache, [0x01, 0x00, 0x88, 0xc6, 0xfa, 0x88, 0xc6, 0xfa, 0x88, 0xc6, 0xfa, 0x88, 0xc6, 0xfa], 'layout');
    expectSameBits(refDequantQ3Row(cache, 0, 32), x, 'dequant');
  });

  it('matches hand-computed blocks of the trainer formula', () => {
    const blocks: Array<{ x: number[]; d: number; q: number[] }> = [
      // amax 6: d = 2, x / d = 0.5 -> 0, 1.5 -> 2, 2.5 -> 2, -2.5 -> -2, -1.5 -> -2 (half even), 3, -3.
      { x: [1, 3, 5, -5, -3, 6, -6, 0.9], d: 2, q: [0, 2, 2, -2, -2, 3, -3, 0] },
      // amax 1: 1 / 3 = 0.33333334f -> f16 0.333251953125 (0x3555); x / d = 3.00073 -> 3, 0.5 -> 1.50037 -> 2,
      // 0.49 -> 1.47036 -> 1, -0.17 -> -0.51 -> -1.
      { x: [1, -1, 0.5, 0.49, -0.17, 0], d: 0.333251953125, q: [3, -3, 2, 1, -1, 0] },
      // amax 2^-22: d = 2^-24 (rounded down from 1.33 2^-24): +4 is clamped to +3, -4 is kept.
      { x: [2 ** -22, -(2 ** -22), 2 ** -23], d: 2 ** -24, q: [3, -4, 2] },
      // amax 3 2^-25: amax / 3 = 2^-25 is a tie between the half values 0 and 2^-24: rounds to 0, all zero.
      { x: [3 * 2 ** -25, -(2 ** -26)], d: 0, q: [0, 0] },
      // amax 196559: 65519.668 rounds to the largest half 65504; 196559 / 65504 = 3.0007 -> 3.
      { x: [196559, -100000, 32752], d: 65504, q: [3, -2, 0] },
    ];
    for (const { x, d, q } of blocks) {
      const block = new Float32Array(32);
      block.set(x);
      const cache = new Uint8Array(14);
      refKvStoreQ3(block, Int32Array.of(0), cache, 1, 32, 1);
      expect(halfToFloat(cache[0]! | (cache[1]! << 8)), `d of ${x}`).toBe(d);
      const got = refDequantQ3Row(cache, 0, 32);
      const want = trainerKvQ3(block);
      for (let i = 0; i < 32; i++) {
        expect(got[i], `value ${i} of ${x}`).toBe(i < q.length ? q[i]! * d : 0);
        expect(got[i], `trainer value ${i} of ${x}`).toBe(want[i]);
      }
    }
    // amax >= 196560: d overflows to +Inf and every code is 4 (q = 0).
    const big = new Float32Array(32).fill(1);
    big[7] = -196560;
    const cache = new Uint8Array(14);
    refKvStoreQ3(big, Int32Array.of(0), cache, 1, 32, 1);
    expect(cache[0]! | (cache[1]! << 8)).toBe(0x7c00);
    const codes4 = [0x24, 0x49, 0x92]; // 0b100 repeated: 0x924924 little-endian
    expectSameInts(cache.subarray(2), [...codes4, ...codes4, ...codes4, ...codes4], 'overflow codes');
  });
});

describe.each(contexts)('q3 KV cache on %s', (isa, ctx) => {
  it('kvStoreQ3 matches the reference bit for bit (zeros, ties, ±max, subnormal and overflowing d) and leaves other rows', () => {
    const r = rng(91);
    for (const [nkv, hd, cap, pos] of [
      [3, 96, 6, Int32Array.of(5, 0, 3, 5)],
      [1, 32, 3, Int32Array.of(2)],
      [2, 128, 40, Int32Array.from({ length: 33 }, (_, i) => (i * 7) % 40)],
      [5, 64, 9, Int32Array.of(8, 1, 1, 0, 4)],
    ] as const) {
      const shape: KvCacheShape = { nKvHeads: nkv, headDim: hd, capacity: cap };
      const x = adversarial(r, pos.length, nkv * hd);
      expect(kvCacheBytesQ3(shape)).toBe(nkv * cap * (hd / 32) * 14);
      const got = new Uint8Array(kvCacheBytesQ3(shape)).fill(0xa5);
      const want = new Uint8Array(kvCacheBytesQ3(shape)).fill(0xa5);
      kvStoreQ3(ctx, x, pos, got, shape);
      refKvStoreQ3(x, pos, want, nkv, hd, cap);
      expectSameInts(got, want, `${isa} kvStoreQ3 nkv=${nkv} hd=${hd}`);
    }
  });

  it('round trip: |x - dequant| <= 0.5 d + 2^-20 d + 2^-23, and the values are the trainer formula', () => {
    const r = rng(17);
    const shape: KvCacheShape = { nKvHeads: 4, headDim: 128, capacity: 64 };
    const pos = Int32Array.from({ length: 64 }, (_, i) => i);
    const row = shape.nKvHeads * shape.headDim;
    const x = adversarial(r, 64, row);
    // Plus plain normals of several scales.
    for (let i = 0; i < 16 * row; i++) x[i] = randomNormal(r, 1, 10 ** randInt(r, -6, 4))[0]!;
    const cache = new Uint8Array(kvCacheBytesQ3(shape));
    kvStoreQ3(ctx, x, pos, cache, shape);
    const trainer = trainerKvQ3(x);
    let checked = 0;
    for (let b = 0; b < 64; b++)
      for (let h = 0; h < shape.nKvHeads; h++) {
        const rb = (shape.headDim / 32) * 14;
        const o = (h * shape.capacity + b) * rb;
        const deq = refDequantQ3Row(cache, o, shape.headDim);
        for (let d = 0; d < shape.headDim; d++) {
          const bo = o + Math.floor(d / 32) * 14;
          const dd = halfToFloat(cache[bo]! | (cache[bo + 1]! << 8));
          const xi = x[b * row + h * shape.headDim + d]!;
          if (dd === Infinity) {
            // Overflowing block: codes 4; the trainer's torch formula gives 0 * inf there.
            expect((deq[d]! !== deq[d]!) || deq[d] === 0, `${isa} overflow value`).toBe(true);
            continue;
          }
          // + 0: the trainer's round(-0.3) * d is -0, the cache's (4 - 4) * d is +0 (the same value).
          expect(deq[d]! + 0, `${isa} trainer value b=${b} h=${h} d=${d}`).toBe(trainer[b * row + h * shape.headDim + d]! + 0);
          const err = Math.abs(xi - deq[d]!);
          if (!(err <= 0.5 * dd + 2 ** -20 * dd + 2 ** -23)) expect.fail(`${isa} round trip ${xi} -> ${deq[d]} (d ${dd})`);
          checked++;
        }
      }
    expect(checked).toBeGreaterThan(60 * 4 * 100);
  });

  function makeQ3Cache(r: () => number, shape: KvCacheShape, n: number, vScale = 1) {
    const row = shape.nKvHeads * shape.headDim;
    const pos = Int32Array.from({ length: n }, (_, p) => p);
    const kx = randomNormal(r, n * row);
    const vx = randomNormal(r, n * row, vScale);
    const k3 = new Uint8Array(kvCacheBytesQ3(shape));
    const v3 = new Uint8Array(kvCacheBytesQ3(shape));
    kvStoreQ3(ctx, kx, pos, k3, shape);
    kvStoreQ3(ctx, vx, pos, v3, shape);
    const k16 = new Uint16Array(kvCacheElements(shape));
    const v16 = new Uint16Array(kvCacheElements(shape));
    kvStoreF16(ctx, kx, pos, k16, shape);
    kvStoreF16(ctx, vx, pos, v16, shape);
    return { k3, v3, k16, v16 };
  }

  const shapes: Array<[number, number]> = [];
  for (const group of [1, 2, 3, 4, 5, 6, 7, 8]) for (const hd of [32, 64, 128]) shapes.push([group, hd]);
  it.each(shapes)('attentionQ3 matches the reference within the bound for GQA group %i, headDim %i', (group, hd) => {
    const r = rng(group * 1000 + hd);
    const nkv = 2;
    const nh = group * nkv;
    const shape: KvCacheShape = { nKvHeads: nkv, headDim: hd, capacity: 320 };
    const scale = 1 / Math.sqrt(hd);
    const { k3, v3, k16, v16 } = makeQ3Cache(r, shape, 301);
    for (const pos of [Int32Array.of(0), Int32Array.of(10, 11, 12, 13), Int32Array.of(300), Int32Array.of(37, 3, 200)]) {
      const q = randomNormal(r, pos.length * nh * hd);
      const got = attentionQ3(ctx, q, k3, v3, pos, nh, shape, scale);
      expectWithin(got, refAttentionQ3(q, k3, v3, pos, nh, nkv, hd, shape.capacity, scale), `${isa} q3 B=${pos.length}`);
      // Against the f16 cache: the quantization moves a unit-normal K/V value by up to d / 2 (d = amax / 3 of
      // its 32-block, amax ~2.5-3); a one-row attention returns the V row, so a single output moves by up to
      // ~0.75. Observed: max |q3 - f16| 0.08 to 0.85, root mean square 0.03 to 0.31
      // (the largest at L = 1); asserted < 1.5 and < 0.4.
      const f16 = attentionF16(ctx, q, k16, v16, pos, nh, shape, scale);
      let worst = 0;
      let ss = 0;
      for (let i = 0; i < got.length; i++) {
        worst = Math.max(worst, Math.abs(got[i]! - f16[i]!));
        ss += (got[i]! - f16[i]!) ** 2;
      }
      const rms = Math.sqrt(ss / got.length);
      expect(worst, `${isa} q3 vs f16 max B=${pos.length}`).toBeLessThan(1.5);
      expect(rms, `${isa} q3 vs f16 rms B=${pos.length}`).toBeLessThan(0.4);
    }
  });

  it('attentionQ3 handles peaked softmax, large V and gives the same bits with 1 and 2 threads', () => {
    const r = rng(78);
    const shape: KvCacheShape = { nKvHeads: 5, headDim: 128, capacity: 1024 };
    const pos = Int32Array.of(300, 301, 302);
    const { k3, v3 } = makeQ3Cache(r, shape, 303, 1e4);
    const q = randomNormal(r, 3 * 20 * 128, 30);
    const got = attentionQ3(ctx, q, k3, v3, pos, 20, shape, 0.088);
    expectWithin(got, refAttentionQ3(q, k3, v3, pos, 20, 5, 128, 1024, 0.088), `${isa} q3 peaked`);
    const one = new KernelContext({ isa, threads: 1 });
    expectSameBits(got, attentionQ3(one, q, k3, v3, pos, 20, shape, 0.088), `${isa} q3 threads`);
  });

  it('attentionQ3 over adversarial rows (zero, subnormal-d and ±max blocks) stays within the bound', () => {
    const r = rng(5);
    const shape: KvCacheShape = { nKvHeads: 2, headDim: 96, capacity: 70 };
    const n = 70;
    const all = Int32Array.from({ length: n }, (_, i) => i);
    const row = shape.nKvHeads * shape.headDim;
    // adversarial() without its overflowing kind 7 (those rows are not finite: ops.h asks |x| < 196560).
    const kx = adversarial(r, n, row).map((v) => (Math.abs(v) >= 196560 ? 1 : v));
    const vx = adversarial(r, n, row).map((v) => (Math.abs(v) >= 196560 ? -1 : v));
    const k3 = new Uint8Array(kvCacheBytesQ3(shape));
    const v3 = new Uint8Array(kvCacheBytesQ3(shape));
    kvStoreQ3(ctx, kx, all, k3, shape);
    kvStoreQ3(ctx, vx, all, v3, shape);
    const pos = Int32Array.of(69, 0, 33);
    const q = randomNormal(r, 3 * 6 * 96, 1e-3);
    const got = attentionQ3(ctx, q, k3, v3, pos, 6, shape, 0.1);
    expectWithin(got, refAttentionQ3(q, k3, v3, pos, 6, 2, 96, 70, 0.1), `${isa} q3 adversarial`);
  });
});

describe('q3 bindings', () => {
  type Raw = (...args: unknown[]) => void;
  const call = (name: string, ...args: unknown[]) => () => binding<Raw>(name)(...args);
  const ctx = new KernelContext({ threads: 2 });
  const h = ctx.handle;
  const f32a = (n: number) => new Float32Array(n);

  it('kvStoreQ3 rejects bad arguments', () => {
    const x = f32a(2 * 2 * 32);
    const cache = new Uint8Array(2 * 16 * 14);
    const pos = Int32Array.of(0, 1);
    expect(call('kvStoreQ3', h, x, pos, cache, 2, 2, 32, 16)).not.toThrow();
    expect(call('kvStoreQ3', h, x, Int32Array.of(0, 16), cache, 2, 2, 32, 16)).toThrow(/pos\[1\] = 16 is outside/);
    expect(call('kvStoreQ3', h, x, Int32Array.of(-1, 0), cache, 2, 2, 32, 16)).toThrow(/pos\[0\] = -1/);
    expect(call('kvStoreQ3', h, x, pos, new Uint8Array(2 * 16 * 14 - 1), 2, 2, 32, 16)).toThrow(RangeError);
    expect(call('kvStoreQ3', h, x, pos, new Uint8Array(2 * 16 * 14 + 1), 2, 2, 32, 16)).toThrow(RangeError);
    expect(call('kvStoreQ3', h, x, pos, new Uint8Array(2 * 16 * 34), 2, 2, 32, 16)).toThrow(/cache has/);
    expect(call('kvStoreQ3', h, x, pos, new Uint16Array(2 * 16 * 7), 2, 2, 32, 16)).toThrow(TypeError);
    expect(call('kvStoreQ3', h, x, pos, new Int8Array(2 * 16 * 14), 2, 2, 32, 16)).toThrow(TypeError);
    expect(call('kvStoreQ3', h, f32a(2 * 2 * 16), pos, new Uint8Array(2 * 16 * 7), 2, 2, 16, 16)).toThrow(/multiple of 32 for a q3/);
    expect(call('kvStoreQ3', h, f32a(2 * 2 * 40), pos, new Uint8Array(2 * 16 * 14), 2, 2, 40, 16)).toThrow(/multiple of 32/);
    expect(call('kvStoreQ3', h, f32a(127), pos, cache, 2, 2, 32, 16)).toThrow(RangeError);
    expect(call('kvStoreQ3', h, x, Int32Array.of(0), cache, 2, 2, 32, 16)).toThrow(RangeError);
    expect(call('kvStoreQ3', h, x, pos, cache, 2, 2, 32, 0)).toThrow(RangeError);
    expect(call('kvStoreQ3', h, x, pos, cache, 2, 2, 32, 2 ** 40)).toThrow(RangeError);
    expect(call('kvStoreQ3', h, x, pos, cache, 2, 2, 32)).toThrow(TypeError);
    expect(call('kvStoreQ3', null, x, pos, cache, 2, 2, 32, 16)).toThrow(TypeError);
    const shared = new ArrayBuffer(2048);
    expect(call('kvStoreQ3', h, new Float32Array(shared, 0, 128), pos, new Uint8Array(shared, 0, 448), 2, 2, 32, 16)).toThrow(/overlap/);
  });

  it('attentionQ3 rejects bad arguments', () => {
    const [B, nh, nkv, hd, cap] = [2, 4, 2, 32, 16];
    const q = f32a(B * nh * hd);
    const cb = nkv * cap * 14;
    const k = new Uint8Array(cb);
    const v = new Uint8Array(cb);
    const pos = Int32Array.of(3, 4);
    const out = () => f32a(B * nh * hd);
    expect(call('attentionQ3', h, q, k, v, pos, out(), B, nh, nkv, hd, cap, 0.3)).not.toThrow();
    expect(call('attentionQ3', h, q, k, v, pos, out(), B, nh, 3, hd, cap, 0.3)).toThrow(/not a multiple of nKvHeads/);
    expect(call('attentionQ3', h, f32a(B * nh * 40), new Uint8Array(nkv * cap * 20), new Uint8Array(nkv * cap * 20), pos,
      f32a(B * nh * 40), B, nh, nkv, 40, cap, 0.3)).toThrow(/multiple of 32 for a q3/);
    expect(call('attentionQ3', h, q, k, v, Int32Array.of(3, 16), out(), B, nh, nkv, hd, cap, 0.3)).toThrow(/pos\[1\] = 16/);
    expect(call('attentionQ3', h, q, k, v, Int32Array.of(-2, 1), out(), B, nh, nkv, hd, cap, 0.3)).toThrow(/pos\[0\] = -2/);
    expect(call('attentionQ3', h, q, k, new Uint8Array(cb - 1), pos, out(), B, nh, nkv, hd, cap, 0.3)).toThrow(/vCache has/);
    expect(call('attentionQ3', h, q, new Uint8Array(nkv * cap * 34), v, pos, out(), B, nh, nkv, hd, cap, 0.3)).toThrow(/kCache has/);
    expect(call('attentionQ3', h, q, new Uint16Array(cb / 2), v, pos, out(), B, nh, nkv, hd, cap, 0.3)).toThrow(TypeError);
    expect(call('attentionQ3', h, q, k, v, pos, out(), B, nh, nkv, hd, cap, Number.NaN)).toThrow(RangeError);
    expect(call('attentionQ3', h, q, k, v, pos, f32a(B * nh * hd - 1), B, nh, nkv, hd, cap, 0.3)).toThrow(RangeError);
    expect(call('attentionQ3', h, q, k, v, pos, q, B, nh, nkv, hd, cap, 0.3)).toThrow(/out overlaps q/);
    const shared = new ArrayBuffer(cb + B * nh * hd * 4);
    expect(call('attentionQ3', h, q, k, new Uint8Array(shared, 0, cb), pos, new Float32Array(shared, 0, B * nh * hd), B, nh, nkv,
      hd, cap, 0.3)).toThrow(/out overlaps vCache/);
    expect(call('attentionQ3', h, q, k, v, pos, out(), B, nh, nkv, hd, cap)).toThrow(TypeError);
    expect(call('attentionQ3', null, q, k, v, pos, out(), B, nh, nkv, hd, cap, 0.3)).toThrow(TypeError);
  });
});
