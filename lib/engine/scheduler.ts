// The step scheduler (DESIGN.md §12): many sequences share one model, one forward per step. Each step takes
// the decode token of every running sequence first, then a bounded budget of prompt tokens, shared
// round-robin in chunks among the sequences still prefilling; it runs one batch-first forward, samples every
// row that asked for logits, and reports the step's tokens. Requests and cancels are taken between steps, so
// a cancel (also mid-prefill or while queued) frees its sequence within one step, and a long prompt delays
// running streams by at most one step's budget instead of its whole prefill.
//
// It is synchronous and knows nothing of threads or HTTP: the worker drives `step()` in its loop and turns
// the events into messages; tests drive it directly with a fake model. The model side is `BatchModel`: a
// pool of sequences with a KV budget counted in tokens (blocks of `blockTokens`) and `forwardBatch(rows)`.
// Admission reserves each request's whole footprint (prompt + maxTokens, rounded up to blocks), so a running
// sequence never runs out of KV in the middle of a stream.
//
// Prefix cache: a finished sequence is parked (up to `prefixCache` of them, least recently used first out)
// with the tokens its KV holds. A new request whose prompt starts with some of them forks the best match
// (the pool shares the blocks, copy-on-write), truncates it to the common prefix, and prefills only the
// rest. The batch-first forward is batch-invariant (a row's numbers do not depend on what else ran with it),
// so a reused prefix gives exactly the logits a fresh prefill would. Parked sequences count against the
// pool and are evicted whenever admission needs their room.
import { BitllmError } from '../errors.js';
import { Sampler, type SamplerOptions, type TokenLogprobs, logprobsOf } from './sampler.js';

/** One row of a batch-first forward: a token of a sequence at a position; `logits` asks for its logits. */
export interface BatchRow {
  seq: number;
  token: number;
  pos: number;
  logits: boolean;
}

/** What the scheduler needs of a model: its sequence pool and the batch-first forward. */
export interface BatchModel {
  /** Tokens the KV pool holds in all (every sequence's cache comes out of it). */
  readonly capacityTokens: number;
  /** Tokens per KV block: a sequence's footprint is rounded up to whole blocks. */
  readonly blockTokens: number;
  /** Most tokens one sequence can hold (its context size). */
  readonly contextSize: number;
  /** A new, empty sequence; its id. */
  createSequence(): number;
  /** A new sequence holding the first `keep` positions of `src` (shared blocks where the pool can). */
  forkSequence(src: number, keep: number): number;
  /** Gives the sequence's blocks back to the pool. */
  disposeSequence(seq: number): void;
  /**
   * Runs the rows (positions of a sequence contiguous with what it holds), stores their K/V, and returns the
   * logits of the rows with `logits: true`, in row order: [count, rowWidth] with rowWidth >= vocabSize.
   */
  forwardBatch(rows: readonly BatchRow[]): Float32Array;
}

export class SchedulerError extends BitllmError {}

export interface ScheduledRequest {
  /** Caller's id, echoed in every event; unique among live requests. */
  id: number;
  /** Prompt token ids (at least one). */
  tokens: number[];
  /** Most tokens to sample (>= 1; 0 for an evaluate request). */
  maxTokens: number;
  sampler: SamplerOptions;
  /** End-of-generation token ids: sampling one finishes the request ('eog'). */
  eog: number[];
  /** Token ids the tokenizer knows: logits past it (padding rows of the head) are never sampled. */
  vocabSize: number;
  /** Keep sampling past EOG tokens (benchmarks). */
  ignoreEog?: boolean;
  /** Report each sampled token's log-probability and this many alternatives (sampler.ts logprobsOf). */
  logprobs?: number;
  /**
   * Evaluate: no sampling; the logits after every prompt token are reported (events.logits), chunk by chunk,
   * from an empty sequence (no prefix reuse, nothing parked). Ends with reason 'length'.
   */
  evaluate?: boolean;
  /** Take a cached prefix (default true). */
  reuse?: boolean;
}

export type ScheduledFinish = 'eog' | 'length' | 'abort' | 'error';

/** Per-request timings (ms, from the scheduler's clock) and counts, given with `done`. */
export interface ScheduledStats {
  promptTokens: number;
  /** Prompt tokens taken from the prefix cache (not run). */
  reusedTokens: number;
  /** Prompt tokens run through the model. */
  evaluatedTokens: number;
  generatedTokens: number;
  /** Submit to admission (a sequence and its KV reserved). */
  queueMs: number;
  /** Submit to the first sampled token (0 without one). */
  ttftMs: number;
  /** Admission to the first sampled token (or to the end of an evaluate / a request with none). */
  prefillMs: number;
  /** First sampled token to the last. */
  decodeMs: number;
  /** Submit to the end. */
  totalMs: number;
  finishReason: ScheduledFinish;
}

