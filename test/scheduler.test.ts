// The step scheduler against a fake batch model whose logits depend only on a sequence's own tokens, so a
// request's text must be the same alone and under any load; the fake also checks every row it is given.
import { describe, expect, it } from 'vitest';

import { type BatchModel, type BatchRow, type ScheduledRequest, type ScheduledStats, SchedulerError, StepScheduler } from '../lib/engine/scheduler.js';

const VOCAB = 13;
const WIDTH = 16; // padded head rows past the vocabulary

class FakeModel implements BatchModel {
  readonly blockTokens = 8;
  readonly seqs = new Map<number, number[]>();
  readonly batches: BatchRow[][] = [];
  private nextId = 1;
  failOn: ((rows: readonly BatchRow[]) => boolean) | undefined;
  constructor(readonly capacityTokens = 1024, readonly contextSize = 256) {}

  createSequence(): number {
    const id = this.nextId++;
    this.seqs.set(id, []);
    return id;
  }

  forkSequence(src: number, keep: number): number {
    const toks = this.seqs.get(src);
    if (!toks) throw new Error(`fake: fork of unknown sequence ${src}`);
    if (keep > toks.length) throw new Error(`fake: fork keeps ${keep} of ${toks.length}`);
    const id = this.nextId++;
    this.seqs.set(id, toks.slice(0, keep));
    return id;
  }

  disposeSequence(seq: number): void {
    if (!this.seqs.delete(seq)) throw new Error(`fake: dispose of unknown sequence ${seq}`);
  }

  forwardBatch(rows: readonly BatchRow[]): Float32Array {
    if (this.failOn?.(rows)) throw new Error('fake forward failure');
    this.batches.push(rows.map((r) => ({ ...r })));
    const out: number[] = [];
    for (const r of rows) {
      const toks = this.seqs.get(r.seq);
      if (!toks) throw new Error(`fake: row for unknown sequence ${r.seq}`);
      if (r.pos !== toks.length) throw new Error(`fake: sequence ${r.seq} holds ${toks.length} tokens, row at ${r.pos}`);
      toks.push(r.token);
      if (r.logits) out.push(...logitsOf(toks));
    }
    return Float32Array.from(out);
  }
}

/** Logits from a rolling hash of the sequence's tokens; the padding rows would win if they were sampled. */
function logitsOf(tokens: readonly number[]): number[] {
  let h = 2166136261;
  for (const t of tokens) h = Math.imul(h ^ (t + 1), 16777619) >>> 0;
  const l = Array.from({ length: WIDTH }, (_, v) => ((Math.imul(h ^ v, 2654435761) >>> 0) % 1000) / 100);
  for (let v = VOCAB; v < WIDTH; v++) l[v] = 1e9;
  return l;
}

function request(id: number, prompt: number[], maxTokens: number, extra: Partial<ScheduledRequest> = {}): ScheduledRequest {
  return { id, tokens: prompt, maxTokens, sampler: { temperature: 0 }, eog: [], vocabSize: VOCAB, ...extra };
}

function harness(model: FakeModel, opts: ConstructorParameters<typeof StepScheduler>[2] = {}) {
  const tokens = new Map<number, number[]>();
  const done = new Map<number, { stats: ScheduledStats; error?: Error }>();
  const lastSeen = new Map<number, boolean>();
  const s = new StepScheduler(model, {
    token(id, token, last) {
      expect(lastSeen.get(id)).not.toBe(true);
      (tokens.get(id) ?? tokens.set(id, []).get(id)!).push(token);
      lastSeen.set(id, last);
    },
    done(id, stats, error) {
      expect(done.has(id)).toBe(false);
      done.set(id, { stats, error });
    },
  }, opts);
  const run = (maxSteps = 10_000) => {
    let n = 0;
    while (!s.idle && n++ < maxSteps) s.step();
    expect(s.idle).toBe(true);
  };
  const forget = (id: number) => {
    tokens.delete(id);
    done.delete(id);
    lastSeen.delete(id);
  };
  return { s, tokens, done, run, forget };
}

