// Looks up, validates and repacks the tensors of a model into kernel layouts, driven by its architecture
// row (arch.ts): every projection becomes a Linear of its row's linear kind (ternary → T2R16 / TD3, sign
// kinds → B1R16, f16 → F16 rows), fused with its siblings where they share an input and a quantizer
// (q|k|v, gate|up); norms are copies; the token embedding is an F16 copy (or a Q8R16 / Q4R16 repack;
// Q6_K / BF16 are dequantized to either) and doubles as the lm_head when the file has no output.weight.
import { ModelFormatError } from '../errors.js';
import { Q6_K_BLOCK_BYTES, QK_K, dequantizeBF16, dequantizeQ6K, floatsToHalves } from '../format/dequant.js';
import type { GgufFile, GgufTensorInfo } from '../format/gguf.js';
import { GGML } from '../format/types.js';
import { type KernelContext, WeightArena, weightBytes } from '../kernels/context.js';
import { type F16Matrix, type F16TMatrix, type Q4Matrix, type Q8Matrix, f16tElems, q4Bytes, q8Bytes, repackF16T, repackQ4, repackQ8 } from '../kernels/dense.js';
import { ScaleMode, type TernaryMatrix, repackTernary, repackTernaryF32 } from '../kernels/ternary.js';
import { type TernaryTd3Matrix, ternaryToTd3 } from '../kernels/td3.js';
import { type TernarySparseMatrix, ternaryToSparse } from '../kernels/ternary-sparse.js';
import { tsWeightBytes } from '../reference/ternary-sparse.js';
import { type BinaryMatrix, repackBinaryQ1_0 } from '../kernels/binary.js';
import { type BinaryLutMatrix, binaryToLut } from '../kernels/binary-lut.js';
import { b1lBytes } from '../reference/binary-lut.js';
import { type BillmTiles, packBillmTiles } from '../kernels/billm.js';
import type { BillmMatrix } from '../quantize/billm.js';
import { decodeBillmTensors } from '../quantize/billm-gguf.js';
import { b1BitsBytes, b1ScaleCount, b1Tiles } from '../reference/binary.js';
import { td3WeightBytes } from '../reference/td3.js';
import { binding } from '../native.js';
import { halfToFloat } from '../reference/numeric.js';
import { SCALE_BLOCK_K, T2_ROWS, scaleCount, t2CodeBytes, t2Tiles } from '../reference/ternary.js';
import type { ModelConfig } from './config.js';
import { type ActQuant, type LinearKind, LINEAR_KIND_SPECS, PROJECTIONS, type Projection, TENSORS, projectionShape } from './arch.js';

/**
 * An embedding / lm_head matrix. 'f16': GGUF rows (an embedding only read by row); 'f16t': the same halves in
 * F16T32 tiles (native/kernels/dense.h), the layout of every F16 matrix that runs the head GEMM.
 */
export type HeadMatrix = { kind: 'f16'; m: F16Matrix } | { kind: 'f16t'; m: F16TMatrix } | { kind: 'q8'; m: Q8Matrix } | { kind: 'q4'; m: Q4Matrix };
/** The head type a user picks ('f16' runs as 'f16t' tiles when the matrix is a head). */
export type HeadType = 'f16' | 'q8' | 'q4';
/** The kernel layout of a head matrix. */
export type HeadLayout = HeadMatrix['kind'];

/**
 * A ternary projection as the kernels read it: T2R16 (2 bits/weight) or TD3 (1.6875 bits/weight, the same
 * results; faster than T2R16 at batch 1 where AVX-512 VBMI decodes it, slower elsewhere).
 */
export type TernaryWeight = TernaryMatrix | TernaryTd3Matrix;
export const isTd3 = (w: TernaryWeight): w is TernaryTd3Matrix => 'data' in w;

/** 'auto': TD3 where the CPU runs it at least as fast as T2R16 (AVX-512 VBMI), else T2R16. */
export type TernaryLayout = 'auto' | 't2r16' | 'td3';

/** The layout 'auto' resolves to on this context. */
export function resolveLayout(ctx: KernelContext, layout: TernaryLayout): 't2r16' | 'td3' {
  if (layout !== 'auto') return layout;
  return ctx.info().kernels['ternary_td3'] === 'avx512-vbmi' ? 'td3' : 't2r16';
}

/** A projection's weights in the layout its kernel reads. */
export type LinearWeights =
  | { kind: 't2r16'; m: TernaryMatrix }
  | { kind: 'td3'; m: TernaryTd3Matrix }
  | { kind: 'ts256'; m: TernarySparseMatrix }
  | { kind: 'b1r16'; m: BinaryMatrix }
  | { kind: 'b1l64'; m: BinaryLutMatrix }
  /** BR16 tiles; `planes()` decodes the file's planes again (the TS reference reads those). */
  | { kind: 'billm'; m: BillmTiles; planes: () => BillmMatrix }
  | { kind: 'f16'; m: F16Matrix };

