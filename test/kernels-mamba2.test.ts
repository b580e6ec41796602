// The native Mamba-2 mixer kernels (native/kernels/mamba2.h) on every ISA of this machine against the float64
// reference (lib/reference/mamba2.ts) within the per-element bounds its mamba2*Bound functions compute: the conv
// with its state, the SSD recurrence, the SSD chunked scan (= the recurrence), the gated RMSNorm; random and
// adversarial shapes and values, states carried across calls, that the bounds are tight enough to catch a wrong
// tap / group / D term / softplus, and argument checking (typed errors, no crash).
import { describe, expect, it } from 'vitest';

import { type Mamba2KernelDims, gatedRmsNorm, mamba2Conv, ssdChunked, ssdRecurrent } from '../lib/kernels/mamba2.js';
import { binding } from '../lib/native.js';
import {
  type Mamba2Dims, type SsdBoundState, gatedRmsNormBound, mamba2ConvBound, mamba2ConvDim, refGatedRmsNorm, refMamba2Conv,
  refSsdChunked, refSsdRecurrent, ssdBoundState, ssdChunkedBound, ssdRecurrentBound,
} from '../lib/reference/mamba2.js';
import { contextsPerIsa, randomNormal, rng } from './helpers.js';

const contexts = contextsPerIsa();

/** Every element within its bound (first failure reported); returns the largest error / bound. */
function expectWithin(got: ArrayLike<number>, want: ArrayLike<number>, bound: ArrayLike<number>, what: string): number {
  expect(got.length, `${what}: length`).toBe(want.length);
  let worst = 0;
  for (let i = 0; i < got.length; i++) {
    const err = Math.abs(got[i]! - want[i]!);
    if (!(err <= bound[i]!)) expect.fail(`${what}: element ${i} is ${got[i]}, reference ${want[i]} (bound ${bound[i]})`);
    if (bound[i]! > 0) worst = Math.max(worst, err / bound[i]!);
  }
  return worst;
}

/** Some element outside its bound: the bound catches the difference. */
function outside(got: ArrayLike<number>, want: ArrayLike<number>, bound: ArrayLike<number>): boolean {
  for (let i = 0; i < got.length; i++) if (!(Math.abs(got[i]! - want[i]!) <= bound[i]!)) return true;
  return false;
}

const dimsOf = (dInner: number, dState: number, nHeads: number, nGroups: number, dConv: number): Mamba2Dims =>
  ({ dModel: 1, dInner, dState, nHeads, nGroups, dConv });

// [name, dims]: groups 1 and > 1, dState not a multiple of 16, headDim 1, odd sizes, a tile-sized one.
const SHAPES: Array<[string, Mamba2Dims]> = [
  ['small groups 2', dimsOf(32, 8, 4, 2, 4)],
  ['odd, 1 group', dimsOf(15, 5, 3, 1, 3)],
  ['headDim 1, 3 groups', dimsOf(6, 3, 6, 3, 2)],
  ['dState 20, conv 1', dimsOf(40, 20, 4, 4, 1)],
  ['tiles: headDim 64, dState 128', dimsOf(256, 128, 4, 1, 4)],
  ['headDim 37, dState 17', dimsOf(74, 17, 2, 2, 4)],
];

interface SsmInputs {
  x: Float32Array;
  B: Float32Array;
  C: Float32Array;
  dt: Float32Array;
}

function ssmInputs(d: Mamba2Dims, T: number, seed: number, dtScale = 1.5): SsmInputs {
  const r = rng(seed);
  const G = d.nGroups * d.dState;
  return { x: randomNormal(r, T * d.dInner), B: randomNormal(r, T * G), C: randomNormal(r, T * G), dt: randomNormal(r, T * d.nHeads, dtScale) };
}

function ssmParams(d: Mamba2Dims, seed: number) {
  const r = rng(seed);
  return {
    dtBias: randomNormal(r, d.nHeads, 0.5),
    ALog: Float32Array.from({ length: d.nHeads }, () => r() * 3 - 1),
    D: randomNormal(r, d.nHeads),
  };
}

const slice = (a: Float32Array, row: number, a0: number, a1: number) => a.subarray(a0 * row, a1 * row);

