// The public generation API. The main thread owns the tokenizer, the text streams and the promises; one
// worker thread per loaded model (engine/worker.ts) owns the kernels, the weights and the KV cache, so
// compute never blocks the event loop. Concurrent requests to a model run together (continuous batching in
// the worker's step scheduler); contexts hand out held sequences whose KV lives between requests.
import { existsSync, statSync } from 'node:fs';
import { Worker } from 'node:worker_threads';

import {
  Chat, type ChatFormatName, type ChatOptions, CHAT_FORMATS, type DetectedChatFormat, chatTemplate, detectChatFormat,
  templateTokens,
} from './engine/chat.js';
import {
  type FinishReason, type GenerateChunk, type GenerateOptions, type GenerationResult, ModelClosedError, RequestError,
  type KvState, type RequestStats, TextStream, type ValidatedGenerateOptions, type WorkerInit, type WorkerReady,
  type WorkerReply, type WorkerRequest, deserializeError, fitContext, validateGenerateOptions, validatePromptIds,
} from './engine/generate.js';
import { ContextOverflowError } from './model/kv-cache.js';
import { GgufMetadata, readGguf } from './format/gguf.js';
import { cpuInfo } from './kernels/context.js';
import { type ModelConfig, configFromGguf } from './model/config.js';
import { blockKindOf } from './model/arch.js';
import { type Mamba2Config, mamba2ConfigFromGguf } from './model/mamba2.js';
import type { Isa } from './native.js';
import { Tokenizer } from './tokenizer/index.js';

export { Chat, chatTemplate, detectChatFormat, renderChat } from './engine/chat.js';
export type { ChatFormatName, ChatMessage, ChatOptions, ChatTemplate, DetectedChatFormat } from './engine/chat.js';
export { ModelClosedError, RequestError } from './engine/generate.js';
export type { FinishReason, GenerateChunk, GenerateOptions, GenerationResult, KvState, RequestStats } from './engine/generate.js';
export { ContextOverflowError } from './model/kv-cache.js';
export { Tokenizer, TokenizerError } from './tokenizer/index.js';

export interface LoadModelOptions {
  /** Kernel threads (default: physical cores). */
  threads?: number;
  /** Tokens one sequence may hold, prompt and generated (default: min(4096, the model's training context)). */
  contextSize?: number;
  /**
   * Sequences that run at once (default 4): concurrent generate() / evaluate() / chat calls share each forward
   * (continuous batching); more wait in order. The KV cache is paged: memory grows with the tokens in use, up to
   * contextSize x sequences.
   */
  sequences?: number;
  /**
   * KV cache element type: IEEE half, int8 blocks of 32 with an fp16 scale (0.53x the bytes), or 3-bit blocks
   * (0.22x; BitNet a4.8). Default: the architecture's (q3 for bitnet-a4.8, which was trained with it), else f16.
   */
  kvType?: 'f16' | 'q8' | 'q3';
  /** Called as layers are repacked while loading (done of total layers). */
  onProgress?: (done: number, total: number) => void;
  /** lm_head / embedding storage: the file's F16, or repacked to q8 (0.53x the bytes) or q4 (0.28x). */
  headType?: 'f16' | 'q8' | 'q4';
  /**
   * In-memory layout of the ternary layers: 't2r16' (2 bits/weight), 'td3' (1.6875 bits/weight, same
   * results), or 'auto' (default: td3 where this CPU decodes it at least as fast, i.e. AVX-512 VBMI).
   */
  layout?: 'auto' | 't2r16' | 'td3';
  /** Force a kernel ISA (default: BITLLM_ISA or the best this CPU supports). */
  isa?: Isa;
  /**
   * Inputs of the sign projections of the float-activation families (FBI-LLM, OneBit): 'auto' (default) keeps
   * them float (exact, lookup-table kernels); 'i8' quantizes them per token to int8 (the B1R16 int8 GEMM).
   */
  actQuant?: 'auto' | 'i8';
}

