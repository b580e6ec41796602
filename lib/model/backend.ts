// Compute backends for TransformerModel.forward: the native kernels (production) or the pure-TS reference
// kernels (test oracle). Both read the same repacked weights (T2R16 / TD3 ternary, B1R16 binary, F16 dense,
// F16 / Q8R16 / Q4R16 head) and
// write into caller-owned buffers, so the model code and its scratch management are shared.
import type { KernelContext } from '../kernels/context.js';
import { type F16Matrix, type F16TMatrix, type Q4Matrix, type Q8Matrix, f16Gemm, f16GetRows, f16tGemm, f16tGetRows, q4Gemm, q4GetRows, q8Gemm, q8GetRows } from '../kernels/dense.js';
import {
  type KvCacheShape, attentionF16, attentionQ3, attentionQ8, gluRelu2, gluSilu, kvStoreF16, kvStoreQ3, kvStoreQ8, rmsnorm, ropeNeox,
} from '../kernels/ops.js';
import { type QuantizedActivations, quantizeActivationsI4, quantizeActivationsI8, quantizeActivationsTopkI8, ternaryGemm } from '../kernels/ternary.js';
import { type BinaryMatrix, binaryGemm, prepareBinaryActivations } from '../kernels/binary.js';
import { layerNormRows } from '../kernels/linear.js';
import { type BillmTiles, billmGemm } from '../kernels/billm.js';
import type { BillmMatrix } from '../quantize/billm.js';
import { refBillmGemm } from '../reference/billm.js';
import { type TernarySparseMatrix, ternarySparseGemm } from '../kernels/ternary-sparse.js';
import { refTernarySparseGemm } from '../reference/ternary-sparse.js';
import { type BinaryLutMatrix, binaryLutGemm } from '../kernels/binary-lut.js';
import { refBinaryLutGemm } from '../reference/binary-lut.js';
import { refBinaryGemm, refBinaryPrep } from '../reference/binary.js';
import { refLayerNorm } from '../reference/linear.js';
import { ternaryTd3Gemm } from '../kernels/td3.js';
import { refTd3Gemm } from '../reference/td3.js';
import { type TernaryWeight, isTd3 } from './weights.js';

export type ActQuantKind = 'i8' | 'i4' | 'topk-i8';
import { refActQuantI4, refActQuantI8, refActQuantTopkI8 } from '../reference/act_quant.js';
import { refF16Gemm, refF16GetRows, refF16TGemm, refF16TGetRows, refQ4Gemm, refQ4GetRows, refQ8Gemm, refQ8GetRows } from '../reference/dense.js';
import {
  refAttentionF16, refAttentionQ3, refAttentionQ8, refGluRelu2, refGluSilu, refKvStoreF16, refKvStoreQ3, refKvStoreQ8, refRmsnorm,
  refRopeNeox,
} from '../reference/ops.js';
import { refTernaryGemm } from '../reference/ternary.js';

/**
 * The ops one forward pass needs. Every output argument is caller-owned and exactly sized
 * (B rows of the stated width); implementations write into it and allocate nothing they keep.
 */
