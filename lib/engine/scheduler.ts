// The step scheduler (DESIGN.md §11): many sequences share one model, one forward per step. Each step takes
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
  /** Most tokens to sample (>= 1). */
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
}

export type ScheduledFinish = 'eog' | 'length' | 'abort' | 'error';

/** Per-request timings (ms, from the scheduler's clock) and counts, given with `done`. */
export interface ScheduledStats {
  promptTokens: number;
  generatedTokens: number;
  /** Submit to admission (a sequence and its KV reserved). */
  queueMs: number;
  /** Submit to the first sampled token. */
  ttftMs: number;
  /** Submit to the end. */
  totalMs: number;
  finishReason: ScheduledFinish;
}

export interface SchedulerEvents {
  /** A sampled token; `last` when the request ends with it; `logprobs` when the request asked for them. */
  token(id: number, token: number, last: boolean, logprobs?: TokenLogprobs): void;
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
  ms: number;
}

type State = 'queued' | 'prefill' | 'decode';

interface Entry {
  req: ScheduledRequest;
  state: State;
  seq: number;
  /** Prompt tokens already run (prefill cursor). */
  done: number;
  /** Tokens the sequence's KV holds. */
  pos: number;
  /** The token to feed next in decode. */
  next: number;
  generated: number;
  reserved: number;
  sampler: Sampler;
  eog: Set<number>;
  tSubmit: number;
  tAdmit: number;
  tFirst: number;
  cancelled: boolean;
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
  private readonly now: () => number;
  private readonly queue: Entry[] = [];
  /** Admitted entries in admission order (decode rows follow it, so a sequence keeps its row order). */
  private readonly running: Entry[] = [];
  private readonly byId = new Map<number, Entry>();
  private reservedTokens = 0;
  /** Round-robin cursor over the prefilling sequences (an index into their list at the last step). */
  private rr = 0;
  /** Time of the last completed step (readiness: a scheduler with work and no recent step is stuck). */
  lastStepAt: number;

