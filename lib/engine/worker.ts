// The compute thread of one loaded model: it maps the file itself and owns the KernelContext, the weights,
// the KV cache and the samplers. Requests arrive one at a time (the main thread queues them); each runs
// synchronously to completion, posting a message per token. Between tokens it reads the shared control
// word, so an abort or a stop string found on the main thread ends the request within one token.
import { parentPort, workerData } from 'node:worker_threads';
import { performance } from 'node:perf_hooks';

import { readGguf } from '../format/gguf.js';
import { KernelContext } from '../kernels/context.js';
import { TransformerModel } from '../model/transformer.js';
import { configFromGguf } from '../model/config.js';
import { profileOpNames } from '../model/native-model.js';
import { loadWeights } from '../model/weights.js';
import {
  type FinishReason, PREFILL_CHUNK, type PhaseProfile, type RequestStats, type WorkerInit, type WorkerReply, type WorkerRequest, serializeError,
} from './generate.js';
import { ContextOverflowError, KvCache } from '../model/kv-cache.js';
import { Sampler, logprobsOf } from './sampler.js';

const port = parentPort;
if (!port) throw new Error('bitllm: engine/worker.js must run as a worker thread');
const init = workerData as WorkerInit;
const control = new Int32Array(init.control); // [1]: id of the request to stop

function post(msg: WorkerReply, transfer?: ArrayBuffer[]): void {
  port!.postMessage(msg, transfer);
}

/** The single sequence this worker caches: its tokens and how far its K/V are bit-reproducible. */
class Sequence {
  /** Tokens whose K/V fill kv[0, tokens.length). */
  tokens: number[] = [];
  /**
   * Positions [0, exact) were computed by prefill chunks aligned to PREFILL_CHUNK from position 0: reusing whole
   * chunks of them gives the same numbers as recomputing (a batch and a token-by-token pass differ in rounding).
   */
  exact = 0;

  constructor(readonly kv: KvCache) {}

  reset(): void {
    this.kv.truncate(0);
    this.tokens = [];
    this.exact = 0;
  }

  /** Keeps the cached prefix usable for `tokens` (never all of it: the last token must run to give logits). */
  reuse(tokens: readonly number[], mode: 'exact' | 'prefix'): number {
    const limit = Math.min(this.tokens.length, tokens.length - 1);
    let keep = 0;
    while (keep < limit && this.tokens[keep] === tokens[keep]) keep++;
    if (mode === 'exact') keep = Math.floor(Math.min(keep, this.exact) / PREFILL_CHUNK) * PREFILL_CHUNK;
    this.kv.truncate(keep);
    this.tokens.length = keep;
    this.exact = Math.min(this.exact, keep);
    return keep;
  }

  /** Runs tokens[from..] in chunks ending at multiples of PREFILL_CHUNK; returns the last chunk's logits. */
  prefill(model: TransformerModel, tokens: readonly number[], from: number, allLogits: boolean, stopped: () => boolean,
    onLogits?: (start: number, count: number, logits: Float32Array) => void, timer?: PhaseTimer): Float32Array | undefined {
    const aligned = from % PREFILL_CHUNK === 0 && from <= this.exact;
    let logits: Float32Array | undefined;
    for (let p = from; p < tokens.length;) {
      if (stopped()) return undefined;
      const end = Math.min(tokens.length, (Math.floor(p / PREFILL_CHUNK) + 1) * PREFILL_CHUNK);
      const chunk = tokens.slice(p, end);
      logits = timer ? timer.forward(chunk.length, () => model.forward(chunk, this.kv, allLogits)) : model.forward(chunk, this.kv, allLogits);
      for (const t of chunk) this.tokens.push(t);
      onLogits?.(p, chunk.length, logits);
      p = end;
    }
    this.exact = aligned ? tokens.length : Math.min(this.exact, from);
    return logits;
  }
}

/**
 * Per-phase timing for options.profile: the native per-op clocks plus JS-side clocks around each forward
 * and each sampling step, turned into ms per token.
 */
class PhaseTimer {
  tokens = 0;
  forwardMs = 0;
  samplingMs = 0;
  private t0 = 0;
  constructor(private readonly model: TransformerModel) {
    model.native?.setProfiling(true);
    this.t0 = performance.now();
  }

  /** A forward of `n` tokens, timed from JS. */
  forward<T>(n: number, f: () => T): T {
    const t = performance.now();
    const r = f();
    this.forwardMs += performance.now() - t;
    this.tokens += n;
    return r;
  }

  sample<T>(f: () => T): T {
    const t = performance.now();
    const r = f();
    this.samplingMs += performance.now() - t;
    return r;
  }

  finish(): PhaseProfile | undefined {
    const wall = performance.now() - this.t0;
    const prof = this.model.native?.profile;
    this.model.native?.setProfiling(false);
    const n = this.tokens;
    if (n === 0) return undefined;
    const ops: Record<string, number> = {};
    let opsMs = 0;
    let nativeMs = this.forwardMs;
    if (prof) {
      const names = profileOpNames();
      names.forEach((name, i) => {
        if (name === 'total') nativeMs = prof[i]! / 1e6;
        else {
          ops[name] = prof[i]! / 1e6 / n;
          opsMs += prof[i]! / 1e6;
        }
      });
    } else ops.forward = this.forwardMs / n;
    const overhead = {
      native: Math.max(0, nativeMs - (prof ? opsMs : nativeMs)) / n,
      napi: Math.max(0, this.forwardMs - nativeMs) / n,
      sampling: this.samplingMs / n,
      loop: Math.max(0, wall - this.forwardMs - this.samplingMs) / n,
    };
    const over = overhead.native + overhead.napi + overhead.sampling + overhead.loop;
    return { tokens: n, wallMsPerToken: wall / n, ops, overhead, overheadPct: (100 * over) / (wall / n) };
  }
}

