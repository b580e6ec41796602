// Typed wrappers over the native dense bindings: f16 GEMM / row lookup on GGUF F16 weights, the
// Q8R16 int8 GEMM (repacked from GGUF Q8_0 or quantized from F16/F32) and the Q4R16 4-bit GEMM
// (GGUF Q4_0 copied, or F16/BF16/F32/Q8_0 quantized) used for embeddings and the lm_head. Contracts
// and bounds: native/kernels/dense.h, native/kernels/dense_q4.h, lib/reference/dense.ts.
import { ModelFormatError } from '../errors.js';
import { binding } from '../native.js';
import type { QuantizedActivations } from '../reference/act_quant.js';
import { type F16Matrix, type F16TMatrix, type Q4Matrix, type Q8Matrix, f16tElems, q4Bytes, q4_0Bytes, q8Bytes, q8_0Bytes } from '../reference/dense.js';
import { type KernelContext, type WeightAlloc, heapBytes } from './context.js';

export type { F16Matrix, F16TMatrix, Q4Matrix, Q8Matrix };
export { f16tElems, q4Bytes, q4_0Bytes, q8Bytes, q8_0Bytes };

/** Source tensor types repackQ8 accepts: GGUF Q8_0 blocks, or F16 / F32 rows quantized per 32-block. */
export type Q8SourceType = 'q8_0' | 'f16' | 'f32';

type F16GemmFn = (ctx: unknown, w: Uint16Array, M: number, K: number, x: Float32Array, B: number, y: Float32Array) => void;
type F16GetRowsFn = (ctx: unknown, w: Uint16Array, M: number, K: number, rows: Int32Array, out: Float32Array) => void;
type RepackF16TFn = (ctx: unknown, src: Uint16Array, M: number, K: number, dst: Uint16Array) => number;
type RepackQ8Fn = (ctx: unknown, format: string, src: Uint8Array | Uint16Array | Float32Array, M: number, K: number,
  data: Uint8Array) => number;
type UnpackQ8Fn = (data: Uint8Array, M: number, K: number, dst: Uint8Array) => void;
type Q8GemmFn = (ctx: unknown, data: Uint8Array, M: number, K: number, q: Int8Array, scale: Float32Array,
  sum: Int32Array, B: number, y: Float32Array) => void;
type Q8GetRowsFn = (ctx: unknown, data: Uint8Array, M: number, K: number, rows: Int32Array, out: Float32Array) => void;
type Q4GemmFn = (ctx: unknown, data: Uint8Array, M: number, K: number, q: Int8Array, scale: Float32Array, B: number,
  y: Float32Array) => void;

/** The first n elements of a (possibly larger, reused) buffer; the binding checks exact lengths. */
function head<T extends Float32Array | Int8Array | Int32Array>(a: T, n: number): T {
  return (a.length > n ? a.subarray(0, n) : a) as T;
}

/** Row ids as an Int32Array; plain numbers must be integers in [0, M) (Int32Array ids are checked natively). */
function rowIds(fn: string, rows: Int32Array | readonly number[], M: number): Int32Array {
  if (rows instanceof Int32Array) return rows;
  rows.forEach((v, i) => {
    if (!(Number.isInteger(v) && v >= 0 && v < M)) throw new RangeError(`${fn}: rows[${i}] = ${v} is outside [0, ${M})`);
  });
  return Int32Array.from(rows);
}

/** The f16 / f16t GEMM bindings (the same arguments; the layout of w differs). */
function halfGemm(fn: 'f16Gemm' | 'f16tGemm', ctx: KernelContext, w: F16Matrix | F16TMatrix, x: Float32Array, B: number,
  y?: Float32Array): Float32Array {
  const out = y ? head(y, B * w.M) : new Float32Array(B * w.M);
  binding<F16GemmFn>(fn)(ctx.handle, w.data, w.M, w.K, head(x, B * w.K), B, out);
  return out;
}

/** The f16 / f16t row lookup bindings. */
function halfGetRows(fn: 'f16GetRows' | 'f16tGetRows', ctx: KernelContext, w: F16Matrix | F16TMatrix,
  rows: Int32Array | readonly number[], out?: Float32Array): Float32Array {
  const ids = rowIds(fn, rows, w.M);
  const o = out ? head(out, ids.length * w.K) : new Float32Array(ids.length * w.K);
  binding<F16GetRowsFn>(fn)(ctx.handle, w.data, w.M, w.K, ids, o);
  return o;
}

