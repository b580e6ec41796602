// `createServer()` on the bundled tiny model over a real socket: the OpenAI shapes (models, completions, chat,
// SSE framing, usage, n, seed, stop), text identical to Model.generate, tokenize/detokenize, metrics that add up,
// and the error contract (400/404/405/413, unknown fields policy, context overflow before any compute).
import { request as httpRequest } from 'node:http';
import { fileURLToPath } from 'node:url';

import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { type Model, loadModel } from '../lib/api.js';
import { type BitllmServer, ModelEngine, createServer } from '../lib/server/index.js';
import { collectSse, countingEngine, dataChunks, parseMetrics, post } from './server-helpers.js';
import { scaledMs } from './time-scale.js';

const MODEL = fileURLToPath(new URL('../models/tiny-b158-i2_s.gguf', import.meta.url));

let model: Model;
let server: BitllmServer;
let base: string;
let counted: ReturnType<typeof countingEngine>;

async function generateText(prompt: string | number[], opts: Parameters<Model['generate']>[1]): Promise<{ text: string; tokens: number }> {
  let text = '';
  let tokens = 0;
  for await (const c of model.generate(prompt, opts)) {
    text += c.text;
    tokens++;
  }
  return { text, tokens };
}

beforeAll(async () => {
  model = await loadModel(MODEL, { threads: 1 });
  counted = countingEngine(new ModelEngine(model));
  server = createServer({ engine: counted.engine, maxBodyBytes: 64 * 1024 });
  const addr = await server.listen(0);
  base = `http://127.0.0.1:${addr.port}`;
});

afterAll(async () => {
  await server.close();
  await model.close();
});

