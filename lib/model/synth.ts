// Synthetic models of every architecture row (arch.ts) for tests and benchmarks: the tensor layout of a
// real file (formats.md §2.2: tied F16 token_embd, F32 norms, seven projections per layer with their
// sibling tensors) filled with seeded random values: ternary projections in I2_S, TQ2_0 or TQ1_0, sign
// projections in Q1_0, the FP16 teacher's in F16.
//
// Determinism contract: every tensor's values are a function of (seed, tensor name) only, so one
// seed gives the same trits, scales, norms and embedding in every layout and architecture name,
// and the three layouts of one seed produce bit-identical logits.
import { closeSync, existsSync, openSync, renameSync, unlinkSync, writeSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

import { BitllmError } from '../errors.js';
import { GgufWriter, readGguf } from '../format/gguf.js';
import { QK_K, TQ1_BLOCK_BYTES, TQ2_BLOCK_BYTES, i2sBytes, tq1Bytes, tq2Bytes } from '../format/ternary.js';
import { GGML } from '../format/types.js';
import { floatToHalf, halfToFloat } from '../reference/numeric.js';
import { ARCH_NAMES, type ArchRow, LINEAR_KIND_SPECS, PROJECTIONS, TENSORS, archRow, projectionShape } from './arch.js';

/** An architecture row name (arch.ts). */
export type SynthArch = string;

/** An impossible request (bad shape/type/arch combination, missing vocabulary). */
export class SynthError extends BitllmError {}

export type SynthShapeName = 'tiny' | 'small' | 'large' | '1b3' | '3b' | '2b4t';
export type SynthType = 'i2_s' | 'tq2_0' | 'tq1_0' | 'q1_0' | 'f16' | 'billm';

export interface SynthShape {
  nEmbd: number;
  nLayer: number;
  nHead: number;
  nHeadKv: number;
  nFf: number;
  ropeTheta: number;
  eps: number;
  contextLength: number;
  /** Default vocabulary: llama.cpp's ggml-vocab-<vocab>.gguf, as scripts/test-data.mjs extracts it into .cache/test-data/vocab. */
  vocab: 'llama-spm' | 'llama-bpe';
}

export const SYNTH_SHAPES: Readonly<Record<SynthShapeName, SynthShape>> = {
  tiny: { nEmbd: 256, nLayer: 2, nHead: 4, nHeadKv: 2, nFf: 768, ropeTheta: 500000, eps: 1e-5, contextLength: 4096, vocab: 'llama-spm' },
  // Same block shape as test/fixtures/golden.
  small: { nEmbd: 512, nLayer: 4, nHead: 8, nHeadKv: 4, nFf: 1536, ropeTheta: 500000, eps: 1e-5, contextLength: 4096, vocab: 'llama-spm' },
  large: { nEmbd: 1024, nLayer: 8, nHead: 16, nHeadKv: 4, nFf: 2816, ropeTheta: 500000, eps: 1e-5, contextLength: 4096, vocab: 'llama-spm' },
  // LiqunMa/FBI-LLM_1.3B (families.md §4): MHA, SiLU in the original; its FP16 form (2.6 GB) fits the 4 GiB
  // a file may have, so the FP16-vs-BiLLM comparison runs at this shape.
  '1b3': { nEmbd: 2048, nLayer: 24, nHead: 32, nHeadKv: 32, nFf: 5632, ropeTheta: 10000, eps: 1e-5, contextLength: 2048, vocab: 'llama-spm' },
  // 1bitLLM/bitnet_b1_58-3B: ffn_down K = 8640 is not a multiple of 256, so only I2_S can hold it.
  '3b': { nEmbd: 3200, nLayer: 26, nHead: 32, nHeadKv: 32, nFf: 8640, ropeTheta: 10000, eps: 1e-5, contextLength: 2048, vocab: 'llama-spm' },
  // microsoft/bitnet-b1.58-2B-4T (formats.md §2.1).
  '2b4t': { nEmbd: 2560, nLayer: 30, nHead: 20, nHeadKv: 5, nFf: 6912, ropeTheta: 500000, eps: 1e-5, contextLength: 4096, vocab: 'llama-bpe' },
};

export const SYNTH_TYPES: readonly SynthType[] = ['i2_s', 'tq2_0', 'tq1_0', 'q1_0', 'f16', 'billm'];
/** GGML's plain int8 type (BiLLM's bit planes). */
const GGML_I8 = 24;
const TYPE_ID: Record<SynthType, number> = { i2_s: GGML.I2_S, tq2_0: GGML.TQ2_0, tq1_0: GGML.TQ1_0, q1_0: GGML.Q1_0, f16: GGML.F16, billm: GGML_I8 };
/** general.file_type: bitnet.cpp's LLAMA_FTYPE_MOSTLY_I2_S = 40; upstream MOSTLY_F16 = 1, TQ1_0 = 36, TQ2_0 = 37. */
const FILE_TYPE: Partial<Record<SynthType, number>> = { i2_s: 40, tq2_0: 37, tq1_0: 36, f16: 1 };
const TYPE_NAME: Record<SynthType, string> = { i2_s: 'I2_S', tq2_0: 'TQ2_0', tq1_0: 'TQ1_0', q1_0: 'Q1_0', f16: 'F16', billm: 'I8' };
/** The architecture a type is written under unless --arch says otherwise. */
const DEFAULT_ARCH: Record<SynthType, string> = { i2_s: 'bitnet-b1.58', tq2_0: 'bitnet', tq1_0: 'bitnet', q1_0: 'bitnet-1bit', f16: 'bitnet-f16', billm: 'billm' };
/** Salient columns per 128-column block of a synthetic BiLLM projection (the quantizer searches 1..49). */
const BILLM_SYNTH_SALIENT = 8;

export interface SynthOptions {
  shape: SynthShapeName;
  type: SynthType;
  /**
   * Any architecture row whose projections the type can hold. Default: 'bitnet-b1.58' for i2_s (bitnet.cpp
   * naming), 'bitnet' for tq2_0/tq1_0 (llama.cpp naming), 'bitnet-1bit' for q1_0, 'bitnet-f16' for f16.
   */
  arch?: SynthArch;
  /** Writes `<arch>.hidden_activation` when given (nothing by default). */
  activation?: 'relu2' | 'silu';
  /** 32-bit unsigned seed (default 1). */
  seed?: number;
  /** GGUF whose tokenizer.ggml.* keys are copied; default: the shape's vocabulary under .cache/test-data/vocab. */
  vocab?: string;
  out: string;
  /** Called with bytes of tensor data written so far and the total. */
  onProgress?: (done: number, total: number) => void;
}

export type SynthTensorKind = 'embedding' | 'norm' | 'ternary' | 'sign' | 'dense' | 'colScale' | 'colBias' | 'rowScale'
  | 'billmPlane' | 'billmSalient' | 'billmGroups' | 'billmScalars';

export interface SynthTensor {
  name: string;
  /** ne0 first: [K] for vectors, [K, M] for matrices. */
  dims: number[];
  type: number;
  kind: SynthTensorKind;
  nbytes: number;
  /** Offset inside the data section (aligned). */
  offset: number;
}

export interface SynthPlan {
  shape: SynthShapeName;
  type: SynthType;
  arch: SynthArch;
  seed: number;
  nVocab: number;
  /** Metadata keys in file order (header only; tensor data is generated while writing). */
  metadata: GgufWriter;
  tensors: SynthTensor[];
  /** The file up to the tensor data: header, metadata, tensor table, padded to the alignment. */
  header: Uint8Array;
  fileBytes: number;
}

export interface SynthResult {
  path: string;
  shape: SynthShapeName;
  type: SynthType;
  arch: SynthArch;
  seed: number;
  nVocab: number;
  tensors: number;
  bytes: number;
  seconds: number;
}

const ALIGNMENT = 32;

// ---------------------------------------------------------------- PRNG

/** FNV-1a over the name's UTF-16 code units (tensor names are ASCII), starting from a seed-derived basis. */
function nameHash(seed: number, name: string): number {
  let h = (0x811c9dc5 ^ Math.imul(seed >>> 0, 0x9e3779b1)) >>> 0;
  for (let i = 0; i < name.length; i++) h = Math.imul(h ^ name.charCodeAt(i), 0x01000193) >>> 0;
  return h;
}

/** Base-3 digits of b (0..242), most significant first: 5 codes in {0, 1, 2} per accepted byte. */
const DIGITS5 = (() => {
  const t = new Uint8Array(243 * 5);
  for (let b = 0; b < 243; b++) for (let i = 0, v = b; i < 5; i++, v = Math.floor(v / 3)) t[b * 5 + 4 - i] = v % 3;
  return t;
})();

let normalTable: Uint16Array | undefined;
/** F16 bits of N(0, 1) quantiles at (i + 0.5) / 65536: one 16-bit draw → one normal sample, no transcendental per value. */
function normalHalves(): Uint16Array {
  if (normalTable) return normalTable;
  // CDF by trapezoidal integration of the density on [-9, 9], then invert it by walking the grid.
  const N = 1 << 20;
  const lo = -9;
  const dx = 18 / N;
  const cdf = new Float64Array(N + 1);
  const pdf = (x: number) => Math.exp(-0.5 * x * x) / Math.sqrt(2 * Math.PI);
  for (let i = 1; i <= N; i++) cdf[i] = cdf[i - 1]! + 0.5 * dx * (pdf(lo + (i - 1) * dx) + pdf(lo + i * dx));
  const t = new Uint16Array(65536);
  let k = 0;
  for (let i = 0; i < 65536; i++) {
    const p = ((i + 0.5) / 65536) * cdf[N]!;
    while (cdf[k + 1]! < p) k++;
    const x = lo + (k + (p - cdf[k]!) / (cdf[k + 1]! - cdf[k]!)) * dx;
    t[i] = floatToHalf(x);
  }
  normalTable = t;
  return t;
}

const scaledTables = new Map<number, Uint16Array>();
/** The N(0, 1) quantile table scaled by s (F16 bits): samples of N(0, s²) at the cost of a lookup. */
function scaledNormals(s: number): Uint16Array {
  let t = scaledTables.get(s);
  if (!t) {
    t = normalHalves().map((h) => floatToHalf(halfToFloat(h) * s));
    scaledTables.set(s, t);
  }
  return t;
}

/**
 * xoshiro128** (Blackman & Vigna): 128-bit state, 32-bit outputs, a few integer ops each — fast in
 * V8 with the state in locals. Seeded from (seed, name) through FNV-1a and a murmur3-style finalizer,
 * so every tensor owns an independent stream that does not depend on the order tensors are written.
 */
class TensorRng {
  private s0: number;
  private s1: number;
  private s2: number;
  private s3: number;

  constructor(seed: number, name: string) {
    let x = nameHash(seed, name);
    const s: number[] = [];
    for (let i = 0; i < 4; i++) {
      x = (x + 0x9e3779b9) >>> 0;
      let z = x;
      z = Math.imul(z ^ (z >>> 16), 0x85ebca6b);
      z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35);
      s.push((z ^ (z >>> 16)) >>> 0);
    }
    [this.s0, this.s1, this.s2, this.s3] = s as [number, number, number, number];
    if ((this.s0 | this.s1 | this.s2 | this.s3) === 0) this.s0 = 1;
  }

  next(): number {
    const r = Math.imul(rotl(Math.imul(this.s1, 5), 7), 9) >>> 0;
    const t = this.s1 << 9;
    this.s2 ^= this.s0;
    this.s3 ^= this.s1;
    this.s1 ^= this.s2;
    this.s0 ^= this.s3;
    this.s2 ^= t;
    this.s3 = rotl(this.s3, 11);
    return r;
  }

  /** Uniform in [0, 1). */
  uniform(): number {
    return this.next() / 4294967296;
  }

  /**
   * out[0..n) = codes (trit + 1) i.i.d. uniform over {0, 1, 2} (so P(trit = 0) = 1/3 exactly): each
   * random byte below 243 = 3^5 gives five base-3 digits, bytes 243..255 are rejected.
   * `out` needs 4 bytes of slack past n (digits come in fives).
   */
  fillCodes(out: Uint8Array, n: number): void {
    let s0 = this.s0, s1 = this.s1, s2 = this.s2, s3 = this.s3;
    const D = DIGITS5;
    let i = 0;
    while (i < n) {
      const r = Math.imul(rotl(Math.imul(s1, 5), 7), 9);
      const t = s1 << 9;
      s2 ^= s0; s3 ^= s1; s1 ^= s2; s0 ^= s3; s2 ^= t; s3 = rotl(s3, 11);
      for (let sh = 0; sh < 32 && i < n; sh += 8) {
        const b = (r >>> sh) & 0xff;
        if (b < 243) {
          const d = b * 5;
          out[i] = D[d]!; out[i + 1] = D[d + 1]!; out[i + 2] = D[d + 2]!; out[i + 3] = D[d + 3]!; out[i + 4] = D[d + 4]!;
          i += 5;
        }
      }
    }
    this.s0 = s0; this.s1 = s1; this.s2 = s2; this.s3 = s3;
  }

  /** out[0..n) = F16 bits of N(0, 1) samples (n even), or of samples of another table of 65536 halves. */
  fillNormalHalves(out: Uint16Array, n: number, table?: Uint16Array): void {
    const T = table ?? normalHalves();
    let s0 = this.s0, s1 = this.s1, s2 = this.s2, s3 = this.s3;
    for (let i = 0; i < n; i += 2) {
      const r = Math.imul(rotl(Math.imul(s1, 5), 7), 9);
      const t = s1 << 9;
      s2 ^= s0; s3 ^= s1; s1 ^= s2; s0 ^= s3; s2 ^= t; s3 = rotl(s3, 11);
      out[i] = T[r & 0xffff]!;
      out[i + 1] = T[r >>> 16]!;
    }
    this.s0 = s0; this.s1 = s1; this.s2 = s2; this.s3 = s3;
  }
}

