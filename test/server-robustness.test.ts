// The server under pressure, on the bundled tiny model with a 4096-token context (a 4000-token generation takes
// a second or more on one thread): the bounded queue (429 + Retry-After before tokenization), aborts mid-stream,
// mid-prefill and while queued (the slot frees, the next request runs, metrics count it), SSE keep-alive comments
// while queued, drain, readiness (loading, stuck engine), API keys and CORS. The soak is test/server-soak.test.ts.
import { connect } from 'node:net';
import { fileURLToPath } from 'node:url';

import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { type Model, loadModel } from '../lib/api.js';
import { type BitllmServer, type EngineEvent, ModelEngine, type ServerEngine, createServer } from '../lib/server/index.js';
import { collectSse, countingEngine, dataChunks, parseMetrics, post, readSse, sleep, waitFor } from './server-helpers.js';
import { scaledMs } from './time-scale.js';

const MODEL = fileURLToPath(new URL('../models/tiny-b158-i2_s.gguf', import.meta.url));
const LONG = { prompt: 'Once upon a time', max_tokens: 4000, ignore_eos: true, temperature: 0 };
const SHORT = { prompt: 'Once upon a time', max_tokens: 4, temperature: 0 };

let model: Model;
const servers: BitllmServer[] = [];

beforeAll(async () => {
  model = await loadModel(MODEL, { threads: 1, contextSize: 4096 });
});

afterAll(async () => {
  for (const s of servers) await s.close();
  await model.close();
});

async function start(options: Omit<Parameters<typeof createServer>[0], 'engine'> & { engine?: ServerEngine | Promise<ServerEngine> } = {}) {
  const server = createServer({ engine: new ModelEngine(model), ...options });
  servers.push(server);
  const { port } = await server.listen(0);
  const base = `http://127.0.0.1:${port}`;
  const metrics = async () => parseMetrics(await (await fetch(`${base}/metrics`)).text());
  return { server, base, metrics };
}

/** Opens a streaming request and resolves once its first data chunk (after the role chunk for chat) arrived. */
async function openStream(base: string, body: object, signal?: AbortSignal) {
  const res = await post(base, '/v1/completions', { ...body, stream: true }, { signal });
  expect(res.status).toBe(200);
  const it = readSse(res);
  const first = await it.next();
  return { res, it, first: first.value };
}

describe('admission', () => {
  it('a full queue answers 429 with Retry-After at once, before tokenizing; the queued ones still finish', async () => {
    const counted = countingEngine(new ModelEngine(model));
    const { base, metrics } = await start({ engine: counted.engine, parallel: 1, maxQueue: 1, retryAfterSeconds: 2 });
    const m0 = await metrics();
    const ac = new AbortController();
    const running = await openStream(base, LONG, ac.signal);
    const queued = post(base, '/v1/completions', SHORT);
    await waitFor(async () => (await metrics()).get('bitllm_requests_waiting') === 1, 5000, 'one waiting');
    const tokenizeCalls = counted.calls.tokenize;
    const t0 = performance.now();
    const refused = await post(base, '/v1/completions', SHORT);
    expect(performance.now() - t0).toBeLessThan(scaledMs(500));
    expect(refused.status).toBe(429);
    expect(refused.headers.get('retry-after')).toBe('2');
    expect(refused.headers.get('retry-after-ms')).toBe('2000');
    const err = (await refused.json()).error;
    expect(err).toMatchObject({ type: 'rate_limit_error', code: 'queue_full' });
    expect(counted.calls.tokenize).toBe(tokenizeCalls); // decided before tokenization
    // n larger than the room left is refused too; n larger than parallel + queue is a 400.
    expect((await post(base, '/v1/completions', { ...SHORT, n: 2 })).status).toBe(429);
    ac.abort();
    const done = await queued;
    expect(done.status).toBe(200);
    expect((await done.json()).choices[0].finish_reason).toBe('length');
    const m1 = await metrics();
    expect(m1.get('bitllm_requests_rejected_total{reason="queue_full"}')! - (m0.get('bitllm_requests_rejected_total{reason="queue_full"}') ?? 0)).toBe(2);
    await waitFor(async () => (await metrics()).get('bitllm_requests_running') === 0, 5000, 'idle');
    const tooMany = await post(base, '/v1/completions', { ...SHORT, n: 3 });
    expect(tooMany.status).toBe(400);
    expect((await tooMany.json()).error.param).toBe('n');
  });
});

