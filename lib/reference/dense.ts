// Reference dense kernels: the contracts of native/kernels/dense.h in TypeScript.
//   f16 GEMM: evaluated in float64 (products of a half and a float are exact in a double; the
//             double sum's own error, <= K * 2^-53 * Σ|w x|, is 2^-30 of the bound below), with the
//             per-output bound every native variant must meet:
//               |y - ref| <= (ceil(K/8) + 24) * 2^-23 * Σ_k |w x| + K * 2^-149
//   f16t:     the F16T32 tiles of the F16 lm_head (32 rows, k-major): repack / unpack move half bits, and the
//             GEMM has the f16 bound above (its chunked sums stay within it: native/kernels/dense.h).
//   q8:       repack (GGUF Q8_0 or float quantization), unpack and GEMM on the Q8R16 layout, bit-exact
//             with every native variant (each float op rounded once with Math.fround).
//   q4:       the same for Q4R16 (GGUF Q4_0 copied, or F16 / BF16 / F32 / Q8_0 quantized to 4 bits),
//             bit-exact with every native variant.
import type { QuantizedActivations } from './act_quant.js';
import { clamp, f32, floatToHalf, halfToFloat, roundHalfEven } from './numeric.js';

export const Q8_ROWS = 16;
export const Q8_BLOCK = 32;
export const Q8_GROUP_BYTES = 64;
export const Q8_BLOCK_QS_BYTES = 512;
/** One Q8R16 record: 16 rows x 32 codes + 16 fp16 scales. */
export const Q8_RECORD_BYTES = 544;
/** One GGUF Q8_0 block: fp16 d + 32 int8 codes. */
export const Q8_0_BLOCK_BYTES = 34;

/** GGUF F16 weights, row-major [M, K] IEEE half bits (ne0 = K columns, ne1 = M rows). */
export interface F16Matrix {
  data: Uint16Array; // [M * K]
  M: number;
  K: number;
}

/**
 * Q8R16 weights (native/kernels/dense.h): per (16-row tile t, 32-column block j) a 544-byte record at
 * (t * K/32 + j) * 544 holding codes[8 groups][16 rows][4] then fp16 d[16]. K % 32 == 0.
 */
export interface Q8Matrix {
  data: Uint8Array; // [ceil(M/16) * K/32 * 544]
  M: number;
  K: number;
}

export const q8Tiles = (M: number): number => Math.ceil(M / Q8_ROWS);
export const q8Bytes = (M: number, K: number): number => q8Tiles(M) * (K / Q8_BLOCK) * Q8_RECORD_BYTES;
export const q8_0Bytes = (M: number, K: number): number => M * (K / Q8_BLOCK) * Q8_0_BLOCK_BYTES;

/** Roundings a product may pass through in a native f16 GEMM (dense.h f16_chain_slack). */
export const f16ChainSlack = (K: number): number => Math.ceil(K / 8) + 24;

/** Y [B, M] in float64 and the bound each native output must be within (see the file comment). */
export function refF16Gemm(w: F16Matrix, x: Float32Array, B: number): { y: Float64Array; bound: Float64Array } {
  const { M, K } = w;
  const y = new Float64Array(B * M);
  const bound = new Float64Array(B * M);
  const row = new Float64Array(K);
  const rel = f16ChainSlack(K) * 2 ** -23;
  for (let m = 0; m < M; m++) {
    for (let k = 0; k < K; k++) row[k] = halfToFloat(w.data[m * K + k]!);
    for (let b = 0; b < B; b++) {
      let s = 0;
      let a = 0;
      for (let k = 0; k < K; k++) {
        const p = row[k]! * x[b * K + k]!;
        s += p;
        a += Math.abs(p);
      }
      y[b * M + m] = s;
      bound[b * M + m] = rel * a + K * 2 ** -149;
    }
  }
  return { y, bound };
}

/** out [n, K] = the rows' halves as floats (exact). */
export function refF16GetRows(w: F16Matrix, rows: ArrayLike<number>): Float32Array {
  const out = new Float32Array(rows.length * w.K);
  for (let i = 0; i < rows.length; i++) {
    const m = rows[i]!;
    if (!(m >= 0 && m < w.M)) throw new RangeError(`refF16GetRows: rows[${i}] = ${m} is outside [0, ${w.M})`);
    for (let k = 0; k < w.K; k++) out[i * w.K + k] = halfToFloat(w.data[m * w.K + k]!);
  }
  return out;
}