export interface ModelInfo {
  path: string;
  /** general.name, when the file has one. */
  name: string | undefined;
  arch: string;
  /** The attention block kind's config, or the Mamba-2 block kind's (`'headDim' in` tells: both carry arch, nLayer, nVocab, nCtxTrain). */
  hparams: ModelConfig | Mamba2Config;
  /** The block kind: attention (a KV cache per sequence) or mamba2 (a fixed-size recurrent state per sequence). */
  block: 'attention' | 'mamba2';
  fileSize: number;
  tensors: { count: number; byType: Record<string, number> };
  tokenizer: { model: 'gpt2' | 'llama'; vocabSize: number; bos: number | undefined; eos: number | undefined; eog: number[]; addBos: boolean };
  chatFormat: DetectedChatFormat;
  /** Tokens one sequence may hold. */
  contextSize: number;
  /** Sequences that run at once (loadModel options.sequences). */
  sequences: number;
  kvType: 'f16' | 'q8' | 'q3';
  headType: 'f16' | 'q8' | 'q4';
  /** The ternary layout in use ('auto' resolved; it applies only to ternary layers). */
  layout: 't2r16' | 'td3';
  /**
   * The kernel layouts the model's projections are held in, distinct, in order of first appearance: e.g.
   * ['td3'] (b1.58), ['td3', 'ts256'] (a4.8's column-sparse down projection), ['b1l64'] (FBI-LLM, OneBit and
   * Bi-Mamba on the exact float path), ['b1r16'] (int8 activations), ['billm'], ['f16'].
   */
  linears: string[];
  isa: Isa;
  threads: number;
  /** Kernel variant per family, e.g. { ternary_i2: 'avx512' }. */
  kernels: Record<string, string>;
  /** Bytes of weights one decode step reads (ternary layers + head). */
  weightBytes: number;
  /**
   * KV bytes of one full sequence (contextSize tokens); the pool grows to at most sequences x this. For the
   * mamba2 block kind: the bytes of one sequence's recurrent state, whatever its length.
   */
  kvBytes: number;
  loadMs: number;
}

/** Running totals over a model's requests; `last` is the most recent finished one. */
export interface ModelStats {
  requests: number;
  /** Prompt tokens run through the model. */
  evaluatedTokens: number;
  /** Prompt tokens served from the KV cache instead. */
  reusedTokens: number;
  generatedTokens: number;
  last: RequestStats | undefined;
  /** The KV pool as the last request ended (undefined before one has): sequences it holds and blocks in use. */
  kv: KvState | undefined;
}

export interface TokenizeOptions {
  /** Prepend BOS (default: the model's add_bos_token). */
  addBos?: boolean;
  /** Match special-token texts such as '<|eot_id|>' as single ids (default true). */
  parseSpecial?: boolean;
}

export interface DetokenizeOptions {
  /** Drop control tokens such as BOS (default false: they decode to their text). */
  skipSpecial?: boolean;
}

/** Logits for `count` consecutive tokens of an evaluate() request, starting at token `start`. */
export interface LogitsChunk {
  start: number;
  count: number;
  logits: Float32Array; // [count, nVocab]
}

const KV_TYPES = ['f16', 'q8', 'q3'] as const;
const HEAD_TYPES = ['f16', 'q8', 'q4'] as const;
const LOAD_OPTION_KEYS = new Set(['threads', 'contextSize', 'kvType', 'headType', 'layout', 'isa', 'onProgress', 'actQuant', 'sequences']);

