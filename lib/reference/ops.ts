// Reference float ops of the transformer block: the contracts of native/kernels/ops.h in TypeScript,
// evaluated in float64 (inputs are the float32 / half values the native code sees). Each float op
// returns the exact-ish result and, per element, the bound every native variant must meet (ops.h):
//   rmsnorm    |y - ref| <= 4u |ref| + 2^-149
//   ropeNeox   |y - ref| <= 8u (|x_i| + |x_j|)   (the angle is the contract's float angle, see ropeAngle)
//   kvStoreF16 bit-exact (floatToHalf, round to nearest even)
//   kvStoreQ8  bit-exact (the block quantization of ops.h, float ops)
//   attentionQ8: the attention bound over the dequantized cache values
//   kvStoreQ3  bit-exact (BitNet a4.8's 3-bit block quantization of ops.h, a float division per value)
//   attentionQ3: the attention bound over the dequantized cache values
//   gluRelu2   |y - ref| <= 2u |ref| + 1e-36 |up| + 2^-149
//   gluSilu    |y - ref| <= 8u |ref| + 1e-36 |up| + 2^-149
//   attention  |o - ref| <= max|v| u (4 S (hd + 8) + L/2 + 128), S = max_t |scale| Σ_d |q_d k_td|
// with u = 2^-24. The float64 evaluation's own error is far below these bounds.
import { clamp, f32, floatToHalf, halfToFloat, roundHalfEven } from './numeric.js';

const U = 2 ** -24;
const SUB = 2 ** -149;

/** A float64 reference result and the per-element bound a native result must be within. */
export interface RefResult {
  y: Float64Array;
  bound: Float64Array;
}

/** y[b,:] = x[b,:] / sqrt(mean(x[b,:]^2) + eps) * w (w null: no weight); x [B, n]. */
export function refRmsnorm(x: Float32Array, w: Float32Array | null, B: number, n: number, eps: number): RefResult {
  const y = new Float64Array(B * n);
  const bound = new Float64Array(B * n);
  const e = f32(eps);
  for (let b = 0; b < B; b++) {
    let ss = 0;
    for (let i = 0; i < n; i++) ss += x[b * n + i]! * x[b * n + i]!;
    const s = 1 / Math.sqrt(ss / n + e);
    for (let i = 0; i < n; i++) {
      const v = x[b * n + i]! * s * (w ? w[i]! : 1);
      y[b * n + i] = v;
      bound[b * n + i] = 4 * U * Math.abs(v) + SUB;
    }
  }
  return { y, bound };
}

/**
 * The contract's RoPE angle for pair i: float(pos) * inv_freq[i] rounded to float, with
 * inv_freq[i] = float(thetaBase^(-2i/nRot)) (thetaBase as a float).
 */
export function ropeAngle(pos: number, i: number, nRot: number, thetaBase: number): number {
  const invFreq = f32(Math.pow(f32(thetaBase), (-2 * i) / nRot));
  return f32(f32(pos) * invFreq);
}

/** NEOX RoPE of x [B, nHeads, headDim] (a new array; x is not modified): pairs (i, i + nRot/2). */
export function refRopeNeox(x: Float32Array, pos: Int32Array, nHeads: number, headDim: number, nRot: number, thetaBase: number): RefResult {
  const B = pos.length;
  const y = Float64Array.from(x);
  const bound = new Float64Array(x.length);
  const half = nRot / 2;
  for (let b = 0; b < B; b++) {
    for (let i = 0; i < half; i++) {
      const th = ropeAngle(pos[b]!, i, nRot, thetaBase);
      const c = Math.cos(th);
      const s = Math.sin(th);
      for (let h = 0; h < nHeads; h++) {
        const o = (b * nHeads + h) * headDim + i;
        const a = x[o]!;
        const d = x[o + half]!;
        y[o] = a * c - d * s;
        y[o + half] = a * s + d * c;
        bound[o] = bound[o + half] = 8 * U * (Math.abs(a) + Math.abs(d));
      }
    }
  }
  return { y, bound };
}

/** cache[h, pos[b], :] = f16(x[b, h, :]) for x [B, nKvHeads, headDim], cache [nKvHeads, capacity, headDim]. */
export function refKvStoreF16(x: Float32Array, pos: Int32Array, cache: Uint16Array, nKvHeads: number, headDim: number, capacity: number): void {
  for (let b = 0; b < pos.length; b++)
    for (let h = 0; h < nKvHeads; h++)
      for (let i = 0; i < headDim; i++)
        cache[(h * capacity + pos[b]!) * headDim + i] = floatToHalf(x[(b * nKvHeads + h) * headDim + i]!);
}

/**
 * Causal GQA attention: query b (position pos[b]) over cache rows 0..pos[b] of kv head
 * h / (nHeads / nKvHeads); q and the output [B, nHeads, headDim], caches [nKvHeads, capacity, headDim].
 */
export function refAttentionF16(q: Float32Array, kCache: Uint16Array, vCache: Uint16Array, pos: Int32Array,
  nHeads: number, nKvHeads: number, headDim: number, capacity: number, scale: number): RefResult {
  const at = (c: Uint16Array) => (g: number, t: number, d: number) => halfToFloat(c[(g * capacity + t) * headDim + d]!);
  return refAttention(q, at(kCache), at(vCache), pos, nHeads, nKvHeads, headDim, scale);
}