describe('OpenAI endpoints', () => {
  it('lists the one model', async () => {
    const res = await fetch(`${base}/v1/models`);
    expect(res.status).toBe(200);
    const body = await res.json();
    expect(body).toEqual({ object: 'list', data: [expect.objectContaining({ id: 'tiny-b158-i2_s', object: 'model', owned_by: 'bitllm' })] });
    expect(body.data[0].meta.context_length).toBe(256);
    expect((await (await fetch(`${base}/v1/models/tiny-b158-i2_s`)).json()).id).toBe('tiny-b158-i2_s');
    const missing = await fetch(`${base}/v1/models/gpt-4`);
    expect(missing.status).toBe(404);
    expect((await missing.json()).error.code).toBe('model_not_found');
  });

  it('completes text exactly as Model.generate does (greedy, and seeded sampling)', async () => {
    for (const opts of [{ temperature: 0 }, { temperature: 0.9, seed: 1234 }]) {
      const res = await post(base, '/v1/completions', { model: 'tiny-b158-i2_s', prompt: 'Once upon a time', max_tokens: 24, ...opts });
      expect(res.status).toBe(200);
      const body = await res.json();
      const want = await generateText('Once upon a time', { maxTokens: 24, ...opts });
      expect(body.object).toBe('text_completion');
      expect(body.id).toMatch(/^cmpl-/);
      expect(body.choices).toEqual([{ index: 0, text: want.text, logprobs: null, finish_reason: 'length' }]);
      const promptTokens = model.tokenize('Once upon a time').length;
      expect(body.usage).toEqual({ prompt_tokens: promptTokens, completion_tokens: 24, total_tokens: promptTokens + 24 });
    }
  });

  it('accepts token-id prompts and several prompts (one choice each)', async () => {
    const ids = model.tokenize('The king said');
    const res = await post(base, '/v1/completions', { prompt: [ids, 'The king said'], max_tokens: 8, temperature: 0 });
    const body = await res.json();
    expect(body.choices.map((c: { index: number }) => c.index)).toEqual([0, 1]);
    expect(body.choices[0].text).toBe(body.choices[1].text);
    expect(body.usage.prompt_tokens).toBe(2 * ids.length);
    expect(body.usage.completion_tokens).toBe(16);
  });

  it('chat completion equals Model.generate on the chat template, max_completion_tokens honoured', async () => {
    const messages = [{ role: 'system', content: 'You are terse.' }, { role: 'user', content: 'Tell me a story.' }];
    const res = await post(base, '/v1/chat/completions', { messages, max_completion_tokens: 20, temperature: 0 });
    expect(res.status).toBe(200);
    const body = await res.json();
    const ids = new ModelEngine(model).applyChatTemplate(messages as never);
    const want = await generateText(ids, { maxTokens: 20, temperature: 0 });
    expect(body.object).toBe('chat.completion');
    expect(body.id).toMatch(/^chatcmpl-/);
    expect(body.choices[0].message).toEqual({ role: 'assistant', content: want.text, refusal: null });
    expect(body.choices[0].finish_reason).toBe(want.tokens === 20 ? 'length' : 'stop');
    expect(body.usage).toEqual({ prompt_tokens: ids.length, completion_tokens: want.tokens, total_tokens: ids.length + want.tokens });
  });

  it('streams chat as OpenAI does: role chunk, content deltas, one finish chunk, usage chunk, [DONE]', async () => {
    const messages = [{ role: 'user', content: [{ type: 'text', text: 'Hello' }, { type: 'text', text: ' there' }] }];
    const res = await post(base, '/v1/chat/completions', { messages, max_tokens: 12, temperature: 0, stream: true, stream_options: { include_usage: true } });
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toBe('text/event-stream');
    expect(res.headers.get('cache-control')).toBe('no-cache');
    expect(res.headers.get('x-accel-buffering')).toBe('no');
    const chunks = dataChunks(await collectSse(res));
    const ids = new ModelEngine(model).applyChatTemplate([{ role: 'user', content: 'Hello there' }]);
    const want = await generateText(ids, { maxTokens: 12, temperature: 0 });
    expect(new Set(chunks.map((c) => c.id)).size).toBe(1);
    for (const c of chunks) expect(c.object).toBe('chat.completion.chunk');
    expect(chunks[0]!.choices).toEqual([{ index: 0, delta: { role: 'assistant', content: '' }, logprobs: null, finish_reason: null }]);
    const usage = chunks[chunks.length - 1]!;
    expect(usage.choices).toEqual([]);
    expect(usage.usage).toEqual({ prompt_tokens: ids.length, completion_tokens: want.tokens, total_tokens: ids.length + want.tokens });
    const finish = chunks.filter((c) => c.choices[0]?.finish_reason != null);
    expect(finish).toHaveLength(1);
    expect(finish[0]!.choices[0].delta).toEqual({});
    expect(finish[0]).toBe(chunks[chunks.length - 2]);
    const content = chunks.slice(1, -2);
    for (const c of content) {
      expect(c.choices[0].finish_reason).toBeNull();
      expect(c.usage).toBeNull(); // include_usage: every other chunk has usage null
    }
    expect(content.map((c) => c.choices[0].delta.content).join('')).toBe(want.text);
  });

  it('streams completions; without include_usage there is no usage chunk', async () => {
    const res = await post(base, '/v1/completions', { prompt: 'Once upon a time', max_tokens: 10, temperature: 0, stream: true });
    const chunks = dataChunks(await collectSse(res));
    const want = await generateText('Once upon a time', { maxTokens: 10, temperature: 0 });
    expect(chunks.every((c) => c.object === 'text_completion' && c.choices.length === 1 && !('usage' in c))).toBe(true);
    expect(chunks.map((c) => c.choices[0].text).join('')).toBe(want.text);
    expect(chunks.filter((c) => c.choices[0].finish_reason !== null).map((c) => c.choices[0].finish_reason)).toEqual(['length']);
  });

  it('n choices use seed + i, each its own generation', async () => {
    const res = await post(base, '/v1/completions', { prompt: 'Once upon a time', max_tokens: 12, temperature: 1, seed: 77, n: 3 });
    const body = await res.json();
    expect(body.choices).toHaveLength(3);
    for (let i = 0; i < 3; i++) {
      const want = await generateText('Once upon a time', { maxTokens: 12, temperature: 1, seed: 77 + i });
      expect(body.choices[i].text).toBe(want.text);
    }
    expect(new Set(body.choices.map((c: { text: string }) => c.text)).size).toBeGreaterThan(1);
    expect(body.usage.prompt_tokens).toBe(model.tokenize('Once upon a time').length); // the prompt once, as OpenAI counts it
    expect(body.usage.completion_tokens).toBe(36);

    // The choices share the prompt's KV: a new prompt is computed once, the other choices fork it (one row each).
    const metric = async (k: string) => parseMetrics(await (await fetch(`${base}/metrics`)).text()).get(k)!;
    const prompt = 'A prompt that no request before this one has sent, long enough to span a few KV blocks of sixteen positions';
    const n = model.tokenize(prompt).length;
    const [e0, r0] = [await metric('bitllm_engine_evaluated_prompt_tokens'), await metric('bitllm_engine_reused_prompt_tokens')];
    const shared = await (await post(base, '/v1/completions', { prompt, max_tokens: 3, temperature: 1, seed: 3, n: 3 })).json();
    expect(shared.choices).toHaveLength(3);
    expect(await metric('bitllm_engine_reused_prompt_tokens') - r0).toBeGreaterThanOrEqual(2 * (n - 1));
    expect(await metric('bitllm_engine_evaluated_prompt_tokens') - e0).toBeLessThanOrEqual(n + 2);

    const stream = await post(base, '/v1/chat/completions', { messages: [{ role: 'user', content: 'Hi' }], max_tokens: 4, seed: 5, n: 2, stream: true });
    const chunks = dataChunks(await collectSse(stream));
    for (const index of [0, 1]) {
      const mine = chunks.filter((c) => c.choices[0]?.index === index);
      expect(mine[0]!.choices[0].delta).toEqual({ role: 'assistant', content: '' });
      expect(mine.filter((c) => c.choices[0].finish_reason !== null)).toHaveLength(1);
    }
  });

  it('stop strings (string or array) end the text before them with finish_reason stop', async () => {
    const full = await generateText('Once upon a time', { maxTokens: 40, temperature: 0 });
    const word = full.text.trim().split(/\s+/)[2]!;
    for (const stop of [word, [word, 'zzzzqq']]) {
      const body = await (await post(base, '/v1/completions', { prompt: 'Once upon a time', max_tokens: 40, temperature: 0, stop })).json();
      expect(body.choices[0].finish_reason).toBe('stop');
      expect(body.choices[0].text).toBe(full.text.slice(0, full.text.indexOf(word)));
    }
  });

  it('maps sampling options onto the sampler (logit_bias bans a token, top_k 1 is greedy)', async () => {
    const greedy = await generateText('Once upon a time', { maxTokens: 1, temperature: 0 });
    let first = -1;
    for await (const c of model.generate('Once upon a time', { maxTokens: 1, temperature: 0 })) first = c.token;
    const banned = await (await post(base, '/v1/completions', { prompt: 'Once upon a time', max_tokens: 1, temperature: 0, logit_bias: { [first]: -100 } })).json();
    expect(banned.choices[0].text).not.toBe(greedy.text);
    const topk = await (await post(base, '/v1/completions', { prompt: 'Once upon a time', max_tokens: 16, temperature: 1.5, top_k: 1, seed: 9 })).json();
    expect(topk.choices[0].text).toBe((await generateText('Once upon a time', { maxTokens: 16, temperature: 0 })).text);
    const pen = await (await post(base, '/v1/completions', {
      prompt: 'Once upon a time', max_tokens: 16, temperature: 0.7, seed: 3, top_p: 0.9, min_p: 0.01, frequency_penalty: 1.5, presence_penalty: 0.5,
    })).json();
    const want = await generateText('Once upon a time', { maxTokens: 16, temperature: 0.7, seed: 3, topP: 0.9, minP: 0.01, frequencyPenalty: 1.5, presencePenalty: 0.5 });
    expect(pen.choices[0].text).toBe(want.text);
  });

  it('tokenizes and detokenizes in llama-server shapes', async () => {
    const tok = await (await post(base, '/tokenize', { content: 'Hello world' })).json();
    expect(tok.tokens).toEqual(model.tokenize('Hello world', { addBos: false }));
    const withBos = await (await post(base, '/tokenize', { content: 'Hello world', add_special: true, with_pieces: true })).json();
    expect(withBos.tokens[0]).toEqual({ id: 1, piece: '<s>' });
    const detok = await (await post(base, '/detokenize', { tokens: tok.tokens })).json();
    expect(detok.content.trim()).toBe('Hello world');
    const bad = await post(base, '/detokenize', { tokens: [1, 99999] });
    expect(bad.status).toBe(400);
    expect((await bad.json()).error.param).toBe('tokens');
  });

  it('health and readiness', async () => {
    expect(await (await fetch(`${base}/health`)).json()).toEqual({ status: 'ok' });
    const ready = await fetch(`${base}/ready`);
    expect(ready.status).toBe(200);
  });
});

