// The public generation API on the bitnet.cpp golden model (4 layers, vocab 4096, random ternary weights):
// determinism, limits, stop strings, abort, context overflow, chat KV reuse, event-loop health, errors;
// chat templates against the llama-bpe / llama-spm vocabularies.
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { monitorEventLoopDelay } from 'node:perf_hooks';

import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { spawnSync } from 'node:child_process';

import {
  ContextOverflowError, type GenerateChunk, type GenerationResult, type Model, ModelClosedError, RequestError, Sequence, loadModel,
} from '../lib/api.js';
import { chatFormatFromTemplate, chatTemplate, detectChatFormat, renderChat, templateTokens } from '../lib/engine/chat.js';
import { TextStream } from '../lib/engine/generate.js';
import { argmax } from '../lib/engine/sampler.js';
import { readGguf } from '../lib/format/gguf.js';
import { Tokenizer } from '../lib/tokenizer/index.js';
import { goldenPath, rng, vocabPath } from './helpers.js';

const MODEL = goldenPath('small-b158-i2s-s11.gguf');
const golden = JSON.parse(readFileSync(goldenPath('small-b158-i2s-s11.json'), 'utf8')) as { tokens: number[]; n_vocab: number };

async function collect(gen: AsyncGenerator<GenerateChunk, GenerationResult, undefined>, onChunk?: (c: GenerateChunk, i: number) => void) {
  const chunks: GenerateChunk[] = [];
  let r = await gen.next();
  for (; !r.done; r = await gen.next()) {
    onChunk?.(r.value, chunks.length);
    chunks.push(r.value);
  }
  return { chunks, tokens: chunks.map((c) => c.token), text: chunks.map((c) => c.text).join(''), result: r.value };
}

function randomIds(seed: number, n: number): number[] {
  const r = rng(seed);
  return [1, ...Array.from({ length: n - 1 }, () => 3 + Math.floor(r() * 4000))];
}

