// Typed wrapper over the native BiLLM GEMM (native/kernels/billm.h) for BiLLM matrices in the BR16
// tile layout (packBillmTiles of the planes from lib/quantize/billm.ts) and int8 activations
// (quantizeActivationsI8).
import { binding } from '../native.js';
import type { BillmMatrix } from '../quantize/billm.js';
import type { QuantizedActivations } from '../reference/act_quant.js';
import { type BillmTiles, packBillmTiles } from '../reference/billm.js';
import type { KernelContext } from './context.js';

export type { BillmMatrix, BillmTiles };
export { packBillmTiles };

type GemmFn = (ctx: unknown, data: Uint8Array, salient: Uint8Array, M: number, K: number, q: Int8Array,
  scale: Float32Array, B: number, y: Float32Array) => void;

/**
 * Y [B, M] = W · Aᵀ for a BiLLM matrix W [M, K] (BR16 tiles) and int8 activations A [B, K]
 * (y = Σ_k w(m,k)·q[b,k] / s[b], bit-exact with refBillmGemm on the planes).
 */
export function billmGemm(ctx: KernelContext, w: BillmTiles, a: QuantizedActivations, y?: Float32Array): Float32Array {
  if (a.K !== w.K) throw new RangeError(`billmGemm: activations have K = ${a.K}, weights K = ${w.K}`);
  const out = y ?? new Float32Array(a.B * w.M);
  binding<GemmFn>('billmGemm')(ctx.handle, w.data, w.salient, w.M, w.K, a.q.subarray(0, a.B * a.K), a.scale.subarray(0, a.B), a.B,
    out.subarray(0, a.B * w.M));
  return out;
}
