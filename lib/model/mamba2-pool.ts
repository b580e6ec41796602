// The sequence-state pool of the Mamba-2 block kind (DESIGN.md §4, §8.4): the recurrent state kind. A sequence
// holds one fixed-size state (conv rows + SSM state per layer) whatever its length, so the pool's budget is a
// number of sequences, not tokens. It keeps SequencePool's contract (lib/model/state.ts) — create / fork /
// dispose / truncate / length / stats / trim / forwardBatch with every check before any state changes — with
// the one difference a recurrent state imposes: it cannot be cut back. truncate() accepts only the sequence's
// length (a no-op) or 0 (a fresh state), and a fork copies the whole state (forks at the end only); the
// scheduler knows (BatchModel.recurrent) and reuses a prefix only when it is all a sequence holds. A hybrid's
// sequence also carries f16 KV caches of its attention layers, sized for contextSize positions.
//
// By default the pool is native (a RecurrentPool, native/runtime/recurrent_pool.h: the recurrent kind of the
// native state pool, as KvPool is the attention kind) and a step is one native call (Mamba2Exec.forwardNative,
// native/runtime/mamba2_exec.h). With `native: false`, or a Mamba2Exec built without its native forward, the
// same contract runs over JS typed-array states op by op (Mamba2Exec.forwardRows): the twin the tests compare
// the native path against bit for bit.
import { KvPoolFullError, SequenceError } from '../errors.js';
import { ContextOverflowError } from './kv-cache.js';
import { type Mamba2Exec, type Mamba2Segment, type Mamba2SequenceState } from './mamba2-exec.js';
import { type BatchRow, type SequencePoolStats, type StatePoolHandle, packRows, poolCall } from './state.js';

export interface Mamba2PoolOptions {
  /** Sequences the pool holds at once (each a fixed-size state). */
  maxSequences: number;
  /** The most positions one sequence may hold (the model's context limit for callers; the state does not grow). */
  contextSize: number;
  /** The native pool and one-call forward (default: when the exec has them); false: JS states, op by op. */
  native?: boolean;
}

const isId = (x: unknown): x is number => typeof x === 'number' && Number.isInteger(x) && x >= 0 && x <= 0x7fffffff;

export class Mamba2StatePool {
  readonly contextSize: number;
  readonly maxSequences: number;
  private readonly seqs = new Map<number, Mamba2SequenceState>();
  /** States of disposed sequences kept for reuse (trim() drops them). */
  private readonly free: Mamba2SequenceState[] = [];
  private nextId = 1;
  /** The native pool, or null (JS states). */
  private readonly handle: StatePoolHandle | null;

  constructor(readonly exec: Mamba2Exec, opts: Mamba2PoolOptions) {
    if (!(Number.isInteger(opts.maxSequences) && opts.maxSequences >= 1)) throw new RangeError(`Mamba2StatePool: maxSequences must be an integer >= 1, got ${opts.maxSequences}`);
    if (!(Number.isInteger(opts.contextSize) && opts.contextSize >= 1)) throw new RangeError(`Mamba2StatePool: contextSize must be an integer >= 1, got ${opts.contextSize}`);
    this.maxSequences = opts.maxSequences;
    this.contextSize = opts.contextSize;
    if (opts.native === true && !exec.native) throw new RangeError('Mamba2StatePool: native: true needs a Mamba2Exec with its native forward');
    this.handle = opts.native !== false && exec.native ? poolCall(() => exec.nativePool(opts.maxSequences, opts.contextSize)) : null;
  }

  /** Whether the states are native (one native call per step). */
  get isNative(): boolean {
    return this.handle !== null;
  }

  private of(id: number): Mamba2SequenceState {
    const s = isId(id) ? this.seqs.get(id) : undefined;
    if (!s) throw new SequenceError(`sequence ${id} does not exist (disposed?)`, 'ERR_UNKNOWN_SEQUENCE');
    return s;
  }

  private take(): Mamba2SequenceState {
    if (this.seqs.size >= this.maxSequences)
      throw new KvPoolFullError(`the state pool is full: it holds ${this.maxSequences} sequence(s) (each a fixed-size recurrent state)`);
    const s = this.free.pop();
    if (!s) return this.exec.newState(this.contextSize);
    for (const a of s.conv) a.fill(0);
    for (const a of s.ssm) a.fill(0);
    s.length = 0;
    return s;
  }

  /** A new, empty sequence; its id is never reused. */
  create(): number {
    if (this.handle) return poolCall(() => this.handle!.create());
    const s = this.take();
    const id = this.nextId++;
    this.seqs.set(id, s);
    return id;
  }

