// Hyperparameters of a model read from GGUF metadata through its architecture row (arch.ts), validated.
import { ModelFormatError } from '../errors.js';
import { type GgufFile, GgufMetadata } from '../format/gguf.js';
import { type ArchRow, type FfnActivation, archRow } from './arch.js';

export interface ModelConfig {
  arch: string;
  /** The architecture table row the file is read with. */
  row: ArchRow;
  nEmbd: number; // d_model
  nLayer: number;
  nHead: number;
  nHeadKv: number;
  headDim: number;
  nFf: number;
  nVocab: number;
  nCtxTrain: number;
  ropeTheta: number;
  nRot: number;
  eps: number;
  /** FFN gate activation: ReLU² or SiLU (the row's default unless `<arch>.hidden_activation` says). */
  activation: FfnActivation;
  /** a4.8: the fraction of the attention output projection's input kept by top-k (else 1). */
  topkRatio: number;
  /** OneBit: the epsilon of the LayerNorm after every projection. */
  linearNormEps: number;
}

export function configFromGguf(file: GgufFile): ModelConfig {
  const md = new GgufMetadata(file);
  const arch = md.string('general.architecture');
  const row = archRow(arch, file.source);
  const key = (k: string) => `${arch}.${k}`;
  const positive = (k: string, fallback?: number): number => {
    const v = fallback === undefined ? md.number(key(k)) : md.number(key(k), fallback)!;
    if (!Number.isInteger(v) || v < 1 || v > 1 << 24) throw new ModelFormatError(`${file.source}: metadata '${key(k)}' = ${v} is not a positive integer`);
    return v;
  };
  const nEmbd = positive('embedding_length');
  const nHead = positive('attention.head_count');
  const nHeadKv = positive('attention.head_count_kv', nHead);
  if (nEmbd % nHead !== 0) throw new ModelFormatError(`${file.source}: embedding_length ${nEmbd} is not a multiple of head_count ${nHead}`);
  if (nHead % nHeadKv !== 0) throw new ModelFormatError(`${file.source}: head_count ${nHead} is not a multiple of head_count_kv ${nHeadKv}`);
  const headDim = nEmbd / nHead;
  const nRot = positive('rope.dimension_count', headDim);
  if (nRot > headDim || nRot % 2 !== 0) throw new ModelFormatError(`${file.source}: rope.dimension_count ${nRot} must be even and <= head size ${headDim}`);
  const embd = file.tensors.find((t) => t.name === 'token_embd.weight');
  const tokens = md.has('tokenizer.ggml.tokens') ? md.strings('tokenizer.ggml.tokens')!.length : undefined;
  const nVocab = md.number(key('vocab_size'), undefined) ?? embd?.dims[1] ?? tokens;
  if (nVocab === undefined || !Number.isInteger(nVocab) || nVocab < 1) throw new ModelFormatError(`${file.source}: cannot determine the vocabulary size`);
  const eps = md.number(key('attention.layer_norm_rms_epsilon'), 1e-5)!;
  const ropeTheta = md.number(key('rope.freq_base'), 10000)!;
  if (!(eps > 0 && eps < 1)) throw new ModelFormatError(`${file.source}: layer_norm_rms_epsilon ${eps} is out of range`);
  if (!(ropeTheta > 0)) throw new ModelFormatError(`${file.source}: rope.freq_base ${ropeTheta} must be positive`);
  let activation: FfnActivation = row.activation;
  const act = md.string(key('hidden_activation'), undefined) ?? md.string(key('hidden_act'), undefined);
  if (act !== undefined) {
    if (act === 'relu2' || act === 'relu_sqr' || act === 'relu_squared') activation = 'relu2';
    else if (act === 'silu' || act === 'swish') activation = 'silu';
    else throw new ModelFormatError(`${file.source}: metadata '${key('hidden_activation')}' = '${act}' is not relu2 or silu`);
  }
  let topkRatio = 1;
  if (row.extraKeys.includes('attn_output.topk_ratio')) {
    topkRatio = md.number(key('attn_output.topk_ratio'), 0.5)!;
    if (!(topkRatio > 0 && topkRatio <= 1)) throw new ModelFormatError(`${file.source}: metadata '${key('attn_output.topk_ratio')}' = ${topkRatio} must be in (0, 1]`);
  }
  if (row.extraKeys.includes('kv_bits')) {
    const bits = md.number(key('kv_bits'), 3)!;
    if (bits !== 3) throw new ModelFormatError(`${file.source}: metadata '${key('kv_bits')}' = ${bits}: only a 3-bit KV cache is supported for ${arch}`);
  }
  let linearNormEps = 1e-5;
  if (row.extraKeys.includes('linear_norm_epsilon')) {
    linearNormEps = md.number(key('linear_norm_epsilon'), 1e-5)!;
    if (!(linearNormEps > 0 && linearNormEps < 1)) throw new ModelFormatError(`${file.source}: metadata '${key('linear_norm_epsilon')}' = ${linearNormEps} is out of range`);
  }
  return {
    arch, row,
    nEmbd, nLayer: positive('block_count'), nHead, nHeadKv, headDim, nFf: positive('feed_forward_length'), nVocab,
    nCtxTrain: positive('context_length', 4096), ropeTheta, nRot, eps, activation, topkRatio, linearNormEps,
  };
}
