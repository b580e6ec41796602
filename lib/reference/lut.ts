// Reference TL3 lookup-table ternary GEMM: the layout and contract of native/kernels/ternary_lut.h
// in TypeScript (docs/kernels-lut.md). Results are bit-exact with refTernaryGemm for the same trits
// and scales: the integer dots are exact and the float epilogue is the same sequence of float32 ops.
import type { QuantizedActivations } from './act_quant.js';
import { f32 } from './numeric.js';
import { SCALE_BLOCK_K, ScaleMode, T2_CHUNK, T2_KSTEP, T2_ROWS, scaleCount } from './ternary.js';

export const LUT_ROWS = 64; // output rows per tile
export const LUT_GROUP_K = 3; // trits per group
export const LUT_BLOCK_GROUPS = 86; // groups per full 256-column block (85 triples + 1 single)
export const LUT_UNIT_GROUPS = 8; // groups per 320-byte unit
export const LUT_UNIT_BYTES = 320; // 64 sign bytes + 4 nibble pairs of 64 bytes
export const LUT_TABLE_BYTES = 64; // table bytes per group and token
export const LUT_FLUSH_GROUPS = 40; // native int16 accumulators are widened every 40 groups

/** Balanced ternary digits (d0, d1, d2) of table index m = 9·d0 + 3·d1 + d2 (rows 14, 15 are zero). */
export const LUT_DIGITS: ReadonlyArray<readonly [number, number, number]> = [
  [0, 0, 0], [0, 0, 1], [0, 1, -1], [0, 1, 0], [0, 1, 1], [1, -1, -1], [1, -1, 0], [1, -1, 1],
  [1, 0, -1], [1, 0, 0], [1, 0, 1], [1, 1, -1], [1, 1, 0], [1, 1, 1], [0, 0, 0], [0, 0, 0],
];

/** Ternary weights in the internal TL3 layout; scales use the T2R16 scale layout. */
export interface TernaryLutMatrix {
  data: Uint8Array; // [lutWeightBytes(M, K)]
  /** Tensor: [1]; Row: [Mp16]; Block: [Mp16/16, K/256, 16] (as TernaryMatrix). */
  scales: Float32Array;
  M: number;
  K: number;
  scaleMode: ScaleMode;
}

export const lutTiles = (M: number): number => Math.ceil(M / LUT_ROWS);
export const lutBlocks = (K: number): number => Math.ceil(K / SCALE_BLOCK_K);

/** Groups of block j: 86 for a full block, ceil(r/3) rounded up to even for an r-column tail. */
export function lutBlockGroups(K: number, j: number): number {
  const r = K - j * SCALE_BLOCK_K;
  if (r >= SCALE_BLOCK_K) return LUT_BLOCK_GROUPS;
  const g = Math.ceil(r / LUT_GROUP_K);
  return g + (g & 1);
}

export function lutRecordBytes(ng: number): number {
  const rem = ng % LUT_UNIT_GROUPS;
  return Math.floor(ng / LUT_UNIT_GROUPS) * LUT_UNIT_BYTES + (rem ? 64 + (rem / 2) * 64 : 0);
}

/** Offset of group g's 8 sign bytes inside its record. */
export const lutSignOffset = (g: number): number => Math.floor(g / LUT_UNIT_GROUPS) * LUT_UNIT_BYTES + (g % LUT_UNIT_GROUPS) * 8;
/** Offset of the 64-byte nibble pair holding group g (low nibbles for even g, high for odd). */
export const lutNibbleOffset = (g: number): number =>
  Math.floor(g / LUT_UNIT_GROUPS) * LUT_UNIT_BYTES + 64 + Math.floor((g % LUT_UNIT_GROUPS) / 2) * 64;
/** Nibble byte of row r (0..63) inside a pair, and the row held by byte p (16-bit word i = rows i, 32+i). */
export const lutRowByte = (r: number): number => 2 * (r & 31) + (r >> 5);
export const lutByteRow = (p: number): number => (p >> 1) + 32 * (p & 1);

/** Byte offset of record (block j, tile t): block-major, full blocks first. */
export function lutRecordOffset(M: number, K: number, j: number, t: number): number {
  return j * lutTiles(M) * lutRecordBytes(LUT_BLOCK_GROUPS) + t * lutRecordBytes(lutBlockGroups(K, j));
}