  /** A new sequence holding all of `src`'s positions (its state copied: a recurrent state forks at its end only). */
  fork(src: number): number {
    if (this.handle) return poolCall(() => this.handle!.fork(src));
    const from = this.of(src);
    const s = this.take();
    from.conv.forEach((a, l) => s.conv[l]!.set(a));
    from.ssm.forEach((a, l) => s.ssm[l]!.set(a));
    from.kv.forEach((c, l) => {
      if (!c) return;
      s.kv[l]!.k.set(c.k);
      s.kv[l]!.v.set(c.v);
    });
    s.length = from.length;
    const id = this.nextId++;
    this.seqs.set(id, s);
    return id;
  }

  dispose(id: number): void {
    if (this.handle) return poolCall(() => this.handle!.dispose(id));
    const s = this.of(id);
    this.seqs.delete(id);
    this.free.push(s);
  }

  /** Keeps positions [0, len): only len = length (nothing to do) or 0 (a fresh state); a recurrent state cannot be cut back. */
  truncate(id: number, len: number): void {
    if (this.handle) return poolCall(() => this.handle!.truncate(id, len));
    const s = this.of(id);
    if (!(Number.isInteger(len) && len >= 0 && len <= s.length))
      throw new SequenceError(`truncate(${len}): sequence ${id} holds ${s.length} positions`, 'ERR_BAD_POSITION');
    if (len === s.length) return;
    if (len !== 0)
      throw new SequenceError(`truncate(${len}): sequence ${id} has a recurrent (Mamba-2) state of ${s.length} positions, which can be kept whole or cleared, not cut back`, 'ERR_BAD_POSITION');
    for (const a of s.conv) a.fill(0);
    for (const a of s.ssm) a.fill(0);
    s.length = 0;
  }

  length(id: number): number {
    if (this.handle) return poolCall(() => this.handle!.length(id));
    return this.of(id).length;
  }

  /** In blocks of one sequence state each (blockTokens: the context size, what one state stands for). */
  stats(): SequencePoolStats {
    if (this.handle) return this.handle.stats();
    let held = 0;
    for (const s of this.seqs.values()) held += s.length;
    return {
      sequences: this.seqs.size, blocksUsed: this.seqs.size, blocksCached: this.free.length, blocksMax: this.maxSequences,
      blockTokens: this.contextSize, blockBytes: this.exec.stateBytes(this.contextSize), tokensHeld: held,
    };
  }

  trim(): void {
    this.handle?.trim();
    this.free.length = 0;
  }

  /**
   * Runs the rows (any mix of sequences; a sequence's rows continue its positions in row order) and returns the
   * logits [n, vocab] of the rows with logits: true, in row order. Throws SequenceError / ContextOverflowError
   * before anything changes.
   */
  forwardBatch(rows: readonly BatchRow[], into?: Float32Array): Float32Array {
    const N = rows.length;
    const V = this.exec.cfg.nVocab;
    const packed = packRows(rows, V);
    if (this.handle) return poolCall(() => this.exec.forwardNative(this.handle!, packed.tokens, packed.seq, packed.pos, packed.out, into));
    const next = new Map<number, number>();
    const order = new Map<number, number[]>();
    for (let b = 0; b < N; b++) {
      const r = rows[b]!;
      const s = this.of(r.seq);
      const want = next.get(r.seq) ?? s.length;
      if (r.pos !== want)
        throw new SequenceError(`rows[${b}]: sequence ${r.seq} position ${r.pos}, expected ${want} (a sequence's rows continue its positions in row order)`, 'ERR_BAD_POSITION');
      if (want + 1 > this.contextSize)
        throw new ContextOverflowError(`rows[${b}]: sequence ${r.seq} position ${r.pos} is past the context size ${this.contextSize}`);
      next.set(r.seq, want + 1);
      let list = order.get(r.seq);
      if (!list) order.set(r.seq, (list = []));
      list.push(b);
    }
    // Gather each sequence's rows contiguously (the scan reads them in order), remembering where each row went.
    const tokens = new Int32Array(N);
    const at = new Int32Array(N);
    const segments: Mamba2Segment[] = [];
    let k = 0;
    for (const [seq, list] of order) {
      segments.push({ state: this.seqs.get(seq)!, start: k, rows: list.length });
      for (const b of list) {
        tokens[k] = rows[b]!.token;
        at[b] = k++;
      }
    }
    return this.exec.forwardRows(tokens, segments, packed.out.map((b) => at[b]!), into);
  }
}
