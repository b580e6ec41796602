// Typed wrapper over the native BiLLM GEMM (native/kernels/billm.h) for BiLLM matrices in the BR16
// tile layout (packBillmTiles, native, of the planes from lib/quantize/billm.ts) and int8 activations
// (quantizeActivationsI8).
import { binding } from '../native.js';
import type { BillmMatrix } from '../quantize/billm.js';
import type { QuantizedActivations } from '../reference/act_quant.js';
import { type BillmTiles, br16Geometry } from '../reference/billm.js';
import type { KernelContext } from './context.js';

export type { BillmMatrix, BillmTiles };

type PackFn = (ctx: unknown, salient: Uint8Array, signs: Uint8Array, groups: Uint8Array, residual: Uint8Array,
  scalars: Uint16Array, M: number, K: number, data: Uint8Array) => void;

/**
 * Packs BiLLM planes into the BR16 tile layout natively (native/runtime/repack_billm.h), byte for byte
 * what refPackBillmTiles (lib/reference/billm.ts) writes, over the context's threads. `alloc` provides the
 * bytes (e.g. weightBytes for huge-page weight memory; default a JS-heap Uint8Array); every byte is written.
 */
export function packBillmTiles(ctx: KernelContext, w: BillmMatrix, alloc: (bytes: number) => Uint8Array = (n) => new Uint8Array(n)): BillmTiles {
  const { M, K } = w;
  if (!(Number.isInteger(K) && K >= 128 && K % 128 === 0)) throw new RangeError(`packBillmTiles: K = ${K} must be a positive multiple of 128`);
  if (w.salient.length !== K / 8) throw new RangeError(`packBillmTiles: salient mask has ${w.salient.length} bytes, K = ${K} needs ${K / 8}`);
  const { blockOffsets, residualGroups, tileBytes } = br16Geometry(w.salient, K);
  const bytes = Math.ceil(M / 16) * tileBytes;
  const data = alloc(bytes);
  if (data.length !== bytes) throw new RangeError(`packBillmTiles: alloc returned ${data.length} bytes, ${bytes} needed`);
  binding<PackFn>('packBillmTiles')(ctx.handle, w.salient, w.signs, w.groups, w.residual, w.scalars, M, K, data);
  // The mask is copied: w's planes may be views of the file's bytes; the tiles own everything they read.
  return { data, salient: w.salient.slice(), M, K, tileBytes, blockOffsets, residualGroups };
}

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
