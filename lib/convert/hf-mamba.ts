// `bitllm convert` of Bi-Mamba checkpoints (tangshengku/bi-mamba@5061857; ../shared/families.md §8) into
// lib/model/mamba2.ts's `bi-mamba` GGUF layout, through the same writer as the trainer's export
// (export.ts buildGguf → buildMamba2Gguf).
//
// config.json: mamba_ssm's MambaConfig (d_model, n_layer, vocab_size, d_intermediate 0, ssm_cfg {layer: Mamba2,
// d_state, d_conv, expand, headdim, ngroups, ...}, rms_norm, tie_embeddings, pad_vocab_size_multiple); what is
// not in ssm_cfg takes BiMamba2's defaults (d_state 128, d_conv 4, expand 2, headdim 64, ngroups 1).
// Tensors (the module tree of BiMambaLMHeadModel; pytorch_model.bin or safetensors):
//   backbone.embedding.weight [V, d]                 → token_embd.weight F16 (tied head)
//   lm_head.weight (optional, tied)                  must equal the embedding
//   backbone.norm_f.weight [d]                       → output_norm.weight
//   backbone.layers.N.norm.weight [d]                → blk.N.attn_norm.weight
//   backbone.layers.N.mixer.in_proj.{weight [F, d] latent float, wscale [1, d], wbias [1, d]}
//                                                    → blk.N.ssm_in.weight (signs, sign(0) → +1), .alpha, .beta
//   backbone.layers.N.mixer.conv1d.{weight [convDim, 1, K], bias [convDim]}
//                                                    → blk.N.ssm_conv1d.weight [convDim, K] (GGUF [K, convDim]), .bias
//   backbone.layers.N.mixer.{dt_bias, A_log, D} [H]  → blk.N.ssm_dt.bias, blk.N.ssm_a = −exp(A_log) (f32), blk.N.ssm_d
//   backbone.layers.N.mixer.norm.weight [d_inner]    → blk.N.ssm_norm.weight
//   backbone.layers.N.mixer.out_proj.{weight [d, d_inner], wscale, wbias}  → blk.N.ssm_out.*
// F = 2 d_inner + 2 ngroups d_state + H, convDim = d_inner + 2 ngroups d_state, d_inner = expand d_model,
// H = d_inner / headdim.
import { join } from 'node:path';

import { ModelFormatError } from '../errors.js';
import { floatToHalf } from '../reference/numeric.js';
import { type ExportType, type Mamba2TrainedConfig, type WrittenModel, exportGguf } from './export.js';
import { type CheckpointTensor, type ConvertFindings, latentSigns, tensorFloats } from './hf.js';
import { checkpointTokenizer } from './hf-tokenizer.js';
import { type SafeTensor, type SafetensorsFile } from './safetensors.js';

/** BiMamba2's (mamba_ssm Mamba2's) defaults for what ssm_cfg does not set. */
const SSM_DEFAULTS = { d_state: 128, d_conv: 4, expand: 2, headdim: 64, ngroups: 1 } as const;

