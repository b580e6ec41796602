// The Vercel AI SDK (`ai` 7.x with `@ai-sdk/openai-compatible` 3.x, dev dependencies) against `bitllm serve`'s
// handler: generateText and streamText, an AbortSignal, n = 2, logprobs, stop sequences and usage.
//
// What the AI SDK cannot express itself, and how it is reached here through the library's own extension points:
// - `n`: generateText/streamText make one generation, and the openai-compatible chat model reads only
//   `choices[0]` of a response (and, streaming, `choices[0]` of each chunk whatever its `index`, so a streamed
//   n = 2 would interleave both choices into one text: not tested). `n: 2` goes into the request body through
//   `providerOptions.bitllm` (unknown keys there are copied into the body, @ai-sdk/openai-compatible docs,
//   "Provider-specific options"); the second choice comes back through the provider's `metadataExtractor`
//   (docs, "Custom Metadata Extraction"), which sees the parsed response body.
// - logprobs: the openai-compatible provider has no logprobs setting (the first-party @ai-sdk/openai one has);
//   `logprobs` / `top_logprobs` go through `providerOptions.bitllm`, the entries come back through the same
//   `metadataExtractor` as `providerMetadata.bitllm.choices[i].logprobs`, streamed or not.
import { fileURLToPath } from 'node:url';

import { type MetadataExtractor, createOpenAICompatible } from '@ai-sdk/openai-compatible';
import { APICallError, generateText, streamText } from 'ai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { type Model, loadModel } from '../lib/api.js';
import { type BitllmServer, ModelEngine, createServer } from '../lib/server/index.js';
import { pacedEngine, parseMetrics, waitFor } from './server-helpers.js';

const MODEL = fileURLToPath(new URL('../models/tiny-b158-i2_s.gguf', import.meta.url));

let model: Model;
let server: BitllmServer;
let base: string;
let id: string;
let provider: ReturnType<typeof createOpenAICompatible>;

/** One choice of a response as the extractor hands it back (JSON values only: provider metadata is JSON). */
interface ExtractedChoice {
  index: number;
  content: string;
  finish_reason: string | null;
  logprobs: Array<{ token: string; logprob: number; top_logprobs: Array<{ token: string; logprob: number }> }> | null;
}

// Every choice of the response, streamed (chunks accumulated by choice index) or not, under providerMetadata.bitllm.
const choicesExtractor: MetadataExtractor = {
  extractMetadata: async ({ parsedBody }) => {
    const body = parsedBody as { choices: Array<{ index: number; message: { content: string | null }; finish_reason: string | null; logprobs?: { content: any[] } | null }> };
    return {
      bitllm: {
        choices: body.choices.map((c) => ({ index: c.index, content: c.message.content ?? '', finish_reason: c.finish_reason, logprobs: c.logprobs?.content ?? null })),
      },
    };
  },
  createStreamExtractor: () => {
    const byIndex = new Map<number, ExtractedChoice>();
    return {
      processChunk(parsedChunk) {
        for (const c of (parsedChunk as { choices?: any[] }).choices ?? []) {
          let acc = byIndex.get(c.index);
          if (!acc) byIndex.set(c.index, (acc = { index: c.index, content: '', finish_reason: null, logprobs: null }));
          acc.content += c.delta?.content ?? '';
          if (c.finish_reason) acc.finish_reason = c.finish_reason;
          if (c.logprobs?.content) acc.logprobs = [...(acc.logprobs ?? []), ...c.logprobs.content];
        }
      },
      buildMetadata: () => ({ bitllm: { choices: [...byIndex.values()].sort((a, b) => a.index - b.index) as any } }),
    };
  },
};

beforeAll(async () => {
  model = await loadModel(MODEL, { threads: 1, sequences: 2 });
  server = createServer({ engine: pacedEngine(new ModelEngine(model), 2), parallel: 2, apiKeys: ['sk-test'] }); // paced: see pacedEngine
  base = `http://127.0.0.1:${(await server.listen(0)).port}`;
  provider = createOpenAICompatible({ name: 'bitllm', baseURL: `${base}/v1`, apiKey: 'sk-test', includeUsage: true, metadataExtractor: choicesExtractor });
  id = (await (await fetch(`${base}/v1/models`, { headers: { authorization: 'Bearer sk-test' } })).json()).data[0].id;
});

afterAll(async () => {
  await server.close();
  await model.close();
});

async function metric(name: string): Promise<number> {
  const text = await (await fetch(`${base}/metrics`, { headers: { authorization: 'Bearer sk-test' } })).text();
  return parseMetrics(text).get(name) ?? 0;
}

/** The server's own answer to a request body, bypassing the SDK. */
async function raw(body: string | object): Promise<any> {
  const res = await fetch(`${base}/v1/chat/completions`, {
    method: 'POST', headers: { authorization: 'Bearer sk-test', 'content-type': 'application/json' },
    body: typeof body === 'string' ? body : JSON.stringify(body),
  });
  expect(res.status).toBe(200);
  return res.json();
}

