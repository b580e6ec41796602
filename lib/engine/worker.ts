// The compute thread of one loaded model: it maps the file itself and owns the KernelContext, the weights,
// the sequence-state pool (paged KV) and the step scheduler (scheduler.ts). Requests arrive at any time; the
// worker runs one scheduler step (one batch-first forward over every running sequence), posts the step's
// tokens, then yields to its event loop so new requests and cancels are taken between steps.
import { parentPort, receiveMessageOnPort, workerData } from 'node:worker_threads';
import { performance } from 'node:perf_hooks';

import { readGguf } from '../format/gguf.js';
import { KernelContext } from '../kernels/context.js';
import { TransformerModel } from '../model/transformer.js';
import { configFromGguf } from '../model/config.js';
import { blockKindOf } from '../model/arch.js';
import { mamba2ConfigFromGguf } from '../model/mamba2.js';
import { MAMBA2_CHUNK, Mamba2Exec } from '../model/mamba2-exec.js';
import { Mamba2StatePool } from '../model/mamba2-pool.js';
import type { OpProfiler } from '../model/native-model.js';
import { loadWeights } from '../model/weights.js';
import { KV_BLOCK_TOKENS, SequencePool } from '../model/state.js';
import type { BatchRow } from '../model/state.js';
import {
  PREFILL_CHUNK, type PhaseProfile, type RequestStats, type WorkerInit, type WorkerReady, type WorkerReply, type WorkerRequest, serializeError,
} from './generate.js';
import { IdleCollector } from './idle-gc.js';
import { type BatchModel, type ScheduledStats, type StepStats, StepScheduler } from './scheduler.js';

const port = parentPort;
if (!port) throw new Error('bitllm: engine/worker.js must run as a worker thread');
const init = workerData as WorkerInit;

function post(msg: WorkerReply, transfer?: ArrayBuffer[]): void {
  port!.postMessage(msg, transfer);
}

/**
 * options.profile: the steps a request took part in, split by phase (a step with its prompt rows is prefill,
 * one with its decode row is decode), with the native per-op clocks of those steps. Exact when the request
 * runs alone (bench); with other sequences in its steps, their rows share the same clocks.
 */
class PhaseAcc {
  tokens = 0;
  wallMs = 0;
  forwardMs = 0;
  samplingMs = 0;
  readonly ops: Float64Array;
  constructor(n: number) {
    this.ops = new Float64Array(n);
  }

  add(tokens: number, s: StepStats, wallMs: number, ops: Float64Array | null): void {
    this.tokens += tokens;
    this.wallMs += wallMs;
    this.forwardMs += s.forwardMs;
    this.samplingMs += s.sampleMs;
    if (ops) for (let i = 0; i < ops.length; i++) this.ops[i]! += ops[i]!;
  }

  /** `names`: the native forward's op classes (index order of its clocks), or null when it has none. */
  finish(names: readonly string[] | null): PhaseProfile | undefined {
    const native = names !== null;
    const n = this.tokens;
    if (n === 0) return undefined;
    const out: Record<string, number> = {};
    let opsMs = 0;
    let nativeMs = this.forwardMs;
    if (native) {
      names.forEach((name, i) => {
        if (name === 'total') nativeMs = this.ops[i]! / 1e6;
        else {
          out[name] = this.ops[i]! / 1e6 / n;
          opsMs += this.ops[i]! / 1e6;
        }
      });
    } else out.forward = this.forwardMs / n;
    const overhead = {
      native: Math.max(0, nativeMs - (native ? opsMs : nativeMs)) / n,
      napi: Math.max(0, this.forwardMs - nativeMs) / n,
      sampling: this.samplingMs / n,
      loop: Math.max(0, this.wallMs - this.forwardMs - this.samplingMs) / n,
    };
    const over = overhead.native + overhead.napi + overhead.sampling + overhead.loop;
    return { tokens: n, wallMsPerToken: this.wallMs / n, ops: out, overhead, overheadPct: (100 * over) / (this.wallMs / n) };
  }
}

interface Engine {
  /** The one-call native forward's op clocks (attention and Mamba-2 blocks alike), or null (none). */
  native: OpProfiler | null;
  pool: SequencePool | Mamba2StatePool;
  scheduler: StepScheduler;
}

/** Requests in flight: what the worker reports beyond the scheduler's events. */
const live = new Map<number, { profile?: { prefill: PhaseAcc; decode: PhaseAcc } }>();
/** Live requests that asked for a profile (the native op clocks run while there are any). */
let profiling = 0;
/** While a step runs, requests it ends post their 'done' after the step (its time counts in their profile). */
let inStep = false;
const pendingDone: Array<() => void> = [];