describe.each(contexts)('mamba2 kernels on %s', (isa, ctx) => {
  describe('conv', () => {
    it.each(SHAPES)('matches refMamba2Conv within its bound, state carried across calls (%s)', (_name, d) => {
      const Cd = mamba2ConvDim(d);
      const K = d.dConv;
      const r = rng(Cd * 7 + K);
      const w = randomNormal(r, Cd * K, 0.7);
      const bias = randomNormal(r, Cd, 0.3);
      const T = 23;
      const xBC = randomNormal(r, T * Cd, 2);
      const state = randomNormal(r, (K - 1) * Cd);
      const refState = Float64Array.from(state);
      const state0 = Float32Array.from(state);
      // Pieces of 1, 2, 7 and 13 rows (fewer and more rows than the K - 1 of the state).
      const whole = new Float32Array(T * Cd);
      let worst = 0;
      for (const [a, b] of [[0, 1], [1, 3], [3, 10], [10, 23]] as const) {
        const x = slice(xBC, Cd, a, b);
        const bound = mamba2ConvBound(d, x, b - a, w, bias, refState);
        const want = refMamba2Conv(d, x, b - a, w, bias, refState);
        const got = mamba2Conv(ctx, d, x, b - a, w, bias, state);
        worst = Math.max(worst, expectWithin(got, want, bound, `${isa} conv rows ${a}..${b}`));
        whole.set(got, a * Cd);
        expect(Array.from(state), 'the state is the raw rows, exactly').toEqual(Array.from(refState, (v) => Math.fround(v)));
      }
      // Pieces = at once (bit for bit: each output is the same sum in the same order).
      const once = mamba2Conv(ctx, d, xBC, T, w, bias, state0);
      expect(Array.from(once)).toEqual(Array.from(whole));
      expect(Array.from(state0)).toEqual(Array.from(state));
      expect(worst).toBeLessThanOrEqual(1);
    });

    it('handles all-zero inputs, pre-activations far below -88 and above 88, and catches a wrong tap', () => {
      const d = dimsOf(16, 4, 4, 2, 4);
      const Cd = mamba2ConvDim(d);
      const T = 5;
      const r = rng(3);
      const zeros = mamba2Conv(ctx, d, new Float32Array(T * Cd), T, new Float32Array(Cd * 4), new Float32Array(Cd), new Float32Array(3 * Cd));
      expect(zeros.every((v) => v === 0)).toBe(true);
      for (const scale of [200, 1e4]) {
        const xBC = randomNormal(r, T * Cd, scale);
        const w = randomNormal(r, Cd * 4);
        const bias = randomNormal(r, Cd);
        const st = new Float64Array(3 * Cd);
        const bound = mamba2ConvBound(d, xBC, T, w, bias, st);
        const want = refMamba2Conv(d, xBC, T, w, bias, st);
        expectWithin(mamba2Conv(ctx, d, xBC, T, w, bias, new Float32Array(3 * Cd)), want, bound, `${isa} conv scale ${scale}`);
      }
      // A wrong tap order (tap 0 on the current row) is far outside the bound.
      const xBC = randomNormal(r, T * Cd);
      const w = randomNormal(r, Cd * 4);
      const bias = randomNormal(r, Cd);
      const flipped = new Float32Array(Cd * 4);
      for (let c = 0; c < Cd; c++) for (let k = 0; k < 4; k++) flipped[c * 4 + k] = w[c * 4 + 3 - k]!;
      const got = mamba2Conv(ctx, d, xBC, T, w, bias, new Float32Array(3 * Cd));
      const st = new Float64Array(3 * Cd);
      expect(outside(got, refMamba2Conv(d, xBC, T, flipped, bias, st.slice()), mamba2ConvBound(d, xBC, T, flipped, bias, st))).toBe(true);
    });
  });

  describe('SSD', () => {
    const runBoth = (d: Mamba2Dims, T: number, seed: number, chunk: number | undefined, inputs?: SsmInputs,
      params?: ReturnType<typeof ssmParams>, stateScale = 0.5) => {
      const { x, B, C, dt } = inputs ?? ssmInputs(d, T, seed);
      const p = params ?? ssmParams(d, seed + 1);
      const P = d.dInner / d.nHeads;
      const state = randomNormal(rng(seed + 2), d.nHeads * P * d.dState, stateScale);
      const refState = Float64Array.from(state);
      const bs = ssdBoundState(state);
      const bound = chunk === undefined ? ssdRecurrentBound(d, x, B, C, dt, T, p, bs) : ssdChunkedBound(d, x, B, C, dt, T, p, bs, chunk);
      const want = refSsdRecurrent(d, x, B, C, dt, T, p, refState);
      const got = chunk === undefined ? ssdRecurrent(ctx, d, x, B, C, dt, T, p, state) : ssdChunked(ctx, d, x, B, C, dt, T, p, state, chunk);
      const what = `${isa} ${chunk === undefined ? 'recurrent' : `chunked ${chunk}`} T ${T}`;
      const wy = expectWithin(got, want, bound.y, `${what} y`);
      const ws = expectWithin(state, refState, bound.state, `${what} state`);
      return { got, want, bound, state, refState, x, B, C, dt, p, worst: Math.max(wy, ws) };
    };

    it.each(SHAPES)('the recurrence matches refSsdRecurrent within its bound (%s)', (_name, d) => {
      for (const T of [1, 2, 9, 40]) runBoth(d, T, T * 13 + d.dInner, undefined);
    });

    it.each(SHAPES)('the chunked scan matches the recurrence within its bound (%s)', (_name, d) => {
      for (const [T, chunk] of [[1, 1], [1, 64], [9, 4], [40, 16], [40, 64], [67, 8], [70, 64]] as const) {
        const r = runBoth(d, T, T * 17 + chunk, chunk);
        // and the reference's own chunked form
        const s = Float64Array.from(randomNormal(rng(T * 17 + chunk + 2), d.nHeads * (d.dInner / d.nHeads) * d.dState, 0.5));
        const wc = refSsdChunked(d, r.x, r.B, r.C, r.dt, T, r.p, s, chunk);
        expectWithin(r.got, wc, r.bound.y.map((v) => v + 1e-9 * Math.abs(r.want[0]!) + 1e-12), `${isa} vs refSsdChunked`);
      }
    });

    it('pieces = at once: decode steps after a prefill, both forms, the state carried (bounds carried too)', () => {
      const d = dimsOf(48, 12, 6, 2, 4);
      const T = 45;
      const { x, B, C, dt } = ssmInputs(d, T, 99);
      const p = ssmParams(d, 100);
      const P = d.dInner / d.nHeads;
      const G = d.nGroups * d.dState;
      const s0 = randomNormal(rng(101), d.nHeads * P * d.dState, 0.5);
      const refState = Float64Array.from(s0);
      const want = refSsdRecurrent(d, x, B, C, dt, T, p, refState);
      const pieces: Array<[number, number, number | undefined]> = [[0, 20, 8], [20, 21, undefined], [21, 22, undefined], [22, 40, 64], [40, 45, undefined]];
      for (const order of ['mixed', 'recurrent'] as const) {
        const state = Float32Array.from(s0);
        const bs: SsdBoundState = ssdBoundState(s0);
        const got = new Float32Array(T * d.dInner);
        const bound = new Float64Array(T * d.dInner);
        for (const [a, b, chunk0] of pieces) {
          const chunk = order === 'recurrent' ? undefined : chunk0;
          const args = [slice(x, d.dInner, a, b), slice(B, G, a, b), slice(C, G, a, b), slice(dt, d.nHeads, a, b)] as const;
          const bd = chunk === undefined ? ssdRecurrentBound(d, ...args, b - a, p, bs) : ssdChunkedBound(d, ...args, b - a, p, bs, chunk);
          const y = chunk === undefined ? ssdRecurrent(ctx, d, ...args, b - a, p, state) : ssdChunked(ctx, d, ...args, b - a, p, state, chunk);
          got.set(y, a * d.dInner);
          bound.set(bd.y, a * d.dInner);
        }
        expectWithin(got, want, bound, `${isa} ${order} pieces`);
        expectWithin(state, refState, bs.E, `${isa} ${order} pieces state`);
        if (order === 'recurrent') {
          // The recurrence in pieces is the recurrence at once, bit for bit.
          const s1 = Float32Array.from(s0);
          const once = ssdRecurrent(ctx, d, x, B, C, dt, T, p, s1);
          expect(Array.from(got)).toEqual(Array.from(once));
          expect(Array.from(state)).toEqual(Array.from(s1));
        }
      }
    });

    it('adversarial values: all zeros, |dt| large (softplus saturates both ways), decay ~0 and ~1, a large state', () => {
      const d = dimsOf(36, 18, 6, 3, 4);
      const T = 30;
      const G = d.nGroups * d.dState;
      const zero: SsmInputs = { x: new Float32Array(T * d.dInner), B: new Float32Array(T * G), C: new Float32Array(T * G), dt: new Float32Array(T * d.nHeads) };
      for (const chunk of [undefined, 8]) {
        const z = runBoth(d, T, 5, chunk, zero, undefined, 0);
        expect(z.got.every((v) => v === 0)).toBe(true);
        expect(z.state.every((v) => v === 0)).toBe(true);
        const base = ssmInputs(d, T, 6);
        // dt = ±40: softplus(v) = v above 20, ~e^v far below.
        const bigDt = { ...base, dt: Float32Array.from(base.dt, (v) => (v > 0 ? 40 : -40)) };
        runBoth(d, T, 7, chunk, bigDt);
        // ALog 5 (A = -148: decay ~0 in one step), -20 (A ~ -2e-9: decay ~1), mixed per head.
        const p = ssmParams(d, 8);
        p.ALog = Float32Array.of(5, -20, 5, -20, 0, 2);
        runBoth(d, T, 9, chunk, base, p);
        runBoth(d, T, 10, chunk, bigDt, p, 1e3);
      }
    });

    it('the bounds are tight enough to catch a missing D term, a wrong group mapping and a wrong softplus', () => {
      const d = dimsOf(32, 8, 4, 2, 4);
      const T = 12;
      for (const chunk of [undefined, 4]) {
        const r = runBoth(d, T, 21, chunk);
        const refWith = (p: typeof r.p, B = r.B, C = r.C) =>
          refSsdRecurrent(d, r.x, B, C, r.dt, T, p, Float64Array.from(randomNormal(rng(21 + 2), d.dInner * d.dState, 0.5)));
        expect(outside(r.got, refWith({ ...r.p, D: new Float32Array(d.nHeads) }), r.bound.y), 'no D').toBe(true);
        expect(outside(r.got, refWith({ ...r.p, dtBias: new Float32Array(d.nHeads) }), r.bound.y), 'softplus without dtBias').toBe(true);
        // A wrong group mapping: every head reading the other group (B and C's two groups swapped).
        const swap = (a: Float32Array) => {
          const o = Float32Array.from(a);
          for (let t = 0; t < T; t++)
            for (let n = 0; n < d.dState; n++) {
              o[t * 16 + n] = a[t * 16 + 8 + n]!;
              o[t * 16 + 8 + n] = a[t * 16 + n]!;
            }
          return o;
        };
        expect(outside(r.got, refWith(r.p, swap(r.B), swap(r.C)), r.bound.y), 'groups swapped').toBe(true);
        // A softplus off by 0.7 in its argument.
        const pExp = { ...r.p, dtBias: Float32Array.from(r.p.dtBias, (v) => v + 0.7) };
        expect(outside(r.got, refWith(pExp), r.bound.y), 'a shifted softplus').toBe(true);
      }
    });
  });

  describe('gated RMSNorm', () => {
    const cases: Array<[number, number, number]> = [[1, 1, 1], [3, 7, 1], [2, 48, 4], [2, 3072, 1], [1, 75, 3], [4, 33, 11]];
    it.each(cases)('matches refGatedRmsNorm within its bound (T %i, dInner %i, nGroups %i)', (T, dInner, nGroups) => {
      const r = rng(T * 1000 + dInner + nGroups);
      const d = { dInner, nGroups };
      const dd = dimsOf(dInner, 1, 1, nGroups, 1);
      for (const zScale of [1, 4, 200]) {
        const y = randomNormal(r, T * dInner, 3);
        const z = randomNormal(r, T * dInner, zScale);
        const w = randomNormal(r, dInner);
        for (const eps of [1e-5, 1e-6]) {
          const got = gatedRmsNorm(ctx, d, y, z, w, T, eps);
          expectWithin(got, refGatedRmsNorm(dd, y, z, w, T, eps), gatedRmsNormBound(dd, y, z, w, T, eps), `${isa} T ${T} z x${zScale}`);
        }
      }
      const zeros = gatedRmsNorm(ctx, d, new Float32Array(T * dInner), randomNormal(r, T * dInner), randomNormal(r, dInner), T, 1e-5);
      expect(zeros.every((v) => v === 0)).toBe(true);
    });

    it('catches a missing gate and a norm over the whole row instead of per group', () => {
      const T = 2;
      const dd = dimsOf(32, 1, 1, 4, 1);
      const r = rng(77);
      const y = randomNormal(r, T * 32);
      const z = randomNormal(r, T * 32);
      const w = randomNormal(r, 32);
      const got = gatedRmsNorm(ctx, dd, y, z, w, T, 1e-5);
      const bound = gatedRmsNormBound(dd, y, z, w, T, 1e-5);
      expect(outside(got, refGatedRmsNorm({ ...dd, nGroups: 1 }, y, z, w, T, 1e-5), bound)).toBe(true);
      expect(outside(got, refGatedRmsNorm(dd, y, new Float32Array(T * 32).fill(50), w, T, 1e-5), bound)).toBe(true);
    });
  });

  it(`reports its variant in info().kernels`, () => {
    expect(ctx.info().kernels['mamba2']).toBe(isa);
  });
});

