// Bi-Mamba in GGUF (issue 13): the file layout, its validation, a synthetic writer and the float64 reference
// forward of the whole model. The engine does not run Mamba-2 blocks yet (the architecture table, the native
// mixer and the SSM state kind of the sequence pool come next); this module is the contract they are built
// against, and `bitllm convert` / the trainer write exactly this layout.
//
// Layout (llama.cpp's mamba2 key and tensor names where they exist; ../shared/families.md §8 for the block):
//   general.architecture = 'bi-mamba'
//   bi-mamba.{context_length, embedding_length (d_model), block_count, vocab_size,
//             ssm.conv_kernel, ssm.state_size, ssm.group_count, ssm.inner_size, ssm.time_step_rank (= heads),
//             attention.layer_norm_rms_epsilon (the block and final RMSNorms, 1e-5), ssm.norm_epsilon (1e-5)}
//   token_embd.weight   F16/F32 [d_model, vocab]   tied head (Bi-Mamba ties it)
//   output_norm.weight  F32 [d_model]
//   blk.N.attn_norm.weight      F32 [d_model]              the block's RMSNorm (llama.cpp's name for mamba)
//   blk.N.ssm_in.weight         Q1_0 [d_model, F]          FBI-linear signs, F = 2 dInner + 2 nGroups dState + heads
//   blk.N.ssm_in.{alpha,beta}   F32 [d_model]              per-input-column α, β (y = (α ⊙ x)·Sᵀ + Σ βx)
//   blk.N.ssm_conv1d.weight     F32 [conv_kernel, convDim] convDim = dInner + 2 nGroups dState
//   blk.N.ssm_conv1d.bias       F32 [convDim]
//   blk.N.ssm_dt.bias           F32 [heads]
//   blk.N.ssm_a                 F32 [1, heads]             A = −exp(A_log) (as llama.cpp stores it): finite, < 0
//   blk.N.ssm_d                 F32 [1, heads]
//   blk.N.ssm_norm.weight       F32 [dInner / nGroups, nGroups]
//   blk.N.ssm_out.weight        Q1_0 [dInner, d_model] + ssm_out.{alpha,beta} F32 [dInner]
import { ModelFormatError } from '../errors.js';
import { type GgufFile, GgufMetadata, GgufType, GgufWriter } from '../format/gguf.js';
import { GGML } from '../format/types.js';
import { decodeQ1_0, encodeQ1_0, QK1_0 } from '../convert/q1_0.js';
import { floatToHalf, halfToFloat } from '../reference/numeric.js';
import { type SsmArchRow, ssmArchRow } from './arch.js';
import {
  type Mamba2Dims, type Mamba2MixerWeights, type Mamba2State, checkMamba2Dims, mamba2ConvDim, mamba2EmptyState, mamba2InProjDim, refMamba2Mixer,
} from '../reference/mamba2.js';

export const BI_MAMBA_ARCH = 'bi-mamba';

export interface Mamba2Config extends Mamba2Dims {
  arch: string;
  /** The architecture table row (block kind 'mamba2'): its linears are FBI (`sign-col`) or dense (`f16`). */
  row: SsmArchRow;
  nLayer: number;
  nVocab: number;
  nCtxTrain: number;
  /** The block and final RMSNorms. */
  eps: number;
  /** The gated RMSNorm inside the mixer. */
  normEps: number;
  /** Per layer: a Mamba-2 mixer, or (hybrid rows) an attention mixer. */
  layerKinds: Mamba2LayerKind[];
  /** The attention layers' shape (hybrid rows with at least one attention layer), else null. */
  attn: HybridAttention | null;
}

export type Mamba2LayerKind = 'mamba2' | 'attention';

/** The attention mixer of a hybrid: GQA with NEOX RoPE over the whole head, f16 KV cache, no MLP. */
export interface HybridAttention {
  nHead: number;
  nHeadKv: number;
  headDim: number;
  ropeTheta: number;
}