/** Rows per F16T32 tile and columns per summation chunk (native/kernels/dense.h). */
export const F16T_ROWS = 32;
export const F16T_CHUNK = 16;

/** F16 weights in F16T32 tiles: w[32t + r, k] at element t * K * 32 + k * 32 + r; rows past M are zero. */
export interface F16TMatrix {
  data: Uint16Array; // [ceil(M/32) * K * 32]
  M: number;
  K: number;
}

export const f16tElems = (M: number, K: number): number => Math.ceil(M / F16T_ROWS) * K * F16T_ROWS;

/** GGUF F16 rows [M, K] → F16T32 (half bits moved as they are); `invalid` counts Inf / NaN halves. */
export function refRepackF16T(src: Uint16Array, M: number, K: number): { w: F16TMatrix; invalid: number } {
  if (src.length < M * K) throw new RangeError(`refRepackF16T: src holds ${src.length} halves, fewer than ${M} x ${K}`);
  const data = new Uint16Array(f16tElems(M, K));
  let invalid = 0;
  for (let m = 0; m < M; m++) {
    const base = Math.floor(m / F16T_ROWS) * K * F16T_ROWS + (m % F16T_ROWS);
    for (let k = 0; k < K; k++) {
      const h = src[m * K + k]!;
      if (!halfFinite(h)) invalid++;
      data[base + k * F16T_ROWS] = h;
    }
  }
  return { w: { data, M, K }, invalid };
}

/** F16T32 → GGUF F16 rows [M, K] (the exact inverse of refRepackF16T). */
export function refUnpackF16T(w: F16TMatrix): F16Matrix {
  const { M, K } = w;
  const data = new Uint16Array(M * K);
  for (let m = 0; m < M; m++) {
    const base = Math.floor(m / F16T_ROWS) * K * F16T_ROWS + (m % F16T_ROWS);
    for (let k = 0; k < K; k++) data[m * K + k] = w.data[base + k * F16T_ROWS]!;
  }
  return { data, M, K };
}

/** Y [B, M] in float64 and the per-output bound (the f16 contract: the layout changes nothing else). */
export function refF16TGemm(w: F16TMatrix, x: Float32Array, B: number): { y: Float64Array; bound: Float64Array } {
  return refF16Gemm(refUnpackF16T(w), x, B);
}

/** out [n, K] = the rows' halves as floats (exact). */
export function refF16TGetRows(w: F16TMatrix, rows: ArrayLike<number>): Float32Array {
  const out = new Float32Array(rows.length * w.K);
  for (let i = 0; i < rows.length; i++) {
    const m = rows[i]!;
    if (!(m >= 0 && m < w.M)) throw new RangeError(`refF16TGetRows: rows[${i}] = ${m} is outside [0, ${w.M})`);
    const base = Math.floor(m / F16T_ROWS) * w.K * F16T_ROWS + (m % F16T_ROWS);
    for (let k = 0; k < w.K; k++) out[i * w.K + k] = halfToFloat(w.data[base + k * F16T_ROWS]!);
  }
  return out;
}

function checkK(fn: string, K: number): void {
  if (!(K >= Q8_BLOCK && K % Q8_BLOCK === 0)) throw new RangeError(`${fn}: K = ${K} must be a positive multiple of 32`);
}

/** Byte offset of the record of row m, block j (row r = m % 16 within it). */
const recordAt = (K: number, m: number, j: number): number => (Math.floor(m / Q8_ROWS) * (K / Q8_BLOCK) + j) * Q8_RECORD_BYTES;

/** Writes row m, block j: fp16 scale bits and 32 codes. */
function putBlock(data: Uint8Array, K: number, m: number, j: number, d: number, codes: ArrayLike<number>): void {
  const rec = recordAt(K, m, j);
  const r = m % Q8_ROWS;
  for (let i = 0; i < Q8_BLOCK; i++) data[rec + (i >> 2) * Q8_GROUP_BYTES + 4 * r + (i & 3)] = codes[i]! & 0xff;
  data[rec + Q8_BLOCK_QS_BYTES + 2 * r] = d & 0xff;
  data[rec + Q8_BLOCK_QS_BYTES + 2 * r + 1] = d >> 8;
}

const halfFinite = (h: number): boolean => (h & 0x7c00) !== 0x7c00;

