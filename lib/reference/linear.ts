// Reference of the linear-layer driver's own ops (native/runtime/linear.h) in TypeScript.
import { f32 } from './numeric.js';

/**
 * OneBit's non-affine LayerNorm per row of x [B, n]: mean and variance summed in double in index order,
 * inv = 1 / sqrt(var + eps) in double, y = f32((x − mean) · inv). Bit-exact with layer_norm_rows.
 */
export function refLayerNorm(x: Float32Array, B: number, n: number, eps: number): Float32Array {
  const y = new Float32Array(B * n);
  const e = f32(eps);
  for (let b = 0; b < B; b++) {
    const o = b * n;
    let s = 0;
    for (let i = 0; i < n; i++) s += x[o + i]!;
    const mean = s / n;
    let v = 0;
    for (let i = 0; i < n; i++) {
      const c = x[o + i]! - mean;
      v += c * c;
    }
    const inv = 1 / Math.sqrt(v / n + e);
    for (let i = 0; i < n; i++) y[o + i] = (x[o + i]! - mean) * inv;
  }
  return y;
}
