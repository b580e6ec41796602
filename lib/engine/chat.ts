// Chat templates and chat sessions.
//
// A GGUF's tokenizer.chat_template is Jinja. Rather than ship a Jinja interpreter, we recognise the formats
// BitNet models use by marker substrings of the template, and render them with code:
//   bitnet  (BitNet b1.58 2B-4T)  <|begin_of_text|>System: …<|eot_id|>User: …<|eot_id|>Assistant: …<|eot_id|>
//   llama3                        <|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\n…<|eot_id|>…
//   llama2                        <s>[INST] <<SYS>>\n…\n<</SYS>>\n\n… [/INST] … </s>
// Without a template (or with one we do not recognise) the vocabulary decides: header tokens mean llama3 —
// except in a BitNet-architecture file, because 2B-4T ships LLaMA-3's vocabulary with its own plain format —
// a lone <|eot_id|> means bitnet, anything else (SentencePiece era) llama2.
import type { Tokenizer } from '../tokenizer/index.js';
import {
  type GenerateChunk, type GenerateOptions, type GenerationResult, RequestError, type ValidatedGenerateOptions,
  validateGenerateOptions,
} from './generate.js';

export type ChatFormatName = 'bitnet' | 'llama3' | 'llama2';
export const CHAT_FORMATS: readonly ChatFormatName[] = ['bitnet', 'llama3', 'llama2'];

export interface ChatMessage {
  role: 'system' | 'user' | 'assistant';
  content: string;
}

/** A chat format as the pieces a conversation is assembled from (so a turn can be rendered on its own). */
export interface ChatTemplate {
  readonly name: ChatFormatName;
  /** Opens the conversation: BOS, and the system turn in formats that give it one. */
  begin(system: string | undefined): string;
  /** A user turn and the assistant header after it; `system` for formats that fold it into the first turn. */
  user(content: string, first: boolean, system: string | undefined): string;
  /** A finished assistant turn (content and its end marker). */
  assistant(content: string): string;
  /** What closes an assistant turn that did not end with an end-of-generation token. */
  readonly assistantEnd: string;
}

/** Texts of the tokens a template writes (from the vocabulary: '<|begin_of_text|>' or '<s>', ...). */
export interface TemplateTokens {
  bos: string;
  eos: string;
}

export function chatTemplate(name: ChatFormatName, tokens: TemplateTokens): ChatTemplate {
  const { bos, eos } = tokens;
  switch (name) {
    case 'bitnet':
      return {
        name,
        begin: (system) => bos + (system !== undefined ? `System: ${system.trim()}<|eot_id|>` : ''),
        user: (content) => `User: ${content.trim()}<|eot_id|>Assistant: `,
        assistant: (content) => `${content.trim()}<|eot_id|>`,
        assistantEnd: '<|eot_id|>',
      };
    case 'llama3': {
      const header = (role: string) => `<|start_header_id|>${role}<|end_header_id|>\n\n`;
      return {
        name,
        begin: (system) => bos + (system !== undefined ? `${header('system')}${system.trim()}<|eot_id|>` : ''),
        user: (content) => `${header('user')}${content.trim()}<|eot_id|>${header('assistant')}`,
        assistant: (content) => `${content.trim()}<|eot_id|>`,
        assistantEnd: '<|eot_id|>',
      };
    }
    case 'llama2':
      // Meta's reference: every [INST] pair is wrapped in BOS … EOS; the system prompt opens the first one.
      return {
        name,
        begin: () => '',
        user: (content, first, system) =>
          `${bos}[INST] ${first && system !== undefined ? `<<SYS>>\n${system.trim()}\n<</SYS>>\n\n` : ''}${content.trim()} [/INST]`,
        assistant: (content) => ` ${content.trim()} ${eos}`,
        assistantEnd: eos,
      };
  }
}