export function lutGroups(K: number): number {
  const nb = lutBlocks(K);
  return nb === 0 ? 0 : (nb - 1) * LUT_BLOCK_GROUPS + lutBlockGroups(K, nb - 1);
}
export const lutTableBytes = (K: number): number => lutGroups(K) * LUT_TABLE_BYTES;

export function lutWeightBytes(M: number, K: number): number {
  const nb = lutBlocks(K);
  return nb === 0 ? 0 : lutRecordOffset(M, K, nb - 1, 0) + lutTiles(M) * lutRecordBytes(lutBlockGroups(K, nb - 1));
}

/** trits [M, K] in {-1, 0, 1} (sign of any int8) → TL3 bytes. */
export function packLut(trits: Int8Array, M: number, K: number): Uint8Array {
  if (trits.length !== M * K) throw new RangeError(`packLut: ${trits.length} trits for M = ${M}, K = ${K}`);
  const data = new Uint8Array(lutWeightBytes(M, K));
  const nb = lutBlocks(K);
  for (let j = 0; j < nb; j++) {
    const ng = lutBlockGroups(K, j);
    const kend = Math.min(K, (j + 1) * SCALE_BLOCK_K);
    for (let t = 0; t < lutTiles(M); t++) {
      const rec = lutRecordOffset(M, K, j, t);
      for (let g = 0; g < ng; g++) {
        const k0 = j * SCALE_BLOCK_K + LUT_GROUP_K * g;
        for (let r = 0; r < LUT_ROWS; r++) {
          const m = t * LUT_ROWS + r;
          let v = 0;
          for (let d = 0; d < LUT_GROUP_K; d++) {
            const k = k0 + d;
            v = 3 * v + (m < M && k < kend ? Math.sign(trits[m * K + k]!) : 0);
          }
          data[rec + lutNibbleOffset(g & ~1) + lutRowByte(r)]! |= Math.abs(v) << (4 * (g & 1));
          if (v < 0) data[rec + lutSignOffset(g) + (r >> 3)]! |= 1 << (r & 7);
        }
      }
    }
  }
  return data;
}

/** Signed group value v of (row r of tile t, group g of block j) from TL3 bytes. */
function groupValue(data: Uint8Array, rec: number, g: number, r: number): number {
  const mag = (data[rec + lutNibbleOffset(g & ~1) + lutRowByte(r)]! >> (4 * (g & 1))) & 15;
  return (data[rec + lutSignOffset(g) + (r >> 3)]! >> (r & 7)) & 1 ? -mag : mag;
}

/** TL3 bytes → trits [M, K]. */
export function unpackLut(data: Uint8Array, M: number, K: number): Int8Array {
  const trits = new Int8Array(M * K);
  for (let m = 0; m < M; m++) {
    const t = Math.floor(m / LUT_ROWS);
    const r = m % LUT_ROWS;
    for (let j = 0; j < lutBlocks(K); j++) {
      const rec = lutRecordOffset(M, K, j, t);
      const kend = Math.min(K, (j + 1) * SCALE_BLOCK_K);
      for (let g = 0; g < lutBlockGroups(K, j); g++) {
        let v = groupValue(data, rec, g, r);
        // Balanced ternary digits, least significant (the group's third trit) first.
        for (let d = LUT_GROUP_K - 1; d >= 0; d--) {
          let rem = ((v % 3) + 3) % 3;
          if (rem === 2) rem = -1;
          v = (v - rem) / 3;
          const k = j * SCALE_BLOCK_K + LUT_GROUP_K * g + d;
          if (k < kend) trits[m * K + k] = rem;
        }
      }
    }
  }
  return trits;
}

/** T2R16 codes (see ternary.ts) → TL3 bytes, identical to packLut of the same trits. */
export function packLutFromT2(codes: Uint8Array, M: number, K: number): Uint8Array {
  if (K % T2_KSTEP !== 0) throw new RangeError(`packLutFromT2: K = ${K} must be a multiple of 16`);
  const trits = new Int8Array(M * K);
  for (let m = 0; m < M; m++)
    for (let k = 0; k < K; k++) {
      const t = Math.floor(m / T2_ROWS);
      const off = (t * (K / T2_KSTEP) + Math.floor(k / T2_KSTEP)) * T2_CHUNK + 4 * (m % T2_ROWS) + (k % 4);
      const code = (codes[off]! >> (2 * Math.floor((k % T2_KSTEP) / 4))) & 3;
      trits[m * K + k] = code === 3 ? 0 : code - 1;
    }
  return packLut(trits, M, K);
}

