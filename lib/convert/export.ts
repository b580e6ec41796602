// Packs a model trained by train/ (export.safetensors: inference tensors named as in GGUF, see
// train/evaluate.py) and its SentencePiece tokenizer into a GGUF with our GgufWriter and codecs.
// Encodings per family (docs/DESIGN.md §8; M = out, K = in, GGUF dims [K, M]):
//   b158    bitnet-b1.58 + I2_S (scale in the tail), or bitnet + TQ2_0/TQ1_0 (scale in every block)
//   a48     bitnet-a4.8 + TQ2_0/TQ1_0 (I2_S's id 36 means I2_S only under bitnet.cpp's architectures)
//   bitnet  bitnet-1bit + Q1_0 (d = β in every block)
//   fbi     fbi-llm + Q1_0 (d = 1), <p>.alpha and <p>.beta F32 [K]
//   onebit  onebit + Q1_0 (d = 1), <p>.in_scale F32 [K] (g), <p>.out_scale F32 [M] (h)
//   fp16    bitnet-f16 + F16 projections (the full-precision teacher)
// Everything shares token_embd (F16, tied head), output_norm and the four norms per layer (F32).
// The Mamba-2 families (train/mamba2.py) are written in lib/model/mamba2.ts's layout (buildMamba2Gguf):
//   bimamba  bi-mamba + Q1_0 (d = 1) ssm_in / ssm_out, <p>.alpha and <p>.beta F32 [K]
//   mamba2   mamba2 (llama.cpp's name) + F16 ssm_in / ssm_out (the full-precision Mamba-2 teacher)
//   hybrid   bi-mamba-hybrid: bimamba's layers, with attention layers (attn_q/k/v/output Q1_0 d = 1 + alpha/beta F32 [K])
//            where the per-layer bi-mamba-hybrid.attention.head_count_kv array is non-zero
import { createHash } from 'node:crypto';
import { readFileSync, renameSync } from 'node:fs';

import { ModelFormatError } from '../errors.js';
import { GgufType, GgufWriter } from '../format/gguf.js';
import { encodeI2S, encodeTQ1, encodeTQ2, QK_K } from '../format/ternary.js';
import { GGML } from '../format/types.js';
import { floatToHalf, halfToFloat } from '../reference/numeric.js';
import { encodeQ1_0, QK1_0 } from './q1_0.js';
import { LINEAR_KIND_SPECS, PROJECTIONS, type Projection, archRow } from '../model/arch.js';
import { type SafeTensor, type SafetensorsFile, tensorValues } from './safetensors.js';
import { type SpmModelFile, writeSpmTokenizer } from './spm-model.js';

/** A GGUF writer with the general keys written (architecture, name, description) and the `<arch>.` key prefixer. */
function ggufHeader(arch: string, name: string, description?: string): { w: GgufWriter; key: (k: string) => string } {
  const w = new GgufWriter();
  w.string('general.architecture', arch);
  w.string('general.name', name);
  if (description) w.string('general.description', description);
  return { w, key: (k: string) => `${arch}.${k}` };
}

export type Family = 'fp16' | 'b158' | 'bitnet' | 'fbi' | 'onebit' | 'a48' | 'mamba2' | 'bimamba' | 'hybrid';
export const FAMILIES: readonly Family[] = ['fp16', 'b158', 'bitnet', 'fbi', 'onebit', 'a48', 'mamba2', 'bimamba', 'hybrid'];
/** The families of the Mamba-2 block (train/mamba2.py): their config is a Mamba2TrainedConfig. */
export const MAMBA2_FAMILIES: readonly Family[] = ['mamba2', 'bimamba', 'hybrid'];
export type ExportType = 'i2_s' | 'tq2_0' | 'tq1_0' | 'q1_0' | 'f16';

/** Hyperparameters as train/model.py's Config writes them. */
export interface TrainedConfig {
  vocab: number;
  d: number;
  n_layer: number;
  n_head: number;
  n_head_kv: number;
  ff: number;
  ctx: number;
  rope_theta: number;
  eps: number;
  /** 'bitnet' (default): sub-norms, ReLU² GLU, tied head; 'llama': upstream FBI-LLM / OneBit (none, SiLU, untied). */
  block?: 'bitnet' | 'llama';
  /**
   * Overrides of the block's defaults, for checkpoints that mix them (`bitllm convert`: 1bitLLM has the
   * sub-norms with SiLU and an untied head). Absent: what `block` implies.
   */
  sub_norms?: boolean;
  hidden_act?: 'relu2' | 'silu';
  tied_head?: boolean;
}