/** GGUF Q8_0 blocks [M, K/32, 34] → Q8R16. Blocks with a non-finite d are stored as zeros and counted. */
export function refRepackQ8FromQ8_0(src: Uint8Array, M: number, K: number): { w: Q8Matrix; invalid: number } {
  checkK('refRepackQ8FromQ8_0', K);
  const data = new Uint8Array(q8Bytes(M, K));
  const nb = K / Q8_BLOCK;
  let invalid = 0;
  for (let m = 0; m < M; m++)
    for (let j = 0; j < nb; j++) {
      const off = (m * nb + j) * Q8_0_BLOCK_BYTES;
      const d = src[off]! | (src[off + 1]! << 8);
      if (!halfFinite(d)) {
        invalid++;
        continue;
      }
      putBlock(data, K, m, j, d, src.subarray(off + 2, off + 34));
    }
  return { w: { data, M, K }, invalid };
}

/**
 * Float rows [M, K] (F16 as half bits, or F32) quantized per 32-block (dense repack rule):
 * amax = max|x|; dh = fp16(amax / 127); d = f32(dh); q = d == 0 ? 0 : clamp(rne(x / d), -127, 127).
 * Blocks holding Inf/NaN, or whose scale overflows fp16, are stored as zeros and counted.
 */
export function refQuantizeQ8(src: Uint16Array | Float32Array, M: number, K: number): { w: Q8Matrix; invalid: number } {
  checkK('refQuantizeQ8', K);
  const data = new Uint8Array(q8Bytes(M, K));
  const nb = K / Q8_BLOCK;
  const halves = src instanceof Uint16Array;
  const x = new Float64Array(Q8_BLOCK);
  const codes = new Int8Array(Q8_BLOCK);
  let invalid = 0;
  for (let m = 0; m < M; m++)
    for (let j = 0; j < nb; j++) {
      let ok = true;
      let amax = 0;
      for (let i = 0; i < Q8_BLOCK; i++) {
        const v = src[m * K + j * Q8_BLOCK + i]!;
        const f = halves ? halfToFloat(v) : v;
        if (!Number.isFinite(f)) ok = false;
        x[i] = f;
        amax = Math.max(amax, Math.abs(f));
      }
      const dh = ok ? floatToHalf(f32(amax / 127)) : 0;
      if (!ok || !halfFinite(dh)) {
        invalid++;
        continue;
      }
      const d = halfToFloat(dh);
      for (let i = 0; i < Q8_BLOCK; i++) codes[i] = d === 0 ? 0 : clamp(roundHalfEven(f32(x[i]! / d)), -127, 127);
      putBlock(data, K, m, j, dh, codes);
    }
  return { w: { data, M, K }, invalid };
}

/** Q8R16 → GGUF Q8_0 blocks [M, K/32, 34]. */
export function refUnpackQ8ToQ8_0(w: Q8Matrix): Uint8Array {
  const { M, K } = w;
  const nb = K / Q8_BLOCK;
  const out = new Uint8Array(q8_0Bytes(M, K));
  for (let m = 0; m < M; m++)
    for (let j = 0; j < nb; j++) {
      const rec = recordAt(K, m, j);
      const r = m % Q8_ROWS;
      const off = (m * nb + j) * Q8_0_BLOCK_BYTES;
      out[off] = w.data[rec + Q8_BLOCK_QS_BYTES + 2 * r]!;
      out[off + 1] = w.data[rec + Q8_BLOCK_QS_BYTES + 2 * r + 1]!;
      for (let i = 0; i < Q8_BLOCK; i++) out[off + 2 + i] = w.data[rec + (i >> 2) * Q8_GROUP_BYTES + 4 * r + (i & 3)]!;
    }
  return out;
}

/** Codes of row m as int8 [K] and its block scales as floats [K/32]. */
function q8Row(w: Q8Matrix, m: number, codes: Int8Array, scales: Float64Array): void {
  const { K } = w;
  const r = m % Q8_ROWS;
  for (let j = 0; j < K / Q8_BLOCK; j++) {
    const rec = recordAt(K, m, j);
    scales[j] = halfToFloat(w.data[rec + Q8_BLOCK_QS_BYTES + 2 * r]! | (w.data[rec + Q8_BLOCK_QS_BYTES + 2 * r + 1]! << 8));
    for (let i = 0; i < Q8_BLOCK; i++) {
      const c = w.data[rec + (i >> 2) * Q8_GROUP_BYTES + 4 * r + (i & 3)]!;
      codes[j * Q8_BLOCK + i] = c > 127 ? c - 256 : c;
    }
  }
}

