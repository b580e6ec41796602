// OpenAI request bodies → a validated plan, with 400s that name the parameter at fault. Nothing here
// tokenizes or runs the model: the server checks admission (queue room) before tokenizing the plan.
//
// Unknown fields policy: fields this server does not know are ignored (OpenAI's SDKs add fields faster than
// any server follows, and refusing them would break clients); fields it knows but cannot honour (tools,
// response_format other than text, echo, suffix, best_of > 1, audio, ...) are refused with 400
// `unsupported_parameter` rather than silently ignored.
import type { ChatMessage } from '../engine/chat.js';
import { MAX_TOP_LOGPROBS } from '../engine/generate.js';
import type { SamplerOptions } from '../engine/sampler.js';
import { HttpError, badRequest } from './errors.js';

/** A parsed prompt: text (tokenized with the model's BOS rule), token ids, or a conversation. */
export type PlannedPrompt = { text: string } | { ids: number[] } | { messages: ChatMessage[] };

export interface Plan {
  kind: 'chat' | 'completion';
  /** The request's `model`, when it gave one. */
  model: string | undefined;
  stream: boolean;
  includeUsage: boolean;
  prompts: PlannedPrompt[];
  n: number;
  maxTokens: number | undefined;
  sampling: Omit<SamplerOptions, 'seed'>;
  seed: number | undefined;
  stop: string[];
  ignoreEos: boolean;
  /** Alternatives per token to report with log-probabilities; undefined = no logprobs. */
  logprobs: number | undefined;
}

/** Most choices per request (n × prompts). */
export const MAX_CHOICES = 16;

type Body = Record<string, unknown>;

function typeName(v: unknown): string {
  return v === null ? 'null' : Array.isArray(v) ? 'array' : typeof v;
}

function unsupported(param: string, what: string): HttpError {
  return new HttpError(400, `'${param}' is not supported by this server: ${what}`, 'invalid_request_error', 'unsupported_parameter', param);
}

function optNumber(body: Body, key: string, lo: number, hi: number, integer = false): number | undefined {
  const v = body[key];
  if (v === undefined || v === null) return undefined;
  if (typeof v !== 'number' || !Number.isFinite(v)) throw badRequest(`'${key}' must be a number, got ${typeName(v)}`, key, 'invalid_type');
  if (integer && !Number.isInteger(v)) throw badRequest(`'${key}' must be an integer, got ${v}`, key);
  if (v < lo || v > hi) throw badRequest(`'${key}' must be in [${lo}, ${hi}], got ${v}`, key);
  return v;
}

function optBool(body: Body, key: string): boolean | undefined {
  const v = body[key];
  if (v === undefined || v === null) return undefined;
  if (typeof v !== 'boolean') throw badRequest(`'${key}' must be a boolean, got ${typeName(v)}`, key, 'invalid_type');
  return v;
}

function parseStop(v: unknown): string[] {
  if (v === undefined || v === null) return [];
  const list = typeof v === 'string' ? [v] : v;
  if (!Array.isArray(list)) throw badRequest(`'stop' must be a string or an array of strings, got ${typeName(v)}`, 'stop', 'invalid_type');
  if (list.length > 4) throw badRequest(`'stop' may hold at most 4 sequences, got ${list.length}`, 'stop');
  return list.map((s, i) => {
    if (typeof s !== 'string') throw badRequest(`'stop[${i}]' must be a string, got ${typeName(s)}`, 'stop', 'invalid_type');
    if (s === '') throw badRequest(`'stop[${i}]' must not be empty`, 'stop');
    return s;
  });
}

function parseLogitBias(v: unknown, vocabSize: number): Map<number, number> | undefined {
  if (v === undefined || v === null) return undefined;
  if (typeof v !== 'object' || Array.isArray(v)) throw badRequest(`'logit_bias' must be an object mapping token ids to numbers, got ${typeName(v)}`, 'logit_bias', 'invalid_type');
  const out = new Map<number, number>();
  for (const [k, b] of Object.entries(v as Body)) {
    const id = Number(k);
    if (!/^\d+$/.test(k) || id >= vocabSize) throw badRequest(`'logit_bias' key '${k}' is not a token id (vocabulary 0..${vocabSize - 1})`, 'logit_bias');
    if (typeof b !== 'number' || !Number.isFinite(b) || b < -100 || b > 100) throw badRequest(`'logit_bias[${k}]' must be a number in [-100, 100]`, 'logit_bias');
    out.set(id, b);
  }
  return out.size ? out : undefined;
}