const prompt = (seed: number, n: number) => Array.from({ length: n }, (_, i) => (seed * 7 + i * 3) % VOCAB);

describe('StepScheduler', () => {
  it('gives every request the same tokens alone and under load, never sampling head padding', () => {
    const reqs = [request(1, prompt(1, 40), 12), request(2, prompt(2, 3), 20), request(3, prompt(3, 300 % 200), 7), request(4, prompt(4, 1), 15),
      request(5, prompt(5, 17), 9), request(6, prompt(6, 64), 5)];
    const alone = new Map<number, number[]>();
    for (const r of reqs) {
      const h = harness(new FakeModel());
      h.s.submit(r);
      h.run();
      alone.set(r.id, h.tokens.get(r.id)!);
      expect(h.tokens.get(r.id)!.length).toBe(r.maxTokens);
    }
    for (const opts of [{ maxSequences: 2, stepTokens: 8, minPrefill: 1, chunkTokens: 3 }, { maxSequences: 6, stepTokens: 64 }, { maxSequences: 3, stepTokens: 5, chunkTokens: 1 }]) {
      const h = harness(new FakeModel(), opts);
      for (const r of reqs) h.s.submit(r);
      h.run();
      for (const r of reqs) {
        expect(h.tokens.get(r.id), `${r.id} ${JSON.stringify(opts)}`).toEqual(alone.get(r.id));
        expect(h.done.get(r.id)!.stats.finishReason).toBe('length');
        expect(h.done.get(r.id)!.stats.generatedTokens).toBe(r.maxTokens);
      }
      for (const t of [...alone.values()].flat()) expect(t).toBeLessThan(VOCAB);
    }
  });

  it('puts every decode row first, keeps steps within stepTokens (plus minPrefill), chunks prompts and runs at most maxSequences', () => {
    const model = new FakeModel();
    const h = harness(model, { maxSequences: 3, stepTokens: 10, minPrefill: 2, chunkTokens: 4 });
    for (let i = 1; i <= 5; i++) h.s.submit(request(i, prompt(i, 9), 6));
    h.run();
    expect(h.s.cached.sequences).toBe(3); // prefixCache defaults to maxSequences
    h.s.dropCache();
    for (const rows of model.batches) {
      const seqs = new Set(rows.map((r) => r.seq));
      expect(seqs.size).toBeLessThanOrEqual(3);
      // Decode rows (logits on a sequence's only row that follows its prompt) precede prompt rows.
      const firstPrefill = rows.findIndex((r) => r.pos < 9);
      if (firstPrefill >= 0) for (const r of rows.slice(firstPrefill)) expect(r.pos).toBeLessThan(9);
      const decode = rows.filter((r) => r.pos >= 9).length;
      expect(rows.length).toBeLessThanOrEqual(Math.max(10, decode + 2));
      const perSeq = new Map<number, number>();
      for (const r of rows) if (r.pos < 9) perSeq.set(r.seq, (perSeq.get(r.seq) ?? 0) + 1);
      for (const n of perSeq.values()) expect(n).toBeLessThanOrEqual(4);
    }
    expect(model.seqs.size).toBe(0); // every sequence disposed
  });

  it('shares the prompt budget round-robin: a long prompt does not hold back a short one behind it', () => {
    const model = new FakeModel(4096, 1024);
    const h = harness(model, { maxSequences: 2, stepTokens: 8, minPrefill: 8, chunkTokens: 8 });
    h.s.submit(request(1, prompt(1, 400), 2));
    h.s.submit(request(2, prompt(2, 16), 2));
    let steps = 0;
    while (!h.done.has(2)) {
      h.s.step();
      steps++;
    }
    // Alternating 8-token chunks: request 2's 16 prompt tokens take 2 of its turns, then one decode step.
    expect(steps).toBeLessThanOrEqual(6);
    expect(h.done.has(1)).toBe(false);
    h.run();
  });

  it('takes at most prefillWhileDecoding prompt tokens in a step that has decode rows, the full budget otherwise', () => {
    const model = new FakeModel(4096, 1024);
    const h = harness(model, { maxSequences: 2, stepTokens: 64, minPrefill: 4, chunkTokens: 64, prefillWhileDecoding: 10 });
    h.s.submit(request(1, prompt(1, 200), 3)); // alone: 64-token chunks
    h.s.step();
    expect(model.batches.at(-1)!.length).toBe(64);
    h.run();
    h.s.submit(request(2, prompt(2, 2), 40));
    h.s.step(); // request 2 decodes from now on
    h.s.submit(request(3, prompt(3, 300), 2));
    h.s.step();
    const rows = model.batches.at(-1)!;
    expect(rows.filter((r) => r.logits && r.pos >= 2).length).toBeGreaterThanOrEqual(1); // the decode row
    expect(rows.length).toBe(1 + 10);
    h.run();
    expect(new StepScheduler(model, { token() {}, done() {} }, { chunkTokens: 128 }).prefillWhileDecoding).toBe(64);
  });

  it('keeps decoding running streams while a long prompt prefills (at most one chunk per step)', () => {
    const model = new FakeModel(4096, 1024);
    const h = harness(model, { maxSequences: 2, stepTokens: 4, minPrefill: 4, chunkTokens: 4 });
    h.s.submit(request(1, prompt(1, 2), 50));
    h.s.step(); // request 1: prompt, first token
    h.s.submit(request(2, prompt(2, 600), 1));
    const before = h.tokens.get(1)!.length;
    for (let i = 0; i < 20; i++) h.s.step();
    expect(h.tokens.get(1)!.length).toBe(before + 20); // a token every step
    h.run();
  });

  it('ends at an EOG token (unless ignoreEog) and at maxTokens', () => {
    const alone = harness(new FakeModel());
    alone.s.submit(request(1, prompt(9, 5), 30));
    alone.run();
    const seq = alone.tokens.get(1)!;
    const eogTok = seq[4]!;
    const h = harness(new FakeModel());
    h.s.submit(request(1, prompt(9, 5), 30, { eog: [eogTok] }));
    h.s.submit(request(2, prompt(9, 5), 30, { eog: [eogTok], ignoreEog: true }));
    h.run();
    const cut = seq.indexOf(eogTok) + 1;
    expect(h.tokens.get(1)).toEqual(seq.slice(0, cut));
    expect(h.done.get(1)!.stats.finishReason).toBe('eog');
    expect(h.tokens.get(2)).toEqual(seq);
    expect(h.done.get(2)!.stats.finishReason).toBe('length');
  });

  it('cancels queued requests at once and running ones (mid-prefill or decoding) within one step, freeing their sequences', () => {
    const model = new FakeModel(4096, 1024);
    const h = harness(model, { maxSequences: 2, stepTokens: 4, minPrefill: 4, chunkTokens: 4 });
    h.s.submit(request(1, prompt(1, 100), 5)); // long prefill
    h.s.submit(request(2, prompt(2, 2), 100));
    h.s.submit(request(3, prompt(3, 2), 3)); // queued
    h.s.step();
    h.s.step();
    expect(h.s.active).toBe(2);
    expect(h.s.cancel(3)).toBe(true);
    expect(h.done.get(3)!.stats.finishReason).toBe('abort');
    expect(h.s.cancel(1)).toBe(true); // mid-prefill
    expect(h.s.cancel(2)).toBe(true); // decoding
    expect(h.s.cancel(42)).toBe(false);
    const st = h.s.step();
    expect(st.finished).toBe(2);
    expect(st.rows).toBe(0);
    expect(h.done.get(1)!.stats.finishReason).toBe('abort');
    expect(h.done.get(2)!.stats.finishReason).toBe('abort');
    expect(model.seqs.size).toBe(h.s.cached.sequences); // only parked ones are left
    h.s.dropCache();
    expect(model.seqs.size).toBe(0);
    expect(h.s.idle).toBe(true);
    expect(h.s.reserved).toBe(0);
    // The ids are free again.
    h.forget(1);
    h.s.submit(request(1, prompt(1, 3), 2));
    h.run();
    expect(h.tokens.get(1)!.length).toBeGreaterThan(0);
  });

  it('admits by KV footprint (whole blocks), in order, and never overcommits the pool', () => {
    const model = new FakeModel(64, 64); // 8 blocks of 8
    const h = harness(model, { maxSequences: 8, prefixCache: 0 });
    expect(h.s.footprint(10, 7)).toBe(24);
    h.s.submit(request(1, prompt(1, 10), 7)); // 24
    h.s.submit(request(2, prompt(2, 20), 12)); // 32
    h.s.submit(request(3, prompt(3, 5), 5)); // 16: would fit after 1 + 2 = 56? no: 72 > 64, waits (FIFO)
    h.s.step();
    expect(h.s.active).toBe(2);
    expect(h.s.queued).toBe(1);
    expect(h.s.reserved).toBe(56);
    h.run();
    expect(h.done.get(3)!.stats.queueMs).toBeGreaterThanOrEqual(0);
    expect([...h.done.values()].every((d) => d.stats.finishReason === 'length')).toBe(true);
  });

  it('rejects requests that could never run, before queueing them', () => {
    const h = harness(new FakeModel(64, 32));
    expect(() => h.s.submit(request(1, prompt(1, 30), 5))).toThrow(/exceeds the context size 32/);
    expect(() => h.s.submit(request(1, [], 5))).toThrow(SchedulerError);
    expect(() => h.s.submit(request(1, [1], 0))).toThrow(/maxTokens/);
    const big = harness(new FakeModel(16, 64));
    expect(() => big.s.submit(request(1, prompt(1, 10), 10))).toThrow(/needs 24 KV tokens, more than the pool's 16/);
    h.s.submit(request(7, [1], 1));
    expect(() => h.s.submit(request(7, [2], 1))).toThrow(/already live/);
    expect(() => new StepScheduler(new FakeModel(), { token() {}, done() {} }, { stepTokens: 0 })).toThrow(/stepTokens/);
  });

  it('ends every request of a failed forward with its error, frees them, and keeps serving the others', () => {
    const model = new FakeModel(4096, 1024);
    const h = harness(model, { maxSequences: 1 });
    h.s.submit(request(1, prompt(1, 4), 3));
    h.s.submit(request(2, prompt(2, 4), 3));
    model.failOn = (rows) => rows.some((r) => r.pos === 5);
    h.run();
    expect(h.done.get(1)!.stats.finishReason).toBe('error');
    expect(h.done.get(1)!.error!.message).toBe('fake forward failure');
    expect(h.tokens.get(1)!.length).toBe(2); // prefill gives one token, decode at pos 4 another, pos 5 fails
    expect(h.done.get(2)!.stats.finishReason).toBe('error');
    model.failOn = undefined;
    h.s.submit(request(3, prompt(3, 4), 3));
    h.run();
    expect(h.done.get(3)!.stats.finishReason).toBe('length');
    h.s.dropCache();
    expect(model.seqs.size).toBe(0); // the failed ones were disposed, never parked
  });

  it('reuses the longest cached prefix (fork + truncate), giving the tokens of a fresh run', () => {
    const fresh = (req: ScheduledRequest) => {
      const h = harness(new FakeModel());
      h.s.submit(req);
      h.run();
      return h.tokens.get(req.id)!;
    };
    const model = new FakeModel();
    const h = harness(model, { maxSequences: 2, prefixCache: 2 });
    const p = prompt(3, 40);
    h.s.submit(request(1, p, 6));
    h.run();
    const first = h.tokens.get(1)!;
    // A follow-up turn: the whole first conversation, then new tokens.
    const turn2 = [...p, ...first, 1, 2, 3];
    h.s.submit(request(2, turn2, 5));
    // A prompt sharing 25 tokens, and one sharing nothing.
    const other = [...p.slice(0, 25), 9, 9, 9];
    h.s.submit(request(3, other, 5));
    h.s.submit(request(4, [12, 11, 10], 5));
    h.run();
    expect(h.done.get(2)!.stats.reusedTokens).toBe(p.length + first.length - 1); // the last sampled token was never fed
    expect(h.done.get(2)!.stats.evaluatedTokens).toBe(turn2.length - h.done.get(2)!.stats.reusedTokens);
    expect(h.done.get(3)!.stats.reusedTokens).toBe(25);
    expect(h.done.get(4)!.stats.reusedTokens).toBe(0);
    expect(h.tokens.get(2)).toEqual(fresh(request(2, turn2, 5)));
    expect(h.tokens.get(3)).toEqual(fresh(request(3, other, 5)));
    // reuse: false runs the whole prompt.
    h.s.submit(request(5, turn2, 5, { reuse: false }));
    h.run();
    expect(h.done.get(5)!.stats.reusedTokens).toBe(0);
    expect(h.tokens.get(5)).toEqual(h.tokens.get(2));
    expect(h.s.cached.sequences).toBe(2);
  });

  it('evicts parked sequences when admission needs their room, never overcommitting the pool', () => {
    const model = new FakeModel(64, 64); // 8 blocks of 8
    const h = harness(model, { maxSequences: 4, prefixCache: 4 });
    h.s.submit(request(1, prompt(1, 20), 4)); // parks 24 tokens (3 blocks)
    h.s.submit(request(2, prompt(2, 20), 4)); // parks 24
    h.run();
    expect(h.s.cached.tokens).toBe(48);
    h.s.submit(request(3, prompt(3, 30), 10)); // needs 40: one parked sequence must go
    h.s.step();
    expect(h.s.active).toBe(1);
    expect(h.s.cached.sequences).toBe(1);
    expect(h.s.reserved + h.s.cached.tokens).toBeLessThanOrEqual(64);
    h.run();
    // A prompt extending request 1's, whose parked sequence was evicted first (least recently used): no reuse.
    h.s.submit(request(4, [...prompt(1, 20), 5], 2));
    h.run();
    expect(h.done.get(4)!.stats.reusedTokens).toBe(0);
  });

  it('evaluates a prompt: the logits after every token, chunk by chunk, no sampling, nothing parked', () => {
    const model = new FakeModel();
    const logits: Array<[number, number, Float32Array]> = [];
    let stats: ScheduledStats | undefined;
    const s = new StepScheduler(model, {
      token() {
        throw new Error('no tokens from evaluate');
      },
      logits(id, start, count, l) {
        expect(id).toBe(9);
        logits.push([start, count, l]);
      },
      done(_id, st) {
        stats = st;
      },
    }, { chunkTokens: 16, stepTokens: 16 });
    const p = prompt(5, 50);
    s.submit({ ...request(9, p, 0), evaluate: true });
    while (!s.idle) s.step();
    expect(logits.map(([a, n]) => [a, n])).toEqual([[0, 16], [16, 16], [32, 16], [48, 2]]);
    for (const [start, count, l] of logits)
      for (let i = 0; i < count; i++) expect(Array.from(l.subarray(i * WIDTH, (i + 1) * WIDTH))).toEqual(Array.from(Float32Array.from(logitsOf(p.slice(0, start + i + 1)))));
    expect(stats!.finishReason).toBe('length');
    expect(stats!.evaluatedTokens).toBe(50);
    expect(s.cached.sequences).toBe(0);
    expect(model.seqs.size).toBe(0);
  });

  it('reports log-probabilities of the raw logits when asked, without changing the tokens', () => {
    const seen: Array<[number, number | undefined]> = [];
    const s = new StepScheduler(new FakeModel(), {
      token(id, token, _last, lp) {
        seen.push([id, lp?.logprob]);
        if (lp) {
          expect(lp.top.length).toBe(3);
          expect(lp.top[0]![0]).toBe(token); // greedy: the sampled token is the most likely one
        }
      },
      done() {},
    });
    s.submit(request(1, prompt(4, 6), 5, { logprobs: 3 }));
    s.submit(request(2, prompt(4, 6), 5));
    while (!s.idle) s.step();
    const a = seen.filter(([id]) => id === 1), b = seen.filter(([id]) => id === 2);
    expect(a.length).toBe(5);
    expect(a.every(([, lp]) => lp !== undefined && lp <= 0 && Number.isFinite(lp))).toBe(true);
    expect(b.every(([, lp]) => lp === undefined)).toBe(true);
  });

  it('reports queue, first-token and total times from its clock', () => {
    let t = 0;
    const h = harness(new FakeModel(), { maxSequences: 1, now: () => t });
    h.s.submit(request(1, prompt(1, 4), 2));
    h.s.submit(request(2, prompt(2, 4), 2));
    while (!h.s.idle) {
      t += 10;
      h.s.step();
    }
    const s2 = h.done.get(2)!.stats;
    expect(s2.queueMs).toBeGreaterThan(0);
    expect(s2.ttftMs).toBeGreaterThanOrEqual(s2.queueMs);
    expect(s2.totalMs).toBeGreaterThanOrEqual(s2.ttftMs);
  });
});

describe('StepScheduler: prompt order and the time budget', () => {
  it('serves the prompt with the fewest computed tokens first: a short prompt behind long ones waits one step at most', () => {
    const model = new FakeModel(8192, 1024);
    const h = harness(model, { maxSequences: 4, stepTokens: 16, minPrefill: 16, chunkTokens: 16 });
    for (const id of [1, 2, 3]) h.s.submit(request(id, prompt(id, 600), 1));
    for (let i = 0; i < 7; i++) h.s.step();
    h.s.submit(request(4, prompt(4, 12), 1));
    h.s.step();
    // The very next step runs the short prompt (and its first token), not another long chunk.
    expect(h.done.has(4)).toBe(true);
    expect(h.done.get(4)!.stats.generatedTokens).toBe(1);
    // The long ones alternate: none is more than one chunk ahead of another.
    for (let i = 0; i < 5; i++) h.s.step();
    const bySeq = new Map<number, number>();
    for (const r of model.batches.flat()) bySeq.set(r.seq, (bySeq.get(r.seq) ?? 0) + 1);
    const longs = [...bySeq.values()].filter((n) => n > 12);
    expect(longs.length).toBe(3);
    expect(Math.max(...longs) - Math.min(...longs)).toBeLessThanOrEqual(16);
    h.run();
    for (const id of [1, 2, 3]) expect(h.done.get(id)!.stats.evaluatedTokens).toBe(600);
  });

  it('with adaptiveBudget, bounds the prompt rows next to decode rows by their fitted cost, not their count', () => {
    let t = 0;
    const model = new FakeModel(8192, 1024);
    // Simulated forward time: 2 ms a step, 1 ms a row, 0.01 ms per position attended, 0.5 ms a logit row.
    const forward = model.forwardBatch.bind(model);
    model.forwardBatch = (rows) => {
      t += 2 + rows.reduce((a, r) => a + 1 + 0.01 * r.pos + (r.logits ? 0.5 : 0), 0);
      return forward(rows);
    };
    const h = harness(model, { maxSequences: 4, stepTokens: 64, minPrefill: 1, chunkTokens: 64, prefillWhileDecoding: 16, adaptiveBudget: true, now: () => t });
    h.s.submit(request(1, prompt(1, 3), 400));
    h.s.submit(request(2, prompt(2, 5), 400));
    h.s.step();
    h.s.step();
    h.s.submit(request(3, prompt(3, 900), 1));
    const promptCost: Array<[pos: number, rows: number, ms: number]> = [];
    while (!h.done.has(3)) {
      h.s.step();
      const rows = model.batches.at(-1)!.filter((r) => r.seq === model.batches.at(-1)!.at(-1)!.seq && !r.logits);
      const prompts = model.batches.at(-1)!.slice(2);
      if (prompts.length > 0 && rows.length > 0) promptCost.push([prompts[0]!.pos, prompts.length, prompts.reduce((a, r) => a + 1 + 0.01 * r.pos, 0)]);
    }
    // 16 rows at the start of a prompt cost 16 + 0.01 x 120 = 17.2 ms: once fitted (8 steps), no step's prompt rows
    // cost more (minPrefill aside), so deep chunks take fewer rows.
    const fitted = promptCost.slice(10);
    for (const [, rows, ms] of fitted) if (rows > 1) expect(ms).toBeLessThanOrEqual(17.2 + 1e-6);
    const early = fitted.find(([pos]) => pos < 300)!;
    const deep = fitted.find(([pos]) => pos > 700)!;
    expect(early[1]).toBeGreaterThan(deep[1]);
    expect(deep[1]).toBeLessThanOrEqual(Math.ceil(17.2 / (1 + 0.01 * 700)));
    // The decoding streams got a token every step.
    expect(h.tokens.get(1)!.length).toBe(h.tokens.get(2)!.length);
    h.run();
  });

  it('without adaptiveBudget keeps the plain count (prefillWhileDecoding tokens)', () => {
    let t = 0;
    const model = new FakeModel(8192, 1024);
    const forward = model.forwardBatch.bind(model);
    model.forwardBatch = (rows) => {
      t += rows.reduce((a, r) => a + 1 + 0.01 * r.pos, 0);
      return forward(rows);
    };
    const h = harness(model, { maxSequences: 4, stepTokens: 64, minPrefill: 1, chunkTokens: 64, prefillWhileDecoding: 16, now: () => t });
    h.s.submit(request(1, prompt(1, 3), 300));
    h.s.step();
    h.s.submit(request(3, prompt(3, 900), 1));
    while (!h.done.has(3)) {
      h.s.step();
      expect(model.batches.at(-1)!.length).toBeLessThanOrEqual(1 + 16);
    }
    h.run();
  });
});

describe('StepScheduler: shared prefixes and held sequences', () => {
  const fresh = (req: ScheduledRequest) => {
    const h = harness(new FakeModel());
    h.s.submit(req);
    h.run();
    return h.tokens.get(req.id)!;
  };

  it('n requests with one prompt compute it once: the others wait for its prefill and fork it', () => {
    const model = new FakeModel();
    const h = harness(model, { maxSequences: 4, chunkTokens: 8, stepTokens: 16 });
    const p = prompt(5, 60);
    for (const id of [1, 2, 3]) h.s.submit(request(id, p, 6, { sampler: { temperature: 0.9, seed: id } }));
    // An unrelated prompt behind them is not held up by the wait.
    h.s.submit(request(4, prompt(6, 10), 3));
    h.run();
    expect(h.done.get(1)!.stats.reusedTokens).toBe(0);
    for (const id of [2, 3]) {
      expect(h.done.get(id)!.stats.reusedTokens).toBe(59);
      expect(h.done.get(id)!.stats.evaluatedTokens).toBe(1);
      expect(h.tokens.get(id)).toEqual(fresh(request(id, p, 6, { sampler: { temperature: 0.9, seed: id } })));
    }
    const evaluated = [1, 2, 3, 4].reduce((a, id) => a + h.done.get(id)!.stats.evaluatedTokens, 0);
    expect(evaluated).toBe(60 + 1 + 1 + 10);
    expect(h.done.get(4)!.stats.ttftMs).toBeDefined();
    expect(h.tokens.get(4)).toEqual(fresh(request(4, prompt(6, 10), 3)));
  });

  it('a request on a held sequence continues from its KV; a rewound one keeps the common prefix; release frees it', () => {
    const model = new FakeModel();
    const h = harness(model, { maxSequences: 2, prefixCache: 0 });
    h.s.hold(7);
    expect(() => h.s.hold(7)).toThrow(SchedulerError);
    const p = prompt(2, 30);
    h.s.submit(request(1, p, 5, { session: 7 }));
    h.run();
    const t1 = h.tokens.get(1)!;
    expect(h.s.held).toEqual({ sequences: 1, tokens: 40 }); // 30 + 4 fed, whole blocks of 8
    expect(h.s.heldTokensOf(7)).toEqual([...p, ...t1.slice(0, 4)]);
    expect(model.seqs.size).toBe(1); // prefixCache 0: only the held one stays
    // Continue: everything held is reused.
    const turn2 = [...p, ...t1, 3, 4];
    h.s.submit(request(2, turn2, 4, { session: 7 }));
    expect(() => h.s.submit(request(3, turn2, 4, { session: 7 }))).toThrow(/already runs/);
    h.run();
    expect(h.done.get(2)!.stats.reusedTokens).toBe(34);
    expect(h.tokens.get(2)).toEqual(fresh(request(2, turn2, 4)));
    // Rewind: a prompt that leaves the held tokens after 20 keeps those 20.
    const rewound = [...p.slice(0, 20), 1, 1, 1];
    h.s.submit(request(4, rewound, 3, { session: 7 }));
    h.run();
    expect(h.done.get(4)!.stats.reusedTokens).toBe(20);
    expect(h.tokens.get(4)).toEqual(fresh(request(4, rewound, 3)));
    // Another request forks the idle held sequence (copy on write) without touching it.
    const held = [...h.s.heldTokensOf(7)!];
    h.s.submit(request(5, [...p.slice(0, 20), 1, 1, 5], 2));
    h.run();
    expect(h.done.get(5)!.stats.reusedTokens).toBe(22);
    expect(h.s.heldTokensOf(7)).toEqual(held);
    expect(model.seqs.get([...model.seqs.keys()][0]!)).toEqual(held);
    expect(h.s.release(7)).toBe(true);
    expect(h.s.release(7)).toBe(false);
    expect(model.seqs.size).toBe(0);
    expect(h.s.held).toEqual({ sequences: 0, tokens: 0 });
    expect(() => h.s.submit(request(6, p, 2, { session: 7 }))).toThrow(/not held/);
  });

  it('release during a request frees the sequence when it ends; an aborted request keeps what it computed', () => {
    const model = new FakeModel();
    const h = harness(model, { maxSequences: 2, prefixCache: 0, chunkTokens: 8, stepTokens: 8 });
    h.s.hold(1);
    h.s.submit(request(1, prompt(3, 40), 5, { session: 1 }));
    h.s.step();
    h.s.step();
    h.s.cancel(1);
    h.s.step();
    expect(h.done.get(1)!.stats.finishReason).toBe('abort');
    expect(h.s.heldTokensOf(1)).toEqual(prompt(3, 40).slice(0, 16));
    h.s.submit(request(2, prompt(3, 40), 5, { session: 1 }));
    h.s.step();
    expect(h.s.release(1)).toBe(true);
    h.run();
    expect(h.done.get(2)!.stats.reusedTokens).toBe(16);
    expect(model.seqs.size).toBe(0);
    expect(h.s.held.sequences).toBe(0);
  });

  it('held KV is never evicted: a request that cannot fit while nothing runs fails instead of waiting', () => {
    const model = new FakeModel(64, 64); // 8 blocks of 8
    const h = harness(model, { maxSequences: 2, prefixCache: 2 });
    h.s.hold(1);
    h.s.submit(request(1, prompt(1, 40), 4, { session: 1 })); // holds 48 tokens (6 blocks) afterwards
    h.run();
    h.s.submit(request(2, prompt(2, 20), 4)); // needs 24 > 16 free
    h.run();
    expect(h.done.get(2)!.error).toBeInstanceOf(SchedulerError);
    expect(h.done.get(2)!.error!.message).toMatch(/held sequences keep 48/);
    // The held sequence itself still runs (its own KV does not count twice).
    h.s.submit(request(3, [...prompt(1, 40), ...h.tokens.get(1)!, 2], 8, { session: 1 }));
    h.run();
    expect(h.done.get(3)!.error).toBeUndefined();
    h.s.release(1);
    h.s.submit(request(4, prompt(2, 20), 4));
    h.run();
    expect(h.done.get(4)!.error).toBeUndefined();
  });
});