describe('cancellation', () => {
  it('a client that aborts mid-stream frees its slot: the next request runs at once, metrics count the abort', async () => {
    const { base, metrics } = await start({ parallel: 1, maxQueue: 4 });
    const m0 = await metrics();
    const ac = new AbortController();
    const s = await openStream(base, LONG, ac.signal);
    expect(s.first?.kind).toBe('data');
    const next = post(base, '/v1/completions', SHORT); // queued behind the long one
    await waitFor(async () => (await metrics()).get('bitllm_requests_waiting') === 1, 5000, 'queued');
    const t0 = performance.now();
    ac.abort();
    const res = await next;
    expect(res.status).toBe(200);
    expect((await res.json()).usage.completion_tokens).toBe(4);
    const waited = performance.now() - t0;
    expect(waited).toBeLessThan(scaledMs(1000));
    // The engine stopped the long request after a few tokens, far from its 4000.
    const stats = model.stats;
    expect(stats.last!.generatedTokens).toBe(4);
    await waitFor(async () => {
      const m = await metrics();
      return m.get('bitllm_sequences_finished_total{finish_reason="abort"}')! - (m0.get('bitllm_sequences_finished_total{finish_reason="abort"}') ?? 0) === 1;
    }, 2000, 'abort counted');
    const m1 = await metrics();
    expect(m1.get('bitllm_requests_running')).toBe(0);
    // Aborted tokens are not in the generated-tokens counter (it sums the usage clients received).
    expect(m1.get('bitllm_generation_tokens_total')! - (m0.get('bitllm_generation_tokens_total') ?? 0)).toBe(4);
  });

  it('an abort during prefill stops the long prompt within a chunk', async () => {
    const { base, metrics } = await start({ parallel: 1 });
    const ids = Array.from({ length: 3900 }, (_, i) => 3 + ((i * 7) % 4000));
    // How long the whole prefill takes here (the reference the abort must beat by far).
    let t = performance.now();
    for await (const _ of model.generate(ids, { maxTokens: 1 })) void _;
    const fullPrefill = performance.now() - t;
    const ac = new AbortController();
    const long = post(base, '/v1/completions', { prompt: ids.map((id) => 3 + ((id * 13) % 4000)), max_tokens: 50 } /* nothing in common: no KV reuse */, { signal: ac.signal }).catch((e: Error) => e);
    await waitFor(async () => (await metrics()).get('bitllm_requests_running') === 1, 5000, 'admitted');
    await sleep(20);
    t = performance.now();
    ac.abort();
    expect(await long).toBeInstanceOf(Error);
    const res = await post(base, '/v1/completions', SHORT);
    expect(res.status).toBe(200);
    const waited = performance.now() - t;
    expect(waited).toBeLessThan(fullPrefill / 2);
    await waitFor(async () => (await metrics()).get('bitllm_requests_running') === 0, 2000, 'idle');
  });

  it('a request aborted while queued leaves the queue at once and never reaches the engine', async () => {
    const counted = countingEngine(new ModelEngine(model));
    const { base, metrics } = await start({ engine: counted.engine, parallel: 1 });
    const m0 = await metrics();
    const ac1 = new AbortController();
    await openStream(base, LONG, ac1.signal);
    const ac2 = new AbortController();
    const res = await post(base, '/v1/completions', { ...SHORT, stream: true }, { signal: ac2.signal });
    expect(res.status).toBe(200); // headers come at once, even while queued
    await waitFor(async () => (await metrics()).get('bitllm_requests_waiting') === 1, 5000, 'queued');
    const submits = counted.calls.submit;
    ac2.abort();
    await waitFor(async () => (await metrics()).get('bitllm_requests_waiting') === 0, 1000, 'dequeued');
    ac1.abort();
    await waitFor(async () => (await metrics()).get('bitllm_requests_running') === 0, 2000, 'idle');
    expect(counted.calls.submit).toBe(submits);
    const m1 = await metrics();
    expect(m1.get('bitllm_sequences_finished_total{finish_reason="abort"}')! - (m0.get('bitllm_sequences_finished_total{finish_reason="abort"}') ?? 0)).toBe(2);
  });

  it('a stream waiting in the queue gets SSE keep-alive comments, then its normal chunks', async () => {
    const { base } = await start({ parallel: 1, keepAliveMs: 40 });
    const ac = new AbortController();
    await openStream(base, LONG, ac.signal);
    const res = await post(base, '/v1/chat/completions', { messages: [{ role: 'user', content: 'Hi' }], max_tokens: 3, stream: true });
    const events: Awaited<ReturnType<typeof collectSse>> = [];
    const it = readSse(res);
    for (let i = 0; i < 3; i++) events.push((await it.next()).value!);
    expect(events.map((e) => e.kind)).toEqual(['comment', 'comment', 'comment']);
    ac.abort();
    for (let r = await it.next(); !r.done; r = await it.next()) events.push(r.value);
    const chunks = dataChunks(events);
    expect(chunks[0]!.choices[0].delta).toEqual({ role: 'assistant', content: '' });
    expect(chunks[chunks.length - 1]!.choices[0].finish_reason).not.toBeNull();
  });
});

