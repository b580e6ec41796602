// `createServer()`: an OpenAI-compatible HTTP server over a ServerEngine (lib/server/engine.ts), node:http
// only. It returns a `(req, res, next?)` handler to mount in an existing node:http / Express / Fastify app, and
// `listen` / `drain` / `close` to run it standalone (what `bitllm serve` does). Routes, options, errors and
// metric names: docs/server.md.
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { type IncomingMessage, type Server, type ServerResponse, createServer as createHttpServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { basename, extname } from 'node:path';

import type { ChatMessage } from '../engine/chat.js';
import { RequestError } from '../engine/generate.js';
import { SamplerError } from '../engine/sampler.js';
import { ContextOverflowError } from '../model/kv-cache.js';
import { TokenizerError } from '../tokenizer/index.js';
import type { EngineFinishReason, EngineRequest, ServerEngine } from './engine.js';
import { HttpError, badRequest } from './errors.js';
import { IdleCollector } from '../engine/idle-gc.js';
import { residentBytes } from '../engine/resident.js';
import { type SequenceOutcome, ServerMetrics } from './metrics.js';
import { type Plan, planChat, planCompletion } from './openai.js';
import { AbortedWhileQueued, Admission } from './queue.js';

export { HttpError } from './errors.js';
export { ModelEngine } from './engine.js';
export type { EngineEvent, EngineFinishReason, EngineInfo, EngineRequest, EngineStats, ServerEngine } from './engine.js';
export { ServerMetrics } from './metrics.js';

export interface ServerOptions {
  /** The engine, or a promise of it: until it resolves the server answers 503 and /ready is 503 ('loading'). */
  engine: ServerEngine | Promise<ServerEngine>;
  /** The model id /v1/models shows and requests may name (default: the model file's name without .gguf). */
  modelId?: string;
  /** Sequences admitted to the engine at once (default 1). See docs/server.md for what the engine does with them today. */
  parallel?: number;
  /** Sequences that may wait for a slot; beyond it requests get 429 + Retry-After (default 64). */
  maxQueue?: number;
  /** Accepted API keys (Authorization: Bearer K or X-Api-Key: K); none = no authentication. */
  apiKeys?: readonly string[];
  /** The one browser origin allowed by CORS ('*' = any, without credentials); default: CORS off. */
  corsOrigin?: string;
  /** Largest request body in bytes (default 8 MiB); larger ones get 413 without being read. */
  maxBodyBytes?: number;
  /** SSE comment line after this many ms without output, e.g. while a stream waits in the queue (default 15000). */
  keepAliveMs?: number;
  /** /ready turns 503 when sequences are admitted but the engine produced nothing for this long (default 120000). */
  stuckTimeoutMs?: number;
  /** Retry-After seconds sent with 429 (default 1). */
  retryAfterSeconds?: number;
  /**
   * Run a full garbage collection of this thread a second after the last request ends (lib/engine/idle-gc.ts).
   * Default false: an embedding app owns its main thread's heap; `bitllm serve` turns it on.
   */
  idleGc?: boolean;
}

export type ServerState = 'loading' | 'ready' | 'draining' | 'closed' | 'failed';

export interface BitllmServer {
  /** Handles one request; with `next` (Express style) routes it does not know are passed on instead of 404. */
  handler(req: IncomingMessage, res: ServerResponse, next?: (err?: unknown) => void): void;
  /** Starts a node:http server with header/request/keep-alive timeouts set; resolves with its address. */
  listen(port?: number, host?: string): Promise<AddressInfo>;
  /**
   * Stops accepting generation requests (503, /ready 503), lets admitted and queued ones finish, aborts what is
   * left after `timeoutMs` (default 30000), then closes the listening server. Does not close the engine.
   */
  drain(timeoutMs?: number): Promise<void>;
  /** Aborts every request at once and closes the listening server. Does not close the engine. */
  close(): Promise<void>;
  readonly state: ServerState;
  readonly metrics: ServerMetrics;
  /** The engine once loaded. */
  readonly engine: ServerEngine | undefined;
}

const PUBLIC_ROUTES = new Set(['/health', '/ready']);
const ROUTES: Record<string, readonly string[]> = {
  '/health': ['GET', 'HEAD'],
  '/ready': ['GET', 'HEAD'],
  '/metrics': ['GET'],
  '/v1/models': ['GET'],
  '/v1/completions': ['POST'],
  '/v1/chat/completions': ['POST'],
  '/tokenize': ['POST'],
  '/detokenize': ['POST'],
};

function digest(key: string): Buffer {
  return createHash('sha256').update(key, 'utf8').digest();
}

/** One sampled token's log-probabilities, as the engine gave them. */
interface TokenLogprob {
  token: number;
  logprob: number;
  top: Array<{ token: number; logprob: number }>;
}

/** One generated choice as it progresses. */
interface Choice {
  index: number;
  text: string;
  finish: EngineFinishReason | undefined;
  promptTokens: number;
  completionTokens: number;
  logprobs: TokenLogprob[];
}

const utf8Strict = new TextDecoder('utf-8', { fatal: true });
const utf8 = new TextDecoder('utf-8');

/** Chat's logprobs entries: { token, logprob, bytes, top_logprobs: [{ token, logprob, bytes }] }. */
function chatLogprobs(e: ServerEngine, entries: readonly TokenLogprob[]): { content: unknown[]; refusal: null } {
  const one = (token: number, logprob: number) => {
    const bytes = e.tokenBytes(token);
    return { token: utf8.decode(bytes), logprob, bytes: [...bytes] };
  };
  return { content: entries.map((t) => ({ ...one(t.token, t.logprob), top_logprobs: t.top.map((a) => one(a.token, a.logprob)) })), refusal: null };
}

/**
 * The legacy completions shape: parallel arrays, `top_logprobs` as { tokenText: logprob } per token, and
 * `text_offset` as the running length of the token texts within the completion (starting at `offset`).
 */
function completionLogprobs(e: ServerEngine, entries: readonly TokenLogprob[], offset: number) {
  const tokens = entries.map((t) => utf8.decode(e.tokenBytes(t.token)));
  const text_offset: number[] = [];
  for (const t of tokens) {
    text_offset.push(offset);
    offset += t.length;
  }
  return {
    tokens, token_logprobs: entries.map((t) => t.logprob), text_offset,
    top_logprobs: entries.map((t) => Object.fromEntries(t.top.map((a) => [utf8.decode(e.tokenBytes(a.token)), a.logprob]))),
  };
}

export function createServer(options: ServerOptions): BitllmServer {
  const parallel = options.parallel ?? 1;
  const maxQueue = options.maxQueue ?? 64;
  const maxBody = options.maxBodyBytes ?? 8 << 20;
  const keepAliveMs = options.keepAliveMs ?? 15_000;
  const stuckMs = options.stuckTimeoutMs ?? 120_000;
  const retryAfter = options.retryAfterSeconds ?? 1;
  if (!(Number.isInteger(parallel) && parallel >= 1)) throw new RequestError(`createServer: parallel must be an integer >= 1, got ${String(parallel)}`);
  if (!(Number.isInteger(maxQueue) && maxQueue >= 0)) throw new RequestError(`createServer: maxQueue must be an integer >= 0, got ${String(maxQueue)}`);
  if (!(Number.isInteger(maxBody) && maxBody >= 1)) throw new RequestError(`createServer: maxBodyBytes must be a positive integer`);
  if (!(keepAliveMs > 0)) throw new RequestError('createServer: keepAliveMs must be positive');
  const keys = (options.apiKeys ?? []).map((k) => {
    if (typeof k !== 'string' || k === '') throw new RequestError('createServer: API keys must be non-empty strings');
    return digest(k);
  });
  const cors = options.corsOrigin;

  let state: ServerState = 'loading';
  let engine: ServerEngine | undefined;
  let modelId = options.modelId;
  let loadError: unknown;
  const admission = new Admission(parallel, maxQueue);
  /** Abort controllers of generation requests in progress (queued or admitted). */
  const inFlight = new Set<AbortController>();
  /** A full GC of this thread a second after the last request ends (lib/engine/idle-gc.ts: the soak's RSS). */
  const collector = options.idleGc ? new IdleCollector() : undefined;
  let inFlightChanged: () => void = () => {};
  let lastProgress = Date.now();
  let http: Server | undefined;
  const sockets = new Set<import('node:net').Socket>();

  const metrics = new ServerMetrics([
    ['bitllm_requests_running', 'Sequences admitted to the engine.', () => admission.runningCount],
    ['bitllm_requests_waiting', 'Sequences waiting in the server queue.', () => admission.waitingCount],
    ['bitllm_engine_evaluated_prompt_tokens', 'Prompt tokens the engine ran through the model (since load).', () => engine?.stats().evaluatedTokens ?? 0],
    ['bitllm_engine_reused_prompt_tokens', 'Prompt tokens the engine served from its KV cache (since load).', () => engine?.stats().reusedTokens ?? 0],
    ['bitllm_kv_sequences', 'Sequences the KV pool holds (running + cached for prefix reuse), as of the last request end.', () => engine?.stats().kv?.sequences ?? 0],
    ['bitllm_kv_cached_sequences', 'Finished sequences kept for prefix reuse, as of the last request end.', () => engine?.stats().kv?.cachedSequences ?? 0],
    ['bitllm_kv_blocks_used', 'KV blocks in use, as of the last request end.', () => engine?.stats().kv?.blocksUsed ?? 0],
    ['process_resident_memory_bytes', 'Resident memory of the server process.', residentBytes],
    ['nodejs_heap_used_bytes', 'V8 heap in use on the server thread (the model worker has its own heap).', () => process.memoryUsage().heapUsed],
    ['nodejs_heap_total_bytes', 'V8 heap reserved on the server thread (pages V8 keeps, used or not).', () => process.memoryUsage().heapTotal],
    ['nodejs_external_memory_bytes', 'Memory of ArrayBuffers and other objects held outside the V8 heap, all threads.', () => process.memoryUsage().external],
    ['bitllm_ready', '1 when /ready answers 200.', () => (readiness() === undefined ? 1 : 0)],
  ]);

  Promise.resolve(options.engine).then(
    (e) => {
      engine = e;
      modelId ??= basename(e.info.path, extname(e.info.path));
      if (state === 'loading') state = 'ready';
    },
    (err: unknown) => {
      loadError = err;
      if (state === 'loading') state = 'failed';
    },
  );

  /** Why the server is not ready (an error code and a message), or undefined when it is. */
  function readiness(): { code: string; message: string } | undefined {
    if (state === 'loading') return { code: 'loading', message: 'loading the model' };
    if (state === 'failed') return { code: 'model_failed', message: `the model failed to load: ${loadError instanceof Error ? loadError.message : String(loadError)}` };
    if (state === 'draining' || state === 'closed') return { code: 'draining', message: 'the server is shutting down' };
    if (admission.runningCount > 0 && Date.now() - lastProgress > stuckMs)
      return { code: 'stuck', message: `the engine made no progress for ${Math.round((Date.now() - lastProgress) / 1000)} s with ${admission.runningCount} sequence(s) admitted` };
    return undefined;
  }

  // ------------------------------------------------------------ responses

  function setCors(req: IncomingMessage, res: ServerResponse): void {
    if (cors === undefined) return;
    const origin = req.headers.origin;
    if (cors === '*') res.setHeader('Access-Control-Allow-Origin', '*');
    else {
      res.setHeader('Vary', 'Origin'); // the answer depends on the origin: caches must not share it
      if (origin === cors) res.setHeader('Access-Control-Allow-Origin', cors);
    }
  }

  function sendJson(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
    if (res.headersSent) return;
    const data = JSON.stringify(body);
    res.writeHead(status, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(data), ...headers });
    res.end(data);
  }

  function sendError(res: ServerResponse, err: HttpError): void {
    sendJson(res, err.status, err.body(), err.headers);
  }

  /** Maps an error thrown while planning or validating to an HttpError. */
  function toHttpError(err: unknown): HttpError {
    if (err instanceof HttpError) return err;
    if (err instanceof ContextOverflowError) return badRequest(err.message.replace(/^request: /, ''), 'messages', 'context_length_exceeded');
    if (err instanceof RequestError || err instanceof SamplerError || err instanceof TokenizerError)
      return badRequest(err.message.replace(/^request: /, ''), null);
    return new HttpError(500, `internal error: ${err instanceof Error ? err.message : String(err)}`, 'server_error', 'internal_error');
  }

  // ------------------------------------------------------------ body

  /**
   * Reads a JSON body of at most maxBody bytes. Over the limit (by Content-Length, or counted as a chunked body
   * arrives) it stops reading and rejects with 413; the connection is closed after the answer.
   */
  function readJson(req: IncomingMessage): Promise<unknown> {
    const pre = (req as IncomingMessage & { body?: unknown }).body;
    if (pre !== undefined && req.readableEnded) return Promise.resolve(pre); // parsed by a framework (express.json())
    if (req.readableEnded)
      return Promise.reject(new HttpError(500, 'the request body was consumed before this handler and not left in req.body', 'server_error', 'body_consumed'));
    const tooLarge = () => new HttpError(413, `the request body exceeds the limit of ${maxBody} bytes`, 'invalid_request_error', 'request_too_large', null, { Connection: 'close' });
    const declared = Number(req.headers['content-length']);
    if (Number.isFinite(declared) && declared > maxBody) return Promise.reject(tooLarge());
    return new Promise((resolve, reject) => {
      const parts: Buffer[] = [];
      let size = 0;
      let done = false;
      const finish = (fn: () => void) => {
        if (done) return;
        done = true;
        req.off('data', onData).off('end', onEnd).off('error', onError);
        fn();
      };
      const onData = (chunk: Buffer) => {
        size += chunk.length;
        if (size > maxBody) {
          req.pause(); // read no more of it: the connection is closed once the 413 is sent
          finish(() => reject(tooLarge()));
        } else parts.push(chunk);
      };
      const onEnd = () =>
        finish(() => {
          const text = Buffer.concat(parts).toString('utf8');
          try {
            resolve(JSON.parse(text));
          } catch (err) {
            reject(badRequest(`the request body is not valid JSON: ${(err as Error).message}`, null, 'invalid_json'));
          }
        });
      const onError = (err: Error) => finish(() => reject(err));
      req.on('data', onData).on('end', onEnd).on('error', onError);
    });
  }

  // ------------------------------------------------------------ routing

  function handler(req: IncomingMessage, res: ServerResponse, next?: (err?: unknown) => void): void {
    let pathname: string;
    try {
      pathname = new URL(req.url ?? '/', 'http://localhost').pathname;
    } catch {
      return sendError(res, badRequest(`malformed request target ${JSON.stringify(req.url)}`, null, 'invalid_url'));
    }
    const path = pathname.length > 1 ? pathname.replace(/\/+$/, '') : pathname;
    const route = path.startsWith('/v1/models/') ? '/v1/models/:id' : path;
    const methods = route === '/v1/models/:id' ? ['GET'] : ROUTES[route];
    if (!methods && next) return next(); // the host app's route: no headers or metrics of ours
    res.on('finish', () => metrics.http.inc({ route: methods ? route : 'other', code: String(res.statusCode) }));
    setCors(req, res);
    if (!methods) return sendError(res, new HttpError(404, `no route ${req.method} ${path}`, 'not_found_error', 'unknown_route'));
    if (req.method === 'OPTIONS') {
      // A CORS preflight: the allow headers only go to the configured origin (setCors above).
      const headers: Record<string, string> = { Allow: [...methods, 'OPTIONS'].join(', ') };
      if (res.hasHeader('Access-Control-Allow-Origin')) {
        headers['Access-Control-Allow-Methods'] = [...methods, 'OPTIONS'].join(', ');
        headers['Access-Control-Allow-Headers'] = 'Authorization, Content-Type, X-Api-Key';
        headers['Access-Control-Max-Age'] = '600';
      }
      res.writeHead(204, headers);
      res.end();
      return;
    }
    if (!methods.includes(req.method ?? '')) {
      const err = new HttpError(405, `${req.method} is not allowed on ${path} (allowed: ${methods.join(', ')})`, 'invalid_request_error', 'method_not_allowed', null, { Allow: methods.join(', ') });
      return sendError(res, err);
    }
    if (keys.length > 0 && !PUBLIC_ROUTES.has(route) && !authorized(req)) {
      metrics.rejected.inc({ reason: 'unauthorized' });
      return sendError(res, new HttpError(401, 'missing or invalid API key (send Authorization: Bearer KEY or X-Api-Key: KEY)', 'authentication_error', 'invalid_api_key', null, { 'WWW-Authenticate': 'Bearer' }));
    }
    route_(route, path, req, res).catch((err: unknown) => {
      const e = toHttpError(err);
      if (e.status === 413) {
        metrics.rejected.inc({ reason: 'too_large' });
        res.on('finish', () => setTimeout(() => req.socket.destroy(), 1000).unref());
      } else if (e.status === 400) metrics.rejected.inc({ reason: 'invalid' });
      if (!res.headersSent) sendError(res, e);
      else res.destroy();
    });
  }

  function authorized(req: IncomingMessage): boolean {
    const auth = req.headers.authorization;
    const given = typeof auth === 'string' && /^Bearer\s+/i.test(auth) ? auth.replace(/^Bearer\s+/i, '').trim() : req.headers['x-api-key'];
    if (typeof given !== 'string' || given === '') return false;
    const d = digest(given);
    let ok = false;
    for (const k of keys) ok = timingSafeEqual(d, k) || ok; // every key compared, equal-length digests: constant time
    return ok;
  }

  async function route_(route: string, path: string, req: IncomingMessage, res: ServerResponse): Promise<void> {
    if (route === '/health') return sendJson(res, 200, { status: 'ok' });
    if (route === '/ready') {
      const why = readiness();
      return why === undefined ? sendJson(res, 200, { status: 'ready' }) : sendJson(res, 503, new HttpError(503, why.message, 'unavailable_error', why.code).body());
    }
    if (route === '/metrics') {
      const text = metrics.render();
      res.writeHead(200, { 'Content-Type': 'text/plain; version=0.0.4; charset=utf-8', 'Content-Length': Buffer.byteLength(text) });
      res.end(text);
      return;
    }
    const e = requireEngine();
    if (route === '/v1/models' || route === '/v1/models/:id') {
      const card = { id: modelId!, object: 'model', created: 0, owned_by: 'bitllm', meta: { context_length: e.info.contextSize, vocab_size: e.info.vocabSize, chat_format: e.info.chatFormat } };
      if (route === '/v1/models') return sendJson(res, 200, { object: 'list', data: [card] });
      const id = decodeURIComponent(path.slice('/v1/models/'.length));
      if (id !== modelId) throw new HttpError(404, `model '${id}' does not exist (this server has '${modelId}')`, 'not_found_error', 'model_not_found', 'model');
      return sendJson(res, 200, card);
    }
    if (route === '/tokenize') return tokenizeRoute(e, await readJson(req), res);
    if (route === '/detokenize') return detokenizeRoute(e, await readJson(req), res);
    // The generation routes.
    const refuseWhileDraining = (): void => {
      if (state !== 'draining' && state !== 'closed') return;
      metrics.rejected.inc({ reason: 'draining' });
      throw new HttpError(503, 'the server is shutting down', 'unavailable_error', 'draining', null, { Connection: 'close', 'Retry-After': String(retryAfter) });
    };
    refuseWhileDraining();
    checkRoom(1); // before reading the body
    const body = await readJson(req);
    // A drain that began while the body arrived may already have found nothing in flight and be closing: this
    // request must not start (from here to generate()'s inFlight.add nothing awaits).
    refuseWhileDraining();
    const plan = route === '/v1/chat/completions' ? planChat(body, e.info.vocabSize) : planCompletion(body, e.info.vocabSize);
    if (plan.model !== undefined && plan.model !== modelId)
      throw new HttpError(404, `model '${plan.model}' does not exist (this server has '${modelId}')`, 'not_found_error', 'model_not_found', 'model');
    const sequences = plan.prompts.length * plan.n;
    if (sequences > parallel + maxQueue)
      throw badRequest(`${sequences} choices exceed what this server can hold at once (--parallel ${parallel} + --max-queue ${maxQueue})`, 'n');
    checkRoom(sequences); // before tokenizing
    return generate(e, plan, req, res);
  }

  function requireEngine(): ServerEngine {
    if (engine) return engine;
    if (state === 'failed') throw new HttpError(503, readiness()!.message, 'unavailable_error', 'model_failed');
    throw new HttpError(503, 'the model is loading', 'unavailable_error', 'loading', null, { 'Retry-After': String(retryAfter) });
  }

  function checkRoom(sequences: number): void {
    if (admission.hasRoom(sequences)) return;
    metrics.rejected.inc({ reason: 'queue_full' });
    throw new HttpError(429, `the server is busy: ${admission.runningCount} running and ${admission.waitingCount} queued (--max-queue ${maxQueue}); retry later`,
      'rate_limit_error', 'queue_full', null, { 'Retry-After': String(retryAfter), 'retry-after-ms': String(retryAfter * 1000) });
  }

  function tokenizeRoute(e: ServerEngine, raw: unknown, res: ServerResponse): void {
    if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) throw badRequest('the request body must be a JSON object', null, 'invalid_type');
    const body = raw as Record<string, unknown>;
    if (typeof body.content !== 'string') throw badRequest(`'content' must be a string`, 'content', 'invalid_type');
    for (const key of ['add_special', 'parse_special', 'with_pieces'])
      if (body[key] !== undefined && typeof body[key] !== 'boolean') throw badRequest(`'${key}' must be a boolean`, key, 'invalid_type');
    const ids = e.tokenize(body.content, { addSpecial: (body.add_special as boolean | undefined) ?? false, parseSpecial: (body.parse_special as boolean | undefined) ?? true });
    // As llama-server: a piece is its text when the token's bytes are valid UTF-8 on their own, else the bytes.
    const piece = (id: number): string | number[] => {
      const bytes = e.tokenBytes(id);
      try {
        return utf8Strict.decode(bytes);
      } catch {
        return [...bytes];
      }
    };
    const tokens = body.with_pieces === true ? ids.map((id) => ({ id, piece: piece(id) })) : ids;
    sendJson(res, 200, { tokens });
  }

  function detokenizeRoute(e: ServerEngine, raw: unknown, res: ServerResponse): void {
    if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) throw badRequest('the request body must be a JSON object', null, 'invalid_type');
    const tokens = (raw as Record<string, unknown>).tokens;
    if (!Array.isArray(tokens)) throw badRequest(`'tokens' must be an array of token ids`, 'tokens', 'invalid_type');
    tokens.forEach((id, i) => {
      if (!(typeof id === 'number' && Number.isInteger(id) && id >= 0 && id < e.info.vocabSize))
        throw badRequest(`'tokens[${i}]' = ${JSON.stringify(id)} is not a token id (vocabulary 0..${e.info.vocabSize - 1})`, 'tokens');
    });
    sendJson(res, 200, { content: e.detokenize(tokens as number[]) });
  }

  // ------------------------------------------------------------ generation

  /** Tokenizes and validates every sequence of a plan (no compute); 400 for a prompt that does not fit. */
  function buildRequests(e: ServerEngine, plan: Plan): Array<{ prompt: number; request: EngineRequest }> {
    const ctx = e.info.contextSize;
    const out: Array<{ prompt: number; request: EngineRequest }> = [];
    plan.prompts.forEach((p, pi) => {
      const ids = 'text' in p ? e.tokenize(p.text, { addSpecial: true, parseSpecial: true }) : 'ids' in p ? p.ids : e.applyChatTemplate(p.messages as ChatMessage[]);
      const param = plan.kind === 'chat' ? 'messages' : 'prompt';
      if (ids.length === 0) throw badRequest(`the prompt is empty`, param);
      if (ids.length >= ctx)
        throw badRequest(`the prompt is ${ids.length} tokens; this model's context is ${ctx} tokens and must leave room for at least one generated token`, param, 'context_length_exceeded');
      const maxTokens = plan.maxTokens ?? ctx - ids.length;
      if (ids.length + maxTokens > ctx) {
        const key = plan.kind === 'chat' ? 'max_completion_tokens' : 'max_tokens';
        throw badRequest(`the prompt (${ids.length} tokens) + ${key} (${maxTokens}) = ${ids.length + maxTokens} exceeds this model's context of ${ctx} tokens`, key, 'context_length_exceeded');
      }
      for (let i = 0; i < plan.n; i++) {
        const seed = plan.seed !== undefined ? plan.seed + i : randomBytes(4).readUInt32LE(0);
        const request: EngineRequest = {
          prompt: ids, maxTokens, sampling: { ...plan.sampling, seed }, stop: plan.stop, ignoreEos: plan.ignoreEos,
          ...(plan.logprobs !== undefined && { logprobs: plan.logprobs }),
        };
        e.validate(request);
        out.push({ prompt: pi, request });
      }
    });
    return out;
  }

  async function generate(e: ServerEngine, plan: Plan, req: IncomingMessage, res: ServerResponse): Promise<void> {
    const arrived = performance.now();
    const sequences = buildRequests(e, plan);
    const abort = new AbortController();
    const onClose = () => {
      if (!res.writableFinished) abort.abort();
    };
    res.on('close', onClose);
    inFlight.add(abort);
    collector?.busy();
    const id = `${plan.kind === 'chat' ? 'chatcmpl' : 'cmpl'}-${randomBytes(12).toString('hex')}`;
    const created = Math.floor(Date.now() / 1000);
    const object = plan.kind === 'chat' ? 'chat.completion.chunk' : 'text_completion';
    const choices: Choice[] = sequences.map((_, index) => ({ index, text: '', finish: undefined, promptTokens: 0, completionTokens: 0, logprobs: [] }));
    const wantLogprobs = plan.logprobs !== undefined;
    /** Running length of a completion choice's token texts (text_offset of its next token). */
    const offsets = new Array<number>(choices.length).fill(0);

    // Streaming: headers at once (the client knows it was accepted), comment lines while nothing else is written.
    let ping: NodeJS.Timeout | undefined;
    const write = (data: string) => {
      if (res.writableEnded || res.destroyed) return;
      res.write(data);
      ping?.refresh();
    };
    const chunk = (choice: Record<string, unknown>[], extra: Record<string, unknown> = {}) =>
      write(`data: ${JSON.stringify({ id, object, created, model: modelId, system_fingerprint: null, choices: choice, ...(plan.includeUsage && { usage: null }), ...extra })}\n\n`);
    if (plan.stream) {
      res.writeHead(200, { 'Content-Type': 'text/event-stream', 'Cache-Control': 'no-cache', Connection: 'keep-alive', 'X-Accel-Buffering': 'no' });
      res.flushHeaders();
      ping = setInterval(() => write(': keep-alive\n\n'), keepAliveMs);
    }

    const runOne = async (choice: Choice, request: EngineRequest): Promise<void> => {
      let admitted = false;
      let outcome: SequenceOutcome = 'error';
      try {
        await admission.acquire(abort.signal);
        admitted = true;
        lastProgress = Date.now();
        const startedAt = performance.now();
        metrics.queueTime.observe((startedAt - arrived) / 1000);
        if (plan.stream && plan.kind === 'chat') chunk([{ index: choice.index, delta: { role: 'assistant', content: '' }, logprobs: null, finish_reason: null }]);
        let last: number | undefined;
        for await (const ev of e.submit(request, abort.signal)) {
          lastProgress = Date.now();
          if (ev.type === 'token') {
            const now = performance.now();
            if (last === undefined) metrics.ttft.observe((now - arrived) / 1000);
            else metrics.itl.observe((now - last) / 1000);
            last = now;
            choice.text += ev.text;
            let lp: TokenLogprob | undefined;
            if (wantLogprobs) {
              if (ev.logprob === undefined) throw new Error('the engine sent a token without the log-probabilities asked for');
              lp = { token: ev.token, logprob: ev.logprob, top: ev.topLogprobs ?? [] };
              choice.logprobs.push(lp);
            }
            // With logprobs every token gets its chunk (its text may be '' while held back); without, text-less tokens none.
            if (plan.stream && (ev.text !== '' || lp)) {
              let logprobs: unknown = null;
              if (lp && plan.kind === 'chat') logprobs = chatLogprobs(e, [lp]);
              else if (lp) {
                logprobs = completionLogprobs(e, [lp], offsets[choice.index]!);
                offsets[choice.index]! += utf8.decode(e.tokenBytes(lp.token)).length;
              }
              chunk([plan.kind === 'chat'
                ? { index: choice.index, delta: { content: ev.text }, logprobs, finish_reason: null }
                : { index: choice.index, text: ev.text, logprobs, finish_reason: null }]);
            }
          } else {
            choice.finish = ev.finishReason;
            choice.promptTokens = ev.promptTokens;
            choice.completionTokens = ev.completionTokens;
          }
        }
        if (choice.finish === undefined) throw new Error('the engine ended a sequence without an end event');
        outcome = abort.signal.aborted ? 'abort' : choice.finish;
        if (outcome === 'abort') return;
        metrics.e2e.observe((performance.now() - arrived) / 1000);
        metrics.promptTokens.inc({}, choice.promptTokens);
        metrics.generationTokens.inc({}, choice.completionTokens);
        metrics.promptLength.observe(choice.promptTokens);
        metrics.generationLength.observe(choice.completionTokens);
        if (plan.stream)
          chunk([plan.kind === 'chat'
            ? { index: choice.index, delta: {}, logprobs: null, finish_reason: choice.finish }
            : { index: choice.index, text: '', logprobs: null, finish_reason: choice.finish }]);
      } catch (err) {
        if (err instanceof AbortedWhileQueued || abort.signal.aborted) outcome = 'abort';
        else {
          abort.abort(); // one failed choice ends the request
          throw err;
        }
      } finally {
        if (admitted) admission.release();
        metrics.sequences.inc({ finish_reason: outcome });
      }
    };

    try {
      // Every sequence enters the queue in this same tick (see Admission.hasRoom).
      const results = await Promise.allSettled(sequences.map((s, i) => runOne(choices[i]!, s.request)));
      const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
      if (abort.signal.aborted && !failed) {
        // The server ended it (drain timeout, close): tell the client why, the way a failed request is told.
        const reason: unknown = abort.signal.reason;
        if (reason instanceof HttpError && !res.destroyed && !res.writableEnded) {
          if (plan.stream) {
            write(`data: ${JSON.stringify(reason.body())}\n\n`);
            res.end();
          } else if (!res.headersSent) sendError(res, reason);
        }
        return; // otherwise the client is gone
      }
      if (failed) {
        const err = failed.reason instanceof Error ? failed.reason : new Error(String(failed.reason));
        const e500 = new HttpError(500, `generation failed: ${err.message}`, 'server_error', 'engine_error');
        if (plan.stream) {
          write(`data: ${JSON.stringify(e500.body())}\n\n`);
          res.end();
        } else sendError(res, e500);
        return;
      }
      const promptTokens = plan.prompts.reduce((sum, _, pi) => sum + (choices[sequences.findIndex((s) => s.prompt === pi)]?.promptTokens ?? 0), 0);
      const completionTokens = choices.reduce((s, c) => s + c.completionTokens, 0);
      const usage = { prompt_tokens: promptTokens, completion_tokens: completionTokens, total_tokens: promptTokens + completionTokens };
      if (plan.stream) {
        if (plan.includeUsage) write(`data: ${JSON.stringify({ id, object, created, model: modelId, system_fingerprint: null, choices: [], usage })}\n\n`);
        write('data: [DONE]\n\n');
        res.end();
      } else {
        sendJson(res, 200, {
          id, object: plan.kind === 'chat' ? 'chat.completion' : 'text_completion', created, model: modelId, system_fingerprint: null,
          choices: choices.map((c) => (plan.kind === 'chat'
            ? { index: c.index, message: { role: 'assistant', content: c.text, refusal: null }, logprobs: wantLogprobs ? chatLogprobs(e, c.logprobs) : null, finish_reason: c.finish }
            : { index: c.index, text: c.text, logprobs: wantLogprobs ? completionLogprobs(e, c.logprobs, 0) : null, finish_reason: c.finish })),
          usage,
        });
      }
    } finally {
      if (ping) clearInterval(ping);
      res.off('close', onClose);
      inFlight.delete(abort);
      if (inFlight.size === 0) collector?.idle();
      inFlightChanged();
    }
  }

  // ------------------------------------------------------------ lifecycle

  function listen(port = 8080, host = '127.0.0.1'): Promise<AddressInfo> {
    if (http) return Promise.reject(new RequestError('listen: the server is already listening'));
    const server = createHttpServer({ requestTimeout: 60_000, headersTimeout: 15_000, keepAliveTimeout: 5_000 }, (req, res) => handler(req, res));
    http = server;
    server.on('connection', (s) => {
      sockets.add(s);
      s.on('close', () => sockets.delete(s));
    });
    return new Promise((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, host, () => {
        server.off('error', reject);
        resolve(server.address() as AddressInfo);
      });
    });
  }

  async function closeHttp(): Promise<void> {
    const server = http;
    if (!server) return;
    await new Promise<void>((resolve) => {
      server.close(() => resolve());
      server.closeIdleConnections();
      // Connections still open after a second (a response being flushed, a client that keeps its socket) are cut.
      setTimeout(() => {
        for (const s of sockets) s.destroy();
      }, 1000).unref();
    });
  }

  async function drain(timeoutMs = 30_000): Promise<void> {
    if (state === 'closed') return;
    if (state !== 'draining') state = 'draining';
    if (inFlight.size > 0) {
      await new Promise<void>((resolve) => {
        const timer = setTimeout(() => {
          const cut = new HttpError(503, `the server is shutting down: the request did not finish within the drain timeout (${timeoutMs} ms)`, 'server_error', 'draining');
          for (const a of inFlight) a.abort(cut);
          // Each request then ends at the worker's next step and writes its error; wait for that (briefly).
          setTimeout(resolve, 1000).unref();
        }, timeoutMs);
        inFlightChanged = () => {
          if (inFlight.size === 0) {
            clearTimeout(timer);
            resolve();
          }
        };
      });
    }
    state = 'closed';
    await closeHttp();
  }

  async function close(): Promise<void> {
    state = 'closed';
    for (const a of inFlight) a.abort();
    await closeHttp();
  }

  return {
    handler, listen, drain, close, metrics,
    get state() {
      return state;
    },
    get engine() {
      return engine;
    },
  };
}
