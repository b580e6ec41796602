// Reference column-sparse ternary GEMM on the TS256 layout: the contract of native/kernels/ternary_sparse.h.
import type { QuantizedActivations } from './act_quant.js';
import { f32 } from './numeric.js';
import { ScaleMode, scaleCount } from './ternary.js';

export const TS_ROWS = 256;
export const TS_LINE = 64;
/** Largest K of the layout (the native kernels' scaled int32 dots stay exact below it). */
export const TS_MAX_K = 65536;

/** Ternary weights in the column-sparse TS256 layout; scales as T2R16 (tensor [1] or row [round_up(M, 16)]). */
export interface TernarySparseMatrix {
  data: Uint8Array; // [K, ceil(M/256), 64]: column k is one run of ceil(M/256)·64 bytes
  scales: Float32Array;
  M: number;
  K: number;
  scaleMode: ScaleMode.Tensor | ScaleMode.Row;
}

export const tsBlocks = (M: number): number => Math.ceil(M / TS_ROWS);
export const tsWeightBytes = (M: number, K: number): number => tsBlocks(M) * K * TS_LINE;

/** Row (inside its 256-row block) of byte p, bit pair l of a column line. */
export const tsRow = (p: number, l: number): number => 64 * ((p >> 2) & 3) + 16 * l + 4 * (p >> 4) + (p & 3);

/** trits [M, K] in {-1, 0, 1} → TS256 bytes (rows past M are code 1, a zero trit). */
export function refPackTernarySparse(trits: Int8Array, M: number, K: number): Uint8Array {
  const data = new Uint8Array(tsWeightBytes(M, K));
  for (let blk = 0; blk < tsBlocks(M); blk++)
    for (let k = 0; k < K; k++)
      for (let p = 0; p < TS_LINE; p++) {
        let v = 0;
        for (let l = 0; l < 4; l++) {
          const m = blk * TS_ROWS + tsRow(p, l);
          const code = m < M ? Math.sign(trits[m * K + k]!) + 1 : 1;
          v |= code << (2 * l);
        }
        data[(k * tsBlocks(M) + blk) * TS_LINE + p] = v;
      }
  return data;
}

/**
 * Y[b, m] per the contract: dot = Σ over the non-zero q[b, k] of code[m, k]·q[b, k] (code = trit + 1),
 * y = ((float)(dot − Σq) · ws) / s — the same integer and float ops as refTernaryGemm, bit-exact.
 */
export function refTernarySparseGemm(w: TernarySparseMatrix, a: QuantizedActivations): Float32Array {
  const { M, K } = w;
  if (w.scales.length !== scaleCount(M, K, w.scaleMode)) throw new RangeError('refTernarySparseGemm: scales length');
  const y = new Float32Array(a.B * M);
  const dots = new Int32Array(tsBlocks(M) * TS_ROWS);
  for (let b = 0; b < a.B; b++) {
    dots.fill(0);
    for (let k = 0; k < K; k++) {
      const q = a.q[b * K + k]!;
      if (q === 0) continue;
      for (let blk = 0; blk < tsBlocks(M); blk++) {
        const line = (k * tsBlocks(M) + blk) * TS_LINE;
        for (let p = 0; p < TS_LINE; p++) {
          const v = w.data[line + p]!;
          for (let l = 0; l < 4; l++) dots[blk * TS_ROWS + tsRow(p, l)]! += ((v >> (2 * l)) & 3) * q;
        }
      }
    }
    for (let m = 0; m < M; m++) {
      const ws = w.scaleMode === ScaleMode.Row ? w.scales[m]! : w.scales[0]!;
      y[b * M + m] = f32(f32(f32(dots[m]! - a.sum[b]!) * ws) / a.scale[b]!);
    }
  }
  return y;
}
