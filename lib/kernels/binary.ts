// Typed wrappers over the native binary (±1 weight, B1R16) bindings: packing / repacking, the
// column-side prep (FBI-LLM α/β, OneBit g) and the GEMM with int8 activations.
import { ModelFormatError } from '../errors.js';
import { binding } from '../native.js';
import type { QuantizedActivations } from '../reference/act_quant.js';
import { type BinaryMatrix, b1BitsBytes, b1ScaleCount, b1Tiles, oneBitBytes, q1_0Bytes } from '../reference/binary.js';
import { ScaleMode } from '../reference/ternary.js';
import type { KernelContext } from './context.js';

export type { BinaryMatrix };

/**
 * Scales for a B1R16 matrix: Tensor → [1]; Row → [Mp], where `values` may hold M (padded with 0)
 * or Mp entries.
 */
export function binaryScales(M: number, mode: ScaleMode.Tensor | ScaleMode.Row, values: Float32Array): Float32Array {
  const n = b1ScaleCount(M, mode);
  if (values.length === n) return values;
  if (mode === ScaleMode.Row && values.length === M) {
    const s = new Float32Array(n);
    s.set(values);
    return s;
  }
  throw new RangeError(`binaryScales: ${values.length} scales given, ${ScaleMode[mode]} scales need ${mode === ScaleMode.Row ? `${M} or ` : ''}${n}`);
}

type GemmFn = (ctx: unknown, bits: Uint8Array, scales: Float32Array, M: number, K: number, mode: number, q: Int8Array,
  scale: Float32Array, sum: Int32Array, B: number, tokBias: Float32Array | null, y: Float32Array) => void;

/**
 * Y [B, M] = W · Aᵀ for binary W (B1R16) and int8 activations A [B, K]; `tokBias` [B] (FBI-LLM's
 * Σβ·x) is added to every output of its token.
 */
export function binaryGemm(ctx: KernelContext, w: BinaryMatrix, a: QuantizedActivations, tokBias?: Float32Array, y?: Float32Array): Float32Array {
  if (a.K !== w.K) throw new RangeError(`binaryGemm: activations have K = ${a.K}, weights K = ${w.K}`);
  const out = y ?? new Float32Array(a.B * w.M);
  binding<GemmFn>('binaryGemm')(ctx.handle, w.bits, w.scales, w.M, w.K, w.scaleMode, a.q.subarray(0, a.B * a.K),
    a.scale.subarray(0, a.B), a.sum.subarray(0, a.B), a.B, tokBias ? tokBias.subarray(0, a.B) : null, out.subarray(0, a.B * w.M));
  return out;
}

/** Options of prepareBinaryActivations: per-column scale (FBI-LLM α, OneBit g) and bias (FBI-LLM β), each [K]. */
export interface BinaryPrepOptions {
  colScale?: Float32Array;
  colBias?: Float32Array;
}

export interface PreparedBinaryActivations {
  /** x ⊙ colScale, [B, K]: quantize with quantizeActivationsI8 before binaryGemm. */
  xs: Float32Array;
  /** Σ_k colBias[k]·x[b,k] per token, [B]; only with colBias. */
  tokBias?: Float32Array;
}

type PrepFn = (ctx: unknown, x: Float32Array, B: number, K: number, colScale: Float32Array | null,
  colBias: Float32Array | null, xs: Float32Array, tokBias: Float32Array | null) => void;

/** The column-side prep of a binary layer with float activations x [B, K] (binary.h). */
export function prepareBinaryActivations(ctx: KernelContext, x: Float32Array, B: number, K: number, opts: BinaryPrepOptions = {}): PreparedBinaryActivations {
  const xs = new Float32Array(B * K);
  const tokBias = opts.colBias ? new Float32Array(B) : undefined;
  binding<PrepFn>('binaryPrep')(ctx.handle, x, B, K, opts.colScale ?? null, opts.colBias ?? null, xs, tokBias ?? null);
  return tokBias ? { xs, tokBias } : { xs };
}