export interface ComputeBackend {
  readonly name: string;
  /**
   * Per-token quantization of x [B, K] into out (its q / scale / sum views are B·K, B, B long): absmax int8,
   * absmean int4, or top-k (the `ratio` of largest |x| kept) then int8 (act_quant.h).
   */
  quantize(kind: ActQuantKind, x: Float32Array, B: number, K: number, ratio: number, out: QuantizedActivations): QuantizedActivations;
  /** y [B, M] = W · Aᵀ for a T2R16 or TD3 W. */
  ternaryGemm(w: TernaryWeight, a: QuantizedActivations, y: Float32Array): void;
  /** y [B, M] = W · Aᵀ for a column-sparse TS256 W (reads only the columns of non-zero activations). */
  ternarySparseGemm(w: TernarySparseMatrix, a: QuantizedActivations, y: Float32Array): void;
  /** xs = x ⊙ colScale; tokBias[b] = Σ colBias ⊙ x[b] (binary.h binary_prep). */
  binaryPrep(x: Float32Array, B: number, K: number, colScale: Float32Array | null, colBias: Float32Array | null,
    xs: Float32Array, tokBias: Float32Array | null): void;
  /** y [B, M] = W · Aᵀ (+ tokBias[b]) for a B1R16 W and int8 activations (binary.h). */
  binaryGemm(w: BinaryMatrix, a: QuantizedActivations, tokBias: Float32Array | null, y: Float32Array): void;
  /** y [B, M] = (u [B, K] · signs(W)ᵀ) ⊙ rowScale + tokBias for a B1L64 W: float activations, no rounding of u (W1A16). */
  binaryFloatGemm(w: BinaryLutMatrix, u: Float32Array, B: number, rowScale: Float32Array | null, tokBias: Float32Array | null, y: Float32Array): void;
  /** y [B, M] = W · Aᵀ for a BiLLM W: its BR16 tiles natively; `planes` decodes the packed planes the reference reads. */
  billmGemm(w: BillmTiles, planes: () => BillmMatrix, a: QuantizedActivations, y: Float32Array): void;
  /** OneBit's non-affine LayerNorm over each row of x [B, n] into out (out may be x); linear.h. */
  layerNorm(x: Float32Array, B: number, n: number, eps: number, out: Float32Array): void;
  /** RMSNorm of x [B, n] into out (out may be x). */
  rmsnorm(x: Float32Array, w: Float32Array | null, B: number, n: number, eps: number, out: Float32Array): void;
  /** NEOX RoPE of x [B, nHeads, headDim] in place, B = pos.length. */
  ropeNeox(x: Float32Array, pos: Int32Array, nHeads: number, headDim: number, nRot: number, thetaBase: number): void;
  kvStoreF16(x: Float32Array, pos: Int32Array, cache: Uint16Array, shape: KvCacheShape): void;
  attentionF16(q: Float32Array, kCache: Uint16Array, vCache: Uint16Array, pos: Int32Array, nHeads: number,
    shape: KvCacheShape, scale: number, out: Float32Array): void;
  kvStoreQ8(x: Float32Array, pos: Int32Array, cache: Uint8Array, shape: KvCacheShape): void;
  kvStoreQ3(x: Float32Array, pos: Int32Array, cache: Uint8Array, shape: KvCacheShape): void;
  attentionQ3(q: Float32Array, kCache: Uint8Array, vCache: Uint8Array, pos: Int32Array, nHeads: number,
    shape: KvCacheShape, scale: number, out: Float32Array): void;
  attentionQ8(q: Float32Array, kCache: Uint8Array, vCache: Uint8Array, pos: Int32Array, nHeads: number,
    shape: KvCacheShape, scale: number, out: Float32Array): void;
  gluRelu2(gateUp: Float32Array, B: number, n: number, out: Float32Array): void;
  gluSilu(gateUp: Float32Array, B: number, n: number, out: Float32Array): void;
  f16GetRows(w: F16Matrix, ids: Int32Array, out: Float32Array): void;
  f16tGetRows(w: F16TMatrix, ids: Int32Array, out: Float32Array): void;
  q8GetRows(w: Q8Matrix, ids: Int32Array, out: Float32Array): void;
  q4GetRows(w: Q4Matrix, ids: Int32Array, out: Float32Array): void;
  /** y [B, M] = X [B, K] · Wᵀ. */
  f16Gemm(w: F16Matrix, x: Float32Array, B: number, y: Float32Array): void;
  /** y [B, M] = X [B, K] · Wᵀ for F16T32 W. */
  f16tGemm(w: F16TMatrix, x: Float32Array, B: number, y: Float32Array): void;
  /** y [B, M] = W · Aᵀ for int8 activations from quantizeI8. */
  q8Gemm(w: Q8Matrix, a: QuantizedActivations, y: Float32Array): void;
  /** y [B, M] = W · Aᵀ for a Q4R16 W. */
  q4Gemm(w: Q4Matrix, a: QuantizedActivations, y: Float32Array): void;
}