/** Y [B, M] = X [B, K] · Wᵀ for GGUF F16 weights W [M, K] (float accumulation, bound in dense.h). */
export function f16Gemm(ctx: KernelContext, w: F16Matrix, x: Float32Array, B: number, y?: Float32Array): Float32Array {
  return halfGemm('f16Gemm', ctx, w, x, B, y);
}

/** Embedding lookup: out [n, K] = rows of W as floats (exact). Row ids outside [0, M) throw RangeError. */
export function f16GetRows(ctx: KernelContext, w: F16Matrix, rows: Int32Array | readonly number[], out?: Float32Array): Float32Array {
  return halfGetRows('f16GetRows', ctx, w, rows, out);
}

/**
 * GGUF F16 rows [M, K] → F16T32 tiles (the lm_head layout of native/kernels/dense.h: 32 rows, k-major), half bits
 * moved as they are. An Inf or NaN half throws ModelFormatError naming `name` (the GEMM's inputs are finite).
 * `alloc` receives a byte count (a multiple of 64).
 */
export function repackF16T(ctx: KernelContext, src: Uint16Array, M: number, K: number, name = 'tensor',
  alloc: WeightAlloc = heapBytes): F16TMatrix {
  const n = f16tElems(M, K);
  const bytes = alloc(n * 2);
  const data = new Uint16Array(bytes.buffer, bytes.byteOffset, n);
  const invalid = binding<RepackF16TFn>('repackF16T')(ctx.handle, src, M, K, data);
  if (invalid > 0) throw new ModelFormatError(`${name}: ${invalid} F16 values are Inf or NaN`);
  return { data, M, K };
}

/** Y [B, M] = X [B, K] · Wᵀ for F16T32 W (float accumulation, the f16 bound; batch-invariant). */
export function f16tGemm(ctx: KernelContext, w: F16TMatrix, x: Float32Array, B: number, y?: Float32Array): Float32Array {
  return halfGemm('f16tGemm', ctx, w, x, B, y);
}

/** Embedding lookup on F16T32 W: out [n, K] = rows of W as floats (exact). */
export function f16tGetRows(ctx: KernelContext, w: F16TMatrix, rows: Int32Array | readonly number[], out?: Float32Array): Float32Array {
  return halfGetRows('f16tGetRows', ctx, w, rows, out);
}

/**
 * Repacks a GGUF tensor (ne0 = K columns, ne1 = M rows; K % 32 == 0) into Q8R16: Q8_0 blocks are
 * copied exactly, F16 / F32 rows are quantized per 32-block (d = fp16(amax/127), q = rne(x/d)).
 * A block with a non-finite scale or value throws ModelFormatError naming `name`.
 */
export function repackQ8(ctx: KernelContext, type: Q8SourceType, src: Uint8Array | Uint16Array | Float32Array, M: number, K: number,
  name = 'tensor', alloc: WeightAlloc = heapBytes): Q8Matrix {
  const want = type === 'q8_0' ? Uint8Array : type === 'f16' ? Uint16Array : Float32Array;
  if (!(src instanceof want)) throw new TypeError(`repackQ8: ${type} source must be a ${want.name}`);
  if (!(Number.isInteger(K) && K >= 32 && K % 32 === 0)) throw new RangeError(`repackQ8: K = ${K} must be a positive multiple of 32`);
  const data = alloc(q8Bytes(M, K));
  const invalid = binding<RepackQ8Fn>('repackQ8')(ctx.handle, type, src, M, K, data);
  if (invalid > 0) throw new ModelFormatError(`${name}: ${invalid} ${type} blocks have a non-finite scale or value`);
  return { data, M, K };
}

/** Q8R16 → GGUF Q8_0 blocks [M, K/32, 34] (exact inverse of repackQ8 from 'q8_0'). */
export function unpackQ8ToQ8_0(w: Q8Matrix): Uint8Array {
  const dst = new Uint8Array(q8_0Bytes(w.M, w.K));
  binding<UnpackQ8Fn>('unpackQ8ToQ8_0')(w.data, w.M, w.K, dst);
  return dst;
}

/** Y [B, M] = W · Aᵀ for Q8R16 W and int8 activations A (quantizeActivationsI8), bit-exact on every ISA. */
export function q8Gemm(ctx: KernelContext, w: Q8Matrix, a: QuantizedActivations, y?: Float32Array): Float32Array {
  if (a.K !== w.K) throw new RangeError(`q8Gemm: activations have K = ${a.K}, weights K = ${w.K}`);
  const out = y ? head(y, a.B * w.M) : new Float32Array(a.B * w.M);
  binding<Q8GemmFn>('q8Gemm')(ctx.handle, w.data, w.M, w.K, head(a.q, a.B * a.K), head(a.scale, a.B), head(a.sum, a.B), a.B, out);
  return out;
}

