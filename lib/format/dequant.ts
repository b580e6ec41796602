// Dequantizers for the GGUF embedding / lm_head types that have no kernel layout of their own:
// Q6_K (bitnet.cpp's --quant-embd) and BF16 are widened to F32 here, then re-encoded as F16 or Q8R16
// by the loader (lib/model/weights.ts). Also a simple Q6_K encoder, for tests and fixtures.
import { floatToHalf, halfToFloat } from '../reference/numeric.js';

/** Elements per Q6_K super-block. */
export const QK_K = 256;
/** One Q6_K block: ql[128] (low 4 bits), qh[64] (high 2 bits), int8 scales[16], fp16 d (last). */
export const Q6_K_BLOCK_BYTES = 210;

const QL = 0;
const QH = 128;
const SC = 192;
const D = 208;

function outFor(fn: string, n: number, out: Float32Array | undefined): Float32Array {
  if (!out) return new Float32Array(n);
  if (out.length < n) throw new RangeError(`${fn}: out holds ${out.length} elements, ${n} needed`);
  return out;
}

/**
 * Q6_K blocks → floats, y = d * scale[e/16] * (q - 32) (as ggml's dequantize_row_q6_K; the product is
 * exact in a double, so the one rounding to float gives ggml's result). nElements % 256 == 0.
 */
export function dequantizeQ6K(src: Uint8Array, nElements: number, out?: Float32Array): Float32Array {
  if (!(Number.isInteger(nElements) && nElements >= 0 && nElements % QK_K === 0))
    throw new RangeError(`dequantizeQ6K: nElements = ${nElements} must be a multiple of ${QK_K}`);
  const nb = nElements / QK_K;
  if (src.byteLength < nb * Q6_K_BLOCK_BYTES) throw new RangeError(`dequantizeQ6K: ${src.byteLength} bytes hold fewer than ${nb} blocks`);
  const y = outFor('dequantizeQ6K', nElements, out);
  const ds = new Float64Array(16); // d * scale per 16-element sub-block (exact in a double)
  for (let b = 0; b < nb; b++) {
    const o = b * Q6_K_BLOCK_BYTES;
    const d = halfToFloat(src[o + D]! | (src[o + D + 1]! << 8));
    for (let j = 0; j < 16; j++) ds[j] = d * ((src[o + SC + j]! << 24) >> 24); // int8 sign extension
    for (let n = 0; n < 2; n++) {
      const ql = o + QL + 64 * n;
      const qh = o + QH + 32 * n;
      const yo = b * QK_K + 128 * n;
      for (let l = 0; l < 32; l++) {
        const is = 8 * n + (l >> 4);
        const lo0 = src[ql + l]!;
        const lo1 = src[ql + l + 32]!;
        const h = src[qh + l]!;
        y[yo + l] = ds[is]! * (((lo0 & 0xf) | ((h & 3) << 4)) - 32);
        y[yo + l + 32] = ds[is + 2]! * (((lo1 & 0xf) | (((h >> 2) & 3) << 4)) - 32);
        y[yo + l + 64] = ds[is + 4]! * (((lo0 >> 4) | (((h >> 4) & 3) << 4)) - 32);
        y[yo + l + 96] = ds[is + 6]! * (((lo1 >> 4) | (((h >> 6) & 3) << 4)) - 32);
      }
    }
  }
  return y;
}

/** BF16 (little-endian bytes) → floats, exact: a bf16 is the top half of the float's bits. */
export function dequantizeBF16(src: Uint8Array, nElements: number, out?: Float32Array): Float32Array {
  if (src.byteLength < nElements * 2) throw new RangeError(`dequantizeBF16: ${src.byteLength} bytes hold fewer than ${nElements} values`);
  const y = outFor('dequantizeBF16', nElements, out);
  const bits = new Uint32Array(y.buffer, y.byteOffset, nElements);
  if ((src.byteOffset & 1) === 0) {
    const h = new Uint16Array(src.buffer, src.byteOffset, nElements);
    for (let i = 0; i < nElements; i++) bits[i] = h[i]! << 16;
  } else for (let i = 0; i < nElements; i++) bits[i] = (src[2 * i]! | (src[2 * i + 1]! << 8)) << 16;
  return y;
}

