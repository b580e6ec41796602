// `bitllm convert`: a Hugging Face checkpoint folder → a GGUF of one of the engine's architecture rows
// (docs/convert.md). Layouts (families.md §2, §4, §5):
//   bitnet-2b4t-packed  microsoft/bitnet-b1.58-2B-4T: u8 [M/4, K] (row r of block i in bits 2i..2i+1, value =
//                       code − 1) + `weight_scale` (one value; see PACKED_SCALE_DIRECTION); sub-norms, ReLU²,
//                       tied head, llama-3 BPE tokenizer.json
//   bitnet-2b4t-master  microsoft/bitnet-b1.58-2B-4T-bf16: bf16 masters, ternarized with absmean
//   1bitllm             1bitLLM/bitnet_b1_58-*: float masters (absmean), sub-norms `inner_attn_ln` /
//                       `ffn_layernorm`, SiLU, untied head, SentencePiece tokenizer.model
//   fbi-llm             LiqunMa/FBI-LLM_*: llama config, latent float `weight` (sign taken) + `wscale` / `wbias`
//                       [1, K] (α, β per input column); LLaMA block
//   onebit              OneBit: int8 [M, K/8] signs (bit k of byte j = column 8j+k, bit 1 → −1) +
//                       `input_factor` [K] (g) + `weight_scale` [M] (h); LLaMA block
//   bi-mamba            tangshengku/bi-mamba: mamba_ssm MambaConfig, `backbone.*` tensors, FBI in/out projections
//                       (latent float `weight` + `wscale` / `wbias`); → the `bi-mamba` GGUF (hf-mamba.ts)
// Each maps onto the tensors train/evaluate.py exports (GGUF names; I8 trits or signs + scales or siblings)
// and goes through the one GGUF writer (export.ts buildGguf), tensor by tensor (nothing big is kept).
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';

import { ModelFormatError } from '../errors.js';
import { floatToHalf, halfToFloat, roundHalfEven } from '../reference/numeric.js';
import { type ExportType, type Family, type TrainedConfig, type WrittenModel, FAMILY_TYPES, exportGguf } from './export.js';
import { convertBiMamba, isBiMambaCheckpoint } from './hf-mamba.js';
import { checkpointTokenizer } from './hf-tokenizer.js';
import { type SafeTensor, type SafetensorsEntry, type SafetensorsFile, indexSafetensors, readFileRange } from './safetensors.js';
import { indexTorchBin } from './torch-bin.js';

export type HfLayout = 'bitnet-2b4t-packed' | 'bitnet-2b4t-master' | '1bitllm' | 'fbi-llm' | 'onebit' | 'bi-mamba';
export const HF_LAYOUTS: readonly HfLayout[] = ['bitnet-2b4t-packed', 'bitnet-2b4t-master', '1bitllm', 'fbi-llm', 'onebit', 'bi-mamba'];

/**
 * How the packed 2B-4T checkpoint's `weight_scale` applies (docs/convert.md §scale direction): transformers'
 * `BitLinear` (the class its config selects) divides the output by it, so the ternary scale is 1/weight_scale.
 * A `quantization_config.linear_class` of "autobitlinear" multiplies (transformers' `AutoBitLinear`).
 */
export const PACKED_SCALE_DIRECTION: 'divide' | 'multiply' = 'divide';

/** A tensor of the checkpoint: its file and byte range. */
export interface CheckpointTensor extends SafetensorsEntry { file: string }

// ---------------------------------------------------------------- reading a folder

function readJsonObject(path: string): Record<string, unknown> {
  let v: unknown;
  try {
    v = JSON.parse(readFileSync(path, 'utf8'));
  } catch (err) {
    throw new ModelFormatError(`${path}: ${(err as Error).message}`);
  }
  if (v === null || typeof v !== 'object' || Array.isArray(v)) throw new ModelFormatError(`${path}: not a JSON object`);
  return v as Record<string, unknown>;
}