export const MAMBA2_TENSORS = {
  tokEmbd: 'token_embd.weight',
  output: 'output.weight',
  outputNorm: 'output_norm.weight',
  norm: (l: number) => `blk.${l}.attn_norm.weight`,
  inProj: (l: number) => `blk.${l}.ssm_in`,
  conv: (l: number) => `blk.${l}.ssm_conv1d.weight`,
  convBias: (l: number) => `blk.${l}.ssm_conv1d.bias`,
  dtBias: (l: number) => `blk.${l}.ssm_dt.bias`,
  A: (l: number) => `blk.${l}.ssm_a`,
  D: (l: number) => `blk.${l}.ssm_d`,
  gnorm: (l: number) => `blk.${l}.ssm_norm.weight`,
  outProj: (l: number) => `blk.${l}.ssm_out`,
  /** A hybrid's attention layer (the attention rows' names; sign-col siblings .alpha / .beta). */
  attn: (l: number, p: 'attn_q' | 'attn_k' | 'attn_v' | 'attn_output') => `blk.${l}.${p}`,
} as const;

/** Reads and checks the hyperparameters of a Bi-Mamba file (ModelFormatError naming the key). */
export function mamba2ConfigFromGguf(file: GgufFile): Mamba2Config {
  const md = new GgufMetadata(file);
  const arch = md.string('general.architecture');
  const row = ssmArchRow(arch);
  if (!row) throw new ModelFormatError(`${file.source}: architecture '${arch}' is not of the Mamba-2 block kind (bi-mamba, mamba2)`);
  const key = (k: string) => `${arch}.${k}`;
  const positive = (k: string, fallback?: number): number => {
    const v = fallback === undefined ? md.number(key(k)) : md.number(key(k), fallback)!;
    if (!Number.isInteger(v) || v < 1 || v > 1 << 24) throw new ModelFormatError(`${file.source}: metadata '${key(k)}' = ${v} is not a positive integer`);
    return v;
  };
  const dims: Mamba2Dims = {
    dModel: positive('embedding_length'), dInner: positive('ssm.inner_size'), dState: positive('ssm.state_size'),
    nHeads: positive('ssm.time_step_rank'), nGroups: positive('ssm.group_count', 1), dConv: positive('ssm.conv_kernel', 4),
  };
  try {
    checkMamba2Dims(dims);
  } catch (err) {
    throw new ModelFormatError(`${file.source}: ${(err as Error).message.replace(/^mamba2: /, '')} (metadata ${key('ssm.*')})`);
  }
  const eps = md.number(key('attention.layer_norm_rms_epsilon'), 1e-5)!;
  const normEps = md.number(key('ssm.norm_epsilon'), 1e-5)!;
  for (const [k, v] of [['attention.layer_norm_rms_epsilon', eps], ['ssm.norm_epsilon', normEps]] as const)
    if (!(v > 0 && v < 1)) throw new ModelFormatError(`${file.source}: metadata '${key(k)}' = ${v} is out of range`);
  const embd = file.tensors.find((t) => t.name === MAMBA2_TENSORS.tokEmbd);
  const nVocab = md.number(key('vocab_size'), undefined) ?? embd?.dims[1];
  if (nVocab === undefined || !Number.isInteger(nVocab) || nVocab < 1) throw new ModelFormatError(`${file.source}: cannot determine the vocabulary size`);
  const nLayer = positive('block_count');
  let layerKinds: Mamba2LayerKind[] = Array.from({ length: nLayer }, () => 'mamba2');
  let attn: HybridAttention | null = null;
  if (row.hybrid) {
    // llama.cpp's hybrid convention (Jamba): attention.head_count_kv per layer, 0 for a recurrent layer.
    const kvKey = key('attention.head_count_kv');
    const kv = md.array(kvKey);
    if (!kv || kv.length !== nLayer || !Array.from(kv as ArrayLike<unknown>).every((v) => typeof v === 'number' && Number.isInteger(v) && v >= 0))
      throw new ModelFormatError(`${file.source}: metadata '${kvKey}' must be an array of ${nLayer} integers >= 0 (0: a Mamba-2 layer)`);
    const counts = Array.from(kv as ArrayLike<number>);
    layerKinds = counts.map((c) => (c > 0 ? 'attention' : 'mamba2'));
    const used = [...new Set(counts.filter((c) => c > 0))];
    if (used.length > 0) {
      const nHead = positive('attention.head_count');
      if (used.length > 1) throw new ModelFormatError(`${file.source}: metadata '${kvKey}' gives different KV head counts (${used.join(', ')}); one count for every attention layer is supported`);
      const nHeadKv = used[0]!;
      if (dims.dModel % nHead !== 0) throw new ModelFormatError(`${file.source}: embedding_length ${dims.dModel} is not a multiple of '${key('attention.head_count')}' ${nHead}`);
      if (nHead % nHeadKv !== 0) throw new ModelFormatError(`${file.source}: '${key('attention.head_count')}' ${nHead} is not a multiple of the KV head count ${nHeadKv}`);
      const headDim = dims.dModel / nHead;
      if (headDim % 2 !== 0) throw new ModelFormatError(`${file.source}: head size ${headDim} must be even (RoPE)`);
      const ropeTheta = md.number(key('rope.freq_base'), 10000)!;
      if (!(ropeTheta > 0)) throw new ModelFormatError(`${file.source}: metadata '${key('rope.freq_base')}' = ${ropeTheta} must be positive`);
      attn = { nHead, nHeadKv, headDim, ropeTheta };
    }
  }
  return { arch, row, ...dims, nLayer, nVocab, nCtxTrain: positive('context_length', 4096), eps, normEps, layerKinds, attn };
}

