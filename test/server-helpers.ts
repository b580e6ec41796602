// Helpers for the server tests: a hand-written SSE reader over fetch, a JSON POST, a counting engine wrapper.
import type { ServerEngine } from '../lib/server/index.js';
import { scaledMs } from './time-scale.js';

export interface SseEvent {
  /** 'data' for a data line, 'comment' for a ': ...' line. */
  kind: 'data' | 'comment';
  text: string;
}

/** Reads an SSE body event by event (data lines and comment lines, each event ended by a blank line). */
export async function* readSse(res: Response): AsyncGenerator<SseEvent> {
  const reader = res.body!.getReader();
  const decoder = new TextDecoder();
  let buf = '';
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buf += decoder.decode(value, { stream: true });
    let at: number;
    while ((at = buf.indexOf('\n\n')) >= 0) {
      const block = buf.slice(0, at);
      buf = buf.slice(at + 2);
      for (const line of block.split('\n')) {
        if (line.startsWith(':')) yield { kind: 'comment', text: line.slice(1).trim() };
        else if (line.startsWith('data: ')) yield { kind: 'data', text: line.slice(6) };
        else throw new Error(`unexpected SSE line ${JSON.stringify(line)}`);
      }
    }
  }
  if (buf !== '') throw new Error(`SSE body ended inside an event: ${JSON.stringify(buf)}`);
}

/** All events of a stream. */
export async function collectSse(res: Response): Promise<SseEvent[]> {
  const out: SseEvent[] = [];
  for await (const e of readSse(res)) out.push(e);
  return out;
}

/** The JSON chunks of a stream (comments dropped); the final '[DONE]' must be last and is not returned. */
export function dataChunks(events: SseEvent[]): Array<Record<string, any>> {
  const data = events.filter((e) => e.kind === 'data').map((e) => e.text);
  if (data[data.length - 1] !== '[DONE]') throw new Error(`stream did not end with [DONE]: ${data[data.length - 1]}`);
  if (data.indexOf('[DONE]') !== data.length - 1) throw new Error('[DONE] before the end');
  return data.slice(0, -1).map((t) => JSON.parse(t) as Record<string, any>);
}

export function post(base: string, path: string, body: unknown, init: RequestInit = {}): Promise<Response> {
  return fetch(base + path, {
    method: 'POST', ...init,
    headers: { 'content-type': 'application/json', ...(init.headers as Record<string, string> | undefined) },
    body: typeof body === 'string' ? body : JSON.stringify(body),
  });
}

/** Counts calls to the engine's tokenizing and generating methods (to check what ran before a refusal). */
export function countingEngine(inner: ServerEngine): { engine: ServerEngine; calls: { tokenize: number; template: number; submit: number } } {
  const calls = { tokenize: 0, template: 0, submit: 0 };
  const engine: ServerEngine = {
    info: inner.info,
    tokenize: (t, o) => (calls.tokenize++, inner.tokenize(t, o)),
    detokenize: (ids) => inner.detokenize(ids),
    tokenBytes: (id) => inner.tokenBytes(id),
    applyChatTemplate: (m) => (calls.template++, inner.applyChatTemplate(m)),
    validate: (r) => inner.validate(r),
    submit: (r, s) => (calls.submit++, inner.submit(r, s)),
    stats: () => inner.stats(),
    close: () => inner.close(),
  };
  return { engine, calls };
}

/** Parses Prometheus text into name{labels} → value. */
export function parseMetrics(text: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const m = /^([a-z0-9_]+(?:\{[^}]*\})?) (\S+)$/.exec(line);
    if (!m) throw new Error(`bad metrics line ${JSON.stringify(line)}`);
    out.set(m[1]!, m[2] === '+Inf' ? Infinity : Number(m[2]));
  }
  return out;
}

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Polls `cond` every 5 ms until it holds (or throws after `ms`). */
export async function waitFor(cond: () => boolean | Promise<boolean>, ms = 5000, what = 'condition'): Promise<void> {
  const end = Date.now() + scaledMs(ms); // test/time-scale.ts
  while (!(await cond())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(5);
  }
}

/**
 * The engine with a pause before every token: the tiny test model makes 200 tokens in ~30 ms, faster than a
 * client's `break` or abort reaches the server, so abort tests would race the end of the stream. The signal
 * still reaches the inner engine (an abort ends its sequence at the next step).
 */
export function pacedEngine(inner: ServerEngine, msPerToken: number): ServerEngine {
  // countingEngine's wrapper forwards every method (a ModelEngine's are on its prototype, out of reach of a spread).
  return {
    ...countingEngine(inner).engine,
    submit: async function* (r, s) {
      for await (const ev of inner.submit(r, s)) {
        if (ev.type === 'token') await sleep(msPerToken);
        yield ev;
      }
    },
  };
}