function indexFile(path: string): SafetensorsEntry[] {
  if (!existsSync(path)) throw new ModelFormatError(`${path}: missing`);
  return path.endsWith('.safetensors') ? indexSafetensors(path).entries : indexTorchBin(path);
}

/**
 * The tensors of a checkpoint folder: model.safetensors, a sharded set (model.safetensors.index.json), or the
 * PyTorch equivalents (pytorch_model.bin[.index.json]). Only headers are read here.
 */
export function indexCheckpoint(dir: string): Map<string, CheckpointTensor> {
  const out = new Map<string, CheckpointTensor>();
  const add = (file: string, only?: Set<string>) => {
    for (const e of indexFile(file)) {
      if (only && !only.has(e.name)) continue;
      if (out.has(e.name)) throw new ModelFormatError(`${file}: tensor '${e.name}' is also in ${out.get(e.name)!.file}`);
      out.set(e.name, { ...e, file });
    }
  };
  for (const base of ['model.safetensors', 'pytorch_model.bin']) {
    const index = join(dir, `${base}.index.json`);
    if (existsSync(index)) {
      const map = readJsonObject(index)['weight_map'];
      if (!map || typeof map !== 'object' || Array.isArray(map)) throw new ModelFormatError(`${index}: no weight_map object`);
      const byFile = new Map<string, Set<string>>();
      for (const [name, file] of Object.entries(map as Record<string, unknown>)) {
        if (typeof file !== 'string' || file.includes('/') || file.includes('\\') || file.startsWith('.'))
          throw new ModelFormatError(`${index}: weight_map['${name}'] = ${JSON.stringify(file)} is not a file name in the folder`);
        if (!byFile.has(file)) byFile.set(file, new Set());
        byFile.get(file)!.add(name);
      }
      for (const [file, names] of byFile) {
        add(join(dir, file), names);
        for (const n of names) if (!out.has(n)) throw new ModelFormatError(`${index}: '${n}' is mapped to ${file}, which does not hold it`);
      }
      return out;
    }
    if (existsSync(join(dir, base))) {
      add(join(dir, base));
      return out;
    }
  }
  const files = existsSync(dir) ? readdirSync(dir).filter((f) => f.endsWith('.safetensors') || f.endsWith('.bin')) : [];
  if (files.length === 1) { add(join(dir, files[0]!)); return out; }
  throw new ModelFormatError(`${dir}: no model.safetensors, pytorch_model.bin or their .index.json${files.length ? ` (found ${files.join(', ')})` : ''}`);
}

function tensorBytes(t: CheckpointTensor): Uint8Array {
  return readFileRange(t.file, t.offset, t.nbytes);
}

/** The tensor's values as float32 (F32, F16, BF16, F64 sources). */
export function tensorFloats(t: CheckpointTensor, bytes = tensorBytes(t)): Float32Array {
  const n = t.shape.reduce((a, d) => a * d, 1);
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const out = new Float32Array(n);
  switch (t.dtype) {
    case 'F32': for (let i = 0; i < n; i++) out[i] = dv.getFloat32(4 * i, true); break;
    case 'F64': for (let i = 0; i < n; i++) out[i] = dv.getFloat64(8 * i, true); break;
    case 'F16': for (let i = 0; i < n; i++) out[i] = halfToFloat(dv.getUint16(2 * i, true)); break;
    case 'BF16': {
      const u = new Uint32Array(out.buffer);
      for (let i = 0; i < n; i++) u[i] = dv.getUint16(2 * i, true) << 16;
      break;
    }
    default: throw new ModelFormatError(`${t.file}: tensor '${t.name}' is ${t.dtype}, not a float type`);
  }
  return out;
}

// ---------------------------------------------------------------- layout and config

