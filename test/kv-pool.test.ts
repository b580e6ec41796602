// The sequence-state pool (native/runtime/kv_pool.h via lib/model/state.ts): fork with shared blocks and
// copy-on-write, dispose / truncate returning blocks, the token budget (KvPoolFullError with nothing
// changed), and every bad row or argument answered by a typed error before any state changes.
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

import { describe, expect, it } from 'vitest';

import { KvPoolFullError, SequenceError } from '../lib/errors.js';
import { readGguf } from '../lib/format/gguf.js';
import { KernelContext } from '../lib/kernels/context.js';
import { configFromGguf } from '../lib/model/config.js';
import { ContextOverflowError } from '../lib/model/kv-cache.js';
import { loadNative } from '../lib/native.js';
import { type BatchRow, KV_BLOCK_TOKENS, SequencePool } from '../lib/model/state.js';
import { TransformerModel } from '../lib/model/transformer.js';
import { loadWeights } from '../lib/model/weights.js';

const MODELS = join(fileURLToPath(new URL('..', import.meta.url)), 'models');
const ctx = new KernelContext({ threads: 2 });

function model(file: string): TransformerModel {
  const f = readGguf(join(MODELS, file));
  const cfg = configFromGguf(f);
  return new TransformerModel(ctx, cfg, loadWeights(ctx, f, cfg));
}
const b158 = model('tiny-b158-i2_s.gguf');
const a48 = model('tiny-a48-tq2_0.gguf');

const bits = (a: Float32Array) => Buffer.from(a.buffer, a.byteOffset, a.byteLength);
const PROMPT = Array.from({ length: 20 }, (_, i) => 1 + ((i * 37) % 900)); // 20 positions: one full block + 4

/** Feeds tokens to a sequence one prefill chunk; returns the last row's logits. */
function feed(pool: SequencePool, seq: number, tokens: number[]): Float32Array {
  const p0 = pool.length(seq);
  const rows: BatchRow[] = tokens.map((token, i) => ({ token, seq, pos: p0 + i, logits: i === tokens.length - 1 }));
  return pool.forwardBatch(rows);
}

/** The logits of a fresh sequence run over `tokens` (the expected continuation). */
function fresh(m: TransformerModel, tokens: number[]): Float32Array {
  const pool = new SequencePool(m, { maxTokens: 1024, contextSize: 64, kvType: m.cfg.row.kv });
  return feed(pool, pool.create(), tokens);
}