/** The salient mask [K/8] of a synthetic BiLLM projection: BILLM_SYNTH_SALIENT distinct columns per 128-block. */
function billmSalientMask(seed: number, name: string, K: number): Uint8Array {
  const rng = new TensorRng(seed, name);
  const mask = new Uint8Array(K / 8);
  for (let j = 0; j < K / 128; j++) {
    let n = 0;
    while (n < BILLM_SYNTH_SALIENT) {
      const c = 128 * j + (rng.next() & 127);
      if (!(mask[c >> 3]! & (1 << (c & 7)))) {
        mask[c >> 3]! |= 1 << (c & 7);
        n++;
      }
    }
  }
  return mask;
}

function rotl(x: number, k: number): number {
  return (x << k) | (x >>> (32 - k));
}

// ---------------------------------------------------------------- layout encoders (codes → file bytes)

/** I2_S: per 128 flattened elements 32 bytes, byte j = c[j]<<6 | c[j+32]<<4 | c[j+64]<<2 | c[j+96]; fp32 scale tail. */
function encodeCodesI2S(c: Uint8Array, n: number, scale: number, out: Uint8Array): void {
  for (let b = 0, o = 0; b < n; b += 128, o += 32)
    for (let j = 0; j < 32; j++) out[o + j] = (c[b + j]! << 6) | (c[b + j + 32]! << 4) | (c[b + j + 64]! << 2) | c[b + j + 96]!;
  out.fill(0, n / 4, n / 4 + 32);
  new DataView(out.buffer, out.byteOffset).setFloat32(n / 4, scale, true);
}