/** Hyperparameters of the Mamba-2 families as train/mamba2.py's Mamba2Config writes them. */
export interface Mamba2TrainedConfig {
  block: 'mamba2';
  vocab: number;
  d_model: number;
  n_layer: number;
  d_inner: number;
  d_state: number;
  /** SSM heads (time_step_rank); head_dim = d_inner / n_head. */
  n_head: number;
  n_group: number;
  d_conv: number;
  ctx: number;
  /** The block and final RMSNorms. */
  eps: number;
  /** The gated RMSNorm. */
  norm_eps: number;
  /** The hybrid (train/mamba2.py HybridConfig): the attention layers (0-based), the rest Mamba-2. */
  attn_layers?: number[];
  /** The hybrid's query heads (head size d_model / attn_head). */
  attn_head?: number;
  /** The hybrid's KV heads (GQA). */
  attn_head_kv?: number;
  /** The hybrid's NEOX RoPE base. */
  rope_theta?: number;
}

export type AnyTrainedConfig = TrainedConfig | Mamba2TrainedConfig;

export const isMamba2Config = (c: AnyTrainedConfig): c is Mamba2TrainedConfig => (c as { block?: string }).block === 'mamba2';


/** Types each family can be written as; the first is the default. */
export const FAMILY_TYPES: Readonly<Record<Family, readonly ExportType[]>> = {
  b158: ['i2_s', 'tq2_0', 'tq1_0'], a48: ['tq2_0', 'tq1_0'], bitnet: ['q1_0'], fbi: ['q1_0'], onebit: ['q1_0'], fp16: ['f16'],
  bimamba: ['q1_0'], mamba2: ['f16'], hybrid: ['q1_0'],
};

export function architectureOf(family: Family, type: ExportType): string {
  switch (family) {
    case 'b158': return type === 'i2_s' ? 'bitnet-b1.58' : 'bitnet';
    case 'a48': return 'bitnet-a4.8';
    case 'bitnet': return 'bitnet-1bit';
    case 'fbi': return 'fbi-llm';
    case 'onebit': return 'onebit';
    case 'fp16': return 'bitnet-f16';
    case 'mamba2': return 'mamba2';
    case 'bimamba': return 'bi-mamba';
    case 'hybrid': return 'bi-mamba-hybrid';
  }
}

/** general.file_type: llama.cpp's LLAMA_FTYPE values where one exists (MOSTLY_F16 1, TQ1_0 36, TQ2_0 37; bitnet.cpp I2_S 40). */
const FILE_TYPE: Partial<Record<ExportType, number>> = { f16: 1, tq1_0: 36, tq2_0: 37, i2_s: 40 };

/** A tokenizer section other than a SentencePiece model (`bitllm convert`: tokenizer.json's BPE). */
export interface TokenizerSection {
  /** Number of tokens it writes (must equal the model's vocabulary). */
  readonly size: number;
  write(w: GgufWriter): void;
}

export interface ExportOptions {
  family: Family;
  config: AnyTrainedConfig;
  tensors: SafetensorsFile;
  tokenizer: SpmModelFile | TokenizerSection;
  /** Default: the family's first type in FAMILY_TYPES. */
  type?: ExportType;
  name?: string;
  description?: string;
}

export interface ExportSummary {
  arch: string;
  type: ExportType;
  tensors: number;
}

function shapeOf(cfg: TrainedConfig, p: Projection): [number, number] {
  const dkv = cfg.n_head_kv * (cfg.d / cfg.n_head);
  const M = { attn_q: cfg.d, attn_k: dkv, attn_v: dkv, attn_output: cfg.d, ffn_gate: cfg.ff, ffn_up: cfg.ff, ffn_down: cfg.d }[p];
  const K = p === 'ffn_down' ? cfg.ff : cfg.d;
  return [M, K];
}