/** An FBI-linear: signs [M, K] (row-major), per-input-column α and β [K]. */
export interface FbiLinear {
  M: number;
  K: number;
  signs: Int8Array;
  alpha: Float32Array;
  beta: Float32Array;
}

/** A dense linear (the FP Mamba-2 teacher): F16 weights [M, K] row-major, and their values. */
export interface DenseLinear {
  M: number;
  K: number;
  half: Uint16Array;
  values: Float32Array;
}

export type Mamba2Linear = FbiLinear | DenseLinear;

export const isFbi = (l: Mamba2Linear): l is FbiLinear => 'signs' in l;

/** y [T, M] = x · Wᵀ in float64 for either linear. */
export function mamba2Linear(w: Mamba2Linear, x: Float64Array, T: number): Float64Array {
  if (isFbi(w)) return fbiLinear(w, x, T);
  const y = new Float64Array(T * w.M);
  for (let t = 0; t < T; t++)
    for (let m = 0; m < w.M; m++) {
      let s = 0;
      const row = m * w.K;
      for (let k = 0; k < w.K; k++) s += w.values[row + k]! * x[t * w.K + k]!;
      y[t * w.M + m] = s;
    }
  return y;
}

/** y [T, M] = (α ⊙ x)·Sᵀ + Σ_k β_k x_k, in float64. */
export function fbiLinear(w: FbiLinear, x: Float64Array, T: number): Float64Array {
  const y = new Float64Array(T * w.M);
  const ax = new Float64Array(w.K);
  for (let t = 0; t < T; t++) {
    let bx = 0;
    for (let k = 0; k < w.K; k++) {
      const v = x[t * w.K + k]!;
      ax[k] = w.alpha[k]! * v;
      bx += w.beta[k]! * v;
    }
    for (let m = 0; m < w.M; m++) {
      let s = bx;
      const row = m * w.K;
      for (let k = 0; k < w.K; k++) s += w.signs[row + k]! * ax[k]!;
      y[t * w.M + m] = s;
    }
  }
  return y;
}

export interface Mamba2Layer {
  norm: Float32Array;
  inProj: Mamba2Linear;
  outProj: Mamba2Linear;
  convWeight: Float32Array; // [convDim, dConv] (the reference's order: channel-major)
  convBias: Float32Array;
  dtBias: Float32Array;
  ALog: Float64Array; // log(−A), what the reference takes
  D: Float32Array;
  normWeight: Float32Array; // [dInner]
}

/** A hybrid's attention layer: residual += wo(attention(RoPE(wq h), RoPE(wk h), wv h)), h = RMSNorm(residual). */
export interface AttnLayer {
  norm: Float32Array;
  wq: Mamba2Linear;
  wk: Mamba2Linear;
  wv: Mamba2Linear;
  wo: Mamba2Linear;
}

export const isAttnLayer = (l: Mamba2Layer | AttnLayer): l is AttnLayer => 'wq' in l;

export interface Mamba2Weights {
  embd: Float32Array; // [vocab, d_model]
  /** An untied head `output.weight` [vocab, d_model] (llama.cpp's mamba2 files may carry one), else the embedding. */
  output: Float32Array | null;
  outputNorm: Float32Array;
  layers: Array<Mamba2Layer | AttnLayer>;
}