interface Engine {
  model: TransformerModel;
  seq: Sequence;
}

function load(): Engine {
  const t0 = performance.now();
  const file = readGguf(init.path);
  const cfg = configFromGguf(file);
  const ctx = new KernelContext({ threads: init.threads, isa: init.isa });
  const weights = loadWeights(ctx, file, cfg, {
    headType: init.headType,
    layout: init.layout,
    actQuant: init.actQuant,
    onProgress: (done, total) => post({ type: 'progress', done, total }),
  });
  const model = new TransformerModel(ctx, cfg, weights);
  const kv = new KvCache(cfg.nLayer, cfg.nHeadKv, cfg.headDim, init.contextSize, init.kvType);
  const info = ctx.info();
  post({
    type: 'ready', layout: weights.layout, isa: info.isa, threads: info.threads, kernels: info.kernels, weightBytes: weights.bytesPerToken,
    kvBytes: kv.bytes, loadMs: performance.now() - t0,
  });
  return { model, seq: new Sequence(kv) };
}

function generate(e: Engine, req: Extract<WorkerRequest, { type: 'generate' }>): RequestStats {
  const { model, seq } = e;
  const stopped = () => Atomics.load(control, 0) === req.id;
  const t0 = performance.now();
  if (req.tokens.length + req.maxTokens > seq.kv.capacity)
    throw new ContextOverflowError(`prompt of ${req.tokens.length} tokens + maxTokens ${req.maxTokens} exceeds contextSize ${seq.kv.capacity}`);
  const reused = seq.reuse(req.tokens, req.reuse);
  const stats: RequestStats = {
    promptTokens: req.tokens.length, reusedTokens: reused, evaluatedTokens: req.tokens.length - reused, generatedTokens: 0,
    prefillMs: 0, decodeMs: 0, decodeTps: 0, finishReason: 'abort',
  };
  const prefillTimer = req.profile ? new PhaseTimer(model) : undefined;
  const first = seq.prefill(model, req.tokens, reused, false, stopped, undefined, prefillTimer);
  stats.prefillMs = performance.now() - t0;
  if (req.profile) stats.profile = { prefill: prefillTimer!.finish(), decode: undefined };
  if (!first) return stats;
  let logits: Float32Array = first;
  const timer = req.profile ? new PhaseTimer(model) : undefined;

  const sampler = new Sampler(req.sampler);
  for (const t of req.tokens) sampler.accept(t); // penalties look back into the prompt too
  const eog = new Set(req.eog);
  let tFirst = 0;
  let reason: FinishReason = 'abort';
  for (let n = 1; ; n++) {
    if (req.vocabSize < logits.length) logits.fill(-Infinity, req.vocabSize);
    const l = logits;
    const raw = req.logprobs !== undefined ? l.slice() : undefined; // the sampler edits logits in place
    const token: number = timer ? timer.sample(() => sampler.sample(l)) : sampler.sample(l);
    if (n === 1) tFirst = performance.now();
    sampler.accept(token);
    stats.generatedTokens = n;
    const isEog = eog.has(token);
    const last = isEog || n >= req.maxTokens;
    post({ type: 'token', id: req.id, token, last, ...(raw && { logprobs: logprobsOf(raw, token, req.logprobs!) }) });
    if (last) {
      reason = isEog ? 'eog' : 'length';
      break;
    }
    if (stopped()) break;
    logits = timer ? timer.forward(1, (): Float32Array => model.forward([token], seq.kv)) : model.forward([token], seq.kv);
    seq.tokens.push(token);
  }
  if (timer) stats.profile!.decode = timer.finish();
  stats.finishReason = reason;
  stats.decodeMs = performance.now() - tFirst;
  stats.decodeTps = stats.generatedTokens > 1 ? (stats.generatedTokens - 1) / (stats.decodeMs / 1000) : 0;
  return stats;
}

function evaluate(e: Engine, req: Extract<WorkerRequest, { type: 'evaluate' }>): RequestStats {
  const { model, seq } = e;
  const stopped = () => Atomics.load(control, 0) === req.id;
  const t0 = performance.now();
  seq.reset();
  seq.kv.reserve(req.tokens.length);
  let rows = 0;
  seq.prefill(model, req.tokens, 0, true, stopped, (start, count, logits) => {
    rows += count;
    post({ type: 'logits', id: req.id, start, count, logits }, [logits.buffer as ArrayBuffer]);
  });
  return {
    promptTokens: req.tokens.length, reusedTokens: 0, evaluatedTokens: rows, generatedTokens: 0,
    prefillMs: performance.now() - t0, decodeMs: 0, decodeTps: 0, finishReason: rows === req.tokens.length ? 'length' : 'abort',
  };
}

let engine: Engine | undefined;
try {
  engine = load();
} catch (err) {
  post({ type: 'error', id: 0, error: serializeError(err) });
}

if (engine) {
  const e = engine;
  port.on('message', (req: WorkerRequest) => {
    try {
      const stats = req.type === 'generate' ? generate(e, req) : evaluate(e, req);
      post({ type: 'done', id: req.id, stats });
    } catch (err) {
      // A failed forward may leave the cache half-written: start the next request from scratch.
      e.seq.reset();
      post({ type: 'error', id: req.id, error: serializeError(err) });
    }
  });
}
