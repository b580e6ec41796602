// HTTP load client shared by the serving benches (bench/llama-server.mjs; bench/serve-load.mjs can switch to it):
// starting a server process and waiting until it answers, streaming OpenAI-style /v1/completions requests
// (server-sent events) with the arrival time of every content chunk, C concurrent clients running requests
// back to back, and the latency percentiles of the results. Works against any server that speaks the
// OpenAI completions stream (`bitllm serve`, llama.cpp's llama-server).
//
//   import { launchServer, streamCompletion, runClients, summarize } from './load-client.mjs';
//   const srv = await launchServer({ command, args, listening: /listening on (http:\/\/\S+)/, readyPath: '/ready' });
//   const { wallMs, results } = await runClients(8, 2, () => streamCompletion(srv.base, { prompt: ids, max_tokens: 32, stream: true }));
//   console.log(summarize(results, wallMs));
//   await srv.close();
import { spawn } from 'node:child_process';
import { createServer } from 'node:net';

/** A TCP port free on 127.0.0.1 right now (for servers that want a fixed --port). */
export function freePort() {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.unref();
    s.on('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

/**
 * Starts `command args` and resolves once it serves: its base URL is `base` when given, else the first match group of
 * `listening` in its stderr/stdout; then `readyPath` is polled until it answers 200 (llama-server: /health, 503 while
 * loading; bitllm: /ready). Returns { base, child, log() (its output so far), close() (SIGTERM, then SIGKILL after
 * killAfterMs; resolves on exit) }. Rejects, with the output, when the process exits or timeoutMs passes first.
 */
export async function launchServer({ command, args = [], env, base, listening, readyPath = '/health', timeoutMs = 300_000, killAfterMs = 5_000, name = command }) {
  if (!base && !listening) throw new Error('launchServer: give `base` or a `listening` pattern');
  const child = spawn(command, args, { stdio: ['ignore', 'pipe', 'pipe'], env: env ?? process.env });
  let out = '';
  let exited = null;
  const exit = new Promise((res) => child.on('exit', (code, signal) => {
    exited = { code, signal };
    res(exited);
  }));
  const close = async () => {
    if (exited) return exited;
    child.kill('SIGTERM');
    const timer = setTimeout(() => child.kill('SIGKILL'), killAfterMs);
    await exit;
    clearTimeout(timer);
    return exited;
  };
  const onData = (d) => {
    out += d;
    if (out.length > 1 << 20) out = out.slice(-(1 << 19)); // keep the tail of a chatty log
  };
  child.stdout.on('data', onData);
  child.stderr.on('data', onData);
  const fail = (why) => new Error(`${name}: ${why}\n--- its output ---\n${out.slice(-8000)}`);
  const deadline = Date.now() + timeoutMs;
  try {
    let url = base;
    while (!url) {
      const m = listening.exec(out);
      if (m) url = m[1];
      else if (exited) throw fail(`exited (${exited.code ?? exited.signal}) before listening`);
      else if (Date.now() > deadline) throw fail(`not listening after ${timeoutMs} ms`);
      else await sleep(50);
    }
    url = url.replace(/\/+$/, '');
    for (;;) {
      if (exited) throw fail(`exited (${exited.code ?? exited.signal}) before it was ready`);
      const r = await fetch(`${url}${readyPath}`).catch(() => undefined);
      if (r) await r.arrayBuffer().catch(() => undefined);
      if (r?.status === 200) break;
      if (Date.now() > deadline) throw fail(`${readyPath} not 200 after ${timeoutMs} ms`);
      await sleep(200);
    }
    return { base: url, child, log: () => out, close };
  } catch (err) {
    await close();
    throw err;
  }
}

const sleep = (ms) => new Promise((res) => setTimeout(res, ms));

/**
 * One streaming completion: POSTs `body` (stream: true is forced) to base + path and reads the event stream.
 * Returns { t0, times, text, chunks, usage, finishReason, completionTokens }:
 *   t0      performance.now() before the request was sent
 *   times   the arrival time (performance.now()) of every content chunk: a chunk with a choice whose finish_reason is
 *           null. Servers may hold a token back (an incomplete UTF-8 sequence, a possible stop string) and send it
 *           with the next, so chunks ≤ tokens; TTFT = times[0] - t0, inter-token gaps = gaps(times).
 *   usage   the `usage` object of the stream (bitllm: with stream_options.include_usage; llama-server: always on the
 *           final chunk of /v1/completions), or null
 *   completionTokens  usage.completion_tokens, else the chunk count
 * Throws on a non-200 answer or an `error` event.
 */
export async function streamCompletion(base, body, { path = '/v1/completions', headers = {}, signal } = {}) {
  const t0 = performance.now();
  const res = await fetch(`${base}${path}`, {
    method: 'POST', headers: { 'content-type': 'application/json', ...headers }, signal,
    body: JSON.stringify({ ...body, stream: true }),
  });
  if (res.status !== 200) throw new Error(`${path}: HTTP ${res.status}: ${await res.text()}`);
  const times = [];
  let text = '';
  let usage = null;
  let finishReason = null;
  const dec = new TextDecoder();
  let buf = '';
  const onEvent = (ev) => {
    const data = ev.split('\n').filter((l) => l.startsWith('data:')).map((l) => l.slice(5).trimStart()).join('\n');
    if (data === '' || data === '[DONE]') return;
    const o = JSON.parse(data);
    if (o.error) throw new Error(`${path}: error event: ${JSON.stringify(o.error)}`);
    if (o.usage) usage = o.usage;
    const c = o.choices?.[0];
    if (!c) return;
    if (c.finish_reason == null) {
      times.push(performance.now());
      text += c.text ?? c.delta?.content ?? '';
    } else finishReason = c.finish_reason;
  };
  for await (const chunk of res.body) {
    buf += dec.decode(chunk, { stream: true }).replace(/\r\n/g, '\n');
    let i;
    while ((i = buf.indexOf('\n\n')) >= 0) {
      const ev = buf.slice(0, i);
      buf = buf.slice(i + 2);
      onEvent(ev);
    }
  }
  if (buf.trim()) onEvent(buf);
  return { t0, times, text, chunks: times.length, usage, finishReason, completionTokens: usage?.completion_tokens ?? times.length };
}

/**
 * `concurrency` clients, each awaiting `request(client, i)` `requests` times back to back (i = 0, 1, …), all started
 * at once. Returns { wallMs, results } (results in no particular order).
 */
export async function runClients(concurrency, requests, request) {
  const t0 = performance.now();
  const results = (await Promise.all(Array.from({ length: concurrency }, async (_, client) => {
    const out = [];
    for (let i = 0; i < requests; i++) out.push(await request(client, i));
    return out;
  }))).flat();
  return { wallMs: performance.now() - t0, results };
}

/** The q-quantile of xs by nearest rank (sorted[floor(q·n)], clamped), to 0.1; null when xs is empty. */
export function percentile(xs, q) {
  if (xs.length === 0) return null;
  const s = [...xs].sort((a, b) => a - b);
  return Math.round(s[Math.min(s.length - 1, Math.floor(q * s.length))] * 10) / 10;
}

/** Successive differences of arrival times. */
export const gaps = (times) => times.slice(1).map((t, i) => t - times[i]);

/** { p50, p90, p99 } of xs (or the quantiles given). */
export function percentiles(xs, qs = [0.5, 0.9, 0.99]) {
  return Object.fromEntries(qs.map((q) => [`p${Math.round(q * 100)}`, percentile(xs, q)]));
}

/**
 * Aggregate figures of streamCompletion results run over wallMs: requests, generated tokens (usage when the server
 * reports it, else chunks), content chunks, aggregate generated tok/s over the wall time, and TTFT / inter-token
 * gap percentiles in ms.
 */
export function summarize(results, wallMs) {
  const tokens = results.reduce((a, r) => a + r.completionTokens, 0);
  const chunks = results.reduce((a, r) => a + r.chunks, 0);
  return {
    requests: results.length, tokens, chunks, wall_ms: Math.round(wallMs),
    tps: Math.round((tokens / (wallMs / 1000)) * 100) / 100,
    ttft_ms: percentiles(results.filter((r) => r.times.length).map((r) => r.times[0] - r.t0)),
    itl_ms: percentiles(results.flatMap((r) => gaps(r.times))),
  };
}