describe('mamba2 argument checking', () => {
  const [, ctx] = contexts[0]!;
  const h = ctx.handle;
  type Raw = (...args: unknown[]) => unknown;
  const call = (name: string, ...args: unknown[]) => () => binding<Raw>(name)(...args);
  const f32 = (n: number) => new Float32Array(n);
  const d: Mamba2KernelDims = { dInner: 8, dState: 3, nHeads: 4, nGroups: 2, dConv: 3 };
  const Cd = 8 + 2 * 2 * 3;

  it('the TS wrappers throw typed errors naming the argument', () => {
    const T = 2;
    expect(() => mamba2Conv(ctx, d, f32(T * Cd - 1), T, f32(Cd * 3), f32(Cd), f32(2 * Cd))).toThrow(/xBC has/);
    expect(() => mamba2Conv(ctx, d, f32(T * Cd), T, f32(Cd * 3), f32(Cd), f32(2 * Cd + 1))).toThrow(RangeError);
    expect(() => mamba2Conv(ctx, d, f32(T * Cd), 0, f32(Cd * 3), f32(Cd), f32(2 * Cd))).toThrow(/T must be/);
    expect(() => mamba2Conv(ctx, { ...d, dConv: 17 }, f32(T * Cd), T, f32(Cd * 17), f32(Cd), f32(16 * Cd))).toThrow(/dConv/);
    expect(() => mamba2Conv(ctx, d, new Float64Array(T * Cd) as unknown as Float32Array, T, f32(Cd * 3), f32(Cd), f32(2 * Cd))).toThrow(TypeError);
    const p = { dtBias: f32(4), ALog: f32(4), D: f32(4) };
    const args = [f32(T * 8), f32(T * 6), f32(T * 6), f32(T * 4)] as const;
    expect(() => ssdRecurrent(ctx, d, ...args, T, p, f32(4 * 2 * 3))).not.toThrow();
    expect(() => ssdRecurrent(ctx, { ...d, nGroups: 3 }, ...args, T, p, f32(24))).toThrow(/not a multiple of nGroups/);
    expect(() => ssdRecurrent(ctx, { ...d, dInner: 9 }, ...args, T, p, f32(24))).toThrow(/not a multiple of nHeads/);
    expect(() => ssdRecurrent(ctx, d, ...args, T, { ...p, D: f32(3) }, f32(24))).toThrow(/D has 3/);
    expect(() => ssdRecurrent(ctx, d, ...args, T, p, f32(23))).toThrow(/state has 23/);
    expect(() => ssdRecurrent(ctx, d, ...args, 1.5, p, f32(24))).toThrow(RangeError);
    expect(() => ssdChunked(ctx, d, ...args, T, p, f32(24), 0)).toThrow(/chunk/);
    expect(() => ssdChunked(ctx, d, ...args, T, p, f32(24), 257)).toThrow(/chunk/);
    expect(() => ssdChunked(ctx, d, ...args, T, p, f32(24), '4' as unknown as number)).toThrow(TypeError);
    expect(() => gatedRmsNorm(ctx, { dInner: 8, nGroups: 3 }, f32(8), f32(8), f32(8), 1, 1e-5)).toThrow(/nGroups/);
    expect(() => gatedRmsNorm(ctx, { dInner: 8, nGroups: 2 }, f32(8), f32(8), f32(8), 1, 0)).toThrow(/eps/);
    expect(() => gatedRmsNorm(ctx, { dInner: 8, nGroups: 2 }, f32(8), f32(8), f32(7), 1, 1e-5)).toThrow(/w has 7/);
  });

  it('the bindings check every argument themselves', () => {
    const T = 2;
    expect(call('mamba2Conv', {}, f32(T * 4), f32(8), f32(4), f32(4), f32(T * 4), T, 4, 2)).toThrow(TypeError);
    expect(call('mamba2Conv', h, f32(T * 4), f32(8), f32(4), f32(4), f32(T * 4), T, 4, 2)).not.toThrow();
    expect(call('mamba2Conv', h, f32(T * 4), f32(8), f32(4), f32(4), f32(T * 4), T, 4, 17)).toThrow(RangeError);
    expect(call('mamba2Conv', h, f32(T * 4), f32(8), f32(4), f32(3), f32(T * 4), T, 4, 2)).toThrow(/state has 3/);
    const buf = f32(T * 4 + 4);
    expect(call('mamba2Conv', h, buf.subarray(0, 8), f32(8), f32(4), f32(4), buf.subarray(4, 12), T, 4, 2)).toThrow(/overlap/);
    expect(call('mamba2Conv', h, f32(T * 4), f32(8), f32(4), buf.subarray(0, 4), buf.subarray(2, 10), T, 4, 2)).toThrow(/overlap/);
    const ssd = (name: string, over: Record<number, unknown> = {}, extra: unknown[] = []) => {
      const a: unknown[] = [h, f32(T * 8), f32(T * 6), f32(T * 6), f32(T * 4), f32(4), f32(4), f32(4), f32(24), f32(T * 8), T, 4, 2, 2, 3, ...extra];
      for (const [k, v] of Object.entries(over)) a[Number(k)] = v;
      return call(name, ...a);
    };
    for (const [name, extra] of [['ssdRecurrent', []], ['ssdChunked', [4]]] as const) {
      expect(ssd(name, {}, [...extra])).not.toThrow();
      expect(ssd(name, { 13: 3 }, [...extra])).toThrow(/nGroups/);
      expect(ssd(name, { 13: 5 }, [...extra])).toThrow(RangeError);
      expect(ssd(name, { 12: 0 }, [...extra])).toThrow(RangeError);
      expect(ssd(name, { 2: f32(T * 6 + 1) }, [...extra])).toThrow(/B has/);
      expect(ssd(name, { 4: new Int32Array(T * 4) }, [...extra])).toThrow(TypeError);
      expect(ssd(name, { 14: 2 ** 40 }, [...extra])).toThrow(RangeError);
      const s = f32(T * 8 + 24);
      expect(ssd(name, { 8: s.subarray(0, 24), 9: s.subarray(16, 32) }, [...extra])).toThrow(/overlap/);
      expect(ssd(name, { 8: s.subarray(0, 24), 1: s.subarray(8, 24) }, [...extra])).toThrow(/overlap/);
    }
    expect(ssd('ssdChunked', {}, [])).toThrow(TypeError);
    expect(ssd('ssdChunked', {}, [0])).toThrow(RangeError);
    expect(ssd('ssdChunked', {}, [Number.NaN])).toThrow(RangeError);
    expect(call('gatedRmsNorm', h, f32(8), f32(8), f32(8), f32(8), 1, 8, 2, Number.NaN)).toThrow(RangeError);
    expect(call('gatedRmsNorm', h, f32(8), f32(8), f32(8), f32(8), 1, 8, 2, 1e300)).toThrow(RangeError);
    expect(call('gatedRmsNorm', h, f32(8), f32(8), f32(8), f32(8), 1, 8, 9, 1e-5)).toThrow(RangeError);
    const b2 = f32(16);
    expect(call('gatedRmsNorm', h, b2.subarray(0, 8), f32(8), f32(8), b2.subarray(4, 12), 1, 8, 2, 1e-5)).toThrow(/overlap/);
  });
});
