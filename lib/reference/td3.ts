// Reference TD3 ternary GEMM: the layout and contract of native/kernels/ternary_td3.h in TypeScript
// (docs/kernels-lut.md §6). Results are bit-exact with refTernaryGemm for the same trits and scales:
// TD3 decodes to the same 2-bit codes (trit + 1), so the integer dots and the float epilogue are those
// of the T2R16 contract.
import type { QuantizedActivations } from './act_quant.js';
import { refBlockSums } from './act_quant.js';
import { f32 } from './numeric.js';
import { SCALE_BLOCK_K, ScaleMode, T2_CHUNK, T2_KSTEP, T2_ROWS, scaleCount } from './ternary.js';

export const TD3_ROWS = 64; // rows per tile
export const TD3_QUAD_ROWS = 16; // rows per quad (4 quads per tile)
export const TD3_KSTEP = 16; // K must be a multiple of 16
export const TD3_UNIT_K = 24; // columns per unit
export const TD3_UNIT_BYTES = 320; // 64 sign bytes + 4 quads x 64 nibble bytes
export const TD3_TAIL_K = 16; // columns per tail (T2R16 chunks)
export const TD3_TAIL_BYTES = 256; // 4 quads x 64 bytes
export const TD3_BLOCK_BYTES = 10 * TD3_UNIT_BYTES + TD3_TAIL_BYTES; // 3456: a full 256-column block

/** Decoded byte c0 | c1 << 2 | c2 << 4 (c = digit + 1) of a positive group with |v| = m (0..13). */
export const TD3_DECODE: readonly number[] = [21, 37, 9, 25, 41, 2, 18, 34, 6, 22, 38, 10, 26, 42, 21, 21];
/** A negative group's decoded byte is TD3_NEGATE - TD3_DECODE[|v|] (every code c -> 2 - c). */
export const TD3_NEGATE = 42;

/** Ternary weights in the internal TD3 layout; scales use the T2R16 scale layout. */
export interface TernaryTd3Matrix {
  data: Uint8Array; // [td3WeightBytes(M, K)]
  /** Tensor: [1]; Row: [Mp16]; Block: [Mp16/16, K/256, 16] (as TernaryMatrix). */
  scales: Float32Array;
  M: number;
  K: number;
  scaleMode: ScaleMode;
}

export const td3Tiles = (M: number): number => Math.ceil(M / TD3_ROWS);
export const td3Blocks = (K: number): number => Math.ceil(K / SCALE_BLOCK_K);
const blockCols = (K: number, j: number): number => Math.min(SCALE_BLOCK_K, K - j * SCALE_BLOCK_K);
/** Units (24 columns) of block j: 2·floor(r/48) for a block of r columns (10 for a full block). */
export const td3BlockUnits = (K: number, j: number): number => 2 * Math.floor(blockCols(K, j) / 48);
/** Tails (16 columns, T2R16 chunks) of block j: (r - 24·units) / 16 (1 for a full block). */
export const td3BlockTails = (K: number, j: number): number => (blockCols(K, j) - TD3_UNIT_K * td3BlockUnits(K, j)) / TD3_TAIL_K;
export const td3BlockBytes = (K: number, j: number): number =>
  TD3_UNIT_BYTES * td3BlockUnits(K, j) + TD3_TAIL_BYTES * td3BlockTails(K, j);
/** Bytes of one 64-row tile (tiles are stored one after another). */
export function td3TileBytes(K: number): number {
  const nb = td3Blocks(K);
  return nb === 0 ? 0 : (nb - 1) * TD3_BLOCK_BYTES + td3BlockBytes(K, nb - 1);
}
export const td3WeightBytes = (M: number, K: number): number => td3Tiles(M) * td3TileBytes(K);
/** Sign-plane bit of quad q's low-nibble (h = 0) or high-nibble (h = 1) slot. */
export const td3SignBit = (q: number, h: number): number => (h ? q : 4 + q);

