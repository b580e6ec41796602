// Typed wrappers over the native float-op bindings (native/kernels/ops.h): RMSNorm, NEOX RoPE, the
// f16, q8 and q3 KV cache stores, causal GQA attention over each, and the gated activations. Rows are contiguous:
// x [B, n], q / out [B, nHeads, headDim], caches [nKvHeads, capacity, headDim] (IEEE half bits).
// The native side checks every argument (types, exact lengths, positions) and throws TypeError /
// RangeError naming it.
import { binding } from '../native.js';
import type { KernelContext } from './context.js';

type RmsnormFn = (ctx: unknown, x: Float32Array, w: Float32Array | null, y: Float32Array, B: number, n: number, eps: number) => void;
type RopeFn = (ctx: unknown, x: Float32Array, pos: Int32Array, B: number, nHeads: number, headDim: number, nRot: number,
  thetaBase: number) => void;
type KvStoreFn = (ctx: unknown, x: Float32Array, pos: Int32Array, cache: Uint16Array, B: number, nKvHeads: number,
  headDim: number, capacity: number) => void;
type AttentionFn = (ctx: unknown, q: Float32Array, kCache: Uint16Array, vCache: Uint16Array, pos: Int32Array,
  out: Float32Array, B: number, nHeads: number, nKvHeads: number, headDim: number, capacity: number, scale: number) => void;
type KvStoreBytesFn = (ctx: unknown, x: Float32Array, pos: Int32Array, cache: Uint8Array, B: number, nKvHeads: number,
  headDim: number, capacity: number) => void;
type AttentionBytesFn = (ctx: unknown, q: Float32Array, kCache: Uint8Array, vCache: Uint8Array, pos: Int32Array,
  out: Float32Array, B: number, nHeads: number, nKvHeads: number, headDim: number, capacity: number, scale: number) => void;
type GluFn = (ctx: unknown, gateUp: Float32Array, out: Float32Array, B: number, n: number) => void;

/** Shape of an f16 KV cache: [nKvHeads, capacity, headDim] halves per K and per V. */
export interface KvCacheShape {
  nKvHeads: number;
  headDim: number;
  capacity: number;
}

/** Halves one K (or V) cache of this shape holds. */
export const kvCacheElements = (s: KvCacheShape): number => s.nKvHeads * s.capacity * s.headDim;

/** Bytes of one q8 row of headDim values (headDim % 32 == 0): headDim / 32 blocks of {f16 d, int8 qs[32]}. */
export const KV_Q8_BLOCK = 32;
export const KV_Q8_BLOCK_BYTES = 34;

/** Bytes one q8 K (or V) cache of this shape holds: [nKvHeads, capacity, headDim / 32 * 34]. */
export const kvCacheBytesQ8 = (s: KvCacheShape): number =>
  s.nKvHeads * s.capacity * (s.headDim / KV_Q8_BLOCK) * KV_Q8_BLOCK_BYTES;

/** q3 rows (BitNet a4.8's 3-bit K/V, headDim % 32 == 0): headDim / 32 blocks of {f16 d, 12 bytes of 3-bit codes}. */
export const KV_Q3_BLOCK = 32;
export const KV_Q3_BLOCK_BYTES = 14;

/** Bytes one q3 K (or V) cache of this shape holds: [nKvHeads, capacity, headDim / 32 * 14]. */
export const kvCacheBytesQ3 = (s: KvCacheShape): number =>
  s.nKvHeads * s.capacity * (s.headDim / KV_Q3_BLOCK) * KV_Q3_BLOCK_BYTES;

/**
 * y[b,:] = x[b,:] / sqrt(mean(x[b,:]^2) + eps) * w for x [B, n] (w null: no weight).
 * `out` may be `x` itself (in place); default a new array.
 */
export function rmsnorm(ctx: KernelContext, x: Float32Array, w: Float32Array | null, B: number, n: number, eps: number,
  out?: Float32Array): Float32Array {
  const y = out ?? new Float32Array(B * n);
  binding<RmsnormFn>('rmsnorm')(ctx.handle, x, w, y, B, n, eps);
  return y;
}

/**
 * NEOX rotary embedding in place on x [B, nHeads, headDim], B = pos.length: pairs (i, i + nRot/2),
 * i < nRot/2, rotated by pos[b] * thetaBase^(-2i/nRot); dims past nRot unchanged. Returns x.
 */
export function ropeNeox(ctx: KernelContext, x: Float32Array, pos: Int32Array, nHeads: number, headDim: number, nRot: number,
  thetaBase: number): Float32Array {
  binding<RopeFn>('ropeNeox')(ctx.handle, x, pos, pos.length, nHeads, headDim, nRot, thetaBase);
  return x;
}

