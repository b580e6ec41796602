// Reference BiLLM GEMM: the contract of native/kernels/billm.h in TypeScript (bit-exact with every
// native variant), on the packed planes of lib/quantize/billm.ts; and the packer of those planes into
// the kernels' BR16 tile layout (the oracle of the native packer, lib/kernels/billm.ts packBillmTiles).
import { type BillmMatrix, BILLM_BLOCK, BILLM_SCALARS, billmResidualLayout } from '../quantize/billm.js';
import type { QuantizedActivations } from './act_quant.js';
import { f32, halfToFloat } from './numeric.js';

export const BR16_ROWS = 16;

/** A BiLLM matrix in the BR16 tile layout of native/kernels/billm.h. */
export interface BillmTiles {
  data: Uint8Array; // [Mp/16, tileBytes]
  salient: Uint8Array; // [K/8]
  M: number;
  K: number;
  tileBytes: number;
  /** Byte offset of block j inside a tile, [nb + 1]. */
  blockOffsets: Int32Array;
  /** ceil(nS_j / 4) per block, [nb]. */
  residualGroups: Int32Array;
}

/** Bits per weight of a BR16 matrix as held in memory: every tile byte (padding rows included) and the salient mask. */
export function br16BitsPerWeight(t: BillmTiles): number {
  return (8 * (t.data.length + t.salient.length)) / (t.M * t.K);
}

/** Block record size: sign and group words (32 × 8 bytes each), s1 and residual words, fp16 scalars [8][16]. */
export const br16BlockBytes = (residualGroups: number): number => 768 + 16 * residualGroups;

/** Block offsets and residual group counts of the BR16 layout for a salient mask. */
export function br16Geometry(salient: Uint8Array, K: number): { blockOffsets: Int32Array; residualGroups: Int32Array; tileBytes: number } {
  const { counts } = billmResidualLayout(salient, K);
  const nb = K / BILLM_BLOCK;
  const residualGroups = Int32Array.from(counts, (c) => Math.ceil(c / 4));
  const blockOffsets = new Int32Array(nb + 1);
  for (let j = 0; j < nb; j++) blockOffsets[j + 1] = blockOffsets[j]! + br16BlockBytes(residualGroups[j]!);
  return { blockOffsets, residualGroups, tileBytes: blockOffsets[nb]! };
}

/**
 * Packs BiLLM planes into BR16 (billm.h): per 16-row tile and block, word g of the sign / group planes
 * holds bit 4r + i = (row r, column 128j + 4g + i) of the non-salient columns (0 at salient ones); the
 * s1 and residual words bit 4r + i = (row r, salient index 4g + i); then the fp16 scalars as
 * [8][16 rows]. Rows past M are zero. `alloc` provides the zero-filled bytes (e.g. weightBytes for
 * huge-page weight memory; default a JS-heap Uint8Array).
 */
export function refPackBillmTiles(w: BillmMatrix, alloc: (bytes: number) => Uint8Array = (n) => new Uint8Array(n)): BillmTiles {
  const { M, K } = w;
  const layout = billmResidualLayout(w.salient, K);
  const { blockOffsets, residualGroups, tileBytes } = br16Geometry(w.salient, K);
  const nb = K / BILLM_BLOCK;
  const rowBytes = K / 8;
  const tiles = Math.ceil(M / BR16_ROWS);
  const data = alloc(tiles * tileBytes);
  if (data.length !== tiles * tileBytes) throw new RangeError(`refPackBillmTiles: alloc returned ${data.length} bytes, ${tiles * tileBytes} needed`);
  data.fill(0);
  const setBit = (byteOffset: number, bitIndex: number): void => {
    data[byteOffset + (bitIndex >> 3)]! |= 1 << (bitIndex & 7);
  };
  for (let m = 0; m < M; m++) {
    const t = Math.floor(m / BR16_ROWS), r = m % BR16_ROWS;
    for (let j = 0; j < nb; j++) {
      const rec = t * tileBytes + blockOffsets[j]!;
      let si = 0; // index among the block's salient columns
      for (let c = 0; c < BILLM_BLOCK; c++) {
        const k = j * BILLM_BLOCK + c;
        if (bitAt(w.salient, 0, k)) {
          if (bitAt(w.signs, m * rowBytes, k)) setBit(rec + 512 + 8 * (si >> 2), 4 * r + (si & 3));
          si++;
          continue;
        }
        const g = c >> 2, bitIndex = 4 * r + (c & 3);
        if (bitAt(w.signs, m * rowBytes, k)) setBit(rec + 8 * g, bitIndex);
        if (bitAt(w.groups, m * rowBytes, k)) setBit(rec + 256 + 8 * g, bitIndex);
      }
      const ng = residualGroups[j]!;
      const rbase = m * layout.stride + layout.offsets[j]!;
      for (let i = 0; i < layout.counts[j]!; i++) if (bitAt(w.residual, rbase, i)) setBit(rec + 512 + 8 * (ng + (i >> 2)), 4 * r + (i & 3));
      const sc = rec + 512 + 16 * ng;
      for (let l = 0; l < BILLM_SCALARS; l++) {
        const h = w.scalars[(m * nb + j) * BILLM_SCALARS + l]!;
        data[sc + 2 * (l * BR16_ROWS + r)] = h & 0xff;
        data[sc + 2 * (l * BR16_ROWS + r) + 1] = h >> 8;
      }
    }
  }
  return { data, salient: w.salient, M, K, tileBytes, blockOffsets, residualGroups };
}