/** out [n, K] = d * code of the rows (exact: an fp16 times an int8 fits a float). */
export function refQ8GetRows(w: Q8Matrix, rows: ArrayLike<number>): Float32Array {
  const { K } = w;
  const out = new Float32Array(rows.length * K);
  const codes = new Int8Array(K);
  const scales = new Float64Array(K / Q8_BLOCK);
  for (let i = 0; i < rows.length; i++) {
    const m = rows[i]!;
    if (!(m >= 0 && m < w.M)) throw new RangeError(`refQ8GetRows: rows[${i}] = ${m} is outside [0, ${w.M})`);
    q8Row(w, m, codes, scales);
    for (let k = 0; k < K; k++) out[i * K + k] = f32(scales[k >> 5]! * codes[k]!);
  }
  return out;
}

/** Y [B, M] per the q8 contract: acc = acc + (float)dot_j * d[m, j] in block order; y = acc / scale[b]. */
export function refQ8Gemm(w: Q8Matrix, a: QuantizedActivations): Float32Array {
  const { M, K } = w;
  if (a.K !== K) throw new RangeError(`refQ8Gemm: activations have K = ${a.K}, weights K = ${K}`);
  const nb = K / Q8_BLOCK;
  const y = new Float32Array(a.B * M);
  const codes = new Int8Array(K);
  const scales = new Float64Array(nb);
  for (let m = 0; m < M; m++) {
    q8Row(w, m, codes, scales);
    for (let b = 0; b < a.B; b++) {
      let acc = 0;
      for (let j = 0; j < nb; j++) {
        let dot = 0;
        for (let k = j * Q8_BLOCK; k < (j + 1) * Q8_BLOCK; k++) dot += codes[k]! * a.q[b * K + k]!;
        acc = f32(acc + f32(dot * scales[j]!));
      }
      y[b * M + m] = f32(acc / a.scale[b]!);
    }
  }
  return y;
}

// ---- q4: Q4R16 (native/kernels/dense_q4.h) ----

export const Q4_ROWS = 16;
export const Q4_BLOCK = 32;
export const Q4_CHUNK_BYTES = 64;
export const Q4_BLOCK_QS_BYTES = 256;
/** One Q4R16 record: 16 rows x 32 4-bit codes + 16 fp16 scales. */
export const Q4_RECORD_BYTES = 288;
/** One GGUF Q4_0 block: fp16 d + 16 bytes (low nibble k i, high nibble k i + 16). */
export const Q4_0_BLOCK_BYTES = 18;

/**
 * Q4R16 weights (native/kernels/dense_q4.h): per (16-row tile t, 32-column block j) a 288-byte record
 * at (t * K/32 + j) * 288: chunk c (0..3), byte 64c + 4r + i holds u(row r, k 4c+i) in bits 3:0 and
 * u(row r, k 16+4c+i) in bits 7:4; then fp16 d[16] at 256. Weight = d * (u - 8). K % 32 == 0.
 */
export interface Q4Matrix {
  data: Uint8Array; // [ceil(M/16) * K/32 * 288]
  M: number;
  K: number;
}

/** Float sources the q4 quantizer accepts (F16 / BF16 as uint16 bits, F32, GGUF Q8_0 blocks). */
export type Q4FloatSource = 'f16' | 'bf16' | 'f32' | 'q8_0';

export const q4Tiles = (M: number): number => Math.ceil(M / Q4_ROWS);
export const q4Bytes = (M: number, K: number): number => q4Tiles(M) * (K / Q4_BLOCK) * Q4_RECORD_BYTES;
export const q4_0Bytes = (M: number, K: number): number => M * (K / Q4_BLOCK) * Q4_0_BLOCK_BYTES;

const q4RecordAt = (K: number, m: number, j: number): number => (Math.floor(m / Q4_ROWS) * (K / Q4_BLOCK) + j) * Q4_RECORD_BYTES;

/** An empty Q4R16 buffer: every code u = 8 (weight 0), every scale +0. */
function zeroQ4(M: number, K: number): Uint8Array {
  const data = new Uint8Array(q4Bytes(M, K));
  for (let rec = 0; rec < data.length; rec += Q4_RECORD_BYTES) data.fill(0x88, rec, rec + Q4_BLOCK_QS_BYTES);
  return data;
}

