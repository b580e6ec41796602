// Log-probabilities end to end: the sampler's log-softmax, Model.generate's `logprobs` option checked against
// an independent evaluate() of the same tokens, and both OpenAI shapes (chat `logprobs`/`top_logprobs`,
// completions `logprobs: N`), streaming and not.
import { fileURLToPath } from 'node:url';

import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { type GenerateChunk, type Model, loadModel } from '../lib/api.js';
import { logprobsOf } from '../lib/engine/sampler.js';
import { type BitllmServer, ModelEngine, createServer } from '../lib/server/index.js';
import { rng } from './helpers.js';
import { collectSse, dataChunks, post } from './server-helpers.js';

const MODEL = fileURLToPath(new URL('../models/tiny-b158-i2_s.gguf', import.meta.url));

let model: Model;
let server: BitllmServer;
let base: string;

beforeAll(async () => {
  model = await loadModel(MODEL, { threads: 1 });
  server = createServer({ engine: new ModelEngine(model) });
  base = `http://127.0.0.1:${(await server.listen(0)).port}`;
});

afterAll(async () => {
  await server.close();
  await model.close();
});

async function chunks(prompt: string | number[], opts: Parameters<Model['generate']>[1]): Promise<GenerateChunk[]> {
  const out: GenerateChunk[] = [];
  for await (const c of model.generate(prompt, opts)) out.push(c);
  return out;
}

function logSoftmax(row: Float32Array): Float64Array {
  let max = -Infinity;
  for (const v of row) max = Math.max(max, v);
  let sum = 0;
  for (const v of row) sum += Math.exp(v - max);
  const lse = max + Math.log(sum);
  return Float64Array.from(row, (v) => v - lse);
}

describe('logprobsOf', () => {
  it('is the log-softmax of the raw logits, with the top alternatives best first', () => {
    const r = rng(5);
    const logits = Float32Array.from({ length: 1000 }, () => (r() - 0.5) * 20);
    logits[10] = -Infinity; // a masked token
    const want = logSoftmax(logits);
    const got = logprobsOf(logits, 123, 7);
    expect(got.logprob).toBeCloseTo(want[123]!, 10);
    const order = Array.from(want.keys()).sort((a, b) => want[b]! - want[a]! || a - b).slice(0, 7);
    expect(got.top.map(([id]) => id)).toEqual(order);
    for (const [id, lp] of got.top) expect(lp).toBeCloseTo(want[id]!, 10);
    expect(logprobsOf(logits, 10, 0)).toEqual({ logprob: -Infinity, top: [] });
  });
});

describe('Model.generate with logprobs', () => {
  it('reports log-probabilities that an independent evaluate() of the same tokens agrees with', async () => {
    const prompt = model.tokenize('Once upon a time');
    const got = await chunks(prompt, { maxTokens: 12, temperature: 0.9, seed: 21, logprobs: 3 });
    const plain = await chunks(prompt, { maxTokens: 12, temperature: 0.9, seed: 21 });
    expect(got.map((c) => c.token)).toEqual(plain.map((c) => c.token)); // sampling is unchanged
    expect(plain.every((c) => c.logprob === undefined && c.topLogprobs === undefined)).toBe(true);
    const all = [...prompt, ...got.map((c) => c.token)];
    const rows: Float32Array[] = [];
    for await (const c of model.evaluate(all)) {
      const n = c.logits.length / c.count;
      for (let i = 0; i < c.count; i++) rows.push(c.logits.subarray(i * n, (i + 1) * n));
    }
    got.forEach((c, i) => {
      const ref = logSoftmax(rows[prompt.length - 1 + i]!.subarray(0, model.tokenizer.vocabSize));
      expect(c.logprob).toBeLessThanOrEqual(0);
      // Prefill (evaluate) and decode round differently: agreement to a few thousandths, not bits.
      expect(Math.abs(c.logprob! - ref[c.token]!)).toBeLessThan(0.02);
      expect(c.topLogprobs).toHaveLength(3);
      const lps = c.topLogprobs!.map((t) => t.logprob);
      expect([...lps].sort((a, b) => b - a)).toEqual(lps);
      for (const t of c.topLogprobs!) expect(Math.abs(t.logprob - ref[t.token]!)).toBeLessThan(0.02);
    });
  });

  it('greedy picks the top alternative', async () => {
    const got = await chunks('The king said', { maxTokens: 8, temperature: 0, logprobs: 1 });
    for (const c of got) expect(c.topLogprobs![0]).toEqual({ token: c.token, logprob: c.logprob });
  });

  it('refuses an out-of-range logprobs option', async () => {
    await expect(chunks('x', { logprobs: 21 })).rejects.toThrow(/logprobs must be an integer in \[0, 20\]/);
  });
});