/** The whole conversation as text; a trailing user message is followed by the assistant header. */
export function renderChat(template: ChatTemplate, messages: readonly ChatMessage[]): string {
  let system: string | undefined;
  let rest = messages;
  if (messages[0]?.role === 'system') {
    system = messages[0].content;
    rest = messages.slice(1);
  }
  let out = template.begin(system);
  let first = true;
  for (const m of rest) {
    if (m.role === 'system') throw new RequestError('chat: a system message may only open the conversation');
    if (m.role === 'user') {
      out += template.user(m.content, first, system);
      first = false;
    } else out += template.assistant(m.content);
  }
  return out;
}

export interface DetectedChatFormat {
  name: ChatFormatName;
  /** What decided it: the template's markers or, without a recognised template, the vocabulary. */
  source: 'template' | 'vocabulary';
}

/** Recognises a Jinja chat template by its marker substrings; undefined when none matches. */
export function chatFormatFromTemplate(template: string): ChatFormatName | undefined {
  if (template.includes('<|start_header_id|>') && template.includes('<|end_header_id|>')) return 'llama3';
  // 2B-4T: role | capitalize + ': ' + content + '<|eot_id|>', generation prompt 'Assistant: '.
  if (template.includes('<|eot_id|>') && (template.includes('Assistant: ') || template.includes('capitalize'))) return 'bitnet';
  if (template.includes('[INST]')) return 'llama2';
  return undefined;
}

/** True when `text` is a single special token of the vocabulary. */
function hasToken(tokenizer: Tokenizer, text: string): boolean {
  const ids = tokenizer.encode(text, { addBos: false, addEos: false, parseSpecial: true });
  return ids.length === 1 && tokenizer.tokenText(ids[0]!) === text;
}

export function detectChatFormat(tokenizer: Tokenizer, template: string | undefined, architecture: string): DetectedChatFormat {
  const fromTemplate = template !== undefined ? chatFormatFromTemplate(template) : undefined;
  if (fromTemplate) return { name: fromTemplate, source: 'template' };
  const eot = hasToken(tokenizer, '<|eot_id|>');
  let name: ChatFormatName = 'llama2';
  if (eot && hasToken(tokenizer, '<|start_header_id|>')) name = architecture.startsWith('bitnet') ? 'bitnet' : 'llama3';
  else if (eot) name = 'bitnet';
  return { name, source: 'vocabulary' };
}

/** The BOS/EOS texts a template writes, from the vocabulary (llama-family defaults when it has none). */
export function templateTokens(tokenizer: Tokenizer, name: ChatFormatName): TemplateTokens {
  const text = (id: number | undefined, fallback: string) => (id !== undefined ? tokenizer.tokenText(id) : fallback);
  return {
    bos: text(tokenizer.bos, name === 'llama2' ? '<s>' : '<|begin_of_text|>'),
    eos: text(tokenizer.eos, name === 'llama2' ? '</s>' : '<|end_of_text|>'),
  };
}

// ---------------------------------------------------------------- sessions

/** What a chat session needs from its model (Model.createChat wires it). */
export interface ChatBackend {
  readonly tokenizer: Tokenizer;
  /** Streams a reply to `tokens`, reusing every cached token that matches (prefix reuse). */
  generate(tokens: number[], opts: ValidatedGenerateOptions): AsyncGenerator<GenerateChunk, GenerationResult>;
  /** Frees what the chat holds (its sequence's KV). */
  dispose?(): void;
}

export interface ChatOptions {
  system?: string;
  /** Override the detected format. */
  format?: ChatFormatName;
}

/**
 * A conversation on one model. It keeps the tokens it has fed (the prompt turns and the sampled replies, not a
 * re-tokenization of them) and runs on a held sequence, so each turn computes only its new tokens.
 */
export class Chat {
  readonly template: ChatTemplate;
  readonly system: string | undefined;
  private history: ChatMessage[] = [];
  /** The conversation as fed to the model, through the end of the last assistant turn. */
  private tokens: number[] = [];
  private busy = false;
  private disposedFlag = false;