export interface SchedulerEvents {
  /** A sampled token; `last` when the request ends with it; `logprobs` when the request asked for them. */
  token(id: number, token: number, last: boolean, logprobs?: TokenLogprobs): void;
  /** Evaluate requests: logits [count, rowWidth] after prompt tokens start .. start + count - 1. */
  logits?(id: number, start: number, count: number, logits: Float32Array): void;
  /** The request ended (after its last token, or on cancel / error with no further tokens). */
  done(id: number, stats: ScheduledStats, error?: Error): void;
}

export interface SchedulerOptions {
  /** Sequences running at once (admitted: prefilling or decoding). Default 4. */
  maxSequences?: number;
  /** Most rows in one forward: decode rows first, prompt tokens fill the rest. Default 256. */
  stepTokens?: number;
  /** Prompt tokens every step may take even when decode rows fill stepTokens (no prompt starves). Default 16. */
  minPrefill?: number;
  /** Most prompt tokens one sequence gets in one step (its chunk). Default 128. */
  chunkTokens?: number;
  /**
   * Most prompt tokens a step takes while any sequence is decoding (at least minPrefill): bounds how long a
   * prompt's chunk holds up the running streams' next tokens. Default chunkTokens / 2.
   */
  prefillWhileDecoding?: number;
  /** Finished sequences kept for prefix reuse (0 = none). Default maxSequences. */
  prefixCache?: number;
  /** Clock in ms (tests pass a fake). Default performance.now. */
  now?: () => number;
}

/** What one step did. */
export interface StepStats {
  rows: number;
  decodeRows: number;
  prefillRows: number;
  /** Requests that ended in this step (finished, cancelled or failed). */
  finished: number;
  /** Rows per request in this step: [id, prompt rows, decode rows]. */
  requests: Array<[id: number, prefill: number, decode: number]>;
  /** Time in forwardBatch and in sampling (ms). */
  forwardMs: number;
  sampleMs: number;
  ms: number;
}

type State = 'queued' | 'prefill' | 'decode';

interface Entry {
  req: ScheduledRequest;
  state: State;
  seq: number;
  /** Prompt tokens already in the sequence (prefill cursor). */
  done: number;
  /** Tokens the sequence's KV holds. */
  pos: number;
  /** Tokens fed after the prompt (sampled tokens run as decode rows), for parking. */
  fed: number[];
  /** The token to feed next in decode. */
  next: number;
  generated: number;
  reused: number;
  reserved: number;
  sampler: Sampler;
  eog: Set<number>;
  tSubmit: number;
  tAdmit: number;
  tFirst: number;
  tLast: number;
  cancelled: boolean;
}

/** A finished sequence kept for its prefix. */
interface Parked {
  seq: number;
  tokens: number[];
  /** Tokens it counts against the pool (whole blocks). */
  cost: number;
}

const positiveInt = (v: number | undefined, def: number, name: string, min = 1): number => {
  if (v === undefined) return def;
  if (!Number.isInteger(v) || v < min) throw new SchedulerError(`scheduler: ${name} must be an integer >= ${min}, got ${String(v)}`);
  return v;
};

export class StepScheduler {
  readonly maxSequences: number;
  readonly stepTokens: number;
  readonly minPrefill: number;
  readonly chunkTokens: number;
  readonly prefillWhileDecoding: number;
  readonly prefixCache: number;
  private readonly now: () => number;
  private readonly queue: Entry[] = [];
  /** Admitted entries in admission order (decode rows follow it, so a sequence keeps its row order). */
  private readonly running: Entry[] = [];
  private readonly byId = new Map<number, Entry>();
  /** Parked sequences, least recently used first. */
  private readonly parked: Parked[] = [];
  private reservedTokens = 0;
  private parkedTokens = 0;
  /** Round-robin cursor over the prefilling sequences (an index into their list at the last step). */
  private rr = 0;
  /** Time of the last completed step (readiness: a scheduler with work and no recent step is stuck). */
  lastStepAt: number;

