// The whole-model native forward (native/runtime/bitnet_exec.h): one N-API call per forward instead of
// ~17 per layer. It reads the same repacked weights as the op-by-op path (lib/model/bitnet.ts with a
// ComputeBackend) and gives bit-identical logits; the op-by-op path stays as the test oracle's twin.
import { NativeError } from '../errors.js';
import type { KvCache } from '../engine/kv-cache.js';
import type { KernelContext } from '../kernels/context.js';
import { loadNative } from '../native.js';
import type { BitnetConfig } from './config.js';
import { type BitnetWeights, type HeadMatrix, type TernaryWeight, isTd3 } from './weights.js';

interface NativeBitnetHandle {
  forward(ctx: unknown, tokens: Int32Array, pos0: number, kvK: ArrayBufferView[], kvV: ArrayBufferView[], kvType: string,
    capacity: number, nOut: number, logits: Float32Array, profile?: Float64Array): void;
}

/** Op classes the native forward times (index order of the profile array). */
export function profileOpNames(): string[] {
  return (loadNative().profileOps as () => string[])();
}

function linear(w: TernaryWeight) {
  if (isTd3(w)) return { kind: 'td3', data: w.data, scales: w.scales, M: w.M, K: w.K, scaleMode: w.scaleMode };
  return { kind: 't2r16', codes: w.codes, scales: w.scales, M: w.M, K: w.K, scaleMode: w.scaleMode };
}

function dense(h: HeadMatrix) {
  return { kind: h.kind, data: h.m.data, M: h.m.M, K: h.m.K };
}

export class NativeBitnet {
  private readonly handle: NativeBitnetHandle;
  /** Accumulated ns per op class (see profileOpNames) while profiling is on, else null. */
  profile: Float64Array | null = null;

  constructor(readonly ctx: KernelContext, readonly cfg: BitnetConfig, weights: BitnetWeights) {
    const Ctor = loadNative().BitnetNative as new (spec: object) => NativeBitnetHandle;
    if (typeof Ctor !== 'function') throw new NativeError('bitllm: the native addon has no BitnetNative class');
    this.handle = new Ctor({
      nEmbd: cfg.nEmbd, nFf: cfg.nFf, nHead: cfg.nHead, nHeadKv: cfg.nHeadKv, headDim: cfg.headDim, nRot: cfg.nRot,
      nVocab: cfg.nVocab, ropeTheta: cfg.ropeTheta, eps: cfg.eps, activation: cfg.activation,
      layers: weights.layers.map((l) => ({
        attnNorm: l.attnNorm, attnSubNorm: l.attnSubNorm, ffnNorm: l.ffnNorm, ffnSubNorm: l.ffnSubNorm,
        wqkv: linear(l.wqkv), wo: linear(l.wo), wgu: linear(l.wgu), wdown: linear(l.wdown),
      })),
      outputNorm: weights.outputNorm,
      embd: dense(weights.tokEmbd),
      head: dense(weights.output),
    });
  }

  /** Turns per-op timing on (zeroed) or off. */
  setProfiling(on: boolean): void {
    this.profile = on ? new Float64Array(profileOpNames().length) : null;
  }

  /** Same contract as BitnetModel.forward: logits [n, vocab] of the last n tokens. */
  forward(tokens: ArrayLike<number>, kv: KvCache, allLogits: boolean): Float32Array {
    const B = tokens.length;
    const n = allLogits ? B : 1;
    const logits = new Float32Array(n * this.cfg.nVocab);
    const ids = tokens instanceof Int32Array ? tokens : Int32Array.from(tokens);
    this.handle.forward(this.ctx.handle, ids, kv.length, kv.k, kv.v, kv.type, kv.capacity, n, logits, this.profile ?? undefined);
    return logits;
  }
}
