// Generation on the main thread's side: option validation, streaming text with stop strings, and the
// message protocol spoken with the compute worker (worker.ts). Nothing here touches the kernels.
import { BitllmError, ModelFormatError, NativeError } from '../errors.js';
import type { Isa } from '../native.js';
import type { StreamingDecoder, Tokenizer } from '../tokenizer/index.js';
import { TokenizerError } from '../tokenizer/index.js';
import { ContextOverflowError } from '../model/kv-cache.js';
import { Sampler, SamplerError, type SamplerOptions, type TokenLogprobs } from './sampler.js';

/** A request is malformed: a bad option value, an empty prompt, a token id outside the vocabulary. */
export class RequestError extends BitllmError {}

/** The model was closed (or its worker died); no more requests are accepted. */
export class ModelClosedError extends BitllmError {}

/**
 * Prompts are fed to the model in chunks of this many tokens, so a long prompt never forms one huge batch
 * (and an abort is seen between chunks). 128: the batched GEMMs run ~4 % faster than at 64 (measured on
 * the 2B-4T shape), and a chunk stays well under a second.
 */
export const PREFILL_CHUNK = 128;

// ---------------------------------------------------------------- public types

/** Sampling options (lib/engine/sampler.ts) plus the request's length, stop strings and abort signal. */
export interface GenerateOptions extends SamplerOptions {
  /** Most tokens to sample (default: until EOG or the context is full). */
  maxTokens?: number;
  /** Generation ends before the first occurrence of any of these; none of it is emitted. */
  stop?: string[];
  /** Aborting ends the stream within one token (the iteration ends normally, finishReason 'abort'). */
  signal?: AbortSignal;
  /** Keep sampling past end-of-generation tokens (benchmarks; default false). */
  ignoreEog?: boolean;
  /** Time every op class per token; the result's stats.profile holds the breakdown (default false). */
  profile?: boolean;
  /**
   * Report each sampled token's log-probability and this many most likely alternatives (0..20), under the
   * model's distribution (log-softmax of the raw logits, before bias, penalties and temperature). Default: off.
   */
  logprobs?: number;
}

/**
 * One sampled token and the text it releases. Text can be '' (half a UTF-8 character, or text held back
 * because it may begin a stop string) and is released with a later token. An EOG token ends the stream and
 * is yielded with whatever text was still held; the token that completes a stop string is yielded with the
 * text before the stop string, and the stream ends.
 */
export interface GenerateChunk {
  text: string;
  token: number;
  /** With options.logprobs: the token's log-probability. */
  logprob?: number;
  /** With options.logprobs: the most likely tokens at this step, best first. */
  topLogprobs?: Array<{ token: number; logprob: number }>;
}

export type FinishReason = 'eog' | 'length' | 'stop' | 'abort';

/**
 * Where one phase's time went, in milliseconds per token. `ops` are the native kernels by op class (GEMMs by
 * tensor kind, attention, norms, head, ...); `overhead` is everything outside them: `native` (the forward's
 * own orchestration and thread hand-offs), `napi` (the N-API call, argument checks and the JS around a
 * forward), `sampling`, and `loop` (the worker's token loop and messages). `overheadPct` = overhead / wall.
 */
export interface PhaseProfile {
  tokens: number;
  wallMsPerToken: number;
  ops: Record<string, number>;
  overhead: { native: number; napi: number; sampling: number; loop: number };
  overheadPct: number;
}

export interface RequestProfile {
  prefill: PhaseProfile | undefined;
  decode: PhaseProfile | undefined;
}

/** Costs of one request, measured in the worker. */
export interface RequestStats {
  /** Tokens in the prompt (the whole conversation for a chat turn). */
  promptTokens: number;
  /** Prompt tokens whose K/V were already cached (not recomputed). */
  reusedTokens: number;
  /** Prompt tokens run through the model: promptTokens - reusedTokens. */
  evaluatedTokens: number;
  generatedTokens: number;
  prefillMs: number;
  /** Time from the first sampled token to the last. */
  decodeMs: number;
  /** (generatedTokens - 1) / decode seconds; 0 with fewer than 2 tokens. */
  decodeTps: number;
  finishReason: FinishReason;
  /** With options.profile: the per-op breakdown of prefill and decode. */
  profile?: RequestProfile;
}

