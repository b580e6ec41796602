// Tokenizer built from GGUF metadata (tokenizer.ggml.*): special tokens are split out of the text first, the
// rest goes to byte-level BPE ('gpt2') or SentencePiece ('llama'); decoding works on bytes so a streaming
// decoder never emits half a UTF-8 sequence. llama.cpp's llama-vocab.cpp is the behavioural oracle.
import type { GgufFile } from '../format/gguf.js';
import { GgufMetadata } from '../format/gguf.js';
import { BpeModel, preTokenizerFor, unspellBytes } from './bpe.js';
import { TokenizerError } from './errors.js';
import { SpmModel, spmPieceBytes } from './spm.js';

export { TokenizerError } from './errors.js';

/** tokenizer.ggml.token_type values. */
export enum TokenType {
  UNDEFINED = 0, NORMAL = 1, UNKNOWN = 2, CONTROL = 3, USER_DEFINED = 4, UNUSED = 5, BYTE = 6,
}

export type TokenizerModel = 'gpt2' | 'llama';

export interface EncodeOptions {
  /** Prepend BOS (default: tokenizer.ggml.add_bos_token, else the family's llama.cpp default). */
  addBos?: boolean;
  /** Append EOS (default: tokenizer.ggml.add_eos_token, else false). */
  addEos?: boolean;
  /**
   * Match control and unknown-type tokens written in the text (e.g. '<|eot_id|>') as single ids (default true).
   * User-defined tokens are matched either way, as llama.cpp and HF tokenizers do.
   */
  parseSpecial?: boolean;
}

export interface DecodeOptions {
  /** Drop control and unknown-type tokens (BOS, EOS, ...) instead of writing their text (default false). */
  skipSpecial?: boolean;
  /**
   * The ids continue text decoded before (e.g. generated after a prompt), so SentencePiece's leading space is
   * kept at the start (default false: the ids begin the text and, like encode's added U+2581, it is dropped).
   */
  continues?: boolean;
}

/** Token texts that end generation wherever they are in a vocabulary (beside eos/eot/eom ids from metadata). */
const EOG_TEXTS = ['<|eot_id|>', '<|eom_id|>', '<|end_of_text|>', '<|endoftext|>', '<|im_end|>', '<end_of_turn>', '</s>'];
/** End-of-turn token texts, in order of preference, when tokenizer.ggml.eot_token_id is absent. */
const EOT_TEXTS = ['<|eot_id|>', '<|im_end|>', '<end_of_turn>', '<|end|>'];

/** Token types matched in text before BPE/SPM when parseSpecial (user-defined tokens always are). */
const SPECIAL_TYPES = new Set([TokenType.CONTROL, TokenType.UNKNOWN, TokenType.USER_DEFINED]);

/** The vocabulary size that means LLaMA-3's tokenizer when tokenizer.ggml.pre is absent (BitNet b1.58 2B-4T). */
const LLAMA3_VOCAB_SIZE = 128256;

interface TextModel {
  /** Appends the ids of raw text; `afterBoundary`: the text begins the input or follows a special token. */
  encode(text: string, afterBoundary: boolean, out: number[]): void;
}

const utf8Encoder = new TextEncoder();
const utf8Decoder = new TextDecoder('utf-8');

export class Tokenizer {
  /** tokenizer.ggml.model. */
  readonly model: TokenizerModel;
  /** Pre-tokenizer name in effect for 'gpt2' (resolved when tokenizer.ggml.pre is absent); undefined for 'llama'. */
  readonly pre: string | undefined;
  readonly vocabSize: number;
  readonly bos: number | undefined;
  readonly eos: number | undefined;
  readonly eot: number | undefined;
  readonly eom: number | undefined;
  readonly unk: number | undefined;
  /** Every id that ends generation. */
  readonly eog: ReadonlySet<number>;
  readonly addBos: boolean;
  readonly addEos: boolean;
  /** SentencePiece: encode prefixes U+2581 to text that begins the input or follows a special token. */
  readonly addSpacePrefix: boolean;

  private readonly texts: readonly string[];
  /** TokenType per id. (n_vocab) */
  private readonly types: Uint8Array;
  private readonly textModel: TextModel;
  /** Ids matched in text before BPE/SPM, longest text (in UTF-8 bytes) first, as llama.cpp orders them. */
  private readonly specialsParsed: readonly number[];
  private readonly specialsAlways: readonly number[];
  /** Decoded bytes per id, filled on first use. (n_vocab) */
  private readonly pieces: Array<Uint8Array | undefined>;

