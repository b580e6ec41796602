// The Mamba-2 reference (lib/reference/mamba2.ts), Bi-Mamba's block: the chunked SSD scan against the
// token-by-token recurrence, the conv's state across calls, the gated norm's groups, prefill then decode against
// one prefill, and the dimension checks.
import { describe, expect, it } from 'vitest';

import {
  type Mamba2Dims, type Mamba2MixerWeights, checkMamba2Dims, mamba2ConvDim, mamba2EmptyState, mamba2InProjDim, refGatedRmsNorm,
  refMamba2Conv, refMamba2Mixer, refSsdChunked, refSsdRecurrent, softplus,
} from '../lib/reference/mamba2.js';
import { rng } from './helpers.js';

const DIMS: Mamba2Dims = { dModel: 24, dInner: 32, dState: 8, nHeads: 4, nGroups: 2, dConv: 4 };

function randn(r: () => number, n: number, scale = 1): Float64Array {
  return Float64Array.from({ length: n }, () => (r() * 2 - 1) * scale);
}

function ssmInputs(d: Mamba2Dims, T: number, seed: number) {
  const r = rng(seed);
  const G = d.nGroups * d.dState;
  return {
    x: randn(r, T * d.dInner), B: randn(r, T * G), C: randn(r, T * G), dt: randn(r, T * d.nHeads, 3),
    p: { dtBias: randn(r, d.nHeads), ALog: randn(r, d.nHeads, 1.5), D: randn(r, d.nHeads) },
  };
}

function maxRelErr(a: Float64Array, b: Float64Array): number {
  let m = 0;
  let scale = 0;
  for (let i = 0; i < a.length; i++) scale = Math.max(scale, Math.abs(b[i]!));
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]! - b[i]!));
  return m / Math.max(scale, 1e-300);
}