/**
 * One linear layer (docs/DESIGN.md §8): `y = epilogue(W · quant(pre(x)))`.
 *   pre       xs = x ⊙ colScale (FBI-LLM α, OneBit g); FBI-LLM's per-token Σ colBias ⊙ x is added to every output
 *   quant     the input quantizer ('none': float activations)
 *   weights   T2R16 / TD3 / B1R16 (its tensor or row scale is part of the GEMM) / F16
 *   epilogue  × rowScale (OneBit h · Q1_0 d, float path only: the int8 path folds it into the B1R16 row scales),
 *             then OneBit's non-affine LayerNorm over the M outputs when `layerNorm`
 */
export interface Linear {
  kind: LinearKind;
  w: LinearWeights;
  M: number;
  K: number;
  quant: ActQuant;
  /** top-k-i8: the fraction of each token's values kept. */
  topkRatio: number;
  colScale: Float32Array | null; // [K]
  colBias: Float32Array | null; // [K]
  rowScale: Float32Array | null; // [M]
  /** OneBit: LayerNorm (no affine) over the M outputs, with this epsilon; 0 = none. */
  layerNormEps: number;
}

/** Linears sharing one input whose outputs are concatenated along M (q|k|v, gate|up): one GEMM when fused. */
export type LinearGroup = Linear[];

export interface LayerWeights {
  attnNorm: Float32Array; // [nEmbd]
  attnSubNorm: Float32Array | null; // [nEmbd]
  ffnNorm: Float32Array; // [nEmbd]
  ffnSubNorm: Float32Array | null; // [nFf]
  wqkv: LinearGroup; // [nEmbd + 2 nKv, nEmbd]: q rows, then k, then v
  wo: LinearGroup; // [nEmbd, nEmbd]
  wgu: LinearGroup; // [2 nFf, nEmbd]: gate rows, then up
  wdown: LinearGroup; // [nEmbd, nFf]
}

export interface ModelWeights {
  tokEmbd: HeadMatrix; // [nVocab, nEmbd]
  outputNorm: Float32Array; // [nEmbd]
  output: HeadMatrix; // lm_head [nVocab, nEmbd] (token_embd when tied)
  layers: LayerWeights[];
  /** Bytes of weights one decode step reads (layers + head). */
  bytesPerToken: number;
  /** In-memory layout of the ternary projections. */
  layout: 't2r16' | 'td3';
}

/** The linear's output width, the sum over a group. */
export const groupRows = (g: LinearGroup): number => g.reduce((a, l) => a + l.M, 0);

/** Bytes of a linear's weight data. */
export function linearBytes(l: Linear): number {
  switch (l.w.kind) {
    case 't2r16': return l.w.m.codes.byteLength;
    case 'td3': case 'ts256': return l.w.m.data.byteLength;
    case 'b1r16': case 'b1l64': return l.w.m.bits.byteLength;
    case 'billm': return l.w.m.data.byteLength + l.w.m.salient.byteLength;
    case 'f16': return l.w.m.data.byteLength;
  }
}

export interface LoadWeightsOptions {
  /** Called after each layer is repacked: `done` of `total` layers. */
  onProgress?: (done: number, total: number) => void;
  /** lm_head / embedding storage: keep F16, or repack to q8 (per-32-block int8) or q4 (per-32-block 4-bit). */
  headType?: HeadType;
  /** In-memory layout of the ternary projections (default 'auto'). */
  layout?: TernaryLayout;
  /**
   * Input quantizer of the float-activation (W1A16) families' sign projections: 'auto' = the architecture
   * row's (float, exact), 'i8' = per-token int8 into the B1R16 GEMM (faster, an approximation).
   */
  actQuant?: 'auto' | 'i8';
}

class TensorTable {
  private readonly byName: Map<string, GgufTensorInfo>;
  constructor(readonly file: GgufFile) {
    this.byName = new Map(file.tensors.map((t) => [t.name, t]));
  }
  fail(name: string, msg: string): never {
    throw new ModelFormatError(`${this.file.source}: tensor '${name}': ${msg}`);
  }
  get(name: string, dims: number[], optional = false): GgufTensorInfo | undefined {
    const t = this.byName.get(name);
    if (!t) {
      if (optional) return undefined;
      throw new ModelFormatError(`${this.file.source}: missing tensor '${name}'`);
    }
    const got = t.dims.filter((d, i) => i < dims.length || d !== 1);
    if (got.length !== dims.length || got.some((d, i) => d !== dims[i]))
      this.fail(name, `shape [${t.dims.join(', ')}] does not match the expected [${dims.join(', ')}]`);
    return t;
  }
  bytes(t: GgufTensorInfo): Uint8Array {
    return this.file.bytes.subarray(t.offset, t.offset + t.nbytes);
  }
  /** F32 vector (norm weights): a zero-copy view when aligned, else a copy. F16 is widened. */
  has(name: string): boolean {
    return this.byName.has(name);
  }
  find(name: string): GgufTensorInfo | undefined {
    return this.byName.get(name);
  }
  /** F32 / F16 vector (norm weights, per-column / per-row scales) as an F32 copy; every value must be finite. */
  vector(name: string, n: number): Float32Array {
    const t = this.get(name, [n])!;
    const b = this.bytes(t);
    // A copy, never a view: nothing the forward reads may keep file pages mapped (see loadWeights).
    let v: Float32Array;
    if (t.type === GGML.F32) v = new Float32Array(b.slice().buffer);
    else if (t.type === GGML.F16) v = Float32Array.from(new Uint16Array(b.slice().buffer), halfToFloat);
    else return this.fail(name, `type ${t.typeName} is not supported for a vector (F32 or F16)`);
    const bad = v.findIndex((x) => !Number.isFinite(x));
    if (bad >= 0) this.fail(name, `element ${bad} is ${v[bad]}, not a finite number`);
    return v;
  }
}