/** The return value of a generate() iterator. */
export interface GenerationResult {
  tokens: number[];
  text: string;
  finishReason: FinishReason;
  stats: RequestStats;
}

/** Options after validation: what the worker and the text stream need. */
export interface ValidatedGenerateOptions {
  maxTokens: number | undefined;
  sampler: SamplerOptions;
  stop: string[];
  signal: AbortSignal | undefined;
  ignoreEog: boolean;
  profile: boolean;
  logprobs: number | undefined;
}

/** Most alternatives options.logprobs may ask for. */
export const MAX_TOP_LOGPROBS = 20;

// ---------------------------------------------------------------- validation

const OPTION_KEYS = new Set([
  'maxTokens', 'temperature', 'topK', 'topP', 'minP', 'repeatPenalty', 'frequencyPenalty', 'presencePenalty',
  'penaltyWindow', 'logitBias', 'seed', 'stop', 'signal', 'ignoreEog', 'profile', 'logprobs',
]);

/** Checks every option (RequestError naming it); `what` prefixes messages, e.g. 'generate'. */
export function validateGenerateOptions(opts: GenerateOptions | undefined, vocabSize: number, what: string): ValidatedGenerateOptions {
  if (opts === undefined) opts = {};
  if (typeof opts !== 'object' || opts === null) throw new RequestError(`${what}: options must be an object`);
  for (const key of Object.keys(opts)) if (!OPTION_KEYS.has(key)) throw new RequestError(`${what}: unknown option '${key}'`);
  const { maxTokens, stop, signal, logitBias } = opts;
  if (maxTokens !== undefined && !(Number.isInteger(maxTokens) && maxTokens >= 1))
    throw new RequestError(`${what}: options.maxTokens must be an integer >= 1, got ${String(maxTokens)}`);
  if (stop !== undefined) {
    if (!Array.isArray(stop)) throw new RequestError(`${what}: options.stop must be an array of strings`);
    stop.forEach((s, i) => {
      if (typeof s !== 'string' || s.length === 0) throw new RequestError(`${what}: options.stop[${i}] must be a non-empty string`);
    });
  }
  if (signal !== undefined && !(signal instanceof AbortSignal)) throw new RequestError(`${what}: options.signal must be an AbortSignal`);
  for (const key of ['ignoreEog', 'profile'] as const)
    if (opts[key] !== undefined && typeof opts[key] !== 'boolean') throw new RequestError(`${what}: options.${key} must be a boolean, got ${String(opts[key])}`);
  for (const key of ['temperature', 'topK', 'topP', 'minP', 'repeatPenalty', 'frequencyPenalty', 'presencePenalty', 'penaltyWindow', 'seed'] as const) {
    const v = opts[key];
    if (v !== undefined && (typeof v !== 'number' || !Number.isFinite(v)))
      throw new RequestError(`${what}: options.${key} must be a finite number, got ${String(v)}`);
  }
  if (opts.logprobs !== undefined && !(Number.isInteger(opts.logprobs) && opts.logprobs >= 0 && opts.logprobs <= MAX_TOP_LOGPROBS))
    throw new RequestError(`${what}: options.logprobs must be an integer in [0, ${MAX_TOP_LOGPROBS}], got ${String(opts.logprobs)}`);
  if (opts.seed !== undefined && !Number.isInteger(opts.seed)) throw new RequestError(`${what}: options.seed must be an integer, got ${opts.seed}`);
  if (logitBias !== undefined) {
    if (typeof logitBias !== 'object' || logitBias === null) throw new RequestError(`${what}: options.logitBias must be an object or a Map`);
    const keys = logitBias instanceof Map ? [...logitBias.keys()] : Object.keys(logitBias).map(Number);
    for (const id of keys)
      if (!(Number.isInteger(id) && id >= 0 && id < vocabSize))
        throw new RequestError(`${what}: options.logitBias has key ${String(id)}, not a token id (vocabulary 0..${vocabSize - 1})`);
  }
  const sampler: SamplerOptions = {
    temperature: opts.temperature, topK: opts.topK, topP: opts.topP, minP: opts.minP, repeatPenalty: opts.repeatPenalty,
    frequencyPenalty: opts.frequencyPenalty, presencePenalty: opts.presencePenalty, penaltyWindow: opts.penaltyWindow,
    // Maps do not survive postMessage as plain objects do; send [id, bias] pairs as a Map (structured-cloneable).
    logitBias: logitBias === undefined ? undefined : new Map(logitBias instanceof Map ? logitBias : Object.entries(logitBias).map(([k, v]) => [Number(k), v])),
    // A random seed is drawn here so that the worker never depends on Math.random for a request.
    seed: opts.seed ?? Math.floor(Math.random() * 2 ** 32),
  };
  try {
    new Sampler(sampler); // the sampler's own range checks, reported as request errors
  } catch (err) {
    if (err instanceof SamplerError) throw new RequestError(`${what}: ${err.message.replace(/^sampler: /, 'options.')}`, { cause: err });
    throw err;
  }
  return { maxTokens, sampler, stop: stop ? [...stop] : [], signal, ignoreEog: opts.ignoreEog ?? false, profile: opts.profile ?? false,
    logprobs: opts.logprobs };
}