/** Writes row m, block j: fp16 scale bits and 16 bytes in Q4_0 order. */
function putQ4Block(data: Uint8Array, K: number, m: number, j: number, d: number, qs: ArrayLike<number>): void {
  const rec = q4RecordAt(K, m, j);
  const r = m % Q4_ROWS;
  for (let i = 0; i < 16; i++) data[rec + (i >> 2) * Q4_CHUNK_BYTES + 4 * r + (i & 3)] = qs[i]!;
  data[rec + Q4_BLOCK_QS_BYTES + 2 * r] = d & 0xff;
  data[rec + Q4_BLOCK_QS_BYTES + 2 * r + 1] = d >> 8;
}

/** GGUF Q4_0 blocks [M, K/32, 18] → Q4R16. Blocks with a non-finite d are stored as zeros and counted. */
export function refRepackQ4FromQ4_0(src: Uint8Array, M: number, K: number): { w: Q4Matrix; invalid: number } {
  checkK('refRepackQ4FromQ4_0', K);
  const data = zeroQ4(M, K);
  const nb = K / Q4_BLOCK;
  let invalid = 0;
  for (let m = 0; m < M; m++)
    for (let j = 0; j < nb; j++) {
      const off = (m * nb + j) * Q4_0_BLOCK_BYTES;
      const d = src[off]! | (src[off + 1]! << 8);
      if (!halfFinite(d)) {
        invalid++;
        continue;
      }
      putQ4Block(data, K, m, j, d, src.subarray(off + 2, off + 18));
    }
  return { w: { data, M, K }, invalid };
}

const bf16Buf = new Uint32Array(1);
const bf16F32 = new Float32Array(bf16Buf.buffer);
const bf16ToFloat = (h: number): number => {
  bf16Buf[0] = h << 16;
  return bf16F32[0]!;
};

/**
 * Float rows [M, K] quantized per 32-block (dense_q4.h / repack_dense.h rule): mx = the first x of
 * largest |x|; dh = fp16(mx / -8); d = f32(dh); d == 0 → every u = 8 and dh = +0; else
 * u = clamp(rne(x / d), -8, 7) + 8. Sources: 'f16' / 'bf16' (uint16 bits), 'f32', or 'q8_0' (GGUF blocks,
 * x = f32(d * code)). Blocks holding Inf/NaN (or a non-finite Q8_0 d), or whose scale overflows fp16,
 * are stored as zeros and counted.
 */
export function refQuantizeQ4(type: Q4FloatSource, src: Uint8Array | Uint16Array | Float32Array, M: number, K: number): { w: Q4Matrix; invalid: number } {
  checkK('refQuantizeQ4', K);
  const data = zeroQ4(M, K);
  const nb = K / Q4_BLOCK;
  const x = new Float64Array(Q4_BLOCK);
  const qs = new Uint8Array(16);
  const u = new Uint8Array(Q4_BLOCK);
  let invalid = 0;
  for (let m = 0; m < M; m++)
    for (let j = 0; j < nb; j++) {
      let ok = true;
      if (type === 'q8_0') {
        const off = (m * nb + j) * Q8_0_BLOCK_BYTES;
        const dh8 = src[off]! | (src[off + 1]! << 8);
        const d8 = halfToFloat(dh8);
        ok = halfFinite(dh8);
        for (let i = 0; i < Q4_BLOCK; i++) {
          const c = src[off + 2 + i]!;
          x[i] = f32(d8 * (c > 127 ? c - 256 : c));
        }
      } else {
        for (let i = 0; i < Q4_BLOCK; i++) {
          const v = src[m * K + j * Q4_BLOCK + i]!;
          const f = type === 'f16' ? halfToFloat(v) : type === 'bf16' ? bf16ToFloat(v) : v;
          if (!Number.isFinite(f)) ok = false;
          x[i] = f;
        }
      }
      if (!ok) {
        invalid++;
        continue;
      }
      let at = 0;
      for (let i = 1; i < Q4_BLOCK; i++) if (Math.abs(x[i]!) > Math.abs(x[at]!)) at = i;
      let dh = floatToHalf(f32(x[at]! / -8));
      if (!halfFinite(dh)) {
        invalid++;
        continue;
      }
      const d = halfToFloat(dh);
      if (d === 0) {
        dh = 0;
        u.fill(8);
      } else {
        for (let i = 0; i < Q4_BLOCK; i++) u[i] = clamp(roundHalfEven(f32(x[i]! / d)), -8, 7) + 8;
      }
      for (let i = 0; i < 16; i++) qs[i] = u[i]! | (u[i + 16]! << 4);
      putQ4Block(data, K, m, j, dh, qs);
    }
  return { w: { data, M, K }, invalid };
}