describe('generation API', () => {
  let model: Model;
  beforeAll(async () => {
    model = await loadModel(MODEL, { threads: 1, contextSize: 256 });
  });
  afterAll(async () => {
    await model.close();
  });

  it('describes the loaded model', () => {
    const i = model.info;
    expect(i.arch).toBe('bitnet-b1.58');
    expect(i.hparams.nLayer).toBe(4);
    expect(i.tensors.count).toBe(46);
    expect(i.tensors.byType['I2_S']).toBe(28);
    expect(i.contextSize).toBe(256);
    expect(i.threads).toBe(1);
    expect(i.fileSize).toBeGreaterThan(7_000_000);
    expect(i.chatFormat).toEqual({ name: 'llama2', source: 'vocabulary' });
    expect(i.tokenizer.eog).toEqual([2]);
  });

  it('reports loading progress layer by layer', async () => {
    const seen: Array<[number, number]> = [];
    const m = await loadModel(MODEL, { threads: 1, contextSize: 32, onProgress: (done, total) => seen.push([done, total]) });
    await m.close();
    expect(seen).toEqual([[1, 4], [2, 4], [3, 4], [4, 4]]);
    await expect(loadModel(MODEL, { onProgress: 5 as never })).rejects.toThrow(/options\.onProgress must be a function/);
  });

  it('defaults contextSize to min(4096, the training context)', async () => {
    const m = await loadModel(MODEL, { threads: 1 });
    expect(m.info.contextSize).toBe(4096);
    await m.close();
  });

  it('tokenizes and detokenizes', () => {
    const ids = model.tokenize('Hello world');
    expect(ids[0]).toBe(1); // add_bos_token
    expect(model.tokenize('Hello world', { addBos: false })).toEqual(ids.slice(1));
    // This vocabulary spells text in byte tokens and has no lone '▁' piece: the space marker survives, as in llama.cpp.
    expect(model.detokenize(ids.slice(1))).toBe('▁Hello▁world');
    expect(model.detokenize([1, 3104, 3550])).toBe('<s>t3104 t3550');
    expect(model.detokenize([1, 3104, 3550], { skipSpecial: true })).toBe('t3104 t3550');
    expect(() => model.detokenize([4096])).toThrow(RequestError);
    expect(model.tokenize('</s>', { addBos: false })).toEqual([2]);
    expect(model.tokenize('</s>', { addBos: false, parseSpecial: false })).not.toEqual([2]);
  });

  it('greedy generation gives the same tokens every time, whatever ran before', async () => {
    const a = await collect(model.generate('Once upon a time', { maxTokens: 16, temperature: 0 }));
    expect(a.tokens).toHaveLength(16);
    const b = await collect(model.generate('Once upon a time', { maxTokens: 16, temperature: 0 }));
    expect(b.tokens).toEqual(a.tokens);
    expect(b.text).toBe(a.text);
    expect(a.result.tokens).toEqual(a.tokens);
    expect(a.result.finishReason).toBe('length');
  });

  it('concurrent generate() calls run together (one forward per step) and each gives its text alone', async () => {
    const reqs = [
      { prompt: randomIds(21, 40), opts: { maxTokens: 14, temperature: 0 } },
      { prompt: randomIds(22, 3), opts: { maxTokens: 20, temperature: 0.8, seed: 5 } },
      { prompt: randomIds(23, 90), opts: { maxTokens: 9, temperature: 0.7, topK: 20, seed: 9 } },
      { prompt: randomIds(24, 12), opts: { maxTokens: 17, temperature: 0 } },
      { prompt: randomIds(25, 7), opts: { maxTokens: 11, temperature: 1, seed: 1 } },
    ];
    const alone = [];
    for (const r of reqs) alone.push((await collect(model.generate(r.prompt, { ...r.opts }))).tokens);
    // Each stream records how many tokens the others had when it got each of its own.
    const counts = reqs.map(() => 0);
    const seenOthers: number[][] = reqs.map(() => []);
    const together = await Promise.all(reqs.map(async (r, i) => {
      const out: number[] = [];
      for await (const c of model.generate(r.prompt, { ...r.opts })) {
        out.push(c.token);
        counts[i]!++;
        seenOthers[i]!.push(counts.reduce((a, b) => a + b, 0) - counts[i]!);
      }
      return out;
    }));
    expect(together).toEqual(alone);
    // Interleaved, not one after another: the first stream saw others' tokens before its own last one.
    expect(seenOthers[0]!.at(-1)!).toBeGreaterThan(0);
    expect(model.info.sequences).toBe(4);
  });

  it('sequences: 1 runs concurrent calls one after another, with the same results', async () => {
    const m = await loadModel(MODEL, { threads: 1, contextSize: 64, sequences: 1 });
    try {
      const order: number[] = [];
      const run = async (i: number) => {
        const out: number[] = [];
        for await (const c of m.generate(randomIds(30 + i, 5), { maxTokens: 6, temperature: 0 })) {
          out.push(c.token);
          order.push(i);
        }
        return out;
      };
      const [a, b] = await Promise.all([run(0), run(1)]);
      expect(order).toEqual([...Array(6).fill(0), ...Array(6).fill(1)]);
      expect(a).toEqual((await collect(model.generate(randomIds(30, 5), { maxTokens: 6, temperature: 0 }))).tokens);
      expect(b).toEqual((await collect(model.generate(randomIds(31, 5), { maxTokens: 6, temperature: 0 }))).tokens);
    } finally {
      await m.close();
    }
    await expect(loadModel(MODEL, { sequences: 0 })).rejects.toThrow(/options\.sequences must be an integer in \[1, 256\], got 0/);
  });

  it('reuses any cached prompt prefix, with the results of a fresh prefill (the batched forward is batch-invariant)', async () => {
    const prompt = randomIds(7, 200);
    const first = await collect(model.generate(prompt, { maxTokens: 12, temperature: 0 }));
    expect(first.result.stats.evaluatedTokens).toBe(200 - first.result.stats.reusedTokens);
    // A prompt sharing 150 tokens with the first: exactly those are reused, and its first token is the argmax of
    // the last row of an evaluate() of the whole prompt (evaluate never reuses).
    const other = [...prompt.slice(0, 150), ...randomIds(8, 30).slice(1)];
    const second = await collect(model.generate(other, { maxTokens: 4, temperature: 0 }));
    expect(second.result.stats.reusedTokens).toBe(150);
    expect(second.result.stats.evaluatedTokens).toBe(other.length - 150);
    let last: Float32Array | undefined;
    for await (const c of model.evaluate(other)) last = c.logits.subarray((c.count - 1) * (c.logits.length / c.count));
    expect(second.tokens[0]).toBe(argmax(last!.subarray(0, model.tokenizer.vocabSize)));
    // The first prompt again: all but its last token come from the cache, and the text is the same.
    const again = await collect(model.generate(prompt, { maxTokens: 12, temperature: 0 }));
    expect(again.result.stats.reusedTokens).toBe(199);
    expect(again.tokens).toEqual(first.tokens);
  });

  it('evaluate() reproduces bitnet.cpp golden logits (cosine >= 0.99 per row)', async () => {
    const V = golden.n_vocab;
    const gold = new Float32Array(readFileSync(goldenPath('small-b158-i2s-s11.logits.f32')).buffer.slice(0));
    let rows = 0;
    let minCos = 1;
    for await (const chunk of model.evaluate(golden.tokens)) {
      for (let r = 0; r < chunk.count; r++) {
        const a = chunk.logits.subarray(r * V, (r + 1) * V);
        const g = gold.subarray((chunk.start + r) * V, (chunk.start + r + 1) * V);
        let dot = 0, na = 0, ng = 0;
        for (let j = 0; j < V; j++) {
          dot += a[j]! * g[j]!;
          na += a[j]! * a[j]!;
          ng += g[j]! * g[j]!;
        }
        minCos = Math.min(minCos, dot / Math.sqrt(na * ng));
        rows++;
      }
    }
    expect(rows).toBe(golden.tokens.length);
    expect(minCos).toBeGreaterThanOrEqual(0.99);
  });

  it('the same seed gives the same tokens with temperature; another seed differs', async () => {
    const opts = { maxTokens: 24, temperature: 1.5, topK: 0, topP: 1, minP: 0 };
    const a = await collect(model.generate('Once upon a time', { ...opts, seed: 42 }));
    const b = await collect(model.generate('Once upon a time', { ...opts, seed: 42 }));
    const c = await collect(model.generate('Once upon a time', { ...opts, seed: 43 }));
    expect(b.tokens).toEqual(a.tokens);
    expect(c.tokens).not.toEqual(a.tokens);
  });

  it('maxTokens bounds the number of tokens', async () => {
    for (const n of [1, 5]) {
      const r = await collect(model.generate('Hello', { maxTokens: n, temperature: 0 }));
      expect(r.tokens).toHaveLength(n);
      expect(model.stats.last!.generatedTokens).toBe(n);
    }
  });

  it('stop strings end the text before the stop string and nothing of it is emitted', async () => {
    const full = await collect(model.generate('Once upon a time', { maxTokens: 20, temperature: 0 }));
    // A stop string spanning a token boundary, starting inside one token's text.
    const boundary = full.chunks.slice(0, 6).reduce((n, c) => n + c.text.length, 0);
    const stop = full.text.slice(boundary - 2, boundary + 3);
    const expected = full.text.slice(0, full.text.indexOf(stop));
    const seen: string[] = [];
    const r = await collect(model.generate('Once upon a time', { maxTokens: 20, temperature: 0, stop: [stop] }), (c) => {
      seen.push(c.text);
      // Never more than the final text, at any point of the stream.
      expect(expected.startsWith(seen.join(''))).toBe(true);
    });
    expect(r.text).toBe(expected);
    expect(r.result.finishReason).toBe('stop');
    expect(r.tokens.length).toBeLessThan(20);
    // Text held back as a possible stop string is released when the stop never completes.
    const partial = await collect(model.generate('Once upon a time', { maxTokens: 20, temperature: 0, stop: [full.text.slice(-4) + 'zz'] }));
    expect(partial.text).toBe(full.text);
  });

  it('an AbortSignal stops generation within one token', async () => {
    const ac = new AbortController();
    const r = await collect(model.generate('Once upon a time', { maxTokens: 200, temperature: 0, signal: ac.signal }), (_c, i) => {
      if (i === 2) ac.abort();
    });
    expect(r.chunks).toHaveLength(3);
    expect(r.result.finishReason).toBe('abort');
    expect(model.stats.last!.generatedTokens).toBeLessThan(200);
    const pre = await collect(model.generate('Once upon a time', { maxTokens: 8, signal: AbortSignal.abort() }));
    expect(pre.tokens).toEqual([]);
    // The model is usable afterwards.
    expect((await collect(model.generate('Hi', { maxTokens: 2, temperature: 0 }))).tokens).toHaveLength(2);
  });

  it('breaking out of the loop ends the request', async () => {
    let n = 0;
    for await (const _ of model.generate('Once upon a time', { maxTokens: 200, temperature: 0 })) if (++n === 2) break;
    const r = await collect(model.generate('Hi', { maxTokens: 3, temperature: 0 }));
    expect(r.tokens).toHaveLength(3);
  });

  it('a request that exceeds contextSize is a ContextOverflowError, never truncated', async () => {
    await expect(collect(model.generate(randomIds(1, 300), { maxTokens: 1 }))).rejects.toThrow(ContextOverflowError);
    await expect(collect(model.generate(randomIds(1, 200), { maxTokens: 100 }))).rejects.toThrow(/200 tokens \+ maxTokens 100 = 300 exceeds contextSize 256/);
    await expect(collect(model.generate(randomIds(1, 256)))).rejects.toThrow(ContextOverflowError);
    // Without maxTokens, generation may use the rest of the context.
    const r = await collect(model.generate(randomIds(2, 250), { temperature: 0 }));
    expect(r.tokens.length).toBeLessThanOrEqual(6);
  });

  it('ignoreEog keeps sampling past end-of-generation tokens; without it an EOG token ends the stream', async () => {
    const eos = model.tokenizer.eos!;
    const logitBias = { [eos]: 1000 }; // EOG is always the argmax
    const stopped = await collect(model.generate('Hello', { maxTokens: 6, temperature: 0, logitBias }));
    expect(stopped.tokens).toEqual([eos]);
    expect(stopped.result.finishReason).toBe('eog');
    const kept = await collect(model.generate('Hello', { maxTokens: 6, temperature: 0, logitBias, ignoreEog: true }));
    expect(kept.tokens).toEqual(Array(6).fill(eos));
    expect(kept.result.finishReason).toBe('length');
    expect(kept.text).toBe(''); // EOG tokens carry no text
  });

  it('profile: true returns per-op ms per token for prefill and decode; the parts add up to the wall time', async () => {
    const r = await collect(model.generate(randomIds(9, 20), { maxTokens: 5, temperature: 0, profile: true }));
    const prof = r.result.stats.profile!;
    expect(prof.prefill!.tokens).toBe(r.result.stats.evaluatedTokens); // a cached prefix is not run
    expect(prof.decode!.tokens).toBe(4);
    for (const p of [prof.prefill!, prof.decode!]) {
      expect(p.ops['gemm_gate_up']).toBeGreaterThan(0);
      expect(p.ops['attention']).toBeGreaterThan(0);
      const parts = Object.values(p.ops).reduce((a, b) => a + b, 0) + Object.values(p.overhead).reduce((a, b) => a + b, 0);
      expect(Math.abs(parts - p.wallMsPerToken) / p.wallMsPerToken).toBeLessThan(0.02);
    }
    const plain = await collect(model.generate(randomIds(9, 20), { maxTokens: 5, temperature: 0 }));
    expect(plain.result.stats.profile).toBeUndefined();
    expect(plain.tokens).toEqual(r.tokens); // profiling does not change results
  });

  it('rejects bad options with RequestErrors naming the option', async () => {
    const bad = async (prompt: string | number[], opts: object) => collect(model.generate(prompt, opts));
    await expect(bad('Hi', { temperature: NaN })).rejects.toThrow(RequestError);
    await expect(bad('Hi', { temperature: NaN })).rejects.toThrow(/temperature/);
    await expect(bad('Hi', { maxTokens: -1 })).rejects.toThrow(/options\.maxTokens must be an integer >= 1, got -1/);
    await expect(bad('Hi', { topP: 2 })).rejects.toThrow(/topP/);
    await expect(bad('Hi', { stop: 'x' })).rejects.toThrow(/options\.stop/);
    await expect(bad('Hi', { logitBias: { 5000: 1 } })).rejects.toThrow(/logitBias/);
    await expect(bad('Hi', { max_tokens: 3 })).rejects.toThrow(/unknown option 'max_tokens'/);
    await expect(bad('Hi', { ignoreEog: 1 })).rejects.toThrow(/options\.ignoreEog must be a boolean/);
    await expect(bad('Hi', { profile: 'yes' })).rejects.toThrow(/options\.profile must be a boolean/);
    await expect(bad([1, 5, 4096], {})).rejects.toThrow(/prompt\[2\] = 4096 is not a token id/);
    await expect(bad([1, 2.5], {})).rejects.toThrow(/prompt\[1\]/);
    await expect(bad('', {})).rejects.toThrow(/prompt is empty/);
    await expect(bad([], {})).rejects.toThrow(/prompt is empty/);
    await expect(loadModel(MODEL, { kvType: 'q4' as never })).rejects.toThrow(/options\.kvType must be 'f16', 'q8' or 'q3', got 'q4'/);
    await expect(loadModel(MODEL, { threads: 0 })).rejects.toThrow(/options\.threads/);
    await expect(loadModel(MODEL, { actQuant: 'i4' as never })).rejects.toThrow(/options\.actQuant must be 'auto' or 'i8', got 'i4'/);
    await expect(loadModel('/nonexistent.gguf')).rejects.toThrow(/nonexistent\.gguf/);
  });

  it('every family loads through the API: a4.8 gets its 3-bit KV cache, FBI-LLM runs float or --act i8 with the same greedy text', async () => {
    const bundled = (f: string) => fileURLToPath(new URL(`../models/${f}`, import.meta.url));
    const greedy = async (m: Awaited<ReturnType<typeof loadModel>>, prompt: string, maxTokens: number) => {
      const tokens: number[] = [];
      let text = '';
      for await (const c of m.generate(prompt, { maxTokens, temperature: 0, ignoreEog: true })) {
        tokens.push(c.token);
        text += c.text;
      }
      return { tokens, text };
    };
    const a48 = await loadModel(bundled('tiny-a48-tq2_0.gguf'), { threads: 1 });
    try {
      expect(a48.info.kvType).toBe('q3');
      expect(a48.info.hparams.row.family).toBe('a48');
      // Its ReLU² down projection is column-sparse (TS256); the other projections in the ternary layout.
      expect(a48.info.linears).toEqual([a48.info.layout, 'ts256']);
      expect((await greedy(a48, 'The Congress', 6)).tokens.length).toBe(6);
    } finally {
      await a48.close();
    }
    const texts: string[] = [];
    for (const actQuant of ['auto', 'i8'] as const) {
      const fbi = await loadModel(bundled('tiny-fbi-q1_0.gguf'), { threads: 1, actQuant });
      try {
        expect(fbi.info.linears).toEqual([actQuant === 'i8' ? 'b1r16' : 'b1l64']);
        texts.push((await greedy(fbi, 'The Congress of the United States', 8)).text);
      } finally {
        await fbi.close();
      }
    }
    expect(texts[0]!.length).toBeGreaterThan(0);
    expect(texts[1]).toBe(texts[0]);
  });

  it('chat turns reuse the cached conversation: the second turn evaluates only its new tokens', async () => {
    const chat = model.createChat({ system: 'Be terse.' });
    expect(chat.template.name).toBe('llama2');
    const first = await chat.send('Hello', { maxTokens: 8, temperature: 0 });
    expect(typeof first).toBe('string');
    const s1 = model.stats.last!;
    expect(s1.evaluatedTokens).toBe(s1.promptTokens - s1.reusedTokens);
    const firstTurnTokens = s1.promptTokens + s1.generatedTokens;
    await chat.send('And then?', { maxTokens: 8, temperature: 0 });
    const s2 = model.stats.last!;
    const newTokens = model.tokenize(chat.template.user('And then?', false, undefined), { addBos: false }).length;
    const closing = model.tokenize(chat.template.assistantEnd, { addBos: false }).length;
    expect(s2.reusedTokens).toBe(firstTurnTokens - 1); // all but the last sampled token, which was never fed
    expect(s2.evaluatedTokens).toBe(1 + closing + newTokens);
    expect(chat.messages.map((m) => m.role)).toEqual(['system', 'user', 'assistant', 'user', 'assistant']);
    expect(chat.messages[2]!.content).toBe(first);
    chat.dispose();
  });

  it('chat.stream streams the reply and reset() starts over', async () => {
    const chat = model.createChat();
    let text = '';
    for await (const c of chat.stream('Hello', { maxTokens: 6, temperature: 0 })) text += c.text;
    expect(chat.messages[1]!.content).toBe(text);
    chat.reset();
    expect(chat.messages).toEqual([]);
    await expect(chat.send('  ')).rejects.toThrow(RequestError);
    chat.dispose();
    expect(chat.disposed).toBe(true);
    await expect(chat.send('Hello')).rejects.toThrow(/disposed/);
  });

  it('keeps the event loop responsive while generating (p99 delay < 20 ms)', async () => {
    const h = monitorEventLoopDelay({ resolution: 1 });
    h.enable();
    const r = await collect(model.generate('Once upon a time', { maxTokens: 64, temperature: 0 }));
    h.disable();
    expect(r.tokens).toHaveLength(64);
    expect(h.percentile(99) / 1e6).toBeLessThan(20);
  });

  it('after close(), requests reject with ModelClosedError', async () => {
    const m = await loadModel(MODEL, { threads: 1, contextSize: 128 });
    const chat = m.createChat();
    const pending = collect(m.generate('Once upon a time', { maxTokens: 50 })).catch((err: unknown) => err);
    await m.close();
    expect(await pending).toBeInstanceOf(ModelClosedError);
    await expect(collect(m.generate('Hi', { maxTokens: 2 }))).rejects.toThrow(ModelClosedError);
    await expect(chat.send('Hi')).rejects.toThrow(/closed/);
    expect(() => m.createChat()).toThrow(ModelClosedError);
    expect(() => m.tokenize('Hi')).toThrow(ModelClosedError);
    await m.close(); // idempotent
  });
});