/** cache[h, pos[b], :] = f16(x[b, h, :]) for x [B, nKvHeads, headDim], B = pos.length. */
export function kvStoreF16(ctx: KernelContext, x: Float32Array, pos: Int32Array, cache: Uint16Array, shape: KvCacheShape): void {
  binding<KvStoreFn>('kvStoreF16')(ctx.handle, x, pos, cache, pos.length, shape.nKvHeads, shape.headDim, shape.capacity);
}

/**
 * Causal GQA attention of q [B, nHeads, headDim] (B = pos.length; query b sits at position pos[b] and
 * attends to cache rows 0..pos[b]) against f16 K/V caches; query head h reads kv head
 * h / (nHeads / nKvHeads). Returns out [B, nHeads, headDim] (default a new array).
 */
export function attentionF16(ctx: KernelContext, q: Float32Array, kCache: Uint16Array, vCache: Uint16Array, pos: Int32Array,
  nHeads: number, shape: KvCacheShape, scale: number, out?: Float32Array): Float32Array {
  const o = out ?? new Float32Array(pos.length * nHeads * shape.headDim);
  binding<AttentionFn>('attentionF16')(ctx.handle, q, kCache, vCache, pos, o, pos.length, nHeads, shape.nKvHeads,
    shape.headDim, shape.capacity, scale);
  return o;
}

/**
 * q8 store: cache[h, pos[b], :] = Q8_0-like blocks of x[b, h, :] (d = f16(amax / 127), qs = rne(x / d);
 * native/kernels/ops.h). headDim must be a multiple of 32; cache has kvCacheBytesQ8(shape) bytes.
 */
export function kvStoreQ8(ctx: KernelContext, x: Float32Array, pos: Int32Array, cache: Uint8Array, shape: KvCacheShape): void {
  binding<KvStoreBytesFn>('kvStoreQ8')(ctx.handle, x, pos, cache, pos.length, shape.nKvHeads, shape.headDim, shape.capacity);
}

/** attentionF16 over q8 K/V caches (kvCacheBytesQ8(shape) bytes each; rows dequantized on the fly). */
export function attentionQ8(ctx: KernelContext, q: Float32Array, kCache: Uint8Array, vCache: Uint8Array, pos: Int32Array,
  nHeads: number, shape: KvCacheShape, scale: number, out?: Float32Array): Float32Array {
  const o = out ?? new Float32Array(pos.length * nHeads * shape.headDim);
  binding<AttentionBytesFn>('attentionQ8')(ctx.handle, q, kCache, vCache, pos, o, pos.length, nHeads, shape.nKvHeads,
    shape.headDim, shape.capacity, scale);
  return o;
}

/**
 * q3 store (BitNet a4.8's 3-bit K/V, the trainer's kv_q3): per 32-value block of x[b, h, :],
 * d = f16(amax / 3), q = clamp(rne(x / d), -4, 3) (a float division per value), stored as code q + 4 in
 * 3 bits (native/kernels/ops.h). headDim must be a multiple of 32; cache has kvCacheBytesQ3(shape) bytes.
 * |x| must stay below 196560 (larger blocks overflow the half scale; their values are not finite).
 */
export function kvStoreQ3(ctx: KernelContext, x: Float32Array, pos: Int32Array, cache: Uint8Array, shape: KvCacheShape): void {
  binding<KvStoreBytesFn>('kvStoreQ3')(ctx.handle, x, pos, cache, pos.length, shape.nKvHeads, shape.headDim, shape.capacity);
}

/** attentionF16 over q3 K/V caches (kvCacheBytesQ3(shape) bytes each; rows dequantized exactly on the fly). */
export function attentionQ3(ctx: KernelContext, q: Float32Array, kCache: Uint8Array, vCache: Uint8Array, pos: Int32Array,
  nHeads: number, shape: KvCacheShape, scale: number, out?: Float32Array): Float32Array {
  const o = out ?? new Float32Array(pos.length * nHeads * shape.headDim);
  binding<AttentionBytesFn>('attentionQ3')(ctx.handle, q, kCache, vCache, pos, o, pos.length, nHeads, shape.nKvHeads,
    shape.headDim, shape.capacity, scale);
  return o;
}

/** out[b, i] = relu(gate)^2 * up for gateUp [B, 2n] (gate | up per row); default a new [B, n] array. */
export function gluRelu2(ctx: KernelContext, gateUp: Float32Array, B: number, n: number, out?: Float32Array): Float32Array {
  const o = out ?? new Float32Array(B * n);
  binding<GluFn>('gluRelu2')(ctx.handle, gateUp, o, B, n);
  return o;
}

/** out[b, i] = silu(gate) * up for gateUp [B, 2n] (gate | up per row); default a new [B, n] array. */
export function gluSilu(ctx: KernelContext, gateUp: Float32Array, B: number, n: number, out?: Float32Array): Float32Array {
  const o = out ?? new Float32Array(B * n);
  binding<GluFn>('gluSilu')(ctx.handle, gateUp, o, B, n);
  return o;
}
