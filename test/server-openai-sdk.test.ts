// The official `openai` npm package (6.x, a dev dependency) against `bitllm serve`'s handler: chat and
// completions, streaming, `break` out of a stream (the SDK aborts its request), n = 2, logprobs, stop, usage,
// and errors surfacing as the SDK's typed errors.
import { fileURLToPath } from 'node:url';

import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { type Model, loadModel } from '../lib/api.js';
import { type BitllmServer, ModelEngine, createServer } from '../lib/server/index.js';
import { pacedEngine, parseMetrics, waitFor } from './server-helpers.js';

const MODEL = fileURLToPath(new URL('../models/tiny-b158-i2_s.gguf', import.meta.url));

let model: Model;
let server: BitllmServer;
let base: string;
let client: OpenAI;

beforeAll(async () => {
  model = await loadModel(MODEL, { threads: 1, sequences: 2 });
  server = createServer({ engine: pacedEngine(new ModelEngine(model), 2), parallel: 2, apiKeys: ['sk-test'] }); // paced: see pacedEngine
  base = `http://127.0.0.1:${(await server.listen(0)).port}`;
  client = new OpenAI({ baseURL: `${base}/v1`, apiKey: 'sk-test', maxRetries: 0 });
});

afterAll(async () => {
  await server.close();
  await model.close();
});

const modelId = async () => (await client.models.list()).data[0]!.id;

async function metric(name: string): Promise<number> {
  const text = await (await fetch(`${base}/metrics`, { headers: { authorization: 'Bearer sk-test' } })).text();
  return parseMetrics(text).get(name) ?? 0;
}

describe('the openai SDK against bitllm serve', () => {
  it('lists the model and runs a chat completion with usage', async () => {
    const id = await modelId();
    const r = await client.chat.completions.create({ model: id, messages: [{ role: 'user', content: 'Hello' }], max_tokens: 8, temperature: 0 });
    expect(r.object).toBe('chat.completion');
    expect(r.choices).toHaveLength(1);
    expect(r.choices[0]!.message.role).toBe('assistant');
    expect(typeof r.choices[0]!.message.content).toBe('string');
    expect(['stop', 'length']).toContain(r.choices[0]!.finish_reason);
    expect(r.usage!.completion_tokens).toBeGreaterThan(0);
    expect(r.usage!.total_tokens).toBe(r.usage!.prompt_tokens + r.usage!.completion_tokens);
  });

  it('streams a chat completion: the deltas make the non-streamed text, usage comes last', async () => {
    const id = await modelId();
    const args = { model: id, messages: [{ role: 'user' as const, content: 'Tell me a story' }], max_tokens: 12, temperature: 0 };
    const whole = await client.chat.completions.create(args);
    const stream = await client.chat.completions.create({ ...args, stream: true, stream_options: { include_usage: true } });
    let text = '';
    let finish: string | null = null;
    let usage: OpenAI.CompletionUsage | undefined | null;
    for await (const chunk of stream) {
      if (chunk.usage) usage = chunk.usage;
      for (const c of chunk.choices) {
        text += c.delta.content ?? '';
        if (c.finish_reason) finish = c.finish_reason;
      }
    }
    expect(text).toBe(whole.choices[0]!.message.content);
    expect(finish).toBe(whole.choices[0]!.finish_reason);
    expect(usage!.completion_tokens).toBe(whole.usage!.completion_tokens);
  });

  it('a `break` out of a stream aborts the request and frees its sequence', async () => {
    const id = await modelId();
    const before = await metric('bitllm_sequences_finished_total{finish_reason="abort"}');
    const stream = await client.chat.completions.create({ model: id, messages: [{ role: 'user', content: 'Go on forever' }], max_tokens: 200, stream: true,
      temperature: 0 });
    let n = 0;
    for await (const _ of stream) if (++n >= 3) break;
    await waitFor(async () => (await metric('bitllm_sequences_finished_total{finish_reason="abort"}')) === before + 1, 10_000, 'the abort to be counted');
    // The slot is free: two more requests run at once (parallel 2) and finish.
    const rs = await Promise.all([0, 1].map(() => client.completions.create({ model: id, prompt: 'Once', max_tokens: 4, temperature: 0 })));
    for (const r of rs) expect(r.choices[0]!.text.length).toBeGreaterThanOrEqual(0);
  });

  it('n = 2 with a seed gives two choices, each reproducible', async () => {
    const id = await modelId();
    const args = { model: id, messages: [{ role: 'user' as const, content: 'Hi' }], max_tokens: 8, temperature: 1, seed: 7, n: 2 };
    const a = await client.chat.completions.create(args);
    const b = await client.chat.completions.create(args);
    expect(a.choices.map((c) => c.index)).toEqual([0, 1]);
    expect(a.choices.map((c) => c.message.content)).toEqual(b.choices.map((c) => c.message.content));
  });

  it('logprobs and top_logprobs come back in the chat shape', async () => {
    const id = await modelId();
    const r = await client.chat.completions.create({ model: id, messages: [{ role: 'user', content: 'Hi' }], max_tokens: 4, temperature: 0, logprobs: true,
      top_logprobs: 3 });
    const content = r.choices[0]!.logprobs!.content!;
    expect(content.length).toBe(r.usage!.completion_tokens);
    for (const t of content) {
      expect(t.logprob).toBeLessThanOrEqual(0);
      expect(t.top_logprobs).toHaveLength(3);
      expect(t.top_logprobs[0]!.logprob).toBeGreaterThanOrEqual(t.top_logprobs[2]!.logprob);
    }
  });

  it('stop strings end the text before them', async () => {
    const id = await modelId();
    const whole = await client.completions.create({ model: id, prompt: 'Once upon a time', max_tokens: 24, temperature: 0 });
    const text = whole.choices[0]!.text;
    const cut = text.trim().split(/\s+/)[1];
    if (!cut) return expect(text.length).toBeGreaterThan(0);
    const r = await client.completions.create({ model: id, prompt: 'Once upon a time', max_tokens: 24, temperature: 0, stop: [cut] });
    expect(r.choices[0]!.text).toBe(text.slice(0, text.indexOf(cut)));
    expect(r.choices[0]!.finish_reason).toBe('stop');
  });

  it('errors surface as the SDK typed errors', async () => {
    const id = await modelId();
    const bad = new OpenAI({ baseURL: `${base}/v1`, apiKey: 'wrong', maxRetries: 0 });
    await expect(bad.models.list()).rejects.toBeInstanceOf(OpenAI.AuthenticationError);
    await expect(bad.chat.completions.create({ model: id, messages: [{ role: 'user', content: 'x' }] })).rejects.toBeInstanceOf(OpenAI.AuthenticationError);
    await expect(client.chat.completions.create({ model: 'no-such-model', messages: [{ role: 'user', content: 'x' }] })).rejects.toBeInstanceOf(OpenAI.NotFoundError);
    await expect(client.chat.completions.create({ model: id, messages: [{ role: 'user', content: 'x' }], max_tokens: 10_000_000 }))
      .rejects.toBeInstanceOf(OpenAI.BadRequestError);
  });
});