  constructor(private readonly backend: ChatBackend, template: ChatTemplate, system?: string) {
    this.template = template;
    this.system = system;
  }

  /** The conversation so far (system message first when there is one). */
  get messages(): ChatMessage[] {
    const sys: ChatMessage[] = this.system !== undefined ? [{ role: 'system', content: this.system }] : [];
    return [...sys, ...this.history.map((m) => ({ ...m }))];
  }

  get disposed(): boolean {
    return this.disposedFlag;
  }

  /** Frees the chat's sequence (its KV and its place among the model's sequences); no more turns after it. */
  dispose(): void {
    if (this.disposedFlag) return;
    this.disposedFlag = true;
    this.backend.dispose?.();
  }

  /** Forgets the conversation (the system prompt stays). */
  reset(): void {
    if (this.busy) throw new RequestError('chat: cannot reset while a reply is being generated');
    this.history = [];
    this.tokens = [];
  }

  /** Sends a user message and resolves with the whole reply. */
  async send(message: string, opts?: GenerateOptions): Promise<string> {
    const it = this.stream(message, opts);
    for (;;) {
      const r = await it.next();
      if (r.done) return r.value;
    }
  }

  /** Sends a user message and streams the reply; the iterator's return value is the whole reply. */
  async *stream(message: string, opts?: GenerateOptions): AsyncGenerator<GenerateChunk, string> {
    if (typeof message !== 'string' || message.trim() === '') throw new RequestError('chat: message must be a non-empty string');
    if (this.busy) throw new RequestError('chat: a reply is already being generated; wait for it or abort it');
    if (this.disposedFlag) throw new RequestError('chat: the chat is disposed');
    const tokenizer = this.backend.tokenizer;
    const validated = validateGenerateOptions(opts, tokenizer.vocabSize, 'chat');
    const first = this.history.length === 0;
    const turn = (first ? this.template.begin(this.system) : '') + this.template.user(message, first, this.system);
    const prompt = [...this.tokens, ...tokenizer.encode(turn, { addBos: false, addEos: false, parseSpecial: true })];
    this.busy = true;
    const generated: number[] = [];
    let reply = '';
    let result: GenerationResult | undefined;
    let failed = false;
    const it: AsyncIterator<GenerateChunk, GenerationResult> = this.backend.generate(prompt, validated);
    try {
      for (;;) {
        const r = await it.next();
        if (r.done) {
          result = r.value;
          break;
        }
        generated.push(r.value.token);
        reply += r.value.text;
        yield r.value;
      }
    } catch (err) {
      failed = true;
      throw err;
    } finally {
      // The consumer stopped early: end the model's request too.
      if (!result && !failed) await (it as AsyncIterator<GenerateChunk, unknown>).return?.();
      this.busy = false;
      // A failed turn leaves the conversation as it was; a finished or abandoned one is recorded as far as it got.
      if (!failed) this.commit(message, prompt, generated, reply, result);
    }
    return reply;
  }

  private commit(message: string, prompt: number[], generated: number[], reply: string, result: GenerationResult | undefined): void {
    const tokenizer = this.backend.tokenizer;
    let kept = generated;
    if (result?.finishReason !== 'eog') {
      // Keep the sampled tokens whose text lies within the reply (a stop string and what followed are dropped),
      // then close the turn the way the template does.
      // Decoded as the reply was streamed (see Model.stream: a leading space after a special token is dropped).
      const decoder = tokenizer.createDecoder({ skipSpecial: true, continues: !tokenizer.isSpecial(prompt[prompt.length - 1]!) });
      let length = 0;
      let n = 0;
      for (; n < generated.length; n++) {
        length += decoder.push(generated[n]!).length;
        if (length > reply.length) break;
      }
      kept = [...generated.slice(0, n), ...tokenizer.encode(this.template.assistantEnd, { addBos: false, addEos: false, parseSpecial: true })];
    }
    this.history.push({ role: 'user', content: message }, { role: 'assistant', content: reply });
    this.tokens = [...prompt, ...kept];
  }
}