function f32Values(file: GgufFile, name: string, bytes: Uint8Array, type: number, n: number): Float32Array {
  const out = new Float32Array(n);
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (type === GGML.F32) for (let i = 0; i < n; i++) out[i] = dv.getFloat32(4 * i, true);
  else if (type === GGML.F16) for (let i = 0; i < n; i++) out[i] = halfToFloat(dv.getUint16(2 * i, true));
  else throw new ModelFormatError(`${file.source}: tensor '${name}' must be F32${type === GGML.F16 ? '' : ' or F16'}`);
  return out;
}

/**
 * Reads every tensor of a Bi-Mamba file, checking presence, type and exact shape (ModelFormatError naming the
 * tensor: a state size or head count that does not match the metadata, a conv kernel of the wrong shape, NaN
 * or a non-negative A, non-finite values in the float tensors).
 */
export function loadMamba2Weights(file: GgufFile, cfg: Mamba2Config): Mamba2Weights {
  const byName = new Map(file.tensors.map((t) => [t.name, t]));
  const tensor = (name: string, dims: number[], types: number[]): { bytes: Uint8Array; type: number } => {
    const t = byName.get(name);
    if (!t) throw new ModelFormatError(`${file.source}: tensor '${name}' is missing`);
    if (!types.includes(t.type)) throw new ModelFormatError(`${file.source}: tensor '${name}' has type ${t.typeName}, expected ${types.map((x) => typeNameOf(x)).join(' or ')}`);
    const same = t.dims.length === dims.length && t.dims.every((d, i) => d === dims[i]);
    if (!same) throw new ModelFormatError(`${file.source}: tensor '${name}' has shape [${t.dims.join(', ')}], expected [${dims.join(', ')}] (from the metadata: d_model ${cfg.dModel}, inner ${cfg.dInner}, state ${cfg.dState}, groups ${cfg.nGroups}, heads ${cfg.nHeads}, conv kernel ${cfg.dConv})`);
    return { bytes: file.bytes.subarray(t.offset, t.offset + t.nbytes), type: t.type };
  };
  const floats = (name: string, dims: number[], allowF16 = false): Float32Array => {
    const { bytes, type } = tensor(name, dims, allowF16 ? [GGML.F32, GGML.F16] : [GGML.F32]);
    const v = f32Values(file, name, bytes, type, dims.reduce((a, b) => a * b, 1));
    const bad = v.findIndex((x) => !Number.isFinite(x));
    if (bad >= 0) throw new ModelFormatError(`${file.source}: tensor '${name}' has a non-finite value (${v[bad]}) at element ${bad}`);
    return v;
  };
  const fbi = (base: string, K: number, M: number): FbiLinear => {
    if (K % QK1_0 !== 0) throw new ModelFormatError(`${file.source}: tensor '${base}.weight': its input size ${K} is not a multiple of ${QK1_0} (Q1_0 blocks)`);
    const { bytes } = tensor(`${base}.weight`, [K, M], [GGML.Q1_0]);
    const { signs, blockScales } = decodeQ1_0(bytes, M, K);
    const badScale = blockScales.findIndex((d) => d !== 1);
    if (badScale >= 0) throw new ModelFormatError(`${file.source}: tensor '${base}.weight': Q1_0 block scale ${blockScales[badScale]} where an FBI-linear stores 1 (the scale is the column α)`);
    return { M, K, signs, alpha: floats(`${base}.alpha`, [K]), beta: floats(`${base}.beta`, [K]) };
  };
  const dense = (base: string, K: number, M: number): DenseLinear => {
    const { bytes } = tensor(`${base}.weight`, [K, M], [GGML.F16]);
    const half = new Uint16Array(M * K);
    const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    for (let i = 0; i < half.length; i++) half[i] = dv.getUint16(2 * i, true);
    const values = Float32Array.from(half, halfToFloat);
    const bad = values.findIndex((x) => !Number.isFinite(x));
    if (bad >= 0) throw new ModelFormatError(`${file.source}: tensor '${base}.weight' has a non-finite value (${values[bad]}) at element ${bad}`);
    return { M, K, half, values };
  };
  const linear = (base: string, K: number, M: number): Mamba2Linear => (cfg.row.linears.ssm_in.kind === 'f16' ? dense(base, K, M) : fbi(base, K, M));
  const T = MAMBA2_TENSORS;
  const convDim = mamba2ConvDim(cfg);
  const embd = floats(T.tokEmbd, [cfg.dModel, cfg.nVocab], true);
  const output = byName.has(T.output) ? floats(T.output, [cfg.dModel, cfg.nVocab], true) : null;
  const layers: Array<Mamba2Layer | AttnLayer> = [];
  for (let l = 0; l < cfg.nLayer; l++) {
    if (cfg.layerKinds[l] === 'attention') {
      const a = cfg.attn!;
      const dq = a.nHead * a.headDim;
      const dkv = a.nHeadKv * a.headDim;
      layers.push({
        norm: floats(T.norm(l), [cfg.dModel]),
        wq: linear(T.attn(l, 'attn_q'), cfg.dModel, dq), wk: linear(T.attn(l, 'attn_k'), cfg.dModel, dkv),
        wv: linear(T.attn(l, 'attn_v'), cfg.dModel, dkv), wo: linear(T.attn(l, 'attn_output'), dq, cfg.dModel),
      });
      continue;
    }
    const conv = floats(T.conv(l), [cfg.dConv, convDim]);
    // File [dConv, convDim] (ne0 = taps: each channel's taps contiguous) is the reference's [convDim, dConv].
    const A = floats(T.A(l), [1, cfg.nHeads]);
    const badA = A.findIndex((a) => !(a < 0));
    if (badA >= 0) throw new ModelFormatError(`${file.source}: tensor '${T.A(l)}' (A = -exp(A_log)) has ${A[badA]} at head ${badA}: it must be negative and finite`);
    layers.push({
      norm: floats(T.norm(l), [cfg.dModel]),
      inProj: linear(T.inProj(l), cfg.dModel, mamba2InProjDim(cfg)),
      outProj: linear(T.outProj(l), cfg.dInner, cfg.dModel),
      convWeight: conv, convBias: floats(T.convBias(l), [convDim]), dtBias: floats(T.dtBias(l), [cfg.nHeads]),
      ALog: Float64Array.from(A, (a) => Math.log(-a)), D: floats(T.D(l), [1, cfg.nHeads]),
      normWeight: floats(T.gnorm(l), [cfg.dInner / cfg.nGroups, cfg.nGroups]),
    });
  }
  return { embd, output, outputNorm: floats(T.outputNorm, [cfg.dModel]), layers };
}