/** Q4R16 → GGUF Q4_0 blocks [M, K/32, 18]. */
export function refUnpackQ4ToQ4_0(w: Q4Matrix): Uint8Array {
  const { M, K } = w;
  const nb = K / Q4_BLOCK;
  const out = new Uint8Array(q4_0Bytes(M, K));
  for (let m = 0; m < M; m++)
    for (let j = 0; j < nb; j++) {
      const rec = q4RecordAt(K, m, j);
      const r = m % Q4_ROWS;
      const off = (m * nb + j) * Q4_0_BLOCK_BYTES;
      out[off] = w.data[rec + Q4_BLOCK_QS_BYTES + 2 * r]!;
      out[off + 1] = w.data[rec + Q4_BLOCK_QS_BYTES + 2 * r + 1]!;
      for (let i = 0; i < 16; i++) out[off + 2 + i] = w.data[rec + (i >> 2) * Q4_CHUNK_BYTES + 4 * r + (i & 3)]!;
    }
  return out;
}

/** Signed codes (u - 8) of row m as [K] and its block scales as floats [K/32]. */
function q4Row(w: Q4Matrix, m: number, codes: Int8Array, scales: Float64Array): void {
  const { K } = w;
  const r = m % Q4_ROWS;
  for (let j = 0; j < K / Q4_BLOCK; j++) {
    const rec = q4RecordAt(K, m, j);
    scales[j] = halfToFloat(w.data[rec + Q4_BLOCK_QS_BYTES + 2 * r]! | (w.data[rec + Q4_BLOCK_QS_BYTES + 2 * r + 1]! << 8));
    for (let i = 0; i < 16; i++) {
      const b = w.data[rec + (i >> 2) * Q4_CHUNK_BYTES + 4 * r + (i & 3)]!;
      codes[j * Q4_BLOCK + i] = (b & 15) - 8;
      codes[j * Q4_BLOCK + 16 + i] = (b >> 4) - 8;
    }
  }
}

/** out [n, K] = d * (u - 8) of the rows (exact: an fp16 times a small integer fits a float). */
export function refQ4GetRows(w: Q4Matrix, rows: ArrayLike<number>): Float32Array {
  const { K } = w;
  const out = new Float32Array(rows.length * K);
  const codes = new Int8Array(K);
  const scales = new Float64Array(K / Q4_BLOCK);
  for (let i = 0; i < rows.length; i++) {
    const m = rows[i]!;
    if (!(m >= 0 && m < w.M)) throw new RangeError(`refQ4GetRows: rows[${i}] = ${m} is outside [0, ${w.M})`);
    q4Row(w, m, codes, scales);
    for (let k = 0; k < K; k++) out[i * K + k] = f32(scales[k >> 5]! * codes[k]!);
  }
  return out;
}

/** Y [B, M] per the q4 contract: dot_j = Σ (u-8) q; acc = acc + (float)dot_j * d[m, j] in block order; y = acc / scale[b]. */
export function refQ4Gemm(w: Q4Matrix, a: QuantizedActivations): Float32Array {
  const { M, K } = w;
  if (a.K !== K) throw new RangeError(`refQ4Gemm: activations have K = ${a.K}, weights K = ${K}`);
  const nb = K / Q4_BLOCK;
  const y = new Float32Array(a.B * M);
  const codes = new Int8Array(K);
  const scales = new Float64Array(nb);
  for (let m = 0; m < M; m++) {
    q4Row(w, m, codes, scales);
    for (let b = 0; b < a.B; b++) {
      let acc = 0;
      for (let j = 0; j < nb; j++) {
        let dot = 0;
        for (let k = j * Q4_BLOCK; k < (j + 1) * Q4_BLOCK; k++) dot += codes[k]! * a.q[b * K + k]!;
        acc = f32(acc + f32(dot * scales[j]!));
      }
      y[b * M + m] = f32(acc / a.scale[b]!);
    }
  }
  return y;
}