/** Value d of row t of kv head g of a q8 cache [nKvHeads, capacity, headDim / 32 * 34]: float(qs) * float(d). */
export function q8CacheValue(cache: Uint8Array, capacity: number, headDim: number, g: number, t: number, d: number): number {
  const o = (g * capacity + t) * (headDim / 32) * 34 + Math.floor(d / 32) * 34;
  const qs = cache[o + 2 + (d % 32)]!;
  return (qs >= 128 ? qs - 256 : qs) * halfToFloat(cache[o]! | (cache[o + 1]! << 8));
}

/** refAttentionF16 over q8 caches (the dequantized values). */
export function refAttentionQ8(q: Float32Array, kCache: Uint8Array, vCache: Uint8Array, pos: Int32Array,
  nHeads: number, nKvHeads: number, headDim: number, capacity: number, scale: number): RefResult {
  const at = (c: Uint8Array) => (g: number, t: number, d: number) => q8CacheValue(c, capacity, headDim, g, t, d);
  return refAttention(q, at(kCache), at(vCache), pos, nHeads, nKvHeads, headDim, scale);
}

/**
 * q8 store (ops.h): per 32-value block of x[b, h, :], d = f16(f32(amax / 127)), id = d ? f32(1 / d) : 0,
 * qs = clamp(rne(f32(x id)), -127, 127); written as {d (little-endian half), qs[32]} into
 * cache [nKvHeads, capacity, headDim / 32 * 34].
 */
export function refKvStoreQ8(x: Float32Array, pos: Int32Array, cache: Uint8Array, nKvHeads: number, headDim: number, capacity: number): void {
  const rb = (headDim / 32) * 34;
  for (let b = 0; b < pos.length; b++)
    for (let h = 0; h < nKvHeads; h++)
      for (let k = 0; k < headDim / 32; k++) {
        const src = (b * nKvHeads + h) * headDim + k * 32;
        const dst = (h * capacity + pos[b]!) * rb + k * 34;
        let amax = 0;
        for (let i = 0; i < 32; i++) amax = Math.max(amax, Math.abs(x[src + i]!));
        const dh = floatToHalf(f32(amax / 127));
        const df = halfToFloat(dh);
        const id = df !== 0 ? f32(1 / df) : 0;
        cache[dst] = dh & 0xff;
        cache[dst + 1] = dh >> 8;
        for (let i = 0; i < 32; i++) cache[dst + 2 + i] = clamp(roundHalfEven(f32(x[src + i]! * id)), -127, 127) & 0xff;
      }
}

/** Values per q3 block and bytes per block ({f16 d, 12 bytes of 3-bit codes}; native/kernels/ops.h). */
const Q3_BLOCK = 32;
const Q3_BLOCK_BYTES = 14;

/**
 * One q3 block (ops.h, the trainer's kv_q3): amax = max |x_i|, d = f16(f32(amax / 3)),
 * q_i = d ? clamp(rne(f32(x_i / d)), -4, 3) : 0 (a float division per value); written at dst[o, o + 14) as
 * {d (little-endian half), codes}: code q_i + 4 in bits [3i, 3i + 3) of the little-endian 96-bit code string.
 */
export function refQuantizeQ3Block(x: ArrayLike<number>, xo: number, dst: Uint8Array, o: number): void {
  let amax = 0;
  for (let i = 0; i < Q3_BLOCK; i++) amax = Math.max(amax, Math.abs(x[xo + i]!));
  const dh = floatToHalf(f32(amax / 3));
  const df = halfToFloat(dh);
  dst[o] = dh & 0xff;
  dst[o + 1] = dh >> 8;
  dst.fill(0, o + 2, o + Q3_BLOCK_BYTES);
  for (let i = 0; i < Q3_BLOCK; i++) {
    const q = df !== 0 ? clamp(roundHalfEven(f32(x[xo + i]! / df)), -4, 3) : 0;
    const v = (q + 4) << ((3 * i) & 7);
    const byte = o + 2 + ((3 * i) >> 3);
    dst[byte] = dst[byte]! | (v & 0xff);
    if (v > 0xff) dst[byte + 1] = dst[byte + 1]! | (v >> 8);
  }
}

/** Value i (< 32) of the q3 block at bytes[o, o + 14): (code_i - 4) * float(d), exact in float. */
export function q3BlockValue(bytes: Uint8Array, o: number, i: number): number {
  const bit = 3 * i;
  const byte = o + 2 + (bit >> 3);
  const two = bytes[byte]! | ((bit >> 3) + 1 < 12 ? bytes[byte + 1]! << 8 : 0);
  const c = (two >> (bit & 7)) & 7;
  return (c - 4) * halfToFloat(bytes[o]! | (bytes[o + 1]! << 8));
}