function detectLayout(config: Record<string, unknown>, tensors: Map<string, CheckpointTensor>, dir: string): HfLayout {
  const names = [...tensors.keys()];
  if (isBiMambaCheckpoint(config, names)) return 'bi-mamba'; // before fbi-llm: its projections carry wscale too
  if (names.some((n) => n.endsWith('.wscale'))) return 'fbi-llm';
  if (names.some((n) => n.endsWith('.input_factor'))) return 'onebit';
  const q = tensors.get('model.layers.0.self_attn.q_proj.weight');
  const archs = Array.isArray(config['architectures']) ? (config['architectures'] as unknown[]) : [];
  if (config['model_type'] === 'bitnet' || archs.includes('BitNetForCausalLM')) return q?.dtype === 'U8' ? 'bitnet-2b4t-packed' : 'bitnet-2b4t-master';
  if (archs.includes('BitnetForCausalLM') || names.some((n) => n.endsWith('.inner_attn_ln.weight'))) return '1bitllm';
  throw new ModelFormatError(`${dir}: not a checkpoint layout bitllm converts (model_type ${JSON.stringify(config['model_type'])}, architectures ${JSON.stringify(archs)}; supported: ${HF_LAYOUTS.join(', ')})`);
}

const LAYOUT_FAMILY: Readonly<Record<HfLayout, Family>> = {
  'bitnet-2b4t-packed': 'b158', 'bitnet-2b4t-master': 'b158', '1bitllm': 'b158', 'fbi-llm': 'fbi', onebit: 'onebit', 'bi-mamba': 'bimamba',
};

function modelConfig(config: Record<string, unknown>, layout: HfLayout, path: string, tensors: Map<string, CheckpointTensor>): TrainedConfig {
  const int = (key: string, fallback?: number): number => {
    const v = config[key] ?? fallback;
    if (v === undefined) throw new ModelFormatError(`${path}: missing key '${key}'`);
    if (!Number.isInteger(v) || (v as number) < 1) throw new ModelFormatError(`${path}: '${key}' = ${JSON.stringify(v)} is not a positive integer`);
    return v as number;
  };
  const num = (key: string, fallback: number): number => {
    const v = config[key] ?? fallback;
    if (typeof v !== 'number' || !(v > 0)) throw new ModelFormatError(`${path}: '${key}' = ${JSON.stringify(v)} is not a positive number`);
    return v;
  };
  const bitnet = layout.startsWith('bitnet-2b4t');
  const d = int('hidden_size');
  const nHead = int('num_attention_heads');
  const cfg: TrainedConfig = {
    vocab: int('vocab_size'), d, n_layer: int('num_hidden_layers'), n_head: nHead,
    n_head_kv: int('num_key_value_heads', nHead), ff: int('intermediate_size'),
    ctx: int('max_position_embeddings', 2048),
    rope_theta: num('rope_theta', bitnet ? 500000 : 10000),
    eps: num('rms_norm_eps', bitnet ? 1e-5 : 1e-6),
  };
  if (config['head_dim'] !== undefined && config['head_dim'] !== d / nHead)
    throw new ModelFormatError(`${path}: head_dim ${JSON.stringify(config['head_dim'])} is not hidden_size / num_attention_heads = ${d / nHead}`);
  const rs = config['rope_scaling'] as Record<string, unknown> | null | undefined;
  if (rs && !((rs['type'] === 'linear' || rs['rope_type'] === 'linear') && rs['factor'] === 1))
    throw new ModelFormatError(`${path}: rope_scaling ${JSON.stringify(rs)} is not supported (plain RoPE only)`);
  const act = config['hidden_act'] ?? (bitnet ? 'relu2' : 'silu');
  if (act !== 'relu2' && act !== 'silu') throw new ModelFormatError(`${path}: hidden_act '${String(act)}' is not relu2 or silu`);
  cfg.hidden_act = act;
  cfg.sub_norms = layout === '1bitllm' || bitnet;
  cfg.block = cfg.sub_norms ? 'bitnet' : 'llama';
  cfg.tied_head = config['tie_word_embeddings'] === true || !tensors.has('lm_head.weight');
  return cfg;
}