function typeNameOf(type: number): string {
  return Object.entries(GGML).find(([, v]) => v === type)?.[0] ?? String(type);
}

/** A hybrid attention layer's reference cache: K and V rows [pos][nHeadKv · headDim], as the f16 KV cache stores them. */
export interface AttnRefState {
  k: Float64Array[];
  v: Float64Array[];
}

/** The model's per-sequence state: one mixer state per layer (constant in the sequence length; a hybrid's attention layers grow). */
export function mamba2ModelState(cfg: Mamba2Config): Array<Mamba2State | AttnRefState> {
  return Array.from({ length: cfg.nLayer }, (_, l) => (cfg.layerKinds?.[l] === 'attention' ? { k: [], v: [] } : mamba2EmptyState(cfg)));
}

const roundHalf = (x: number) => halfToFloat(floatToHalf(x));

/**
 * A hybrid's attention mixer in float64 over h [T, d] continuing `st`: q, k, v, NEOX RoPE at positions
 * st.k.length.., K and V rounded to half (the engine's f16 cache), causal GQA softmax(q·k / sqrt(hd))·v, wo.
 */
function refAttention(a: HybridAttention, L: AttnLayer, h: Float64Array, T: number, st: AttnRefState): Float64Array {
  const { nHead, nHeadKv, headDim: hd, ropeTheta } = a;
  const q = mamba2Linear(L.wq, h, T);
  const k = mamba2Linear(L.wk, h, T);
  const v = mamba2Linear(L.wv, h, T);
  const half = hd / 2;
  const rope = (x: Float64Array, off: number, pos: number) => {
    for (let i = 0; i < half; i++) {
      const ang = pos * ropeTheta ** (-(2 * i) / hd);
      const c = Math.cos(ang);
      const s = Math.sin(ang);
      const x0 = x[off + i]!;
      const x1 = x[off + i + half]!;
      x[off + i] = x0 * c - x1 * s;
      x[off + i + half] = x0 * s + x1 * c;
    }
  };
  const dq = nHead * hd;
  const dkv = nHeadKv * hd;
  const out = new Float64Array(T * dq);
  for (let t = 0; t < T; t++) {
    const pos = st.k.length;
    for (let hh = 0; hh < nHead; hh++) rope(q, t * dq + hh * hd, pos);
    for (let hh = 0; hh < nHeadKv; hh++) rope(k, t * dkv + hh * hd, pos);
    st.k.push(Float64Array.from(k.subarray(t * dkv, (t + 1) * dkv), roundHalf));
    st.v.push(Float64Array.from(v.subarray(t * dkv, (t + 1) * dkv), roundHalf));
    const n = st.k.length;
    const scores = new Float64Array(n);
    for (let hh = 0; hh < nHead; hh++) {
      const g = Math.floor(hh / (nHead / nHeadKv));
      let mx = -Infinity;
      for (let j = 0; j < n; j++) {
        let sc = 0;
        for (let i = 0; i < hd; i++) sc += q[t * dq + hh * hd + i]! * st.k[j]![g * hd + i]!;
        scores[j] = sc / Math.sqrt(hd);
        mx = Math.max(mx, scores[j]!);
      }
      let z = 0;
      for (let j = 0; j < n; j++) z += (scores[j] = Math.exp(scores[j]! - mx));
      for (let i = 0; i < hd; i++) {
        let acc = 0;
        for (let j = 0; j < n; j++) acc += scores[j]! * st.v[j]![g * hd + i]!;
        out[t * dq + hh * hd + i] = acc / z;
      }
    }
  }
  return mamba2Linear(L.wo, out, T);
}