function load(): Engine {
  const t0 = performance.now();
  const file = readGguf(init.path);
  const ctx = new KernelContext({ threads: init.threads, isa: init.isa });
  // One logits buffer for every step (grown as needed): the scheduler is done with a step's logits before
  // the next (it copies what it keeps), and a fresh [rows, vocab] array per step is megabytes of garbage
  // that the allocator and V8 hold on to (the soak's RSS).
  let logitsBuf = new Float32Array(0);
  const logitsFor = (rows: readonly BatchRow[], nVocab: number): Float32Array => {
    let want = 0;
    for (const r of rows) if (r.logits) want++;
    want *= nVocab;
    if (logitsBuf.length < want) logitsBuf = new Float32Array(Math.max(want, logitsBuf.length * 2));
    return logitsBuf;
  };
  let pool: SequencePool | Mamba2StatePool;
  let native: OpProfiler | null;
  let batchModel: BatchModel;
  let ready: Pick<WorkerReady, 'layout' | 'linears' | 'weightBytes' | 'kvBytes'>;
  const arch = file.metadata.get('general.architecture')?.value;
  if (typeof arch === 'string' && blockKindOf(arch) === 'mamba2') {
    // The Mamba-2 block kind: a fixed-size recurrent state per sequence. The scheduler's token budget counts
    // one context of tokens per sequence (blockTokens = contextSize), so it holds `sequences` states at most.
    const cfg = mamba2ConfigFromGguf(file);
    const exec = new Mamba2Exec(ctx, cfg, file, { headType: init.headType });
    const mpool = new Mamba2StatePool(exec, { maxSequences: init.sequences, contextSize: init.contextSize });
    pool = mpool;
    native = mpool.isNative ? exec : null;
    batchModel = {
      capacityTokens: init.contextSize * init.sequences,
      blockTokens: init.contextSize,
      contextSize: init.contextSize,
      recurrent: { align: MAMBA2_CHUNK },
      createSequence: () => mpool.create(),
      forkSequence: (src, keep) => {
        const id = mpool.fork(src);
        if (keep < mpool.length(id)) mpool.truncate(id, keep); // the scheduler forks recurrent states whole: a refusal here is a bug
        return id;
      },
      disposeSequence: (seq) => mpool.dispose(seq),
      forwardBatch: (rows) => mpool.forwardBatch(rows, logitsFor(rows, cfg.nVocab)),
    };
    ready = { layout: init.layout === 'td3' ? 'td3' : 't2r16', linears: exec.linearLayouts(), weightBytes: exec.weightBytes, kvBytes: exec.stateBytes(init.contextSize) };
  } else {
    const cfg = configFromGguf(file);
    const weights = loadWeights(ctx, file, cfg, {
      headType: init.headType,
      layout: init.layout,
      actQuant: init.actQuant,
      onProgress: (done, total) => post({ type: 'progress', done, total }),
    });
    const model = new TransformerModel(ctx, cfg, weights);
    // Every sequence may fill the whole context; the pool's memory grows with the blocks in use.
    const kpool = new SequencePool(model, { maxTokens: init.contextSize * init.sequences, contextSize: init.contextSize, kvType: init.kvType });
    pool = kpool;
    native = model.native;
    batchModel = {
      capacityTokens: Math.ceil((init.contextSize * init.sequences) / KV_BLOCK_TOKENS) * KV_BLOCK_TOKENS,
      blockTokens: KV_BLOCK_TOKENS,
      contextSize: init.contextSize,
      createSequence: () => kpool.create(),
      forkSequence: (src, keep) => {
        const id = kpool.fork(src);
        if (keep < kpool.length(id)) kpool.truncate(id, keep);
        return id;
      },
      disposeSequence: (seq) => kpool.dispose(seq),
      forwardBatch: (rows) => kpool.forwardBatch(rows, logitsFor(rows, cfg.nVocab)),
    };
    const linears = [...new Set(weights.layers.flatMap((l) => [l.wqkv, l.wo, l.wgu, l.wdown].flat().map((x) => x.w.kind)))];
    ready = { layout: weights.layout, linears, weightBytes: weights.bytesPerToken, kvBytes: Math.ceil(init.contextSize / KV_BLOCK_TOKENS) * kpool.stats().blockBytes };
  }
  const scheduler = new StepScheduler(batchModel, {
    token(id, token, last, logprobs) {
      post({ type: 'token', id, token, last, ...(logprobs && { logprobs }) });
    },
    logits(id, start, count, logits) {
      post({ type: 'logits', id, start, count, logits }, [logits.buffer as ArrayBuffer]);
    },
    done(id, s, error) {
      const send = () => {
        const entry = live.get(id);
        live.delete(id);
        if (entry?.profile) profiling--;
        const ps = pool.stats();
        const kv = {
          sequences: ps.sequences, cachedSequences: scheduler.cached.sequences, heldSequences: scheduler.held.sequences, blocksUsed: ps.blocksUsed, blocksFree: ps.blocksCached,
          blocksMax: ps.blocksMax,
        };
        if (error) post({ type: 'error', id, error: serializeError(error), kv });
        else post({ type: 'done', id, stats: requestStats(s, entry?.profile, native?.opNames ?? null), kv });
      };
      if (inStep) pendingDone.push(send);
      else send();
    },
  }, {
    maxSequences: init.sequences, chunkTokens: PREFILL_CHUNK, stepTokens: Math.max(PREFILL_CHUNK, init.sequences), adaptiveBudget: true,
  });
  const info = ctx.info();
  post({ type: 'ready', ...ready, isa: info.isa, threads: info.threads, kernels: info.kernels, loadMs: performance.now() - t0 });
  return { native, pool, scheduler };
}

