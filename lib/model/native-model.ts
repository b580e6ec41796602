// The whole-model native forward (native/runtime/model_exec.h): one N-API call per forward instead of
// ~17 per layer. It reads the same repacked weights as the op-by-op path (lib/model/transformer.ts with a
// ComputeBackend) and gives bit-identical logits; the op-by-op path stays as the test oracle's twin.
// The spec it builds is the native mirror of the architecture row: one linear spec per projection.
import { NativeError } from '../errors.js';
import type { KernelContext } from '../kernels/context.js';
import { loadNative } from '../native.js';
import type { ModelConfig } from './config.js';
import type { KvCache } from './kv-cache.js';
import type { HeadMatrix, Linear, LinearGroup, ModelWeights } from './weights.js';

interface NativeModelHandle {
  forward(ctx: unknown, tokens: Int32Array, pos0: number, kvK: ArrayBufferView[], kvV: ArrayBufferView[], kvType: string,
    capacity: number, nOut: number, logits: Float32Array, profile?: Float64Array): void;
  forwardBatch(ctx: unknown, pool: unknown, tokens: Int32Array, seq: Int32Array, pos: Int32Array, outRows: Int32Array,
    logits: Float32Array, profile?: Float64Array): void;
}

/** A one-call native forward's op clocks: what the worker reads for a request's profile. */
export interface OpProfiler {
  /** Accumulated ns per op class (see opNames) while profiling is on, else null. */
  profile: Float64Array | null;
  setProfiling(on: boolean): void;
  /** The op classes, in the index order of `profile` ('total' is the whole forward). */
  readonly opNames: readonly string[];
}

/** Op classes the native forward times (index order of the profile array). */
export function profileOpNames(): string[] {
  return (loadNative().profileOps as () => string[])();
}

/** The native spec of one linear (native/addon/model.cpp read_linear). */
function linearSpec(l: Linear): object {
  const common = {
    quant: l.quant, M: l.M, K: l.K, topkRatio: l.topkRatio, lnEps: l.layerNormEps,
    colScale: l.colScale ?? undefined, colBias: l.colBias ?? undefined, rowScale: l.rowScale ?? undefined,
  };
  const w = l.w;
  switch (w.kind) {
    case 't2r16': return { ...common, weights: 't2r16', codes: w.m.codes, scales: w.m.scales, scaleMode: w.m.scaleMode };
    case 'td3': return { ...common, weights: 'td3', data: w.m.data, scales: w.m.scales, scaleMode: w.m.scaleMode };
    case 'ts256': return { ...common, weights: 'ts256', data: w.m.data, scales: w.m.scales, scaleMode: w.m.scaleMode };
    case 'b1r16': return { ...common, weights: 'b1r16', bits: w.m.bits, scales: w.m.scales, scaleMode: w.m.scaleMode };
    case 'b1l64': return { ...common, weights: 'b1l64', bits: w.m.bits };
    case 'billm': return { ...common, weights: 'billm', data: w.m.data, salient: w.m.salient };
    case 'f16': return { ...common, weights: 'f16', data: w.m.data };
  }
}

const group = (g: LinearGroup) => g.map(linearSpec);

function dense(h: HeadMatrix) {
  return { kind: h.kind, data: h.m.data, M: h.m.M, K: h.m.K };
}

export class NativeModel implements OpProfiler {
  private readonly handle: NativeModelHandle;
  /** Accumulated ns per op class (see profileOpNames) while profiling is on, else null. */
  profile: Float64Array | null = null;

  constructor(readonly ctx: KernelContext, readonly cfg: ModelConfig, weights: ModelWeights) {
    const Ctor = loadNative().ModelNative as new (spec: object) => NativeModelHandle;
    if (typeof Ctor !== 'function') throw new NativeError('bitllm: the native addon has no ModelNative class');
    this.handle = new Ctor({
      nEmbd: cfg.nEmbd, nFf: cfg.nFf, nHead: cfg.nHead, nHeadKv: cfg.nHeadKv, headDim: cfg.headDim, nRot: cfg.nRot,
      nVocab: cfg.nVocab, ropeTheta: cfg.ropeTheta, eps: cfg.eps, activation: cfg.activation,
      layers: weights.layers.map((l) => ({
        attnNorm: l.attnNorm, attnSubNorm: l.attnSubNorm ?? undefined, ffnNorm: l.ffnNorm, ffnSubNorm: l.ffnSubNorm ?? undefined,
        wqkv: group(l.wqkv), wo: group(l.wo), wgu: group(l.wgu), wdown: group(l.wdown),
      })),
      outputNorm: weights.outputNorm,
      embd: dense(weights.tokEmbd),
      head: dense(weights.output),
    });
  }

  readonly opNames = profileOpNames();

  /** Turns per-op timing on (zeroed) or off. */
  setProfiling(on: boolean): void {
    this.profile = on ? new Float64Array(this.opNames.length) : null;
  }

  /** Same contract as TransformerModel.forward: logits [n, vocab] of the last n tokens. */
  forward(tokens: ArrayLike<number>, kv: KvCache, allLogits: boolean): Float32Array {
    const B = tokens.length;
    const n = allLogits ? B : 1;
    const logits = new Float32Array(n * this.cfg.nVocab);
    const ids = tokens instanceof Int32Array ? tokens : Int32Array.from(tokens);
    this.handle.forward(this.ctx.handle, ids, kv.length, kv.k, kv.v, kv.type, kv.capacity, n, logits, this.profile ?? undefined);
    return logits;
  }

  /**
   * The batch-first forward over a native sequence-state pool (lib/model/state.ts checks the rows' shape;
   * the addon validates them again and admits them into `pool`). Logits [outRows.length, vocab] in row order;
   * with `into` large enough, written there and returned as a view of its start (no allocation per step).
   */
  forwardBatch(pool: unknown, tokens: Int32Array, seq: Int32Array, pos: Int32Array, outRows: Int32Array, into?: Float32Array): Float32Array {
    const n = outRows.length * this.cfg.nVocab;
    const logits = into && into.length >= n ? into.subarray(0, n) : new Float32Array(n);
    this.handle.forwardBatch(this.ctx.handle, pool, tokens, seq, pos, outRows, logits, this.profile ?? undefined);
    return logits;
  }
}
