// Typed wrappers over the native binary lookup-table bindings (B1L64, native/kernels/binary_lut.h):
// the exact float ("W1A16") path of FBI-LLM and OneBit. Activations stay floats: u = x ⊙ colScale
// (prepareBinaryActivations' xs) goes straight into per-token 16-entry tables, no int8 rounding.
import { binding } from '../native.js';
import type { BinaryMatrix } from '../reference/binary.js';
import { type BinaryLutMatrix, b1lBytes, b1lTableFloats } from '../reference/binary-lut.js';
import { ScaleMode } from '../reference/ternary.js';
import { type KernelContext, type WeightAlloc, heapBytes } from './context.js';

export type { BinaryLutMatrix };

function checkRowScale(fn: string, M: number, rowScale: Float32Array | undefined): void {
  if (rowScale && rowScale.length !== M) throw new RangeError(`${fn}: rowScale has ${rowScale.length} values, M = ${M}`);
}

/**
 * signs [M, K] (≥ 0 → +1, < 0 → −1) → B1L64 matrix (K % 32 == 0), with an optional row scale [M]; `alloc` places
 * the bits (a WeightArena's; default a JS-heap buffer).
 */
export function packBinaryLut(ctx: KernelContext, signs: Int8Array, M: number, K: number, rowScale?: Float32Array, alloc: WeightAlloc = heapBytes): BinaryLutMatrix {
  checkRowScale('packBinaryLut', M, rowScale);
  const bits = alloc(b1lBytes(M, K));
  binding<(c: unknown, s: Int8Array, M: number, K: number, bits: Uint8Array) => void>('packBinaryLutFromSigns')(ctx.handle, signs, M, K, bits);
  return rowScale ? { bits, M, K, rowScale } : { bits, M, K };
}

/**
 * A B1R16 matrix (any file format's repack: Q1_0, OneBit, float) → B1L64. Its scales become the row
 * scale: Row scales [Mp] → their first M values; a Tensor scale s → none when s = 1, else s on every
 * row (y · s is exactly the B1R16 epilogue's float product). `alloc` places the bits (the loader's
 * WeightArena; default a JS-heap buffer).
 */
export function binaryToLut(ctx: KernelContext, w: BinaryMatrix, alloc: WeightAlloc = heapBytes): BinaryLutMatrix {
  const bits = alloc(b1lBytes(w.M, w.K));
  binding<(c: unknown, src: Uint8Array, M: number, K: number, bits: Uint8Array) => void>('packBinaryLutFromB1r16')(ctx.handle, w.bits, w.M, w.K, bits);
  if (w.scaleMode === ScaleMode.Row) return { bits, M: w.M, K: w.K, rowScale: w.scales.slice(0, w.M) };
  const s = w.scales[0]!;
  return s === 1 ? { bits, M: w.M, K: w.K } : { bits, M: w.M, K: w.K, rowScale: new Float32Array(w.M).fill(s) };
}

/** B1L64 → signs [M, K] in {−1, +1}. */
export function unpackBinaryLut(w: BinaryLutMatrix): Int8Array {
  const signs = new Int8Array(w.M * w.K);
  binding<(b: Uint8Array, M: number, K: number, s: Int8Array) => void>('unpackBinaryLutToSigns')(w.bits, w.M, w.K, signs);
  return signs;
}

/** The per-token lookup tables of u [B, K] (K % 4 == 0), [B, K/4, 16]: what binaryLutGemm builds internally. */
export function binaryLutTables(ctx: KernelContext, u: Float32Array, B: number, K: number): Float32Array {
  const tables = new Float32Array(B * b1lTableFloats(K));
  binding<(c: unknown, u: Float32Array, B: number, K: number, t: Float32Array) => void>('binaryLutTables')(ctx.handle, u.subarray(0, B * K), B, K, tables);
  return tables;
}

type GemmFn = (ctx: unknown, bits: Uint8Array, M: number, K: number, u: Float32Array, B: number,
  rowScale: Float32Array | null, tokBias: Float32Array | null, y: Float32Array) => void;

/**
 * Y [B, M] = (S · uᵀ) ⊙ rowScale + tokBias for sign weights S (B1L64) and float activations u [B, K]
 * (already multiplied by FBI-LLM's α / OneBit's g); `tokBias` [B] is FBI-LLM's Σβ·x. Within the
 * float bound of binary_lut.h, bit-exact across ISAs and with refBinaryLutGemm.
 */
export function binaryLutGemm(ctx: KernelContext, w: BinaryLutMatrix, u: Float32Array, B: number, tokBias?: Float32Array, y?: Float32Array): Float32Array {
  if (u.length < B * w.K) throw new RangeError(`binaryLutGemm: u has ${u.length} values, B = ${B} tokens of K = ${w.K} need ${B * w.K}`);
  checkRowScale('binaryLutGemm', w.M, w.rowScale);
  const out = y ?? new Float32Array(B * w.M);
  binding<GemmFn>('binaryLutGemm')(ctx.handle, w.bits, w.M, w.K, u.subarray(0, B * w.K), B, w.rowScale ?? null,
    tokBias ? tokBias.subarray(0, B) : null, out.subarray(0, B * w.M));
  return out;
}