/** The request body the SDK sent (a JSON string from generateText, the object itself from streamText). */
const bodyOf = (request: { body?: unknown }): Record<string, any> =>
  typeof request.body === 'string' ? JSON.parse(request.body) : (request.body as Record<string, any>);

const choicesOf = (meta: unknown) => (meta as { bitllm: { choices: ExtractedChoice[] } }).bitllm.choices;

/** Drains a streamText result: its text deltas, and any error or abort parts (streamText reports errors as parts). */
async function drain(result: ReturnType<typeof streamText>) {
  const deltas: string[] = [];
  const errors: unknown[] = [];
  for await (const part of result.fullStream) {
    if (part.type === 'text-delta') deltas.push(part.text);
    else if (part.type === 'error') errors.push(part.error);
  }
  return { deltas, errors };
}

const common = { maxRetries: 0, temperature: 0 } as const;

describe('the Vercel AI SDK (openai-compatible provider) against bitllm serve', () => {
  it('generateText: text, finish reason and usage are the server\'s own for the same request body', async () => {
    const r = await generateText({ ...common, model: provider(id), prompt: 'Hello', maxOutputTokens: 8, include: { requestBody: true } });
    const sent = bodyOf(r.request);
    expect(sent).toMatchObject({ model: id, max_tokens: 8, temperature: 0, messages: [{ role: 'user', content: 'Hello' }] });
    const direct = await raw(sent);
    expect(r.text).toBe(direct.choices[0].message.content);
    expect(r.text.length).toBeGreaterThan(0);
    expect(r.rawFinishReason).toBe(direct.choices[0].finish_reason);
    expect(r.finishReason).toBe(direct.choices[0].finish_reason === 'length' ? 'length' : 'stop');
    expect(r.usage.inputTokens).toBe(direct.usage.prompt_tokens);
    expect(r.usage.outputTokens).toBe(direct.usage.completion_tokens);
    expect(r.usage.totalTokens).toBe(direct.usage.total_tokens);
    expect(r.usage.outputTokens).toBe(8);
  });

  it('streamText: the deltas make the non-streamed text, and finish reason and usage match it', async () => {
    const args = { ...common, model: provider(id), prompt: 'Tell me a story', maxOutputTokens: 12 };
    const whole = await generateText(args);
    const stream = streamText({ ...args, include: { requestBody: true } });
    const { deltas, errors } = await drain(stream);
    expect(errors).toEqual([]);
    expect(deltas.length).toBeGreaterThan(1);
    expect(deltas.join('')).toBe(whole.text);
    expect(await stream.text).toBe(whole.text);
    expect(await stream.finishReason).toBe(whole.finishReason);
    // includeUsage: true asks for the usage chunk; its counts are the non-streamed request's.
    expect(bodyOf(await stream.request).stream_options).toEqual({ include_usage: true });
    const usage = await stream.usage;
    expect(usage.inputTokens).toBe(whole.usage.inputTokens);
    expect(usage.outputTokens).toBe(whole.usage.outputTokens);
    expect(usage.totalTokens).toBe(whole.usage.totalTokens);
  });

  it('an AbortSignal aborts a stream mid-way: the server counts the abort and frees the slot', async () => {
    const abort = 'bitllm_sequences_finished_total{finish_reason="abort"}';
    const before = await metric(abort);
    const controller = new AbortController();
    let onAbortCalled = false;
    // The tiny model writes its ~230 tokens in about 100 ms and the server does not wait for a slow reader, so
    // the abort comes at the first text delta (the SDK's own latency is the margin) with the longest generation
    // the 256-token context allows.
    const stream = streamText({ ...common, model: provider(id), prompt: 'Go on forever', maxOutputTokens: 230, abortSignal: controller.signal,
      onAbort: () => { onAbortCalled = true; } });
    const seen: string[] = [];
    for await (const part of stream.fullStream) {
      seen.push(part.type);
      if (part.type === 'text-delta' && !controller.signal.aborted) controller.abort();
    }
    expect(seen).toContain('text-delta');
    expect(seen).toContain('abort');
    expect(seen).not.toContain('finish');
    expect(seen).not.toContain('error');
    expect(onAbortCalled).toBe(true);
    await waitFor(async () => (await metric(abort)) === before + 1, 10_000, 'the abort to be counted');
    await waitFor(async () => (await metric('bitllm_requests_running')) === 0, 10_000, 'the slot to be free');
    // Both slots are free: two more requests run at once (parallel 2) and finish.
    const rs = await Promise.all([0, 1].map(() => generateText({ ...common, model: provider(id), prompt: 'Once', maxOutputTokens: 4 })));
    for (const r of rs) {
      expect(['stop', 'length']).toContain(r.finishReason);
      expect(r.usage.outputTokens).toBeGreaterThan(0);
    }
    expect(await metric(abort)).toBe(before + 1);
  });

  it('n = 2 through providerOptions: two choices, choice i equal to the n = 1 request with seed + i', async () => {
    const args = { maxRetries: 0, model: provider(id), prompt: 'Hi', maxOutputTokens: 8, temperature: 1 };
    const r = await generateText({ ...args, seed: 7, providerOptions: { bitllm: { n: 2 } }, include: { requestBody: true } });
    expect(bodyOf(r.request)).toMatchObject({ n: 2, seed: 7 });
    const choices = choicesOf(r.providerMetadata);
    expect(choices.map((c) => c.index)).toEqual([0, 1]);
    expect(r.text).toBe(choices[0]!.content);
    // The server gives choice i the seed `seed + i` (docs/server.md), so each choice is reproducible alone.
    const singles = await Promise.all([7, 8].map((seed) => generateText({ ...args, seed })));
    expect(choices.map((c) => c.content)).toEqual(singles.map((s) => s.text));
    expect(choices.map((c) => c.finish_reason)).toEqual(singles.map((s) => s.rawFinishReason));
    // One prompt, counted once; completion tokens summed over the choices.
    expect(r.usage.inputTokens).toBe(singles[0]!.usage.inputTokens);
    expect(r.usage.outputTokens).toBe(singles[0]!.usage.outputTokens! + singles[1]!.usage.outputTokens!);
  });

  it('logprobs through providerOptions: one entry per generated token, greedy picks the top one; streamed entries are the same', async () => {
    const args = { ...common, model: provider(id), prompt: 'Hi', maxOutputTokens: 6, providerOptions: { bitllm: { logprobs: true, top_logprobs: 3 } } };
    const r = await generateText(args);
    const [choice] = choicesOf(r.providerMetadata);
    const lp = choice!.logprobs!;
    expect(lp).toHaveLength(r.usage.outputTokens!);
    expect(lp.map((t) => t.token).join('')).toBe(r.text);
    for (const t of lp) {
      expect(t.logprob).toBeLessThanOrEqual(0);
      expect(t.top_logprobs).toHaveLength(3);
      expect(t.top_logprobs[0]!.logprob).toBeGreaterThanOrEqual(t.top_logprobs[1]!.logprob);
      expect(t.top_logprobs[1]!.logprob).toBeGreaterThanOrEqual(t.top_logprobs[2]!.logprob);
      // temperature 0 is greedy, and these values are the model's own distribution: the pick is the top entry.
      expect(t.top_logprobs[0]!.token).toBe(t.token);
      expect(t.top_logprobs[0]!.logprob).toBe(t.logprob);
    }
    const stream = streamText(args);
    const { errors } = await drain(stream);
    expect(errors).toEqual([]);
    const [streamed] = choicesOf(await stream.providerMetadata);
    expect(streamed!.content).toBe(r.text);
    expect(streamed!.logprobs).toEqual(lp);
  });

  it('stopSequences end the text right before the first occurrence of the stop string', async () => {
    const args = { ...common, model: provider(id), prompt: 'Tell me a story', maxOutputTokens: 24 };
    const whole = await generateText(args);
    // A word of the unstopped greedy text, not its first: the stopped text must be a non-empty strict prefix.
    const words = whole.text.trim().split(/\s+/);
    expect(words.length).toBeGreaterThanOrEqual(2);
    const cut = words[1]!;
    const prefix = whole.text.slice(0, whole.text.indexOf(cut));
    expect(prefix.length).toBeGreaterThan(0);
    const r = await generateText({ ...args, stopSequences: [cut], include: { requestBody: true } });
    expect(bodyOf(r.request).stop).toEqual([cut]);
    expect(r.text).toBe(prefix);
    expect(r.finishReason).toBe('stop');
    expect(r.usage.outputTokens).toBeLessThan(whole.usage.outputTokens!);
    const stream = streamText({ ...args, stopSequences: [cut] });
    const { deltas, errors } = await drain(stream);
    expect(errors).toEqual([]);
    expect(deltas.join('')).toBe(prefix);
    expect(await stream.finishReason).toBe('stop');
  });

  it('server errors surface as APICallError with the status and message', async () => {
    const bad = createOpenAICompatible({ name: 'bitllm', baseURL: `${base}/v1`, apiKey: 'wrong' });
    const e1 = await generateText({ ...common, model: bad(id), prompt: 'x' }).catch((e: unknown) => e);
    expect(APICallError.isInstance(e1)).toBe(true);
    expect((e1 as APICallError).statusCode).toBe(401);
    const e2 = await generateText({ ...common, model: provider('no-such-model'), prompt: 'x' }).catch((e: unknown) => e);
    expect(APICallError.isInstance(e2)).toBe(true);
    expect((e2 as APICallError).statusCode).toBe(404);
  });
});
