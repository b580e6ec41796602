// Typed wrappers over the native activation-quantization and ternary (T2R16) bindings.
import { ModelFormatError } from '../errors.js';
import { binding } from '../native.js';
import { type QuantizedActivations, allocActivations } from '../reference/act_quant.js';
import { ScaleMode, type TernaryMatrix, scaleCount, t2CodeBytes } from '../reference/ternary.js';
import type { KernelContext } from './context.js';

export { ScaleMode, allocActivations };
export type { QuantizedActivations, TernaryMatrix };

type ActQuantFn = (ctx: unknown, x: Float32Array, B: number, K: number, q: Int8Array, scale: Float32Array, sum: Int32Array) => void;

function actQuant(name: string, ctx: KernelContext, x: Float32Array, B: number, K: number, out?: QuantizedActivations) {
  const a = out ?? allocActivations(B, K);
  binding<ActQuantFn>(name)(ctx.handle, x, B, K, a.q, a.scale, a.sum);
  a.B = B;
  a.K = K;
  return a;
}

/** Per-token absmax int8 quantization of x [B, K] (BitNet b1.58 A8). */
export function quantizeActivationsI8(ctx: KernelContext, x: Float32Array, B: number, K: number, out?: QuantizedActivations): QuantizedActivations {
  return actQuant('actQuantI8', ctx, x, B, K, out);
}

/** Per-token absmean int4 quantization of x [B, K] (BitNet a4.8 A4), codes in [-8, 7] one per byte. */
export function quantizeActivationsI4(ctx: KernelContext, x: Float32Array, B: number, K: number, out?: QuantizedActivations): QuantizedActivations {
  return actQuant('actQuantI4', ctx, x, B, K, out);
}

type ActQuantTopkFn = (ctx: unknown, x: Float32Array, B: number, K: number, keep: number, q: Int8Array,
  scale: Float32Array, sum: Int32Array) => void;

/**
 * BitNet a4.8's o_proj input quantizer: per token keep the floor(K · ratio) values of largest |x| (ties
 * at the threshold to the lower index), zero the rest, then the int8 absmax quantization of
 * quantizeActivationsI8 on the masked row. ratio in [0, 1] (a4.8 uses 0.5).
 */
export function quantizeActivationsTopkI8(ctx: KernelContext, x: Float32Array, B: number, K: number, ratio: number,
  out?: QuantizedActivations): QuantizedActivations {
  if (!(ratio >= 0 && ratio <= 1)) throw new RangeError(`quantizeActivationsTopkI8: ratio = ${ratio} not in [0, 1]`);
  const a = out ?? allocActivations(B, K);
  binding<ActQuantTopkFn>('actQuantTopkI8')(ctx.handle, x, B, K, Math.floor(K * ratio), a.q, a.scale, a.sum);
  a.B = B;
  a.K = K;
  return a;
}

type GemmFn = (ctx: unknown, codes: Uint8Array, scales: Float32Array, M: number, K: number, mode: number,
  q: Int8Array, scale: Float32Array, sum: Int32Array, B: number, y: Float32Array) => void;

/** Y [B, M] = W · Aᵀ for ternary W (T2R16) and quantized activations A [B, K]. */
export function ternaryGemm(ctx: KernelContext, w: TernaryMatrix, a: QuantizedActivations, y?: Float32Array): Float32Array {
  if (a.K !== w.K) throw new RangeError(`ternaryGemm: activations have K = ${a.K}, weights K = ${w.K}`);
  const out = y ?? new Float32Array(a.B * w.M);
  binding<GemmFn>('ternaryGemm')(ctx.handle, w.codes, w.scales, w.M, w.K, w.scaleMode, a.q, a.scale, a.sum, a.B, out);
  return out;
}