/**
 * floats → IEEE half bits, round half to even (same results as floatToHalf, which handles the rare
 * zero / subnormal / overflow cases; normal values take an integer fast path). Returns how many
 * outputs are infinite or NaN, so a caller can reject values F16 cannot hold.
 */
export function floatsToHalves(src: Float32Array, dst: Uint16Array, n = src.length): number {
  if (dst.length < n || src.length < n) throw new RangeError(`floatsToHalves: ${n} values do not fit`);
  const bits = new Uint32Array(src.buffer, src.byteOffset, n);
  let bad = 0;
  for (let i = 0; i < n; i++) {
    const x = bits[i]!;
    const a = x & 0x7fffffff;
    let h: number;
    // [2^-14, 2^16): rebias the exponent (127 → 15) and round the 13 dropped bits to even; a carry
    // out of the mantissa bumps the exponent, up to infinity, exactly as RNE requires.
    if (a >= 0x38800000 && a < 0x47800000) h = ((x >>> 16) & 0x8000) | ((a - 0x38000000 + 0x0fff + ((a >>> 13) & 1)) >>> 13);
    else h = floatToHalf(src[i]!);
    if ((h & 0x7c00) === 0x7c00) bad++;
    dst[i] = h;
  }
  return bad;
}

/**
 * floats → Q6_K blocks (n % 256 == 0). Simple, not ggml's search: per 16-element sub-block the scale
 * s = amax / 31; d = fp16 of max(s) / 127, rounded up so every int8 scale ceil(s / d) fits; codes are
 * round(x / (d * scale)), so each value is within half a step d * scale of its input.
 */
export function quantizeQ6K(x: Float32Array): Uint8Array {
  if (x.length % QK_K !== 0) throw new RangeError(`quantizeQ6K: length ${x.length} must be a multiple of ${QK_K}`);
  const nb = x.length / QK_K;
  const out = new Uint8Array(nb * Q6_K_BLOCK_BYTES);
  const s = new Float64Array(16);
  const codes = new Uint8Array(QK_K);
  for (let b = 0; b < nb; b++) {
    const xo = b * QK_K;
    const o = b * Q6_K_BLOCK_BYTES;
    let smax = 0;
    for (let j = 0; j < 16; j++) {
      let amax = 0;
      for (let i = 0; i < 16; i++) amax = Math.max(amax, Math.abs(x[xo + 16 * j + i]!));
      s[j] = amax / 31;
      smax = Math.max(smax, s[j]!);
    }
    let dh = floatToHalf(smax / 127);
    if (halfToFloat(dh) * 127 < smax) dh++; // next half up (positive): keeps ceil(s / d) <= 127
    const d = halfToFloat(dh);
    out[o + D] = dh & 0xff;
    out[o + D + 1] = dh >> 8;
    for (let j = 0; j < 16; j++) {
      const sc = d > 0 ? Math.min(127, Math.ceil(s[j]! / d)) : 0;
      out[o + SC + j] = sc;
      const step = d * sc;
      for (let i = 0; i < 16; i++) {
        const q = step > 0 ? Math.max(-32, Math.min(31, Math.round(x[xo + 16 * j + i]! / step))) : 0;
        codes[16 * j + i] = q + 32;
      }
    }
    // Pack: element 128n + 32g + l keeps its low nibble in ql[64n + l + 32(g & 1)] (high nibble when
    // g >= 2) and its top two bits in qh[32n + l] at bit 2g.
    for (let n = 0; n < 2; n++)
      for (let l = 0; l < 32; l++) {
        const c = (g: number) => codes[128 * n + 32 * g + l]!;
        out[o + QL + 64 * n + l] = (c(0) & 0xf) | ((c(2) & 0xf) << 4);
        out[o + QL + 64 * n + l + 32] = (c(1) & 0xf) | ((c(3) & 0xf) << 4);
        out[o + QH + 32 * n + l] = (c(0) >> 4) | ((c(1) >> 4) << 2) | ((c(2) >> 4) << 4) | ((c(3) >> 4) << 6);
      }
  }
  return out;
}