  constructor(private readonly model: BatchModel, private readonly events: SchedulerEvents, opts: SchedulerOptions = {}) {
    this.maxSequences = positiveInt(opts.maxSequences, 4, 'maxSequences');
    this.stepTokens = positiveInt(opts.stepTokens, 256, 'stepTokens');
    this.minPrefill = positiveInt(opts.minPrefill, 16, 'minPrefill');
    this.chunkTokens = positiveInt(opts.chunkTokens, 128, 'chunkTokens');
    this.prefillWhileDecoding = positiveInt(opts.prefillWhileDecoding, Math.max(1, Math.floor(this.chunkTokens / 2)), 'prefillWhileDecoding');
    this.prefixCache = positiveInt(opts.prefixCache, this.maxSequences, 'prefixCache', 0);
    this.now = opts.now ?? (() => performance.now());
    this.lastStepAt = this.now();
  }

  /** Requests waiting for a sequence. */
  get queued(): number {
    return this.queue.length;
  }

  /** Requests holding a sequence (prefilling or decoding). */
  get active(): number {
    return this.running.length;
  }

  /** No request queued or running. */
  get idle(): boolean {
    return this.queue.length === 0 && this.running.length === 0;
  }

  /** KV tokens reserved by the admitted requests (whole blocks). */
  get reserved(): number {
    return this.reservedTokens;
  }

  /** Sequences kept for prefix reuse, and the pool tokens they count. */
  get cached(): { sequences: number; tokens: number } {
    return { sequences: this.parked.length, tokens: this.parkedTokens };
  }

  /** Tokens a request of this size reserves: prompt + maxTokens, rounded up to whole blocks. */
  footprint(promptTokens: number, maxTokens: number): number {
    return this.blocks(promptTokens + maxTokens);
  }

  private blocks(tokens: number): number {
    const b = this.model.blockTokens;
    return Math.ceil(tokens / b) * b;
  }

  /**
   * Queues a request (FIFO). Throws SchedulerError, before queueing, for a duplicate id, an empty prompt, a
   * bad maxTokens, or a request that could never run: longer than the context or than the whole KV pool.
   */
  submit(req: ScheduledRequest): void {
    if (this.byId.has(req.id)) throw new SchedulerError(`scheduler: request id ${req.id} is already live`);
    if (req.tokens.length === 0) throw new SchedulerError(`scheduler: request ${req.id} has an empty prompt`);
    const minTokens = req.evaluate ? 0 : 1;
    if (!Number.isInteger(req.maxTokens) || req.maxTokens < minTokens)
      throw new SchedulerError(`scheduler: request ${req.id}: maxTokens must be an integer >= ${minTokens}, got ${req.maxTokens}`);
    const maxTokens = req.evaluate ? 0 : req.maxTokens;
    const need = req.tokens.length + maxTokens;
    if (need > this.model.contextSize)
      throw new SchedulerError(`scheduler: request ${req.id}: prompt of ${req.tokens.length} tokens + maxTokens ${maxTokens} exceeds the context size ${this.model.contextSize}`);
    const fp = this.footprint(req.tokens.length, maxTokens);
    if (fp > this.model.capacityTokens)
      throw new SchedulerError(`scheduler: request ${req.id} needs ${fp} KV tokens, more than the pool's ${this.model.capacityTokens}`);
    const sampler = new Sampler(req.sampler);
    for (const t of req.tokens) sampler.accept(t); // penalties look back into the prompt too
    const e: Entry = {
      req: req.evaluate ? { ...req, maxTokens: 0 } : req, state: 'queued', seq: -1, done: 0, pos: 0, fed: [], next: -1, generated: 0, reused: 0,
      reserved: 0, sampler, eog: new Set(req.ignoreEog ? [] : req.eog), tSubmit: this.now(), tAdmit: 0, tFirst: 0, tLast: 0, cancelled: false,
    };
    this.queue.push(e);
    this.byId.set(req.id, e);
  }

  /**
   * Cancels a live request: a queued one ends now; a running one ends at the start of the next step (its
   * sequence is freed or parked then). Returns false when the id is not live.
   */
  cancel(id: number): boolean {
    const e = this.byId.get(id);
    if (!e) return false;
    if (e.state === 'queued') {
      this.queue.splice(this.queue.indexOf(e), 1);
      this.finish(e, 'abort');
    } else e.cancelled = true;
    return true;
  }

  /** Disposes every parked sequence (e.g. before the model's pool is trimmed). */
  dropCache(): void {
    while (this.parked.length > 0) this.evict();
  }