/** The native N-API kernels on one context: thin forwards, no allocation. */
export function nativeBackend(ctx: KernelContext): ComputeBackend {
  return {
    name: 'native',
    quantize: (kind, x, B, K, ratio, out) => {
      if (kind === 'i8') return quantizeActivationsI8(ctx, x, B, K, out);
      if (kind === 'i4') return quantizeActivationsI4(ctx, x, B, K, out);
      return quantizeActivationsTopkI8(ctx, x, B, K, ratio, out);
    },
    ternarySparseGemm: (w, a, y) => void ternarySparseGemm(ctx, w, a, y),
    billmGemm: (w, _planes, a, y) => void billmGemm(ctx, w, a, y),
    binaryPrep: (x, B, K, colScale, colBias, xs, tokBias) => {
      const r = prepareBinaryActivations(ctx, x, B, K, { colScale: colScale ?? undefined, colBias: colBias ?? undefined });
      xs.set(r.xs);
      if (tokBias && r.tokBias) tokBias.set(r.tokBias);
    },
    binaryGemm: (w, a, tokBias, y) => void binaryGemm(ctx, w, a, tokBias ?? undefined, y),
    binaryFloatGemm: (w, u, B, rowScale, tokBias, y) => void binaryLutGemm(ctx, { ...w, rowScale: rowScale ?? undefined }, u, B, tokBias ?? undefined, y),
    layerNorm: (x, B, n, eps, out) => layerNormRows(ctx, x, B, n, eps, out),
    ternaryGemm: (w, a, y) => void (isTd3(w) ? ternaryTd3Gemm(ctx, w, a, y) : ternaryGemm(ctx, w, a, y)),
    rmsnorm: (x, w, B, n, eps, out) => void rmsnorm(ctx, x, w, B, n, eps, out),
    ropeNeox: (x, pos, nHeads, headDim, nRot, theta) => void ropeNeox(ctx, x, pos, nHeads, headDim, nRot, theta),
    kvStoreF16: (x, pos, cache, shape) => kvStoreF16(ctx, x, pos, cache, shape),
    attentionF16: (q, kc, vc, pos, nHeads, shape, scale, out) => void attentionF16(ctx, q, kc, vc, pos, nHeads, shape, scale, out),
    kvStoreQ8: (x, pos, cache, shape) => kvStoreQ8(ctx, x, pos, cache, shape),
    kvStoreQ3: (x, pos, cache, shape) => kvStoreQ3(ctx, x, pos, cache, shape),
    attentionQ3: (q, kc, vc, pos, nHeads, shape, scale, out) => void attentionQ3(ctx, q, kc, vc, pos, nHeads, shape, scale, out),
    attentionQ8: (q, kc, vc, pos, nHeads, shape, scale, out) => void attentionQ8(ctx, q, kc, vc, pos, nHeads, shape, scale, out),
    gluRelu2: (gu, B, n, out) => void gluRelu2(ctx, gu, B, n, out),
    gluSilu: (gu, B, n, out) => void gluSilu(ctx, gu, B, n, out),
    f16GetRows: (w, ids, out) => void f16GetRows(ctx, w, ids, out),
    f16tGetRows: (w, ids, out) => void f16tGetRows(ctx, w, ids, out),
    q8GetRows: (w, ids, out) => void q8GetRows(ctx, w, ids, out),
    q4GetRows: (w, ids, out) => void q4GetRows(ctx, w, ids, out),
    f16Gemm: (w, x, B, y) => void f16Gemm(ctx, w, x, B, y),
    f16tGemm: (w, x, B, y) => void f16tGemm(ctx, w, x, B, y),
    q8Gemm: (w, a, y) => void q8Gemm(ctx, w, a, y),
    q4Gemm: (w, a, y) => void q4Gemm(ctx, w, a, y),
  };
}

/** The A8 codes the reference GEMMs read: exactly B·K of them (out may view a larger buffer). */
function exact(a: QuantizedActivations): QuantizedActivations {
  const { B, K } = a;
  return { q: a.q.subarray(0, B * K), scale: a.scale.subarray(0, B), sum: a.sum.subarray(0, B), B, K };
}

/**
 * The pure-TS reference kernels (lib/reference): slow, allocating, but the contracts' oracle. Float
 * ops evaluate in float64 and are rounded once to float32 on the way out; integer ops (act-quant,
 * ternary / q8 GEMM) and the f16 KV store are bit-exact with the native ones.
 */