/** Reads config.json into the exporter's Mamba-2 config (ModelFormatError naming the key). */
export function biMambaConfig(config: Record<string, unknown>, path: string, embeddingRows: number | undefined): Mamba2TrainedConfig {
  const fail = (msg: string): never => { throw new ModelFormatError(`${path}: ${msg}`); };
  const ssm = config['ssm_cfg'] ?? {};
  if (ssm === null || typeof ssm !== 'object' || Array.isArray(ssm)) fail(`'ssm_cfg' is not an object`);
  const s = ssm as Record<string, unknown>;
  const int = (obj: Record<string, unknown>, key: string, label: string, fallback?: number): number => {
    const v = obj[key] ?? fallback;
    if (v === undefined) fail(`missing key '${label}'`);
    if (!Number.isInteger(v) || (v as number) < 1) fail(`'${label}' = ${JSON.stringify(v)} is not a positive integer`);
    return v as number;
  };
  const want = (obj: Record<string, unknown>, key: string, label: string, ok: (v: unknown) => boolean, what: string) => {
    if (obj[key] !== undefined && !ok(obj[key])) fail(`'${label}' = ${JSON.stringify(obj[key])}: only ${what} is supported (Bi-Mamba's Mamba-2 block)`);
  };
  want(s, 'layer', 'ssm_cfg.layer', (v) => v === 'Mamba2' || v === 'BiMamba2', '"Mamba2"');
  want(config, 'd_intermediate', 'd_intermediate', (v) => v === 0, '0 (no MLP after the mixer)');
  want(config, 'attn_layer_idx', 'attn_layer_idx', (v) => Array.isArray(v) && v.length === 0, '[] (no attention layers)');
  want(config, 'rms_norm', 'rms_norm', (v) => v === true, 'true (RMSNorm blocks)');
  want(config, 'tie_embeddings', 'tie_embeddings', (v) => v === true, 'true (a tied head)');
  want(s, 'rmsnorm', 'ssm_cfg.rmsnorm', (v) => v === true, 'true (the gated RMSNorm)');
  want(s, 'norm_before_gate', 'ssm_cfg.norm_before_gate', (v) => v === false, 'false');
  want(s, 'D_has_hdim', 'ssm_cfg.D_has_hdim', (v) => v === false, 'false (D per head)');
  want(s, 'bias', 'ssm_cfg.bias', (v) => v === false, 'false (no in/out projection bias)');
  want(s, 'conv_bias', 'ssm_cfg.conv_bias', (v) => v === true, 'true');
  want(s, 'learnable_init_states', 'ssm_cfg.learnable_init_states', (v) => v === false, 'false');
  want(s, 'activation', 'ssm_cfg.activation', (v) => v === 'silu' || v === 'swish', '"silu"');
  const dModel = int(config, 'd_model', 'd_model');
  const dInner = int(s, 'expand', 'ssm_cfg.expand', SSM_DEFAULTS.expand) * dModel;
  const headdim = int(s, 'headdim', 'ssm_cfg.headdim', SSM_DEFAULTS.headdim);
  if (s['d_ssm'] !== undefined && s['d_ssm'] !== null && s['d_ssm'] !== dInner) fail(`'ssm_cfg.d_ssm' = ${JSON.stringify(s['d_ssm'])}: only d_ssm = d_inner (${dInner}) is supported`);
  if (dInner % headdim !== 0) fail(`d_inner ${dInner} (d_model · ssm_cfg.expand) is not a multiple of 'ssm_cfg.headdim' ${headdim}`);
  const nHead = dInner / headdim;
  const nGroup = int(s, 'ngroups', 'ssm_cfg.ngroups', SSM_DEFAULTS.ngroups);
  if (nHead % nGroup !== 0) fail(`${nHead} heads are not a multiple of 'ssm_cfg.ngroups' ${nGroup}`);
  const vocabSize = int(config, 'vocab_size', 'vocab_size');
  const pad = int(config, 'pad_vocab_size_multiple', 'pad_vocab_size_multiple', 1);
  const padded = Math.ceil(vocabSize / pad) * pad;
  // mamba_ssm pads the embedding to a multiple of pad_vocab_size_multiple: the file holds `padded` rows.
  if (embeddingRows !== undefined && embeddingRows !== vocabSize && embeddingRows !== padded)
    fail(`'vocab_size' = ${vocabSize} (padded to ${padded}) does not match backbone.embedding.weight's ${embeddingRows} rows`);
  const eps = config['norm_epsilon'] ?? 1e-5;
  if (typeof eps !== 'number' || !(eps > 0 && eps < 1)) fail(`'norm_epsilon' = ${JSON.stringify(eps)} is out of range`);
  return {
    block: 'mamba2', vocab: embeddingRows ?? vocabSize, d_model: dModel, n_layer: int(config, 'n_layer', 'n_layer'), d_inner: dInner,
    d_state: int(s, 'd_state', 'ssm_cfg.d_state', SSM_DEFAULTS.d_state), n_head: nHead, n_group: nGroup,
    d_conv: int(s, 'd_conv', 'ssm_cfg.d_conv', SSM_DEFAULTS.d_conv), ctx: int(config, 'max_position_embeddings', 'max_position_embeddings', 2048),
    eps: eps as number, norm_eps: 1e-5,
  };
}

function st(name: string, dtype: SafeTensor['dtype'], shape: number[], data: ArrayBufferView): SafeTensor {
  return { name, dtype, shape, data: new Uint8Array(data.buffer, data.byteOffset, data.byteLength) };
}