  /** Runs one step: cancels, admission, one forward, sampling. Does nothing (rows 0) when idle. */
  step(): StepStats {
    const t0 = this.now();
    let finished = 0;
    for (const e of [...this.running]) if (e.cancelled) {
      this.finish(e, 'abort');
      finished++;
    }
    this.admit();

    const rows: BatchRow[] = [];
    const perReq = new Map<Entry, [number, number]>();
    const decoding = this.running.filter((e) => e.state === 'decode');
    for (const e of decoding) {
      rows.push({ seq: e.seq, token: e.next, pos: e.pos, logits: true });
      perReq.set(e, [0, 1]);
    }
    const decodeRows = rows.length;
    // Prompt tokens: what decode left of stepTokens (no more than prefillWhileDecoding while streams decode), at
    // least minPrefill, in chunks of at most chunkTokens, round-robin from where the last step stopped.
    let budget = Math.max(this.minPrefill, this.stepTokens - decodeRows);
    if (decodeRows > 0) budget = Math.max(this.minPrefill, Math.min(budget, this.prefillWhileDecoding));
    const prefilling = this.running.filter((e) => e.state === 'prefill');
    const plan: Array<[Entry, number]> = [];
    if (prefilling.length > 0) {
      const start = this.rr % prefilling.length;
      let served = 0;
      for (let i = 0; i < prefilling.length && budget > 0; i++) {
        const e = prefilling[(start + i) % prefilling.length]!;
        const n = Math.min(e.req.tokens.length - e.done, this.chunkTokens, budget);
        plan.push([e, n]);
        perReq.set(e, [n, 0]);
        budget -= n;
        served++;
      }
      this.rr = start + served;
    }
    // Logit rows in row order: [entry, first prompt position of an evaluate chunk or -1 for a sampled row].
    const owners: Array<[Entry, number]> = decoding.map((e) => [e, -1]);
    for (const [e, n] of plan) {
      const end = e.done + n;
      for (let p = e.done; p < end; p++) {
        const last = p === e.req.tokens.length - 1;
        const want = e.req.evaluate === true || last;
        rows.push({ seq: e.seq, token: e.req.tokens[p]!, pos: p, logits: want });
        if (want) owners.push([e, e.req.evaluate ? p : -1]);
      }
    }
    const requests = [...perReq].map(([e, [p, d]]) => [e.req.id, p, d] as [number, number, number]);
    const stats = (forwardMs: number, sampleMs: number): StepStats => {
      this.lastStepAt = this.now();
      return { rows: rows.length, decodeRows, prefillRows: rows.length - decodeRows, finished, requests, forwardMs, sampleMs, ms: this.lastStepAt - t0 };
    };
    if (rows.length === 0) return stats(0, 0);

    const tf = this.now();
    let logits: Float32Array;
    try {
      logits = this.model.forwardBatch(rows);
    } catch (err) {
      // A failed forward may leave any of these sequences half-written: end every request in the batch
      // (their sequences are disposed, never parked).
      for (const e of perReq.keys()) {
        this.finish(e, 'error', err instanceof Error ? err : new Error(String(err)));
        finished++;
      }
      return stats(this.now() - tf, 0);
    }
    const ts = this.now();
    const width = owners.length > 0 ? logits.length / owners.length : 0;
    if (owners.length > 0 && (!Number.isInteger(width) || width < 1)) {
      const err = new SchedulerError(`scheduler: forwardBatch returned ${logits.length} logits for ${owners.length} rows`);
      for (const e of perReq.keys()) {
        this.finish(e, 'error', err);
        finished++;
      }
      return stats(ts - tf, 0);
    }

    for (const e of decoding) {
      e.fed.push(e.next);
      e.pos++;
    }
    for (const [e, n] of plan) {
      e.done += n;
      e.pos += n;
      if (e.done === e.req.tokens.length) e.state = 'decode';
    }
    // Evaluate chunks: one logits event per request and step.
    for (let i = 0; i < owners.length;) {
      const [e, start] = owners[i]!;
      if (start < 0) {
        i++;
        continue;
      }
      let j = i;
      while (j < owners.length && owners[j]![0] === e) j++;
      this.events.logits?.(e.req.id, start, j - i, logits.slice(i * width, j * width));
      if (e.done === e.req.tokens.length) {
        this.finish(e, 'length');
        finished++;
      }
      i = j;
    }
    owners.forEach(([e, start], i) => {
      if (start >= 0) return;
      const row = logits.subarray(i * width, (i + 1) * width);
      if (e.req.vocabSize < width) row.fill(-Infinity, e.req.vocabSize);
      const raw = e.req.logprobs !== undefined ? row.slice() : undefined; // the sampler edits logits in place
      const token = e.sampler.sample(row);
      e.sampler.accept(token);
      e.generated++;
      e.tLast = ts;
      if (e.generated === 1) e.tFirst = ts;
      const isEog = e.eog.has(token);
      const last = isEog || e.generated >= e.req.maxTokens;
      this.events.token(e.req.id, token, last, raw && logprobsOf(raw, token, e.req.logprobs!));
      if (last) {
        this.finish(e, isEog ? 'eog' : 'length');
        finished++;
      } else e.next = token;
    });
    return stats(ts - tf, this.now() - ts);
  }