describe('lifecycle', () => {
  it('drain: /ready 503 and new requests 503 at once, the running stream ends with [DONE], then the server closes', async () => {
    const { server, base, metrics } = await start({ parallel: 1 });
    const s = await openStream(base, { ...LONG, max_tokens: 1500 });
    const queued = post(base, '/v1/completions', SHORT);
    // Queued before the drain begins (a fixed sleep was not enough under qemu: the request arrived after it).
    await waitFor(async () => (await metrics()).get('bitllm_requests_waiting') === 1, 5000, 'queued');
    const drained = server.drain(scaledMs(30_000));
    expect(server.state).toBe('draining');
    const ready = await fetch(`${base}/ready`);
    expect(ready.status).toBe(503);
    expect((await ready.json()).error.code).toBe('draining');
    const refused = await post(base, '/v1/completions', SHORT);
    expect(refused.status).toBe(503);
    expect(refused.headers.get('connection')).toBe('close');
    expect((await refused.json()).error.code).toBe('draining');
    expect((await fetch(`${base}/health`)).status).toBe(200);
    const rest = [];
    for (let r = await s.it.next(); !r.done; r = await s.it.next()) rest.push(r.value);
    const chunks = dataChunks(rest);
    expect(chunks[chunks.length - 1]!.choices[0].finish_reason).toBe('length');
    expect((await (await queued).json()).choices[0].text.length).toBeGreaterThan(0); // accepted before the drain: served
    await drained;
    expect(server.state).toBe('closed');
    await expect(fetch(`${base}/health`)).rejects.toThrow();
  });

  it('drain: a request whose body was still arriving when the drain began is refused (503), not started and cut', async () => {
    const { server, base } = await start({ parallel: 1 });
    const body = JSON.stringify({ ...LONG, stream: true });
    const socket = connect(Number(new URL(base).port), '127.0.0.1');
    let response = '';
    socket.setEncoding('utf8').on('data', (d: string) => (response += d));
    const closed = new Promise((r) => socket.on('close', r));
    socket.write(`POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: ${body.length}\r\n\r\n${body.slice(0, 10)}`);
    await sleep(100);
    const drained = server.drain(scaledMs(30_000)); // nothing in flight: it may close at once
    await sleep(50);
    socket.write(body.slice(10));
    await closed;
    await drained;
    expect(response.split('\r\n')[0]).toBe('HTTP/1.1 503 Service Unavailable');
    expect(response).toContain('"code":"draining"');
  });

  it('drain aborts what is still running after its timeout, telling each client why (an error event, a 503)', async () => {
    const { server, base } = await start({ parallel: 2 });
    const s = await openStream(base, LONG);
    const plain = post(base, '/v1/completions', { ...LONG, stream: false });
    await sleep(50);
    const t0 = performance.now();
    await server.drain(100);
    expect(performance.now() - t0).toBeLessThan(scaledMs(2000));
    const rest = [];
    for (let r = await s.it.next(); !r.done; r = await s.it.next()) rest.push(r.value);
    expect(rest.some((e) => e.text === '[DONE]')).toBe(false);
    const last = JSON.parse(rest.filter((e) => e.kind === 'data').at(-1)!.text);
    expect(last.error.code).toBe('draining');
    expect(last.error.message).toMatch(/drain timeout \(100 ms\)/);
    const res = await plain;
    expect(res.status).toBe(503);
    expect((await res.json()).error.code).toBe('draining');
  });

  it('/ready is 503 while the model loads, then 200; generation answers 503 meanwhile', async () => {
    let resolve!: (e: ServerEngine) => void;
    const { base } = await start({ engine: new Promise<ServerEngine>((r) => (resolve = r)) });
    expect((await fetch(`${base}/health`)).status).toBe(200);
    const ready = await fetch(`${base}/ready`);
    expect(ready.status).toBe(503);
    expect((await ready.json()).error.code).toBe('loading');
    const gen = await post(base, '/v1/completions', SHORT);
    expect(gen.status).toBe(503);
    expect((await gen.json()).error.code).toBe('loading');
    resolve(new ModelEngine(model));
    await waitFor(async () => (await fetch(`${base}/ready`)).status === 200, 2000, 'ready');
    expect((await post(base, '/v1/completions', SHORT)).status).toBe(200);
  });

  it('/ready turns 503 when an admitted request makes no progress for the stuck timeout', async () => {
    const inner = new ModelEngine(model);
    // An engine that accepts a request and then never produces a token (until aborted).
    const wedged: ServerEngine = Object.assign(Object.create(inner) as ServerEngine, {
      async *submit(request: { prompt: number[] }, signal: AbortSignal): AsyncGenerator<EngineEvent> {
        await new Promise((r) => signal.addEventListener('abort', r, { once: true }));
        yield { type: 'end', finishReason: 'abort', promptTokens: request.prompt.length, completionTokens: 0 };
      },
    });
    const { base } = await start({ engine: wedged, stuckTimeoutMs: 500 });
    const ac = new AbortController();
    const pending = post(base, '/v1/completions', SHORT, { signal: ac.signal }).catch(() => undefined);
    await waitFor(async () => (await fetch(`${base}/metrics`)).text().then((t) => t.includes('bitllm_requests_running 1')), 2000, 'admitted');
    expect((await fetch(`${base}/ready`)).status).toBe(200);
    await sleep(700);
    const ready = await fetch(`${base}/ready`);
    expect(ready.status).toBe(503);
    expect((await ready.json()).error).toMatchObject({ code: 'stuck', message: expect.stringMatching(/no progress/) });
    ac.abort();
    await pending;
    await waitFor(async () => (await fetch(`${base}/ready`)).status === 200, 2000, 'ready again');
  });
});