// ---------------------------------------------------------------- tensors

const HF_PROJ: Readonly<Record<string, string>> = {
  attn_q: 'self_attn.q_proj', attn_k: 'self_attn.k_proj', attn_v: 'self_attn.v_proj', attn_output: 'self_attn.o_proj',
  ffn_gate: 'mlp.gate_proj', ffn_up: 'mlp.up_proj', ffn_down: 'mlp.down_proj',
};

/** What the conversion found that a user should know. */
/**
 * Latent float weights → signs (≥ 0 → +1: upstream torch.sign(0) = 0, which a sign bit cannot hold), NaN refused
 * naming the element, exact zeros counted into `findings` under `name`. Returns the signs and the zero count.
 */
export function latentSigns(t: CheckpointTensor, name: string, findings: ConvertFindings): { signs: Int8Array; zeros: number } {
  const w = tensorFloats(t);
  const signs = new Int8Array(w.length);
  let zeros = 0;
  for (let i = 0; i < w.length; i++) {
    if (Number.isNaN(w[i]!)) throw new ModelFormatError(`${t.file}: tensor '${name}' element ${i} is NaN`);
    if (w[i] === 0) zeros++;
    signs[i] = w[i]! >= 0 ? 1 : -1;
  }
  if (zeros) {
    findings.zeroLatentWeights += zeros;
    findings.zeroLatentTensors[name] = zeros;
  }
  return { signs, zeros };
}

export interface ConvertFindings {
  /** FBI-LLM: latent weights exactly 0 (torch.sign(0) = 0 upstream; stored here as +1), total and per tensor. */
  zeroLatentWeights: number;
  zeroLatentTensors: Record<string, number>;
  /** The packed 2B-4T scale direction used. */
  scaleDirection?: 'divide' | 'multiply';
  /** `scaleReference`: the tensor compared, its absmean in the master checkpoint, and its weight_scale here. */
  scaleCheck?: { tensor: string; masterMeanAbs: number; weightScale: number };
}

/** Relative tolerance of the master-vs-packed scale check (bf16 weight_scale: 2⁻⁸; the absmean itself is exact). */
const SCALE_CHECK_TOLERANCE = 0.01;

/**
 * Settles the packed checkpoint's weight_scale direction against its float master (the -bf16 repository):
 * mean|W| of one projection of the master equals 1/weight_scale (divide) or weight_scale (multiply).
 * Throws when neither matches (different models or revisions).
 */
export function scaleDirectionFromMaster(packedDir: string, packed: Map<string, CheckpointTensor>, masterDir: string): { direction: 'divide' | 'multiply'; check: NonNullable<ConvertFindings['scaleCheck']> } {
  const master = indexCheckpoint(masterDir);
  const name = 'model.layers.0.self_attn.q_proj';
  const w = master.get(`${name}.weight`);
  const ws = packed.get(`${name}.weight_scale`);
  if (!w) throw new ModelFormatError(`${masterDir}: missing tensor '${name}.weight' (the master checkpoint to check the scale against)`);
  if (!ws) throw new ModelFormatError(`${packedDir}: missing tensor '${name}.weight_scale'`);
  const v = tensorFloats(w);
  let sum = 0;
  for (let i = 0; i < v.length; i++) sum += Math.abs(v[i]!);
  const meanAbs = sum / v.length;
  const scale = tensorFloats(ws)[0]!;
  const check = { tensor: name, masterMeanAbs: meanAbs, weightScale: scale };
  if (Math.abs(meanAbs * scale - 1) <= SCALE_CHECK_TOLERANCE) return { direction: 'divide', check };
  if (Math.abs(meanAbs / scale - 1) <= SCALE_CHECK_TOLERANCE) return { direction: 'multiply', check };
  throw new ModelFormatError(`${packedDir}: ${name}.weight_scale = ${scale} matches neither 1/mean|W| nor mean|W| of ${masterDir}'s master (mean|W| = ${meanAbs}): not the same model or revision`);
}

