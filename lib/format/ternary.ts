// Codecs of the ternary tensor layouts found in GGUF files (formats.md §1.3, §3.1-3.2): I2_S
// (bitnet.cpp), TQ2_0 and TQ1_0 (llama.cpp). Encoders write files (synthetic models, tests);
// decoders are the reference the native repackers are tested against.
import { floatToHalf, halfToFloat } from '../reference/numeric.js';

export const TQ2_BLOCK_BYTES = 66;
export const TQ1_BLOCK_BYTES = 54;
export const QK_K = 256;

/** I2_S bytes: M*K/4 codes + a 32-byte tail whose first 4 bytes are the fp32 tensor scale. */
export const i2sBytes = (M: number, K: number): number => (M * K) / 4 + 32;
export const tq2Bytes = (M: number, K: number): number => M * (K / QK_K) * TQ2_BLOCK_BYTES;
export const tq1Bytes = (M: number, K: number): number => M * (K / QK_K) * TQ1_BLOCK_BYTES;

/** trits [M, K] → I2_S: per 128 flattened elements 32 bytes, byte j = e_j<<6 | e_{j+32}<<4 | e_{j+64}<<2 | e_{j+96}. */
export function encodeI2S(trits: Int8Array, M: number, K: number, scale: number): Uint8Array {
  if ((M * K) % 128 !== 0) throw new RangeError(`encodeI2S: M*K = ${M * K} is not a multiple of 128`);
  const out = new Uint8Array(i2sBytes(M, K));
  for (let e = 0; e < M * K; e++) {
    const j = e % 128;
    out[Math.floor(e / 128) * 32 + (j % 32)]! |= (trits[e]! + 1) << (6 - 2 * Math.floor(j / 32));
  }
  new DataView(out.buffer, out.byteOffset).setFloat32((M * K) / 4, scale, true);
  return out;
}

export function decodeI2S(src: Uint8Array, M: number, K: number): { trits: Int8Array; scale: number } {
  const trits = new Int8Array(M * K);
  for (let e = 0; e < M * K; e++) {
    const j = e % 128;
    const v = (src[Math.floor(e / 128) * 32 + (j % 32)]! >> (6 - 2 * Math.floor(j / 32))) & 3;
    trits[e] = v === 3 ? 0 : v - 1;
  }
  const scale = new DataView(src.buffer, src.byteOffset).getFloat32((M * K) / 4, true);
  return { trits, scale };
}

/** trits [M, K] + per-block scales [M, K/256] (stored as fp16) → TQ2_0 blocks {qs[64], d}. */
export function encodeTQ2(trits: Int8Array, M: number, K: number, blockScales: Float32Array): Uint8Array {
  const nb = K / QK_K;
  const out = new Uint8Array(tq2Bytes(M, K));
  const dv = new DataView(out.buffer, out.byteOffset);
  for (let m = 0; m < M; m++)
    for (let j = 0; j < nb; j++) {
      const base = (m * nb + j) * TQ2_BLOCK_BYTES;
      for (let e = 0; e < QK_K; e++) {
        const half = Math.floor(e / 128);
        const mm = e % 128;
        out[base + half * 32 + (mm % 32)]! |= (trits[m * K + j * QK_K + e]! + 1) << (2 * Math.floor(mm / 32));
      }
      dv.setUint16(base + 64, floatToHalf(blockScales[m * nb + j]!), true);
    }
  return out;
}

export function decodeTQ2(src: Uint8Array, M: number, K: number): { trits: Int8Array; blockScales: Float32Array } {
  const nb = K / QK_K;
  const trits = new Int8Array(M * K);
  const blockScales = new Float32Array(M * nb);
  const dv = new DataView(src.buffer, src.byteOffset);
  for (let m = 0; m < M; m++)
    for (let j = 0; j < nb; j++) {
      const base = (m * nb + j) * TQ2_BLOCK_BYTES;
      for (let e = 0; e < QK_K; e++) {
        const half = Math.floor(e / 128);
        const mm = e % 128;
        trits[m * K + j * QK_K + e] = ((src[base + half * 32 + (mm % 32)]! >> (2 * Math.floor(mm / 32))) & 3) - 1;
      }
      blockScales[m * nb + j] = halfToFloat(dv.getUint16(base + 64, true));
    }
  return { trits, blockScales };
}

/** Byte index inside a TQ1_0 block and base-3 digit position (0 = most significant) of element e. */
function tq1Place(e: number): [number, number] {
  if (e < 160) return [e % 32, Math.floor(e / 32)];
  if (e < 240) return [32 + ((e - 160) % 16), Math.floor((e - 160) / 16)];
  return [48 + ((e - 240) % 4), Math.floor((e - 240) / 4)];
}

const POW3 = [1, 3, 9, 27, 81, 243];

/** trits [M, K] + per-block scales → TQ1_0 blocks {qs[48], qh[4], d}: 5 (or 4) trits per byte. */
export function encodeTQ1(trits: Int8Array, M: number, K: number, blockScales: Float32Array): Uint8Array {
  const nb = K / QK_K;
  const out = new Uint8Array(tq1Bytes(M, K));
  const dv = new DataView(out.buffer, out.byteOffset);
  const acc = new Uint16Array(52);
  for (let m = 0; m < M; m++)
    for (let j = 0; j < nb; j++) {
      acc.fill(0);
      for (let e = 0; e < QK_K; e++) {
        const [byte, n] = tq1Place(e);
        const digits = byte < 48 ? 5 : 4;
        acc[byte]! += (trits[m * K + j * QK_K + e]! + 1) * POW3[digits - 1 - n]!;
      }
      const base = (m * nb + j) * TQ1_BLOCK_BYTES;
      for (let i = 0; i < 52; i++) {
        const q = i < 48 ? acc[i]! : acc[i]! * 3; // 4-trit bytes get an extra *3: digits on top
        out[base + i] = Math.floor((q * 256 + 242) / 243);
      }
      dv.setUint16(base + 52, floatToHalf(blockScales[m * nb + j]!), true);
    }
  return out;
}

export function decodeTQ1(src: Uint8Array, M: number, K: number): { trits: Int8Array; blockScales: Float32Array } {
  const nb = K / QK_K;
  const trits = new Int8Array(M * K);
  const blockScales = new Float32Array(M * nb);
  const dv = new DataView(src.buffer, src.byteOffset);
  for (let m = 0; m < M; m++)
    for (let j = 0; j < nb; j++) {
      const base = (m * nb + j) * TQ1_BLOCK_BYTES;
      for (let e = 0; e < QK_K; e++) {
        const [byte, n] = tq1Place(e);
        const p = (src[base + byte]! * POW3[n]!) & 0xff;
        trits[m * K + j * QK_K + e] = ((p * 3) >> 8) - 1;
      }
      blockScales[m * nb + j] = halfToFloat(dv.getUint16(base + 52, true));
    }
  return { trits, blockScales };
}