/** Maps a model and starts its worker; resolves once the weights are loaded. */
export async function loadModel(path: string, options: LoadModelOptions = {}): Promise<Model> {
  if (typeof path !== 'string' || path === '') throw new RequestError('loadModel: path must be a non-empty string');
  if (typeof options !== 'object' || options === null) throw new RequestError('loadModel: options must be an object');
  for (const key of Object.keys(options)) if (!LOAD_OPTION_KEYS.has(key)) throw new RequestError(`loadModel: unknown option '${key}'`);
  const { threads, contextSize, headType = 'f16', layout = 'auto', isa, actQuant = 'auto', sequences = 4 } = options;
  const kvOpt = options.kvType;
  if (options.onProgress !== undefined && typeof options.onProgress !== 'function')
    throw new RequestError('loadModel: options.onProgress must be a function');
  if (threads !== undefined && !(Number.isInteger(threads) && threads >= 1 && threads <= 1024))
    throw new RequestError(`loadModel: options.threads must be an integer in [1, 1024], got ${String(threads)}`);
  if (contextSize !== undefined && !(Number.isInteger(contextSize) && contextSize >= 2 && contextSize <= 1 << 20))
    throw new RequestError(`loadModel: options.contextSize must be an integer in [2, 1048576], got ${String(contextSize)}`);
  if (!(Number.isInteger(sequences) && sequences >= 1 && sequences <= 256))
    throw new RequestError(`loadModel: options.sequences must be an integer in [1, 256], got ${String(sequences)}`);
  if (kvOpt !== undefined && !(KV_TYPES as readonly string[]).includes(kvOpt))
    throw new RequestError(`loadModel: options.kvType must be 'f16', 'q8' or 'q3', got '${String(kvOpt)}'`);
  if (actQuant !== 'auto' && actQuant !== 'i8') throw new RequestError(`loadModel: options.actQuant must be 'auto' or 'i8', got '${String(actQuant)}'`);
  if (!['auto', 't2r16', 'td3'].includes(layout)) throw new RequestError(`loadModel: options.layout must be 'auto', 't2r16' or 'td3', got '${String(layout)}'`);
  if (!(HEAD_TYPES as readonly string[]).includes(headType)) throw new RequestError(`loadModel: options.headType must be 'f16', 'q8' or 'q4', got '${String(headType)}'`);
  if (isa !== undefined) {
    const supported = cpuInfo().supportedIsas;
    if (!supported.includes(isa)) throw new RequestError(`loadModel: options.isa '${String(isa)}' is not supported on this CPU (supported: ${supported.join(', ')})`);
  }

  // Metadata and tokenizer are read here (the main thread owns text); the worker maps the file again for weights.
  const file = readGguf(path);
  const block = blockKindOf(new GgufMetadata(file).string('general.architecture')) ?? 'attention';
  const hparams = block === 'mamba2' ? mamba2ConfigFromGguf(file) : configFromGguf(file);
  if (block === 'mamba2' && kvOpt !== undefined && kvOpt !== 'f16')
    throw new RequestError(`loadModel: ${path} is ${hparams.arch} (Mamba-2 blocks): it has no KV cache, so options.kvType '${kvOpt}' does not apply`);
  const attn = 'headDim' in hparams ? hparams : undefined;
  const kvType = kvOpt ?? (attn?.row.kv === 'q3' ? 'q3' : 'f16');
  if (kvType !== 'f16' && attn && attn.headDim % 32 !== 0)
    throw new RequestError(`loadModel: a ${kvType} KV cache needs a head size that is a multiple of 32; ${path} has ${attn.headDim}`);
  const tokenizer = Tokenizer.fromGguf(file);
  if (tokenizer.vocabSize > hparams.nVocab)
    throw new RequestError(`${path}: the tokenizer has ${tokenizer.vocabSize} tokens but the model only ${hparams.nVocab} logits`);
  const md = new GgufMetadata(file);
  const byType: Record<string, number> = {};
  for (const t of file.tensors) byType[t.typeName] = (byType[t.typeName] ?? 0) + 1;
  const template = md.string('tokenizer.chat_template', undefined);
  const init: WorkerInit = {
    path, threads, isa, contextSize: contextSize ?? Math.min(4096, hparams.nCtxTrain), sequences, headType, kvType, layout, actQuant,
  };
  const partial = {
    path, name: md.string('general.name', undefined), arch: hparams.arch, hparams, block, fileSize: statSync(path).size,
    tensors: { count: file.tensors.length, byType },
    tokenizer: { model: tokenizer.model, vocabSize: tokenizer.vocabSize, bos: tokenizer.bos, eos: tokenizer.eos, eog: [...tokenizer.eog], addBos: tokenizer.addBos },
    chatFormat: detectChatFormat(tokenizer, template, hparams.arch), contextSize: init.contextSize, sequences, kvType, headType,
  };

  const worker = new Worker(workerUrl(), { workerData: init });
  let onMessage: (msg: WorkerReply) => void = () => {};
  let onError: (err: Error) => void = () => {};
  let onExit: (code: number) => void = () => {};
  const ready = await new Promise<WorkerReady>((resolve, reject) => {
    onMessage = (msg) => {
      if (msg.type === 'ready') resolve(msg);
      else if (msg.type === 'progress') options.onProgress?.(msg.done, msg.total);
      else if (msg.type === 'error') reject(deserializeError(msg.error));
    };
    onError = reject;
    onExit = (code) => reject(new ModelClosedError(`${path}: the model worker exited (code ${code}) while loading`));
    worker.on('message', onMessage).on('error', onError).on('exit', onExit);
  }).catch(async (err: unknown) => {
    await worker.terminate();
    throw err;
  }).finally(() => {
    // Only our own listeners: Worker keeps internal ones that ref its message port.
    worker.off('message', onMessage).off('error', onError).off('exit', onExit);
  });
  const info: ModelInfo = {
    ...partial, layout: ready.layout, linears: ready.linears, isa: ready.isa, threads: ready.threads, kernels: ready.kernels, weightBytes: ready.weightBytes,
    kvBytes: ready.kvBytes, loadMs: ready.loadMs,
  };
  return new Model(worker, info, tokenizer);
}

/** The compiled worker next to this module, or (running from TypeScript sources, e.g. tests) the one in dist/. */
function workerUrl(): URL {
  const compiled = new URL('./engine/worker.js', import.meta.url);
  if (existsSync(compiled)) return compiled;
  return new URL('../dist/engine/worker.js', import.meta.url);
}

// ---------------------------------------------------------------- requests

/** An async queue of worker messages for one request: push from the message handler, pull by the consumer. */
class MessageQueue<T> {
  private readonly items: T[] = [];
  private waiter: { resolve: (r: IteratorResult<T, undefined>) => void; reject: (e: unknown) => void } | undefined;
  private ended = false;
  private error: unknown;

  push(item: T): void {
    if (this.ended) return;
    if (this.waiter) {
      this.waiter.resolve({ value: item, done: false });
      this.waiter = undefined;
    } else this.items.push(item);
  }