const f16Value = (x: number) => halfToFloat(floatToHalf(x));

/** Absmean ternarization as the trainer exports it (train/evaluate.py): γ = mean|W|, t = clamp(rne(W/γ), −1, 1). */
export function absmeanTernary(w: Float32Array): { trits: Int8Array; gamma: number } {
  let sum = 0;
  for (let i = 0; i < w.length; i++) sum += Math.abs(w[i]!);
  const gamma = Math.fround(Math.max(Math.fround(sum / w.length), Math.fround(1e-5)));
  const trits = new Int8Array(w.length);
  for (let i = 0; i < w.length; i++) trits[i] = Math.max(-1, Math.min(1, roundHalfEven(Math.fround(w[i]! / gamma))));
  return { trits, gamma };
}

/** Unpacks the 2B-4T u8 [M/4, K] codes (row r + i·M/4 in bits 2i..2i+1, value = code − 1) to trits [M, K]. */
export function unpackPacked2b(packed: Uint8Array, M: number, K: number): Int8Array {
  const rows = M / 4;
  const out = new Int8Array(M * K);
  for (let r = 0; r < rows; r++) {
    for (let k = 0; k < K; k++) {
      const byte = packed[r * K + k]!;
      for (let i = 0; i < 4; i++) out[(i * rows + r) * K + k] = ((byte >> (2 * i)) & 3) - 1;
    }
  }
  return out;
}

/** Unpacks OneBit's int8 [M, K/8] (bit k of byte j = column 8j+k, LSB-first, bit 1 → −1) to signs [M, K]. */
export function unpackOneBit(packed: Uint8Array, M: number, K: number): Int8Array {
  const out = new Int8Array(M * K);
  for (let i = 0; i < M * K; i++) out[i] = (packed[i >> 3]! >> (i & 7)) & 1 ? -1 : 1;
  return out;
}

class CheckpointSource {
  readonly findings: ConvertFindings = { zeroLatentWeights: 0, zeroLatentTensors: {} };
  private cached: { base: string; tensors: Map<string, SafeTensor> } | undefined;

  constructor(readonly dir: string, readonly layout: HfLayout, readonly cfg: TrainedConfig, readonly tensors: Map<string, CheckpointTensor>,
    readonly scaleDirection: 'divide' | 'multiply') {
    if (layout === 'bitnet-2b4t-packed') this.findings.scaleDirection = scaleDirection;
  }

  hf(name: string, shape?: number[]): CheckpointTensor {
    const t = this.tensors.get(name);
    if (!t) throw new ModelFormatError(`${this.dir}: missing tensor '${name}'`);
    if (shape && (t.shape.length !== shape.length || t.shape.some((d, i) => d !== shape[i])))
      throw new ModelFormatError(`${t.file}: tensor '${name}' has shape [${t.shape.join(', ')}], expected [${shape.join(', ')}]`);
    return t;
  }

  /** A float tensor of `count` values whatever its layout ([n], [1, n]). */
  vector(name: string, n: number): Float32Array {
    const t = this.hf(name);
    if (t.shape.reduce((a, d) => a * d, 1) !== n || t.shape.filter((d) => d !== 1).length > 1)
      throw new ModelFormatError(`${t.file}: tensor '${name}' has shape [${t.shape.join(', ')}], expected ${n} values`);
    const v = tensorFloats(t);
    for (let i = 0; i < v.length; i++) if (!Number.isFinite(v[i]!)) throw new ModelFormatError(`${t.file}: tensor '${name}' element ${i} is ${v[i]}`);
    return v;
  }