/** TQ2_0: per 256 elements {qs[64], fp16 d}; each 128-half: byte m = c[m] | c[m+32]<<2 | c[m+64]<<4 | c[m+96]<<6. */
function encodeCodesTQ2(c: Uint8Array, n: number, scaleHalf: number, out: Uint8Array): void {
  for (let e0 = 0, o = 0; e0 < n; e0 += QK_K, o += TQ2_BLOCK_BYTES) {
    for (let h = 0; h < 2; h++)
      for (let m = 0; m < 32; m++) {
        const e = e0 + h * 128 + m;
        out[o + h * 32 + m] = c[e]! | (c[e + 32]! << 2) | (c[e + 64]! << 4) | (c[e + 96]! << 6);
      }
    out[o + 64] = scaleHalf & 0xff;
    out[o + 65] = scaleHalf >>> 8;
  }
}

/** ceil(q * 256 / 243): TQ1_0 stores base-3 numbers scaled to a byte so `(b * 3^n) * 3 >> 8` recovers digit n. */
const TQ1_BYTE = Uint8Array.from({ length: 243 }, (_, q) => Math.floor((q * 256 + 242) / 243));

/** TQ1_0: per 256 elements {qs[48], qh[4], fp16 d}, 5 (qh: 4) trits per byte, first element most significant. */
function encodeCodesTQ1(c: Uint8Array, n: number, scaleHalf: number, out: Uint8Array): void {
  const B = TQ1_BYTE;
  for (let e0 = 0, o = 0; e0 < n; e0 += QK_K, o += TQ1_BLOCK_BYTES) {
    for (let m = 0; m < 32; m++) {
      const e = e0 + m;
      out[o + m] = B[c[e]! * 81 + c[e + 32]! * 27 + c[e + 64]! * 9 + c[e + 96]! * 3 + c[e + 128]!]!;
    }
    for (let m = 0; m < 16; m++) {
      const e = e0 + 160 + m;
      out[o + 32 + m] = B[c[e]! * 81 + c[e + 16]! * 27 + c[e + 32]! * 9 + c[e + 48]! * 3 + c[e + 64]!]!;
    }
    for (let j = 0; j < 4; j++) {
      const e = e0 + 240 + j;
      out[o + 48 + j] = B[(c[e]! * 27 + c[e + 4]! * 9 + c[e + 8]! * 3 + c[e + 12]!) * 3]!;
    }
    out[o + 52] = scaleHalf & 0xff;
    out[o + 53] = scaleHalf >>> 8;
  }
}