/** trits [M, K] in {-1, 0, 1} → T2R16 matrix with the given scales. */
export function packTernary(ctx: KernelContext, trits: Int8Array, M: number, K: number, scaleMode: ScaleMode, scales: Float32Array): TernaryMatrix {
  const codes = new Uint8Array(t2CodeBytes(M, K));
  binding<(c: unknown, t: Int8Array, M: number, K: number, codes: Uint8Array) => void>('packTernaryFromTrits')(ctx.handle, trits, M, K, codes);
  const n = scaleCount(M, K, scaleMode);
  if (scales.length !== n) throw new RangeError(`packTernary: ${scales.length} scales given, layout needs ${n}`);
  return { codes, scales, M, K, scaleMode };
}

export function unpackTernary(w: TernaryMatrix): Int8Array {
  const trits = new Int8Array(w.M * w.K);
  binding<(c: Uint8Array, M: number, K: number, t: Int8Array) => void>('unpackTernaryToTrits')(w.codes, w.M, w.K, trits);
  return trits;
}

export type TernaryFileType = 'i2_s' | 'tq2_0' | 'tq1_0';

type RepackFn = (ctx: unknown, format: string, src: Uint8Array, M: number, K: number, codes: Uint8Array,
  blockScales?: Float32Array) => { invalid: number; scale?: number };

/**
 * Repacks a GGUF ternary tensor (ne0 = K columns, ne1 = M rows) into T2R16. Block-scaled files whose
 * scales are all equal collapse to one tensor scale (same results, faster kernel).
 * `name` is used in error messages (tensor name / file). `out` (t2CodeBytes(M, K) bytes) receives the
 * codes instead of a new buffer, e.g. a slice of a fused q|k|v matrix.
 */
export function repackTernary(ctx: KernelContext, type: TernaryFileType, src: Uint8Array, M: number, K: number, name = 'tensor',
  out?: Uint8Array): TernaryMatrix {
  if (out && out.length !== t2CodeBytes(M, K)) throw new RangeError(`repackTernary: out has ${out.length} bytes, expected ${t2CodeBytes(M, K)}`);
  const codes = out ?? new Uint8Array(t2CodeBytes(M, K));
  const fn = binding<RepackFn>('repackTernary');
  if (type === 'i2_s') {
    const r = fn(ctx.handle, type, src, M, K, codes);
    return { codes, scales: Float32Array.of(r.scale!), M, K, scaleMode: ScaleMode.Tensor };
  }
  const blockScales = new Float32Array(scaleCount(M, K, ScaleMode.Block));
  const r = fn(ctx.handle, type, src, M, K, codes, blockScales);
  if (r.invalid > 0) throw new ModelFormatError(`${name}: ${r.invalid} invalid ${type} codes (not a ternary value)`);
  if (r.scale !== undefined) return { codes, scales: Float32Array.of(r.scale), M, K, scaleMode: ScaleMode.Tensor };
  return { codes, scales: blockScales, M, K, scaleMode: ScaleMode.Block };
}

/**
 * Float weights [M, K] → T2R16 with trit = clamp(rne(w / gamma), -1, 1) and tensor scale gamma.
 * Default gamma: weights that are already ternary ({-g, 0, +g}, as converters write them) keep g
 * exactly; any other tensor gets absmean, gamma = mean|W| (BitNet b1.58's quantizer).
 */
export function repackTernaryF32(ctx: KernelContext, w: Float32Array, M: number, K: number, gamma?: number): TernaryMatrix {
  let g = gamma;
  if (g === undefined) {
    let s = 0;
    let amax = 0;
    for (let i = 0; i < w.length; i++) {
      const a = Math.abs(w[i]!);
      s += a;
      if (a > amax) amax = a;
    }
    let ternary = amax > 0;
    for (let i = 0; i < w.length && ternary; i++) {
      const a = Math.abs(w[i]!);
      ternary = a === 0 || a === amax;
    }
    g = ternary ? amax : Math.max(s / w.length, 1e-5);
  }
  const codes = new Uint8Array(t2CodeBytes(M, K));
  binding<(c: unknown, w: Float32Array, M: number, K: number, g: number, codes: Uint8Array) => void>('repackTernaryF32')(ctx.handle, w, M, K, g, codes);
  return { codes, scales: Float32Array.of(g), M, K, scaleMode: ScaleMode.Tensor };
}