  /** An embedding-sized float tensor as F16, converted in row chunks (the 2B-4T embedding is 328 M values). */
  private f16(name: string, rows: number, cols: number): SafeTensor {
    const t = this.hf(name, [rows, cols]);
    const h = new Uint16Array(rows * cols);
    const chunkRows = Math.max(1, Math.floor((16 << 20) / (cols * 4)));
    for (let r0 = 0; r0 < rows; r0 += chunkRows) {
      const n = Math.min(chunkRows, rows - r0) * cols;
      const el = t.nbytes / (rows * cols);
      const part: CheckpointTensor = { ...t, shape: [n], offset: t.offset + r0 * cols * el, nbytes: n * el };
      const v = tensorFloats(part);
      for (let i = 0; i < n; i++) {
        if (!(Math.abs(v[i]!) <= 65504)) throw new ModelFormatError(`${t.file}: tensor '${name}' element ${r0 * cols + i} = ${v[i]} does not fit F16`);
        h[r0 * cols + i] = floatToHalf(v[i]!);
      }
    }
    return st(name, 'F16', [rows, cols], h);
  }

  private shapeOf(p: string): [number, number] {
    const c = this.cfg;
    const dkv = c.n_head_kv * (c.d / c.n_head);
    const M = { attn_q: c.d, attn_k: dkv, attn_v: dkv, attn_output: c.d, ffn_gate: c.ff, ffn_up: c.ff, ffn_down: c.d }[p]!;
    return [M, p === 'ffn_down' ? c.ff : c.d];
  }

  private zeroError(name: string, file: string): never {
    throw new ModelFormatError(`${file}: linear tensor '${name}' is entirely zero. The current main of the microsoft/bitnet-b1.58-2B-4T repositories has all-zero MLP tensors (BitNet issue #608): download a revision from before that re-upload, pinned by commit (bitllm pull hf:OWNER/REPO@<commit>), and convert that`);
  }

  /** The export tensors of one projection (`blk.L.<p>.`), computed together. */
  private projection(l: number, p: string): Map<string, SafeTensor> {
    const base = `blk.${l}.${p}.`;
    if (this.cached?.base === base) return this.cached.tensors;
    const [M, K] = this.shapeOf(p);
    const hfBase = `model.layers.${l}.${HF_PROJ[p]}.`;
    if (this.tensors.has(`${hfBase}bias`)) throw new ModelFormatError(`${this.hf(`${hfBase}bias`).file}: '${hfBase}bias': projections with a bias are not supported`);
    const out = new Map<string, SafeTensor>();
    const wname = `${hfBase}weight`;
    switch (this.layout) {
      case 'bitnet-2b4t-packed': {
        const t = this.hf(wname, [M / 4, K]);
        if (M % 4 !== 0 || t.dtype !== 'U8') throw new ModelFormatError(`${t.file}: tensor '${wname}' is ${t.dtype} [${t.shape.join(', ')}], expected packed U8 [${M / 4}, ${K}]`);
        const packed = tensorBytes(t);
        if (packed.every((b) => b === 0x55)) this.zeroError(wname, t.file);
        const ws = this.vector(`${hfBase}weight_scale`, 1)[0]!;
        if (!(ws > 0)) throw new ModelFormatError(`${t.file}: '${hfBase}weight_scale' = ${ws} is not a positive scale`);
        out.set(`${base}weight`, st(`${base}weight`, 'I8', [M, K], unpackPacked2b(packed, M, K)));
        out.set(`${base}scale`, st(`${base}scale`, 'F32', [1], Float32Array.of(f16Value(this.scaleDirection === 'divide' ? 1 / ws : ws))));
        break;
      }
      case 'bitnet-2b4t-master': case '1bitllm': {
        const t = this.hf(wname, [M, K]);
        const w = tensorFloats(t);
        if (w.every((x) => x === 0)) this.zeroError(wname, t.file);
        for (let i = 0; i < w.length; i++) if (!Number.isFinite(w[i]!)) throw new ModelFormatError(`${t.file}: tensor '${wname}' element ${i} is ${w[i]}`);
        const { trits, gamma } = absmeanTernary(w);
        out.set(`${base}weight`, st(`${base}weight`, 'I8', [M, K], trits));
        out.set(`${base}scale`, st(`${base}scale`, 'F32', [1], Float32Array.of(f16Value(gamma))));
        break;
      }
      case 'fbi-llm': {
        const t = this.hf(wname, [M, K]);
        const { signs, zeros } = latentSigns(t, wname, this.findings);
        if (zeros === signs.length) this.zeroError(wname, t.file);
        out.set(`${base}weight`, st(`${base}weight`, 'I8', [M, K], signs));
        out.set(`${base}alpha`, st(`${base}alpha`, 'F32', [K], this.vector(`${hfBase}wscale`, K)));
        out.set(`${base}beta`, st(`${base}beta`, 'F32', [K], this.vector(`${hfBase}wbias`, K)));
        break;
      }
      case 'onebit': {
        if (K % 8 !== 0) throw new ModelFormatError(`${this.dir}: ${wname}: K = ${K} is not a multiple of 8`);
        const t = this.hf(wname, [M, K / 8]);
        if (t.dtype !== 'I8' && t.dtype !== 'U8') throw new ModelFormatError(`${t.file}: tensor '${wname}' is ${t.dtype}, expected packed I8 [${M}, ${K / 8}]`);
        out.set(`${base}weight`, st(`${base}weight`, 'I8', [M, K], unpackOneBit(tensorBytes(t), M, K)));
        out.set(`${base}in_scale`, st(`${base}in_scale`, 'F32', [K], this.vector(`${hfBase}input_factor`, K)));
        out.set(`${base}out_scale`, st(`${base}out_scale`, 'F32', [M], this.vector(`${hfBase}weight_scale`, M)));
        break;
      }
    }
    this.cached = { base, tensors: out };
    return out;
  }