function requestStats(s: ScheduledStats, profile: { prefill: PhaseAcc; decode: PhaseAcc } | undefined, names: readonly string[] | null): RequestStats {
  const stats: RequestStats = {
    promptTokens: s.promptTokens, reusedTokens: s.reusedTokens, evaluatedTokens: s.evaluatedTokens, generatedTokens: s.generatedTokens,
    prefillMs: s.queueMs + s.prefillMs, decodeMs: s.decodeMs,
    decodeTps: s.generatedTokens > 1 && s.decodeMs > 0 ? (s.generatedTokens - 1) / (s.decodeMs / 1000) : 0,
    finishReason: s.finishReason === 'error' ? 'abort' : s.finishReason,
  };
  if (profile) stats.profile = { prefill: profile.prefill.finish(names), decode: profile.decode.finish(names) };
  return stats;
}

let engine: Engine | undefined;
try {
  engine = load();
} catch (err) {
  post({ type: 'error', id: 0, error: serializeError(err) });
}

if (engine) {
  const { scheduler } = engine;
  let scheduled = false;
  // Idle for a second: the KV pool's free blocks go back to the system (busy, and between requests that
  // follow each other, they are kept: a fresh block's first touch is 300 page faults, 1.5 ms a step
  // at 8 streams on this VM), then the garbage of the requests that ran.
  const collector = new IdleCollector(1000, () => engine!.pool.trim());
  let tLoop = performance.now();

  /** One scheduler step, with its profile attribution and the 'done' messages it produced. */
  const runStep = (): void => {
    const native = engine!.native;
    if (native && profiling > 0 && !native.profile) native.setProfiling(true);
    const before = native?.profile ? native.profile.slice() : null;
    const t0 = tLoop;
    inStep = true;
    let s: StepStats;
    try {
      s = scheduler.step();
    } finally {
      inStep = false;
    }
    const now = performance.now();
    if (profiling > 0) {
      // A step's wall time runs from the end of the one before: the message handling in between is loop overhead.
      const ops = before && native!.profile ? native!.profile.map((v, i) => v - before[i]!) : null;
      for (const [id, prefill, decode] of s.requests) {
        const p = live.get(id)?.profile;
        if (!p) continue;
        if (prefill > 0) p.prefill.add(prefill, s, now - t0, ops);
        else if (decode > 0) p.decode.add(decode, s, now - t0, ops);
      }
    }
    tLoop = now;
    for (const send of pendingDone.splice(0)) send();
    if (native?.profile && profiling === 0) native.setProfiling(false);
  };
  // Steps run back to back while there is work (the kernel threads stay warm); between steps, requests and
  // cancels that arrived are taken synchronously from the port, so none waits more than one step.
  const tick = (): void => {
    scheduled = false;
    for (;;) {
      for (let m = receiveMessageOnPort(port); m; m = receiveMessageOnPort(port)) onRequest(m.message as WorkerRequest);
      if (scheduler.idle) {
        // Idle: a second later, the freed KV blocks' memory and the garbage go back (collector above).
        collector.idle();
        return;
      }
      collector.busy();
      runStep();
    }
  };
  const schedule = (): void => {
    if (scheduled) return;
    scheduled = true;
    setImmediate(tick);
  };

  const onRequest = (req: WorkerRequest): void => {
    const wasIdle = scheduler.idle;
    if (req.type === 'cancel') {
      scheduler.cancel(req.id);
      schedule();
      return;
    }
    if (req.type === 'hold' || req.type === 'release') {
      // The main thread hands out unique keys and releases each once: a failure here is a protocol bug.
      if (req.type === 'hold') scheduler.hold(req.key);
      else scheduler.release(req.key);
      return;
    }
    try {
      if (req.type === 'generate') {
        scheduler.submit({
          id: req.id, tokens: req.tokens, maxTokens: req.maxTokens, sampler: req.sampler, eog: req.eog, vocabSize: req.vocabSize,
          ...(req.logprobs !== undefined && { logprobs: req.logprobs }),
          ...(req.session !== undefined && { session: req.session }),
        });
      } else {
        scheduler.submit({
          id: req.id, tokens: req.tokens, maxTokens: 0, sampler: {}, eog: [], vocabSize: 0, evaluate: true,
          ...(req.session !== undefined && { session: req.session }),
        });
      }
    } catch (err) {
      post({ type: 'error', id: req.id, error: serializeError(err) });
      return;
    }
    const nOps = engine!.native?.opNames.length ?? 0;
    const wantProfile = req.type === 'generate' && req.profile;
    live.set(req.id, wantProfile ? { profile: { prefill: new PhaseAcc(nOps), decode: new PhaseAcc(nOps) } } : {});
    if (wantProfile) profiling++;
    if (wasIdle) tLoop = performance.now();
    schedule();
  };
  port.on('message', onRequest);
}