function loadTernary(ctx: KernelContext, tt: TensorTable, name: string, M: number, K: number, out?: Uint8Array): TernaryMatrix {
  const t = tt.get(name, [K, M])!;
  const src = tt.bytes(t);
  let w: TernaryMatrix;
  switch (t.type) {
    case GGML.I2_S:
      if (t.typeName !== 'I2_S') tt.fail(name, `type id 36 is I2_S only in bitnet.cpp files`);
      w = repackTernary(ctx, 'i2_s', src, M, K, name, out);
      break;
    case GGML.TQ2_0:
      w = repackTernary(ctx, 'tq2_0', src, M, K, name, out);
      break;
    case GGML.TQ1_0:
      w = repackTernary(ctx, 'tq1_0', src, M, K, name, out);
      break;
    case GGML.F32: {
      const f = (src.byteOffset & 3) === 0 ? new Float32Array(src.buffer, src.byteOffset, M * K) : new Float32Array(src.slice().buffer);
      w = repackTernaryF32(ctx, f, M, K);
      if (out) {
        out.set(w.codes);
        w = { ...w, codes: out };
      }
      break;
    }
    default:
      return tt.fail(name, `type ${t.typeName} is not a ternary type (I2_S, TQ2_0, TQ1_0, F32)`);
  }
  // Upstream llama.cpp files may carry a separate per-tensor scale.
  const scaleName = name.replace(/\.weight$/, '.scale');
  const st = tt.get(scaleName, [1], true);
  if (st) {
    if (st.type !== GGML.F32) tt.fail(scaleName, `type ${st.typeName} must be F32`);
    const s = new DataView(tt.file.bytes.buffer, tt.file.bytes.byteOffset + st.offset, 4).getFloat32(0, true);
    w = { ...w, scales: w.scales.map((v) => Math.fround(v * s)) };
  }
  return w;
}

/** Scales of `w` expressed in `mode` (tensor → row → block widening). */
function widenScales(w: TernaryMatrix, mode: ScaleMode): Float32Array {
  if (w.scaleMode === mode) return w.scales;
  const tiles = t2Tiles(w.M);
  const nb = w.K / SCALE_BLOCK_K;
  const rowScale = (m: number) => (w.scaleMode === ScaleMode.Tensor ? w.scales[0]! : w.scales[m]!);
  const out = new Float32Array(scaleCount(w.M, w.K, mode));
  if (mode === ScaleMode.Row) for (let m = 0; m < tiles * T2_ROWS; m++) out[m] = m < w.M ? rowScale(m) : 0;
  else
    for (let t = 0; t < tiles; t++)
      for (let j = 0; j < nb; j++)
        for (let r = 0; r < T2_ROWS; r++) {
          const m = t * T2_ROWS + r;
          out[(t * nb + j) * T2_ROWS + r] = m < w.M ? rowScale(m) : 0;
        }
  return out;
}

/** Stacks matrices with the same K along M (each M a multiple of 16) into one, for a fused GEMM. */
export function fuseTernary(parts: TernaryMatrix[]): TernaryMatrix {
  const K = parts[0]!.K;
  if (parts.some((p) => p.K !== K || p.M % T2_ROWS !== 0)) throw new RangeError('fuseTernary: parts need equal K and M % 16 == 0');
  const same = parts.every((p) => p.scaleMode === ScaleMode.Tensor && p.scales[0] === parts[0]!.scales[0]);
  const mode = same ? ScaleMode.Tensor : parts.some((p) => p.scaleMode === ScaleMode.Block) ? ScaleMode.Block : ScaleMode.Row;
  const M = parts.reduce((a, p) => a + p.M, 0);
  const total = parts.reduce((a, p) => a + p.codes.byteLength, 0);
  // Parts repacked straight into consecutive slices of one buffer (loadWeights does) need no copy.
  const first = parts[0]!.codes;
  let off = first.byteOffset;
  const inPlace = parts.every((p) => {
    const ok = p.codes.buffer === first.buffer && p.codes.byteOffset === off;
    off += p.codes.byteLength;
    return ok;
  });
  const codes = inPlace ? new Uint8Array(first.buffer, first.byteOffset, total) : new Uint8Array(total);
  const scales = new Float32Array(scaleCount(M, K, mode));
  let co = 0;
  let so = 0;
  for (const p of parts) {
    if (!inPlace) codes.set(p.codes, co);
    co += p.codes.byteLength;
    if (mode !== ScaleMode.Tensor) {
      const s = widenScales(p, mode);
      scales.set(s, so);
      so += s.length;
    }
  }
  if (mode === ScaleMode.Tensor) scales[0] = parts[0]!.scales[0]!;
  return { codes, scales, M, K, scaleMode: mode };
}