  /** The export tensor `name` (GGUF naming, train/evaluate.py's types), or undefined. */
  get(name: string): SafeTensor | undefined {
    const c = this.cfg;
    if (name === 'token_embd.weight') return this.f16('model.embed_tokens.weight', c.vocab, c.d);
    if (name === 'output.weight') return this.f16('lm_head.weight', c.vocab, c.d);
    if (name === 'output_norm.weight') return st(name, 'F32', [c.d], this.vector('model.norm.weight', c.d));
    const m = /^blk\.(\d+)\.([a-z_]+)\.([a-z_]+)$/.exec(name);
    if (!m) return undefined;
    const l = Number(m[1]);
    const [, , part, suffix] = m;
    const layer = `model.layers.${l}.`;
    const sub = this.layout === '1bitllm' ? { attn: 'self_attn.inner_attn_ln', ffn: 'mlp.ffn_layernorm' } : { attn: 'self_attn.attn_sub_norm', ffn: 'mlp.ffn_sub_norm' };
    const norms: Record<string, [string, number]> = {
      attn_norm: [`${layer}input_layernorm.weight`, c.d], ffn_norm: [`${layer}post_attention_layernorm.weight`, c.d],
      attn_sub_norm: [`${layer}${sub.attn}.weight`, c.d], ffn_sub_norm: [`${layer}${sub.ffn}.weight`, c.ff],
    };
    if (suffix === 'weight' && norms[part!]) return st(name, 'F32', [norms[part!]![1]], this.vector(...norms[part!]!));
    if (HF_PROJ[part!]) return this.projection(l, part!).get(name);
    return undefined;
  }
}

function st(name: string, dtype: SafeTensor['dtype'], shape: number[], data: ArrayBufferView): SafeTensor {
  return { name, dtype, shape, data: new Uint8Array(data.buffer, data.byteOffset, data.byteLength) };
}

/** A tensor map that computes each export tensor when the writer asks for it (nothing big stays in memory). */
class LazyTensors extends Map<string, SafeTensor> {
  constructor(private readonly src: CheckpointSource) { super(); }
  override get(name: string): SafeTensor | undefined { return this.src.get(name); }
  override has(name: string): boolean { return this.src.get(name) !== undefined; }
}