/** The export tensors (train/evaluate.py's names and types) computed from the checkpoint on demand. */
class BiMambaSource {
  readonly findings: ConvertFindings = { zeroLatentWeights: 0, zeroLatentTensors: {} };
  readonly convDim: number;
  readonly inDim: number;

  constructor(readonly dir: string, readonly configPath: string, readonly cfg: Mamba2TrainedConfig, readonly tensors: Map<string, CheckpointTensor>) {
    this.convDim = cfg.d_inner + 2 * cfg.n_group * cfg.d_state;
    this.inDim = 2 * cfg.d_inner + 2 * cfg.n_group * cfg.d_state + cfg.n_head;
  }

  private dims(): string {
    const c = this.cfg;
    return `from ${this.configPath}: d_model ${c.d_model}, d_inner ${c.d_inner}, d_state ${c.d_state}, ngroups ${c.n_group}, heads ${c.n_head}, d_conv ${c.d_conv}`;
  }

  hf(name: string, shape: number[], what?: string): CheckpointTensor {
    const t = this.tensors.get(name);
    if (!t) throw new ModelFormatError(`${this.dir}: missing tensor '${name}'`);
    if (t.shape.length !== shape.length || t.shape.some((d, i) => d !== shape[i]))
      throw new ModelFormatError(`${t.file}: tensor '${name}' has shape [${t.shape.join(', ')}], expected [${shape.join(', ')}]${what ? ` (${what})` : ''} ${this.dims()}`);
    return t;
  }

  /** A float vector of n finite values stored as [n] or [1, n]. */
  vector(name: string, n: number, what?: string): Float32Array {
    const t = this.tensors.get(name);
    if (!t) throw new ModelFormatError(`${this.dir}: missing tensor '${name}'`);
    if (t.shape.reduce((a, d) => a * d, 1) !== n || t.shape.filter((d) => d !== 1).length > 1)
      throw new ModelFormatError(`${t.file}: tensor '${name}' has shape [${t.shape.join(', ')}], expected ${n} values${what ? ` (${what})` : ''} ${this.dims()}`);
    const v = tensorFloats(t);
    for (let i = 0; i < v.length; i++) if (!Number.isFinite(v[i]!)) throw new ModelFormatError(`${t.file}: tensor '${name}' element ${i} is ${v[i]}`);
    return v;
  }

  private embedding(): SafeTensor {
    const { vocab, d_model: d } = this.cfg;
    const t = this.hf('backbone.embedding.weight', [vocab, d]);
    const h = new Uint16Array(vocab * d);
    const el = t.nbytes / (vocab * d);
    const chunkRows = Math.max(1, Math.floor((16 << 20) / (d * 4)));
    for (let r0 = 0; r0 < vocab; r0 += chunkRows) {
      const n = Math.min(chunkRows, vocab - r0) * d;
      const v = tensorFloats({ ...t, shape: [n], offset: t.offset + r0 * d * el, nbytes: n * el });
      for (let i = 0; i < n; i++) {
        if (!(Math.abs(v[i]!) <= 65504)) throw new ModelFormatError(`${t.file}: tensor 'backbone.embedding.weight' element ${r0 * d + i} = ${v[i]} does not fit F16`);
        h[r0 * d + i] = floatToHalf(v[i]!);
      }
    }
    return st('token_embd.weight', 'F16', [vocab, d], h);
  }

  private signs(name: string, M: number, K: number, what: string): Int8Array {
    const t = this.hf(name, [M, K], what);
    const { signs, zeros } = latentSigns(t, name, this.findings);
    if (zeros === signs.length) throw new ModelFormatError(`${t.file}: linear tensor '${name}' is entirely zero: not a trained checkpoint (a failed save or upload?)`);
    return signs;
  }

