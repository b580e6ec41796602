// Typed wrappers over the native Mamba-2 mixer kernels (native/kernels/mamba2.h): the causal depthwise conv with
// its state, the SSD recurrence (decode), the SSD chunked scan (prefill) and the gated RMSNorm. Same contracts as
// refMamba2Conv / refSsdRecurrent / refSsdChunked / refGatedRmsNorm (lib/reference/mamba2.ts) in float32, within
// the bounds mamba2ConvBound / ssdRecurrentBound / ssdChunkedBound / gatedRmsNormBound there compute. Every
// argument is checked here (TypeError / RangeError naming it) and again by the native side before any pointer
// is touched.
import { binding } from '../native.js';
import type { KernelContext } from './context.js';

/** The dimensions these kernels read (a reference Mamba2Dims fits). */
export interface Mamba2KernelDims {
  dInner: number;
  dState: number;
  nHeads: number;
  nGroups: number;
  dConv: number;
}

/** The per-head SSM parameters, float32: dtBias, ALog (A = -exp(ALog)) and D, each [nHeads]. */
export interface Mamba2SsmParams32 {
  dtBias: Float32Array;
  ALog: Float32Array;
  D: Float32Array;
}

/** Largest conv kernel, chunk length and rows per call the native side accepts. */
export const MAMBA2_MAX_CONV = 16;
export const SSD_MAX_CHUNK = 256;
export const MAMBA2_MAX_ROWS = 65536;
const MAX_DIM = 1 << 22;

type ConvFn = (ctx: unknown, xBC: Float32Array, w: Float32Array, bias: Float32Array, state: Float32Array, out: Float32Array,
  T: number, C: number, K: number) => void;
type SsdFn = (ctx: unknown, x: Float32Array, B: Float32Array, C: Float32Array, dt: Float32Array, dtBias: Float32Array,
  ALog: Float32Array, D: Float32Array, state: Float32Array, y: Float32Array, T: number, nHeads: number, headDim: number,
  nGroups: number, dState: number, chunk?: number) => void;
type NormFn = (ctx: unknown, y: Float32Array, z: Float32Array, w: Float32Array, out: Float32Array, T: number, dInner: number,
  nGroups: number, eps: number) => void;

function int(fn: string, name: string, v: unknown, lo: number, hi: number): number {
  if (typeof v !== 'number') throw new TypeError(`${fn}: ${name} must be a number, got ${typeof v}`);
  if (!(Number.isInteger(v) && v >= lo && v <= hi)) throw new RangeError(`${fn}: ${name} must be an integer in [${lo}, ${hi}], got ${v}`);
  return v;
}

function f32(fn: string, name: string, a: unknown, n: number): Float32Array {
  if (!(a instanceof Float32Array)) throw new TypeError(`${fn}: ${name} must be a Float32Array`);
  if (a.length !== n) throw new RangeError(`${fn}: ${name} has ${a.length} elements, expected ${n}`);
  return a;
}

function dims(fn: string, d: Mamba2KernelDims, conv: boolean): { P: number; G: number; convDim: number } {
  if (typeof d !== 'object' || d === null) throw new TypeError(`${fn}: dims must be an object`);
  const nHeads = int(fn, 'nHeads', d.nHeads, 1, 4096);
  const dInner = int(fn, 'dInner', d.dInner, 1, MAX_DIM);
  const nGroups = int(fn, 'nGroups', d.nGroups, 1, nHeads);
  const dState = int(fn, 'dState', d.dState, 1, 4096);
  if (conv) int(fn, 'dConv', d.dConv, 1, MAMBA2_MAX_CONV);
  if (dInner % nHeads !== 0) throw new RangeError(`${fn}: dInner ${dInner} is not a multiple of nHeads ${nHeads}`);
  if (nHeads % nGroups !== 0) throw new RangeError(`${fn}: nHeads ${nHeads} is not a multiple of nGroups ${nGroups}`);
  const P = dInner / nHeads;
  if (P > 4096) throw new RangeError(`${fn}: headDim ${P} exceeds 4096`);
  const G = nGroups * dState;
  if (G > MAX_DIM) throw new RangeError(`${fn}: nGroups x dState = ${G} exceeds ${MAX_DIM}`);
  const convDim = dInner + 2 * G;
  if (conv && convDim > MAX_DIM) throw new RangeError(`${fn}: conv channels ${convDim} exceed ${MAX_DIM}`);
  return { P, G, convDim };
}

/**
 * Causal depthwise conv + SiLU over T rows of xBC [T, convDim] (convDim = dInner + 2 nGroups dState) with weight
 * [convDim, dConv] (tap dConv - 1 multiplies the current row) and bias [convDim]; reads and advances `state`
 * [dConv - 1, convDim] (the last raw rows, oldest first). Returns out [T, convDim] (default a new array).
 */
export function mamba2Conv(ctx: KernelContext, d: Mamba2KernelDims, xBC: Float32Array, T: number, weight: Float32Array, bias: Float32Array,
  state: Float32Array, out?: Float32Array): Float32Array {
  const fn = 'mamba2Conv';
  const { convDim: C } = dims(fn, d, true);
  int(fn, 'T', T, 1, MAMBA2_MAX_ROWS);
  const K = d.dConv;
  f32(fn, 'xBC', xBC, T * C);
  f32(fn, 'weight', weight, C * K);
  f32(fn, 'bias', bias, C);
  f32(fn, 'state', state, (K - 1) * C);
  const o = out === undefined ? new Float32Array(T * C) : f32(fn, 'out', out, T * C);
  binding<ConvFn>('mamba2Conv')(ctx.handle, xBC, weight, bias, state, o, T, C, K);
  return o;
}

