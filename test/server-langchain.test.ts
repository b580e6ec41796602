// LangChain (`@langchain/openai` 1.6.x ChatOpenAI over `@langchain/core` 1.4.x, dev dependencies) against
// `bitllm serve`'s handler: invoke and stream, an AbortSignal, n = 2, logprobs, stop and usage. Each request
// body ChatOpenAI sends is recorded through its `configuration.fetch` (the openai client's fetch option) so the
// same body can be sent to the server directly and the answers compared.
import { fileURLToPath } from 'node:url';

import { AIMessageChunk, HumanMessage } from '@langchain/core/messages';
import { ChatOpenAI, type ChatOpenAIFields } from '@langchain/openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { type Model, loadModel } from '../lib/api.js';
import { type BitllmServer, ModelEngine, createServer } from '../lib/server/index.js';
import { pacedEngine, parseMetrics, waitFor } from './server-helpers.js';

const MODEL = fileURLToPath(new URL('../models/tiny-b158-i2_s.gguf', import.meta.url));

let model: Model;
let server: BitllmServer;
let base: string;
let id: string;
/** The JSON bodies ChatOpenAI posted, in order. */
const sent: Array<Record<string, any>> = [];

beforeAll(async () => {
  model = await loadModel(MODEL, { threads: 1, sequences: 2 });
  server = createServer({ engine: pacedEngine(new ModelEngine(model), 2), parallel: 2, apiKeys: ['sk-test'] }); // paced: see pacedEngine
  base = `http://127.0.0.1:${(await server.listen(0)).port}`;
  id = (await (await fetch(`${base}/v1/models`, { headers: { authorization: 'Bearer sk-test' } })).json()).data[0].id;
});

afterAll(async () => {
  await server.close();
  await model.close();
});

function chat(fields: ChatOpenAIFields = {}): ChatOpenAI {
  return new ChatOpenAI({
    model: id, apiKey: 'sk-test', temperature: 0, maxRetries: 0, ...fields,
    configuration: {
      baseURL: `${base}/v1`,
      fetch: (url: string | URL | Request, init?: RequestInit) => {
        if (typeof init?.body === 'string') sent.push(JSON.parse(init.body));
        return fetch(url, init);
      },
    },
  });
}

const lastSent = () => sent[sent.length - 1]!;

async function metric(name: string): Promise<number> {
  const text = await (await fetch(`${base}/metrics`, { headers: { authorization: 'Bearer sk-test' } })).text();
  return parseMetrics(text).get(name) ?? 0;
}

/** The server's own answer to a request body, bypassing LangChain. */
async function raw(body: object): Promise<any> {
  const res = await fetch(`${base}/v1/chat/completions`, {
    method: 'POST', headers: { authorization: 'Bearer sk-test', 'content-type': 'application/json' }, body: JSON.stringify(body),
  });
  expect(res.status).toBe(200);
  return res.json();
}

/** response_metadata.logprobs: the choice's `logprobs` object as the server sent it. */
interface Logprobs {
  content: Array<{ token: string; logprob: number; top_logprobs: Array<{ token: string; logprob: number }> }>;
}

/** Streams to the end: the chunks and their concatenation. */
async function collect(llm: ChatOpenAI, input: string, options: Parameters<ChatOpenAI['stream']>[1] = {}) {
  const chunks: AIMessageChunk[] = [];
  for await (const c of await llm.stream([new HumanMessage(input)], options)) chunks.push(c);
  return { chunks, whole: chunks.reduce((a, b) => a.concat(b)) };
}