/**
 * Scale of a ternary projection with K inputs: the inputs are RMS-normalized (RMS ≈ 1) and a third
 * of the trits are zero, so γ = 1/sqrt(2K/3) keeps outputs at variance ≈ 1. Rounded to an F16 value
 * so the fp32 I2_S scale and the fp16 TQ block scales dequantize identically; it depends on K only,
 * so q|k|v and gate|up fuse with one tensor scale.
 */
export function ternaryScale(K: number): number {
  return halfToFloat(floatToHalf(1 / Math.sqrt((2 * K) / 3)));
}

// ---------------------------------------------------------------- plan

function defaultVocabPath(vocab: SynthShape['vocab']): string {
  // Two levels below the repo root from both lib/model (vitest) and dist/model; scripts/test-data.mjs puts
  // llama.cpp's vocabulary files there (taken from the llama.cpp source inside node-llama-cpp).
  return fileURLToPath(new URL(`../../.cache/test-data/vocab/ggml-vocab-${vocab}.gguf`, import.meta.url));
}

function checkSeed(seed: number): number {
  if (!Number.isInteger(seed) || seed < 0 || seed > 0xffffffff) throw new SynthError(`seed ${seed} is not an integer in [0, 2^32)`);
  return seed;
}

/** Validates the options and builds the metadata and tensor table; reads only the vocabulary file. */
export function planModel(opts: Omit<SynthOptions, 'out' | 'onProgress'>): SynthPlan {
  const spec = SYNTH_SHAPES[opts.shape];
  if (!spec) throw new SynthError(`unknown shape '${String(opts.shape)}' (one of ${Object.keys(SYNTH_SHAPES).join(', ')})`);
  if (!SYNTH_TYPES.includes(opts.type)) throw new SynthError(`unknown type '${String(opts.type)}' (one of ${SYNTH_TYPES.join(', ')})`);
  const arch: SynthArch = opts.arch ?? DEFAULT_ARCH[opts.type];
  if (!ARCH_NAMES.includes(arch)) throw new SynthError(`unknown architecture '${String(arch)}' (one of ${ARCH_NAMES.join(', ')})`);
  const row: ArchRow = archRow(arch);
  if (opts.type === 'i2_s' && arch !== 'bitnet-b1.58' && arch !== 'bitnet-25')
    throw new SynthError(`type i2_s (GGML id 36) exists only under bitnet.cpp's architectures bitnet-b1.58 and bitnet-25 (upstream ggml has no type 36), not under '${arch}': use --arch bitnet-b1.58 or --type tq2_0/tq1_0`);
  for (const p of PROJECTIONS) {
    const kind = row.linears[p].kind;
    if (!LINEAR_KIND_SPECS[kind].weightTypes.includes(TYPE_NAME[opts.type]))
      throw new SynthError(`architecture ${arch} stores ${p} as '${kind}' (${LINEAR_KIND_SPECS[kind].weightTypes.join(', ')}), not ${opts.type}`);
  }
  if (opts.activation !== undefined && opts.activation !== 'relu2' && opts.activation !== 'silu')
    throw new SynthError(`activation '${String(opts.activation)}' is not relu2 or silu`);
  const seed = checkSeed(opts.seed ?? 1);

  const d = spec.nEmbd;
  const ff = spec.nFf;
  const dkv = spec.nHeadKv * (d / spec.nHead);
  const blockK = opts.type === 'q1_0' || opts.type === 'billm' ? 128 : opts.type === 'tq2_0' || opts.type === 'tq1_0' ? QK_K : 1;
  for (const p of PROJECTIONS) {
    const { K } = projectionShape(p, d, dkv, ff);
    if (K % blockK !== 0)
      throw new SynthError(`shape ${opts.shape}: ${p} has K = ${K}, not a multiple of ${blockK}, so it cannot be stored as ${opts.type}${opts.type === 'i2_s' ? '' : '; use --type i2_s'}`);
  }

  const vocabPath = opts.vocab ?? defaultVocabPath(spec.vocab);
  if (!existsSync(vocabPath))
    throw new SynthError(`${opts.vocab === undefined ? 'default vocabulary' : 'vocabulary file'} ${vocabPath} not found: pass --vocab FILE (a GGUF with tokenizer.ggml.* keys, e.g. llama.cpp's models/ggml-vocab-${spec.vocab}.gguf)` +
      (opts.vocab === undefined ? '; in a bitllm checkout, `node scripts/test-data.mjs` extracts the default one' : ''));
  const vocab = readGguf(vocabPath);
  const tokens = vocab.metadata.get('tokenizer.ggml.tokens');
  if (!tokens || !Array.isArray(tokens.value) || tokens.value.length === 0)
    throw new SynthError(`${vocabPath} has no tokenizer.ggml.tokens: pass --vocab with a GGUF that has a tokenizer`);
  const nVocab = tokens.value.length;

  const w = new GgufWriter();
  const key = (k: string) => `${arch}.${k}`;
  w.string('general.architecture', arch);
  w.string('general.name', `synthetic-${opts.shape}-s${seed}`);
  // Key order of the published 2B-4T file (formats.md §2.2).
  w.u32(key('vocab_size'), nVocab);
  w.u32(key('context_length'), spec.contextLength);
  w.u32(key('embedding_length'), d);
  w.u32(key('block_count'), spec.nLayer);
  w.u32(key('feed_forward_length'), ff);
  w.u32(key('rope.dimension_count'), d / spec.nHead);
  w.u32(key('attention.head_count'), spec.nHead);
  w.u32(key('attention.head_count_kv'), spec.nHeadKv);
  w.f32(key('attention.layer_norm_rms_epsilon'), spec.eps);
  w.f32(key('rope.freq_base'), spec.ropeTheta);
  if (opts.activation) w.string(key('hidden_activation'), opts.activation);
  if (row.extraKeys.includes('attn_output.topk_ratio')) w.f32(key('attn_output.topk_ratio'), 0.5);
  if (row.extraKeys.includes('kv_bits')) w.u32(key('kv_bits'), 3);
  if (row.extraKeys.includes('linear_norm_epsilon')) w.f32(key('linear_norm_epsilon'), 1e-5);
  if (FILE_TYPE[opts.type] !== undefined) w.u32('general.file_type', FILE_TYPE[opts.type]!);
  for (const [k, e] of vocab.metadata) {
    if (!k.startsWith('tokenizer.ggml.')) continue;
    // The official 2B-4T file has no pre key (readers then pick LLaMA-3's regex from the vocabulary size).
    if (opts.shape === '2b4t' && k === 'tokenizer.ggml.pre') continue;
    w.set(k, e.type, e.value, e.itemType);
  }
  if (opts.shape === '2b4t') {
    // Present in the official file, absent from llama.cpp's vocab-only GGUF.
    const eos = vocab.metadata.get('tokenizer.ggml.eos_token_id');
    if (!vocab.metadata.has('tokenizer.ggml.padding_token_id') && eos) w.set('tokenizer.ggml.padding_token_id', eos.type, eos.value);
    if (!vocab.metadata.has('tokenizer.ggml.add_bos_token')) w.bool('tokenizer.ggml.add_bos_token', true);
  }
  w.u32('general.quantization_version', 2);

  const tensors: SynthTensor[] = [];
  let offset = 0;
  const add = (name: string, dims: number[], type: number, kind: SynthTensorKind, nbytes: number) => {
    tensors.push({ name, dims, type, kind, nbytes, offset });
    offset = Math.ceil((offset + nbytes) / ALIGNMENT) * ALIGNMENT;
  };
  const weightBytes = (M: number, K: number): number => {
    switch (opts.type) {
      case 'i2_s': return i2sBytes(M, K);
      case 'tq2_0': return tq2Bytes(M, K);
      case 'tq1_0': return tq1Bytes(M, K);
      case 'q1_0': return M * (K / 128) * 18;
      case 'f16': return M * K * 2;
      case 'billm': return (M * K) / 8;
    }
  };
  const weightKind: SynthTensorKind = opts.type === 'q1_0' ? 'sign' : opts.type === 'f16' ? 'dense' : opts.type === 'billm' ? 'billmPlane' : 'ternary';
  const norm = (name: string, n: number) => add(name, [n], GGML.F32, 'norm', n * 4);
  add(TENSORS.tokEmbd, [d, nVocab], GGML.F16, 'embedding', d * nVocab * 2);
  norm(TENSORS.outputNorm, d);
  for (let l = 0; l < spec.nLayer; l++) {
    const proj = (p: (typeof PROJECTIONS)[number]) => {
      const { M, K } = projectionShape(p, d, dkv, ff);
      if (opts.type === 'billm') {
        // BiLLM planes (lib/quantize/billm-gguf.ts): signs and groups [K/8, M], the salient mask [K/8], the
        // residual signs of BILLM_SYNTH_SALIENT columns per block [nb, M], fp16 scalars [8, nb, M].
        const nb = K / 128;
        const base = `blk.${l}.${p}`;
        add(`${base}.weight`, [K / 8, M], GGML_I8, 'billmPlane', (M * K) / 8);
        add(`${base}.billm_groups`, [K / 8, M], GGML_I8, 'billmGroups', (M * K) / 8);
        add(`${base}.billm_salient`, [K / 8], GGML_I8, 'billmSalient', K / 8);
        add(`${base}.billm_residual`, [(nb * BILLM_SYNTH_SALIENT) / 8, M], GGML_I8, 'billmPlane', (M * nb * BILLM_SYNTH_SALIENT) / 8);
        add(`${base}.billm_scalars`, [8, nb, M], GGML.F16, 'billmScalars', M * nb * 8 * 2);
        return;
      }
      add(TENSORS.weight(l, p), [K, M], TYPE_ID[opts.type], weightKind, weightBytes(M, K));
      for (const s of LINEAR_KIND_SPECS[row.linears[p].kind].siblings) {
        const n = s.length === 'K' ? K : M;
        add(TENSORS.sibling(l, p, s.suffix), [n], GGML.F32, s.role, n * 4);
      }
    };
    norm(TENSORS.attnNorm(l), d);
    proj('attn_q'); proj('attn_k'); proj('attn_v'); proj('attn_output');
    norm(TENSORS.attnSubNorm(l), d);
    norm(TENSORS.ffnNorm(l), d);
    proj('ffn_gate'); proj('ffn_up'); proj('ffn_down');
    norm(TENSORS.ffnSubNorm(l), ff);
  }
  const header = encodeHeader(w, tensors);
  const last = tensors[tensors.length - 1]!;
  return { shape: opts.shape, type: opts.type, arch, seed, nVocab, metadata: w, tensors, header, fileBytes: header.byteLength + last.offset + last.nbytes };
}