/**
 * The embedding (`rows`: only looked up) or head (`gemm`: the logits GEMM, and the lookups too when tied) matrix
 * `name`. An F16 head becomes F16T32 tiles; an F16 embedding that is only looked up stays the file's rows.
 */
function loadHead(ctx: KernelContext, tt: TensorTable, name: string, cfg: ModelConfig, headType: HeadType, optional: boolean,
  role: 'gemm' | 'rows'): HeadMatrix | undefined {
  const t = tt.get(name, [cfg.nEmbd, cfg.nVocab], optional);
  if (!t) return undefined;
  const src = tt.bytes(t);
  const M = cfg.nVocab;
  const K = cfg.nEmbd;
  const layout: HeadLayout = headType === 'f16' && role === 'gemm' ? 'f16t' : headType;
  if (t.type === GGML.F16) {
    const halves = () => ((src.byteOffset & 1) === 0 ? new Uint16Array(src.buffer, src.byteOffset, M * K) : new Uint16Array(src.slice().buffer));
    if (headType === 'q8') return { kind: 'q8', m: repackQ8(ctx, 'f16', halves(), M, K, name, weightBytes) };
    if (headType === 'q4') return { kind: 'q4', m: repackQ4(ctx, 'f16', halves(), M, K, name, weightBytes) };
    // The head GEMM reads 32 rows side by side, one 64-byte line per column (F16T32): every token of a batch
    // multiplies the same converted weights (DESIGN.md §3.4). The tiles live in huge-page advised memory.
    if (layout === 'f16t') return { kind: 'f16t', m: repackF16T(ctx, halves(), M, K, name, weightBytes) };
    // An embedding only looked up reads a few rows a step: straight from the mapping.
    return { kind: 'f16', m: { data: halves(), M, K } };
  }
  if (t.type === GGML.Q8_0) {
    if (headType === 'q4') return { kind: 'q4', m: repackQ4(ctx, 'q8_0', src, M, K, name, weightBytes) };
    return { kind: 'q8', m: repackQ8(ctx, 'q8_0', src, M, K, name, weightBytes) };
  }
  if (t.type === GGML.F32) {
    const f = (src.byteOffset & 3) === 0 ? new Float32Array(src.buffer, src.byteOffset, M * K) : new Float32Array(src.slice().buffer);
    if (headType === 'q4') return { kind: 'q4', m: repackQ4(ctx, 'f32', f, M, K, name, weightBytes) };
    return { kind: 'q8', m: repackQ8(ctx, 'f32', f, M, K, name, weightBytes) };
  }
  if (t.type === GGML.Q6_K || t.type === GGML.BF16) {
    if (t.type === GGML.Q6_K && K % QK_K !== 0) tt.fail(name, `Q6_K rows of ${K} elements are not whole ${QK_K}-element blocks`);
    return dequantHead(ctx, t.type === GGML.Q6_K ? 'q6_k' : 'bf16', src, M, K, layout, name);
  }
  return tt.fail(name, `type ${t.typeName} is not supported for embeddings / lm_head (F16, BF16, Q8_0, Q6_K, F32)`);
}

/** Rows per dequantization chunk: a multiple of the Q8R16 tile (16 rows), ~40 MB of F32 at K = 2560. */
export const DEQUANT_CHUNK_ROWS = 4096;

/**
 * A Q6_K / BF16 head [M, K] → F16 halves (headType 'f16'), Q8R16 ('q8') or Q4R16 ('q4'), widened to F32
 * a chunk of rows at a time so a 128k-vocabulary embedding never exists as F32 at once. Q8R16 and Q4R16
 * store whole 16-row tiles contiguously, so a chunk's repack is a byte range of the full one (identical result).
 */