function checkK(fn: string, K: number): void {
  if (!(K >= TD3_KSTEP && K % TD3_KSTEP === 0)) throw new RangeError(`${fn}: K = ${K} must be a positive multiple of 16`);
}

/**
 * Walks every stored group of a TD3 matrix: visit(offset of the nibble byte, nibble shift, offset of
 * the sign byte, sign bit, m, k of the group's first digit) for the unit groups of rows < Mp (all
 * 64-row tiles), and tail(offset of the T2R16 chunk byte, shift, m, k) for each tail code.
 * Group slot s of a unit at column k0 holds digits d = 0, 1, 2 at k = k0 + 12·(s >> 2) + 4d + (s & 3).
 */
function walk(M: number, K: number,
  unit: (nib: number, nsh: number, sgn: number, sbit: number, m: number, k: number) => void,
  tail: (off: number, sh: number, m: number, k: number) => void): void {
  const tileBytes = td3TileBytes(K);
  for (let t = 0; t < td3Tiles(M); t++) {
    for (let j = 0; j < td3Blocks(K); j++) {
      const blk = t * tileBytes + j * TD3_BLOCK_BYTES;
      const units = td3BlockUnits(K, j);
      for (let u = 0; u < units; u++) {
        const base = blk + u * TD3_UNIT_BYTES;
        const k0 = j * SCALE_BLOCK_K + u * TD3_UNIT_K;
        for (let q = 0; q < 4; q++)
          for (let p = 0; p < 64; p++)
            for (let h = 0; h < 2; h++)
              unit(base + 64 + 64 * q + p, 4 * h, base + p, td3SignBit(q, h), t * TD3_ROWS + q * TD3_QUAD_ROWS + (p >> 2),
                k0 + 12 * h + (p & 3));
      }
      for (let c = 0; c < td3BlockTails(K, j); c++) {
        const base = blk + units * TD3_UNIT_BYTES + c * TD3_TAIL_BYTES;
        const k0 = j * SCALE_BLOCK_K + units * TD3_UNIT_K + c * TD3_TAIL_K;
        for (let q = 0; q < 4; q++)
          for (let p = 0; p < 64; p++)
            for (let l = 0; l < 4; l++) tail(base + 64 * q + p, 2 * l, t * TD3_ROWS + q * TD3_QUAD_ROWS + (p >> 2), k0 + 4 * l + (p & 3));
      }
    }
  }
}

/** trits [M, K] in {-1, 0, 1} (sign of any int8) → TD3 bytes (rows past M are zero trits). */
export function packTd3(trits: Int8Array, M: number, K: number): Uint8Array {
  checkK('packTd3', K);
  if (trits.length !== M * K) throw new RangeError(`packTd3: ${trits.length} trits for M = ${M}, K = ${K}`);
  const data = new Uint8Array(td3WeightBytes(M, K));
  const trit = (m: number, k: number): number => (m < M ? Math.sign(trits[m * K + k]!) : 0);
  walk(M, K, (nib, nsh, sgn, sbit, m, k) => {
    const v = 9 * trit(m, k) + 3 * trit(m, k + 4) + trit(m, k + 8);
    data[nib]! |= Math.abs(v) << nsh;
    if (v < 0) data[sgn]! |= 1 << sbit;
  }, (off, sh, m, k) => {
    data[off]! |= (trit(m, k) + 1) << sh;
  });
  return data;
}

/** The sign-corrected decoded byte of a stored group. */
function decoded(data: Uint8Array, nib: number, nsh: number, sgn: number, sbit: number): number {
  const byte = TD3_DECODE[(data[nib]! >> nsh) & 15]!;
  return (data[sgn]! >> sbit) & 1 ? TD3_NEGATE - byte : byte;
}