/** GGUF v3 header: the writer's KV section (its tensor count patched), then the tensor table, padded. */
function encodeHeader(w: GgufWriter, tensors: SynthTensor[]): Uint8Array {
  // Alignment 1 makes toBytes() return exactly magic, version, counts and KVs (no tensors, no padding).
  const saved = w.alignment;
  w.alignment = 1;
  const kv = w.toBytes();
  w.alignment = saved;
  const enc = new TextEncoder();
  const names = tensors.map((t) => enc.encode(t.name));
  const tableBytes = tensors.reduce((a, t, i) => a + 8 + names[i]!.byteLength + 4 + 8 * t.dims.length + 4 + 8, 0);
  const out = new Uint8Array(Math.ceil((kv.byteLength + tableBytes) / ALIGNMENT) * ALIGNMENT);
  out.set(kv, 0);
  const dv = new DataView(out.buffer);
  dv.setBigUint64(8, BigInt(tensors.length), true); // GGUF: magic u32, version u32, n_tensors u64, n_kv u64
  let p = kv.byteLength;
  tensors.forEach((t, i) => {
    dv.setBigUint64(p, BigInt(names[i]!.byteLength), true);
    out.set(names[i]!, p + 8);
    p += 8 + names[i]!.byteLength;
    dv.setUint32(p, t.dims.length, true);
    p += 4;
    for (const x of t.dims) { dv.setBigUint64(p, BigInt(x), true); p += 8; }
    dv.setUint32(p, t.type, true);
    dv.setBigUint64(p + 4, BigInt(t.offset), true);
    p += 12;
  });
  return out;
}