class Source {
  constructor(readonly file: SafetensorsFile) {}
  get(name: string, dtype: SafeTensor['dtype'], shape: number[]): SafeTensor {
    const t = this.file.tensors.get(name);
    if (!t) throw new ModelFormatError(`${this.file.source}: missing tensor '${name}'`);
    if (t.dtype !== dtype) throw new ModelFormatError(`${this.file.source}: tensor '${name}' is ${t.dtype}, expected ${dtype}`);
    if (t.shape.length !== shape.length || t.shape.some((d, i) => d !== shape[i]))
      throw new ModelFormatError(`${this.file.source}: tensor '${name}' has shape [${t.shape.join(', ')}], expected [${shape.join(', ')}]`);
    return t;
  }
  f32(name: string, shape: number[]): Float32Array {
    return tensorValues(this.get(name, 'F32', shape)) as Float32Array;
  }
  codes(name: string, M: number, K: number, allowZero: boolean): Int8Array {
    const v = tensorValues(this.get(name, 'I8', [M, K])) as Int8Array;
    for (let i = 0; i < v.length; i++) {
      const c = v[i]!;
      if (c > 1 || c < -1 || (!allowZero && c === 0))
        throw new ModelFormatError(`${this.file.source}: tensor '${name}' element ${i} is ${c}, not ${allowZero ? 'a trit' : '±1'}`);
    }
    return v;
  }
  scale(name: string, needHalf: boolean): number {
    const s = this.f32(name, [1])[0]!;
    if (!(Number.isFinite(s) && s > 0)) throw new ModelFormatError(`${this.file.source}: tensor '${name}' = ${s} is not a positive scale`);
    if (needHalf && halfToFloat(floatToHalf(s)) !== s)
      throw new ModelFormatError(`${this.file.source}: tensor '${name}' = ${s} is not an F16 value; the F16 block scales would differ from the trained model's`);
    return s;
  }
}

function bytesOf(a: ArrayBufferView): Uint8Array {
  return new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
}

function checkConfig(cfg: TrainedConfig): void {
  const ints = ['vocab', 'd', 'n_layer', 'n_head', 'n_head_kv', 'ff', 'ctx'] as const;
  for (const k of ints) if (!Number.isInteger(cfg[k]) || cfg[k] < 1) throw new ModelFormatError(`config.${k} = ${cfg[k]} is not a positive integer`);
  if (cfg.d % cfg.n_head !== 0 || cfg.n_head % cfg.n_head_kv !== 0) throw new ModelFormatError(`config: d ${cfg.d}, heads ${cfg.n_head}, kv heads ${cfg.n_head_kv} do not divide`);
  if (!(cfg.eps > 0) || !(cfg.rope_theta > 0)) throw new ModelFormatError('config: eps and rope_theta must be positive');
  if (cfg.block !== undefined && cfg.block !== 'bitnet' && cfg.block !== 'llama') throw new ModelFormatError(`config.block = '${String(cfg.block)}' is not bitnet or llama`);
  if (cfg.hidden_act !== undefined && cfg.hidden_act !== 'relu2' && cfg.hidden_act !== 'silu') throw new ModelFormatError(`config.hidden_act = '${String(cfg.hidden_act)}' is not relu2 or silu`);
}

/** The block's layout: sub-norms, FFN activation, head (explicit fields override what `block` implies). */
export function blockLayout(cfg: TrainedConfig): { subNorms: boolean; activation: 'relu2' | 'silu'; tiedHead: boolean } {
  const llama = cfg.block === 'llama';
  return { subNorms: cfg.sub_norms ?? !llama, activation: cfg.hidden_act ?? (llama ? 'silu' : 'relu2'), tiedHead: cfg.tied_head ?? !llama };
}

