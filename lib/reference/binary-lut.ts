// Reference binary (±1 weight) lookup-table GEMM on float activations: the B1L64 layout and the
// contract of native/kernels/binary_lut.h in TypeScript (bit-exact with every native variant), the
// table build, the packers (from signs and from B1R16), and a float64 evaluation with the header's
// error bound for tests.
import { B1_ROWS, B1_CHUNK, B1_KSTEP } from './binary.js';
import { f32 } from './numeric.js';

export const B1L_ROWS = 64; // rows per block
export const B1L_KSTEP = 32; // columns per chunk (one dword per row)
export const B1L_CHUNK = 256; // bytes per chunk: 64 rows x 4 bytes
export const B1L_GROUP_K = 4; // columns per lookup table
export const B1L_TABLE_FLOATS = 16; // entries per table

/** Binary weights in the B1L64 layout (binary_lut.h): bit 1 = +1, bit 0 = −1. */
export interface BinaryLutMatrix {
  bits: Uint8Array; // [Mp/64, K/32, 256]
  M: number;
  K: number; // K % 32 == 0
  /** Per-row output scale [M] (OneBit h, a Q1_0 row scale), applied after the sum; none = 1. */
  rowScale?: Float32Array;
}

export const b1lBlocks = (M: number): number => Math.ceil(M / B1L_ROWS);
export const b1lBytes = (M: number, K: number): number => (b1lBlocks(M) * B1L_ROWS * K) / 8;
/** Floats of one token's tables: K/4 groups × 16 entries. */
export const b1lTableFloats = (K: number): number => (K / B1L_GROUP_K) * B1L_TABLE_FLOATS;

function checkK(fn: string, K: number, step = B1L_KSTEP): void {
  if (!Number.isInteger(K) || K < step || K % step !== 0) throw new RangeError(`${fn}: K = ${K} must be a positive multiple of ${step}`);
}

/** Byte offset of row m's dword in chunk kc. */
const rowDword = (K: number, m: number, kc: number): number =>
  (Math.floor(m / B1L_ROWS) * (K / B1L_KSTEP) + kc) * B1L_CHUNK + 4 * (m % B1L_ROWS);

/** signs [M, K] (v ≥ 0 → +1, v < 0 → −1) → B1L64 bits; rows past M are zero. */
export function packB1L(signs: Int8Array, M: number, K: number): Uint8Array {
  checkK('packB1L', K);
  const bits = new Uint8Array(b1lBytes(M, K));
  for (let m = 0; m < M; m++)
    for (let k = 0; k < K; k++)
      if (signs[m * K + k]! >= 0) bits[rowDword(K, m, k >> 5) + ((k & 31) >> 3)]! |= 1 << (k & 7);
  return bits;
}

/** B1L64 bits → signs [M, K] in {−1, +1}. */
export function unpackB1L(bits: Uint8Array, M: number, K: number): Int8Array {
  const signs = new Int8Array(M * K);
  for (let m = 0; m < M; m++)
    for (let k = 0; k < K; k++) signs[m * K + k] = (bits[rowDword(K, m, k >> 5) + ((k & 31) >> 3)]! >> (k & 7)) & 1 ? 1 : -1;
  return signs;
}

/** B1R16 bits (binary.h, K % 64 == 0) → B1L64 bits of the same signs. */
export function refB1LFromB1R16(b1r16: Uint8Array, M: number, K: number): Uint8Array {
  checkK('refB1LFromB1R16', K, B1_KSTEP);
  const bits = new Uint8Array(b1lBytes(M, K));
  for (let m = 0; m < M; m++)
    for (let kc = 0; kc < K / B1L_KSTEP; kc++) {
      const src = (Math.floor(m / B1_ROWS) * (K / B1_KSTEP) + (kc >> 1)) * B1_CHUNK + 8 * (m % B1_ROWS) + 4 * (kc & 1);
      bits.set(b1r16.subarray(src, src + 4), rowDword(K, m, kc));
    }
  return bits;
}

/**
 * Tables of B tokens of u [B, K] (K % 4 == 0): T_g[j] = ((σ0·u0 + σ1·u1) + σ2·u2) + σ3·u3 in float,
 * σ_i = bit i of j ? +1 : −1, u_i = u[4g + i]; [B, K/4, 16].
 */