  end(error?: unknown): void {
    if (this.ended) return;
    this.ended = true;
    this.error = error;
    if (this.waiter) {
      if (error !== undefined) this.waiter.reject(error);
      else this.waiter.resolve({ value: undefined, done: true });
      this.waiter = undefined;
    }
  }

  next(): Promise<IteratorResult<T, undefined>> {
    if (this.items.length > 0) return Promise.resolve({ value: this.items.shift()!, done: false });
    if (this.ended) return this.error !== undefined ? Promise.reject(this.error) : Promise.resolve({ value: undefined, done: true });
    return new Promise((resolve, reject) => (this.waiter = { resolve, reject }));
  }
}

type TokenMessage = Extract<WorkerReply, { type: 'token' }>;
type LogitsMessage = Extract<WorkerReply, { type: 'logits' }>;

type JobRequest = Extract<WorkerRequest, { type: 'generate' | 'evaluate' }>;

class Job {
  state: 'running' | 'finished' = 'running';
  readonly events = new MessageQueue<TokenMessage | LogitsMessage>();
  readonly done: Promise<RequestStats>;
  resolve!: (s: RequestStats) => void;
  reject!: (e: unknown) => void;

  constructor(readonly request: JobRequest) {
    this.done = new Promise<RequestStats>((resolve, reject) => {
      this.resolve = resolve;
      this.reject = reject;
    });
    this.done.catch(() => {}); // the consumer sees the error through `events`; never an unhandled rejection
  }

  finish(stats: RequestStats): void {
    this.state = 'finished';
    this.events.end();
    this.resolve(stats);
  }

  fail(err: unknown): void {
    this.state = 'finished';
    this.events.end(err);
    this.reject(err);
  }
}

function idleStats(promptTokens: number, finishReason: FinishReason): RequestStats {
  return { promptTokens, reusedTokens: 0, evaluatedTokens: 0, generatedTokens: 0, prefillMs: 0, decodeMs: 0, decodeTps: 0, finishReason };
}

// ---------------------------------------------------------------- model

export class Model {
  readonly info: ModelInfo;
  readonly tokenizer: Tokenizer;
  /** Requests the worker holds (queued in its scheduler or running), by id. */
  private readonly jobs = new Map<number, Job>();
  private nextId = 1;
  private closedError: Error | undefined;
  private readonly totals: ModelStats = { requests: 0, evaluatedTokens: 0, reusedTokens: 0, generatedTokens: 0, last: undefined, kv: undefined };
  /** Sequences reserved by live contexts (chats included): at most info.sequences. */
  private reservedSequences = 0;
  private nextSequenceKey = 1;
  /** What contexts and sequences reach of this model. */
  private readonly host: SequenceHost = {
    model: this,
    hold: (key) => this.worker.postMessage({ type: 'hold', key } satisfies WorkerRequest),
    release: (key) => {
      if (!this.closed) this.worker.postMessage({ type: 'release', key } satisfies WorkerRequest);
    },
    unreserve: (n) => {
      this.reservedSequences -= n;
    },
    newKey: () => this.nextSequenceKey++,
    stream: (tokens, opts, what, session) => this.stream(tokens, opts, what, session),
    evaluate: (tokens, signal, session) => this.evaluateTokens(tokens, signal, session),
    assertOpen: (what) => this.assertOpen(what),
  };

  /** Use loadModel(). */
  constructor(private readonly worker: Worker, info: ModelInfo, tokenizer: Tokenizer) {
    this.info = info;
    this.tokenizer = tokenizer;
    worker.on('message', (msg: WorkerReply) => this.onMessage(msg));
    worker.on('error', (err) => this.shutDown(new ModelClosedError(`${info.path}: the model worker failed: ${err.message}`)));
    worker.on('exit', (code) => this.shutDown(new ModelClosedError(`${info.path}: the model worker exited (code ${code})`)));
    worker.unref(); // an idle model does not keep the process alive
  }

  get closed(): boolean {
    return this.closedError !== undefined;
  }

  get stats(): ModelStats {
    return { ...this.totals, last: this.totals.last && { ...this.totals.last }, kv: this.totals.kv && { ...this.totals.kv } };
  }

  tokenize(text: string, options: TokenizeOptions = {}): number[] {
    this.assertOpen('tokenize');
    if (typeof text !== 'string') throw new RequestError('tokenize: text must be a string');
    return this.tokenizer.encode(text, { addBos: options.addBos, parseSpecial: options.parseSpecial });
  }

  detokenize(ids: readonly number[], options: DetokenizeOptions = {}): string {
    this.assertOpen('detokenize');
    if (!Array.isArray(ids)) throw new RequestError('detokenize: ids must be an array of token ids');
    if (ids.length === 0) return '';
    return this.tokenizer.decode(validatePromptIds(ids, this.tokenizer.vocabSize, 'detokenize'), { skipSpecial: options.skipSpecial });
  }