/** A prompt given as ids: non-empty, every id in the vocabulary. */
export function validatePromptIds(ids: readonly unknown[], vocabSize: number, what: string): number[] {
  if (ids.length === 0) throw new RequestError(`${what}: prompt is empty`);
  ids.forEach((id, i) => {
    if (!(typeof id === 'number' && Number.isInteger(id) && id >= 0 && id < vocabSize))
      throw new RequestError(`${what}: prompt[${i}] = ${String(id)} is not a token id (vocabulary 0..${vocabSize - 1})`);
  });
  return ids as number[];
}

/** Throws ContextOverflowError when prompt + maxTokens do not fit; returns the effective maxTokens. */
export function fitContext(promptTokens: number, maxTokens: number | undefined, contextSize: number, what: string): number {
  if (promptTokens >= contextSize)
    throw new ContextOverflowError(`${what}: prompt of ${promptTokens} tokens does not fit contextSize ${contextSize} (it must leave room for at least one generated token)`);
  if (maxTokens === undefined) return contextSize - promptTokens;
  if (promptTokens + maxTokens > contextSize)
    throw new ContextOverflowError(`${what}: prompt of ${promptTokens} tokens + maxTokens ${maxTokens} = ${promptTokens + maxTokens} exceeds contextSize ${contextSize}`);
  return maxTokens;
}

// ---------------------------------------------------------------- streaming text

/**
 * Turns sampled tokens into text chunks: UTF-8-safe through the tokenizer's streaming decoder, special tokens
 * dropped, and text that could still grow into a stop string held back until it cannot.
 */
export class TextStream {
  private readonly decoder: StreamingDecoder;
  /** Decoded text not yet released (always a possible start of a stop string, or empty). */
  private pending = '';
  stopped = false;

  constructor(private readonly tokenizer: Tokenizer, private readonly stops: readonly string[], continues: boolean) {
    this.decoder = tokenizer.createDecoder({ skipSpecial: true, continues });
  }

  /** The text released by `token`; `final` releases everything still held (end of the stream). */
  push(token: number, final: boolean): string {
    if (this.stopped) return '';
    if (!this.tokenizer.isEog(token)) this.pending += this.decoder.push(token);
    if (final) this.pending += this.decoder.flush();
    let cut = -1;
    for (const s of this.stops) {
      const at = this.pending.indexOf(s);
      if (at >= 0 && (cut < 0 || at < cut)) cut = at;
    }
    if (cut >= 0) {
      this.stopped = true;
      const text = this.pending.slice(0, cut);
      this.pending = '';
      return text;
    }
    const hold = final ? 0 : this.heldLength();
    const text = this.pending.slice(0, this.pending.length - hold);
    this.pending = this.pending.slice(this.pending.length - hold);
    return text;
  }