/** Dequantized rows: out [n, K] = d · code (exact). Row ids outside [0, M) throw RangeError. */
export function q8GetRows(ctx: KernelContext, w: Q8Matrix, rows: Int32Array | readonly number[], out?: Float32Array): Float32Array {
  const ids = rowIds('q8GetRows', rows, w.M);
  const o = out ? head(out, ids.length * w.K) : new Float32Array(ids.length * w.K);
  binding<Q8GetRowsFn>('q8GetRows')(ctx.handle, w.data, w.M, w.K, ids, o);
  return o;
}

/** Source tensor types repackQ4 accepts: GGUF Q4_0 blocks (copied), Q8_0 blocks or F16 / BF16 / F32 rows (quantized). */
export type Q4SourceType = 'q4_0' | 'q8_0' | 'f16' | 'bf16' | 'f32';

/**
 * Repacks a GGUF tensor (ne0 = K columns, ne1 = M rows; K % 32 == 0) into Q4R16 (4.5 bits per weight):
 * Q4_0 blocks are copied exactly; Q8_0 / F16 / BF16 / F32 values are quantized per 32-block
 * (mx = the value of largest |x|, d = fp16(mx / -8), u = clamp(rne(x/d), -8, 7) + 8).
 * src: Uint8Array for 'q4_0' / 'q8_0', Uint16Array bits for 'f16' / 'bf16', Float32Array for 'f32'.
 * A block with a non-finite scale or value, or a scale past fp16, throws ModelFormatError naming `name`.
 */
export function repackQ4(ctx: KernelContext, type: Q4SourceType, src: Uint8Array | Uint16Array | Float32Array, M: number, K: number,
  name = 'tensor', alloc: WeightAlloc = heapBytes): Q4Matrix {
  const want = type === 'q4_0' || type === 'q8_0' ? Uint8Array : type === 'f32' ? Float32Array : Uint16Array;
  if (!(src instanceof want)) throw new TypeError(`repackQ4: ${type} source must be a ${want.name}`);
  if (!(Number.isInteger(K) && K >= 32 && K % 32 === 0)) throw new RangeError(`repackQ4: K = ${K} must be a positive multiple of 32`);
  const data = alloc(q4Bytes(M, K));
  const invalid = binding<RepackQ8Fn>('repackQ4')(ctx.handle, type, src, M, K, data);
  if (invalid > 0) throw new ModelFormatError(`${name}: ${invalid} ${type} blocks have a non-finite scale or value, or a scale past fp16`);
  return { data, M, K };
}

/** Q4R16 → GGUF Q4_0 blocks [M, K/32, 18] (exact inverse of repackQ4 from 'q4_0'). */
export function unpackQ4ToQ4_0(w: Q4Matrix): Uint8Array {
  const dst = new Uint8Array(q4_0Bytes(w.M, w.K));
  binding<UnpackQ8Fn>('unpackQ4ToQ4_0')(w.data, w.M, w.K, dst);
  return dst;
}

/** Y [B, M] = W · Aᵀ for Q4R16 W and int8 activations A (quantizeActivationsI8), bit-exact on every ISA. */
export function q4Gemm(ctx: KernelContext, w: Q4Matrix, a: QuantizedActivations, y?: Float32Array): Float32Array {
  if (a.K !== w.K) throw new RangeError(`q4Gemm: activations have K = ${a.K}, weights K = ${w.K}`);
  const out = y ? head(y, a.B * w.M) : new Float32Array(a.B * w.M);
  binding<Q4GemmFn>('q4Gemm')(ctx.handle, w.data, w.M, w.K, head(a.q, a.B * a.K), head(a.scale, a.B), a.B, out);
  return out;
}

/** Dequantized rows: out [n, K] = d · (u − 8) (exact). Row ids outside [0, M) throw RangeError. */
export function q4GetRows(ctx: KernelContext, w: Q4Matrix, rows: Int32Array | readonly number[], out?: Float32Array): Float32Array {
  const ids = rowIds('q4GetRows', rows, w.M);
  const o = out ? head(out, ids.length * w.K) : new Float32Array(ids.length * w.K);
  binding<Q8GetRowsFn>('q4GetRows')(ctx.handle, w.data, w.M, w.K, ids, o);
  return o;
}