function rmsnorm(x: Float64Array, w: ArrayLike<number>, T: number, n: number, eps: number): Float64Array {
  const y = new Float64Array(T * n);
  for (let t = 0; t < T; t++) {
    let ss = 0;
    for (let i = 0; i < n; i++) ss += x[t * n + i]! ** 2;
    const s = 1 / Math.sqrt(ss / n + eps);
    for (let i = 0; i < n; i++) y[t * n + i] = x[t * n + i]! * s * w[i]!;
  }
  return y;
}

/**
 * The whole Bi-Mamba forward in float64 over `tokens` of one sequence, continuing from `state` (advanced):
 * embedding, per layer residual += mixer(RMSNorm(residual)) (the residual stream in full precision), the
 * final RMSNorm and the tied head. Returns logits [tokens.length, vocab]. `chunk`: run the SSM in the chunked
 * form (prefill) instead of the recurrence.
 */
export function mamba2ReferenceForward(cfg: Mamba2Config, w: Mamba2Weights, tokens: readonly number[], state: Array<Mamba2State | AttnRefState>,
  chunk?: number): Float64Array {
  const T = tokens.length;
  const d = cfg.dModel;
  const res = new Float64Array(T * d);
  tokens.forEach((tok, t) => {
    if (!(Number.isInteger(tok) && tok >= 0 && tok < cfg.nVocab)) throw new RangeError(`mamba2: token ${tok} is outside the vocabulary (${cfg.nVocab})`);
    for (let i = 0; i < d; i++) res[t * d + i] = w.embd[tok * d + i]!;
  });
  w.layers.forEach((L, l) => {
    if (isAttnLayer(L)) {
      const out = refAttention(cfg.attn!, L, rmsnorm(res, L.norm, T, d, cfg.eps), T, state[l] as AttnRefState);
      for (let i = 0; i < T * d; i++) res[i] = res[i]! + out[i]!;
      return;
    }
    const mixer: Mamba2MixerWeights = {
      inProj: (h, n) => mamba2Linear(L.inProj, h, n), outProj: (y, n) => mamba2Linear(L.outProj, y, n),
      convWeight: L.convWeight, convBias: L.convBias, normWeight: L.normWeight, normEps: cfg.normEps, dtBias: L.dtBias, ALog: L.ALog, D: L.D,
    };
    const out = refMamba2Mixer(cfg, mixer, rmsnorm(res, L.norm, T, d, cfg.eps), T, state[l] as Mamba2State, chunk);
    for (let i = 0; i < T * d; i++) res[i] = res[i]! + out[i]!;
  });
  const h = rmsnorm(res, w.outputNorm, T, d, cfg.eps);
  const logits = new Float64Array(T * cfg.nVocab);
  const head = w.output ?? w.embd;
  for (let t = 0; t < T; t++)
    for (let v = 0; v < cfg.nVocab; v++) {
      let s = 0;
      for (let i = 0; i < d; i++) s += head[v * d + i]! * h[t * d + i]!;
      logits[t * cfg.nVocab + v] = s;
    }
  return logits;
}