/** The headDim values of the q3 cache row starting at byte `offset` (headDim / 32 blocks of 14 bytes). */
export function refDequantQ3Row(cache: Uint8Array, offset: number, headDim: number): Float32Array {
  const y = new Float32Array(headDim);
  for (let d = 0; d < headDim; d++) y[d] = q3BlockValue(cache, offset + Math.floor(d / Q3_BLOCK) * Q3_BLOCK_BYTES, d % Q3_BLOCK);
  return y;
}

/**
 * q3 store (ops.h): cache[h, pos[b], :] = the q3 blocks of x[b, h, :] (refQuantizeQ3Block), cache
 * [nKvHeads, capacity, headDim / 32 * 14] bytes. Repeated positions keep the last token.
 */
export function refKvStoreQ3(x: Float32Array, pos: Int32Array, cache: Uint8Array, nKvHeads: number, headDim: number, capacity: number): void {
  const rb = (headDim / Q3_BLOCK) * Q3_BLOCK_BYTES;
  for (let b = 0; b < pos.length; b++)
    for (let h = 0; h < nKvHeads; h++)
      for (let k = 0; k < headDim / Q3_BLOCK; k++)
        refQuantizeQ3Block(x, (b * nKvHeads + h) * headDim + k * Q3_BLOCK, cache, (h * capacity + pos[b]!) * rb + k * Q3_BLOCK_BYTES);
}

/** refAttentionF16 over q3 caches (the dequantized values). */
export function refAttentionQ3(q: Float32Array, kCache: Uint8Array, vCache: Uint8Array, pos: Int32Array,
  nHeads: number, nKvHeads: number, headDim: number, capacity: number, scale: number): RefResult {
  const rb = (headDim / Q3_BLOCK) * Q3_BLOCK_BYTES;
  // Rows dequantized once each (the attention reads every value many times).
  const rows = (c: Uint8Array) => {
    const memo = new Map<number, Float32Array>();
    return (g: number, t: number, d: number) => {
      const key = g * capacity + t;
      let row = memo.get(key);
      if (!row) memo.set(key, (row = refDequantQ3Row(c, key * rb, headDim)));
      return row[d]!;
    };
  };
  return refAttention(q, rows(kCache), rows(vCache), pos, nHeads, nKvHeads, headDim, scale);
}

type RowAt = (g: number, t: number, d: number) => number;

function refAttention(q: Float32Array, kAt: RowAt, vAt: RowAt, pos: Int32Array, nHeads: number, nKvHeads: number,
  headDim: number, scale: number): RefResult {
  const B = pos.length;
  const r = nHeads / nKvHeads;
  const sc = f32(scale);
  const y = new Float64Array(B * nHeads * headDim);
  const bound = new Float64Array(y.length);
  for (let b = 0; b < B; b++) {
    const L = pos[b]! + 1;
    for (let h = 0; h < nHeads; h++) {
      const g = Math.floor(h / r);
      const qo = (b * nHeads + h) * headDim;
      const s = new Float64Array(L);
      let m = -Infinity;
      let S = 0;
      let vmax = 0;
      for (let t = 0; t < L; t++) {
        let dot = 0;
        let mag = 0;
        for (let d = 0; d < headDim; d++) {
          const p = q[qo + d]! * kAt(g, t, d);
          dot += p;
          mag += Math.abs(p);
          vmax = Math.max(vmax, Math.abs(vAt(g, t, d)));
        }
        s[t] = sc * dot;
        S = Math.max(S, Math.abs(sc) * mag);
        m = Math.max(m, s[t]!);
      }
      let sum = 0;
      for (let t = 0; t < L; t++) sum += s[t] = Math.exp(s[t]! - m);
      const bd = vmax * U * (4 * S * (headDim + 8) + L / 2 + 128);
      for (let d = 0; d < headDim; d++) {
        let o = 0;
        for (let t = 0; t < L; t++) o += s[t]! * vAt(g, t, d);
        y[qo + d] = o / sum;
        bound[qo + d] = bd;
      }
    }
  }
  return { y, bound };
}

function refGlu(gateUp: Float32Array, B: number, n: number, act: (g: number) => number, rel: number): RefResult {
  const y = new Float64Array(B * n);
  const bound = new Float64Array(B * n);
  for (let b = 0; b < B; b++)
    for (let i = 0; i < n; i++) {
      const g = gateUp[b * 2 * n + i]!;
      const u = gateUp[b * 2 * n + n + i]!;
      const v = act(g) * u;
      y[b * n + i] = v;
      bound[b * n + i] = rel * U * Math.abs(v) + 1e-36 * Math.abs(u) + SUB;
    }
  return { y, bound };
}

/** out[b, i] = relu(gate)^2 * up, gateUp [B, 2n] holding gate | up per row. */
export function refGluRelu2(gateUp: Float32Array, B: number, n: number): RefResult {
  return refGlu(gateUp, B, n, (g) => (g > 0 ? g * g : 0), 2);
}

/** out[b, i] = silu(gate) * up = gate / (1 + e^-gate) * up, gateUp [B, 2n] holding gate | up per row. */
export function refGluSilu(gateUp: Float32Array, B: number, n: number): RefResult {
  return refGlu(gateUp, B, n, (g) => g / (1 + Math.exp(-g)), 8);
}