describe('Mamba-2 reference', () => {
  it('the chunked SSD scan equals the recurrence (any chunk size, groups, a state carried in and out)', () => {
    for (const d of [DIMS, { ...DIMS, nGroups: 1 }, { ...DIMS, nHeads: 8, nGroups: 4 }]) {
      for (const [T, chunk] of [[1, 1], [5, 2], [37, 8], [100, 256], [300, 64], [257, 256]] as const) {
        const { x, B, C, dt, p } = ssmInputs(d, T, T * 31 + chunk);
        const s0 = randn(rng(T), d.dInner * d.dState, 0.5);
        const s1 = s0.slice();
        const yr = refSsdRecurrent(d, x, B, C, dt, T, p, s0);
        const yc = refSsdChunked(d, x, B, C, dt, T, p, s1, chunk);
        expect(maxRelErr(yc, yr), `T ${T} chunk ${chunk} groups ${d.nGroups}`).toBeLessThan(1e-12);
        expect(maxRelErr(s1, s0)).toBeLessThan(1e-12);
      }
    }
  });

  it('running the SSM in pieces equals running it at once (the state carries everything)', () => {
    const T = 50;
    const { x, B, C, dt, p } = ssmInputs(DIMS, T, 7);
    const G = DIMS.nGroups * DIMS.dState;
    const whole = refSsdRecurrent(DIMS, x, B, C, dt, T, p, new Float64Array(DIMS.dInner * DIMS.dState));
    const s = new Float64Array(DIMS.dInner * DIMS.dState);
    const parts: number[] = [];
    for (const [a, b] of [[0, 13], [13, 14], [14, 50]] as const) {
      const n = b - a;
      parts.push(...refSsdChunked(DIMS, x.subarray(a * DIMS.dInner), B.subarray(a * G), C.subarray(a * G), dt.subarray(a * DIMS.nHeads), n, p, s, 4));
    }
    expect(maxRelErr(Float64Array.from(parts), whole)).toBeLessThan(1e-12);
  });

  it('the conv: SiLU(Σ taps + bias) with zero left padding; its state is the last dConv - 1 raw rows, across calls', () => {
    const d = DIMS;
    const Cd = mamba2ConvDim(d);
    const r = rng(3);
    const T = 9;
    const xBC = randn(r, T * Cd);
    const w = randn(r, Cd * d.dConv);
    const b = randn(r, Cd);
    const state = mamba2EmptyState(d).conv;
    const all = refMamba2Conv(d, xBC, T, w, b, state);
    // By hand for one channel and row: taps over rows t-3 .. t (zeros before 0).
    const c = 5;
    for (const t of [0, 2, 8]) {
      let s = b[c]!;
      for (let k = 0; k < d.dConv; k++) {
        const row = t - (d.dConv - 1) + k;
        if (row >= 0) s += w[c * d.dConv + k]! * xBC[row * Cd + c]!;
      }
      expect(all[t * Cd + c]).toBeCloseTo(s / (1 + Math.exp(-s)), 12);
    }
    expect(Array.from(state)).toEqual(Array.from(xBC.subarray((T - 3) * Cd)));
    // One row at a time gives the same rows.
    const st = mamba2EmptyState(d).conv;
    for (let t = 0; t < T; t++) {
      const one = refMamba2Conv(d, xBC.subarray(t * Cd, (t + 1) * Cd), 1, w, b, st);
      expect(Array.from(one)).toEqual(Array.from(all.subarray(t * Cd, (t + 1) * Cd)));
    }
    // Fewer rows than the kernel: the state keeps the zeros before them.
    const short = mamba2EmptyState(d).conv;
    refMamba2Conv(d, xBC, 1, w, b, short);
    expect(Array.from(short.subarray(0, 2 * Cd)).every((v) => v === 0)).toBe(true);
    expect(Array.from(short.subarray(2 * Cd))).toEqual(Array.from(xBC.subarray(0, Cd)));
  });

  it('the gated RMSNorm gates before normalizing, and normalizes each of nGroups groups on its own', () => {
    const r = rng(11);
    const y = randn(r, 2 * DIMS.dInner);
    const z = randn(r, 2 * DIMS.dInner);
    const w = randn(r, DIMS.dInner);
    const out = refGatedRmsNorm(DIMS, y, z, w, 2, 1e-5);
    const n = DIMS.dInner / DIMS.nGroups;
    for (let t = 0; t < 2; t++)
      for (let g = 0; g < DIMS.nGroups; g++) {
        const o = t * DIMS.dInner + g * n;
        const gated = Array.from({ length: n }, (_, i) => y[o + i]! * (z[o + i]! / (1 + Math.exp(-z[o + i]!))));
        const rms = Math.sqrt(gated.reduce((a, v) => a + v * v, 0) / n + 1e-5);
        for (let i = 0; i < n; i++) expect(out[o + i]).toBeCloseTo((gated[i]! / rms) * w[g * n + i]!, 12);
      }
    // One group over the whole row differs from two.
    const one = refGatedRmsNorm({ ...DIMS, nGroups: 1 }, y, z, w, 2, 1e-5);
    expect(maxRelErr(one, out)).toBeGreaterThan(1e-3);
  });

  it('softplus follows torch (x itself above 20)', () => {
    expect(softplus(0)).toBeCloseTo(Math.log(2), 15);
    expect(softplus(25)).toBe(25);
    expect(softplus(-30)).toBeCloseTo(Math.exp(-30), 20);
  });

  it('the mixer: a prefill then one decode step equals one prefill of every row (chunked or not)', () => {
    const d = DIMS;
    const r = rng(21);
    const F = mamba2InProjDim(d);
    const Wi = randn(r, F * d.dModel, 0.3);
    const Wo = randn(r, d.dModel * d.dInner, 0.3);
    const matmul = (W: Float64Array, rows: number, cols: number) => (h: Float64Array, T: number) => {
      const out = new Float64Array(T * rows);
      for (let t = 0; t < T; t++)
        for (let o = 0; o < rows; o++) {
          let s = 0;
          for (let k = 0; k < cols; k++) s += W[o * cols + k]! * h[t * cols + k]!;
          out[t * rows + o] = s;
        }
      return out;
    };
    const w: Mamba2MixerWeights = {
      inProj: matmul(Wi, F, d.dModel), outProj: matmul(Wo, d.dModel, d.dInner),
      convWeight: randn(r, mamba2ConvDim(d) * d.dConv), convBias: randn(r, mamba2ConvDim(d)), normWeight: randn(r, d.dInner), normEps: 1e-5,
      dtBias: randn(r, d.nHeads), ALog: randn(r, d.nHeads), D: randn(r, d.nHeads),
    };
    const T = 20;
    const h = randn(r, T * d.dModel);
    const whole = refMamba2Mixer(d, w, h, T, mamba2EmptyState(d));
    const st = mamba2EmptyState(d);
    const pre = refMamba2Mixer(d, w, h.subarray(0, (T - 1) * d.dModel), T - 1, st, 8);
    const step = refMamba2Mixer(d, w, h.subarray((T - 1) * d.dModel), 1, st);
    expect(maxRelErr(Float64Array.from([...pre, ...step]), whole)).toBeLessThan(1e-12);
  });

  it('rejects dimensions that do not fit, naming them', () => {
    expect(() => checkMamba2Dims({ ...DIMS, dInner: 30 })).toThrow(/dInner 30 is not a multiple of nHeads 4/);
    expect(() => checkMamba2Dims({ ...DIMS, nGroups: 3 })).toThrow(/nHeads 4 is not a multiple of nGroups 3/);
    expect(() => checkMamba2Dims({ ...DIMS, dState: 0 })).toThrow(/dState must be an integer >= 1/);
    const { x, B, C, dt, p } = ssmInputs(DIMS, 4, 1);
    expect(() => refSsdChunked(DIMS, x, B, C, dt, 4, p, new Float64Array(256), 0)).toThrow(/chunk must be/);
  });
});