/** Builds the GGUF (metadata, tokenizer, tensors) of a trained model. */
export function buildGguf(opts: ExportOptions): { writer: GgufWriter; summary: ExportSummary } {
  const { family, config: anyCfg, tokenizer } = opts;
  if (!FAMILIES.includes(family)) throw new ModelFormatError(`unknown family '${String(family)}' (one of ${FAMILIES.join(', ')})`);
  const type = opts.type ?? FAMILY_TYPES[family][0]!;
  if (!FAMILY_TYPES[family].includes(type))
    throw new ModelFormatError(`family ${family} cannot be written as ${type} (${FAMILY_TYPES[family].join(', ')})`);
  if (MAMBA2_FAMILIES.includes(family) !== isMamba2Config(anyCfg))
    throw new ModelFormatError(`family ${family} needs a ${MAMBA2_FAMILIES.includes(family) ? 'Mamba-2' : 'transformer'} config (config.block = '${String((anyCfg as { block?: string }).block)}')`);
  if (isMamba2Config(anyCfg)) return buildMamba2Gguf(opts, anyCfg, type);
  const cfg = anyCfg;
  checkConfig(cfg);
  const tokens = 'pieces' in tokenizer ? tokenizer.pieces.length : tokenizer.size;
  if (tokens !== cfg.vocab) throw new ModelFormatError(`tokenizer has ${tokens} pieces, the model ${cfg.vocab} embeddings`);
  const src = new Source(opts.tensors);
  const arch = architectureOf(family, type);
  const hd = cfg.d / cfg.n_head;

  const { w, key } = ggufHeader(arch, opts.name ?? `bitllm-tiny-${family}`, opts.description);
  w.u32(key('vocab_size'), cfg.vocab);
  w.u32(key('context_length'), cfg.ctx);
  w.u32(key('embedding_length'), cfg.d);
  w.u32(key('block_count'), cfg.n_layer);
  w.u32(key('feed_forward_length'), cfg.ff);
  w.u32(key('rope.dimension_count'), hd);
  w.u32(key('attention.head_count'), cfg.n_head);
  w.u32(key('attention.head_count_kv'), cfg.n_head_kv);
  w.f32(key('attention.layer_norm_rms_epsilon'), cfg.eps);
  w.f32(key('rope.freq_base'), cfg.rope_theta);
  const layout = blockLayout(cfg);
  w.string(key('hidden_activation'), layout.activation);
  // The row's extra keys, with the values train/model.py trains with.
  const row = archRow(arch);
  if (row.extraKeys.includes('linear_norm_epsilon')) w.f32(key('linear_norm_epsilon'), 1e-5);
  if (row.extraKeys.includes('attn_output.topk_ratio')) w.f32(key('attn_output.topk_ratio'), 0.5);
  if (row.extraKeys.includes('kv_bits')) w.u32(key('kv_bits'), 3);
  if (FILE_TYPE[type] !== undefined) w.u32('general.file_type', FILE_TYPE[type]!);
  if ('pieces' in tokenizer) writeSpmTokenizer(w, tokenizer);
  else tokenizer.write(w);
  w.u32('general.quantization_version', 2);

  const embd = src.get('token_embd.weight', 'F16', [cfg.vocab, cfg.d]);
  w.addTensor('token_embd.weight', [cfg.d, cfg.vocab], GGML.F16, embd.data.slice());
  const norm = (name: string, n: number) => w.addTensor(name, [n], GGML.F32, bytesOf(src.f32(name, [n])));
  if (!layout.tiedHead) w.addTensor('output.weight', [cfg.d, cfg.vocab], GGML.F16, src.get('output.weight', 'F16', [cfg.vocab, cfg.d]).data.slice());
  norm('output_norm.weight', cfg.d);
  const proj = (p: string, M: number, K: number, kind: Projection) => {
    const name = `${p}${kind}.weight`;
    const base = `${p}${kind}.`;
    const linear = row.linears[kind].kind;
    switch (linear) {
      case 'f16':
        w.addTensor(name, [K, M], GGML.F16, src.get(name, 'F16', [M, K]).data.slice());
        return;
      case 'ternary': {
        if (type !== 'i2_s' && K % QK_K !== 0) throw new ModelFormatError(`${name}: K = ${K} is not a multiple of ${QK_K}; ${type} cannot hold it`);
        const trits = src.codes(name, M, K, true);
        const s = src.scale(`${base}scale`, type !== 'i2_s');
        if (type === 'i2_s') w.addTensor(name, [K, M], GGML.I2_S, encodeI2S(trits, M, K, s));
        else {
          const scales = new Float32Array(M * (K / QK_K)).fill(s);
          w.addTensor(name, [K, M], type === 'tq2_0' ? GGML.TQ2_0 : GGML.TQ1_0, type === 'tq2_0' ? encodeTQ2(trits, M, K, scales) : encodeTQ1(trits, M, K, scales));
        }
        return;
      }
      case 'sign': case 'sign-col': case 'sign-gh-ln': {
        if (K % QK1_0 !== 0) throw new ModelFormatError(`${name}: K = ${K} is not a multiple of ${QK1_0}; Q1_0 cannot hold it`);
        const signs = src.codes(name, M, K, false);
        // A lone sign kind carries its scale in the Q1_0 blocks; the others scale through their siblings.
        const d = linear === 'sign' ? src.scale(`${base}scale`, true) : 1;
        w.addTensor(name, [K, M], GGML.Q1_0, encodeQ1_0(signs, M, K, d));
        for (const s of LINEAR_KIND_SPECS[linear].siblings) {
          const n = s.length === 'K' ? K : M;
          w.addTensor(`${base}${s.suffix}`, [n], GGML.F32, bytesOf(src.f32(`${base}${s.suffix}`, [n])));
        }
        return;
      }
    }
  };
  for (let l = 0; l < cfg.n_layer; l++) {
    const p = `blk.${l}.`;
    const P = (kind: Projection) => proj(p, ...shapeOf(cfg, kind), kind);
    norm(`${p}attn_norm.weight`, cfg.d);
    P('attn_q'); P('attn_k'); P('attn_v'); P('attn_output');
    if (layout.subNorms) norm(`${p}attn_sub_norm.weight`, cfg.d);
    norm(`${p}ffn_norm.weight`, cfg.d);
    P('ffn_gate'); P('ffn_up'); P('ffn_down');
    if (layout.subNorms) norm(`${p}ffn_sub_norm.weight`, cfg.ff);
  }
  const perLayer = PROJECTIONS.reduce((a, p) => a + 1 + LINEAR_KIND_SPECS[row.linears[p].kind].siblings.length, 0);
  const count = (layout.tiedHead ? 2 : 3) + cfg.n_layer * ((layout.subNorms ? 4 : 2) + perLayer);
  return { writer: w, summary: { arch, type, tensors: count } };
}