describe('errors', () => {
  async function expectError(res: Response, status: number, code: string | null | undefined, param?: string | null) {
    expect(res.status).toBe(status);
    expect(res.headers.get('content-type')).toBe('application/json');
    const body = await res.json();
    expect(Object.keys(body.error).sort()).toEqual(['code', 'message', 'param', 'type']);
    expect(typeof body.error.message).toBe('string');
    if (code !== undefined) expect(body.error.code).toBe(code);
    if (param !== undefined) expect(body.error.param).toBe(param);
    return body.error;
  }

  it('malformed JSON and non-object bodies are 400', async () => {
    await expectError(await post(base, '/v1/chat/completions', '{"messages": ['), 400, 'invalid_json');
    await expectError(await post(base, '/v1/completions', '[1,2]'), 400, 'invalid_type');
    await expectError(await post(base, '/v1/completions', ''), 400, 'invalid_json');
  });

  it('wrong types and ranges name the parameter', async () => {
    const cases: Array<[string, Record<string, unknown>, string]> = [
      ['/v1/completions', { prompt: 'x', max_tokens: '10' }, 'max_tokens'],
      ['/v1/completions', { prompt: 'x', max_tokens: 0 }, 'max_tokens'],
      ['/v1/completions', { prompt: 'x', temperature: 3 }, 'temperature'],
      ['/v1/completions', { prompt: 'x', stream: 'yes' }, 'stream'],
      ['/v1/completions', { prompt: 'x', stop: [1] }, 'stop'],
      ['/v1/completions', { prompt: 'x', stop: ['a', 'b', 'c', 'd', 'e'] }, 'stop'],
      ['/v1/completions', { prompt: 'x', n: 0 }, 'n'],
      ['/v1/completions', { prompt: 'x', seed: 1.5 }, 'seed'],
      ['/v1/completions', { prompt: 'x', logit_bias: { abc: 1 } }, 'logit_bias'],
      ['/v1/completions', { prompt: 42 }, 'prompt'],
      ['/v1/completions', { prompt: [1, 99999] }, 'prompt'],
      ['/v1/completions', {}, 'prompt'],
      ['/v1/completions', { prompt: 'x', stream_options: { include_usage: true } }, 'stream_options'],
      ['/v1/completions', { prompt: 'x', model: 7 }, 'model'],
      ['/v1/chat/completions', { messages: 'hi' }, 'messages'],
      ['/v1/chat/completions', { messages: [{ role: 'robot', content: 'hi' }] }, 'messages[0].role'],
      ['/v1/chat/completions', { messages: [{ role: 'user', content: 5 }] }, 'messages[0].content'],
      ['/v1/chat/completions', { messages: [{ role: 'user', content: 'a' }, { role: 'assistant', content: 'b' }] }, 'messages'],
      ['/v1/chat/completions', { messages: [{ role: 'user', content: 'a' }], max_tokens: 5, max_completion_tokens: 6 }, 'max_completion_tokens'],
    ];
    for (const [path, body, param] of cases) {
      const err = await expectError(await post(base, path, body), 400, undefined, param);
      expect(err.type).toBe('invalid_request_error');
    }
  });

  it('unknown fields are ignored; known but unsupported ones are refused with unsupported_parameter', async () => {
    const ok = await post(base, '/v1/chat/completions', { messages: [{ role: 'user', content: 'hi' }], max_tokens: 2, user: 'u1', store: false, metadata: { a: 'b' }, some_future_field: 1 });
    expect(ok.status).toBe(200);
    const refused: Array<[string, Record<string, unknown>, string]> = [
      ['/v1/chat/completions', { tools: [{ type: 'function', function: { name: 'f' } }] }, 'tools'],
      ['/v1/chat/completions', { response_format: { type: 'json_object' } }, 'response_format'],
      ['/v1/completions', { echo: true }, 'echo'],
      ['/v1/completions', { suffix: 'end' }, 'suffix'],
      ['/v1/completions', { best_of: 3 }, 'best_of'],
    ];
    for (const [path, extra, param] of refused) {
      const base_ = path === '/v1/completions' ? { prompt: 'x', max_tokens: 2 } : { messages: [{ role: 'user', content: 'hi' }], max_tokens: 2 };
      const err = await expectError(await post(base, path, { ...base_, ...extra }), 400, 'unsupported_parameter', param);
      expect(err.message).toContain('not supported');
    }
  });

  it('unknown model is 404, unknown route 404, wrong method 405 with Allow', async () => {
    await expectError(await post(base, '/v1/chat/completions', { model: 'gpt-4o', messages: [{ role: 'user', content: 'hi' }] }), 404, 'model_not_found', 'model');
    await expectError(await fetch(`${base}/v1/embeddings`), 404, 'unknown_route');
    const res = await fetch(`${base}/v1/chat/completions`);
    expect(res.headers.get('allow')).toBe('POST');
    await expectError(res, 405, 'method_not_allowed');
    await expectError(await fetch(`${base}/v1/models`, { method: 'DELETE' }), 405, 'method_not_allowed');
  });

  it('a prompt longer than the context is 400 context_length_exceeded before any compute', async () => {
    const before = { ...counted.calls };
    const requests = model.stats.requests;
    const long = 'the people of the land '.repeat(80);
    const t0 = performance.now();
    const e1 = await expectError(await post(base, '/v1/completions', { prompt: long, max_tokens: 5 }), 400, 'context_length_exceeded', 'prompt');
    expect(e1.message).toMatch(/context is 256 tokens/);
    await expectError(await post(base, '/v1/chat/completions', { messages: [{ role: 'user', content: long }] }), 400, 'context_length_exceeded', 'messages');
    await expectError(await post(base, '/v1/completions', { prompt: 'Hello', max_tokens: 300 }), 400, 'context_length_exceeded', 'max_tokens');
    expect(performance.now() - t0).toBeLessThan(scaledMs(2000));
    expect(counted.calls.submit).toBe(before.submit);
    expect(model.stats.requests).toBe(requests);
  });

  it('a body over the limit is 413: by Content-Length, and chunked without reading the rest', async () => {
    const big = JSON.stringify({ prompt: 'x'.repeat(100 * 1024) });
    await expectError(await post(base, '/v1/completions', big), 413, 'request_too_large');
    // Chunked: keep sending 16 KiB pieces; the answer must come while we are still sending.
    const { port } = new URL(base);
    const result = await new Promise<{ status: number; sent: number; body: string }>((resolve, reject) => {
      let sent = 0;
      let stop = false;
      const req = httpRequest({ host: '127.0.0.1', port, path: '/v1/completions', method: 'POST', headers: { 'content-type': 'application/json', 'transfer-encoding': 'chunked' } }, (res) => {
        stop = true;
        let body = '';
        res.on('data', (d) => (body += d)).on('end', () => resolve({ status: res.statusCode!, sent, body }));
      });
      req.on('error', (err) => (stop ? undefined : reject(err)));
      const piece = Buffer.alloc(16 * 1024, 0x20);
      const pump = () => {
        while (!stop && sent < 256 << 20) {
          sent += piece.length;
          if (!req.write(piece)) return void req.once('drain', pump);
        }
        if (!stop) reject(new Error('the server read 256 MiB without answering'));
      };
      req.write('{"prompt": "');
      pump();
    });
    expect(result.status).toBe(413);
    expect(JSON.parse(result.body).error.code).toBe('request_too_large');
    expect(result.sent).toBeLessThan(64 << 20);
    // The server is fine afterwards.
    expect((await fetch(`${base}/health`)).status).toBe(200);
  });
});