  private constructor(init: {
    model: TokenizerModel; pre: string | undefined; texts: string[]; types: Uint8Array; textModel: TextModel;
    bos: number | undefined; eos: number | undefined; eot: number | undefined; eom: number | undefined;
    unk: number | undefined; eog: ReadonlySet<number>; addBos: boolean; addEos: boolean; addSpacePrefix: boolean;
  }) {
    this.model = init.model;
    this.pre = init.pre;
    this.texts = init.texts;
    this.types = init.types;
    this.textModel = init.textModel;
    this.vocabSize = init.texts.length;
    this.bos = init.bos;
    this.eos = init.eos;
    this.eot = init.eot;
    this.eom = init.eom;
    this.unk = init.unk;
    this.addBos = init.addBos;
    this.addEos = init.addEos;
    this.addSpacePrefix = init.addSpacePrefix;
    this.pieces = new Array<Uint8Array | undefined>(this.vocabSize);

    const specials: Array<{ id: number; bytes: number }> = [];
    for (let id = 0; id < this.vocabSize; id++) {
      if (SPECIAL_TYPES.has(this.types[id]!)) specials.push({ id, bytes: utf8Encoder.encode(this.texts[id]!).length });
    }
    specials.sort((a, b) => b.bytes - a.bytes || a.id - b.id);
    this.specialsParsed = specials.map((s) => s.id);
    this.specialsAlways = this.specialsParsed.filter((id) => this.types[id] === TokenType.USER_DEFINED);
    this.eog = init.eog;
  }

  /** Builds the tokenizer described by a GGUF file's tokenizer.ggml.* metadata (a vocab-only file is fine). */
  static fromGguf(file: GgufFile): Tokenizer {
    const md = new GgufMetadata(file);
    const source = file.source;
    const modelName = md.string('tokenizer.ggml.model');
    if (modelName !== 'gpt2' && modelName !== 'llama') {
      throw new TokenizerError(`${source}: unsupported tokenizer.ggml.model = '${modelName}' (supported: gpt2, llama)`);
    }
    const texts = md.strings('tokenizer.ggml.tokens')!.slice();
    const n = texts.length;
    if (n === 0) throw new TokenizerError(`${source}: tokenizer.ggml.tokens is empty`);

    const vocab = new Map<string, number>();
    for (let id = 0; id < n; id++) {
      if (texts[id] === '') texts[id] = `[EMPTY_${id}]`; // as llama.cpp: an empty entry could never be matched
      vocab.set(texts[id]!, id);
      if (vocab.size !== id + 1) {
        const text = texts[id]!;
        throw new TokenizerError(`${source}: tokenizer.ggml.tokens has '${text}' twice (ids ${texts.indexOf(text)} and ${id})`);
      }
    }

    const rawTypes = numericArray(md, 'tokenizer.ggml.token_type', n);
    const types = new Uint8Array(n).fill(TokenType.NORMAL);
    if (rawTypes) for (let id = 0; id < n; id++) types[id] = rawTypes[id]! >= 0 && rawTypes[id]! <= 6 ? rawTypes[id]! : TokenType.UNDEFINED;

    const specialId = (key: string, fallback: number | undefined): number | undefined => {
      const id = md.number(key, undefined);
      if (id === undefined) return fallback !== undefined && fallback < n ? fallback : undefined;
      if (!Number.isInteger(id) || id < 0 || id >= n) {
        throw new TokenizerError(`${source}: ${key} = ${id} is outside the vocabulary (${n} tokens)`);
      }
      return id;
    };
    const isSpm = modelName === 'llama';
    // llama.cpp's defaults: SentencePiece vocabularies put <unk>, <s>, </s> at 0, 1, 2.
    const bos = specialId('tokenizer.ggml.bos_token_id', isSpm ? 1 : undefined);
    const eos = specialId('tokenizer.ggml.eos_token_id', isSpm ? 2 : undefined);
    const unk = specialId('tokenizer.ggml.unknown_token_id', isSpm ? 0 : undefined);
    const eot = specialId('tokenizer.ggml.eot_token_id', EOT_TEXTS.map((t) => vocab.get(t)).find((id) => id !== undefined));
    const eom = specialId('tokenizer.ggml.eom_token_id', vocab.get('<|eom_id|>'));
    const eogByText = [...EOG_TEXTS, ...EOT_TEXTS].map((text) => vocab.get(text)).filter((id) => id !== undefined);
    // As llama.cpp: a token recognised by its end-of-generation text is a control token whatever its stored type.
    for (const id of eogByText) if (!SPECIAL_TYPES.has(types[id]!)) types[id] = TokenType.CONTROL;
    const eog = new Set<number>(eogByText.filter((id) => EOG_TEXTS.includes(texts[id]!)));
    for (const id of [eos, eot, eom]) if (id !== undefined) eog.add(id);

    let textModel: TextModel;
    let pre: string | undefined;
    let familyAddsBos: boolean;
    let addSpacePrefix = false;
    if (isSpm) {
      const scores = numericArray(md, 'tokenizer.ggml.scores', n) ?? new Float32Array(n);
      const spm = new SpmModel(vocab, scores, unk);
      addSpacePrefix = md.bool('tokenizer.ggml.add_space_prefix', true);
      textModel = { encode: (text, afterBoundary, out) => spm.encode(text, addSpacePrefix && afterBoundary, out) };
      familyAddsBos = true;
    } else {
      // llama.cpp treats an empty pre as an absent one.
      pre = md.string('tokenizer.ggml.pre', undefined) || (n === LLAMA3_VOCAB_SIZE ? 'llama-bpe' : 'default');
      const preTokenizer = preTokenizerFor(pre, source);
      const bpe = new BpeModel(vocab, md.strings('tokenizer.ggml.merges')!, preTokenizer);
      textModel = { encode: (text, _afterBoundary, out) => bpe.encode(text, out) };
      familyAddsBos = preTokenizer.addBos;
    }

    const addBos = md.bool('tokenizer.ggml.add_bos_token', familyAddsBos && bos !== undefined);
    if (addBos && bos === undefined) {
      throw new TokenizerError(`${source}: tokenizer.ggml.add_bos_token is true but tokenizer.ggml.bos_token_id is not set`);
    }
    const addEos = md.bool('tokenizer.ggml.add_eos_token', false);
    if (addEos && eos === undefined) {
      throw new TokenizerError(`${source}: tokenizer.ggml.add_eos_token is true but tokenizer.ggml.eos_token_id is not set`);
    }

    return new Tokenizer({
      model: modelName, pre, texts, types, textModel, bos, eos, eot, eom, unk, eog, addBos, addEos, addSpacePrefix,
    });
  }

