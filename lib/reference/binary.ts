// Reference binary (±1 weight) kernels on the B1R16 layout: the contract of native/kernels/binary.h
// and native/runtime/repack_binary.h in TypeScript, plus encoders of the file layouts they read
// (upstream Q1_0, OneBit) for tests and synthetic models.
import type { QuantizedActivations } from './act_quant.js';
import { f32, floatToHalf, halfToFloat } from './numeric.js';
import { ScaleMode } from './ternary.js';

export const B1_ROWS = 16;
export const B1_KSTEP = 64;
export const B1_CHUNK = 128;
/** Upstream Q1_0 (ggml type 41): 128 weights per block of 18 bytes {fp16 d, qs[16]}. */
export const Q1_0_BLOCK_K = 128;
export const Q1_0_BLOCK_BYTES = 18;

/** Binary weights in the internal B1R16 layout (binary.h): bit 1 = +1, bit 0 = −1. */
export interface BinaryMatrix {
  bits: Uint8Array; // [Mp/16, K/64, 128]
  /** Tensor: [1]; Row: [Mp] (rows past M are padding). Block scales are not supported. */
  scales: Float32Array;
  M: number;
  K: number;
  scaleMode: ScaleMode.Tensor | ScaleMode.Row;
}

export const b1Tiles = (M: number): number => Math.ceil(M / B1_ROWS);
export const b1BitsBytes = (M: number, K: number): number => b1Tiles(M) * B1_ROWS * (K / 8);
export const q1_0Bytes = (M: number, K: number): number => M * (K / Q1_0_BLOCK_K) * Q1_0_BLOCK_BYTES;
export const oneBitBytes = (M: number, K: number): number => (M * K) / 8;

/** Scale count of a B1R16 matrix: 1 (tensor) or Mp (row). */
export function b1ScaleCount(M: number, mode: ScaleMode): number {
  if (mode === ScaleMode.Tensor) return 1;
  if (mode === ScaleMode.Row) return b1Tiles(M) * B1_ROWS;
  throw new RangeError('binary weights support tensor or row scales, not block scales');
}

/** Byte offset of row m's 8 bytes in chunk kc. */
function rowChunk(K: number, m: number, kc: number): number {
  return (Math.floor(m / B1_ROWS) * (K / B1_KSTEP) + kc) * B1_CHUNK + 8 * (m % B1_ROWS);
}

function checkK(fn: string, K: number): void {
  if (!Number.isInteger(K) || K < B1_KSTEP || K % B1_KSTEP !== 0)
    throw new RangeError(`${fn}: K = ${K} must be a positive multiple of 64`);
}

/** signs [M, K] (v ≥ 0 → +1, v < 0 → −1) → B1R16 bits; rows past M are zero. */
export function packB1(signs: Int8Array, M: number, K: number): Uint8Array {
  checkK('packB1', K);
  const bits = new Uint8Array(b1BitsBytes(M, K));
  for (let m = 0; m < M; m++)
    for (let k = 0; k < K; k++)
      if (signs[m * K + k]! >= 0) bits[rowChunk(K, m, k >> 6) + ((k & 63) >> 3)]! |= 1 << (k & 7);
  return bits;
}

/** B1R16 bits → signs [M, K] in {−1, +1}. */
export function unpackB1(bits: Uint8Array, M: number, K: number): Int8Array {
  const signs = new Int8Array(M * K);
  for (let m = 0; m < M; m++)
    for (let k = 0; k < K; k++) signs[m * K + k] = (bits[rowChunk(K, m, k >> 6) + ((k & 63) >> 3)]! >> (k & 7)) & 1 ? 1 : -1;
  return signs;
}

/** Float weights [M, K] → sign bits with sign(0) := +1 (−0 and NaN count as +1 too). */
export function refRepackB1F32(w: Float32Array, M: number, K: number): Uint8Array {
  const signs = Int8Array.from(w.subarray(0, M * K), (v) => (v < 0 ? -1 : 1));
  return packB1(signs, M, K);
}

/** OneBit int8 [M, K/8]: bit i (LSB first) of byte j = column 8j+i, bit 1 = −1 → B1R16 (inverted). */
export function refRepackB1OneBit(src: Uint8Array, M: number, K: number): Uint8Array {
  const signs = new Int8Array(M * K);
  for (let m = 0; m < M; m++)
    for (let k = 0; k < K; k++) signs[m * K + k] = (src[m * (K / 8) + (k >> 3)]! >> (k & 7)) & 1 ? -1 : 1;
  return packB1(signs, M, K);
}

/**
 * Upstream Q1_0 [M, K/128 blocks] → B1R16 with one scale per row: rowScales[m] = |d| of block 0,
 * blocks with negative d stored inverted. Rows whose blocks differ in |d| (or whose scale is not
 * finite) are counted in nonUniformRows; they cannot run on the B1R16 kernels.
 */
