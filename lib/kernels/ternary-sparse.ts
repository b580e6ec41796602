// Typed wrappers over the native column-sparse ternary bindings (TS256, native/kernels/ternary_sparse.h):
// 2 bits/weight stored one 64-byte line per (256-row block, column), so a GEMV reads only the columns
// whose activation is non-zero (BitNet a4.8's TopK o_proj input and ReLU²-GLU down_proj input).
// Bit-exact with ternaryGemm (T2R16) on the same trits, tensor/row scales and int8 activations.
import { binding } from '../native.js';
import type { QuantizedActivations } from '../reference/act_quant.js';
import { type TernarySparseMatrix, tsWeightBytes } from '../reference/ternary-sparse.js';
import { ScaleMode, type TernaryMatrix, scaleCount } from '../reference/ternary.js';
import { type KernelContext, type WeightAlloc, heapBytes } from './context.js';

export type { TernarySparseMatrix };

/** Sizes of the TS256 layout for an M x K matrix (K % 16 == 0, K <= 65536), as the native library computes them. */
export interface SparseLayout {
  rows: number; // rows per block (256)
  blocks: number;
  weightBytes: number;
}

export function sparseLayout(M: number, K: number): SparseLayout {
  return binding<(M: number, K: number) => SparseLayout>('sparseLayout')(M, K);
}

function sparseScaleMode(fn: string, mode: ScaleMode): ScaleMode.Tensor | ScaleMode.Row {
  if (mode !== ScaleMode.Tensor && mode !== ScaleMode.Row) throw new RangeError(`${fn}: block scales are not supported by the sparse layout`);
  return mode;
}

/** trits [M, K] in {-1, 0, 1} → TS256 matrix with tensor or row scales (T2R16 scale layout). */
export function packTernarySparse(ctx: KernelContext, trits: Int8Array, M: number, K: number, scaleMode: ScaleMode, scales: Float32Array): TernarySparseMatrix {
  const mode = sparseScaleMode('packTernarySparse', scaleMode);
  const n = scaleCount(M, K, mode);
  if (scales.length !== n) throw new RangeError(`packTernarySparse: ${scales.length} scales given, layout needs ${n}`);
  const data = new Uint8Array(tsWeightBytes(M, K));
  binding<(c: unknown, t: Int8Array, M: number, K: number, d: Uint8Array) => void>('packTernarySparse')(ctx.handle, trits, M, K, data);
  return { data, scales, M, K, scaleMode: mode };
}

/**
 * A T2R16 matrix (any file format's repack) → TS256, sharing its scales array. Block-scaled matrices are
 * rejected (TQ files whose block scales are all equal load with a tensor scale and are accepted).
 * `alloc` places the output (default: a JS-heap buffer).
 */
export function ternaryToSparse(ctx: KernelContext, w: TernaryMatrix, alloc: WeightAlloc = heapBytes): TernarySparseMatrix {
  const mode = sparseScaleMode('ternaryToSparse', w.scaleMode);
  const data = alloc(tsWeightBytes(w.M, w.K));
  binding<(c: unknown, codes: Uint8Array, M: number, K: number, d: Uint8Array) => void>('packTernarySparseFromT2')(ctx.handle, w.codes, w.M, w.K, data);
  return { data, scales: w.scales, M: w.M, K: w.K, scaleMode: mode };
}

export function unpackTernarySparse(w: TernarySparseMatrix): Int8Array {
  const trits = new Int8Array(w.M * w.K);
  binding<(d: Uint8Array, M: number, K: number, t: Int8Array) => void>('unpackTernarySparse')(w.data, w.M, w.K, trits);
  return trits;
}

type GemmFn = (ctx: unknown, data: Uint8Array, scales: Float32Array, M: number, K: number, mode: number,
  q: Int8Array, scale: Float32Array, sum: Int32Array, B: number, y: Float32Array) => void;

/**
 * Y [B, M] = W · Aᵀ for ternary W (TS256) and int8 activations A [B, K], reading only the weight columns
 * of non-zero activations. Bit-exact with ternaryGemm on the same trits and scales. B > 1 runs each
 * token's column list over every 256-row block (no union), so it pays at high sparsity only.
 */
export function ternarySparseGemm(ctx: KernelContext, w: TernarySparseMatrix, a: QuantizedActivations, y?: Float32Array): Float32Array {
  if (a.K !== w.K) throw new RangeError(`ternarySparseGemm: activations have K = ${a.K}, weights K = ${w.K}`);
  const out = y ?? new Float32Array(a.B * w.M);
  binding<GemmFn>('ternarySparseGemm')(ctx.handle, w.data, w.scales, w.M, w.K, w.scaleMode, a.q.subarray(0, a.B * a.K),
    a.scale.subarray(0, a.B), a.sum.subarray(0, a.B), a.B, out.subarray(0, a.B * w.M));
  return out;
}