  // ---------------------------------------------------------------- encode

  /** Text -> token ids. */
  encode(text: string, options: EncodeOptions = {}): number[] {
    const addBos = options.addBos ?? this.addBos;
    const addEos = options.addEos ?? this.addEos;
    const out: number[] = [];
    if (addBos) out.push(this.requireSpecial(this.bos, 'BOS'));
    let afterBoundary = true;
    for (const fragment of this.splitSpecials(text, options.parseSpecial ?? true)) {
      if (typeof fragment === 'number') {
        out.push(fragment);
        afterBoundary = true;
      } else {
        this.textModel.encode(fragment, afterBoundary, out);
        afterBoundary = false;
      }
    }
    if (addEos) out.push(this.requireSpecial(this.eos, 'EOS'));
    return out;
  }

  /**
   * Splits special-token texts out of `text`: the longest special text first through the whole text, then the
   * next longest in what remains (llama.cpp's order). Fragments are raw text (string) or a token id (number).
   */
  private splitSpecials(text: string, parseSpecial: boolean): Array<string | number> {
    let fragments: Array<string | number> = text.length > 0 ? [text] : [];
    for (const id of parseSpecial ? this.specialsParsed : this.specialsAlways) {
      const special = this.texts[id]!;
      if (!text.includes(special)) continue;
      const split: Array<string | number> = [];
      for (const fragment of fragments) {
        if (typeof fragment === 'number') { split.push(fragment); continue; }
        let from = 0;
        for (let at = fragment.indexOf(special); at >= 0; at = fragment.indexOf(special, from)) {
          if (at > from) split.push(fragment.slice(from, at));
          split.push(id);
          from = at + special.length;
        }
        if (from < fragment.length) split.push(fragment.slice(from));
      }
      fragments = split;
    }
    return fragments;
  }

  private requireSpecial(id: number | undefined, what: string): number {
    if (id === undefined) throw new TokenizerError(`this vocabulary has no ${what} token`);
    return id;
  }

  // ---------------------------------------------------------------- decode

  /** Token ids -> text (invalid UTF-8 becomes U+FFFD). No clean-up of spaces, so decode(encode(x)) === x. */
  decode(ids: ArrayLike<number>, options: DecodeOptions = {}): string {
    const decoder = this.createDecoder(options);
    let text = '';
    for (let i = 0; i < ids.length; i++) text += decoder.push(ids[i]!);
    return text + decoder.flush();
  }