/**
 * Activation tables [B, lutTableBytes(K)]: per group 64 bytes, low bytes of +T[m] (0..15) and -T[m]
 * (16..31), high bytes of +T[m] (32..47) and -T[m] (48..63), T[m] = Σ_d digit_d(m) · q[k0 + d].
 */
export function refLutBuildTables(a: QuantizedActivations): Uint8Array {
  const { B, K } = a;
  const tb = lutTableBytes(K);
  const out = new Uint8Array(B * tb);
  for (let b = 0; b < B; b++) {
    for (let j = 0; j < lutBlocks(K); j++) {
      const kend = Math.min(K, (j + 1) * SCALE_BLOCK_K);
      for (let g = 0; g < lutBlockGroups(K, j); g++) {
        const x = [0, 1, 2].map((d) => {
          const k = j * SCALE_BLOCK_K + LUT_GROUP_K * g + d;
          return k < kend ? a.q[b * K + k]! : 0;
        });
        const e = b * tb + (j * LUT_BLOCK_GROUPS + g) * LUT_TABLE_BYTES;
        for (let m = 0; m < 16; m++) {
          const [d0, d1, d2] = LUT_DIGITS[m]!;
          const v = d0 * x[0]! + d1 * x[1]! + d2 * x[2]!;
          const p = v & 0xffff;
          const n = -v & 0xffff;
          out[e + m] = p & 0xff;
          out[e + 16 + m] = n & 0xff;
          out[e + 32 + m] = p >> 8;
          out[e + 48 + m] = n >> 8;
        }
      }
    }
  }
  return out;
}

/** The int16 table entry ±T[mag] for a signed group value v, read from built tables. */
function lookup(tables: Uint8Array, e: number, v: number): number {
  const m = Math.abs(v);
  const t = ((tables[e + m]! | (tables[e + 32 + m]! << 8)) << 16) >> 16;
  return v < 0 ? -t : t;
}

/** Y[b, m] per the ternary GEMM contract, computed by table lookups on TL3 bytes. */
export function refLutGemm(w: TernaryLutMatrix, a: QuantizedActivations): Float32Array {
  const { M, K } = w;
  if (a.K !== K) throw new RangeError(`refLutGemm: activations have K = ${a.K}, weights K = ${K}`);
  if (w.scales.length !== scaleCount(M, K, w.scaleMode))
    throw new RangeError(`refLutGemm: ${w.scales.length} scales, layout needs ${scaleCount(M, K, w.scaleMode)}`);
  const tables = refLutBuildTables(a);
  const tb = lutTableBytes(K);
  const nb = lutBlocks(K);
  const nsb = K / SCALE_BLOCK_K;
  const y = new Float32Array(a.B * M);
  for (let m = 0; m < M; m++) {
    const t = Math.floor(m / LUT_ROWS);
    const r = m % LUT_ROWS;
    for (let b = 0; b < a.B; b++) {
      let total = 0;
      let acc = 0;
      for (let j = 0; j < nb; j++) {
        const rec = lutRecordOffset(M, K, j, t);
        let dot = 0;
        for (let g = 0; g < lutBlockGroups(K, j); g++)
          dot += lookup(tables, b * tb + (j * LUT_BLOCK_GROUPS + g) * LUT_TABLE_BYTES, groupValue(w.data, rec, g, r));
        if (w.scaleMode === ScaleMode.Block) {
          const d = w.scales[(Math.floor(m / T2_ROWS) * nsb + j) * T2_ROWS + (m % T2_ROWS)]!;
          acc = f32(acc + f32(f32(dot) * d));
        } else {
          total += dot;
        }
      }
      if (w.scaleMode === ScaleMode.Block) {
        y[b * M + m] = f32(acc / a.scale[b]!);
      } else {
        const ws = w.scaleMode === ScaleMode.Row ? w.scales[m]! : w.scales[0]!;
        y[b * M + m] = f32(f32(f32(total) * ws) / a.scale[b]!);
      }
    }
  }
  return y;
}