describe('contexts and held sequences', () => {
  let model: Model;
  beforeAll(async () => {
    model = await loadModel(MODEL, { threads: 1, contextSize: 256, sequences: 3 });
  });
  afterAll(async () => {
    await model.close();
  });

  /** The logits model.evaluate() gives for `ids` (every row), as one array. */
  async function allLogits(ids: number[]): Promise<Float32Array[]> {
    const rows: Float32Array[] = [];
    for await (const c of model.evaluate(ids)) {
      const w = c.logits.length / c.count;
      for (let i = 0; i < c.count; i++) rows.push(c.logits.slice(i * w, (i + 1) * w));
    }
    return rows;
  }

  it('contexts reserve sequences out of the model\'s: more than are free is a RequestError; dispose gives them back', () => {
    const a = model.createContext({ sequences: 2 });
    expect(() => model.createContext({ sequences: 2 })).toThrow(/2 sequence\(s\) asked, but 2 of the model's 3 are reserved/);
    const b = model.createContext();
    expect(() => model.createChat()).toThrow(RequestError);
    expect(() => model.createContext({ sequences: 0 })).toThrow(/integer >= 1/);
    expect(() => model.createContext({ seqs: 1 } as never)).toThrow(/unknown option 'seqs'/);
    const s1 = a.getSequence();
    a.getSequence();
    expect(a.sequencesLeft).toBe(0);
    expect(() => a.getSequence()).toThrow(/all 2 sequence\(s\) of this context are in use/);
    s1.dispose();
    expect(s1.disposed).toBe(true);
    expect(a.sequencesLeft).toBe(1);
    a.getSequence();
    a.dispose();
    b.dispose();
    expect(a.disposed).toBe(true);
    expect(() => a.getSequence()).toThrow(/disposed/);
    model.createContext({ sequences: 3 }).dispose();
  });

  it('a sequence continues from its KV: each call computes only its new tokens, with the tokens of a fresh run', async () => {
    const ctx = model.createContext();
    const seq = ctx.getSequence();
    const p1 = randomIds(11, 40);
    const first = await collect(seq.generate(p1, { maxTokens: 8, temperature: 0 }));
    expect(first.result.stats.reusedTokens).toBe(0);
    expect(seq.tokens).toEqual([...p1, ...first.tokens]);
    const p2 = randomIds(12, 9).slice(1);
    const second = await collect(seq.generate(p2, { maxTokens: 6, temperature: 0 }));
    expect(second.result.stats.reusedTokens).toBe(p1.length + 8 - 1); // the last sampled token was never fed
    expect(second.result.stats.evaluatedTokens).toBe(1 + p2.length);
    const whole = [...p1, ...first.tokens, ...p2];
    const fresh = await collect(model.generate(whole, { maxTokens: 6, temperature: 0 }));
    expect(second.tokens).toEqual(fresh.tokens);
    // An empty prompt continues from what the sequence holds.
    const third = await collect(seq.generate([], { maxTokens: 3, temperature: 0 }));
    expect(third.result.stats.evaluatedTokens).toBe(1);
    expect(third.tokens).toEqual((await collect(model.generate([...whole, ...second.tokens], { maxTokens: 3, temperature: 0 }))).tokens);
    expect(seq.length).toBe(whole.length + 6 + 3);
    ctx.dispose();
    await expect(collect(seq.generate([5], { maxTokens: 1 }))).rejects.toThrow(/disposed/);
  });

  it('truncate() rewinds: the kept tokens are reused, the rest recomputed', async () => {
    const ctx = model.createContext();
    const seq = ctx.getSequence();
    const p = randomIds(21, 50);
    await collect(seq.generate(p, { maxTokens: 4, temperature: 0 }));
    seq.truncate(30);
    expect(seq.tokens).toEqual(p.slice(0, 30));
    const next = await collect(seq.generate([7, 8, 9], { maxTokens: 5, temperature: 0 }));
    expect(next.result.stats.reusedTokens).toBe(30);
    expect(next.tokens).toEqual((await collect(model.generate([...p.slice(0, 30), 7, 8, 9], { maxTokens: 5, temperature: 0 }))).tokens);
    expect(() => seq.truncate(1000)).toThrow(/length must be an integer in \[0, 38\]/);
    seq.clear();
    expect(seq.length).toBe(0);
    await expect(collect(seq.generate([], { maxTokens: 1 }))).rejects.toThrow(/prompt is empty and the sequence holds no tokens/);
    ctx.dispose();
  });

  it('sequence.evaluate appends tokens and streams the logits after each new one, equal to a whole evaluate', async () => {
    const ctx = model.createContext();
    const seq = ctx.getSequence();
    const a = randomIds(31, 70);
    const b = randomIds(32, 150).slice(1);
    const got: Array<[number, Float32Array]> = [];
    for (const part of [a, b]) {
      for await (const c of seq.evaluate(part)) {
        const w = c.logits.length / c.count;
        for (let i = 0; i < c.count; i++) got.push([c.start + i, c.logits.slice(i * w, (i + 1) * w)]);
      }
    }
    expect(got.map(([p]) => p)).toEqual(Array.from({ length: a.length + b.length }, (_, i) => i));
    expect(model.stats.last!.reusedTokens).toBe(a.length); // evaluate samples nothing: all of `a` is in the KV
    const want = await allLogits([...a, ...b]);
    got.forEach(([p, row]) => expect(row).toEqual(want[p]));
    await expect(async () => {
      for await (const _ of seq.evaluate(randomIds(33, 60))) void _;
    }).rejects.toThrow(ContextOverflowError);
    ctx.dispose();
  });

  it('sequences of one context run concurrently, each with its solo tokens; one request at a time per sequence', async () => {
    const ctx = model.createContext({ sequences: 2 });
    const [s1, s2] = [ctx.getSequence(), ctx.getSequence()];
    const p1 = randomIds(41, 20);
    const p2 = randomIds(42, 33);
    const solo = [
      (await collect(model.generate(p1, { maxTokens: 12, temperature: 0 }))).tokens,
      (await collect(model.generate(p2, { maxTokens: 12, temperature: 0 }))).tokens,
    ];
    const busy = s1.generate(p1, { maxTokens: 12, temperature: 0 });
    const order: number[] = [];
    const both = Promise.all([collect(busy, () => order.push(1)), collect(s2.generate(p2, { maxTokens: 12, temperature: 0 }), () => order.push(2))]);
    // s1 is busy from the first next() of its generator, which collect() above has already called
    // (synchronously). No macrotask in between: under load the worker finished all 12 tokens within a
    // setTimeout(0) here, and the second request then ran instead of being refused (CI, 2026-12-07).
    await expect(collect(s1.generate([3], { maxTokens: 1 }))).rejects.toThrow(/already running a request/);
    const [r1, r2] = await both;
    expect([r1.tokens, r2.tokens]).toEqual(solo);
    expect(order.slice(0, 12)).toContain(2); // interleaved, not one after the other
    expect(model.stats.kv!.heldSequences).toBe(2);
    ctx.dispose();
  });

  it('a chat owns its sequence: turns reuse it, dispose() frees it; createChat takes a given sequence', async () => {
    const chats = [model.createChat(), model.createChat(), model.createChat()];
    expect(() => model.createChat()).toThrow(/reserved by other contexts or chats/);
    await chats[0]!.send('Hello', { maxTokens: 6, temperature: 0 });
    await chats[0]!.send('Again', { maxTokens: 4, temperature: 0 });
    expect(model.stats.last!.reusedTokens).toBeGreaterThan(0);
    for (const c of chats) c.dispose();
    const ctx = model.createContext();
    const seq = ctx.getSequence();
    const chat = model.createChat({ sequence: seq, system: 'Be terse.' });
    await chat.send('Hi', { maxTokens: 3, temperature: 0 });
    expect(seq.length).toBeGreaterThan(3);
    chat.dispose();
    expect(seq.disposed).toBe(true);
    expect(() => model.createChat({ sequence: {} as Sequence })).toThrow(/must be a Sequence of this model/);
    ctx.dispose();
  });

  it('concurrent requests with one prompt (n > 1 choices) compute it once: the others fork it after its prefill', async () => {
    const p = randomIds(51, 120);
    const opts = (seed: number) => ({ maxTokens: 5, temperature: 0.8, seed });
    const before = model.stats;
    const together = await Promise.all([1, 2, 3].map((seed) => collect(model.generate(p, opts(seed)))));
    // A prompt never seen before: the first computes it, the other two fork it and compute one row each.
    // (The first may reuse the BOS token every prompt here starts with from a cached sequence.)
    expect(model.stats.evaluatedTokens - before.evaluatedTokens).toBeGreaterThanOrEqual(p.length + 1);
    expect(model.stats.evaluatedTokens - before.evaluatedTokens).toBeLessThanOrEqual(p.length + 2);
    const reused = together.map((r) => r.result.stats.reusedTokens);
    expect(reused[0]).toBeLessThanOrEqual(1);
    expect(reused.slice(1)).toEqual([p.length - 1, p.length - 1]);
    const alone = [];
    for (const seed of [1, 2, 3]) alone.push((await collect(model.generate(p, { ...opts(seed), signal: undefined }))).tokens);
    expect(together.map((r) => r.tokens)).toEqual(alone);
  });

  it('an unreachable context gives its sequences back when garbage-collected (FinalizationRegistry)', () => {
    const script = `
      const { loadModel } = await import(${JSON.stringify(new URL('../dist/api.js', import.meta.url).href)});
      const m = await loadModel(${JSON.stringify(MODEL)}, { threads: 1, contextSize: 64, sequences: 1 });
      (() => { const s = m.createContext().getSequence(); void s; })();
      let ok = false;
      for (let i = 0; i < 50 && !ok; i++) {
        globalThis.gc();
        await new Promise((r) => setTimeout(r, 10));
        try { m.createContext().dispose(); ok = true; } catch {}
      }
      console.log(ok ? 'freed' : 'leaked');
      await m.close();`;
    const file = join(mkdtempSync(join(tmpdir(), 'bitllm-gc-')), 'gc.mjs');
    writeFileSync(file, script);
    const r = spawnSync(process.execPath, ['--expose-gc', file], { encoding: 'utf8', timeout: 60_000 });
    rmSync(dirname(file), { recursive: true, force: true });
    expect(r.stderr).toBe('');
    expect(r.stdout.trim()).toBe('freed');
  });
});

describe('streaming text', () => {
  const tok = Tokenizer.fromGguf(readGguf(MODEL)); // byte-fallback vocabulary: byte b is token 3 + b
  const byteIds = (s: string) => [...Buffer.from(s, 'utf8')].map((b) => 3 + b);

  it('never emits half a UTF-8 character', () => {
    const stream = new TextStream(tok, [], true);
    const ids = byteIds('é€');
    expect(ids.map((id, i) => stream.push(id, i === ids.length - 1))).toEqual(['', 'é', '', '', '€']);
  });

  it('holds back text that may begin a stop string and releases it when it cannot', () => {
    const stream = new TextStream(tok, ['END'], true);
    const out = byteIds('aEN').map((id) => stream.push(id, false));
    expect(out).toEqual(['a', '', '']);
    expect(stream.push(byteIds('x')[0]!, false)).toBe('ENx');
    expect([...byteIds('yEND')].map((id) => stream.push(id, false)).join('')).toBe('y');
    expect(stream.stopped).toBe(true);
  });

  it('releases held text at the end of the stream and at an EOG token', () => {
    const a = new TextStream(tok, ['END'], true);
    expect(byteIds('aE').map((id, i) => a.push(id, i === 1)).join('')).toBe('aE');
    const b = new TextStream(tok, ['END'], true);
    expect(b.push(byteIds('E')[0]!, false)).toBe('');
    expect(b.push(2, true)).toBe('E'); // </s>
  });
});

describe('chat templates', () => {
  const bpe = Tokenizer.fromGguf(readGguf(vocabPath('ggml-vocab-llama-bpe.gguf')));
  const spm = Tokenizer.fromGguf(readGguf(vocabPath('ggml-vocab-llama-spm.gguf')));
  const conversation = [
    { role: 'system', content: 'Be brief.' },
    { role: 'user', content: 'Hello' },
    { role: 'assistant', content: 'Hi there' },
    { role: 'user', content: 'Bye' },
  ] as const;
  const encode = (t: Tokenizer, s: string) => t.encode(s, { addBos: false });

  it('formats a BitNet 2B-4T conversation', () => {
    const text = renderChat(chatTemplate('bitnet', templateTokens(bpe, 'bitnet')), conversation);
    expect(text).toBe('<|begin_of_text|>System: Be brief.<|eot_id|>User: Hello<|eot_id|>Assistant: Hi there<|eot_id|>User: Bye<|eot_id|>Assistant: ');
    expect(encode(bpe, text)).toEqual([
      128000, 2374, 25, 2893, 10015, 13, 128009, 1502, 25, 22691, 128009, 72803, 25, 21694, 1070, 128009, 1502, 25, 90425, 128009,
      72803, 25, 220,
    ]);
  });

  it('formats a llama-3 conversation', () => {
    const text = renderChat(chatTemplate('llama3', templateTokens(bpe, 'llama3')), conversation);
    expect(text).toBe(
      '<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nBe brief.<|eot_id|>' +
        '<|start_header_id|>user<|end_header_id|>\n\nHello<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\nHi there<|eot_id|>' +
        '<|start_header_id|>user<|end_header_id|>\n\nBye<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n',
    );
    expect(encode(bpe, text)).toEqual([
      128000, 128006, 9125, 128007, 271, 3513, 10015, 13, 128009, 128006, 882, 128007, 271, 9906, 128009, 128006, 78191, 128007, 271,
      13347, 1070, 128009, 128006, 882, 128007, 271, 1383, 68, 128009, 128006, 78191, 128007, 271,
    ]);
  });

  it('formats a llama-2 conversation', () => {
    const text = renderChat(chatTemplate('llama2', templateTokens(spm, 'llama2')), conversation);
    expect(text).toBe('<s>[INST] <<SYS>>\nBe brief.\n<</SYS>>\n\nHello [/INST] Hi there </s><s>[INST] Bye [/INST]');
    expect(encode(spm, text)).toEqual([
      1, 518, 25580, 29962, 3532, 14816, 29903, 6778, 13, 3629, 11473, 29889, 13, 29966, 829, 14816, 29903, 6778, 13, 13, 10994, 518,
      29914, 25580, 29962, 6324, 727, 29871, 2, 1, 518, 25580, 29962, 2648, 29872, 518, 29914, 25580, 29962,
    ]);
  });

  it('a turn rendered alone continues the rendered conversation', () => {
    for (const name of ['bitnet', 'llama3', 'llama2'] as const) {
      const t = chatTemplate(name, templateTokens(name === 'llama2' ? spm : bpe, name));
      const before = renderChat(t, conversation.slice(0, 3));
      expect(renderChat(t, conversation)).toBe(before + t.user('Bye', false, 'Be brief.'));
    }
  });

  it('recognises templates by their markers', () => {
    const llama3 = "{% for message in messages %}{{ '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n' + message['content'] | trim + '<|eot_id|>' }}{% endfor %}";
    const bitnet = "{% for message in messages %}{% set content = message['role'] | capitalize + ': ' + message['content'] | trim + '<|eot_id|>' %}{{ content }}{% endfor %}{% if add_generation_prompt %}{{ 'Assistant: ' }}{% endif %}";
    const llama2 = "{% for message in messages %}{% if message['role'] == 'user' %}{{ bos_token + '[INST] ' + message['content'] + ' [/INST]' }}{% endif %}{% endfor %}";
    expect(chatFormatFromTemplate(llama3)).toBe('llama3');
    expect(chatFormatFromTemplate(bitnet)).toBe('bitnet');
    expect(chatFormatFromTemplate(llama2)).toBe('llama2');
    expect(chatFormatFromTemplate('{{ "<|im_start|>" }}')).toBeUndefined();
    expect(detectChatFormat(spm, bitnet, 'llama')).toEqual({ name: 'bitnet', source: 'template' });
  });

  it('falls back on the vocabulary without a recognised template', () => {
    expect(detectChatFormat(bpe, undefined, 'llama')).toEqual({ name: 'llama3', source: 'vocabulary' });
    expect(detectChatFormat(bpe, '{{ "<|im_start|>" }}', 'bitnet-b1.58')).toEqual({ name: 'bitnet', source: 'vocabulary' });
    expect(detectChatFormat(spm, undefined, 'llama')).toEqual({ name: 'llama2', source: 'vocabulary' });
  });
});