/** Fields shared by both endpoints: sampling, length, stop, n, stream. */
function common(body: Body, kind: Plan['kind'], vocabSize: number): Omit<Plan, 'prompts'> {
  const model = body.model;
  if (model !== undefined && model !== null && typeof model !== 'string') throw badRequest(`'model' must be a string, got ${typeName(model)}`, 'model', 'invalid_type');
  const stream = optBool(body, 'stream') ?? false;
  const so = body.stream_options;
  let includeUsage = false;
  if (so !== undefined && so !== null) {
    if (typeof so !== 'object' || Array.isArray(so)) throw badRequest(`'stream_options' must be an object, got ${typeName(so)}`, 'stream_options', 'invalid_type');
    if (!stream) throw badRequest(`'stream_options' is only allowed with 'stream': true`, 'stream_options');
    includeUsage = optBool(so as Body, 'include_usage') ?? false;
  }
  const maxTokens = optNumber(body, 'max_tokens', 1, 2 ** 31, true);
  const maxCompletion = kind === 'chat' ? optNumber(body, 'max_completion_tokens', 1, 2 ** 31, true) : undefined;
  if (maxTokens !== undefined && maxCompletion !== undefined && maxTokens !== maxCompletion)
    throw badRequest(`'max_tokens' and 'max_completion_tokens' disagree (${maxTokens} vs ${maxCompletion}); give one`, 'max_completion_tokens');
  const n = optNumber(body, 'n', 1, MAX_CHOICES, true) ?? 1;
  const sampling: Omit<SamplerOptions, 'seed'> = {};
  const set = (key: keyof typeof sampling, v: number | undefined) => {
    if (v !== undefined) (sampling as Record<string, unknown>)[key] = v;
  };
  set('temperature', optNumber(body, 'temperature', 0, 2));
  set('topP', optNumber(body, 'top_p', 0, 1));
  set('topK', optNumber(body, 'top_k', 0, 1e9, true));
  set('minP', optNumber(body, 'min_p', 0, 1));
  set('frequencyPenalty', optNumber(body, 'frequency_penalty', -2, 2));
  set('presencePenalty', optNumber(body, 'presence_penalty', -2, 2));
  set('repeatPenalty', optNumber(body, 'repeat_penalty', 0, 100));
  const bias = parseLogitBias(body.logit_bias, vocabSize);
  if (bias) sampling.logitBias = bias;
  const seed = optNumber(body, 'seed', 0, 2 ** 32 - 1, true);

  // Known but not honoured: refused, never silently ignored.
  let logprobs: number | undefined;
  if (kind === 'chat') {
    const top = optNumber(body, 'top_logprobs', 0, MAX_TOP_LOGPROBS, true);
    if (optBool(body, 'logprobs') === true) logprobs = top ?? 0;
    else if (top !== undefined) throw badRequest(`'top_logprobs' needs 'logprobs': true`, 'top_logprobs');
    for (const key of ['tools', 'functions', 'audio', 'prediction', 'web_search_options'])
      if (body[key] !== undefined && body[key] !== null && !(Array.isArray(body[key]) && (body[key] as unknown[]).length === 0))
        throw unsupported(key, 'bitllm runs text generation only (no tool calls, audio, predicted outputs or web search)');
    for (const key of ['tool_choice', 'function_call'])
      if (body[key] !== undefined && body[key] !== null && body[key] !== 'none' && body[key] !== 'auto') throw unsupported(key, 'bitllm runs text generation only (no tool calls)');
    const rf = body.response_format;
    if (rf !== undefined && rf !== null && !(typeof rf === 'object' && (rf as Body).type === 'text'))
      throw unsupported('response_format', "only { type: 'text' } is implemented (no JSON mode or schemas)");
    const modalities = body.modalities;
    if (Array.isArray(modalities) && modalities.some((m) => m !== 'text')) throw unsupported('modalities', 'only text output is implemented');
  } else {
    logprobs = optNumber(body, 'logprobs', 0, MAX_TOP_LOGPROBS, true);
    if (optBool(body, 'echo') === true) throw unsupported('echo', 'the prompt is not echoed; send it back from the request');
    if (body.suffix !== undefined && body.suffix !== null && body.suffix !== '') throw unsupported('suffix', 'fill-in-the-middle needs a model trained for it; the families bitllm runs are not');
    const bestOf = optNumber(body, 'best_of', 1, MAX_CHOICES, true);
    if (bestOf !== undefined && bestOf !== n) throw unsupported('best_of', 'best_of must equal n (ranking choices needs log-probabilities)');
  }
  return {
    kind, model: typeof model === 'string' ? model : undefined, stream, includeUsage, n, maxTokens: maxTokens ?? maxCompletion, sampling, seed,
    stop: parseStop(body.stop), ignoreEos: optBool(body, 'ignore_eos') ?? false, logprobs,
  };
}