export function refBinaryLutTables(u: Float32Array, B: number, K: number): Float32Array {
  checkK('refBinaryLutTables', K, B1L_GROUP_K);
  const ldt = b1lTableFloats(K);
  const t = new Float32Array(B * ldt);
  for (let b = 0; b < B; b++)
    for (let g = 0; g < K / B1L_GROUP_K; g++) {
      const x = b * K + B1L_GROUP_K * g;
      for (let j = 0; j < B1L_TABLE_FLOATS; j++) {
        const a0 = j & 1 ? u[x]! : -u[x]!;
        const a1 = j & 2 ? u[x + 1]! : -u[x + 1]!;
        const a2 = j & 4 ? u[x + 2]! : -u[x + 2]!;
        const a3 = j & 8 ? u[x + 3]! : -u[x + 3]!;
        t[b * ldt + B1L_TABLE_FLOATS * g + j] = f32(f32(f32(a0 + a1) + a2) + a3);
      }
    }
  return t;
}

/**
 * y [B, M] per binary_lut.h, bit-exact with every native variant: per (b, m) two float chains over
 * the even and the odd groups in ascending order, acc = even + odd, then acc · rowScale[m] and
 * + tokBias[b] as separate float ops.
 */
export function refBinaryLutGemm(w: BinaryLutMatrix, u: Float32Array, B: number, tokBias?: Float32Array): Float32Array {
  const { M, K } = w;
  checkK('refBinaryLutGemm', K);
  const tables = refBinaryLutTables(u, B, K);
  const ldt = b1lTableFloats(K);
  const G = K / B1L_GROUP_K;
  const nib = new Uint8Array(G);
  const y = new Float32Array(B * M);
  for (let m = 0; m < M; m++) {
    for (let kc = 0; kc < K / B1L_KSTEP; kc++) {
      const o = rowDword(K, m, kc);
      for (let i = 0; i < 4; i++) {
        nib[8 * kc + 2 * i] = w.bits[o + i]! & 15;
        nib[8 * kc + 2 * i + 1] = w.bits[o + i]! >> 4;
      }
    }
    for (let b = 0; b < B; b++) {
      const tb = b * ldt;
      let e = 0;
      let od = 0;
      for (let g = 0; g < G; g += 2) {
        e = f32(e + tables[tb + B1L_TABLE_FLOATS * g + nib[g]!]!);
        od = f32(od + tables[tb + B1L_TABLE_FLOATS * (g + 1) + nib[g + 1]!]!);
      }
      let v = f32(e + od);
      if (w.rowScale) v = f32(v * w.rowScale[m]!);
      if (tokBias) v = f32(v + tokBias[b]!);
      y[b * M + m] = v;
    }
  }
  return y;
}

/** γ(n) = n·2⁻²⁴ / (1 − n·2⁻²⁴), the float relative error after n roundings. */
export const gammaF32 = (n: number): number => (n * 2 ** -24) / (1 - n * 2 ** -24);

/**
 * The float64 value of the contract, Σ_k s(m,k)·u[b,k] (· rowScale[m]) (+ tokBias[b]), and the
 * header's bound on |y − exact| for it: γ(K/8 + 4)·|rs|·Σ|u| + 2⁻²⁴·(2·|exact·rs| + |tb|) + 2⁻¹⁴⁹.
 */
export function binaryLutExact(
  signs: Int8Array,
  M: number,
  K: number,
  u: Float32Array,
  B: number,
  rowScale?: Float32Array,
  tokBias?: Float32Array,
): { exact: Float64Array; bound: Float64Array } {
  const exact = new Float64Array(B * M);
  const bound = new Float64Array(B * M);
  const g = gammaF32(K / 8 + 4);
  for (let b = 0; b < B; b++) {
    let absSum = 0;
    for (let k = 0; k < K; k++) absSum += Math.abs(u[b * K + k]!);
    const tb = tokBias ? tokBias[b]! : 0;
    for (let m = 0; m < M; m++) {
      let s = 0;
      for (let k = 0; k < K; k++) s += signs[m * K + k]! * u[b * K + k]!;
      const rs = rowScale ? rowScale[m]! : 1;
      const p = s * rs;
      exact[b * M + m] = p + tb;
      bound[b * M + m] = g * Math.abs(rs) * absSum + 2 ** -24 * (2 * Math.abs(p) + Math.abs(tb)) + 2 ** -149;
    }
  }
  return { exact, bound };
}