/** signs [M, K] (≥ 0 → +1, < 0 → −1) → B1R16 matrix with the given scales (Row: M or Mp values). */
export function packBinary(ctx: KernelContext, signs: Int8Array, M: number, K: number, scaleMode: ScaleMode.Tensor | ScaleMode.Row = ScaleMode.Tensor, scales: Float32Array = Float32Array.of(1)): BinaryMatrix {
  const bits = new Uint8Array(b1BitsBytes(M, K));
  binding<(c: unknown, s: Int8Array, M: number, K: number, bits: Uint8Array) => void>('packBinaryFromSigns')(ctx.handle, signs, M, K, bits);
  return { bits, scales: binaryScales(M, scaleMode, scales), M, K, scaleMode };
}

/** B1R16 → signs [M, K] in {−1, +1}. */
export function unpackBinary(w: BinaryMatrix): Int8Array {
  const signs = new Int8Array(w.M * w.K);
  binding<(b: Uint8Array, M: number, K: number, s: Int8Array) => void>('unpackBinaryToSigns')(w.bits, w.M, w.K, signs);
  return signs;
}

/** Float weights [M, K] → sign bits (sign(0) := +1) with the given scales (default: tensor scale 1). */
export function repackBinaryF32(ctx: KernelContext, w: Float32Array, M: number, K: number, scaleMode: ScaleMode.Tensor | ScaleMode.Row = ScaleMode.Tensor, scales: Float32Array = Float32Array.of(1)): BinaryMatrix {
  const bits = new Uint8Array(b1BitsBytes(M, K));
  binding<(c: unknown, w: Float32Array, M: number, K: number, bits: Uint8Array) => void>('repackBinaryF32')(ctx.handle, w, M, K, bits);
  return { bits, scales: binaryScales(M, scaleMode, scales), M, K, scaleMode };
}

type RepackFn = (ctx: unknown, format: string, src: Uint8Array, M: number, K: number, bits: Uint8Array,
  rowScales?: Float32Array) => { nonUniformRows: number };

/**
 * OneBit packed signs int8 [M, K/8] (bit 1 = −1) → B1R16. `rowScales` is OneBit's h [M] (the output
 * scale); its g (input_factor) goes to prepareBinaryActivations as colScale.
 */
export function repackBinaryOneBit(ctx: KernelContext, src: Uint8Array, M: number, K: number, rowScales: Float32Array): BinaryMatrix {
  if (src.length !== oneBitBytes(M, K)) throw new RangeError(`repackBinaryOneBit: src has ${src.length} bytes, [${M}, ${K}/8] needs ${oneBitBytes(M, K)}`);
  const bits = new Uint8Array(b1BitsBytes(M, K));
  binding<RepackFn>('repackBinary')(ctx.handle, 'onebit', src, M, K, bits);
  return { bits, scales: binaryScales(M, ScaleMode.Row, rowScales), M, K, scaleMode: ScaleMode.Row };
}

/**
 * Upstream Q1_0 (ggml type 41; ne0 = K columns, ne1 = M rows) → B1R16 with one scale per row (a
 * single tensor scale when all rows agree). B1R16 has no per-block scales: a tensor whose rows mix
 * block magnitudes |d| is a ModelFormatError naming `name`. Blocks with d < 0 are sign-flipped.
 */
export function repackBinaryQ1_0(ctx: KernelContext, src: Uint8Array, M: number, K: number, name = 'tensor'): BinaryMatrix {
  if (src.length !== q1_0Bytes(M, K)) throw new ModelFormatError(`${name}: Q1_0 data has ${src.length} bytes, [${M}, ${K}] needs ${q1_0Bytes(M, K)}`);
  const bits = new Uint8Array(b1BitsBytes(M, K));
  const rowScales = new Float32Array(b1Tiles(M) * 16);
  const r = binding<RepackFn>('repackBinary')(ctx.handle, 'q1_0', src, M, K, bits, rowScales);
  if (r.nonUniformRows > 0)
    throw new ModelFormatError(`${name}: ${r.nonUniformRows} rows of Q1_0 blocks with different |d|; ` +
      'bitllm runs Q1_0 only with one scale magnitude per row');
  const first = rowScales[0]!;
  if (rowScales.subarray(0, M).every((s) => s === first)) return { bits, scales: Float32Array.of(first), M, K, scaleMode: ScaleMode.Tensor };
  return { bits, scales: rowScales, M, K, scaleMode: ScaleMode.Row };
}