  /** Admits queued requests in order while a sequence slot and their KV footprint are free. */
  private admit(): void {
    while (this.queue.length > 0 && this.running.length < this.maxSequences) {
      const e = this.queue[0]!;
      const fp = this.footprint(e.req.tokens.length, e.req.maxTokens);
      const match = e.req.evaluate || e.req.reuse === false ? undefined : this.bestPrefix(e.req.tokens);
      // Room: evict parked sequences (least recently used first; never the one about to be forked) while needed.
      while (this.reservedTokens + this.parkedTokens + fp > this.model.capacityTokens && this.parked.some((p) => p !== match?.parked)) {
        const victim = this.parked.findIndex((p) => p !== match?.parked);
        this.evict(victim);
      }
      if (this.reservedTokens + this.parkedTokens + fp > this.model.capacityTokens) {
        if (match && this.reservedTokens + fp <= this.model.capacityTokens) this.evict(this.parked.indexOf(match.parked)); // the match itself must go
        else break; // FIFO: no overtaking, no starvation
        continue;
      }
      this.queue.shift();
      if (match) {
        e.seq = this.model.forkSequence(match.parked.seq, match.length);
        this.parked.splice(this.parked.indexOf(match.parked), 1);
        this.parked.push(match.parked); // most recently used
        e.done = e.pos = e.reused = match.length;
      } else e.seq = this.model.createSequence();
      e.reserved = fp;
      this.reservedTokens += fp;
      e.state = 'prefill';
      e.tAdmit = this.now();
      this.running.push(e);
    }
  }

  /** The parked sequence sharing the longest prefix with `tokens` (at most tokens.length - 1: one row must run). */
  private bestPrefix(tokens: readonly number[]): { parked: Parked; length: number } | undefined {
    let best: { parked: Parked; length: number } | undefined;
    for (const p of this.parked) {
      const limit = Math.min(p.tokens.length, tokens.length - 1);
      let n = 0;
      while (n < limit && p.tokens[n] === tokens[n]) n++;
      if (n > 0 && (!best || n >= best.length)) best = { parked: p, length: n };
    }
    return best;
  }

  private evict(i = 0): void {
    const [p] = this.parked.splice(i, 1);
    if (!p) return;
    this.parkedTokens -= p.cost;
    this.model.disposeSequence(p.seq);
  }

  private finish(e: Entry, reason: ScheduledFinish, error?: Error): void {
    const i = this.running.indexOf(e);
    if (i >= 0) {
      this.running.splice(i, 1);
      this.reservedTokens -= e.reserved;
      const keep = reason !== 'error' && !e.req.evaluate && this.prefixCache > 0 && e.pos > 0;
      if (keep) {
        const tokens = [...e.req.tokens.slice(0, e.done), ...e.fed];
        const cost = this.blocks(tokens.length);
        this.parked.push({ seq: e.seq, tokens, cost });
        this.parkedTokens += cost;
        while (this.parked.length > this.prefixCache) this.evict();
      } else this.model.disposeSequence(e.seq);
    }
    this.byId.delete(e.req.id);
    const t = this.now();
    const end = e.tFirst ? e.tLast : t;
    this.events.done(e.req.id, {
      promptTokens: e.req.tokens.length, reusedTokens: e.reused, evaluatedTokens: e.done - e.reused, generatedTokens: e.generated,
      queueMs: (e.tAdmit || t) - e.tSubmit, ttftMs: e.tFirst ? e.tFirst - e.tSubmit : 0,
      prefillMs: e.tAdmit ? (e.tFirst || t) - e.tAdmit : 0, decodeMs: e.tFirst ? end - e.tFirst : 0, totalMs: t - e.tSubmit, finishReason: reason,
    }, error);
  }
}