  /** Checks what the GGUF cannot hold or the config does not describe, before anything is written. */
  validate(): void {
    const c = this.cfg;
    const layerRe = /^backbone\.layers\.(\d+)\./;
    for (const name of this.tensors.keys()) {
      const m = layerRe.exec(name);
      if (m && Number(m[1]) >= c.n_layer) throw new ModelFormatError(`${this.dir}: tensor '${name}' is beyond config.json's n_layer ${c.n_layer} (${this.configPath})`);
      if (/\.mixer\.(in|out)_proj\.bias$/.test(name)) throw new ModelFormatError(`${this.dir}: tensor '${name}': projections with a bias are not supported (ssm_cfg.bias = false)`);
    }
    const lm = this.tensors.get('lm_head.weight');
    if (lm) {
      const e = this.hf('backbone.embedding.weight', [c.vocab, c.d_model]);
      if (lm.shape.join() !== e.shape.join()) throw new ModelFormatError(`${lm.file}: tensor 'lm_head.weight' has shape [${lm.shape.join(', ')}], the embedding [${e.shape.join(', ')}]: an untied head is not supported`);
      // torch.save keeps the tie (one storage): same bytes. Otherwise compare the values, in row chunks.
      const shared = lm.file === e.file && lm.offset === e.offset && lm.dtype === e.dtype;
      const n = c.vocab * c.d_model;
      const chunk = c.d_model * Math.max(1, Math.floor((4 << 20) / c.d_model));
      for (let i0 = 0; !shared && i0 < n; i0 += chunk) {
        const k = Math.min(chunk, n - i0);
        const part = (t: CheckpointTensor) => tensorFloats({ ...t, shape: [k], offset: t.offset + i0 * (t.nbytes / n), nbytes: k * (t.nbytes / n) });
        const a = part(lm);
        const b = part(e);
        const i = a.findIndex((v, j) => !Object.is(v, b[j]));
        if (i >= 0) throw new ModelFormatError(`${lm.file}: tensor 'lm_head.weight' differs from backbone.embedding.weight at element ${i0 + i}: an untied head is not supported (Bi-Mamba ties it)`);
      }
    }
    for (let l = 0; l < c.n_layer; l++) {
      const L = `backbone.layers.${l}.mixer.`;
      // The shapes that carry the state size and head count first, so that a mismatch names them.
      this.vector(`${L}A_log`, c.n_head, `one per head: config.json's ${c.n_head} heads = d_model · expand / headdim`);
      this.hf(`${L}in_proj.weight`, [this.inDim, c.d_model], `2·d_inner + 2·ngroups·d_state + heads = ${this.inDim}`);
      this.hf(`${L}conv1d.weight`, [this.convDim, 1, c.d_conv], `depthwise conv [d_inner + 2·ngroups·d_state, 1, d_conv]`);
    }
  }

  get(name: string): SafeTensor | undefined {
    const c = this.cfg;
    if (name === 'token_embd.weight') return this.embedding();
    if (name === 'output_norm.weight') return st(name, 'F32', [c.d_model], this.vector('backbone.norm_f.weight', c.d_model));
    const m = /^blk\.(\d+)\.(.+)$/.exec(name);
    if (!m) return undefined;
    const L = `backbone.layers.${m[1]}.`;
    const X = `${L}mixer.`;
    const lin = (p: 'in' | 'out') => (p === 'in' ? { M: this.inDim, K: c.d_model } : { M: c.d_model, K: c.d_inner });
    switch (m[2]) {
      case 'attn_norm.weight': return st(name, 'F32', [c.d_model], this.vector(`${L}norm.weight`, c.d_model));
      case 'ssm_in.weight': case 'ssm_out.weight': {
        const p = m[2] === 'ssm_in.weight' ? 'in' : 'out';
        const { M, K } = lin(p);
        return st(name, 'I8', [M, K], this.signs(`${X}${p}_proj.weight`, M, K, p === 'in' ? '2·d_inner + 2·ngroups·d_state + heads, d_model' : 'd_model, d_inner'));
      }
      case 'ssm_in.alpha': case 'ssm_out.alpha': case 'ssm_in.beta': case 'ssm_out.beta': {
        const [proj, kind] = m[2].split('.') as [string, string];
        const p = proj === 'ssm_in' ? 'in' : 'out';
        const { K } = lin(p);
        return st(name, 'F32', [K], this.vector(`${X}${p}_proj.${kind === 'alpha' ? 'wscale' : 'wbias'}`, K));
      }
      case 'ssm_conv1d.weight': {
        const t = this.hf(`${X}conv1d.weight`, [this.convDim, 1, c.d_conv], 'depthwise conv [d_inner + 2·ngroups·d_state, 1, d_conv]');
        const v = tensorFloats(t);
        for (let i = 0; i < v.length; i++) if (!Number.isFinite(v[i]!)) throw new ModelFormatError(`${t.file}: tensor '${X}conv1d.weight' element ${i} is ${v[i]}`);
        return st(name, 'F32', [this.convDim, c.d_conv], v);
      }
      case 'ssm_conv1d.bias': return st(name, 'F32', [this.convDim], this.vector(`${X}conv1d.bias`, this.convDim));
      case 'ssm_dt.bias': return st(name, 'F32', [c.n_head], this.vector(`${X}dt_bias`, c.n_head));
      case 'ssm_a': {
        const t = this.tensors.get(`${X}A_log`);
        if (t) {
          const raw = tensorFloats(t);
          const bad = raw.findIndex((v) => Number.isNaN(v));
          if (bad >= 0) throw new ModelFormatError(`${t.file}: tensor '${X}A_log' element ${bad} is NaN`);
        }
        const aLog = this.vector(`${X}A_log`, c.n_head, 'one per head');
        // A = −exp(A_log): exp in float64, rounded to f32 once (train/evaluate.py does the same).
        const A = Float32Array.from(aLog, (v) => -Math.exp(v));
        const bad = A.findIndex((v) => !(Number.isFinite(v) && v < 0));
        if (bad >= 0) throw new ModelFormatError(`${t!.file}: tensor '${X}A_log' element ${bad} = ${aLog[bad]} gives A = ${A[bad]}, not a finite negative value`);
        return st(name, 'F32', [c.n_head], A);
      }
      case 'ssm_d': return st(name, 'F32', [c.n_head], this.vector(`${X}D`, c.n_head));
      case 'ssm_norm.weight': return st(name, 'F32', [c.d_inner], this.vector(`${X}norm.weight`, c.d_inner));
      default: return undefined;
    }
  }
}

