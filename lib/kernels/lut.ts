// Typed wrappers over the native TL3 lookup-table ternary bindings (docs/kernels-lut.md): packing
// from trits or from a T2R16 matrix, unpacking, and the GEMM (bit-exact with ternaryGemm).
import { binding } from '../native.js';
import type { QuantizedActivations } from '../reference/act_quant.js';
import { type TernaryLutMatrix, lutWeightBytes } from '../reference/lut.js';
import { ScaleMode, type TernaryMatrix, scaleCount } from '../reference/ternary.js';
import type { KernelContext } from './context.js';

export type { TernaryLutMatrix };

/** Sizes of the TL3 layout for an M x K matrix, as the native library computes them. */
export interface LutLayout {
  rows: number; // rows per tile (64)
  tiles: number;
  blocks: number; // 256-column blocks
  groups: number; // 3-trit groups per row (86 per full block)
  weightBytes: number;
  tableBytes: number; // activation-table bytes per token
}

export function lutLayout(M: number, K: number): LutLayout {
  return binding<(M: number, K: number) => LutLayout>('lutLayout')(M, K);
}

function checkScales(fn: string, M: number, K: number, scaleMode: ScaleMode, scales: Float32Array): void {
  const n = scaleCount(M, K, scaleMode);
  if (scales.length !== n) throw new RangeError(`${fn}: ${scales.length} scales given, layout needs ${n}`);
}

/** trits [M, K] in {-1, 0, 1} → TL3 matrix with the given scales (T2R16 scale layout). */
export function packTernaryLut(ctx: KernelContext, trits: Int8Array, M: number, K: number, scaleMode: ScaleMode, scales: Float32Array): TernaryLutMatrix {
  checkScales('packTernaryLut', M, K, scaleMode, scales);
  const data = new Uint8Array(lutWeightBytes(M, K));
  binding<(c: unknown, t: Int8Array, M: number, K: number, d: Uint8Array) => void>('packTernaryLut')(ctx.handle, trits, M, K, data);
  return { data, scales, M, K, scaleMode };
}

/** A T2R16 matrix (from any file format's repack) → TL3, sharing its scales array. */
export function ternaryToLut(ctx: KernelContext, w: TernaryMatrix): TernaryLutMatrix {
  const data = new Uint8Array(lutWeightBytes(w.M, w.K));
  binding<(c: unknown, codes: Uint8Array, M: number, K: number, d: Uint8Array) => void>('packTernaryLutFromT2')(ctx.handle, w.codes, w.M, w.K, data);
  return { data, scales: w.scales, M: w.M, K: w.K, scaleMode: w.scaleMode };
}

export function unpackTernaryLut(w: TernaryLutMatrix): Int8Array {
  const trits = new Int8Array(w.M * w.K);
  binding<(d: Uint8Array, M: number, K: number, t: Int8Array) => void>('unpackTernaryLut')(w.data, w.M, w.K, trits);
  return trits;
}

type GemmFn = (ctx: unknown, data: Uint8Array, scales: Float32Array, M: number, K: number, mode: number,
  q: Int8Array, scale: Float32Array, sum: Int32Array, B: number, y: Float32Array) => void;

/**
 * Y [B, M] = W · Aᵀ for ternary W (TL3) and quantized activations A [B, K], by table lookups.
 * Bit-exact with ternaryGemm on the same trits and scales.
 */
export function ternaryLutGemm(ctx: KernelContext, w: TernaryLutMatrix, a: QuantizedActivations, y?: Float32Array): Float32Array {
  if (a.K !== w.K) throw new RangeError(`ternaryLutGemm: activations have K = ${a.K}, weights K = ${w.K}`);
  const out = y ?? new Float32Array(a.B * w.M);
  binding<GemmFn>('ternaryLutGemm')(ctx.handle, w.data, w.scales, w.M, w.K, w.scaleMode, a.q.subarray(0, a.B * a.K),
    a.scale.subarray(0, a.B), a.sum.subarray(0, a.B), a.B, out.subarray(0, a.B * w.M));
  return out;
}
