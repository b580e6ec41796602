// Reference ternary GEMM on the T2R16 layout: the contract of native/kernels/ternary_i2.h.
import type { QuantizedActivations } from './act_quant.js';
import { refBlockSums } from './act_quant.js';
import { f32 } from './numeric.js';

export const T2_ROWS = 16;
export const T2_KSTEP = 16;
export const T2_CHUNK = 64;
export const SCALE_BLOCK_K = 256;

export enum ScaleMode {
  Tensor = 0,
  Row = 1,
  Block = 2,
}

/** Ternary weights in the internal T2R16 layout (DESIGN.md §3.2). */
export interface TernaryMatrix {
  codes: Uint8Array; // [Mp/16, K/16, 64]
  /** Tensor: [1]; Row: [Mp]; Block: [Mp/16, K/256, 16]. */
  scales: Float32Array;
  M: number;
  K: number;
  scaleMode: ScaleMode;
}

export const t2Tiles = (M: number): number => Math.ceil(M / T2_ROWS);
export const t2CodeBytes = (M: number, K: number): number => t2Tiles(M) * T2_ROWS * (K / 4);

export function scaleCount(M: number, K: number, mode: ScaleMode): number {
  if (mode === ScaleMode.Tensor) return 1;
  if (mode === ScaleMode.Row) return t2Tiles(M) * T2_ROWS;
  return t2Tiles(M) * (K / SCALE_BLOCK_K) * T2_ROWS;
}

/** Byte offset and shift of code (m, k) inside T2R16 codes. */
function codeAt(K: number, m: number, k: number): [number, number] {
  const t = Math.floor(m / T2_ROWS);
  const r = m % T2_ROWS;
  const kc = Math.floor(k / T2_KSTEP);
  const l = Math.floor((k % T2_KSTEP) / 4);
  const i = k % 4;
  return [(t * (K / T2_KSTEP) + kc) * T2_CHUNK + 4 * r + i, 2 * l];
}

/** trits [M, K] in {-1,0,1} → T2R16 codes (rows past M padded with code 1). */
export function packT2(trits: Int8Array, M: number, K: number): Uint8Array {
  if (K % T2_KSTEP !== 0) throw new RangeError(`packT2: K = ${K} must be a multiple of 16`);
  const codes = new Uint8Array(t2CodeBytes(M, K));
  const Mp = t2Tiles(M) * T2_ROWS;
  for (let m = 0; m < Mp; m++)
    for (let k = 0; k < K; k++) {
      const v = m < M ? Math.sign(trits[m * K + k]!) + 1 : 1;
      const [off, sh] = codeAt(K, m, k);
      codes[off]! |= v << sh;
    }
  return codes;
}

/** T2R16 codes → trits [M, K]. */
export function unpackT2(codes: Uint8Array, M: number, K: number): Int8Array {
  const trits = new Int8Array(M * K);
  for (let m = 0; m < M; m++)
    for (let k = 0; k < K; k++) {
      const [off, sh] = codeAt(K, m, k);
      trits[m * K + k] = ((codes[off]! >> sh) & 3) - 1;
    }
  return trits;
}

/** Y[b, m] per the contract (bit-exact with every native variant). */
export function refTernaryGemm(w: TernaryMatrix, a: QuantizedActivations): Float32Array {
  const { M, K } = w;
  const y = new Float32Array(a.B * M);
  const nb = K / SCALE_BLOCK_K;
  const bsum = w.scaleMode === ScaleMode.Block ? refBlockSums(a) : undefined;
  const row = new Int8Array(K);
  const kchunks = K / T2_KSTEP;
  for (let m = 0; m < M; m++) {
    const t = Math.floor(m / T2_ROWS);
    const r = m % T2_ROWS;
    for (let kc = 0; kc < kchunks; kc++) {
      const base = (t * kchunks + kc) * T2_CHUNK + 4 * r;
      for (let l = 0; l < 4; l++)
        for (let i = 0; i < 4; i++) row[kc * T2_KSTEP + 4 * l + i] = (w.codes[base + i]! >> (2 * l)) & 3;
    }
    for (let b = 0; b < a.B; b++) {
      const base = b * K;
      if (w.scaleMode === ScaleMode.Block) {
        let acc = 0;
        for (let j = 0; j < nb; j++) {
          let dot = 0;
          for (let k = j * SCALE_BLOCK_K; k < (j + 1) * SCALE_BLOCK_K; k++) dot += row[k]! * a.q[base + k]!;
          const d = w.scales[(t * nb + j) * T2_ROWS + r]!;
          acc = f32(acc + f32(f32(dot - bsum![b * nb + j]!) * d));
        }
        y[b * M + m] = f32(acc / a.scale[b]!);
      } else {
        let dot = 0;
        for (let k = 0; k < K; k++) dot += row[k]! * a.q[base + k]!;
        const ws = w.scaleMode === ScaleMode.Row ? w.scales[m]! : w.scales[0]!;
        y[b * M + m] = f32(f32(f32(dot - a.sum[b]!) * ws) / a.scale[b]!);
      }
    }
  }
  return y;
}