describe('LangChain ChatOpenAI against bitllm serve', () => {
  it('invoke: content, finish reason and usage are the server\'s own for the same request body', async () => {
    const msg = await chat({ maxTokens: 8 }).invoke([new HumanMessage('Hello')]);
    const body = lastSent();
    expect(body).toMatchObject({ model: id, max_tokens: 8, temperature: 0, messages: [{ role: 'user', content: 'Hello' }] });
    expect(body.stream).toBeFalsy();
    const direct = await raw(body);
    expect(msg.content).toBe(direct.choices[0].message.content);
    expect((msg.content as string).length).toBeGreaterThan(0);
    expect(msg.response_metadata.finish_reason).toBe(direct.choices[0].finish_reason);
    expect(msg.usage_metadata).toMatchObject({ input_tokens: direct.usage.prompt_tokens, output_tokens: direct.usage.completion_tokens,
      total_tokens: direct.usage.total_tokens });
    expect(msg.response_metadata.tokenUsage).toEqual({ promptTokens: direct.usage.prompt_tokens, completionTokens: direct.usage.completion_tokens,
      totalTokens: direct.usage.total_tokens });
    expect(msg.usage_metadata!.output_tokens).toBe(8);
  });

  it('stream: the chunks make the invoked text; finish reason and usage (stream_options) match it', async () => {
    const llm = chat({ maxTokens: 12 });
    const whole = await llm.invoke([new HumanMessage('Tell me a story')]);
    const { chunks, whole: streamed } = await collect(llm, 'Tell me a story');
    expect(lastSent()).toMatchObject({ stream: true, stream_options: { include_usage: true } });
    expect(chunks.filter((c) => c.content !== '').length).toBeGreaterThan(1);
    expect(streamed.content).toBe(whole.content);
    expect(streamed.response_metadata.finish_reason).toBe(whole.response_metadata.finish_reason);
    // The usage chunk is the only one with usage_metadata, and its counts are the non-streamed request's.
    expect(chunks.filter((c) => c.usage_metadata).length).toBe(1);
    expect(streamed.usage_metadata).toMatchObject({ input_tokens: whole.usage_metadata!.input_tokens, output_tokens: whole.usage_metadata!.output_tokens,
      total_tokens: whole.usage_metadata!.total_tokens });
  });

  it('an AbortSignal aborts a stream mid-way: the server counts the abort and frees the slot', async () => {
    const abort = 'bitllm_sequences_finished_total{finish_reason="abort"}';
    const before = await metric(abort);
    const controller = new AbortController();
    // The tiny model writes its ~230 tokens in about 100 ms and the server does not wait for a slow reader, so
    // the abort comes at the first content chunk with the longest generation the 256-token context allows.
    let contentChunks = 0;
    let error: unknown;
    try {
      for await (const c of await chat({ maxTokens: 230 }).stream([new HumanMessage('Go on forever')], { signal: controller.signal })) {
        if (c.content !== '' && ++contentChunks === 1) controller.abort();
        if (contentChunks > 50) break; // not reached when the abort works: a guard against a never-ending loop
      }
    } catch (e) {
      error = e;
    }
    expect(contentChunks).toBe(1);
    expect(String((error as Error | undefined)?.message ?? error)).toMatch(/abort/i);
    await waitFor(async () => (await metric(abort)) === before + 1, 10_000, 'the abort to be counted');
    await waitFor(async () => (await metric('bitllm_requests_running')) === 0, 10_000, 'the slot to be free');
    // Both slots are free: two more requests run at once (parallel 2) and finish.
    const llm = chat({ maxTokens: 4 });
    const rs = await Promise.all([0, 1].map(() => llm.invoke([new HumanMessage('Once')])));
    for (const r of rs) {
      expect(['stop', 'length']).toContain(r.response_metadata.finish_reason);
      expect(r.usage_metadata!.output_tokens).toBeGreaterThan(0);
    }
    expect(await metric(abort)).toBe(before + 1);
  });

  it('n = 2 (ChatOpenAI `n`, through generate): two generations, generation i equal to the n = 1 request with seed + i', async () => {
    const fields = { maxTokens: 8, temperature: 1 };
    const result = await chat({ ...fields, n: 2 }).generate([[new HumanMessage('Hi')]], { seed: 7 });
    expect(lastSent()).toMatchObject({ n: 2, seed: 7 });
    const gens = result.generations[0]!;
    expect(gens).toHaveLength(2);
    // The server gives choice i the seed `seed + i` (docs/server.md), so each choice is reproducible alone.
    const single = chat(fields);
    const singles = await Promise.all([7, 8].map((seed) => single.invoke([new HumanMessage('Hi')], { seed })));
    expect(gens.map((g) => g.text)).toEqual(singles.map((s) => s.content));
    expect(gens.map((g) => g.generationInfo?.finish_reason)).toEqual(singles.map((s) => s.response_metadata.finish_reason));
    // One prompt, counted once; completion tokens summed over the choices.
    expect(result.llmOutput!.tokenUsage).toEqual({
      promptTokens: singles[0]!.usage_metadata!.input_tokens,
      completionTokens: singles[0]!.usage_metadata!.output_tokens + singles[1]!.usage_metadata!.output_tokens,
      totalTokens: singles[0]!.usage_metadata!.input_tokens + singles[0]!.usage_metadata!.output_tokens + singles[1]!.usage_metadata!.output_tokens,
    });
  });

  it('logprobs + topLogprobs land in response_metadata.logprobs: one entry per token, greedy picks the top one; streamed the same', async () => {
    const llm = chat({ maxTokens: 6, logprobs: true, topLogprobs: 3 });
    const msg = await llm.invoke([new HumanMessage('Hi')]);
    expect(lastSent()).toMatchObject({ logprobs: true, top_logprobs: 3 });
    const content = (msg.response_metadata.logprobs as Logprobs).content;
    expect(content).toHaveLength(msg.usage_metadata!.output_tokens);
    expect(content.map((t) => t.token).join('')).toBe(msg.content);
    for (const t of content) {
      expect(t.logprob).toBeLessThanOrEqual(0);
      expect(t.top_logprobs).toHaveLength(3);
      expect(t.top_logprobs[0]!.logprob).toBeGreaterThanOrEqual(t.top_logprobs[1]!.logprob);
      expect(t.top_logprobs[1]!.logprob).toBeGreaterThanOrEqual(t.top_logprobs[2]!.logprob);
      // temperature 0 is greedy, and these values are the model's own distribution: the pick is the top entry.
      expect(t.top_logprobs[0]!.token).toBe(t.token);
      expect(t.top_logprobs[0]!.logprob).toBe(t.logprob);
    }
    // Streamed, each content chunk carries its token's entry and the concatenation joins them.
    const { whole: streamed } = await collect(llm, 'Hi');
    expect(streamed.content).toBe(msg.content);
    expect((streamed.response_metadata.logprobs as Logprobs).content).toEqual(content);
  });

  it('stop ends the text right before the first occurrence of the stop string', async () => {
    const llm = chat({ maxTokens: 24 });
    const whole = await llm.invoke([new HumanMessage('Tell me a story')]);
    const text = whole.content as string;
    // A word of the unstopped greedy text, not its first: the stopped text must be a non-empty strict prefix.
    const words = text.trim().split(/\s+/);
    expect(words.length).toBeGreaterThanOrEqual(2);
    const cut = words[1]!;
    const prefix = text.slice(0, text.indexOf(cut));
    expect(prefix.length).toBeGreaterThan(0);
    const r = await llm.invoke([new HumanMessage('Tell me a story')], { stop: [cut] });
    expect(lastSent().stop).toEqual([cut]);
    expect(r.content).toBe(prefix);
    expect(r.response_metadata.finish_reason).toBe('stop');
    expect(r.usage_metadata!.output_tokens).toBeLessThan(whole.usage_metadata!.output_tokens);
    // The same through a constructor-level stop, streamed.
    const { whole: streamed } = await collect(chat({ maxTokens: 24, stop: [cut] }), 'Tell me a story');
    expect(streamed.content).toBe(prefix);
    expect(streamed.response_metadata.finish_reason).toBe('stop');
  });

  it('server errors surface as errors with the HTTP status', async () => {
    const bad = new ChatOpenAI({ model: id, apiKey: 'wrong', maxRetries: 0, configuration: { baseURL: `${base}/v1` } });
    await expect(bad.invoke('x')).rejects.toMatchObject({ status: 401 });
    const other = new ChatOpenAI({ model: 'no-such-model', apiKey: 'sk-test', maxRetries: 0, configuration: { baseURL: `${base}/v1` } });
    await expect(other.invoke('x')).rejects.toMatchObject({ status: 404 });
  });
});