const bitAt = (plane: Uint8Array, base: number, k: number): number => (plane[base + (k >> 3)]! >> (k & 7)) & 1;

/**
 * Y [B, M] for packed BiLLM weights and int8 activations (billm.h): per row and block the integer
 * masked sums (T, GB, PB over the non-salient columns, PS, PR over the salient ones), the 8 products
 * n[l]·f[l] folded 8 → 4 → 2 → 1, accumulated over blocks in order in float32, divided by the token's
 * scale. Equal, bit for bit, to billm_gemm on refPackBillmTiles (or the native packBillmTiles) of the same planes, whatever their bits.
 */
export function refBillmGemm(w: BillmMatrix, a: QuantizedActivations): Float32Array {
  const { M, K } = w;
  if (a.K !== K) throw new RangeError(`refBillmGemm: activations have K = ${a.K}, weights K = ${K}`);
  const layout = billmResidualLayout(w.salient, K);
  const nb = K / BILLM_BLOCK;
  const rowBytes = K / 8;
  const y = new Float32Array(a.B * M);
  // Per token and block: compacted salient codes, Σ over S, Σ over the block.
  const qs = new Int8Array(a.B * K);
  const ssum = new Int32Array(a.B * nb);
  const bsum = new Int32Array(a.B * nb);
  for (let b = 0; b < a.B; b++)
    for (let j = 0; j < nb; j++) {
      let n = 0;
      for (let c = 0; c < BILLM_BLOCK; c++) {
        const k = j * BILLM_BLOCK + c;
        const v = a.q[b * K + k]!;
        bsum[b * nb + j] += v;
        if (bitAt(w.salient, 0, k)) {
          qs[(b * nb + j) * BILLM_BLOCK + n++] = v;
          ssum[b * nb + j] += v;
        }
      }
    }
  const nv = new Int32Array(BILLM_SCALARS);
  const p = new Float64Array(BILLM_SCALARS);
  for (let m = 0; m < M; m++) {
    const rb = m * rowBytes;
    for (let b = 0; b < a.B; b++) {
      let acc = 0;
      for (let j = 0; j < nb; j++) {
        let ps = 0, pb = 0, gb = 0, t = 0, pr = 0;
        for (let c = 0; c < BILLM_BLOCK; c++) {
          const k = j * BILLM_BLOCK + c;
          const q = a.q[b * K + k]!;
          const s = bitAt(w.signs, rb, k), g = bitAt(w.groups, rb, k);
          if (bitAt(w.salient, 0, k)) {
            if (s) ps += q;
            continue;
          }
          if (s) t += q;
          if (g) gb += q;
          if (s && g) pb += q;
        }
        const rbase = m * layout.stride + layout.offsets[j]!;
        const rbits = 8 * (layout.offsets[j + 1]! - layout.offsets[j]!);
        for (let i = 0; i < rbits; i++) if (bitAt(w.residual, rbase, i)) pr += qs[(b * nb + j) * BILLM_BLOCK + i]!;
        const ss = ssum[b * nb + j]!, qsum = bsum[b * nb + j]!;
        const pa = t - pb, na = qsum - ss - gb;
        nv.set([2 * ps - ss, 2 * pr - ss, ss, ss, 2 * pa - na, na, 2 * pb - gb, gb]);
        for (let l = 0; l < BILLM_SCALARS; l++) p[l] = f32(nv[l]! * halfToFloat(w.scalars[(m * nb + j) * BILLM_SCALARS + l]!));
        for (let l = 0; l < 4; l++) p[l] = f32(p[l]! + p[l + 4]!);
        for (let l = 0; l < 2; l++) p[l] = f32(p[l]! + p[l + 2]!);
        acc = f32(acc + f32(p[0]! + p[1]!));
      }
      y[b * M + m] = f32(acc / a.scale[b]!);
    }
  }
  return y;
}