  /** Length of the longest suffix of `pending` that is a proper prefix of some stop string. */
  private heldLength(): number {
    let hold = 0;
    for (const s of this.stops) {
      for (let k = Math.min(s.length - 1, this.pending.length); k > hold; k--) {
        if (this.pending.endsWith(s.slice(0, k))) {
          hold = k;
          break;
        }
      }
    }
    // Never split a UTF-16 surrogate pair between chunks.
    if (hold > 0 && hold < this.pending.length) {
      const c = this.pending.charCodeAt(this.pending.length - hold);
      if (c >= 0xdc00 && c <= 0xdfff) hold++;
    }
    return hold;
  }
}

// ---------------------------------------------------------------- worker protocol

export interface WorkerInit {
  path: string;
  threads: number | undefined;
  isa: Isa | undefined;
  contextSize: number;
  /** Sequences the scheduler runs at once; the KV pool holds contextSize x sequences tokens. */
  sequences: number;
  headType: 'f16' | 'q8' | 'q4';
  layout: 'auto' | 't2r16' | 'td3';
  actQuant: 'auto' | 'i8';
  kvType: 'f16' | 'q8' | 'q3';
}

export type WorkerRequest =
  | {
      type: 'generate'; id: number; tokens: number[]; maxTokens: number; sampler: SamplerOptions; eog: number[];
      profile: boolean;
      /** Tokens the tokenizer knows; logits past it (padding rows of the head) are never sampled. */
      vocabSize: number;
      /** Alternatives per token to report with log-probabilities (undefined: none computed). */
      logprobs?: number;
      /** A held sequence (hold): the request continues from its KV and leaves its KV there. */
      session?: number;
    }
  | { type: 'evaluate'; id: number; tokens: number[]; session?: number }
  /** Names a held sequence (Model.createContext / getSequence): its KV outlives its requests. */
  | { type: 'hold'; key: number }
  /** Frees a held sequence's KV (after its running request, if any). */
  | { type: 'release'; key: number }
  /** Ends request `id` at the next step (a queued one at once); unknown ids are ignored. */
  | { type: 'cancel'; id: number };

export interface WorkerReady {
  type: 'ready';
  layout: 't2r16' | 'td3';
  /** The kernel layouts of the projections, distinct, in order of first appearance. */
  linears: string[];
  isa: Isa;
  threads: number;
  kernels: Record<string, string>;
  weightBytes: number;
  kvBytes: number;
  loadMs: number;
}

export type WorkerReply =
  | WorkerReady
  /** Weight loading: `done` of `total` layers repacked. */
  | { type: 'progress'; done: number; total: number }
  | { type: 'token'; id: number; token: number; last: boolean; logprobs?: TokenLogprobs }
  /** logits: [count, nVocab], rows for tokens start .. start+count-1 of the request. */
  | { type: 'logits'; id: number; start: number; count: number; logits: Float32Array }
  | { type: 'done'; id: number; stats: RequestStats; kv?: KvState }
  | { type: 'error'; id: number; error: SerializedError; kv?: KvState };

/** The sequence-state pool as a request ends (after its sequence was parked or freed). */
export interface KvState {
  /** Sequences the pool holds: running, parked for prefix reuse. */
  sequences: number;
  /** Of them, finished ones kept for prefix reuse. */
  cachedSequences: number;
  /** Of them, held ones (contexts' sequences and chats) between their requests. */
  heldSequences: number;
  /** KV blocks in use, and the most the pool may hold. */
  blocksUsed: number;
  /** Freed blocks whose memory is kept for reuse while the model is busy (released when it goes idle). */
  blocksFree: number;
  blocksMax: number;
}

export interface SerializedError {
  name: string;
  message: string;
  stack?: string;
}

export function serializeError(err: unknown): SerializedError {
  if (err instanceof Error) return { name: err.name, message: err.message, stack: err.stack };
  return { name: 'Error', message: String(err) };
}

const ERROR_CLASSES: Record<string, new (message: string) => Error> = {
  ModelFormatError, NativeError, TokenizerError, ContextOverflowError, SamplerError, RequestError, RangeError, TypeError,
};

/** Rebuilds a worker's error as the same class on this thread (unknown classes become BitllmError). */
export function deserializeError(e: SerializedError): Error {
  const Class = ERROR_CLASSES[e.name];
  const err = Class ? new Class(e.message) : new BitllmError(e.message);
  if (!Class) err.name = e.name;
  if (e.stack) err.stack = e.stack;
  return err;
}
