// The ggml tensor type table, interpreted together with general.architecture: bitnet.cpp's fork
// reuses ids 36-39 (I2_S, I8_S, TL1, TL2) that upstream ggml retired or reassigned (39 = MXFP4).

export interface GgmlType {
  id: number;
  name: string;
  /** Elements per block along ne0. */
  blockSize: number;
  /** Bytes per block. */
  typeSize: number;
}

const T = (id: number, name: string, blockSize: number, typeSize: number): GgmlType => ({ id, name, blockSize, typeSize });

/** Upstream ggml types (ggml.h), by id. */
const UPSTREAM: ReadonlyMap<number, GgmlType> = new Map(
  [
    T(0, 'F32', 1, 4), T(1, 'F16', 1, 2), T(2, 'Q4_0', 32, 18), T(3, 'Q4_1', 32, 20), T(6, 'Q5_0', 32, 22),
    T(7, 'Q5_1', 32, 24), T(8, 'Q8_0', 32, 34), T(9, 'Q8_1', 32, 36), T(10, 'Q2_K', 256, 84), T(11, 'Q3_K', 256, 110),
    T(12, 'Q4_K', 256, 144), T(13, 'Q5_K', 256, 176), T(14, 'Q6_K', 256, 210), T(15, 'Q8_K', 256, 292),
    T(16, 'IQ2_XXS', 256, 66), T(17, 'IQ2_XS', 256, 74), T(18, 'IQ3_XXS', 256, 98), T(19, 'IQ1_S', 256, 50),
    T(20, 'IQ4_NL', 32, 18), T(21, 'IQ3_S', 256, 110), T(22, 'IQ2_S', 256, 82), T(23, 'IQ4_XS', 256, 136),
    T(24, 'I8', 1, 1), T(25, 'I16', 1, 2), T(26, 'I32', 1, 4), T(27, 'I64', 1, 8), T(28, 'F64', 1, 8),
    T(29, 'IQ1_M', 256, 56), T(30, 'BF16', 1, 2), T(34, 'TQ1_0', 256, 54), T(35, 'TQ2_0', 256, 66),
    T(39, 'MXFP4', 32, 17), T(41, 'Q1_0', 128, 18),
  ].map((t) => [t.id, t]),
);

/** Architectures written by bitnet.cpp's llama.cpp fork, where ids 36-39 mean I2_S/I8_S/TL1/TL2. */
export const BITNET_FORK_ARCHS: ReadonlySet<string> = new Set(['bitnet-b1.58', 'bitnet-25']);

export const GGML = {
  F32: 0, F16: 1, Q8_0: 8, Q6_K: 14, BF16: 30, TQ1_0: 34, TQ2_0: 35, I2_S: 36, TL1: 38, TL2: 39, Q1_0: 41,
} as const;

/** Fork-only types: sizes are not block-based (I2_S = codes + 32-byte scale tail). */
const FORK: ReadonlyMap<number, string> = new Map([[36, 'I2_S'], [37, 'I8_S'], [38, 'TL1'], [39, 'TL2']]);

export function typeName(id: number, arch: string | undefined): string {
  if (arch !== undefined && BITNET_FORK_ARCHS.has(arch) && FORK.has(id)) return FORK.get(id)!;
  return UPSTREAM.get(id)?.name ?? `unknown(${id})`;
}

/**
 * Bytes of a tensor with dims (ne0 first) and type id, or an error string when the type is unknown
 * or the shape does not fit the type's blocks.
 */
export function tensorBytes(dims: readonly number[], id: number, arch: string | undefined): number | string {
  const n = dims.reduce((a, b) => a * b, 1);
  if (arch !== undefined && BITNET_FORK_ARCHS.has(arch) && FORK.has(id)) {
    const name = FORK.get(id)!;
    if (name !== 'I2_S')
      return `type ${name} (bitnet.cpp ${name === 'I8_S' ? 'activation type' : 'LUT layout tuned to one CPU'}) is not supported: convert the model to I2_S with bitnet.cpp's setup_env.py --quant-type i2_s, or to TQ2_0/TQ1_0 with llama-quantize`;
    if (n % 4 !== 0) return `I2_S needs the element count to be a multiple of 4, got ${n}`;
    return n / 4 + 32;
  }
  const t = UPSTREAM.get(id);
  if (!t) {
    if (FORK.has(id)) return `type id ${id} is bitnet.cpp's ${FORK.get(id)} only under architecture bitnet-b1.58/bitnet-25, not '${arch ?? '(none)'}'`;
    return `unknown ggml type id ${id}`;
  }
  if ((dims[0] ?? 1) % t.blockSize !== 0) return `ne0 = ${dims[0]} is not a multiple of the ${t.name} block size ${t.blockSize}`;
  return (n / t.blockSize) * t.typeSize;
}
