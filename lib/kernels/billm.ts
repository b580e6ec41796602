// Typed wrapper over the native BiLLM GEMM (native/kernels/billm.h) for packed BiLLM matrices
// (lib/quantize/billm.ts) and int8 activations (quantizeActivationsI8).
import { binding } from '../native.js';
import { type BillmMatrix, billmResidualLayout } from '../quantize/billm.js';
import type { QuantizedActivations } from '../reference/act_quant.js';
import type { KernelContext } from './context.js';

export type { BillmMatrix };

type GemmFn = (ctx: unknown, salient: Uint8Array, signs: Uint8Array, groups: Uint8Array, residual: Uint8Array,
  scalars: Uint16Array, M: number, K: number, q: Int8Array, scale: Float32Array, B: number, y: Float32Array) => void;

/**
 * Y [B, M] = W · Aᵀ for a packed BiLLM matrix W [M, K] and int8 activations A [B, K]
 * (y = Σ_k w(m,k)·q[b,k] / s[b], bit-exact with refBillmGemm).
 */
export function billmGemm(ctx: KernelContext, w: BillmMatrix, a: QuantizedActivations, y?: Float32Array): Float32Array {
  if (a.K !== w.K) throw new RangeError(`billmGemm: activations have K = ${a.K}, weights K = ${w.K}`);
  const out = y ?? new Float32Array(a.B * w.M);
  binding<GemmFn>('billmGemm')(ctx.handle, w.salient, w.signs, w.groups, w.residual, w.scalars, w.M, w.K,
    a.q.subarray(0, a.B * a.K), a.scale.subarray(0, a.B), a.B, out.subarray(0, a.B * w.M));
  return out;
}

/** Residual stride R (bytes per row of the residual plane) of a packed matrix. */
export function billmResidualStride(w: BillmMatrix): number {
  return billmResidualLayout(w.salient, w.K).stride;
}
