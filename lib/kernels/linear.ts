// Typed wrappers over the linear-layer driver's own ops (native/runtime/linear.h).
import { binding } from '../native.js';
import type { KernelContext } from './context.js';

type LayerNormFn = (ctx: unknown, x: Float32Array, B: number, n: number, eps: number, y: Float32Array) => void;

/** OneBit's non-affine LayerNorm of each row of x [B, n] into out (out may be x); bit-exact with refLayerNorm. */
export function layerNormRows(ctx: KernelContext, x: Float32Array, B: number, n: number, eps: number, out?: Float32Array): Float32Array {
  const y = out ?? new Float32Array(B * n);
  binding<LayerNormFn>('layerNormRows')(ctx.handle, x.subarray(0, B * n), B, n, eps, y.subarray(0, B * n));
  return y;
}