export function dequantHead(ctx: KernelContext, type: 'q6_k' | 'bf16', src: Uint8Array, M: number, K: number,
  headType: HeadLayout, name = 'tensor', chunkRows = DEQUANT_CHUNK_ROWS): HeadMatrix {
  if (!(Number.isInteger(chunkRows) && chunkRows > 0 && chunkRows % 16 === 0)) throw new RangeError(`dequantHead: chunkRows = ${chunkRows} must be a positive multiple of 16`);
  const rowBytes = type === 'q6_k' ? (K / QK_K) * Q6_K_BLOCK_BYTES : K * 2;
  if (src.byteLength < M * rowBytes) throw new ModelFormatError(`${name}: ${src.byteLength} bytes hold fewer than ${M} rows`);
  // F16T32 tiles are 32 rows: chunks start on a tile, so a chunk's tiles are a range of the whole.
  if (headType === 'f16t' && chunkRows % 32 !== 0) chunkRows += 16;
  const rows = Math.min(chunkRows, M);
  const f = new Float32Array(rows * K); // [rows, K] one chunk, reused
  const hb = headType === 'f16' ? weightBytes(M * K * 2) : undefined;
  const halves = hb ? new Uint16Array(hb.buffer, hb.byteOffset, M * K) : undefined; // [M, K]
  const tb = headType === 'f16t' ? weightBytes(f16tElems(M, K) * 2) : undefined;
  const tiles = tb ? new Uint16Array(tb.buffer, tb.byteOffset, f16tElems(M, K)) : undefined; // F16T32
  const chunkHalves = tiles ? new Uint16Array(rows * K) : undefined; // [rows, K] one chunk, reused
  const q8 = headType === 'q8' ? weightBytes(q8Bytes(M, K)) : undefined; // Q8R16 [ceil(M/16) * K/32 * 544]
  const q4 = headType === 'q4' ? weightBytes(q4Bytes(M, K)) : undefined; // Q4R16 [ceil(M/16) * K/32 * 288]
  for (let r0 = 0; r0 < M; r0 += rows) {
    const n = Math.min(rows, M - r0);
    const bytes = src.subarray(r0 * rowBytes, (r0 + n) * rowBytes);
    const chunk = type === 'q6_k' ? dequantizeQ6K(bytes, n * K, f) : dequantizeBF16(bytes, n * K, f);
    if (halves || chunkHalves) {
      const dst = halves ? halves.subarray(r0 * K, (r0 + n) * K) : chunkHalves!.subarray(0, n * K);
      const bad = floatsToHalves(chunk, dst, n * K);
      if (bad > 0) throw new ModelFormatError(`${name}: ${bad} values in rows ${r0}..${r0 + n - 1} are not finite in F16 (load with the q8 head type)`);
      // The chunk's tiles are a range of the whole (r0 is a multiple of 32): repack straight into it.
      if (tb) repackF16T(ctx, dst, n, K, name, (bytes) => tb.subarray(2 * f16tElems(r0, K), 2 * f16tElems(r0, K) + bytes));
    } else if (q8) {
      const part = repackQ8(ctx, 'f32', chunk.subarray(0, n * K), n, K, name);
      q8.set(part.data, q8Bytes(r0, K));
    } else {
      const part = repackQ4(ctx, 'f32', chunk.subarray(0, n * K), n, K, name);
      q4!.set(part.data, q4Bytes(r0, K));
    }
  }
  if (halves) return { kind: 'f16', m: { data: halves, M, K } };
  if (tiles) return { kind: 'f16t', m: { data: tiles, M, K } };
  return q8 ? { kind: 'q8', m: { data: q8, M, K } } : { kind: 'q4', m: { data: q4!, M, K } };
}

function headBytes(h: HeadMatrix): number {
  return h.m.data.byteLength;
}


/** The ternary T2R16 bytes of a group fused, or each part's bytes; TD3 bytes when placing as TD3. */
function linearSlotBytes(kind: LinearKind, M: number, K: number, layout: 't2r16' | 'td3', sparse: boolean, floatAct: boolean): number {
  switch (kind) {
    case 'ternary': return sparse ? tsWeightBytes(M, K) : layout === 'td3' ? td3WeightBytes(M, K) : t2CodeBytes(M, K);
    case 'sign': case 'sign-col': case 'sign-gh-ln': return floatAct ? b1lBytes(M, K) : b1BitsBytes(M, K);
    case 'f16': return M * K * 2;
    case 'billm': return 0; // its size depends on the salient columns: allocated on its own
  }
}

/** Stacks B1R16 matrices with the same K along M (each M a multiple of 16) into `out`. */
function fuseBinary(parts: BinaryMatrix[], out: Uint8Array): BinaryMatrix {
  const K = parts[0]!.K;
  const M = parts.reduce((a, p) => a + p.M, 0);
  let o = 0;
  for (const p of parts) {
    out.set(p.bits, o);
    o += p.bits.byteLength;
  }
  const same = parts.every((p) => p.scaleMode === ScaleMode.Tensor && p.scales[0] === parts[0]!.scales[0]);
  if (same) return { bits: out, scales: Float32Array.of(parts[0]!.scales[0]!), M, K, scaleMode: ScaleMode.Tensor };
  const scales = new Float32Array(b1ScaleCount(M, ScaleMode.Row));
  let r = 0;
  for (const p of parts) {
    for (let m = 0; m < p.M; m++) scales[r + m] = p.scaleMode === ScaleMode.Tensor ? p.scales[0]! : p.scales[m]!;
    r += p.M;
  }
  return { bits: out, scales, M, K, scaleMode: ScaleMode.Row };
}