describe('engine failures', () => {
  it('a failure mid-stream is sent as data: {error} and the stream closes without [DONE]; before the headers it is a 500', async () => {
    const inner = new ModelEngine(model);
    const failing: ServerEngine = Object.assign(Object.create(inner) as ServerEngine, {
      async *submit(request: Parameters<ServerEngine['submit']>[0], signal: AbortSignal): AsyncGenerator<EngineEvent> {
        let n = 0;
        for await (const ev of inner.submit(request, signal)) {
          if (++n === 3) throw new Error('the kernel fell over');
          yield ev;
        }
      },
    });
    const { base, metrics } = await start({ engine: failing });
    const m0 = await metrics();
    const events = await collectSse(await post(base, '/v1/completions', { ...SHORT, max_tokens: 10, stream: true }));
    const data = events.filter((e) => e.kind === 'data').map((e) => e.text);
    expect(data).not.toContain('[DONE]');
    const last = JSON.parse(data[data.length - 1]!);
    expect(last.error).toMatchObject({ type: 'server_error', code: 'engine_error', message: expect.stringContaining('the kernel fell over') });
    const res = await post(base, '/v1/completions', { ...SHORT, max_tokens: 10 });
    expect(res.status).toBe(500);
    expect((await res.json()).error.code).toBe('engine_error');
    const m1 = await metrics();
    expect(m1.get('bitllm_sequences_finished_total{finish_reason="error"}')! - (m0.get('bitllm_sequences_finished_total{finish_reason="error"}') ?? 0)).toBe(2);
    expect(m1.get('bitllm_requests_running')).toBe(0);
    expect((await fetch(`${base}/ready`)).status).toBe(200);
  });
});