export function referenceBackend(): ComputeBackend {
  return {
    name: 'reference',
    quantize: (kind, x, B, K, ratio, out) => {
      const src = x.subarray(0, B * K);
      const r = kind === 'i8' ? refActQuantI8(src, B, K) : kind === 'i4' ? refActQuantI4(src, B, K) : refActQuantTopkI8(src, B, K, Math.floor(K * ratio));
      out.q.set(r.q);
      out.scale.set(r.scale);
      out.sum.set(r.sum);
      out.B = B;
      out.K = K;
      return out;
    },
    ternaryGemm: (w, a, y) => y.set(isTd3(w) ? refTd3Gemm(w, exact(a)) : refTernaryGemm(w, exact(a))),
    ternarySparseGemm: (w, a, y) => y.set(refTernarySparseGemm(w, exact(a))),
    billmGemm: (_w, planes, a, y) => y.set(refBillmGemm(planes(), exact(a))),
    binaryPrep: (x, B, K, colScale, colBias, xs, tokBias) => {
      const r = refBinaryPrep(x.subarray(0, B * K), B, K, colScale ?? undefined, colBias ?? undefined);
      xs.set(r.xs);
      if (tokBias && r.tokBias) tokBias.set(r.tokBias);
    },
    binaryGemm: (w, a, tokBias, y) => y.set(refBinaryGemm(w, exact(a), tokBias ?? undefined)),
    binaryFloatGemm: (w, u, B, rowScale, tokBias, y) =>
      y.set(refBinaryLutGemm({ ...w, rowScale: rowScale ?? undefined }, u.subarray(0, B * w.K), B, tokBias ?? undefined)),
    layerNorm: (x, B, n, eps, out) => out.set(refLayerNorm(x.subarray(0, B * n), B, n, eps)),
    // refRmsnorm reads all of x before anything is written, so out === x is safe.
    rmsnorm: (x, w, B, n, eps, out) => out.set(refRmsnorm(x, w, B, n, eps).y),
    ropeNeox: (x, pos, nHeads, headDim, nRot, theta) => x.set(refRopeNeox(x, pos, nHeads, headDim, nRot, theta).y),
    kvStoreF16: (x, pos, cache, s) => refKvStoreF16(x, pos, cache, s.nKvHeads, s.headDim, s.capacity),
    attentionF16: (q, kc, vc, pos, nHeads, s, scale, out) =>
      out.set(refAttentionF16(q, kc, vc, pos, nHeads, s.nKvHeads, s.headDim, s.capacity, scale).y),
    kvStoreQ8: (x, pos, cache, s) => refKvStoreQ8(x, pos, cache, s.nKvHeads, s.headDim, s.capacity),
    kvStoreQ3: (x, pos, cache, s) => refKvStoreQ3(x, pos, cache, s.nKvHeads, s.headDim, s.capacity),
    attentionQ3: (q, kc, vc, pos, nHeads, s, scale, out) =>
      out.set(refAttentionQ3(q, kc, vc, pos, nHeads, s.nKvHeads, s.headDim, s.capacity, scale).y),
    attentionQ8: (q, kc, vc, pos, nHeads, s, scale, out) =>
      out.set(refAttentionQ8(q, kc, vc, pos, nHeads, s.nKvHeads, s.headDim, s.capacity, scale).y),
    gluRelu2: (gu, B, n, out) => out.set(refGluRelu2(gu, B, n).y),
    gluSilu: (gu, B, n, out) => out.set(refGluSilu(gu, B, n).y),
    f16GetRows: (w, ids, out) => out.set(refF16GetRows(w, ids)),
    f16tGetRows: (w, ids, out) => out.set(refF16TGetRows(w, ids)),
    q8GetRows: (w, ids, out) => out.set(refQ8GetRows(w, ids)),
    q4GetRows: (w, ids, out) => out.set(refQ4GetRows(w, ids)),
    f16Gemm: (w, x, B, y) => y.set(refF16Gemm(w, x, B).y),
    f16tGemm: (w, x, B, y) => y.set(refF16TGemm(w, x, B).y),
    q8Gemm: (w, a, y) => y.set(refQ8Gemm(w, exact(a))),
    q4Gemm: (w, a, y) => y.set(refQ4Gemm(w, exact(a))),
  };
}
