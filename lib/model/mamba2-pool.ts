// The sequence-state pool of the Mamba-2 block kind (DESIGN.md §4, §8.4): the recurrent state kind. A sequence
// holds one fixed-size state (conv rows + SSM state per layer) whatever its length, so the pool's budget is a
// number of sequences, not tokens. It keeps SequencePool's contract (lib/model/state.ts) — create / fork /
// dispose / truncate / length / stats / trim / forwardBatch with every check before any state changes — with
// the one difference a recurrent state imposes: it cannot be cut back. truncate() accepts only the sequence's
// length (a no-op) or 0 (a fresh state), and a fork copies the whole state (forks at the end only); the
// scheduler knows (BatchModel.recurrent) and reuses a prefix only when it is all a sequence holds. A hybrid's
// sequence also carries f16 KV caches of its attention layers, sized for contextSize positions.
import { KvPoolFullError, SequenceError } from '../errors.js';
import { ContextOverflowError } from './kv-cache.js';
import { type Mamba2Exec, type Mamba2Segment, type Mamba2SequenceState } from './mamba2-exec.js';
import type { BatchRow, SequencePoolStats } from './state.js';

export interface Mamba2PoolOptions {
  /** Sequences the pool holds at once (each a fixed-size state). */
  maxSequences: number;
  /** The most positions one sequence may hold (the model's context limit for callers; the state does not grow). */
  contextSize: number;
}

const isId = (x: unknown): x is number => typeof x === 'number' && Number.isInteger(x) && x >= 0 && x <= 0x7fffffff;

export class Mamba2StatePool {
  readonly contextSize: number;
  readonly maxSequences: number;
  private readonly seqs = new Map<number, Mamba2SequenceState>();
  /** States of disposed sequences kept for reuse (trim() drops them). */
  private readonly free: Mamba2SequenceState[] = [];
  private nextId = 1;

  constructor(readonly exec: Mamba2Exec, opts: Mamba2PoolOptions) {
    if (!(Number.isInteger(opts.maxSequences) && opts.maxSequences >= 1)) throw new RangeError(`Mamba2StatePool: maxSequences must be an integer >= 1, got ${opts.maxSequences}`);
    if (!(Number.isInteger(opts.contextSize) && opts.contextSize >= 1)) throw new RangeError(`Mamba2StatePool: contextSize must be an integer >= 1, got ${opts.contextSize}`);
    this.maxSequences = opts.maxSequences;
    this.contextSize = opts.contextSize;
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
    const s = this.take();
    const id = this.nextId++;
    this.seqs.set(id, s);
    return id;
  }

  /** A new sequence holding all of `src`'s positions (its state copied: a recurrent state forks at its end only). */
  fork(src: number): number {
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
    const s = this.of(id);
    this.seqs.delete(id);
    this.free.push(s);
  }

  /** Keeps positions [0, len): only len = length (nothing to do) or 0 (a fresh state); a recurrent state cannot be cut back. */
  truncate(id: number, len: number): void {
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
    return this.of(id).length;
  }

  /** In blocks of one sequence state each (blockTokens: the context size, what one state stands for). */
  stats(): SequencePoolStats {
    let held = 0;
    for (const s of this.seqs.values()) held += s.length;
    return {
      sequences: this.seqs.size, blocksUsed: this.seqs.size, blocksCached: this.free.length, blocksMax: this.maxSequences,
      blockTokens: this.contextSize, blockBytes: this.exec.stateBytes(this.contextSize), tokensHeld: held,
    };
  }

  trim(): void {
    this.free.length = 0;
  }

  /**
   * Runs the rows (any mix of sequences; a sequence's rows continue its positions in row order) and returns the
   * logits [n, vocab] of the rows with logits: true, in row order. Throws SequenceError / ContextOverflowError
   * before anything changes.
   */
  forwardBatch(rows: readonly BatchRow[], into?: Float32Array): Float32Array {
    const N = rows.length;
    if (N === 0) throw new SequenceError('forwardBatch: no rows', 'ERR_BAD_ARGUMENT');
    const V = this.exec.cfg.nVocab;
    const next = new Map<number, number>();
    const order = new Map<number, number[]>();
    for (let b = 0; b < N; b++) {
      const r = rows[b]!;
      if (!(Number.isInteger(r.token) && r.token >= 0 && r.token < V))
        throw new SequenceError(`rows[${b}]: token id ${r.token} is outside the vocabulary [0, ${V})`, 'ERR_BAD_TOKEN');
      if (!isId(r.seq)) throw new SequenceError(`rows[${b}]: sequence ${r.seq} does not exist`, 'ERR_UNKNOWN_SEQUENCE');
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
    const out: number[] = [];
    for (let b = 0; b < N; b++) if (rows[b]!.logits) out.push(at[b]!);
    return this.exec.forwardRows(tokens, segments, Int32Array.from(out), into);
  }
}