export interface WrittenModel extends ExportSummary {
  path: string;
  bytes: number;
  sha256: string;
}

/** Writes the GGUF to `out` (atomically: a temporary name, then rename). */
export function exportGguf(opts: ExportOptions & { out: string }): WrittenModel {
  const { writer, summary } = buildGguf(opts);
  const tmp = `${opts.out}.partial-${process.pid}`;
  writer.write(tmp);
  renameSync(tmp, opts.out);
  const bytes = readFileSync(opts.out);
  return { ...summary, path: opts.out, bytes: bytes.byteLength, sha256: createHash('sha256').update(bytes).digest('hex') };
}

/** Reads train/'s config JSON (the `config` of run.json or of the safetensors metadata). */
export function parseTrainedConfig(json: string | object): AnyTrainedConfig {
  const c = (typeof json === 'string' ? JSON.parse(json) : json) as AnyTrainedConfig;
  if (isMamba2Config(c)) checkMamba2Config(c);
  else checkConfig(c);
  return c;
}

// ---------------------------------------------------------------- the Mamba-2 families

function checkMamba2Config(cfg: Mamba2TrainedConfig): void {
  const ints = ['vocab', 'd_model', 'n_layer', 'd_inner', 'd_state', 'n_head', 'n_group', 'd_conv', 'ctx'] as const;
  for (const k of ints) if (!Number.isInteger(cfg[k]) || cfg[k] < 1) throw new ModelFormatError(`config.${k} = ${cfg[k]} is not a positive integer`);
  if (cfg.d_inner % cfg.n_head !== 0) throw new ModelFormatError(`config: d_inner ${cfg.d_inner} is not a multiple of n_head ${cfg.n_head}`);
  if (cfg.n_head % cfg.n_group !== 0) throw new ModelFormatError(`config: n_head ${cfg.n_head} is not a multiple of n_group ${cfg.n_group}`);
  for (const k of ['eps', 'norm_eps'] as const) if (!(cfg[k] > 0 && cfg[k] < 1)) throw new ModelFormatError(`config.${k} = ${cfg[k]} is out of range`);
  if (cfg.attn_layers === undefined) return;
  const layers = cfg.attn_layers;
  if (!Array.isArray(layers) || layers.some((l) => !Number.isInteger(l) || l < 0 || l >= cfg.n_layer) || new Set(layers).size !== layers.length)
    throw new ModelFormatError(`config.attn_layers = ${JSON.stringify(layers)} is not a list of distinct layers below n_layer ${cfg.n_layer}`);
  for (const k of ['attn_head', 'attn_head_kv'] as const)
    if (!Number.isInteger(cfg[k]) || cfg[k]! < 1) throw new ModelFormatError(`config.${k} = ${cfg[k]} is not a positive integer`);
  if (cfg.d_model % cfg.attn_head! !== 0 || cfg.attn_head! % cfg.attn_head_kv! !== 0 || (cfg.d_model / cfg.attn_head!) % 2 !== 0)
    throw new ModelFormatError(`config: d_model ${cfg.d_model}, attn_head ${cfg.attn_head}, attn_head_kv ${cfg.attn_head_kv} do not divide (or the head size is odd)`);
  if (!(cfg.rope_theta! > 0)) throw new ModelFormatError(`config.rope_theta = ${cfg.rope_theta} must be positive`);
}