function ssd(fn: string, ctx: KernelContext, d: Mamba2KernelDims, x: Float32Array, B: Float32Array, C: Float32Array, dt: Float32Array,
  T: number, p: Mamba2SsmParams32, state: Float32Array, out: Float32Array | undefined, chunk?: number): Float32Array {
  const { P, G } = dims(fn, d, false);
  int(fn, 'T', T, 1, MAMBA2_MAX_ROWS);
  f32(fn, 'x', x, T * d.dInner);
  f32(fn, 'B', B, T * G);
  f32(fn, 'C', C, T * G);
  f32(fn, 'dt', dt, T * d.nHeads);
  if (typeof p !== 'object' || p === null) throw new TypeError(`${fn}: params must be an object`);
  f32(fn, 'dtBias', p.dtBias, d.nHeads);
  f32(fn, 'ALog', p.ALog, d.nHeads);
  f32(fn, 'D', p.D, d.nHeads);
  f32(fn, 'state', state, d.nHeads * P * d.dState);
  const y = out === undefined ? new Float32Array(T * d.dInner) : f32(fn, 'out', out, T * d.dInner);
  if (chunk === undefined) {
    binding<SsdFn>('ssdRecurrent')(ctx.handle, x, B, C, dt, p.dtBias, p.ALog, p.D, state, y, T, d.nHeads, P, d.nGroups, d.dState);
  } else {
    int(fn, 'chunk', chunk, 1, SSD_MAX_CHUNK);
    binding<SsdFn>('ssdChunked')(ctx.handle, x, B, C, dt, p.dtBias, p.ALog, p.D, state, y, T, d.nHeads, P, d.nGroups, d.dState, chunk);
  }
  return y;
}

/**
 * The SSM over T rows by the recurrence (decode: T = 1): x [T, dInner], B and C [T, nGroups dState], dt [T, nHeads]
 * raw (softplus(dt + dtBias), threshold 20); head h reads group h / (nHeads / nGroups). Advances `state`
 * [nHeads, headDim, dState] in place; returns y [T, dInner] with D x included (default a new array).
 */
export function ssdRecurrent(ctx: KernelContext, d: Mamba2KernelDims, x: Float32Array, B: Float32Array, C: Float32Array, dt: Float32Array,
  T: number, p: Mamba2SsmParams32, state: Float32Array, out?: Float32Array): Float32Array {
  return ssd('ssdRecurrent', ctx, d, x, B, C, dt, T, p, state, out);
}

/**
 * The same SSM by the SSD chunked scan (the prefill path), chunks of `chunk` rows (1 .. 256; 64 is a good
 * default), split over the context's threads by head. Equals ssdRecurrent within the bounds of mamba2.h.
 */
export function ssdChunked(ctx: KernelContext, d: Mamba2KernelDims, x: Float32Array, B: Float32Array, C: Float32Array, dt: Float32Array,
  T: number, p: Mamba2SsmParams32, state: Float32Array, chunk: number, out?: Float32Array): Float32Array {
  if (chunk === undefined) throw new TypeError('ssdChunked: chunk must be a number, got undefined');
  return ssd('ssdChunked', ctx, d, x, B, C, dt, T, p, state, out, chunk);
}

/**
 * Gated RMSNorm (norm_before_gate = False) over T rows: t = y SiLU(z), then each group of dInner / nGroups channels
 * t / sqrt(mean(t^2) + eps) w. eps > 0. Returns [T, dInner] (default a new array; must not overlap y, z, w).
 */
export function gatedRmsNorm(ctx: KernelContext, d: Pick<Mamba2KernelDims, 'dInner' | 'nGroups'>, y: Float32Array, z: Float32Array,
  w: Float32Array, T: number, eps: number, out?: Float32Array): Float32Array {
  const fn = 'gatedRmsNorm';
  if (typeof d !== 'object' || d === null) throw new TypeError(`${fn}: dims must be an object`);
  const D = int(fn, 'dInner', d.dInner, 1, MAX_DIM);
  const G = int(fn, 'nGroups', d.nGroups, 1, D);
  if (D % G !== 0) throw new RangeError(`${fn}: dInner ${D} is not a multiple of nGroups ${G}`);
  int(fn, 'T', T, 1, MAMBA2_MAX_ROWS);
  if (typeof eps !== 'number') throw new TypeError(`${fn}: eps must be a number`);
  if (!(Number.isFinite(eps) && eps > 0 && eps <= 3.4028234663852886e38)) throw new RangeError(`${fn}: eps must be a finite float > 0, got ${eps}`);
  f32(fn, 'y', y, T * D);
  f32(fn, 'z', z, T * D);
  f32(fn, 'w', w, D);
  const o = out === undefined ? new Float32Array(T * D) : f32(fn, 'out', out, T * D);
  binding<NormFn>('gatedRmsNorm')(ctx.handle, y, z, w, o, T, D, G, eps);
  return o;
}