describe.each([['tiny-b158-i2_s (f16 KV)', b158], ['tiny-a48-tq2_0 (q3 KV)', a48]] as const)('KV pool on %s', (_name, m) => {
  const kvType = m.cfg.row.kv;

  it('forwardBatch into a caller\'s buffer: the same logits, written at its start, no allocation when it is large enough', () => {
    const pool = new SequencePool(m, { maxTokens: 1024, contextSize: 64, kvType });
    const V = m.cfg.nVocab;
    const buf = new Float32Array(3 * V).fill(Number.NaN);
    const a = pool.create();
    const rows: BatchRow[] = PROMPT.map((token, i) => ({ token, seq: a, pos: i, logits: i >= PROMPT.length - 2 }));
    const out = pool.forwardBatch(rows, buf);
    expect(out.buffer).toBe(buf.buffer);
    expect(out.byteOffset).toBe(0);
    expect(out.length).toBe(2 * V);
    expect(bits(out.subarray(V)).equals(bits(fresh(m, PROMPT)))).toBe(true);
    expect(Number.isNaN(buf[2 * V])).toBe(true); // nothing past the rows asked for
    // Too small a buffer: a fresh array, the buffer untouched.
    const small = new Float32Array(V - 1);
    const b = pool.create();
    const got = pool.forwardBatch(PROMPT.map((token, i) => ({ token, seq: b, pos: i, logits: i === PROMPT.length - 1 })), small);
    expect(got.buffer).not.toBe(small.buffer);
    expect(bits(got).equals(bits(fresh(m, PROMPT)))).toBe(true);
  });

  it('a sequence and its fork extending their shared last block in one batch take one copy, not two (an exact count: a full pool still admits it)', () => {
    // 3 blocks of 16: a holds 20 positions (2 blocks), b forks it (shared); both write position 20 in one batch.
    const pool = new SequencePool(m, { maxTokens: 48, contextSize: 48, kvType });
    const a = pool.create();
    feed(pool, a, PROMPT);
    const b = pool.fork(a);
    const out = pool.forwardBatch([{ token: 7, seq: a, pos: 20, logits: true }, { token: 9, seq: b, pos: 20, logits: true }]);
    expect(pool.stats().blocksUsed).toBe(3);
    const V = m.cfg.nVocab;
    expect(bits(out.subarray(0, V)).equals(bits(fresh(m, [...PROMPT, 7])))).toBe(true);
    expect(bits(out.subarray(V)).equals(bits(fresh(m, [...PROMPT, 9])))).toBe(true);
    pool.dispose(a);
    pool.dispose(b);
    expect(pool.stats()).toMatchObject({ sequences: 0, blocksUsed: 0, blocksCached: 3 });
  });

  it('fork shares the prefix blocks; each branch continues as a fresh run and writing one never changes the other', () => {
    const pool = new SequencePool(m, { maxTokens: 1024, contextSize: 64, kvType });
    const a = pool.create();
    feed(pool, a, PROMPT);
    expect(pool.stats().blocksUsed).toBe(2);
    const b = pool.fork(a);
    expect(pool.length(b)).toBe(20);
    expect(pool.stats().blocksUsed).toBe(2); // shared, not copied
    // b writes into the shared partial block first: b gets a copy, a keeps the original.
    const lb = feed(pool, b, [77, 78]);
    expect(pool.stats().blocksUsed).toBe(3);
    const la = feed(pool, a, [500]);
    expect(pool.stats().blocksUsed).toBe(3); // a's block is its own again (refcount 1): written in place
    expect(bits(lb).equals(bits(fresh(m, [...PROMPT, 77, 78])))).toBe(true);
    expect(bits(la).equals(bits(fresh(m, [...PROMPT, 500])))).toBe(true);
    // A second fork of a, then a decode batch with both branches and b in one call.
    const c = pool.fork(a);
    const out = pool.forwardBatch([
      { token: 9, seq: c, pos: 21, logits: true }, { token: 10, seq: a, pos: 21, logits: true }, { token: 11, seq: b, pos: 22, logits: true },
    ]);
    const V = m.cfg.nVocab;
    expect(bits(out.subarray(0, V)).equals(bits(fresh(m, [...PROMPT, 500, 9])))).toBe(true);
    expect(bits(out.subarray(V, 2 * V)).equals(bits(fresh(m, [...PROMPT, 500, 10])))).toBe(true);
    expect(bits(out.subarray(2 * V)).equals(bits(fresh(m, [...PROMPT, 77, 78, 11])))).toBe(true);
    // Forks at a block boundary share whole blocks and copy nothing when they write.
    const d = pool.create();
    feed(pool, d, PROMPT.slice(0, 16));
    const e = pool.fork(d);
    const used = pool.stats().blocksUsed;
    feed(pool, e, [3]);
    feed(pool, d, [4]);
    expect(pool.stats().blocksUsed).toBe(used + 2); // one new block each, no copy of the shared full one
  });

  it('dispose and truncate return blocks; trim releases their memory; a truncated sequence re-runs a new suffix', () => {
    const pool = new SequencePool(m, { maxTokens: 1024, contextSize: 64, kvType });
    const a = pool.create();
    feed(pool, a, PROMPT);
    const b = pool.fork(a);
    feed(pool, b, [5]);
    expect(pool.stats()).toMatchObject({ sequences: 2, blocksUsed: 3, tokensHeld: 41 });
    pool.dispose(a);
    expect(pool.stats()).toMatchObject({ sequences: 1, blocksUsed: 2 }); // b's copy + the shared full block
    expect(() => pool.length(a)).toThrow(SequenceError);
    pool.truncate(b, 10);
    expect(pool.stats().blocksUsed).toBe(1);
    expect(bits(feed(pool, b, [600, 601])).equals(bits(fresh(m, [...PROMPT.slice(0, 10), 600, 601])))).toBe(true);
    pool.dispose(b);
    const st = pool.stats();
    expect(st).toMatchObject({ sequences: 0, blocksUsed: 0, tokensHeld: 0 });
    expect(st.blocksCached).toBeGreaterThan(0);
    pool.trim();
    expect(pool.stats().blocksCached).toBe(0);
    expect(st.blockTokens).toBe(KV_BLOCK_TOKENS);
    const rb = kvType === 'q3' ? (m.cfg.headDim / 32) * 14 : 2 * m.cfg.headDim;
    expect(st.blockBytes).toBe(2 * m.cfg.nLayer * m.cfg.nHeadKv * KV_BLOCK_TOKENS * rb);
  });

  it('a full pool answers KvPoolFullError and changes nothing', () => {
    const pool = new SequencePool(m, { maxTokens: 2 * KV_BLOCK_TOKENS, contextSize: 64, kvType });
    const a = pool.create();
    feed(pool, a, PROMPT); // 2 blocks: the whole budget
    const b = pool.create();
    const before = pool.stats();
    expect(() => pool.forwardBatch([{ token: 1, seq: b, pos: 0 }])).toThrow(KvPoolFullError);
    // A batch where one sequence fits (a's partial block) and the other does not: all or nothing.
    expect(() => pool.forwardBatch([{ token: 2, seq: a, pos: 20 }, { token: 1, seq: b, pos: 0 }])).toThrow(KvPoolFullError);
    // A fork needs no block until it writes; writing the shared partial block needs a copy.
    const c = pool.fork(a);
    expect(() => pool.forwardBatch([{ token: 2, seq: c, pos: 20 }])).toThrow(KvPoolFullError);
    pool.dispose(c);
    expect(pool.stats()).toEqual({ ...before });
    expect(pool.length(a)).toBe(20);
    expect(pool.length(b)).toBe(0);
    expect(bits(feed(pool, a, [42])).equals(bits(fresh(m, [...PROMPT, 42])))).toBe(true);
    pool.dispose(a);
    expect(bits(feed(pool, b, [7, 8])).equals(bits(fresh(m, [7, 8])))).toBe(true);
  });
});