class LazyTensors extends Map<string, SafeTensor> {
  constructor(private readonly src: BiMambaSource) { super(); }
  override get(name: string): SafeTensor | undefined { return this.src.get(name); }
  override has(name: string): boolean { return this.src.get(name) !== undefined; }
}

/** Whether a checkpoint is in Bi-Mamba's (mamba_ssm's) layout. */
export function isBiMambaCheckpoint(config: Record<string, unknown>, names: readonly string[]): boolean {
  return names.some((n) => n.startsWith('backbone.layers.') && n.endsWith('.mixer.A_log')) || (config['ssm_cfg'] !== undefined && config['d_model'] !== undefined);
}

export interface BiMambaConvertOptions {
  dir: string;
  out: string;
  type?: ExportType;
  name?: string;
}

/** Converts a Bi-Mamba checkpoint folder (config.json read, tensors indexed) to a `bi-mamba` GGUF. */
export function convertBiMamba(opts: BiMambaConvertOptions, config: Record<string, unknown>, tensors: Map<string, CheckpointTensor>):
  WrittenModel & { findings: ConvertFindings } {
  const configPath = join(opts.dir, 'config.json');
  const embd = tensors.get('backbone.embedding.weight');
  if (!embd) throw new ModelFormatError(`${opts.dir}: missing tensor 'backbone.embedding.weight'`);
  if (embd.shape.length !== 2) throw new ModelFormatError(`${embd.file}: tensor 'backbone.embedding.weight' has shape [${embd.shape.join(', ')}], expected [vocab, d_model]`);
  const cfg = biMambaConfig(config, configPath, embd.shape[0]);
  const src = new BiMambaSource(opts.dir, configPath, cfg, tensors);
  src.validate();
  const file: SafetensorsFile = { source: opts.dir, tensors: new LazyTensors(src), metadata: {} };
  const tokenizer = checkpointTokenizer(opts.dir, cfg.vocab, config);
  const nameFromConfig = typeof config['_name_or_path'] === 'string' ? (config['_name_or_path'] as string) : undefined;
  const written = exportGguf({
    family: 'bimamba', config: cfg, tensors: file, tokenizer, type: opts.type, out: opts.out,
    name: opts.name ?? nameFromConfig ?? 'converted-bi-mamba', description: 'converted by bitllm convert from a bi-mamba checkpoint',
  });
  return { ...written, findings: src.findings };
}
