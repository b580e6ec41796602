// The sequence state of one model (DESIGN.md §4): a pool of sequences whose KV caches live in
// fixed-size blocks (16 positions) with a block table per sequence, and the batch-first forward over
// rows of many sequences. With the one-call native forward (the default TransformerModel) the pool is
// native (native/runtime/kv_pool.h): memory grows with the blocks in use, forks share their prefix
// blocks (copy-on-write) and every check happens before any state changes. With an op-by-op backend
// (the TS oracle, or nativeBackend) the same contract runs over one flat KvCache per sequence
// (TransformerModel.forwardRows): forks copy, and the budget counts blocks the same way minus sharing.
//
// Batch contract (what a step scheduler calls): forwardBatch(rows) with rows {token, seq, pos, logits}
// in any order and any mix of sequences (prefill chunks and decode tokens); the rows of one sequence
// must have positions length(seq), length(seq) + 1, ... in row order (to rewrite a suffix, truncate
// first). It returns logits [n, vocab] for the n rows with logits: true, in row order, and extends
// each sequence by its rows. A sequence's logits are bit-identical whether its rows run alone or in
// any batch at any index (test/batch.test.ts).
import { KvPoolFullError, NativeError, SequenceError } from '../errors.js';
import { loadNative } from '../native.js';
import type { KvType } from './arch.js';
import { ContextOverflowError, KvCache } from './kv-cache.js';
import type { TransformerModel } from './transformer.js';

/** One row of a batch: token `token` of sequence `seq` at position `pos`; `logits` asks for its logits. */
export interface BatchRow {
  token: number;
  seq: number;
  pos: number;
  logits?: boolean;
}

export interface SequencePoolOptions {
  /** Token budget of the pool (rounded up to whole blocks); the KV memory never exceeds it. */
  maxTokens: number;
  /** The most positions one sequence may hold. */
  contextSize: number;
  kvType?: KvType;
}

export interface SequencePoolStats {
  sequences: number;
  /** Blocks held by sequences (a shared block counts once). */
  blocksUsed: number;
  /** Freed blocks whose memory is kept for reuse (trim() releases it). */
  blocksCached: number;
  blocksMax: number;
  blockTokens: number;
  blockBytes: number;
  /** Σ positions held over the sequences (shared positions count per sequence). */
  tokensHeld: number;
}

/** Positions per KV block (native/runtime/kv_pool.h kKvBlockTokens). */
export const KV_BLOCK_TOKENS = 16;

/** A native sequence-state pool (KvPoolNative, Mamba2PoolNative): the addon's side of the pool contract. */
export interface StatePoolHandle {
  create(): number;
  fork(id: number): number;
  dispose(id: number): void;
  truncate(id: number, len: number): void;
  length(id: number): number;
  stats(): SequencePoolStats;
  trim(): void;
}

/** Maps the addon's error codes to the typed errors. */
function typed(e: unknown): unknown {
  const code = (e as { code?: unknown } | null)?.code;
  const msg = e instanceof Error ? e.message : String(e);
  if (code === 'ERR_KV_POOL_FULL') return new KvPoolFullError(msg, { cause: e });
  if (code === 'ERR_CONTEXT_FULL') return new ContextOverflowError(msg, { cause: e });
  if (code === 'ERR_UNKNOWN_SEQUENCE' || code === 'ERR_BAD_POSITION' || code === 'ERR_BAD_ARGUMENT')
    return new SequenceError(msg, code, { cause: e });
  return e;
}

/** Runs a native pool call, turning the addon's error codes into the typed errors. */
export function poolCall<T>(f: () => T): T {
  try {
    return f();
  } catch (e) {
    throw typed(e);
  }
}

/**
 * A batch's rows as the native forwards take them (tokens, seq, pos; the rows that want logits, ascending),
 * after the checks every pool kind shares: a row at all, token ids in the vocabulary, ids and positions
 * that are non-negative integers. (Which positions a sequence may take is the pool's check.)
 */