describe('security', () => {
  it('API keys: Bearer or X-Api-Key; /health and /ready public; 401 otherwise', async () => {
    const { base } = await start({ apiKeys: ['s3cret', 'other-key'] });
    expect((await fetch(`${base}/health`)).status).toBe(200);
    expect((await fetch(`${base}/ready`)).status).toBe(200);
    for (const headers of [{}, { authorization: 'Bearer wrong' }, { 'x-api-key': 's3cre' }, { authorization: 's3cret' }] as Array<Record<string, string>>) {
      const res = await fetch(`${base}/v1/models`, { headers });
      expect(res.status).toBe(401);
      expect((await res.json()).error).toMatchObject({ type: 'authentication_error', code: 'invalid_api_key' });
    }
    expect((await fetch(`${base}/metrics`)).status).toBe(401);
    expect((await post(base, '/v1/completions', SHORT)).status).toBe(401);
    expect((await fetch(`${base}/v1/models`, { headers: { authorization: 'Bearer s3cret' } })).status).toBe(200);
    expect((await fetch(`${base}/v1/models`, { headers: { 'x-api-key': 'other-key' } })).status).toBe(200);
    expect((await post(base, '/v1/completions', SHORT, { headers: { authorization: 'bearer s3cret' } })).status).toBe(200);
  });

  it('CORS only for the configured origin, never reflected; preflight answered', async () => {
    const { base } = await start({ corsOrigin: 'https://app.example' });
    const good = await fetch(`${base}/v1/models`, { headers: { origin: 'https://app.example' } });
    expect(good.headers.get('access-control-allow-origin')).toBe('https://app.example');
    expect(good.headers.get('vary')).toBe('Origin');
    const evil = await fetch(`${base}/v1/models`, { headers: { origin: 'https://evil.example' } });
    expect(evil.status).toBe(200);
    expect(evil.headers.get('access-control-allow-origin')).toBeNull();
    const pre = await fetch(`${base}/v1/chat/completions`, { method: 'OPTIONS', headers: { origin: 'https://app.example', 'access-control-request-method': 'POST' } });
    expect(pre.status).toBe(204);
    expect(pre.headers.get('access-control-allow-methods')).toContain('POST');
    expect(pre.headers.get('access-control-allow-headers')).toMatch(/authorization/i);
    const preEvil = await fetch(`${base}/v1/chat/completions`, { method: 'OPTIONS', headers: { origin: 'https://evil.example' } });
    expect(preEvil.headers.get('access-control-allow-origin')).toBeNull();
    expect(preEvil.headers.get('access-control-allow-methods')).toBeNull();
    // Off by default.
    const { base: plain } = await start({});
    expect((await fetch(`${plain}/v1/models`, { headers: { origin: 'https://app.example' } })).headers.get('access-control-allow-origin')).toBeNull();
  });

  it('embeds in an existing node:http server: unknown routes go to next()', async () => {
    const { createServer: createHttp } = await import('node:http');
    const api = createServer({ engine: new ModelEngine(model) });
    servers.push(api);
    const host = createHttp((req, res) => api.handler(req, res, () => {
      res.writeHead(200, { 'content-type': 'text/plain' });
      res.end('app route');
    }));
    await new Promise<void>((r) => host.listen(0, '127.0.0.1', r));
    const base = `http://127.0.0.1:${(host.address() as { port: number }).port}`;
    try {
      expect(await (await fetch(`${base}/app/page`)).text()).toBe('app route');
      await waitFor(async () => (await fetch(`${base}/ready`)).status === 200, 2000, 'ready');
      const body = await (await post(base, '/v1/completions', SHORT)).json();
      expect(body.usage.completion_tokens).toBe(4);
    } finally {
      host.closeAllConnections();
      await new Promise((r) => host.close(r));
    }
  });

  it('embedded behind a body parser: a body left in req.body is used as is', async () => {
    const { createServer: createHttp } = await import('node:http');
    const api = createServer({ engine: new ModelEngine(model) });
    servers.push(api);
    // What express.json() does: read the stream, leave the parsed JSON in req.body.
    const host = createHttp((req, res) => {
      let text = '';
      req.setEncoding('utf8').on('data', (d: string) => (text += d)).on('end', () => {
        Object.assign(req, { body: text ? JSON.parse(text) : undefined });
        api.handler(req, res);
      });
    });
    await new Promise<void>((r) => host.listen(0, '127.0.0.1', r));
    const base = `http://127.0.0.1:${(host.address() as { port: number }).port}`;
    try {
      await waitFor(async () => (await fetch(`${base}/ready`)).status === 200, 2000, 'ready');
      const body = await (await post(base, '/v1/completions', SHORT)).json();
      expect(body.usage.completion_tokens).toBe(4);
      const tok = await (await post(base, '/tokenize', { content: 'Hello' })).json();
      expect(tok.tokens).toEqual(model.tokenize('Hello', { addBos: false }));
    } finally {
      host.closeAllConnections();
      await new Promise((r) => host.close(r));
    }
  });
});