  /** A decoder fed one id at a time that only ever emits whole UTF-8 sequences. */
  createDecoder(options: DecodeOptions = {}): StreamingDecoder {
    return new StreamingDecoder(this, options);
  }

  /** The text one token decodes to on its own (a partial UTF-8 sequence shows as U+FFFD). */
  tokenToPiece(id: number): string {
    return utf8Decoder.decode(this.tokenToBytes(id));
  }

  /**
   * The bytes one token decodes to: byte-level spelling undone (BPE), U+2581 as a space (SPM), <0xXX> as its
   * byte, special tokens as their text, unused tokens as nothing (as llama.cpp).
   */
  tokenToBytes(id: number): Uint8Array {
    this.checkId(id);
    let bytes = this.pieces[id];
    if (bytes === undefined) {
      bytes = this.computeBytes(id);
      this.pieces[id] = bytes;
    }
    return bytes;
  }

  /** The vocabulary entry as stored in the GGUF (e.g. 'ĠHello', '▁Hello', '<0x0A>'). */
  tokenText(id: number): string {
    this.checkId(id);
    return this.texts[id]!;
  }

  tokenType(id: number): TokenType {
    this.checkId(id);
    return this.types[id]! as TokenType;
  }

  /** Control, unknown-type or user-defined: matched in text before BPE/SPM, a boundary for the space rule. */
  isSpecial(id: number): boolean {
    return SPECIAL_TYPES.has(this.tokenType(id));
  }

  isEog(id: number): boolean {
    return this.eog.has(id);
  }

  private checkId(id: number): void {
    if (!Number.isInteger(id) || id < 0 || id >= this.vocabSize) {
      throw new TokenizerError(`token id ${id} is outside the vocabulary (0..${this.vocabSize - 1})`);
    }
  }

  private computeBytes(id: number): Uint8Array {
    const text = this.texts[id]!;
    switch (this.types[id]) {
      case TokenType.NORMAL:
        return this.model === 'gpt2' ? unspellBytes(text) : spmPieceBytes(text);
      case TokenType.BYTE: {
        const m = /^<0x([0-9A-Fa-f]{2})>$/.exec(text);
        return m ? Uint8Array.of(parseInt(m[1]!, 16)) : utf8Encoder.encode(text);
      }
      case TokenType.CONTROL:
      case TokenType.UNKNOWN:
      case TokenType.USER_DEFINED:
        return utf8Encoder.encode(text);
      default:
        return new Uint8Array(0);
    }
  }
}

/**
 * Streaming detokenizer: push(id) returns the text completed so far, holding back the bytes of a UTF-8 sequence
 * that later tokens finish; flush() ends the stream (held bytes become U+FFFD). Concatenated output equals
 * Tokenizer.decode of the same ids.
 */
export class StreamingDecoder {
  private readonly utf8 = new TextDecoder('utf-8');
  private readonly skipSpecial: boolean;
  /** SentencePiece: the next text token's leading space is the one encode added. */
  private stripSpace: boolean;

  constructor(private readonly tokenizer: Tokenizer, options: DecodeOptions = {}) {
    this.skipSpecial = options.skipSpecial ?? false;
    this.stripSpace = tokenizer.addSpacePrefix && !(options.continues ?? false);
  }

  push(id: number): string {
    const type = this.tokenizer.tokenType(id);
    let bytes = this.tokenizer.tokenToBytes(id);
    if (SPECIAL_TYPES.has(type)) {
      this.stripSpace = this.tokenizer.addSpacePrefix;
      if (this.skipSpecial && type !== TokenType.USER_DEFINED) return '';
    } else if (this.stripSpace) {
      this.stripSpace = false;
      if (bytes[0] === 0x20) bytes = bytes.subarray(1);
    }
    return bytes.length > 0 ? this.utf8.decode(bytes, { stream: true }) : '';
  }

  flush(): string {
    return this.utf8.decode();
  }
}

/** A numeric metadata array with at least `count` entries, or undefined when the key is absent. */
function numericArray(md: GgufMetadata, key: string, count: number): ArrayLike<number> | undefined {
  const value = md.array(key, false);
  if (value === undefined) return undefined;
  if (Array.isArray(value) || value instanceof BigInt64Array || value instanceof BigUint64Array) {
    throw new TokenizerError(`${md.file.source}: metadata '${key}' must be an array of numbers`);
  }
  if (value.length < count) {
    throw new TokenizerError(`${md.file.source}: metadata '${key}' has ${value.length} entries for ${count} tokens`);
  }
  return value;
}