export function refRepackB1Q1_0(src: Uint8Array, M: number, K: number): { bits: Uint8Array; rowScales: Float32Array; nonUniformRows: number } {
  const nb = K / Q1_0_BLOCK_K;
  const signs = new Int8Array(M * K);
  const rowScales = new Float32Array(b1Tiles(M) * B1_ROWS);
  const dv = new DataView(src.buffer, src.byteOffset, src.byteLength);
  let nonUniformRows = 0;
  for (let m = 0; m < M; m++) {
    const base = m * nb * Q1_0_BLOCK_BYTES;
    const s = Math.abs(halfToFloat(dv.getUint16(base, true)));
    let ok = Number.isFinite(s);
    for (let j = 0; j < nb; j++) {
      const off = base + j * Q1_0_BLOCK_BYTES;
      const h = dv.getUint16(off, true);
      if (Math.abs(halfToFloat(h)) !== s) ok = false;
      const flip = (h & 0x8000) !== 0;
      for (let e = 0; e < Q1_0_BLOCK_K; e++) {
        const bit = (src[off + 2 + (e >> 3)]! >> (e & 7)) & 1;
        signs[m * K + j * Q1_0_BLOCK_K + e] = (bit === 1) !== flip ? 1 : -1;
      }
    }
    rowScales[m] = s;
    if (!ok) nonUniformRows++;
  }
  return { bits: packB1(signs, M, K), rowScales, nonUniformRows };
}

/** signs [M, K] + per-block scales [M, K/128] (stored as fp16) → upstream Q1_0 blocks. */
export function encodeQ1_0(signs: Int8Array, M: number, K: number, blockScales: Float32Array): Uint8Array {
  if (K % Q1_0_BLOCK_K !== 0) throw new RangeError(`encodeQ1_0: K = ${K} is not a multiple of 128`);
  const nb = K / Q1_0_BLOCK_K;
  const out = new Uint8Array(q1_0Bytes(M, K));
  const dv = new DataView(out.buffer);
  for (let m = 0; m < M; m++)
    for (let j = 0; j < nb; j++) {
      const off = (m * nb + j) * Q1_0_BLOCK_BYTES;
      dv.setUint16(off, floatToHalf(blockScales[m * nb + j]!), true);
      for (let e = 0; e < Q1_0_BLOCK_K; e++)
        if (signs[m * K + j * Q1_0_BLOCK_K + e]! > 0) out[off + 2 + (e >> 3)]! |= 1 << (e & 7);
    }
  return out;
}

/** signs [M, K] → OneBit packing int8 [M, K/8] (bit 1 = −1). */
export function encodeOneBit(signs: Int8Array, M: number, K: number): Uint8Array {
  const out = new Uint8Array(oneBitBytes(M, K));
  for (let m = 0; m < M; m++)
    for (let k = 0; k < K; k++) if (signs[m * K + k]! < 0) out[m * (K / 8) + (k >> 3)]! |= 1 << (k & 7);
  return out;
}

/**
 * Y[b, m] per binary.h (bit-exact with every native variant):
 * pos = Σ_{bit=1} q, dot = (2·pos − sum) wrapped to int32, y = ((float)dot · ws) / scale (+ tokBias[b]).
 */
export function refBinaryGemm(w: BinaryMatrix, a: QuantizedActivations, tokBias?: Float32Array): Float32Array {
  const { M, K } = w;
  const y = new Float32Array(a.B * M);
  const row = new Uint8Array(K);
  for (let m = 0; m < M; m++) {
    for (let k = 0; k < K; k++) row[k] = (w.bits[rowChunk(K, m, k >> 6) + ((k & 63) >> 3)]! >> (k & 7)) & 1;
    const ws = w.scaleMode === ScaleMode.Row ? w.scales[m]! : w.scales[0]!;
    for (let b = 0; b < a.B; b++) {
      const base = b * K;
      let pos = 0;
      for (let k = 0; k < K; k++) if (row[k]) pos += a.q[base + k]!;
      const dot = (2 * pos - a.sum[b]!) | 0;
      let v = f32(f32(f32(dot) * ws) / a.scale[b]!);
      if (tokBias) v = f32(v + tokBias[b]!);
      y[b * M + m] = v;
    }
  }
  return y;
}

/** The column-side prep of binary.h: xs = x ⊙ colScale, tokBias[b] = Σ colBias ⊙ x in the fixed 16-lane order. */
export function refBinaryPrep(
  x: Float32Array,
  B: number,
  K: number,
  colScale?: Float32Array,
  colBias?: Float32Array,
): { xs: Float32Array; tokBias?: Float32Array } {
  const xs = new Float32Array(B * K);
  const tokBias = colBias ? new Float32Array(B) : undefined;
  const p = new Array<number>(16);
  for (let b = 0; b < B; b++) {
    p.fill(0);
    for (let k = 0; k < K; k++) {
      const xv = x[b * K + k]!;
      xs[b * K + k] = colScale ? f32(xv * colScale[k]!) : xv;
      if (colBias) p[k % 16] = f32(p[k % 16]! + f32(colBias[k]! * xv));
    }
    if (tokBias) {
      for (let h = 8; h >= 2; h /= 2) for (let l = 0; l < h; l++) p[l] = f32(p[l]! + p[l + h]!);
      tokBias[b] = f32(p[0]! + p[1]!);
    }
  }
  return tokBias ? { xs, tokBias } : { xs };
}