  /**
   * Streams tokens sampled after `prompt` (text, tokenized with the model's BOS rule, or token ids). The
   * iterator's return value (visible to manual next() calls) is the whole result with its stats.
   * Independent of earlier and concurrent requests: calls made while others run share each forward (up to
   * options.sequences at once, then in order), and a prompt prefix cached by an earlier request is reused,
   * which gives the same numbers as recomputing it (the batched forward is batch-invariant).
   */
  async *generate(prompt: string | readonly number[], opts?: GenerateOptions): AsyncGenerator<GenerateChunk, GenerationResult, undefined> {
    this.assertOpen('generate');
    const validated = validateGenerateOptions(opts, this.tokenizer.vocabSize, 'generate');
    let ids: number[];
    if (typeof prompt === 'string') {
      if (prompt.length === 0) throw new RequestError('generate: prompt is empty');
      ids = this.tokenizer.encode(prompt);
    } else if (Array.isArray(prompt)) ids = validatePromptIds(prompt, this.tokenizer.vocabSize, 'generate').slice();
    else throw new RequestError('generate: prompt must be a string or an array of token ids');
    return yield* this.stream(ids, validated, 'generate');
  }

  /**
   * Reserves `options.sequences` (default 1) of the model's sequences for the context's held sequences
   * (getSequence): their KV outlives each request, so every turn computes only its new tokens, and it is never
   * evicted. Contexts (chats included) may reserve at most loadModel's `sequences` in all; dispose() gives them
   * back (so does garbage collection of an unreachable context). Plain generate() calls keep running beside them,
   * in the KV the held sequences leave free.
   */
  createContext(options: ContextOptions = {}): Context {
    this.assertOpen('createContext');
    if (typeof options !== 'object' || options === null) throw new RequestError('createContext: options must be an object');
    for (const key of Object.keys(options)) if (key !== 'sequences') throw new RequestError(`createContext: unknown option '${key}'`);
    const { sequences = 1 } = options;
    if (!(Number.isInteger(sequences) && sequences >= 1))
      throw new RequestError(`createContext: options.sequences must be an integer >= 1, got ${String(sequences)}`);
    const free = this.info.sequences - this.reservedSequences;
    if (sequences > free)
      throw new RequestError(`createContext: ${sequences} sequence(s) asked, but ${this.reservedSequences} of the model's ${this.info.sequences} `
        + `are reserved by other contexts or chats (${free} free): dispose contexts or chats that are done, or load the model with more sequences`);
    this.reservedSequences += sequences;
    return new Context(this.host, sequences);
  }

  /**
   * A chat session. It owns a held sequence (options.sequence, or one from a new one-sequence context), so each
   * turn computes only its new tokens; dispose() frees it.
   */
  createChat(options: CreateChatOptions = {}): Chat {
    this.assertOpen('createChat');
    if (typeof options !== 'object' || options === null) throw new RequestError('createChat: options must be an object');
    const { system, format, sequence } = options;
    if (system !== undefined && typeof system !== 'string') throw new RequestError('createChat: options.system must be a string');
    if (format !== undefined && !CHAT_FORMATS.includes(format))
      throw new RequestError(`createChat: options.format must be one of ${CHAT_FORMATS.join(', ')}, got '${String(format)}'`);
    if (sequence !== undefined && !(sequence instanceof Sequence && sequence.context.model === this))
      throw new RequestError('createChat: options.sequence must be a Sequence of this model (model.createContext().getSequence())');
    if (sequence?.disposed) throw new RequestError('createChat: options.sequence is disposed');
    const name: ChatFormatName = format ?? this.info.chatFormat.name;
    let seq = sequence;
    let ownContext: Context | undefined;
    if (!seq) {
      ownContext = this.createContext({ sequences: 1 });
      seq = ownContext.getSequence();
    }
    const owned = seq;
    const backend = {
      tokenizer: this.tokenizer,
      generate: (tokens: number[], o: ValidatedGenerateOptions) => owned.runTokens(tokens, o, 'chat'),
      dispose: () => (ownContext ? ownContext.dispose() : owned.dispose()),
    };
    return new Chat(backend, chatTemplate(name, templateTokens(this.tokenizer, name)), system);
  }

  /**
   * Runs `tokens` from an empty context and streams the logits after every token, a prefill chunk at a time
   * (e.g. for perplexity). The return value is the request's stats.
   */
  async *evaluate(tokens: readonly number[], opts: { signal?: AbortSignal } = {}): AsyncGenerator<LogitsChunk, RequestStats, undefined> {
    this.assertOpen('evaluate');
    const ids = validatePromptIds(tokens, this.tokenizer.vocabSize, 'evaluate').slice();
    if (ids.length > this.info.contextSize)
      throw new ContextOverflowError(`evaluate: ${ids.length} tokens exceed contextSize ${this.info.contextSize}`);
    return yield* this.evaluateTokens(ids, opts.signal, undefined);
  }

