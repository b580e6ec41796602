// The one interface between the HTTP server and the inference engine. The server owns HTTP, OpenAI shapes,
// admission (its bounded queue and `parallel` slots), metrics and readiness; an engine owns tokens: the
// tokenizer, the chat template, and running admitted requests. Today's implementation (ModelEngine) wraps a
// loaded Model, whose worker runs one request at a time, so admitted requests beyond the first wait inside the
// Model in order. A step scheduler can implement the same interface and run every admitted request together.
import type { Model } from '../api.js';
import { type ChatMessage, chatTemplate, renderChat, templateTokens } from '../engine/chat.js';
import { fitContext, validateGenerateOptions } from '../engine/generate.js';
import type { SamplerOptions } from '../engine/sampler.js';

/** What the server shows about the engine's model. */
export interface EngineInfo {
  /** Tokens one sequence may hold: prompt + generated. */
  contextSize: number;
  vocabSize: number;
  /** The model file, for /v1/models metadata. */
  path: string;
  /** The chat format applyChatTemplate uses (e.g. 'llama3'). */
  chatFormat: string;
}

/** One sequence to generate. Everything in it was validated by the server (and by `validate`). */
export interface EngineRequest {
  /** Prompt token ids (non-empty; BOS already in place when the model wants one). */
  prompt: number[];
  /** Most tokens to sample; prompt.length + maxTokens <= info.contextSize. */
  maxTokens: number;
  /** Sampler options (lib/engine/sampler.ts); `seed` is always set. */
  sampling: SamplerOptions & { seed: number };
  /** Generation ends before the first occurrence of any of these (not emitted). */
  stop: string[];
  /** Keep sampling past end-of-generation tokens. */
  ignoreEos: boolean;
  /** Report each token's log-probability and this many top alternatives (undefined: no log-probabilities). */
  logprobs?: number;
}

/** Why a sequence ended: 'stop' = an end-of-generation token or a stop string; 'length' = maxTokens reached. */
export type EngineFinishReason = 'stop' | 'length' | 'abort';

/**
 * Events of one submitted sequence: a 'token' per sampled token (text may be '' while a UTF-8 character or a
 * possible stop string is held back), then exactly one 'end'. `completionTokens` counts the sampled tokens.
 */
export type EngineEvent =
  | {
      type: 'token'; token: number; text: string;
      /** With request.logprobs: log-probability under the model's distribution, and the top alternatives. */
      logprob?: number; topLogprobs?: Array<{ token: number; logprob: number }>;
    }
  | { type: 'end'; finishReason: EngineFinishReason; promptTokens: number; completionTokens: number };

/** Engine-side totals for /metrics (counters since the engine started). */
export interface EngineStats {
  /** Prompt tokens run through the model. */
  evaluatedTokens: number;
  /** Prompt tokens served from the KV cache instead. */
  reusedTokens: number;
  /** The KV pool as the last request ended: sequences held (running + cached for prefix reuse), blocks in use. */
  kv?: { sequences: number; cachedSequences: number; blocksUsed: number };
}

export interface ServerEngine {
  readonly info: EngineInfo;
  /** Text to token ids; `addSpecial` adds BOS by the model's rule, `parseSpecial` matches special-token texts. */
  tokenize(text: string, options?: { addSpecial?: boolean; parseSpecial?: boolean }): number[];
  /** Token ids to text (ids are checked; RequestError for one outside the vocabulary). */
  detokenize(ids: readonly number[]): string;
  /** The bytes one token decodes to on its own (for /tokenize with_pieces and logprobs). */
  tokenBytes(id: number): Uint8Array;
  /** A conversation to prompt tokens, ending with the assistant header. RequestError for a malformed one. */
  applyChatTemplate(messages: readonly ChatMessage[]): number[];
  /** Throws RequestError (or ContextOverflowError) for a request `submit` would refuse; runs no compute. */
  validate(request: EngineRequest): void;
  /**
   * Runs one sequence. Called only for admitted requests (the server bounds how many run at once). Aborting
   * `signal` ends the sequence within one token, also while it waits inside the engine or is in prefill; the
   * iteration then ends with an 'end' event whose reason is 'abort'. Errors are thrown from the iterator.
   */
  submit(request: EngineRequest, signal: AbortSignal): AsyncIterable<EngineEvent>;
  stats(): EngineStats;
  close(): Promise<void>;
}

/** ServerEngine over today's Model: requests are serialized by the Model's own worker queue. */
export class ModelEngine implements ServerEngine {
  readonly info: EngineInfo;

  constructor(readonly model: Model) {
    this.info = {
      contextSize: model.info.contextSize, vocabSize: model.tokenizer.vocabSize, path: model.info.path, chatFormat: model.info.chatFormat.name,
    };
  }

  tokenize(text: string, options: { addSpecial?: boolean; parseSpecial?: boolean } = {}): number[] {
    return this.model.tokenize(text, { addBos: options.addSpecial, parseSpecial: options.parseSpecial });
  }

  detokenize(ids: readonly number[]): string {
    return this.model.detokenize(ids);
  }

  tokenBytes(id: number): Uint8Array {
    return this.model.tokenizer.tokenToBytes(id);
  }

  applyChatTemplate(messages: readonly ChatMessage[]): number[] {
    const tokenizer = this.model.tokenizer;
    const name = this.model.info.chatFormat.name;
    const text = renderChat(chatTemplate(name, templateTokens(tokenizer, name)), messages);
    // The template writes BOS itself, as Chat does.
    return tokenizer.encode(text, { addBos: false, addEos: false, parseSpecial: true });
  }

  validate(request: EngineRequest): void {
    validateGenerateOptions({ ...request.sampling, maxTokens: request.maxTokens, stop: request.stop, logprobs: request.logprobs }, this.info.vocabSize, 'request');
    fitContext(request.prompt.length, request.maxTokens, this.info.contextSize, 'request');
  }

  async *submit(request: EngineRequest, signal: AbortSignal): AsyncGenerator<EngineEvent, void, undefined> {
    const gen = this.model.generate(request.prompt, {
      ...request.sampling, maxTokens: request.maxTokens, stop: request.stop, ignoreEog: request.ignoreEos, signal,
      ...(request.logprobs !== undefined && { logprobs: request.logprobs }),
    });
    let r = await gen.next();
    for (; !r.done; r = await gen.next()) {
      const { token, text, logprob, topLogprobs } = r.value;
      yield { type: 'token', token, text, ...(logprob !== undefined && { logprob, topLogprobs }) };
    }
    const res = r.value;
    const finishReason: EngineFinishReason = res.finishReason === 'abort' ? 'abort' : res.finishReason === 'length' ? 'length' : 'stop';
    yield { type: 'end', finishReason, promptTokens: request.prompt.length, completionTokens: res.tokens.length };
  }

  stats(): EngineStats {
    const s = this.model.stats;
    return { evaluatedTokens: s.evaluatedTokens, reusedTokens: s.reusedTokens, ...(s.kv && { kv: s.kv }) };
  }

  close(): Promise<void> {
    return this.model.close();
  }
}
