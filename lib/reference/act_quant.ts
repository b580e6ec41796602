// Reference activation quantizers: the contract of native/kernels/act_quant.h in TypeScript.
import { clamp, f32, roundHalfEven } from './numeric.js';

/** B tokens of K int8 codes; the integer dot of a token with a weight row / scale[b] = float dot. */
export interface QuantizedActivations {
  q: Int8Array; // [B, K]
  scale: Float32Array; // [B]
  sum: Int32Array; // [B] Σ_k q[b,k]
  B: number;
  K: number;
}

export function allocActivations(B: number, K: number): QuantizedActivations {
  return { q: new Int8Array(B * K), scale: new Float32Array(B), sum: new Int32Array(B), B, K };
}

/** A8 absmax per token: s = 127 / max(|x|, 1e-5), q = clamp(rne(x*s), -128, 127). */
export function refActQuantI8(x: Float32Array, B: number, K: number): QuantizedActivations {
  const out = allocActivations(B, K);
  for (let b = 0; b < B; b++) {
    let amax = 0;
    for (let k = 0; k < K; k++) amax = Math.max(amax, Math.abs(x[b * K + k]!));
    const s = f32(127 / Math.max(amax, f32(1e-5)));
    let acc = 0;
    for (let k = 0; k < K; k++) {
      const c = clamp(roundHalfEven(f32(x[b * K + k]! * s)), -128, 127);
      out.q[b * K + k] = c;
      acc += c;
    }
    out.scale[b] = s;
    out.sum[b] = acc;
  }
  return out;
}

const SQRT7 = f32(2.6457513110645906);

/** A4 absmean per token (BitNet a4.8): beta = Σ|x|/K, s = sqrt(7)/(beta + 1e-5), q = clamp(rne(x*s), -8, 7). */
export function refActQuantI4(x: Float32Array, B: number, K: number): QuantizedActivations {
  const out = allocActivations(B, K);
  for (let b = 0; b < B; b++) {
    let asum = 0;
    for (let k = 0; k < K; k++) asum = f32(asum + Math.abs(x[b * K + k]!));
    const beta = f32(asum / K);
    const s = f32(SQRT7 / f32(beta + f32(1e-5)));
    let acc = 0;
    for (let k = 0; k < K; k++) {
      const c = clamp(roundHalfEven(f32(x[b * K + k]! * s)), -8, 7);
      out.q[b * K + k] = c;
      acc += c;
    }
    out.scale[b] = s;
    out.sum[b] = acc;
  }
  return out;
}

/** Σ of each 256-block of codes: [B, K/256]. */
export function refBlockSums(a: QuantizedActivations): Int32Array {
  const nb = Math.floor(a.K / 256);
  const out = new Int32Array(a.B * nb);
  for (let b = 0; b < a.B; b++)
    for (let j = 0; j < nb; j++) {
      let s = 0;
      for (let i = 0; i < 256; i++) s += a.q[b * a.K + j * 256 + i]!;
      out[b * nb + j] = s;
    }
  return out;
}

/**
 * TopK then A8 per token (BitNet a4.8 o_proj input): keep the `keep` values of largest |x| (ties at the
 * threshold to the lower index), zero the rest, then refActQuantI8's formula on the masked row.
 */
export function refActQuantTopkI8(x: Float32Array, B: number, K: number, keep: number): QuantizedActivations {
  if (!Number.isInteger(keep) || keep < 0 || keep > K) throw new RangeError(`refActQuantTopkI8: keep = ${keep} not in [0, ${K}]`);
  const masked = new Float32Array(B * K);
  const order = Array.from({ length: K }, (_, k) => k);
  for (let b = 0; b < B; b++) {
    const row = x.subarray(b * K, (b + 1) * K);
    order.sort((i, j) => Math.abs(row[j]!) - Math.abs(row[i]!) || i - j);
    for (let r = 0; r < keep; r++) masked[b * K + order[r]!] = row[order[r]!]!;
  }
  return refActQuantI8(masked, B, K);
}