  /** Stops the worker; pending and later requests reject with ModelClosedError. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.shutDown(new ModelClosedError(`${this.info.path}: the model is closed`));
    await this.worker.terminate();
  }

  // ------------------------------------------------------------ internals

  /** evaluate() of checked tokens, on a held sequence or from an empty one. */
  private async *evaluateTokens(ids: number[], signal: AbortSignal | undefined, session: number | undefined): AsyncGenerator<LogitsChunk, RequestStats, undefined> {
    if (signal?.aborted) return idleStats(ids.length, 'abort');
    const job = this.submit({ type: 'evaluate', id: this.nextId++, tokens: ids, ...(session !== undefined && { session }) });
    const onAbort = () => this.stop(job);
    signal?.addEventListener('abort', onAbort, { once: true });
    try {
      for (;;) {
        const ev = await job.events.next();
        if (ev.done || signal?.aborted) break;
        if (ev.value.type === 'logits') yield { start: ev.value.start, count: ev.value.count, logits: ev.value.logits };
      }
      return await job.done;
    } finally {
      signal?.removeEventListener('abort', onAbort);
      if (job.state !== 'finished') this.stop(job);
    }
  }

  /** The generation loop shared by generate(), sequences and chats: queue a request, turn its tokens into text chunks. */
  private async *stream(tokens: number[], opts: ValidatedGenerateOptions, what: string, session?: number): AsyncGenerator<GenerateChunk, GenerationResult, undefined> {
    this.assertOpen(what);
    const maxTokens = fitContext(tokens.length, opts.maxTokens, this.info.contextSize, what);
    if (opts.signal?.aborted) return { tokens: [], text: '', finishReason: 'abort', stats: idleStats(tokens.length, 'abort') };
    // After a special token (BOS, an assistant header) SentencePiece's leading space is not part of the text.
    const text = new TextStream(this.tokenizer, opts.stop, !this.tokenizer.isSpecial(tokens[tokens.length - 1]!));
    const job = this.submit({
      type: 'generate', id: this.nextId++, tokens, maxTokens, sampler: opts.sampler, eog: opts.ignoreEog ? [] : [...this.tokenizer.eog],
      profile: opts.profile,
      vocabSize: this.tokenizer.vocabSize,
      ...(opts.logprobs !== undefined && { logprobs: opts.logprobs }),
      ...(session !== undefined && { session }),
    });
    const onAbort = () => this.stop(job);
    opts.signal?.addEventListener('abort', onAbort, { once: true });
    const out: number[] = [];
    let all = '';
    let finish: FinishReason | undefined;
    try {
      for (;;) {
        const ev = await job.events.next();
        if (ev.done || opts.signal?.aborted) break;
        if (ev.value.type !== 'token') continue;
        const chunk: GenerateChunk = { text: text.push(ev.value.token, ev.value.last), token: ev.value.token };
        const lp = ev.value.logprobs;
        if (lp) {
          chunk.logprob = lp.logprob;
          chunk.topLogprobs = lp.top.map(([token, logprob]) => ({ token, logprob }));
        }
        out.push(chunk.token);
        all += chunk.text;
        if (text.stopped) {
          finish = 'stop';
          this.stop(job); // before yielding: the worker should not wait on the consumer
        }
        yield chunk;
        if (finish) break;
      }
      const stats = await job.done;
      finish ??= opts.signal?.aborted ? 'abort' : stats.finishReason;
      stats.finishReason = finish; // the worker only knows it was stopped, not why (also updates stats.last)
      return { tokens: out, text: all, finishReason: finish, stats: { ...stats } };
    } finally {
      opts.signal?.removeEventListener('abort', onAbort);
      if (job.state !== 'finished') this.stop(job);
    }
  }

  private assertOpen(what: string): void {
    if (this.closedError) throw new ModelClosedError(`${what}: ${this.closedError.message}`);
  }

  private submit(request: JobRequest): Job {
    const job = new Job(request);
    this.jobs.set(request.id, job);
    this.worker.postMessage(request);
    this.worker.ref(); // busy: keep the process alive until the worker answers
    return job;
  }

  /** Ends a request at the worker's next step (a queued one before it runs). */
  private stop(job: Job): void {
    if (job.state === 'running') this.worker.postMessage({ type: 'cancel', id: job.request.id } satisfies WorkerRequest);
  }

  private onMessage(msg: WorkerReply): void {
    if (msg.type === 'ready' || msg.type === 'progress') return;
    const job = this.jobs.get(msg.id);
    if (!job) return;
    if (msg.type === 'token' || msg.type === 'logits') job.events.push(msg);
    else {
      this.jobs.delete(msg.id);
      if (this.jobs.size === 0) this.worker.unref();
      if (msg.kv) this.totals.kv = msg.kv;
      if (msg.type === 'done') {
        const t = this.totals;
        t.requests++;
        t.evaluatedTokens += msg.stats.evaluatedTokens;
        t.reusedTokens += msg.stats.reusedTokens;
        t.generatedTokens += msg.stats.generatedTokens;
        t.last = msg.stats;
        job.finish(msg.stats);
      } else job.fail(deserializeError(msg.error));
    }
  }