/** TD3 bytes → trits [M, K]. */
export function unpackTd3(data: Uint8Array, M: number, K: number): Int8Array {
  checkK('unpackTd3', K);
  const trits = new Int8Array(M * K);
  walk(M, K, (nib, nsh, sgn, sbit, m, k) => {
    if (m >= M) return;
    const byte = decoded(data, nib, nsh, sgn, sbit);
    for (let d = 0; d < 3; d++) trits[m * K + k + 4 * d] = ((byte >> (2 * d)) & 3) - 1;
  }, (off, sh, m, k) => {
    if (m < M) trits[m * K + k] = ((data[off]! >> sh) & 3) - 1;
  });
  return trits;
}

/** T2R16 codes (see ternary.ts) → TD3 bytes, identical to packTd3 of the same trits. */
export function packTd3FromT2(codes: Uint8Array, M: number, K: number): Uint8Array {
  checkK('packTd3FromT2', K);
  const trits = new Int8Array(M * K);
  for (let m = 0; m < M; m++)
    for (let k = 0; k < K; k++) {
      const t = Math.floor(m / T2_ROWS);
      const off = (t * (K / T2_KSTEP) + Math.floor(k / T2_KSTEP)) * T2_CHUNK + 4 * (m % T2_ROWS) + (k % 4);
      const code = (codes[off]! >> (2 * Math.floor((k % T2_KSTEP) / 4))) & 3;
      trits[m * K + k] = code === 3 ? 0 : code - 1;
    }
  return packTd3(trits, M, K);
}

/** Y[b, m] per the ternary GEMM contract, computed from the codes decoded out of TD3 bytes. */
export function refTd3Gemm(w: TernaryTd3Matrix, a: QuantizedActivations): Float32Array {
  const { M, K } = w;
  checkK('refTd3Gemm', K);
  if (a.K !== K) throw new RangeError(`refTd3Gemm: activations have K = ${a.K}, weights K = ${K}`);
  if (w.data.length !== td3WeightBytes(M, K)) throw new RangeError(`refTd3Gemm: ${w.data.length} bytes, layout needs ${td3WeightBytes(M, K)}`);
  if (w.scales.length !== scaleCount(M, K, w.scaleMode))
    throw new RangeError(`refTd3Gemm: ${w.scales.length} scales, layout needs ${scaleCount(M, K, w.scaleMode)}`);
  // Codes (trit + 1) of every row, as the kernels decode them.
  const codes = new Uint8Array(M * K);
  walk(M, K, (nib, nsh, sgn, sbit, m, k) => {
    if (m >= M) return;
    const byte = decoded(w.data, nib, nsh, sgn, sbit);
    for (let d = 0; d < 3; d++) codes[m * K + k + 4 * d] = (byte >> (2 * d)) & 3;
  }, (off, sh, m, k) => {
    if (m < M) codes[m * K + k] = (w.data[off]! >> sh) & 3;
  });
  const nsb = K / SCALE_BLOCK_K;
  const bsum = w.scaleMode === ScaleMode.Block ? refBlockSums(a) : undefined;
  const y = new Float32Array(a.B * M);
  for (let m = 0; m < M; m++) {
    for (let b = 0; b < a.B; b++) {
      const qb = b * K;
      const row = m * K;
      if (w.scaleMode === ScaleMode.Block) {
        let acc = 0;
        for (let j = 0; j < nsb; j++) {
          let dot = 0;
          for (let k = j * SCALE_BLOCK_K; k < (j + 1) * SCALE_BLOCK_K; k++) dot += codes[row + k]! * a.q[qb + k]!;
          const d = w.scales[(Math.floor(m / T2_ROWS) * nsb + j) * T2_ROWS + (m % T2_ROWS)]!;
          acc = f32(acc + f32(f32(dot - bsum![b * nsb + j]!) * d));
        }
        y[b * M + m] = f32(acc / a.scale[b]!);
      } else {
        let dot = 0;
        for (let k = 0; k < K; k++) dot += codes[row + k]! * a.q[qb + k]!;
        const ws = w.scaleMode === ScaleMode.Row ? w.scales[m]! : w.scales[0]!;
        y[b * M + m] = f32(f32(f32(dot - a.sum[b]!) * ws) / a.scale[b]!);
      }
    }
  }
  return y;
}