describe('metrics', () => {
  it('exposes Prometheus text whose counters add up to the usage the clients saw', async () => {
    const parse = async () => parseMetrics(await (await fetch(`${base}/metrics`)).text());
    const m0 = await parse();
    let completion = 0;
    let prompt = 0;
    for (const body of [
      { prompt: 'Once upon a time', max_tokens: 7, temperature: 0 },
      { prompt: 'The king', max_tokens: 9, n: 2, seed: 1 },
      { prompt: 'Once upon a time', max_tokens: 30, temperature: 0, stop: ['the'] },
    ]) {
      const r = await (await post(base, '/v1/completions', body)).json();
      completion += r.usage.completion_tokens;
      prompt += r.usage.prompt_tokens * (body.n ?? 1);
    }
    const s = await (await post(base, '/v1/chat/completions', { messages: [{ role: 'user', content: 'Hi' }], max_tokens: 5, stream: true, stream_options: { include_usage: true } })).text();
    const usage = JSON.parse(s.split('\n\n').filter((l) => l.includes('"usage":{'))[0]!.slice(6)).usage;
    completion += usage.completion_tokens;
    prompt += usage.prompt_tokens;
    const m1 = await parse();
    const d = (k: string) => m1.get(k)! - (m0.get(k) ?? 0);
    expect(d('bitllm_generation_tokens_total')).toBe(completion);
    expect(d('bitllm_prompt_tokens_total')).toBe(prompt);
    const finished = ['stop', 'length'].reduce((a, r) => a + d(`bitllm_sequences_finished_total{finish_reason="${r}"}`), 0);
    expect(finished).toBe(5);
    expect(d('bitllm_sequences_finished_total{finish_reason="stop"}')).toBeGreaterThanOrEqual(1);
    for (const h of ['time_to_first_token_seconds', 'e2e_request_latency_seconds', 'request_queue_time_seconds']) {
      expect(d(`bitllm_${h}_count`)).toBe(5);
      expect(m1.get(`bitllm_${h}_bucket{le="+Inf"}`)).toBe(m1.get(`bitllm_${h}_count`));
    }
    expect(d('bitllm_inter_token_latency_seconds_count')).toBe(completion - 5);
    expect(m1.get('bitllm_requests_running')).toBe(0);
    expect(m1.get('bitllm_requests_waiting')).toBe(0);
    expect(m1.get('bitllm_ready')).toBe(1);
    const text = await (await fetch(`${base}/metrics`)).text();
    expect(text).toContain('# TYPE bitllm_time_to_first_token_seconds histogram');
    expect(text).toContain('# TYPE bitllm_generation_tokens_total counter');
    expect(text).not.toMatch(/^bitllm:/m);
  });
});
