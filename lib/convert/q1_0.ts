// Upstream ggml Q1_0 (type id 41, formats.md §3.5): per 128 consecutive elements of a row,
// { ggml_half d; uint8_t qs[16] } = 18 bytes; bit i of qs[j] (LSB first) is element 8j + i;
// bit 1 → +d, bit 0 → −d. The binary families store sign(W) here (docs/DESIGN.md §8).
import { floatToHalf, halfToFloat } from '../reference/numeric.js';

export const QK1_0 = 128;
export const Q1_0_BLOCK_BYTES = 18;

export const q1_0Bytes = (M: number, K: number): number => M * (K / QK1_0) * Q1_0_BLOCK_BYTES;

/** signs [M, K] in {−1, +1} (row-major) + per-block scales [M, K/128] (stored as fp16) → Q1_0. */
export function encodeQ1_0(signs: Int8Array, M: number, K: number, blockScales: Float32Array | number): Uint8Array {
  if (K % QK1_0 !== 0) throw new RangeError(`encodeQ1_0: K = ${K} is not a multiple of ${QK1_0}`);
  if (signs.length !== M * K) throw new RangeError(`encodeQ1_0: ${signs.length} signs for ${M} x ${K}`);
  const nb = K / QK1_0;
  const out = new Uint8Array(q1_0Bytes(M, K));
  const dv = new DataView(out.buffer, out.byteOffset);
  for (let m = 0; m < M; m++)
    for (let j = 0; j < nb; j++) {
      const base = (m * nb + j) * Q1_0_BLOCK_BYTES;
      const d = typeof blockScales === 'number' ? blockScales : blockScales[m * nb + j]!;
      dv.setUint16(base, floatToHalf(d), true);
      for (let e = 0; e < QK1_0; e++) {
        const s = signs[m * K + j * QK1_0 + e]!;
        if (s !== 1 && s !== -1) throw new RangeError(`encodeQ1_0: element (${m}, ${j * QK1_0 + e}) is ${s}, not ±1`);
        if (s > 0) out[base + 2 + (e >> 3)]! |= 1 << (e & 7);
      }
    }
  return out;
}

export function decodeQ1_0(src: Uint8Array, M: number, K: number): { signs: Int8Array; blockScales: Float32Array } {
  const nb = K / QK1_0;
  const signs = new Int8Array(M * K);
  const blockScales = new Float32Array(M * nb);
  const dv = new DataView(src.buffer, src.byteOffset);
  for (let m = 0; m < M; m++)
    for (let j = 0; j < nb; j++) {
      const base = (m * nb + j) * Q1_0_BLOCK_BYTES;
      blockScales[m * nb + j] = halfToFloat(dv.getUint16(base, true));
      for (let e = 0; e < QK1_0; e++) signs[m * K + j * QK1_0 + e] = (src[base + 2 + (e >> 3)]! >> (e & 7)) & 1 ? 1 : -1;
    }
  return { signs, blockScales };
}