  private shutDown(err: Error): void {
    if (this.closedError) return;
    this.closedError = err;
    for (const job of this.jobs.values()) job.fail(err);
    this.jobs.clear();
    this.worker.unref();
  }
}

// ---------------------------------------------------------------- contexts and held sequences

export interface ContextOptions {
  /** Held sequences the context may hand out at once (default 1), reserved out of loadModel's `sequences`. */
  sequences?: number;
}

export interface CreateChatOptions extends ChatOptions {
  /** The held sequence the chat runs on (the chat owns it from now on: chat.dispose() disposes it). */
  sequence?: Sequence;
}

/** What contexts and sequences need of their model (Model.host). */
interface SequenceHost {
  readonly model: Model;
  hold(key: number): void;
  release(key: number): void;
  unreserve(n: number): void;
  newKey(): number;
  stream(tokens: number[], opts: ValidatedGenerateOptions, what: string, session: number): AsyncGenerator<GenerateChunk, GenerationResult, undefined>;
  evaluate(tokens: number[], signal: AbortSignal | undefined, session: number): AsyncGenerator<LogitsChunk, RequestStats, undefined>;
  assertOpen(what: string): void;
}

/** A held sequence's bookkeeping, kept apart from the Sequence object so that a finalizer can free it. */
interface HeldState {
  key: number;
  released: boolean;
}

/** Context bookkeeping a finalizer can act on: its model, its reservation and its live sequences. */
interface ContextState {
  host: SequenceHost;
  reserved: number;
  disposed: boolean;
  live: Set<HeldState>;
}

function releaseHeld(ctx: ContextState, state: HeldState): void {
  if (state.released) return;
  state.released = true;
  ctx.live.delete(state);
  ctx.host.release(state.key);
}

function disposeContext(ctx: ContextState): void {
  if (ctx.disposed) return;
  ctx.disposed = true;
  for (const state of [...ctx.live]) releaseHeld(ctx, state);
  ctx.host.unreserve(ctx.reserved);
}

// Sequences and contexts dropped without dispose() give their KV and reservation back when collected.
const sequenceFinalizer = new FinalizationRegistry<{ ctx: ContextState; state: HeldState }>(({ ctx, state }) => releaseHeld(ctx, state));
const contextFinalizer = new FinalizationRegistry<ContextState>((ctx) => disposeContext(ctx));

/**
 * A share of a model's sequences (Model.createContext): getSequence() hands out held sequences, up to
 * `sequences` at once; a disposed sequence's place can be taken again.
 */
export class Context {
  readonly sequences: number;
  private readonly state: ContextState;

  /** Use Model.createContext(). */
  constructor(host: SequenceHost, sequences: number) {
    this.sequences = sequences;
    this.state = { host, reserved: sequences, disposed: false, live: new Set() };
    contextFinalizer.register(this, this.state, this);
  }

  get model(): Model {
    return this.state.host.model;
  }

  get disposed(): boolean {
    return this.state.disposed;
  }

  /** Sequences getSequence() can still hand out. */
  get sequencesLeft(): number {
    return this.state.disposed ? 0 : this.sequences - this.state.live.size;
  }

  /** A new, empty held sequence. Throws RequestError when the context's sequences are all in use. */
  getSequence(): Sequence {
    this.state.host.assertOpen('getSequence');
    if (this.state.disposed) throw new RequestError('getSequence: the context is disposed');
    if (this.state.live.size >= this.sequences)
      throw new RequestError(`getSequence: all ${this.sequences} sequence(s) of this context are in use; dispose one or create the context with more`);
    const held: HeldState = { key: this.state.host.newKey(), released: false };
    this.state.host.hold(held.key);
    this.state.live.add(held);
    return new Sequence(this, this.state, held);
  }

  /** Disposes every sequence of the context and gives its reservation back to the model. */
  dispose(): void {
    contextFinalizer.unregister(this);
    disposeContext(this.state);
  }
}

/**
 * A held sequence: the tokens it has been given and has sampled (`tokens`) stay in the model's KV between
 * requests, so generate() and evaluate() append to it and compute only what is new. truncate() rewinds it
 * (the KV past the kept tokens is dropped at its next request). One request at a time.
 */
export class Sequence {
  readonly context: Context;
  private history: number[] = [];
  private busy = false;

  /** Use Context.getSequence(). */
  constructor(context: Context, private readonly ctx: ContextState, private readonly held: HeldState) {
    this.context = context;
    sequenceFinalizer.register(this, { ctx, state: held }, this);
  }

  get disposed(): boolean {
    return this.held.released;
  }

  /** Everything the sequence holds: prompts given and tokens sampled, in order. */
  get tokens(): number[] {
    return this.history.slice();
  }