export function loadWeights(ctx: KernelContext, file: GgufFile, cfg: ModelConfig, opts: LoadWeightsOptions = {}): ModelWeights {
  const tt = new TensorTable(file);
  const row = cfg.row;
  const headType = opts.headType ?? 'f16';
  const layout = resolveLayout(ctx, opts.layout ?? 'auto');
  const actOpt = opts.actQuant ?? 'auto';
  if (actOpt !== 'auto' && actOpt !== 'i8') throw new RangeError(`loadWeights: actQuant '${String(actOpt)}' is not 'auto' or 'i8'`);
  // For TD3 every T2R16 matrix is only a stepping stone: repack into one reused buffer (no fresh pages
  // to fault in and no garbage per matrix), pack TD3 from it, reuse it for the next.
  let scratch = new Uint8Array(0);
  const t2Scratch = (n: number): Uint8Array => {
    if (scratch.length < n) scratch = new Uint8Array(n);
    return scratch.subarray(0, n);
  };
  const { nEmbd: d, nFf: ff, nHeadKv, headDim, nLayer } = cfg;
  const dkv = nHeadKv * headDim;
  if (d % T2_ROWS !== 0 || dkv % T2_ROWS !== 0 || ff % T2_ROWS !== 0)
    throw new ModelFormatError(`${file.source}: projection sizes (${d}, ${dkv}, ${ff}) must be multiples of 16`);
  const shape = (p: Projection) => projectionShape(p, d, dkv, ff);
  /** The input quantizer a projection runs with. */
  const quantOf = (p: Projection): ActQuant => {
    const spec = row.linears[p];
    if (actOpt === 'i8' && spec.act === 'none' && LINEAR_KIND_SPECS[spec.kind].quants.includes('i8')) return 'i8';
    return spec.act;
  };
  // Projections that share an input, a linear kind without per-projection pre-steps and a quantizer run as one GEMM.
  const fusible = (ps: readonly Projection[]) => {
    const k = row.linears[ps[0]!].kind;
    return LINEAR_KIND_SPECS[k].fusible && ps.every((p) => row.linears[p].kind === k && quantOf(p) === quantOf(ps[0]!));
  };
  const groups: Record<'wqkv' | 'wo' | 'wgu' | 'wdown', readonly Projection[]> = {
    wqkv: ['attn_q', 'attn_k', 'attn_v'], wo: ['attn_output'], wgu: ['ffn_gate', 'ffn_up'], wdown: ['ffn_down'],
  };
  // Every repacked layer matrix is carved from one block (WeightArena), sized here from the shapes.
  let perLayer = 0;
  for (const ps of Object.values(groups))
    for (const p of ps)
      perLayer += WeightArena.slot(linearSlotBytes(row.linears[p].kind, shape(p).M, shape(p).K, layout, row.linears[p].sparseInput === true, quantOf(p) === 'none'));
  const arena = new WeightArena(nLayer * perLayer);
  // An untied output is the head; a tied token_embd is both, so it takes the head's layout.
  const untied = loadHead(ctx, tt, TENSORS.output, cfg, headType, true, 'gemm');
  const tokEmbd = loadHead(ctx, tt, TENSORS.tokEmbd, cfg, headType, false, untied ? 'rows' : 'gemm')!;
  const output = untied ?? tokEmbd;
  const outputNorm = tt.vector(TENSORS.outputNorm, d);
  const layers: LayerWeights[] = [];
  const advise = binding<(b: ArrayBuffer, o: number, l: number, a: string) => void>('adviseMapping');
  // An F16 head read straight from the mapping (BITLLM_HUGE_PAGES=0); any other head is a copy or a repack.
  const inFile = (m: HeadMatrix) => m.kind === 'f16' && m.m.data.buffer === file.bytes.buffer;
  // A head copied or repacked never reads the file's copy again: drop its pages now, so they are not
  // resident next to the copy while the layers load (the whole mapping is dropped again at the end).
  for (const [name, m] of [[TENSORS.tokEmbd, tokEmbd], [TENSORS.output, output]] as const) {
    const t = file.tensors.find((x) => x.name === name);
    if (t && !inFile(m)) advise(file.bytes.buffer as ArrayBuffer, file.bytes.byteOffset + t.offset, t.nbytes, 'dontneed');
  }

  /** The sibling tensors of projection p in layer l, by role. */
  const siblings = (l: number, p: Projection) => {
    const { M, K } = shape(p);
    const out: { colScale: Float32Array | null; colBias: Float32Array | null; rowScale: Float32Array | null } = { colScale: null, colBias: null, rowScale: null };
    for (const s of LINEAR_KIND_SPECS[row.linears[p].kind].siblings)
      out[s.role] = tt.vector(TENSORS.sibling(l, p, s.suffix), s.length === 'K' ? K : M);
    return out;
  };
  /** Sign bits of a Q1_0 projection as B1R16 (scale: the block d, uniform per row). */
  const signWeights = (l: number, p: Projection): BinaryMatrix => {
    const name = TENSORS.weight(l, p);
    const { M, K } = shape(p);
    const t = tt.get(name, [K, M])!;
    if (t.type !== GGML.Q1_0) tt.fail(name, `type ${t.typeName} is not a sign type (${LINEAR_KIND_SPECS[row.linears[p].kind].weightTypes.join(', ')})`);
    if (K % 128 !== 0) tt.fail(name, `K = ${K} is not a multiple of 128 (Q1_0 blocks)`);
    const m = repackBinaryQ1_0(ctx, tt.bytes(t), M, K, `${file.source}: tensor '${name}'`);
    const bad = m.scales.findIndex((s) => !Number.isFinite(s));
    if (bad >= 0) tt.fail(name, `block scale ${m.scales[bad]} is not finite`);
    return m;
  };
  /** Dense F16 rows of an f16 projection (F16 copied; BF16 / F32 rounded to F16). */
  const f16Weights = (l: number, p: Projection, out: Uint16Array): void => {
    const name = TENSORS.weight(l, p);
    const { M, K } = shape(p);
    const t = tt.get(name, [K, M])!;
    const src = tt.bytes(t);
    if (t.type === GGML.F16) out.set(new Uint16Array(src.slice().buffer));
    else if (t.type === GGML.F32 || t.type === GGML.BF16) {
      const f = t.type === GGML.F32 ? new Float32Array(src.slice().buffer) : dequantizeBF16(src, M * K, new Float32Array(M * K));
      const bad = floatsToHalves(f, out, M * K);
      if (bad > 0) tt.fail(name, `${bad} values are not finite in F16`);
    } else tt.fail(name, `type ${t.typeName} is not a dense type (F16, BF16, F32)`);
    for (let i = 0; i < out.length; i++) if ((out[i]! & 0x7c00) === 0x7c00) tt.fail(name, `element ${i} is not finite`);
  };

  const baseLinear = (p: Projection, kind: LinearKind, w: LinearWeights, M: number, K: number, quant: ActQuant): Linear => ({
    kind, w, M, K, quant, topkRatio: quant === 'topk-i8' ? cfg.topkRatio : 1, colScale: null, colBias: null, rowScale: null,
    layerNormEps: LINEAR_KIND_SPECS[kind].layerNorm ? cfg.linearNormEps : 0,
  });

  const loadGroup = (l: number, ps: readonly Projection[]): LinearGroup => {
    const kind = row.linears[ps[0]!].kind;
    const K = shape(ps[0]!).K;
    const Ms = ps.map((p) => shape(p).M);
    const Mt = Ms.reduce((a, m) => a + m, 0);
    const fuse = ps.length > 1 && fusible(ps);
    if (kind === 'ternary') {
      const tern = (p: Projection, out: Uint8Array) => loadTernary(ctx, tt, TENSORS.weight(l, p), shape(p).M, K, out);
      // Fused matrices are repacked part by part straight into one buffer (T2R16 stacks along M by
      // concatenation): no per-part buffers to copy and leave behind as garbage.
      // Sparse inputs (a4.8) go column-sparse when the scales allow (tensor or row: TS256 has no block scales).
      const sparseOk = (w: TernaryMatrix, p: Projection) => row.linears[p].sparseInput === true && w.scaleMode !== ScaleMode.Block;
      const place = (w: TernaryMatrix, p: Projection, M: number): Linear => {
        const bad = w.scales.findIndex((s) => !Number.isFinite(s));
        if (bad >= 0) tt.fail(TENSORS.weight(l, p), `scale ${w.scales[bad]} is not finite`);
        const lw: LinearWeights = sparseOk(w, p) ? { kind: 'ts256', m: ternaryToSparse(ctx, w, arena.alloc) }
          : layout === 'td3' ? { kind: 'td3', m: ternaryToTd3(ctx, w, arena.alloc) } : { kind: 't2r16', m: w };
        return baseLinear(p, kind, lw, M, K, quantOf(p));
      };
      // T2R16 is the final layout only for dense inputs under the t2r16 layout; else a stepping stone.
      const buf = (n: number, p: Projection) => (layout === 'td3' || row.linears[p].sparseInput ? t2Scratch(n) : arena.alloc(n));
      if (fuse) {
        const b = buf(Ms.reduce((a, M) => a + t2CodeBytes(M, K), 0), ps[0]!);
        let o = 0;
        const parts = ps.map((p, i) => tern(p, b.subarray(o, (o += t2CodeBytes(Ms[i]!, K)))));
        return [place(fuseTernary(parts), ps[0]!, Mt)];
      }
      return ps.map((p, i) => place(tern(p, buf(t2CodeBytes(Ms[i]!, K), p)), p, Ms[i]!));
    }
    if (kind === 'billm') {
      // The planes of a BiLLM projection, read from the file's tensors and packed into BR16 tiles.
      // copy = false: views of the file's bytes, read once by the packer (the TS reference path copies).
      const planes = (p: Projection, copy = true): BillmMatrix => decodeBillmTensors(`blk.${l}.${p}`, (name) => {
        const t = tt.find(name);
        if (!t) return undefined;
        const dims = t.dims.filter((d, i) => i === 0 || d !== 1);
        return { name, dims, type: t.type, data: tt.bytes(t) };
      }, { copy });
      return ps.map((p) => {
        const { M } = shape(p);
        let m: BillmMatrix;
        try {
          m = planes(p, false);
          if (m.M !== M || m.K !== K) tt.fail(TENSORS.weight(l, p), `BiLLM planes are [${m.M}, ${m.K}], the projection is [${M}, ${K}]`);
        } catch (err) {
          if (err instanceof ModelFormatError) throw new ModelFormatError(`${file.source}: ${err.message}`);
          throw err;
        }
        return baseLinear(p, kind, { kind: 'billm', m: packBillmTiles(ctx, m, weightBytes), planes: () => planes(p) }, M, K, quantOf(p));
      });
    }
    if (kind === 'f16') {
      const mk = (sel: readonly Projection[], M: number): Linear => {
        const bytes = arena.alloc(M * K * 2);
        const halves = new Uint16Array(bytes.buffer, bytes.byteOffset, M * K);
        let r = 0;
        for (const p of sel) {
          f16Weights(l, p, halves.subarray(r * K, (r + shape(p).M) * K));
          r += shape(p).M;
        }
        return baseLinear(sel[0]!, kind, { kind: 'f16', m: { data: halves, M, K } }, M, K, quantOf(sel[0]!));
      };
      return fuse ? [mk(ps, Mt)] : ps.map((p, i) => mk([p], Ms[i]!));
    }
    // Sign kinds: B1R16 bits in the arena.
    const placeBits = (m: BinaryMatrix): BinaryMatrix => {
      const bits = arena.alloc(m.bits.byteLength);
      bits.set(m.bits);
      return { ...m, bits };
    };
    if (fuse) {
      const parts = ps.map((p) => signWeights(l, p));
      const m = fuseBinary(parts, arena.alloc(b1BitsBytes(Mt, K)));
      return [baseLinear(ps[0]!, kind, { kind: 'b1r16', m }, Mt, K, quantOf(ps[0]!))];
    }
    return ps.map((p, i) => {
      const M = Ms[i]!;
      const sib = siblings(l, p);
      let m = signWeights(l, p);
      if (sib.rowScale) {
        // OneBit h, times the Q1_0 d: a row scale of the product (the int8 GEMM's scale, the float path's epilogue).
        const rs = new Float32Array(b1ScaleCount(M, ScaleMode.Row));
        for (let r = 0; r < M; r++) rs[r] = Math.fround(sib.rowScale[r]! * (m.scaleMode === ScaleMode.Tensor ? m.scales[0]! : m.scales[r]!));
        m = { ...m, scales: rs, scaleMode: ScaleMode.Row };
      }
      const quant = quantOf(p);
      let lin: Linear;
      if (quant === 'i8') lin = baseLinear(p, kind, { kind: 'b1r16', m: placeBits(m) }, M, K, quant);
      else {
        // Float activations: the lookup-table layout; the B1R16 scales become its row scale (none when 1).
        const lw = binaryToLut(ctx, m, arena.alloc);
        lin = baseLinear(p, kind, { kind: 'b1l64', m: lw }, M, K, quant);
        lin.rowScale = lw.rowScale ?? null;
      }
      lin.colScale = sib.colScale;
      lin.colBias = sib.colBias;
      return lin;
    });
  };

  let linearTotal = 0;
  for (let l = 0; l < nLayer; l++) {
    const sub = (name: string, n: number) => {
      if (tt.has(name) || row.subNorms === 'required') return tt.vector(name, n);
      return null;
    };
    const layer: LayerWeights = {
      attnNorm: tt.vector(TENSORS.attnNorm(l), d),
      attnSubNorm: sub(TENSORS.attnSubNorm(l), d),
      ffnNorm: tt.vector(TENSORS.ffnNorm(l), d),
      ffnSubNorm: sub(TENSORS.ffnSubNorm(l), ff),
      wqkv: loadGroup(l, groups.wqkv),
      wo: loadGroup(l, groups.wo),
      wgu: loadGroup(l, groups.wgu),
      wdown: loadGroup(l, groups.wdown),
    };
    for (const g of [layer.wqkv, layer.wo, layer.wgu, layer.wdown]) for (const lin of g) linearTotal += linearBytes(lin);
    layers.push(layer);
    // The file's copy of these projections is not read again: let the kernel drop its pages.
    for (const p of PROJECTIONS) {
      const t = file.tensors.find((x) => x.name === TENSORS.weight(l, p))!;
      advise(file.bytes.buffer as ArrayBuffer, file.bytes.byteOffset + t.offset, t.nbytes, 'dontneed');
    }
    opts.onProgress?.(l + 1, nLayer);
  }
  // Everything the forward reads now lives outside the file mapping (norms are copies), except a zero-copy
  // F16 head: drop the mapping's pages but that head's. Small tensors read at load (norms, scales) would
  // otherwise stay mapped, and where the page cache holds the file in 2 MiB folios each maps 2 MiB
  // (~120 MB of RSS for the 2B-4T files). Dropping is always safe: a read-only private mapping refaults.
  const keep = [tokEmbd, output].filter(inFile)
    .map((m) => [m.m.data.byteOffset - file.bytes.byteOffset, m.m.data.byteOffset - file.bytes.byteOffset + m.m.data.byteLength] as const)
    .sort((x, y) => x[0] - y[0]);
  let from = 0;
  for (const [b, e] of [...keep, [file.bytes.byteLength, file.bytes.byteLength] as const]) {
    if (b > from) advise(file.bytes.buffer as ArrayBuffer, file.bytes.byteOffset + from, b - from, 'dontneed');
    from = Math.max(from, e);
  }
  // Repacking left freed temporaries in the allocator's heap: give those pages back.
  binding<() => boolean>('releaseFreeMemory')();
  return { tokEmbd, outputNorm, output, layers, bytesPerToken: linearTotal + headBytes(output), layout };
}