// ---------------------------------------------------------------- write

/** Generates and writes a synthetic model; the file appears at `out` only when complete. */
export async function synthesizeModel(opts: SynthOptions): Promise<SynthResult> {
  const t0 = performance.now();
  const plan = planModel(opts);
  const { header } = plan;
  const total = plan.fileBytes - header.byteLength;
  const { seed } = plan;

  let maxTernary = 0;
  let maxBytes = 0;
  for (const t of plan.tensors) {
    if (t.kind === 'ternary' || t.kind === 'dense') maxTernary = Math.max(maxTernary, t.dims[0]! * t.dims[1]!);
    if (t.kind !== 'embedding') maxBytes = Math.max(maxBytes, t.nbytes);
  }
  const codes = new Uint8Array(maxTernary + 8); // [M*K] codes of one projection (+ fillCodes slack)
  const bytes = new Uint8Array(maxBytes); // one tensor's file bytes
  const EMBD_CHUNK = 1 << 22; // halves per embedding chunk
  const halves = new Uint16Array(EMBD_CHUNK);

  const tmp = `${opts.out}.partial-${process.pid}`;
  const fd = openSync(tmp, 'w');
  let ok = false;
  try {
    writeSync(fd, header);
    let pos = 0; // bytes written into the data section
    const emit = (b: Uint8Array) => { for (let o = 0; o < b.byteLength; o += 1 << 26) writeSync(fd, b, o, Math.min(1 << 26, b.byteLength - o)); pos += b.byteLength; };
    for (const t of plan.tensors) {
      if (t.offset > pos) emit(new Uint8Array(t.offset - pos));
      const rng = new TensorRng(seed, t.name);
      if (t.kind === 'embedding') {
        const n = t.dims[0]! * t.dims[1]!;
        for (let i = 0; i < n; i += EMBD_CHUNK) {
          const len = Math.min(EMBD_CHUNK, n - i);
          rng.fillNormalHalves(halves, len);
          emit(new Uint8Array(halves.buffer, 0, len * 2));
          opts.onProgress?.(pos, total);
        }
      } else if (t.kind === 'norm' || t.kind === 'colScale' || t.kind === 'colBias' || t.kind === 'rowScale') {
        const v = new Float32Array(bytes.buffer, 0, t.dims[0]!);
        if (t.kind === 'norm') {
          // 1 ± ~0.02: near-identity gains that still differ per channel.
          for (let i = 0; i < v.length; i++) v[i] = 1 + 0.04 * (rng.uniform() - 0.5);
        } else {
          // FBI-LLM α / OneBit g: 0.5..1.5 (× the K-dependent scale for α, whose GEMM has no other scale);
          // FBI-LLM β: ±0.1 of it; OneBit h: 0.5..1.5 (the LayerNorm after it removes the overall scale).
          const K = plan.tensors.find((x) => x.name === t.name.replace(/\.[a-z_]+$/, '.weight'))!.dims[0]!;
          const g = plan.arch === 'fbi-llm' ? ternaryScale(K) : 1;
          for (let i = 0; i < v.length; i++) {
            const u = rng.uniform();
            v[i] = t.kind === 'colBias' ? g * 0.2 * (u - 0.5) : g * (0.5 + u);
          }
        }
        emit(bytes.subarray(0, t.nbytes));
      } else if (t.kind === 'billmPlane' || t.kind === 'billmSalient' || t.kind === 'billmGroups') {
        const out = bytes.subarray(0, t.nbytes);
        if (t.kind === 'billmSalient') out.set(billmSalientMask(seed, t.name, t.dims[0]! * 8));
        else {
          for (let o = 0; o < out.length; o += 4) {
            const r = rng.next();
            out[o] = r & 0xff; out[o + 1] = (r >>> 8) & 0xff; out[o + 2] = (r >>> 16) & 0xff; out[o + 3] = r >>> 24;
          }
          if (t.kind === 'billmGroups') {
            // Group bits are 0 at salient columns.
            const K = t.dims[0]! * 8;
            const mask = billmSalientMask(seed, t.name.replace(/billm_groups$/, 'billm_salient'), K);
            for (let m = 0; m < t.dims[1]!; m++)
              for (let j = 0; j < K / 8; j++) out[m * (K / 8) + j]! &= ~mask[j]!;
          }
        }
        emit(out);
      } else if (t.kind === 'billmScalars') {
        // (α1, α2, μ1, μ2, αA, μA, αB, μB) per row and block: magnitudes around 1/sqrt(K), small means.
        const [, nb, M] = t.dims as [number, number, number];
        const g = ternaryScale(nb * 128);
        const h = new Uint16Array(bytes.buffer, 0, 8 * nb * M);
        const mean = [1, 0.3, 0.05, 0.05, 0.6, 0.05, 1.6, 0.05];
        for (let i = 0; i < h.length; i++) {
          const l = i % 8;
          h[i] = floatToHalf(g * mean[l]! * (l === 2 || l === 3 || l === 5 || l === 7 ? rng.uniform() - 0.5 : 0.75 + 0.5 * rng.uniform()));
        }
        emit(bytes.subarray(0, t.nbytes));
      } else if (t.kind === 'sign') {
        // Q1_0: per 128 signs {fp16 d, 16 random bytes}; d = the BitNet β scale, 1 where siblings scale.
        const [K] = t.dims as [number, number];
        const out = bytes.subarray(0, t.nbytes);
        const dHalf = floatToHalf(plan.arch === 'bitnet-1bit' ? ternaryScale(K) : 1);
        for (let o = 0; o < out.length; o += 18) {
          out[o] = dHalf & 0xff;
          out[o + 1] = dHalf >>> 8;
          for (let j = 0; j < 16; j += 4) {
            const r = rng.next();
            out[o + 2 + j] = r & 0xff; out[o + 3 + j] = (r >>> 8) & 0xff; out[o + 4 + j] = (r >>> 16) & 0xff; out[o + 5 + j] = r >>> 24;
          }
        }
        emit(out);
      } else if (t.kind === 'dense') {
        // F16 weights N(0, 1/K): unit-variance outputs for RMS-normalized inputs.
        const [K, M] = t.dims as [number, number];
        const n = M * K;
        const out = new Uint16Array(bytes.buffer, 0, n);
        rng.fillNormalHalves(out, n, scaledNormals(1 / Math.sqrt(K)));
        emit(bytes.subarray(0, t.nbytes));
      } else {
        const [K, M] = t.dims as [number, number];
        const n = M * K;
        rng.fillCodes(codes, n);
        const out = bytes.subarray(0, t.nbytes);
        const gamma = ternaryScale(K);
        if (plan.type === 'i2_s') encodeCodesI2S(codes, n, gamma, out);
        else if (plan.type === 'tq2_0') encodeCodesTQ2(codes, n, floatToHalf(gamma), out);
        else encodeCodesTQ1(codes, n, floatToHalf(gamma), out);
        emit(out);
      }
      opts.onProgress?.(pos, total);
      await new Promise<void>((r) => setImmediate(r)); // let a TTY progress line and signals through
    }
    if (header.byteLength + pos !== plan.fileBytes) throw new Error(`synth: wrote ${header.byteLength + pos} bytes, planned ${plan.fileBytes}`);
    ok = true;
  } finally {
    closeSync(fd);
    if (!ok) try { unlinkSync(tmp); } catch { /* already gone */ }
  }
  renameSync(tmp, opts.out);
  return {
    path: opts.out, shape: plan.shape, type: plan.type, arch: plan.arch, seed, nVocab: plan.nVocab,
    tensors: plan.tensors.length, bytes: plan.fileBytes, seconds: (performance.now() - t0) / 1000,
  };
}