  get length(): number {
    return this.history.length;
  }

  /** Tokens the sequence may hold in all (the model's contextSize). */
  get contextSize(): number {
    return this.context.model.info.contextSize;
  }

  /**
   * Appends `prompt` (text is tokenized with the model's BOS rule when the sequence is empty, without BOS after)
   * and streams tokens sampled after everything the sequence holds. An empty prompt continues from the tokens
   * held. The sampled tokens are appended as they are yielded (up to where the consumer stopped).
   */
  async *generate(prompt: string | readonly number[], opts?: GenerateOptions): AsyncGenerator<GenerateChunk, GenerationResult, undefined> {
    const what = 'sequence.generate';
    this.check(what);
    const model = this.context.model;
    const validated = validateGenerateOptions(opts, model.tokenizer.vocabSize, what);
    let ids: number[];
    if (typeof prompt === 'string') ids = prompt === '' ? [] : model.tokenizer.encode(prompt, this.history.length > 0 ? { addBos: false } : {});
    else if (Array.isArray(prompt)) ids = prompt.length === 0 ? [] : validatePromptIds(prompt, model.tokenizer.vocabSize, what).slice();
    else throw new RequestError(`${what}: prompt must be a string or an array of token ids`);
    if (ids.length === 0 && this.history.length === 0) throw new RequestError(`${what}: prompt is empty and the sequence holds no tokens`);
    return yield* this.runTokens([...this.history, ...ids], validated, what);
  }

  /**
   * Appends `tokens` and streams the logits after each of them (`start` counts from the beginning of the
   * sequence, so the first chunk starts at the length it had). The return value is the request's stats.
   */
  async *evaluate(tokens: readonly number[], opts: { signal?: AbortSignal } = {}): AsyncGenerator<LogitsChunk, RequestStats, undefined> {
    const what = 'sequence.evaluate';
    this.check(what);
    const model = this.context.model;
    const ids = validatePromptIds(tokens, model.tokenizer.vocabSize, what);
    const full = [...this.history, ...ids];
    if (full.length > this.contextSize)
      throw new ContextOverflowError(`${what}: the sequence holds ${this.history.length} tokens; + ${ids.length} = ${full.length} exceed contextSize ${this.contextSize}`);
    const from = this.history.length;
    this.busy = true;
    let reached = from;
    let failed = false;
    try {
      const it = this.ctx.host.evaluate(full, opts.signal, this.held.key);
      for (;;) {
        const r = await it.next();
        if (r.done) return r.value;
        const c = r.value;
        const end = c.start + c.count;
        if (end <= from) continue;
        reached = end;
        if (c.start >= from) yield c;
        else {
          const skip = from - c.start;
          const width = c.logits.length / c.count;
          yield { start: from, count: c.count - skip, logits: c.logits.subarray(skip * width) };
        }
      }
    } catch (err) {
      failed = true;
      throw err;
    } finally {
      this.busy = false;
      // What the model computed is kept (an abort keeps the rows reported so far).
      if (!failed) this.history = full.slice(0, reached);
    }
  }

  /** Keeps the first `length` tokens (the KV past them is dropped at the next request). */
  truncate(length: number): void {
    this.check('sequence.truncate');
    if (!(Number.isInteger(length) && length >= 0 && length <= this.history.length))
      throw new RequestError(`sequence.truncate: length must be an integer in [0, ${this.history.length}], got ${String(length)}`);
    this.history.length = length;
  }

  /** Forgets every token. */
  clear(): void {
    this.truncate(0);
  }

  /** Frees the sequence's KV (after its running request, if any) and its place in the context. */
  dispose(): void {
    sequenceFinalizer.unregister(this);
    releaseHeld(this.ctx, this.held);
  }

  /** @internal Runs `tokens` (the whole sequence as it should be) and records it and what was sampled. */
  async *runTokens(tokens: number[], opts: ValidatedGenerateOptions, what: string): AsyncGenerator<GenerateChunk, GenerationResult, undefined> {
    this.check(what);
    this.busy = true;
    const sampled: number[] = [];
    let failed = false;
    try {
      const it = this.ctx.host.stream(tokens, opts, what, this.held.key);
      for (;;) {
        const r = await it.next();
        if (r.done) return r.value;
        sampled.push(r.value.token);
        yield r.value;
      }
    } catch (err) {
      failed = true;
      throw err;
    } finally {
      this.busy = false;
      // A failed request leaves the sequence as it was; a finished or abandoned one holds what it got to.
      if (!failed) this.history = [...tokens, ...sampled];
    }
  }

  private check(what: string): void {
    this.ctx.host.assertOpen(what);
    if (this.held.released) throw new RequestError(`${what}: the sequence is disposed`);
    if (this.busy) throw new RequestError(`${what}: the sequence is already running a request; wait for it or abort it`);
  }
}