describe('bad rows and arguments', () => {
  const pool = new SequencePool(b158, { maxTokens: 256, contextSize: 20 });
  const a = pool.create();
  feed(pool, a, [1, 2, 3]);
  const V = b158.cfg.nVocab;
  const unchanged = () => {
    expect(pool.length(a)).toBe(3);
    expect(pool.stats().blocksUsed).toBe(1);
  };

  it('unknown or disposed sequences', () => {
    const gone = pool.create();
    pool.dispose(gone);
    for (const seq of [gone, 9999, -1, 1.5]) {
      const err = (() => { try { pool.forwardBatch([{ token: 1, seq: a, pos: 3 }, { token: 1, seq, pos: 0 }]); } catch (e) { return e; } })();
      expect(err).toBeInstanceOf(SequenceError);
      expect((err as SequenceError).code).toBe('ERR_UNKNOWN_SEQUENCE');
    }
    expect(() => pool.dispose(gone)).toThrow(SequenceError);
    expect(() => pool.fork(gone)).toThrow(SequenceError);
    expect(() => pool.truncate(gone, 0)).toThrow(SequenceError);
    unchanged();
  });

  it('token ids outside the vocabulary', () => {
    for (const token of [-1, V, 1.5, Number.NaN]) {
      const err = (() => { try { pool.forwardBatch([{ token, seq: a, pos: 3 }]); } catch (e) { return e; } })();
      expect(err).toBeInstanceOf(SequenceError);
      expect((err as SequenceError).code).toBe('ERR_BAD_TOKEN');
    }
    unchanged();
  });

  it('positions that do not continue the sequence, and a sequence past the context size', () => {
    for (const rows of [
      [{ token: 1, seq: a, pos: 4 }], // gap
      [{ token: 1, seq: a, pos: 2 }], // rewrite without truncate
      [{ token: 1, seq: a, pos: 3 }, { token: 1, seq: a, pos: 5 }], // gap inside the batch
      [{ token: 1, seq: a, pos: 4 }, { token: 1, seq: a, pos: 3 }], // out of row order
      [{ token: 1, seq: a, pos: -1 }],
    ]) {
      const err = (() => { try { pool.forwardBatch(rows); } catch (e) { return e; } })();
      expect(err, JSON.stringify(rows)).toBeInstanceOf(SequenceError);
      expect((err as SequenceError).code).toBe('ERR_BAD_POSITION');
    }
    const long = Array.from({ length: 18 }, (_, i) => ({ token: 1, seq: a, pos: 3 + i }));
    expect(() => pool.forwardBatch(long)).toThrow(ContextOverflowError);
    expect(() => pool.truncate(a, 4)).toThrow(SequenceError);
    expect(() => pool.forwardBatch([])).toThrow(SequenceError);
    unchanged();
  });

  it('the addon checks the same things itself (tokens, rows, pool, outRows) with no state change', () => {
    const native = b158.native!;
    const h = (pool as unknown as { handle: unknown }).handle;
    const i32 = (...v: number[]) => Int32Array.from(v);
    const call = (tokens: Int32Array, seq: Int32Array, pos: Int32Array, out: Int32Array, p: unknown = h) =>
      () => (native as unknown as { handle: { forwardBatch: (...a: unknown[]) => void } }).handle.forwardBatch(
        ctx.handle, p, tokens, seq, pos, out, new Float32Array(out.length * V));
    expect(call(i32(V), i32(a), i32(3), i32())).toThrow(/outside the vocabulary/);
    expect(call(i32(1), i32(a), i32(3), i32(1))).toThrow(/outRows/);
    expect(call(i32(1, 1), i32(a, a), i32(3, 4), i32(1, 0))).toThrow(/outRows/);
    expect(call(i32(1), i32(a), i32(3), i32(), {})).toThrow(/KvPoolNative/);
    expect(call(i32(1), i32(a, a), i32(3), i32())).toThrow(/seq/);
    expect(call(i32(1), i32(77), i32(0), i32())).toThrow(/does not exist/);
    const Pool = loadNative().KvPoolNative as new (...a: unknown[]) => unknown;
    expect(call(i32(1), i32(1), i32(0), i32(), new Pool('f16', 1, 1, 64, 16, 16))).toThrow(/does not fit the model/);
    expect(() => new Pool('f32', 1, 1, 64, 16, 16)).toThrow(/kvType/);
    expect(() => new Pool('q8', 1, 1, 48, 16, 16)).toThrow(/multiple|% 32/);
    expect(() => new Pool('f16', 1, 1, 64, 0, 16)).toThrow(/maxTokens/);
    unchanged();
  });
});