  constructor(private readonly model: BatchModel, private readonly events: SchedulerEvents, opts: SchedulerOptions = {}) {
    this.maxSequences = positiveInt(opts.maxSequences, 4, 'maxSequences');
    this.stepTokens = positiveInt(opts.stepTokens, 256, 'stepTokens');
    this.minPrefill = positiveInt(opts.minPrefill, 16, 'minPrefill');
    this.chunkTokens = positiveInt(opts.chunkTokens, 128, 'chunkTokens');
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

  /** Tokens a request of this size reserves: prompt + maxTokens, rounded up to whole blocks. */
  footprint(promptTokens: number, maxTokens: number): number {
    const b = this.model.blockTokens;
    return Math.ceil((promptTokens + maxTokens) / b) * b;
  }

  /**
   * Queues a request (FIFO). Throws SchedulerError, before queueing, for a duplicate id, an empty prompt, a
   * maxTokens < 1, or a request that could never run: longer than the context or than the whole KV pool.
   */
  submit(req: ScheduledRequest): void {
    if (this.byId.has(req.id)) throw new SchedulerError(`scheduler: request id ${req.id} is already live`);
    if (req.tokens.length === 0) throw new SchedulerError(`scheduler: request ${req.id} has an empty prompt`);
    if (!Number.isInteger(req.maxTokens) || req.maxTokens < 1) throw new SchedulerError(`scheduler: request ${req.id}: maxTokens must be an integer >= 1, got ${req.maxTokens}`);
    const need = req.tokens.length + req.maxTokens;
    if (need > this.model.contextSize)
      throw new SchedulerError(`scheduler: request ${req.id}: prompt of ${req.tokens.length} tokens + maxTokens ${req.maxTokens} exceeds the context size ${this.model.contextSize}`);
    const fp = this.footprint(req.tokens.length, req.maxTokens);
    if (fp > this.model.capacityTokens)
      throw new SchedulerError(`scheduler: request ${req.id} needs ${fp} KV tokens, more than the pool's ${this.model.capacityTokens}`);
    const sampler = new Sampler(req.sampler);
    for (const t of req.tokens) sampler.accept(t); // penalties look back into the prompt too
    const e: Entry = {
      req, state: 'queued', seq: -1, done: 0, pos: 0, next: -1, generated: 0, reserved: 0, sampler, eog: new Set(req.ignoreEog ? [] : req.eog),
      tSubmit: this.now(), tAdmit: 0, tFirst: 0, cancelled: false,
    };
    this.queue.push(e);
    this.byId.set(req.id, e);
  }

  /**
   * Cancels a live request: a queued one ends now; a running one ends at the start of the next step (its
   * sequence is freed then). Returns false when the id is not live.
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
    const owners: Entry[] = []; // per logits row, its entry
    const decoding = this.running.filter((e) => e.state === 'decode');
    for (const e of decoding) {
      rows.push({ seq: e.seq, token: e.next, pos: e.pos, logits: true });
      owners.push(e);
    }
    const decodeRows = rows.length;
    // Prompt tokens: what decode left of stepTokens, at least minPrefill, in chunks of at most chunkTokens,
    // round-robin from where the last step stopped.
    let budget = Math.max(this.minPrefill, this.stepTokens - decodeRows);
    const prefilling = this.running.filter((e) => e.state === 'prefill');
    const plan: Array<[Entry, number]> = [];
    if (prefilling.length > 0) {
      const start = this.rr % prefilling.length;
      let served = 0;
      for (let i = 0; i < prefilling.length && budget > 0; i++) {
        const e = prefilling[(start + i) % prefilling.length]!;
        const n = Math.min(e.req.tokens.length - e.done, this.chunkTokens, budget);
        plan.push([e, n]);
        budget -= n;
        served++;
      }
      this.rr = start + served;
    }
    for (const [e, n] of plan) {
      const end = e.done + n;
      for (let p = e.done; p < end; p++) {
        const last = p === e.req.tokens.length - 1;
        rows.push({ seq: e.seq, token: e.req.tokens[p]!, pos: p, logits: last });
        if (last) owners.push(e);
      }
    }
    if (rows.length === 0) {
      this.lastStepAt = this.now();
      return { rows: 0, decodeRows: 0, prefillRows: 0, finished, ms: this.lastStepAt - t0 };
    }

    let logits: Float32Array;
    try {
      logits = this.model.forwardBatch(rows);
    } catch (err) {
      // A failed forward may leave any of these sequences half-written: end every request in the batch.
      const hit = new Set([...decoding, ...plan.map(([e]) => e)]);
      for (const e of hit) this.finish(e, 'error', err instanceof Error ? err : new Error(String(err)));
      this.lastStepAt = this.now();
      return { rows: rows.length, decodeRows, prefillRows: rows.length - decodeRows, finished: finished + hit.size, ms: this.lastStepAt - t0 };
    }
    const width = owners.length > 0 ? logits.length / owners.length : 0;
    if (owners.length > 0 && (!Number.isInteger(width) || width < 1))
      throw new SchedulerError(`scheduler: forwardBatch returned ${logits.length} logits for ${owners.length} rows`);

    for (const e of decoding) e.pos++;
    for (const [e, n] of plan) {
      e.done += n;
      e.pos += n;
      if (e.done === e.req.tokens.length) e.state = 'decode';
    }
    const t = this.now();
    owners.forEach((e, i) => {
      const row = logits.subarray(i * width, (i + 1) * width);
      if (e.req.vocabSize < width) row.fill(-Infinity, e.req.vocabSize);
      const raw = e.req.logprobs !== undefined ? row.slice() : undefined; // the sampler edits logits in place
      const token = e.sampler.sample(row);
      e.sampler.accept(token);
      e.generated++;
      if (e.generated === 1) e.tFirst = t;
      const isEog = e.eog.has(token);
      const last = isEog || e.generated >= e.req.maxTokens;
      this.events.token(e.req.id, token, last, raw && logprobsOf(raw, token, e.req.logprobs!));
      if (last) {
        this.finish(e, isEog ? 'eog' : 'length');
        finished++;
      } else e.next = token;
    });
    this.lastStepAt = this.now();
    return { rows: rows.length, decodeRows, prefillRows: rows.length - decodeRows, finished, ms: this.lastStepAt - t0 };
  }

  /** Admits queued requests in order while a sequence slot and their KV footprint are free. */
  private admit(): void {
    while (this.queue.length > 0 && this.running.length < this.maxSequences) {
      const e = this.queue[0]!;
      const fp = this.footprint(e.req.tokens.length, e.req.maxTokens);
      if (this.reservedTokens + fp > this.model.capacityTokens) break; // FIFO: no overtaking, no starvation
      this.queue.shift();
      e.seq = this.model.createSequence();
      e.reserved = fp;
      this.reservedTokens += fp;
      e.state = 'prefill';
      e.tAdmit = this.now();
      this.running.push(e);
    }
  }

  private finish(e: Entry, reason: ScheduledFinish, error?: Error): void {
    const i = this.running.indexOf(e);
    if (i >= 0) {
      this.running.splice(i, 1);
      this.reservedTokens -= e.reserved;
      this.model.disposeSequence(e.seq);
    }
    this.byId.delete(e.req.id);
    const t = this.now();
    this.events.done(e.req.id, {
      promptTokens: e.req.tokens.length, generatedTokens: e.generated, queueMs: (e.tAdmit || t) - e.tSubmit,
      ttftMs: e.tFirst ? e.tFirst - e.tSubmit : 0, totalMs: t - e.tSubmit, finishReason: reason,
    }, error);
  }
}