export interface SynthMamba2Options {
  dModel: number;
  nLayer: number;
  dInner?: number;
  dState?: number;
  nHeads?: number;
  nGroups?: number;
  dConv?: number;
  nVocab: number;
  seed?: number;
  /** The FP Mamba-2 teacher's layout (architecture 'mamba2', F16 in/out projections) instead of Bi-Mamba's. */
  dense?: boolean;
  /** A Bi-Mamba hybrid ('bi-mamba-hybrid'): these layers are attention (GQA, nHead / nHeadKv heads), the rest Mamba-2. */
  hybrid?: { attnLayers: number[]; nHead: number; nHeadKv: number; ropeTheta?: number };
  /** Tokenizer metadata to carry over (e.g. a bundled model's), else none. */
  metadata?: (w: GgufWriter) => void;
}

/**
 * A Bi-Mamba GGUF with seeded random weights in the layout above: FBI signs with α ~ 1/sqrt(K), small β, a
 * conv of taps ~ 1/2, dt biases giving dt in [0.001, 0.1] (Mamba-2's init), A_log in log [1, 16], D ~ 1.
 */
export function synthMamba2Gguf(o: SynthMamba2Options): Uint8Array {
  const dims: Mamba2Dims = {
    dModel: o.dModel, dInner: o.dInner ?? 2 * o.dModel, dState: o.dState ?? 16, nHeads: o.nHeads ?? Math.max(1, (o.dInner ?? 2 * o.dModel) / 64),
    nGroups: o.nGroups ?? 1, dConv: o.dConv ?? 4,
  };
  checkMamba2Dims(dims);
  let s = (o.seed ?? 1) >>> 0;
  const rnd = () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const uni = (n: number, lo: number, hi: number) => Float32Array.from({ length: n }, () => lo + (hi - lo) * rnd());
  const f32 = (v: Float32Array) => new Uint8Array(v.buffer, v.byteOffset, v.byteLength);
  const w = new GgufWriter();
  if (o.dense && o.hybrid) throw new RangeError('synthMamba2Gguf: a hybrid is binary (dense and hybrid exclude each other)');
  const a = o.dense ? 'mamba2' : o.hybrid ? 'bi-mamba-hybrid' : BI_MAMBA_ARCH;
  w.string('general.architecture', a).string('general.name', o.dense ? 'synthetic Mamba-2' : o.hybrid ? 'synthetic Bi-Mamba hybrid' : 'synthetic Bi-Mamba');
  const isAttn = (l: number) => o.hybrid?.attnLayers.includes(l) ?? false;
  if (o.hybrid) {
    w.u32(`${a}.attention.head_count`, o.hybrid.nHead).f32(`${a}.rope.freq_base`, o.hybrid.ropeTheta ?? 10000);
    w.set(`${a}.attention.head_count_kv`, GgufType.ARRAY, Uint32Array.from({ length: o.nLayer }, (_, l) => (isAttn(l) ? o.hybrid!.nHeadKv : 0)), GgufType.UINT32);
  }
  w.u32(`${a}.context_length`, 4096).u32(`${a}.embedding_length`, dims.dModel).u32(`${a}.block_count`, o.nLayer).u32(`${a}.vocab_size`, o.nVocab);
  w.u32(`${a}.ssm.conv_kernel`, dims.dConv).u32(`${a}.ssm.state_size`, dims.dState).u32(`${a}.ssm.group_count`, dims.nGroups);
  w.u32(`${a}.ssm.inner_size`, dims.dInner).u32(`${a}.ssm.time_step_rank`, dims.nHeads);
  w.f32(`${a}.attention.layer_norm_rms_epsilon`, 1e-5).f32(`${a}.ssm.norm_epsilon`, 1e-5);
  if (!o.dense) w.set(`${a}.ssm.binary`, GgufType.STRING, 'fbi-linear in_proj/out_proj');
  o.metadata?.(w);
  const T = MAMBA2_TENSORS;
  const embd = uni(o.nVocab * dims.dModel, -1, 1);
  const half = new Uint16Array(embd.length);
  for (let i = 0; i < embd.length; i++) half[i] = floatToHalf(embd[i]!);
  w.addTensor(T.tokEmbd, [dims.dModel, o.nVocab], GGML.F16, new Uint8Array(half.buffer));
  w.addTensor(T.outputNorm, [dims.dModel], GGML.F32, f32(uni(dims.dModel, 0.8, 1.2)));
  const fbi = (base: string, K: number, M: number) => {
    if (o.dense) {
      const half = Uint16Array.from({ length: M * K }, () => floatToHalf((2 * rnd() - 1) / Math.sqrt(K)));
      w.addTensor(`${base}.weight`, [K, M], GGML.F16, new Uint8Array(half.buffer));
      return;
    }
    const signs = Int8Array.from({ length: M * K }, () => (rnd() < 0.5 ? -1 : 1));
    w.addTensor(`${base}.weight`, [K, M], GGML.Q1_0, encodeQ1_0(signs, M, K, 1));
    w.addTensor(`${base}.alpha`, [K], GGML.F32, f32(uni(K, 0.5 / Math.sqrt(K), 1.5 / Math.sqrt(K))));
    w.addTensor(`${base}.beta`, [K], GGML.F32, f32(uni(K, -0.1 / Math.sqrt(K), 0.1 / Math.sqrt(K))));
  };
  const convDim = mamba2ConvDim(dims);
  for (let l = 0; l < o.nLayer; l++) {
    w.addTensor(T.norm(l), [dims.dModel], GGML.F32, f32(uni(dims.dModel, 0.8, 1.2)));
    if (isAttn(l)) {
      const hd = dims.dModel / o.hybrid!.nHead;
      const dq = o.hybrid!.nHead * hd;
      const dkv = o.hybrid!.nHeadKv * hd;
      fbi(T.attn(l, 'attn_q'), dims.dModel, dq);
      fbi(T.attn(l, 'attn_k'), dims.dModel, dkv);
      fbi(T.attn(l, 'attn_v'), dims.dModel, dkv);
      fbi(T.attn(l, 'attn_output'), dq, dims.dModel);
      continue;
    }
    fbi(T.inProj(l), dims.dModel, mamba2InProjDim(dims));
    w.addTensor(T.conv(l), [dims.dConv, convDim], GGML.F32, f32(uni(convDim * dims.dConv, -0.5, 0.5)));
    w.addTensor(T.convBias(l), [convDim], GGML.F32, f32(uni(convDim, -0.1, 0.1)));
    // dt = softplus(dt_raw + bias) lands in [0.001, 0.1]: bias = inverse softplus of a log-uniform draw.
    const dtBias = Float32Array.from({ length: dims.nHeads }, () => {
      const dt = Math.exp(Math.log(0.001) + rnd() * (Math.log(0.1) - Math.log(0.001)));
      return dt + Math.log(-Math.expm1(-dt));
    });
    w.addTensor(T.dtBias(l), [dims.nHeads], GGML.F32, f32(dtBias));
    w.addTensor(T.A(l), [1, dims.nHeads], GGML.F32, f32(Float32Array.from({ length: dims.nHeads }, () => -(1 + 15 * rnd()))));
    w.addTensor(T.D(l), [1, dims.nHeads], GGML.F32, f32(uni(dims.nHeads, 0.5, 1.5)));
    w.addTensor(T.gnorm(l), [dims.dInner / dims.nGroups, dims.nGroups], GGML.F32, f32(uni(dims.dInner, 0.8, 1.2)));
    fbi(T.outProj(l), dims.dInner, dims.dModel);
  }
  return w.toBytes();
}

/** Shapes of the paper's models (../shared/families.md §8) and a tiny one for tests; LLaMA-2's vocabulary. */
export const MAMBA2_SHAPES = {
  tiny: { dModel: 128, nLayer: 2, dInner: 256, dState: 16, nHeads: 4, nGroups: 1, dConv: 4 },
  '780m': { dModel: 1536, nLayer: 48, dInner: 3072, dState: 128, nHeads: 48, nGroups: 1, dConv: 4 },
  '1b3': { dModel: 2048, nLayer: 48, dInner: 4096, dState: 128, nHeads: 64, nGroups: 1, dConv: 4 },
  '2b7': { dModel: 2560, nLayer: 64, dInner: 5120, dState: 128, nHeads: 80, nGroups: 1, dConv: 4 },
} as const;
export type Mamba2ShapeName = keyof typeof MAMBA2_SHAPES;
