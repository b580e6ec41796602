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
//
// Held sequences (the API's `context.getSequence()`, a chat): `hold(key)` names a sequence whose KV outlives
// its requests. A request that carries `session: key` starts from the held tokens it shares with its prompt
// (the rest of the held sequence is cut off), and when it ends its sequence goes back to the session instead
// of the prefix cache. Held KV is never evicted; `release(key)` frees it. A request that cannot fit while
// nothing runs and nothing can be evicted fails (KV held by sequences) instead of waiting forever.
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
   * A recurrent state (the Mamba-2 block kind): a sequence's state cannot be cut back, so a prefix is reused only
   * when it is everything a sequence holds (forkSequence(src, keep) is called with keep = all of src), and prompt
   * chunks end at multiples of `align` positions (or the prompt's end): the model's scan takes its chunked form
   * over whole aligned chunks, so a sequence's logits never depend on how the steps cut its prompt.
   */
  readonly recurrent?: { readonly align: number };
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
  /** A held sequence (hold()): the request continues from its KV and gives its sequence back to it. */
  session?: number;
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
  /**
   * Bound prompt rows next to decode rows by time, not count: a step's forward time is fitted over the last
   * steps (StepCostModel) and a step with decode rows takes the prompt rows that cost no more than
   * prefillWhileDecoding tokens at the start of a prompt. Deep chunks of a long prompt (attention over
   * thousands of positions) then take fewer rows. Default false (a plain token count).
   */
  adaptiveBudget?: boolean;
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

/** A held sequence: its KV lives between its requests (seq -1: none yet). */
interface Session {
  seq: number;
  tokens: number[];
  /** Tokens it counts against the pool (whole blocks); 0 while a request runs on it (that one reserves). */
  cost: number;
  /** The live request on it. */
  busy: Entry | undefined;
  /** release() came while a request ran: free it when that ends. */
  released: boolean;
}

/** A finished sequence kept for its prefix. */
interface Parked {
  seq: number;
  tokens: number[];
  /** Tokens it counts against the pool (whole blocks). */
  cost: number;
}

/** Length of the common prefix of two token lists, at most `limit`. */
function commonPrefix(a: readonly number[], b: readonly number[], limit: number): number {
  const m = Math.min(a.length, b.length, limit);
  let n = 0;
  while (n < m && a[n] === b[n]) n++;
  return n;
}

/**
 * A recurrent model's prompt chunk from `done` of about `n` rows: it ends at a multiple of `align` or at the
 * prompt's end (`total`); when `n` does not reach the next multiple, the chunk runs to it (at most `align` rows).
 */
export function alignedChunk(done: number, n: number, total: number, align: number): number {
  const end = done + n;
  if (end >= total) return total - done;
  const down = Math.floor(end / align) * align;
  if (down > done) return down - done;
  return Math.min(total, (Math.floor(done / align) + 1) * align) - done;
}

/** commonPrefix over what a running request's sequence holds: its prompt computed so far, then the fed samples. */
function runningPrefix(e: Entry, tokens: readonly number[], limit: number): number {
  const n = commonPrefix(e.req.tokens, tokens, Math.min(limit, e.done));
  if (n < e.done || e.fed.length === 0) return n;
  let m = 0;
  const rest = Math.min(e.fed.length, limit - n, tokens.length - n);
  while (m < rest && e.fed[m] === tokens[n + m]) m++;
  return n + m;
}

/** Cost of a prompt chunk by the fitted step-time model (ms). */
export interface ChunkCost {
  /** Time `n` prompt rows at positions p .. p + n - 1 add to a step. */
  chunk(p: number, n: number): number;
  /** Most of those `n` rows (from p) that fit in `ms`. */
  fitting(p: number, n: number, ms: number): number;
}

/**
 * A step's forward time fitted over the last steps as a + b x rows + c x (sum of the rows' positions) / 1000
 * + d x logit rows (least squares, lightly regularized), from steps that ran prompt rows. `c` is attention: a row at position p attends to p
 * earlier ones, so a deep prompt chunk costs more than one at the start. Undefined until the steps seen say
 * something (enough of them, a positive per-row cost).
 */
export class StepCostModel {
  private static readonly WINDOW = 64;
  private static readonly MIN_STEPS = 8;
  private readonly xs: Array<[number, number, number, number]> = [];
  private readonly ys: number[] = [];
  private next = 0;

  add(rows: number, posSum: number, logitRows: number, ms: number): void {
    const x: [number, number, number, number] = [1, rows, posSum / 1000, logitRows];
    if (this.xs.length < StepCostModel.WINDOW) {
      this.xs.push(x);
      this.ys.push(ms);
    } else {
      this.xs[this.next] = x;
      this.ys[this.next] = ms;
      this.next = (this.next + 1) % StepCostModel.WINDOW;
    }
  }

  fit(): ChunkCost | undefined {
    if (this.xs.length < StepCostModel.MIN_STEPS) return undefined;
    // Normal equations (X'X + eps I) theta = X'y, 4x4, by Gaussian elimination with partial pivoting.
    const a = Array.from({ length: 4 }, () => new Array<number>(5).fill(0));
    this.xs.forEach((x, k) => {
      for (let i = 0; i < 4; i++) {
        for (let j = 0; j < 4; j++) a[i]![j]! += x[i]! * x[j]!;
        a[i]![4]! += x[i]! * this.ys[k]!;
      }
    });
    for (let i = 0; i < 4; i++) a[i]![i]! += 1e-6 * (1 + a[i]![i]!);
    for (let c = 0; c < 4; c++) {
      let piv = c;
      for (let r = c + 1; r < 4; r++) if (Math.abs(a[r]![c]!) > Math.abs(a[piv]![c]!)) piv = r;
      [a[c], a[piv]] = [a[piv]!, a[c]!];
      const d = a[c]![c]!;
      if (Math.abs(d) < 1e-12) return undefined;
      for (let r = 0; r < 4; r++) {
        if (r === c) continue;
        const f = a[r]![c]! / d;
        for (let j = c; j < 5; j++) a[r]![j]! -= f * a[c]![j]!;
      }
    }
    const perRow = a[1]![4]! / a[1]![1]!;
    const perKPos = Math.max(0, a[2]![4]! / a[2]![2]!);
    if (!(perRow > 0) || !Number.isFinite(perKPos)) return undefined;
    const chunk = (p: number, n: number) => perRow * n + (perKPos * (n * p + (n * (n - 1)) / 2)) / 1000;
    return {
      chunk,
      fitting(p, n, ms) {
        let lo = 0;
        let hi = n;
        while (lo < hi) {
          const mid = Math.ceil((lo + hi) / 2);
          if (chunk(p, mid) <= ms) lo = mid;
          else hi = mid - 1;
        }
        return lo;
      },
    };
  }
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
  readonly adaptiveBudget: boolean;
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
  private readonly sessions = new Map<number, Session>();
  private heldTokens = 0;
  /** Step times against their rows, positions and logit rows: what a prompt chunk costs next to decode rows. */
  private readonly cost = new StepCostModel();
  /** Time of the last completed step (readiness: a scheduler with work and no recent step is stuck). */
  lastStepAt: number;

  constructor(private readonly model: BatchModel, private readonly events: SchedulerEvents, opts: SchedulerOptions = {}) {
    this.maxSequences = positiveInt(opts.maxSequences, 4, 'maxSequences');
    this.stepTokens = positiveInt(opts.stepTokens, 256, 'stepTokens');
    this.minPrefill = positiveInt(opts.minPrefill, 16, 'minPrefill');
    this.chunkTokens = positiveInt(opts.chunkTokens, 128, 'chunkTokens');
    this.prefillWhileDecoding = positiveInt(opts.prefillWhileDecoding, Math.max(1, Math.floor(this.chunkTokens / 2)), 'prefillWhileDecoding');
    this.adaptiveBudget = opts.adaptiveBudget ?? false;
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

  /** Held sequences (hold()) and the pool tokens their KV counts while idle. */
  get held(): { sequences: number; tokens: number } {
    return { sequences: this.sessions.size, tokens: this.heldTokens };
  }

  /** Tokens a held sequence's KV holds (what a request on it can reuse); undefined for an unknown key. */
  heldTokensOf(key: number): readonly number[] | undefined {
    return this.sessions.get(key)?.tokens;
  }

  /** Names a held sequence (empty until a request runs on it). */
  hold(key: number): void {
    if (this.sessions.has(key)) throw new SchedulerError(`scheduler: sequence ${key} is already held`);
    this.sessions.set(key, { seq: -1, tokens: [], cost: 0, busy: undefined, released: false });
  }

  /** Frees a held sequence's KV (after its live request ends, if one runs). Returns false for an unknown key. */
  release(key: number): boolean {
    const s = this.sessions.get(key);
    if (!s) return false;
    if (s.busy) {
      s.released = true;
      return true;
    }
    this.dropSession(key, s);
    return true;
  }

  private dropSession(key: number, s: Session): void {
    this.sessions.delete(key);
    this.heldTokens -= s.cost;
    if (s.seq >= 0) this.model.disposeSequence(s.seq);
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
    if (req.session !== undefined) {
      const s = this.sessions.get(req.session);
      if (!s || s.released) throw new SchedulerError(`scheduler: request ${req.id}: sequence ${req.session} is not held (disposed?)`);
      if (s.busy) throw new SchedulerError(`scheduler: request ${req.id}: sequence ${req.session} already runs request ${s.busy.req.id}`);
    }
    const sampler = new Sampler(req.sampler);
    for (const t of req.tokens) sampler.accept(t); // penalties look back into the prompt too
    const e: Entry = {
      req: req.evaluate ? { ...req, maxTokens: 0 } : req, state: 'queued', seq: -1, done: 0, pos: 0, fed: [], next: -1, generated: 0, reused: 0,
      reserved: 0, sampler, eog: new Set(req.ignoreEog ? [] : req.eog), tSubmit: this.now(), tAdmit: 0, tFirst: 0, tLast: 0, cancelled: false,
    };
    this.queue.push(e);
    this.byId.set(req.id, e);
    if (req.session !== undefined) this.sessions.get(req.session)!.busy = e;
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
    // Prompt tokens: what decode left of stepTokens, at least minPrefill, in chunks of at most chunkTokens, the
    // prompt that has had the fewest tokens computed first, then the one with the fewest left (a short prompt is not
    // held up behind long ones' chunks; equal ones alternate). While streams decode, the prompt rows may cost no more time than prefillWhileDecoding
    // tokens at the start of a prompt (the cost model's estimate: attention makes deep positions dearer).
    let budget = Math.max(this.minPrefill, this.stepTokens - decodeRows);
    const prefilling = this.running.filter((e) => e.state === 'prefill').sort((a, b) => (a.done - a.reused) - (b.done - b.reused) || (a.req.tokens.length - a.done) - (b.req.tokens.length - b.done));
    const plan: Array<[Entry, number]> = [];
    const cost = this.adaptiveBudget && decodeRows > 0 && prefilling.length > 0 ? this.cost.fit() : undefined;
    let msLeft = cost ? cost.chunk(0, this.prefillWhileDecoding) : 0;
    if (decodeRows > 0 && !cost) budget = Math.max(this.minPrefill, Math.min(budget, this.prefillWhileDecoding));
    for (const e of prefilling) {
      if (budget <= 0) break;
      let n = Math.min(e.req.tokens.length - e.done, this.chunkTokens, budget);
      if (cost) {
        const fits = cost.fitting(e.done, n, msLeft);
        // minPrefill tokens per step whatever they cost: no prompt starves.
        n = plan.length === 0 ? Math.max(fits, Math.min(n, this.minPrefill)) : fits;
        if (n === 0) break;
        msLeft -= cost.chunk(e.done, n);
      }
      if (this.model.recurrent) n = alignedChunk(e.done, n, e.req.tokens.length, this.model.recurrent.align);
      plan.push([e, n]);
      perReq.set(e, [n, 0]);
      budget -= n;
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
    let posSum = 0;
    for (const r of rows) posSum += r.pos;
    // Steps with prompt rows only: decode-only steps cannot tell a row's cost from a logit row's.
    if (rows.length > decodeRows) this.cost.add(rows.length, posSum, owners.length, ts - tf);
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

  /**
   * Admits queued requests in order while a sequence slot and their KV footprint are free. A request whose
   * prompt shares at least a block more with a prompt still prefilling than with any KV already computed waits
   * for that prefill and forks it (n > 1 choices, a common system prompt arriving twice): later requests may
   * pass it meanwhile. Otherwise FIFO: one that does not fit stops admission (no overtaking, no starvation).
   */
  private admit(): void {
    let i = 0;
    while (i < this.queue.length && this.running.length < this.maxSequences) {
      const e = this.queue[i]!;
      const fp = this.footprint(e.req.tokens.length, e.req.maxTokens);
      const session = e.req.session !== undefined ? this.sessions.get(e.req.session) : undefined;
      // A held sequence's own KV is part of what its request reserves: it does not count twice.
      const held = this.heldTokens - (session?.cost ?? 0);
      const own = session ? this.sessionPrefix(session, e.req.tokens) : 0;
      const shares = own === 0 && e.req.reuse !== false && !e.req.evaluate;
      const match = shares ? this.bestPrefix(e.req.tokens, session) : undefined;
      if (shares && this.awaitsSibling(e, match?.length ?? 0)) {
        i++;
        continue;
      }
      const used = () => this.reservedTokens + this.parkedTokens + held;
      // Room: evict parked sequences (least recently used first; never the one about to be forked) while needed.
      while (used() + fp > this.model.capacityTokens && this.parked.some((p) => p !== match?.parked)) {
        const victim = this.parked.findIndex((p) => p !== match?.parked);
        this.evict(victim);
      }
      if (used() + fp > this.model.capacityTokens) {
        if (match?.parked && this.reservedTokens + held + fp <= this.model.capacityTokens) {
          this.evict(this.parked.indexOf(match.parked)); // the match itself must go
          continue;
        }
        if (this.running.length === 0) {
          // Nothing runs and nothing can be evicted: only disposing held sequences makes room. Fail, do not wait.
          this.queue.splice(i, 1);
          this.finish(e, 'error', new SchedulerError(`scheduler: request ${e.req.id} needs ${fp} KV tokens; held sequences keep `
            + `${held} of the pool's ${this.model.capacityTokens} (dispose sequences or chats that are done)`));
          continue;
        }
        break; // FIFO: no overtaking, no starvation
      }
      this.queue.splice(i, 1);
      if (session) {
        // Keep the shared prefix of the held sequence, drop the rest (and the sequence when nothing is shared).
        this.heldTokens -= session.cost;
        session.cost = 0;
        if (own > 0) {
          e.seq = own < session.tokens.length ? this.model.forkSequence(session.seq, own) : session.seq;
          if (e.seq !== session.seq) this.model.disposeSequence(session.seq);
          e.done = e.pos = e.reused = own;
        } else if (session.seq >= 0) this.model.disposeSequence(session.seq);
        session.seq = -1;
        session.tokens = [];
      }
      if (e.seq >= 0) {
        // continues its held sequence
      } else if (match) {
        e.seq = this.model.forkSequence(match.seq, match.length);
        if (match.parked) {
          this.parked.splice(this.parked.indexOf(match.parked), 1);
          this.parked.push(match.parked); // most recently used
        }
        e.done = e.pos = e.reused = match.length;
      } else e.seq = this.model.createSequence();
      e.reserved = fp;
      this.reservedTokens += fp;
      e.state = 'prefill';
      e.tAdmit = this.now();
      this.running.push(e);
    }
  }

  /** Tokens a held sequence shares with a prompt (at most tokens.length - 1: one row must run). */
  private sessionPrefix(s: Session, tokens: readonly number[]): number {
    if (s.seq < 0) return 0;
    const n = commonPrefix(s.tokens, tokens, tokens.length - 1);
    return this.model.recurrent && n !== s.tokens.length ? 0 : n;
  }

  /**
   * The computed KV sharing the longest prefix with `tokens` (at most tokens.length - 1: one row must run):
   * a parked sequence, a running one (what it has computed so far), or an idle held one (forks copy on write,
   * so the source is never changed). `self`: the request's own session, already handled.
   */
  private bestPrefix(tokens: readonly number[], self?: Session): { seq: number; length: number; parked?: Parked } | undefined {
    const limit = tokens.length - 1;
    let best: { seq: number; length: number; parked?: Parked } | undefined;
    const recurrent = this.model.recurrent !== undefined;
    // `holds`: the positions the candidate holds; a recurrent state is reusable only whole.
    const consider = (seq: number, n: number, holds: number, parked?: Parked) => {
      if (recurrent && n !== holds) return;
      // Ties go to the later candidate: the most recently parked, then running and held sequences (never evicted).
      if (n > 0 && (!best || n >= best.length)) best = parked ? { seq, length: n, parked } : { seq, length: n };
    };
    for (const p of this.parked) consider(p.seq, commonPrefix(p.tokens, tokens, limit), p.tokens.length, p);
    for (const r of this.running) consider(r.seq, runningPrefix(r, tokens, limit), r.done + r.fed.length);
    for (const s of this.sessions.values()) if (s !== self && s.seq >= 0 && !s.busy) consider(s.seq, commonPrefix(s.tokens, tokens, limit), s.tokens.length);
    return best;
  }

  /**
   * True when a prompt still prefilling will compute more of `e`'s prompt than the `have` tokens `e` could
   * reuse now (a block more, or all but `e`'s last token): `e` is better off waiting for that prefill than
   * computing the same rows.
   */
  private awaitsSibling(e: Entry, have: number): boolean {
    // A recurrent state is forked only whole, and a sibling's prefill runs past the shared prefix: nothing to wait for.
    if (this.model.recurrent) return false;
    const limit = e.req.tokens.length - 1;
    for (const r of this.running) {
      if (r.state !== 'prefill' || r.req.evaluate) continue;
      const n = commonPrefix(r.req.tokens, e.req.tokens, limit);
      if (n > r.done && n > have && (n - have >= this.model.blockTokens || n === limit)) return true;
    }
    return false;
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
    }
    const session = e.req.session !== undefined ? this.sessions.get(e.req.session) : undefined;
    if (session) {
      session.busy = undefined;
      if (i >= 0 && reason !== 'error' && e.pos > 0) {
        // The sequence goes back to its session with what its KV holds.
        session.seq = e.seq;
        session.tokens = [...e.req.tokens.slice(0, e.done), ...e.fed];
        session.cost = this.blocks(session.tokens.length);
        this.heldTokens += session.cost;
      } else if (i >= 0) this.model.disposeSequence(e.seq);
      if (session.released) this.dropSession(e.req.session!, session);
    } else if (i >= 0) {
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
