// Looks up, validates and repacks the tensors of a BitNet-family GGUF into kernel layouts.
// Ternary projections become T2R16 (fused where they share an input: q|k|v, gate|up); norms are
// float views; the token embedding stays a zero-copy F16 view (or a Q8R16 repack; Q6_K / BF16 are
// dequantized to either) and doubles as the lm_head when the file has no output.weight.
import { ModelFormatError } from '../errors.js';
import { Q6_K_BLOCK_BYTES, QK_K, dequantizeBF16, dequantizeQ6K, floatsToHalves } from '../format/dequant.js';
import type { GgufFile, GgufTensorInfo } from '../format/gguf.js';
import { GGML } from '../format/types.js';
import { type KernelContext, WeightArena, hugePagesEnabled, weightBytes } from '../kernels/context.js';
import { type F16Matrix, type Q4Matrix, type Q8Matrix, q4Bytes, q8Bytes, repackQ4, repackQ8 } from '../kernels/dense.js';
import { ScaleMode, type TernaryMatrix, repackTernary, repackTernaryF32 } from '../kernels/ternary.js';
import { type TernaryTd3Matrix, ternaryToTd3 } from '../kernels/td3.js';
import { td3WeightBytes } from '../reference/td3.js';
import { binding } from '../native.js';
import { halfToFloat } from '../reference/numeric.js';
import { SCALE_BLOCK_K, T2_ROWS, scaleCount, t2CodeBytes, t2Tiles } from '../reference/ternary.js';
import type { BitnetConfig } from './config.js';

export type HeadMatrix = { kind: 'f16'; m: F16Matrix } | { kind: 'q8'; m: Q8Matrix } | { kind: 'q4'; m: Q4Matrix };
export type HeadType = HeadMatrix['kind'];

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

export interface BitnetLayer {
  attnNorm: Float32Array; // [nEmbd]
  attnSubNorm: Float32Array; // [nEmbd]
  ffnNorm: Float32Array; // [nEmbd]
  ffnSubNorm: Float32Array; // [nFf]
  wqkv: TernaryWeight; // [nEmbd + 2 nKv, nEmbd]: q rows, then k, then v
  wo: TernaryWeight; // [nEmbd, nEmbd]
  wgu: TernaryWeight; // [2 nFf, nEmbd]: gate rows, then up
  wdown: TernaryWeight; // [nEmbd, nFf]
}

export interface BitnetWeights {
  tokEmbd: HeadMatrix; // [nVocab, nEmbd]
  outputNorm: Float32Array; // [nEmbd]
  output: HeadMatrix; // lm_head [nVocab, nEmbd] (token_embd when tied)
  layers: BitnetLayer[];
  /** Bytes of weights one decode step reads (ternary layers + head). */
  bytesPerToken: number;
  /** In-memory layout of the ternary projections. */
  layout: 't2r16' | 'td3';
}