function asBody(body: unknown): Body {
  if (typeof body !== 'object' || body === null || Array.isArray(body)) throw badRequest(`the request body must be a JSON object, got ${typeName(body)}`, null, 'invalid_type');
  return body as Body;
}

function isIdArray(v: unknown): v is number[] {
  return Array.isArray(v) && v.length > 0 && v.every((x) => typeof x === 'number');
}

/** POST /v1/completions. `prompt`: a string, token ids, or an array of either (one choice set per prompt). */
export function planCompletion(raw: unknown, vocabSize: number): Plan {
  const body = asBody(raw);
  const base = common(body, 'completion', vocabSize);
  const p = body.prompt;
  let prompts: PlannedPrompt[];
  if (p === undefined || p === null) throw badRequest(`'prompt' is required`, 'prompt', 'missing_required_parameter');
  if (typeof p === 'string') prompts = [{ text: p }];
  else if (isIdArray(p)) prompts = [{ ids: p }];
  else if (Array.isArray(p) && p.length > 0 && p.every((x) => typeof x === 'string' || isIdArray(x)))
    prompts = p.map((x) => (typeof x === 'string' ? { text: x } : { ids: x as number[] }));
  else throw badRequest(`'prompt' must be a string, an array of token ids, or an array of those`, 'prompt', 'invalid_type');
  prompts.forEach((q, i) => {
    if ('text' in q && q.text === '') throw badRequest(`'prompt'${prompts.length > 1 ? `[${i}]` : ''} is empty`, 'prompt');
    if ('ids' in q)
      q.ids.forEach((id, j) => {
        if (!(Number.isInteger(id) && id >= 0 && id < vocabSize)) throw badRequest(`'prompt' token ${j} = ${id} is not a token id (vocabulary 0..${vocabSize - 1})`, 'prompt');
      });
  });
  if (prompts.length * base.n > MAX_CHOICES) throw badRequest(`${prompts.length} prompts × n = ${base.n} exceeds ${MAX_CHOICES} choices per request`, 'n');
  return { ...base, prompts };
}

function messageContent(v: unknown, i: number): string {
  if (typeof v === 'string') return v;
  if (Array.isArray(v)) {
    return v.map((part, j) => {
      if (typeof part === 'object' && part !== null && (part as Body).type === 'text' && typeof (part as Body).text === 'string') return (part as Body).text as string;
      throw unsupported(`messages[${i}].content[${j}]`, 'only text content parts are implemented');
    }).join('');
  }
  throw badRequest(`'messages[${i}].content' must be a string or an array of text parts, got ${typeName(v)}`, `messages[${i}].content`, 'invalid_type');
}

/** POST /v1/chat/completions. */
export function planChat(raw: unknown, vocabSize: number): Plan {
  const body = asBody(raw);
  const base = common(body, 'chat', vocabSize);
  const list = body.messages;
  if (list === undefined || list === null) throw badRequest(`'messages' is required`, 'messages', 'missing_required_parameter');
  if (!Array.isArray(list) || list.length === 0) throw badRequest(`'messages' must be a non-empty array`, 'messages', 'invalid_type');
  const messages: ChatMessage[] = list.map((m, i) => {
    if (typeof m !== 'object' || m === null || Array.isArray(m)) throw badRequest(`'messages[${i}]' must be an object, got ${typeName(m)}`, `messages[${i}]`, 'invalid_type');
    const role = (m as Body).role;
    if (role === 'tool' || role === 'function') throw unsupported(`messages[${i}].role`, 'bitllm runs text generation only (no tool messages)');
    if (role !== 'system' && role !== 'developer' && role !== 'user' && role !== 'assistant')
      throw badRequest(`'messages[${i}].role' must be 'system', 'developer', 'user' or 'assistant', got ${JSON.stringify(role)}`, `messages[${i}].role`);
    const content = messageContent((m as Body).content, i);
    return { role: role === 'developer' ? 'system' : role, content };
  });
  messages.forEach((m, i) => {
    if (m.role === 'system' && i > 0) throw badRequest(`'messages[${i}]': a system message may only open the conversation`, `messages[${i}].role`);
  });
  if (messages[messages.length - 1]!.role !== 'user') throw badRequest(`the last message must be from the user`, 'messages');
  return { ...base, prompts: [{ messages }] };
}
