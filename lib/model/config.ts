// Hyperparameters of the BitNet family read from GGUF metadata, validated.
import { ModelFormatError } from '../errors.js';
import { type GgufFile, GgufMetadata } from '../format/gguf.js';

export type BitnetArch = 'bitnet' | 'bitnet-b1.58' | 'bitnet-25';
export const BITNET_ARCHS: readonly BitnetArch[] = ['bitnet', 'bitnet-b1.58', 'bitnet-25'];

export interface BitnetConfig {
  arch: BitnetArch;
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
  /** FFN gate activation: ReLU² (BitNet b1.58) or SiLU (upstream llama.cpp default for 'bitnet'). */
  activation: 'relu2' | 'silu';
}

export function configFromGguf(file: GgufFile): BitnetConfig {
  const md = new GgufMetadata(file);
  const arch = md.string('general.architecture');
  if (!(BITNET_ARCHS as readonly string[]).includes(arch))
    throw new ModelFormatError(`${file.source}: architecture '${arch}' is not supported (supported: ${BITNET_ARCHS.join(', ')})`);
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
  // bitnet.cpp's architectures are ReLU²; upstream 'bitnet' reads hidden_activation and defaults to SiLU.
  let activation: 'relu2' | 'silu' = arch === 'bitnet' ? 'silu' : 'relu2';
  const act = md.string(key('hidden_activation'), undefined) ?? md.string(key('hidden_act'), undefined);
  if (act !== undefined) {
    if (act === 'relu2' || act === 'relu_sqr' || act === 'relu_squared') activation = 'relu2';
    else if (act === 'silu' || act === 'swish') activation = 'silu';
    else throw new ModelFormatError(`${file.source}: metadata '${key('hidden_activation')}' = '${act}' is not relu2 or silu`);
  }
  return {
    arch: arch as BitnetArch,
    nEmbd, nLayer: positive('block_count'), nHead, nHeadKv, headDim, nFf: positive('feed_forward_length'), nVocab,
    nCtxTrain: positive('context_length', 4096), ropeTheta, nRot, eps, activation,
  };
}