export interface LoadWeightsOptions {
  /** Called after each layer is repacked: `done` of `total` layers. */
  onProgress?: (done: number, total: number) => void;
  /** lm_head / embedding storage: keep F16, or repack to q8 (per-32-block int8) or q4 (per-32-block 4-bit). */
  headType?: HeadType;
  /** In-memory layout of the ternary projections (default 'auto'). */
  layout?: TernaryLayout;
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
  vector(name: string, n: number): Float32Array {
    const t = this.get(name, [n])!;
    const b = this.bytes(t);
    // A copy, never a view: nothing the forward reads may keep file pages mapped (see loadBitnetWeights).
    if (t.type === GGML.F32) return new Float32Array(b.slice().buffer);
    if (t.type === GGML.F16) {
      const h = new Uint16Array(b.slice().buffer);
      return Float32Array.from(h, halfToFloat);
    }
    return this.fail(name, `type ${t.typeName} is not supported for a norm weight (F32 or F16)`);
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
  // Parts repacked straight into consecutive slices of one buffer (loadBitnetWeights does) need no copy.
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

function loadHead(ctx: KernelContext, tt: TensorTable, name: string, cfg: BitnetConfig, headType: HeadType, optional: boolean): HeadMatrix | undefined {
  const t = tt.get(name, [cfg.nEmbd, cfg.nVocab], optional);
  if (!t) return undefined;
  const src = tt.bytes(t);
  const M = cfg.nVocab;
  const K = cfg.nEmbd;
  if (t.type === GGML.F16) {
    const halves = () => ((src.byteOffset & 1) === 0 ? new Uint16Array(src.buffer, src.byteOffset, M * K) : new Uint16Array(src.slice().buffer));
    if (headType === 'q8') return { kind: 'q8', m: repackQ8(ctx, 'f16', halves(), M, K, name, weightBytes) };
    if (headType === 'q4') return { kind: 'q4', m: repackQ4(ctx, 'f16', halves(), M, K, name, weightBytes) };
    if (hugePagesEnabled()) {
      // The decode GEMV streams this matrix once per token. Copied into huge-page memory it streams
      // ~10 % faster than through the file mapping's 4 KiB pages (docs/benchmarks.md); the file's pages
      // are dropped below, so resident memory stays the same.
      const copy = weightBytes(M * K * 2);
      copy.set(src.subarray(0, M * K * 2));
      return { kind: 'f16', m: { data: new Uint16Array(copy.buffer, copy.byteOffset, M * K), M, K } };
    }
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
    return dequantHead(ctx, t.type === GGML.Q6_K ? 'q6_k' : 'bf16', src, M, K, headType, name);
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
  headType: HeadType, name = 'tensor', chunkRows = DEQUANT_CHUNK_ROWS): HeadMatrix {
  if (!(Number.isInteger(chunkRows) && chunkRows > 0 && chunkRows % 16 === 0)) throw new RangeError(`dequantHead: chunkRows = ${chunkRows} must be a positive multiple of 16`);
  const rowBytes = type === 'q6_k' ? (K / QK_K) * Q6_K_BLOCK_BYTES : K * 2;
  if (src.byteLength < M * rowBytes) throw new ModelFormatError(`${name}: ${src.byteLength} bytes hold fewer than ${M} rows`);
  const rows = Math.min(chunkRows, M);
  const f = new Float32Array(rows * K); // [rows, K] one chunk, reused
  const hb = headType === 'f16' ? weightBytes(M * K * 2) : undefined;
  const halves = hb ? new Uint16Array(hb.buffer, hb.byteOffset, M * K) : undefined; // [M, K]
  const q8 = headType === 'q8' ? weightBytes(q8Bytes(M, K)) : undefined; // Q8R16 [ceil(M/16) * K/32 * 544]
  const q4 = headType === 'q4' ? weightBytes(q4Bytes(M, K)) : undefined; // Q4R16 [ceil(M/16) * K/32 * 288]
  for (let r0 = 0; r0 < M; r0 += rows) {
    const n = Math.min(rows, M - r0);
    const bytes = src.subarray(r0 * rowBytes, (r0 + n) * rowBytes);
    const chunk = type === 'q6_k' ? dequantizeQ6K(bytes, n * K, f) : dequantizeBF16(bytes, n * K, f);
    if (halves) {
      const bad = floatsToHalves(chunk, halves.subarray(r0 * K, (r0 + n) * K), n * K);
      if (bad > 0) throw new ModelFormatError(`${name}: ${bad} values in rows ${r0}..${r0 + n - 1} are not finite in F16 (load with the q8 head type)`);
    } else if (q8) {
      const part = repackQ8(ctx, 'f32', chunk.subarray(0, n * K), n, K, name);
      q8.set(part.data, q8Bytes(r0, K));
    } else {
      const part = repackQ4(ctx, 'f32', chunk.subarray(0, n * K), n, K, name);
      q4!.set(part.data, q4Bytes(r0, K));
    }
  }
  if (halves) return { kind: 'f16', m: { data: halves, M, K } };
  return q8 ? { kind: 'q8', m: { data: q8, M, K } } : { kind: 'q4', m: { data: q4!, M, K } };
}

function headBytes(h: HeadMatrix): number {
  return h.m.data.byteLength;
}

export function loadBitnetWeights(ctx: KernelContext, file: GgufFile, cfg: BitnetConfig, opts: LoadWeightsOptions = {}): BitnetWeights {
  const tt = new TensorTable(file);
  const headType = opts.headType ?? 'f16';
  const layout = resolveLayout(ctx, opts.layout ?? 'auto');
  // For TD3 every T2R16 matrix is only a stepping stone: repack into one reused buffer (no fresh pages
  // to fault in and no garbage per matrix), pack TD3 from it, reuse it for the next.
  let scratch = new Uint8Array(0);
  const t2Scratch = (n: number): Uint8Array => {
    if (scratch.length < n) scratch = new Uint8Array(n);
    return scratch.subarray(0, n);
  };
  const { nEmbd: d, nFf: ff, nHeadKv, headDim, nLayer } = cfg;
  const dkv = nHeadKv * headDim;
  // Every repacked layer matrix is carved from one block (WeightArena), sized here from the shapes.
  const matrixBytes = (M: number, K: number) => (layout === 'td3' ? td3WeightBytes(M, K) : t2CodeBytes(M, K));
  // Fused q|k|v and gate|up (T2R16 stacks along M by concatenation, so the parts sum to the fused size).
  const layerBytes = [matrixBytes(d + 2 * dkv, d), matrixBytes(d, d), matrixBytes(2 * ff, d), matrixBytes(d, ff)];
  const arena = new WeightArena(nLayer * layerBytes.reduce((a, n) => a + WeightArena.slot(n), 0));
  const tokEmbd = loadHead(ctx, tt, 'token_embd.weight', cfg, headType, false)!;
  const output = loadHead(ctx, tt, 'output.weight', cfg, headType, true) ?? tokEmbd;
  const outputNorm = tt.vector('output_norm.weight', d);
  const layers: BitnetLayer[] = [];
  const advise = binding<(b: ArrayBuffer, o: number, l: number, a: string) => void>('adviseMapping');
  // An F16 head read straight from the mapping (BITLLM_HUGE_PAGES=0); any other head is a copy or a repack.
  const inFile = (m: HeadMatrix) => m.kind === 'f16' && m.m.data.buffer === file.bytes.buffer;
  // A head copied or repacked never reads the file's copy again: drop its pages now, so they are not
  // resident next to the copy while the layers load (the whole mapping is dropped again at the end).
  for (const [name, m] of [['token_embd.weight', tokEmbd], ['output.weight', output]] as const) {
    const t = file.tensors.find((x) => x.name === name);
    if (t && !inFile(m)) advise(file.bytes.buffer as ArrayBuffer, file.bytes.byteOffset + t.offset, t.nbytes, 'dontneed');
  }
  let ternaryBytes = 0;
  for (let l = 0; l < nLayer; l++) {
    const p = `blk.${l}.`;
    const canFuse = d % T2_ROWS === 0 && dkv % T2_ROWS === 0 && ff % T2_ROWS === 0;
    if (!canFuse) throw new ModelFormatError(`${file.source}: layer ${l}: projection sizes (${d}, ${dkv}, ${ff}) must be multiples of 16`);
    const tern = (n: string, M: number, K: number, out?: Uint8Array) => loadTernary(ctx, tt, `${p}${n}.weight`, M, K, out);
    // Fused matrices are repacked part by part straight into one buffer (T2R16 stacks along M by
    // concatenation): no per-part buffers to copy and leave behind as garbage.
    const slices = (K: number, Ms: number[]) => {
      const n = Ms.reduce((a, M) => a + t2CodeBytes(M, K), 0);
      const buf = layout === 'td3' ? t2Scratch(n) : arena.alloc(n);
      let o = 0;
      return Ms.map((M) => buf.subarray(o, (o += t2CodeBytes(M, K))));
    };
    // TD3 is packed from the T2R16 matrices (same trits, same scales). Each matrix is placed before the
    // next is repacked: with TD3 they all pass through the same scratch buffer.
    const place = (w: TernaryMatrix): TernaryWeight => (layout === 'td3' ? ternaryToTd3(ctx, w, arena.alloc) : w);
    const [qs, ks, vs] = slices(d, [d, dkv, dkv]);
    const wqkv = place(fuseTernary([tern('attn_q', d, d, qs), tern('attn_k', dkv, d, ks), tern('attn_v', dkv, d, vs)]));
    const wo = place(tern('attn_output', d, d, layout === 'td3' ? t2Scratch(t2CodeBytes(d, d)) : arena.alloc(t2CodeBytes(d, d))));
    const [gs, us] = slices(d, [ff, ff]);
    const wgu = place(fuseTernary([tern('ffn_gate', ff, d, gs), tern('ffn_up', ff, d, us)]));
    const wdown = place(tern('ffn_down', d, ff, layout === 'td3' ? t2Scratch(t2CodeBytes(d, ff)) : arena.alloc(t2CodeBytes(d, ff))));
    const layer: BitnetLayer = {
      attnNorm: tt.vector(`${p}attn_norm.weight`, d),
      attnSubNorm: tt.vector(`${p}attn_sub_norm.weight`, d),
      ffnNorm: tt.vector(`${p}ffn_norm.weight`, d),
      ffnSubNorm: tt.vector(`${p}ffn_sub_norm.weight`, ff),
      wqkv, wo, wgu, wdown,
    };
    for (const m of [layer.wqkv, layer.wo, layer.wgu, layer.wdown]) ternaryBytes += isTd3(m) ? m.data.byteLength : m.codes.byteLength;
    layers.push(layer);
    // The file's copy of these projections is not read again: let the kernel drop its pages.
    for (const n of ['attn_q', 'attn_k', 'attn_v', 'attn_output', 'ffn_gate', 'ffn_up', 'ffn_down']) {
      const t = file.tensors.find((x) => x.name === `${p}${n}.weight`)!;
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
  return { tokEmbd, outputNorm, output, layers, bytesPerToken: ternaryBytes + headBytes(output), layout };
}