describe('logprobs over HTTP', () => {
  it('chat: logprobs.content per token with bytes and top_logprobs, equal to Model.generate', async () => {
    const messages = [{ role: 'user', content: 'Tell me a story.' }];
    const body = await (await post(base, '/v1/chat/completions', { messages, max_tokens: 8, temperature: 0, logprobs: true, top_logprobs: 2 })).json();
    const ids = new ModelEngine(model).applyChatTemplate(messages as never);
    const want = await chunks(ids, { maxTokens: 8, temperature: 0, logprobs: 2 });
    const content = body.choices[0].logprobs.content as Array<{ token: string; logprob: number; bytes: number[]; top_logprobs: Array<{ token: string; logprob: number; bytes: number[] }> }>;
    expect(body.choices[0].logprobs.refusal).toBeNull();
    expect(content).toHaveLength(want.length);
    content.forEach((entry, i) => {
      const bytes = model.tokenizer.tokenToBytes(want[i]!.token);
      expect(entry.bytes).toEqual([...bytes]);
      expect(entry.token).toBe(Buffer.from(bytes).toString('utf8'));
      expect(entry.logprob).toBe(want[i]!.logprob);
      expect(entry.top_logprobs.map((t) => t.logprob)).toEqual(want[i]!.topLogprobs!.map((t) => t.logprob));
    });
    // Without logprobs: null.
    const plain = await (await post(base, '/v1/chat/completions', { messages, max_tokens: 2 })).json();
    expect(plain.choices[0].logprobs).toBeNull();
  });

  it('chat streaming: every token chunk carries its entry', async () => {
    const res = await post(base, '/v1/chat/completions', { messages: [{ role: 'user', content: 'Hi' }], max_tokens: 6, temperature: 0, logprobs: true, stream: true });
    const all = dataChunks(await collectSse(res));
    const tokenChunks = all.slice(1, -1);
    expect(tokenChunks).toHaveLength(6);
    for (const c of tokenChunks) expect(c.choices[0].logprobs.content).toHaveLength(1);
    expect(all[all.length - 1]!.choices[0].logprobs).toBeNull(); // the finish chunk
  });

  it('completions: tokens, token_logprobs, top_logprobs and text_offset', async () => {
    const body = await (await post(base, '/v1/completions', { prompt: 'Once upon a time', max_tokens: 6, temperature: 0, logprobs: 2 })).json();
    const want = await chunks('Once upon a time', { maxTokens: 6, temperature: 0, logprobs: 2 });
    const lp = body.choices[0].logprobs;
    expect(lp.token_logprobs).toEqual(want.map((c) => c.logprob));
    expect(lp.tokens).toEqual(want.map((c) => model.tokenizer.tokenToPiece(c.token)));
    expect(lp.top_logprobs.every((t: object) => Object.keys(t).length >= 1 && Object.keys(t).length <= 2)).toBe(true);
    expect(lp.text_offset[0]).toBe(0);
    expect(lp.text_offset[1]).toBe(lp.tokens[0].length);
    const stream = dataChunks(await collectSse(await post(base, '/v1/completions', { prompt: 'Once upon a time', max_tokens: 6, temperature: 0, logprobs: 0, stream: true })));
    const streamed = stream.filter((c) => c.choices[0].logprobs).map((c) => c.choices[0].logprobs);
    expect(streamed.flatMap((l) => l.token_logprobs)).toEqual(want.map((c) => c.logprob));
    expect(streamed.flatMap((l) => l.text_offset)).toEqual(lp.text_offset);
    expect(streamed.every((l) => l.top_logprobs.every((t: object) => Object.keys(t).length === 0))).toBe(true);
  });

  it('range and dependency errors', async () => {
    const msg = { messages: [{ role: 'user', content: 'Hi' }] };
    for (const [body, param] of [
      [{ ...msg, logprobs: true, top_logprobs: 21 }, 'top_logprobs'],
      [{ ...msg, top_logprobs: 2 }, 'top_logprobs'],
      [{ ...msg, logprobs: 'yes' }, 'logprobs'],
    ] as const) {
      const res = await post(base, '/v1/chat/completions', body);
      expect(res.status).toBe(400);
      expect((await res.json()).error.param).toBe(param);
    }
    const res = await post(base, '/v1/completions', { prompt: 'x', logprobs: 50 });
    expect(res.status).toBe(400);
    expect((await res.json()).error.param).toBe('logprobs');
  });
});