export interface ConvertOptions {
  /** The checkpoint folder (config.json, weights, tokenizer files). */
  dir: string;
  out: string;
  /** GGUF type of the projections (default: the family's first: i2_s for b1.58, q1_0 for FBI-LLM / OneBit). */
  type?: ExportType;
  /** Force a layout instead of detecting it. */
  layout?: HfLayout;
  /**
   * Packed 2B-4T only: the float master checkpoint of the same model (the -bf16 repository), against which the
   * weight_scale direction is settled instead of taken from the config (scaleDirectionFromMaster).
   */
  scaleReference?: string;
  name?: string;
}

export interface ConvertResult extends WrittenModel {
  layout: HfLayout;
  family: Family;
  findings: ConvertFindings;
}

/** Converts a checkpoint folder to GGUF. Bad input → ModelFormatError naming the file, key or tensor. */
export function convertCheckpoint(opts: ConvertOptions): ConvertResult {
  const configPath = join(opts.dir, 'config.json');
  if (!existsSync(configPath)) throw new ModelFormatError(`${opts.dir}: no config.json (is this a Hugging Face checkpoint folder?)`);
  const config = readJsonObject(configPath);
  const tensors = indexCheckpoint(opts.dir);
  const layout = opts.layout ?? detectLayout(config, tensors, opts.dir);
  const family = LAYOUT_FAMILY[layout];
  if (opts.type !== undefined && !FAMILY_TYPES[family].includes(opts.type))
    throw new ModelFormatError(`${layout} converts to ${FAMILY_TYPES[family].join(', ')}, not ${opts.type}`);
  if (layout === 'bi-mamba') {
    if (opts.scaleReference !== undefined) throw new ModelFormatError(`${opts.dir}: a scale reference applies to packed 2B-4T checkpoints, this is ${layout}`);
    return { ...convertBiMamba({ dir: opts.dir, out: opts.out, type: opts.type, name: opts.name }, config, tensors), layout, family };
  }
  const cfg = modelConfig(config, layout, configPath, tensors);
  const embd = tensors.get('model.embed_tokens.weight');
  if (embd && embd.shape[0] !== cfg.vocab) throw new ModelFormatError(`${embd.file}: model.embed_tokens.weight has ${embd.shape[0]} rows, config vocab_size is ${cfg.vocab}`);
  const qc = config['quantization_config'] as Record<string, unknown> | undefined;
  let direction: 'divide' | 'multiply' = qc?.['linear_class'] === 'autobitlinear' ? 'multiply' : PACKED_SCALE_DIRECTION;
  let scaleCheck: ConvertFindings['scaleCheck'];
  if (opts.scaleReference !== undefined) {
    if (layout !== 'bitnet-2b4t-packed') throw new ModelFormatError(`${opts.dir}: a scale reference applies to packed 2B-4T checkpoints, this is ${layout}`);
    ({ direction, check: scaleCheck } = scaleDirectionFromMaster(opts.dir, tensors, opts.scaleReference));
  }
  const src = new CheckpointSource(opts.dir, layout, cfg, tensors, direction);
  if (scaleCheck) src.findings.scaleCheck = scaleCheck;
  const file: SafetensorsFile = { source: opts.dir, tensors: new LazyTensors(src), metadata: {} };
  const tokenizer = checkpointTokenizer(opts.dir, cfg.vocab, config);
  const nameFromConfig = typeof config['_name_or_path'] === 'string' ? (config['_name_or_path'] as string) : undefined;
  const written = exportGguf({
    family, config: cfg, tensors: file, tokenizer, type: opts.type, out: opts.out,
    name: opts.name ?? nameFromConfig ?? `converted-${layout}`,
    description: `converted by bitllm convert from a ${layout} checkpoint`,
  });
  return { ...written, layout, family, findings: src.findings };
}