export function packRows(rows: readonly BatchRow[], nVocab: number): { tokens: Int32Array; seq: Int32Array; pos: Int32Array; out: Int32Array } {
  const B = rows.length;
  if (B === 0) throw new SequenceError('forwardBatch: no rows', 'ERR_BAD_ARGUMENT');
  const tokens = new Int32Array(B);
  const seq = new Int32Array(B);
  const pos = new Int32Array(B);
  const out: number[] = [];
  for (let b = 0; b < B; b++) {
    const r = rows[b]!;
    if (!(Number.isInteger(r.token) && r.token >= 0 && r.token < nVocab))
      throw new SequenceError(`rows[${b}]: token id ${r.token} is outside the vocabulary [0, ${nVocab})`, 'ERR_BAD_TOKEN');
    if (!isId(r.seq)) throw new SequenceError(`rows[${b}]: sequence ${r.seq} does not exist`, 'ERR_UNKNOWN_SEQUENCE');
    if (!(Number.isInteger(r.pos) && r.pos >= 0 && r.pos <= 0x7fffffff))
      throw new SequenceError(`rows[${b}]: position ${r.pos} must be an integer >= 0`, 'ERR_BAD_POSITION');
    tokens[b] = r.token;
    seq[b] = r.seq;
    pos[b] = r.pos;
    if (r.logits) out.push(b);
  }
  return { tokens, seq, pos, out: Int32Array.from(out) };
}

const isId = (x: unknown): x is number => typeof x === 'number' && Number.isInteger(x) && x >= 0 && x <= 0x7fffffff;

export class SequencePool {
  readonly kvType: KvType;
  readonly contextSize: number;
  readonly maxTokens: number;
  private readonly handle: StatePoolHandle | null;
  /** The op-by-op path: one flat cache per sequence. */
  private readonly flat = new Map<number, KvCache>();
  private nextId = 1;

  constructor(readonly model: TransformerModel, opts: SequencePoolOptions) {
    const cfg = model.cfg;
    this.kvType = opts.kvType ?? 'f16';
    if (!(Number.isInteger(opts.maxTokens) && opts.maxTokens >= 1)) throw new RangeError(`SequencePool: maxTokens must be an integer >= 1, got ${opts.maxTokens}`);
    if (!(Number.isInteger(opts.contextSize) && opts.contextSize >= 1)) throw new RangeError(`SequencePool: contextSize must be an integer >= 1, got ${opts.contextSize}`);
    this.contextSize = opts.contextSize;
    this.maxTokens = opts.maxTokens;
    if (model.native) {
      const Ctor = loadNative().KvPoolNative as (new (...a: unknown[]) => StatePoolHandle) | undefined;
      if (typeof Ctor !== 'function') throw new NativeError('bitllm: the native addon has no KvPoolNative class');
      this.handle = poolCall(() => new Ctor(this.kvType, cfg.nLayer, cfg.nHeadKv, cfg.headDim, opts.maxTokens, opts.contextSize));
    } else {
      this.handle = null;
      if (this.kvType !== 'f16' && cfg.headDim % 32 !== 0) throw new RangeError(`SequencePool: a ${this.kvType} KV cache needs headDim % 32 == 0`);
    }
  }

  private flatOf(id: number): KvCache {
    const kv = isId(id) ? this.flat.get(id) : undefined;
    if (!kv) throw new SequenceError(`sequence ${id} does not exist (disposed?)`, 'ERR_UNKNOWN_SEQUENCE');
    return kv;
  }

  private flatBlocks(extra = 0): number {
    let n = extra;
    for (const kv of this.flat.values()) n += Math.ceil(kv.length / KV_BLOCK_TOKENS);
    return n;
  }

  /** A new, empty sequence; its id is never reused. */
  create(): number {
    if (this.handle) return poolCall(() => this.handle!.create());
    const id = this.nextId++;
    const cfg = this.model.cfg;
    this.flat.set(id, new KvCache(cfg.nLayer, cfg.nHeadKv, cfg.headDim, this.contextSize, this.kvType));
    return id;
  }

  /** A new sequence holding the same positions as `src` (natively it shares src's blocks, copy-on-write). */
  fork(src: number): number {
    if (this.handle) return poolCall(() => this.handle!.fork(src));
    const from = this.flatOf(src);
    if (this.flatBlocks(Math.ceil(from.length / KV_BLOCK_TOKENS)) > Math.ceil(this.maxTokens / KV_BLOCK_TOKENS))
      throw new KvPoolFullError('the KV pool is full: a copied fork needs more blocks than are free');
    const id = this.create();
    const kv = this.flat.get(id)!;
    for (let l = 0; l < kv.k.length; l++) {
      kv.k[l]!.set(from.k[l]!);
      kv.v[l]!.set(from.v[l]!);
    }
    kv.length = from.length;
    return id;
  }