/**
 * The GGUF of a Mamba-2 family in lib/model/mamba2.ts's layout: `bi-mamba` (FBI-linear in/out projections: Q1_0
 * signs with d = 1, α and β F32 [K]), `mamba2` (F16 in/out projections, no α/β) or `bi-mamba-hybrid` (bi-mamba's
 * layers, and attention layers with FBI-linear attn_q/k/v/output, as synthMamba2Gguf's `hybrid` writes them).
 * Source tensors as train/evaluate.py's export_mamba_tensors names them ([M, K] matrices, conv [convDim, d_conv],
 * vectors).
 */
function buildMamba2Gguf(opts: ExportOptions, cfg: Mamba2TrainedConfig, type: ExportType): { writer: GgufWriter; summary: ExportSummary } {
  checkMamba2Config(cfg);
  const { family, tokenizer } = opts;
  const tokens = 'pieces' in tokenizer ? tokenizer.pieces.length : tokenizer.size;
  if (tokens !== cfg.vocab) throw new ModelFormatError(`tokenizer has ${tokens} pieces, the model ${cfg.vocab} embeddings`);
  const src = new Source(opts.tensors);
  const arch = architectureOf(family, type);
  const dense = family === 'mamba2';
  const hybrid = family === 'hybrid';
  if (hybrid !== (cfg.attn_layers !== undefined))
    throw new ModelFormatError(`family ${family} ${hybrid ? 'needs' : 'cannot have'} config.attn_layers (the hybrid's attention layers)`);
  const isAttn = (l: number) => cfg.attn_layers?.includes(l) ?? false;
  const convDim = cfg.d_inner + 2 * cfg.n_group * cfg.d_state;
  const inDim = 2 * cfg.d_inner + 2 * cfg.n_group * cfg.d_state + cfg.n_head;

  const { w, key } = ggufHeader(arch, opts.name ?? `bitllm-tiny-${family}`, opts.description);
  w.u32(key('context_length'), cfg.ctx);
  w.u32(key('embedding_length'), cfg.d_model);
  w.u32(key('block_count'), cfg.n_layer);
  w.u32(key('vocab_size'), cfg.vocab);
  w.u32(key('ssm.conv_kernel'), cfg.d_conv);
  w.u32(key('ssm.state_size'), cfg.d_state);
  w.u32(key('ssm.group_count'), cfg.n_group);
  w.u32(key('ssm.inner_size'), cfg.d_inner);
  w.u32(key('ssm.time_step_rank'), cfg.n_head);
  w.f32(key('attention.layer_norm_rms_epsilon'), cfg.eps);
  w.f32(key('ssm.norm_epsilon'), cfg.norm_eps);
  if (hybrid) {
    // llama.cpp's hybrid convention (Jamba): the KV head count per layer, 0 for a Mamba-2 layer.
    w.u32(key('attention.head_count'), cfg.attn_head!);
    w.set(key('attention.head_count_kv'), GgufType.ARRAY, Uint32Array.from({ length: cfg.n_layer }, (_, l) => (isAttn(l) ? cfg.attn_head_kv! : 0)), GgufType.UINT32);
    w.f32(key('rope.freq_base'), cfg.rope_theta!);
  }
  if (FILE_TYPE[type] !== undefined) w.u32('general.file_type', FILE_TYPE[type]!);
  if ('pieces' in tokenizer) writeSpmTokenizer(w, tokenizer);
  else tokenizer.write(w);
  w.u32('general.quantization_version', 2);

  /** An F32 tensor of `n` finite values, written with GGUF dims `dims`. */
  const floats = (name: string, shape: number[], dims: number[], check?: (v: number) => boolean, what?: string) => {
    const v = src.f32(name, shape);
    for (let i = 0; i < v.length; i++) {
      if (!Number.isFinite(v[i]!)) throw new ModelFormatError(`${opts.tensors.source}: tensor '${name}' element ${i} is ${v[i]}`);
      if (check && !check(v[i]!)) throw new ModelFormatError(`${opts.tensors.source}: tensor '${name}' element ${i} = ${v[i]} ${what}`);
    }
    w.addTensor(name, dims, GGML.F32, bytesOf(v));
  };
  const linear = (base: string, M: number, K: number) => {
    const name = `${base}.weight`;
    if (dense) {
      w.addTensor(name, [K, M], GGML.F16, src.get(name, 'F16', [M, K]).data.slice());
      return;
    }
    if (K % QK1_0 !== 0) throw new ModelFormatError(`${name}: K = ${K} is not a multiple of ${QK1_0}; Q1_0 cannot hold it`);
    w.addTensor(name, [K, M], GGML.Q1_0, encodeQ1_0(src.codes(name, M, K, false), M, K, 1));
    floats(`${base}.alpha`, [K], [K]);
    floats(`${base}.beta`, [K], [K]);
  };

  const embd = src.get('token_embd.weight', 'F16', [cfg.vocab, cfg.d_model]);
  w.addTensor('token_embd.weight', [cfg.d_model, cfg.vocab], GGML.F16, embd.data.slice());
  floats('output_norm.weight', [cfg.d_model], [cfg.d_model]);
  let attnLayers = 0;
  for (let l = 0; l < cfg.n_layer; l++) {
    const p = `blk.${l}.`;
    floats(`${p}attn_norm.weight`, [cfg.d_model], [cfg.d_model]);
    if (isAttn(l)) {
      const hd = cfg.d_model / cfg.attn_head!;
      const dq = cfg.attn_head! * hd;
      const dkv = cfg.attn_head_kv! * hd;
      linear(`${p}attn_q`, dq, cfg.d_model);
      linear(`${p}attn_k`, dkv, cfg.d_model);
      linear(`${p}attn_v`, dkv, cfg.d_model);
      linear(`${p}attn_output`, cfg.d_model, dq);
      attnLayers++;
      continue;
    }
    linear(`${p}ssm_in`, inDim, cfg.d_model);
    // [convDim, d_conv] row-major = GGUF [d_conv, convDim]: each channel's taps contiguous.
    floats(`${p}ssm_conv1d.weight`, [convDim, cfg.d_conv], [cfg.d_conv, convDim]);
    floats(`${p}ssm_conv1d.bias`, [convDim], [convDim]);
    floats(`${p}ssm_dt.bias`, [cfg.n_head], [cfg.n_head]);
    floats(`${p}ssm_a`, [cfg.n_head], [1, cfg.n_head], (a) => a < 0, 'is not negative (A = -exp(A_log))');
    floats(`${p}ssm_d`, [cfg.n_head], [1, cfg.n_head]);
    floats(`${p}ssm_norm.weight`, [cfg.d_inner], [cfg.d_inner / cfg.n_group, cfg.n_group]);
    linear(`${p}ssm_out`, cfg.d_model, cfg.d_inner);
  }
  const count = 2 + (cfg.n_layer - attnLayers) * (dense ? 9 : 13) + attnLayers * 13;
  return { writer: w, summary: { arch, type, tensors: count } };
}
