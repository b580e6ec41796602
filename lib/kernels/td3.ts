// Typed wrappers over the native TD3 ternary bindings (docs/kernels-lut.md §6): 3-trit groups stored
// as a 4-bit magnitude + a sign bit (1.6875 bits/weight), decoded to 2-bit codes in registers and
// multiplied like T2R16. Packing from trits, from a T2R16 matrix or straight from GGUF tensors,
// unpacking, and the GEMM (bit-exact with ternaryGemm on the same trits and scales).
import { ModelFormatError } from '../errors.js';
import { binding } from '../native.js';
import type { QuantizedActivations } from '../reference/act_quant.js';
import { type TernaryTd3Matrix, td3WeightBytes } from '../reference/td3.js';
import { ScaleMode, type TernaryMatrix, scaleCount } from '../reference/ternary.js';
import { type KernelContext, type WeightAlloc, heapBytes } from './context.js';
import type { TernaryFileType } from './ternary.js';

export type { TernaryTd3Matrix };

/** Sizes of the TD3 layout for an M x K matrix (K % 16 == 0), as the native library computes them. */
export interface Td3Layout {
  rows: number; // rows per tile (64)
  tiles: number;
  blocks: number; // 256-column blocks
  weightBytes: number;
  tileBytes: number; // bytes of one 64-row tile (tiles are contiguous, in row order)
}

export function td3Layout(M: number, K: number): Td3Layout {
  return binding<(M: number, K: number) => Td3Layout>('td3Layout')(M, K);
}

function checkScales(fn: string, M: number, K: number, scaleMode: ScaleMode, scales: Float32Array): void {
  const n = scaleCount(M, K, scaleMode);
  if (scales.length !== n) throw new RangeError(`${fn}: ${scales.length} scales given, layout needs ${n}`);
}

/** trits [M, K] in {-1, 0, 1} → TD3 matrix with the given scales (T2R16 scale layout). K % 16 == 0. */
export function packTernaryTd3(ctx: KernelContext, trits: Int8Array, M: number, K: number, scaleMode: ScaleMode, scales: Float32Array): TernaryTd3Matrix {
  checkScales('packTernaryTd3', M, K, scaleMode, scales);
  const data = new Uint8Array(td3WeightBytes(M, K));
  binding<(c: unknown, t: Int8Array, M: number, K: number, d: Uint8Array) => void>('packTernaryTd3')(ctx.handle, trits, M, K, data);
  return { data, scales, M, K, scaleMode };
}

/**
 * A T2R16 matrix (any file format's repack, or fuseTernary's output) → TD3, sharing its scales array.
 * This is also how to fuse: concatenate the parts in T2R16 (M % 16 == 0 each), then convert.
 * `alloc` places the output (default: a JS-heap buffer; the loader passes its WeightArena's).
 */
export function ternaryToTd3(ctx: KernelContext, w: TernaryMatrix, alloc: WeightAlloc = heapBytes): TernaryTd3Matrix {
  const data = alloc(td3WeightBytes(w.M, w.K));
  binding<(c: unknown, codes: Uint8Array, M: number, K: number, d: Uint8Array) => void>('packTernaryTd3FromT2')(ctx.handle, w.codes, w.M, w.K, data);
  return { data, scales: w.scales, M: w.M, K: w.K, scaleMode: w.scaleMode };
}

export function unpackTernaryTd3(w: TernaryTd3Matrix): Int8Array {
  const trits = new Int8Array(w.M * w.K);
  binding<(d: Uint8Array, M: number, K: number, t: Int8Array) => void>('unpackTernaryTd3')(w.data, w.M, w.K, trits);
  return trits;
}

type RepackFn = (ctx: unknown, format: string, src: Uint8Array, M: number, K: number, data: Uint8Array,
  blockScales?: Float32Array) => { invalid: number; scale?: number };

/**
 * Repacks a GGUF ternary tensor (ne0 = K columns, ne1 = M rows) straight into TD3 (through a native
 * temporary T2R16 copy), with the same checks and scales as repackTernary: I2_S keeps its tensor
 * scale; TQ2_0/TQ1_0 block scales that are all equal collapse to one tensor scale.
 */
export function repackTernaryTd3(ctx: KernelContext, type: TernaryFileType, src: Uint8Array, M: number, K: number, name = 'tensor'): TernaryTd3Matrix {
  const data = new Uint8Array(td3WeightBytes(M, K));
  const fn = binding<RepackFn>('repackTernaryTd3');
  if (type === 'i2_s') {
    const r = fn(ctx.handle, type, src, M, K, data);
    return { data, scales: Float32Array.of(r.scale!), M, K, scaleMode: ScaleMode.Tensor };
  }
  const blockScales = new Float32Array(scaleCount(M, K, ScaleMode.Block));
  const r = fn(ctx.handle, type, src, M, K, data, blockScales);
  if (r.invalid > 0) throw new ModelFormatError(`${name}: ${r.invalid} invalid ${type} codes (not a ternary value)`);
  if (r.scale !== undefined) return { data, scales: Float32Array.of(r.scale), M, K, scaleMode: ScaleMode.Tensor };
  return { data, scales: blockScales, M, K, scaleMode: ScaleMode.Block };
}

type GemmFn = (ctx: unknown, data: Uint8Array, scales: Float32Array, M: number, K: number, mode: number,
  q: Int8Array, scale: Float32Array, sum: Int32Array, B: number, y: Float32Array) => void;

/**
 * Y [B, M] = W · Aᵀ for ternary W (TD3) and quantized activations A [B, K] (the QuantizedActivations
 * of quantizeActivationsI8/I4). Bit-exact with ternaryGemm on the same trits and scales.
 */
export function ternaryTd3Gemm(ctx: KernelContext, w: TernaryTd3Matrix, a: QuantizedActivations, y?: Float32Array): Float32Array {
  if (a.K !== w.K) throw new RangeError(`ternaryTd3Gemm: activations have K = ${a.K}, weights K = ${w.K}`);
  const out = y ?? new Float32Array(a.B * w.M);
  binding<GemmFn>('ternaryTd3Gemm')(ctx.handle, w.data, w.scales, w.M, w.K, w.scaleMode, a.q.subarray(0, a.B * a.K),
    a.scale.subarray(0, a.B), a.sum.subarray(0, a.B), a.B, out.subarray(0, a.B * w.M));
  return out;
}