  /** Frees a sequence; its blocks return to the pool. */
  dispose(id: number): void {
    if (this.handle) return poolCall(() => this.handle!.dispose(id));
    this.flatOf(id);
    this.flat.delete(id);
  }

  /** Keeps positions [0, len) of a sequence (len <= its length). */
  truncate(id: number, len: number): void {
    if (this.handle) return poolCall(() => this.handle!.truncate(id, len));
    const kv = this.flatOf(id);
    if (!(Number.isInteger(len) && len >= 0 && len <= kv.length))
      throw new SequenceError(`truncate(${len}): sequence ${id} holds ${kv.length} positions`, 'ERR_BAD_POSITION');
    kv.truncate(len);
  }

  /** Positions a sequence holds (the next row's position). */
  length(id: number): number {
    if (this.handle) return poolCall(() => this.handle!.length(id));
    return this.flatOf(id).length;
  }

  stats(): SequencePoolStats {
    if (this.handle) return this.handle.stats();
    const cfg = this.model.cfg;
    const row = this.kvType === 'q8' ? (cfg.headDim / 32) * 34 : this.kvType === 'q3' ? (cfg.headDim / 32) * 14 : 2 * cfg.headDim;
    let held = 0;
    for (const kv of this.flat.values()) held += kv.length;
    return {
      sequences: this.flat.size, blocksUsed: this.flatBlocks(), blocksCached: 0, blocksMax: Math.ceil(this.maxTokens / KV_BLOCK_TOKENS),
      blockTokens: KV_BLOCK_TOKENS, blockBytes: 2 * cfg.nLayer * cfg.nHeadKv * KV_BLOCK_TOKENS * row, tokensHeld: held,
    };
  }

  /** Releases the memory of freed blocks. */
  trim(): void {
    this.handle?.trim();
  }

  /**
   * Runs the rows (any mix of sequences; see the batch contract above) and returns the logits of the rows
   * that asked for them, [n, vocab] in row order. Throws SequenceError (unknown sequence, position gap,
   * token outside the vocabulary), ContextOverflowError (a sequence past contextSize) or KvPoolFullError
   * (no free blocks) before anything changes.
   */
  /**
   * `into`: a buffer the logits may be written to (returned as a view of its start when it is large enough):
   * a caller that runs step after step reuses one buffer instead of allocating [n, vocab] floats per step.
   * The view is overwritten by the next call that is given the same buffer.
   */
  forwardBatch(rows: readonly BatchRow[], into?: Float32Array): Float32Array {
    const B = rows.length;
    const { tokens, seq, pos, out } = packRows(rows, this.model.cfg.nVocab);
    const model = this.model;
    if (this.handle) return poolCall(() => model.native!.forwardBatch(this.handle, tokens, seq, pos, out, into));
    // Op by op: the native pool's admission rules over the flat caches.
    const next = new Map<number, number>();
    const caches: KvCache[] = [];
    for (let b = 0; b < B; b++) {
      const kv = this.flatOf(seq[b]!);
      const want = next.get(seq[b]!) ?? kv.length;
      if (pos[b] !== want)
        throw new SequenceError(`rows[${b}]: sequence ${seq[b]} position ${pos[b]}, expected ${want} (a sequence's rows continue its positions in row order)`, 'ERR_BAD_POSITION');
      if (want + 1 > this.contextSize)
        throw new ContextOverflowError(`rows[${b}]: sequence ${seq[b]} position ${pos[b]} is past the context size ${this.contextSize}`);
      next.set(seq[b]!, want + 1);
      caches.push(kv);
    }
    let blocks = 0;
    for (const [id, kv] of this.flat) blocks += Math.ceil((next.get(id) ?? kv.length) / KV_BLOCK_TOKENS);
    if (blocks > Math.ceil(this.maxTokens / KV_BLOCK_TOKENS)) throw new KvPoolFullError('the KV pool is full: the batch needs more blocks than are free');
    const logits = model.forwardRows(tokens, caches, pos, Array.from(out));
    for (const [id, end] of next) this.flat.get(id)!.length = end;
    return logits;
  }
}
