import { readFileSync } from 'node:fs';

import { describe, expect, it } from 'vitest';

import type { GgufFile } from '../lib/format/gguf.js';
import { GgufType, GgufWriter, parseGguf, readGguf } from '../lib/format/gguf.js';
import { spellBytes } from '../lib/tokenizer/bpe.js';
import { SpmModel } from '../lib/tokenizer/spm.js';
import { Tokenizer, TokenizerError, TokenType } from '../lib/tokenizer/index.js';
import { pseudoEnglish } from '../bench/text.mjs';
import { rng, vocabPath } from './helpers.js';

// Oracle: llama.cpp's test-tokenizer-0 vocabularies and cases (inputs split on the separator, one line of ids
// per case, no BOS). test-tokenizer-0 calls common_tokenize(ctx, text, add_special = false, parse_special = false).
// scripts/test-data.mjs takes them from the llama.cpp source inside node-llama-cpp (vocabPath).
const SEPARATOR = '\n__ggml_vocab_test__\n';

interface Vocab {
  file: GgufFile;
  tokenizer: Tokenizer;
  cases: Array<{ text: string; ids: number[] }>;
}

function loadVocab(name: string): Vocab {
  const path = vocabPath(`ggml-vocab-${name}.gguf`);
  const file = readGguf(path);
  // As test-tokenizer-0 reads them: the .inp ends with a separator, which yields no empty last case.
  const raw = readFileSync(`${path}.inp`, 'utf8');
  const texts: string[] = [];
  for (let pos = 0; pos < raw.length;) {
    const next = raw.indexOf(SEPARATOR, pos);
    texts.push(raw.slice(pos, next < 0 ? raw.length : next));
    pos = next < 0 ? raw.length : next + SEPARATOR.length;
  }
  const lines = readFileSync(`${path}.out`, 'utf8').split('\n');
  if (lines.at(-1) === '') lines.pop();
  const cases = texts.map((text, i) => {
    const line = lines[i]!.trim();
    return { text, ids: line === '' ? [] : line.split(' ').map(Number) };
  });
  return { file, tokenizer: Tokenizer.fromGguf(file), cases };
}

const bpe = loadVocab('llama-bpe');
const spm = loadVocab('llama-spm');

/** The same file with some metadata replaced (undefined: removed). */
function withMetadata(file: GgufFile, changes: Record<string, string | undefined>): GgufFile {
  const metadata = new Map(file.metadata);
  for (const [key, value] of Object.entries(changes)) {
    if (value === undefined) metadata.delete(key);
    else metadata.set(key, { type: GgufType.STRING, value });
  }
  return { ...file, metadata };
}

/** Feeds ids one at a time; returns every chunk pushed plus the final flush. */
function streamChunks(tokenizer: Tokenizer, ids: number[]): string[] {
  const decoder = tokenizer.createDecoder();
  const chunks = ids.map((id) => decoder.push(id));
  chunks.push(decoder.flush());
  return chunks;
}

const MULTIBYTE = 'Héllo 🦙 wörld: 我想在apple工作 🚀😶‍🌫️ ✅ кириллица ខ្មែរ 𝔘𝔫𝔦𝔠𝔬𝔡𝔢';

describe.each([
  ['llama-bpe', bpe],
  ['llama-spm', spm],
])('%s vocabulary: llama.cpp test-tokenizer-0 cases', (_name, vocab) => {
  it('has 46 cases, as many inputs as expected lines', () => {
    expect(vocab.cases).toHaveLength(46);
  });

  it.each(vocab.cases.map((c, i) => [i, c] as const))('case %i encodes to llama.cpp\'s ids', (_i, c) => {
    expect(vocab.tokenizer.encode(c.text, { addBos: false, parseSpecial: false })).toEqual(c.ids);
  });

  it.each(vocab.cases.map((c, i) => [i, c] as const))('case %i decodes back to its text', (_i, c) => {
    // SentencePiece: decode drops the one leading space that encode's add_space_prefix added, so this is exact.
    expect(vocab.tokenizer.decode(c.ids)).toBe(c.text);
  });
});

describe.each([
  ['llama-bpe', bpe],
  ['llama-spm', spm],
])('%s vocabulary: behaviour', (_name, vocab) => {
  const tok = vocab.tokenizer;

  it('accepts a vocab-only GGUF (no tensors)', () => {
    expect(vocab.file.tensors).toHaveLength(0);
    expect(tok.vocabSize).toBe((vocab.file.metadata.get('tokenizer.ggml.tokens')!.value as string[]).length);
  });

  it('streams multi-byte text one id at a time exactly as decode does, never emitting half a character', () => {
    const ids = tok.encode(MULTIBYTE, { addBos: false });
    const chunks = streamChunks(tok, ids);
    expect(chunks.join('')).toBe(tok.decode(ids));
    expect(chunks.join('')).toBe(MULTIBYTE);
    for (const chunk of chunks) expect(chunk).not.toContain('\uFFFD');
    // Some ids carry only part of a character: the decoder held their bytes back.
    expect(chunks.some((chunk, i) => chunk === '' && i < ids.length)).toBe(true);
  });

  it('round-trips multi-byte text through encode and decode', () => {
    expect(tok.decode(tok.encode(MULTIBYTE))).toBe(tok.decode([tok.bos!]) + MULTIBYTE);
  });

  it('adds BOS by default and not when asked not to', () => {
    expect(tok.addBos).toBe(true);
    expect(tok.encode('Hello')[0]).toBe(tok.bos);
    expect(tok.encode('Hello', { addBos: false })).not.toContain(tok.bos);
    expect(tok.encode('', { addBos: true })).toEqual([tok.bos]);
    expect(tok.encode('')).toEqual([tok.bos]);
  });

  it('drops special tokens from decoded text only when asked', () => {
    const ids = tok.encode('Hello');
    expect(tok.decode(ids, { skipSpecial: true })).toBe('Hello');
    expect(tok.decode(ids)).toBe(`${tok.tokenText(tok.bos!)}Hello`);
  });

  it('rejects out-of-range and non-integer ids, naming the id', () => {
    for (const id of [tok.vocabSize, -1, 1.5, Number.NaN]) {
      expect(() => tok.decode([id])).toThrow(TokenizerError);
      expect(() => tok.decode([id])).toThrow(String(id));
      expect(() => tok.createDecoder().push(id)).toThrow(TokenizerError);
    }
  });

  it('puts EOS in the end-of-generation set', () => {
    expect(tok.eos).toBeDefined();
    expect(tok.isEog(tok.eos!)).toBe(true);
    expect(tok.isEog(tok.encode('Hello', { addBos: false })[0]!)).toBe(false);
  });
});

describe('llama-bpe specifics', () => {
  const tok = bpe.tokenizer;

  it('reads the ids and pre-tokenizer from metadata', () => {
    expect(tok.model).toBe('gpt2');
    expect(tok.pre).toBe('llama-bpe');
    expect(tok.vocabSize).toBe(128256);
    expect(tok.bos).toBe(128000);
    expect(tok.eos).toBe(128001);
    expect(tok.tokenText(128009)).toBe('<|eot_id|>');
    expect(tok.eot).toBe(128009);
  });

  it('ends generation at <|eot_id|> and <|end_of_text|>', () => {
    expect(tok.isEog(128009)).toBe(true);
    expect(tok.isEog(128001)).toBe(true);
  });

  it('matches special tokens written in the text when parseSpecial (the default)', () => {
    expect(tok.encode('<|begin_of_text|>Hello', { addBos: false })).toEqual([128000, 9906]);
    expect(tok.encode('Hi<|eot_id|><|start_header_id|>', { addBos: false })).toEqual([13347, 128009, 128006]);
    expect(tok.decode([128000, 9906])).toBe('<|begin_of_text|>Hello');
  });

  it('spells special-token text as ordinary text without parseSpecial', () => {
    const ids = tok.encode('<|begin_of_text|>Hello', { addBos: false, parseSpecial: false });
    expect(ids).not.toContain(128000);
    expect(tok.decode(ids)).toBe('<|begin_of_text|>Hello');
  });

  it('holds back the bytes of an emoji split over three ids', () => {
    // ' 🦙' is ids 11410 99 247 (case 18): ' ' plus the emoji's first byte, then its second, then the last two.
    const decoder = tok.createDecoder();
    expect([11410, 99, 247].map((id) => decoder.push(id))).toEqual([' ', '', '🦙']);
    expect(decoder.flush()).toBe('');
  });

  it('turns dangling partial bytes into U+FFFD at flush', () => {
    const decoder = tok.createDecoder();
    expect(decoder.push(11410)).toBe(' ');
    expect(decoder.flush()).toBe('\uFFFD');
    expect(tok.tokenToPiece(11410)).toBe(' \uFFFD');
    expect(tok.tokenToPiece(22691)).toBe(' Hello');
  });

  it('takes an absent tokenizer.ggml.pre with a 128256-token vocabulary as llama-bpe', () => {
    const tok2 = Tokenizer.fromGguf(withMetadata(bpe.file, { 'tokenizer.ggml.pre': undefined }));
    expect(tok2.pre).toBe('llama-bpe');
    for (const c of bpe.cases) expect(tok2.encode(c.text, { addBos: false, parseSpecial: false })).toEqual(c.ids);
  });

  it('rejects an unknown pre-tokenizer, naming it', () => {
    const file = withMetadata(bpe.file, { 'tokenizer.ggml.pre': 'nonesuch-bpe' });
    expect(() => Tokenizer.fromGguf(file)).toThrow(TokenizerError);
    expect(() => Tokenizer.fromGguf(file)).toThrow(/nonesuch-bpe/);
  });

  it('rejects an unknown tokenizer model, naming it', () => {
    expect(() => Tokenizer.fromGguf(withMetadata(bpe.file, { 'tokenizer.ggml.model': 'bert' }))).toThrow(/'bert'/);
  });

  it('splits with the GPT-2 pattern when pre is gpt-2', () => {
    // LLaMA-3's pattern keeps a newline run whole and lets one punctuation mark lead a word; GPT-2's does neither.
    const gpt2 = Tokenizer.fromGguf(withMetadata(bpe.file, { 'tokenizer.ggml.pre': 'gpt-2' }));
    expect(gpt2.pre).toBe('gpt-2');
    expect(tok.encode('Hello\n\nworld', { addBos: false })).toEqual([9906, 271, 14957]);
    expect(gpt2.encode('Hello\n\nworld', { addBos: false })).toEqual([9906, 198, 198, 14957]);
    expect(tok.encode('a+b=c', { addBos: false })).toEqual([64, 36193, 20105]);
    expect(gpt2.encode('a+b=c', { addBos: false })).toEqual([64, 10, 65, 28, 66]);
  });
});

describe('llama-spm specifics', () => {
  const tok = spm.tokenizer;

  it('reads the ids and flags from metadata', () => {
    expect(tok.model).toBe('llama');
    expect(tok.vocabSize).toBe(32000);
    expect([tok.unk, tok.bos, tok.eos]).toEqual([0, 1, 2]);
    expect(tok.addSpacePrefix).toBe(true);
    expect(tok.tokenType(3)).toBe(TokenType.BYTE);
  });

  it('prefixes U+2581 to text at the start and after a special token', () => {
    const hello = tok.encode('Hello', { addBos: false });
    expect(tok.tokenText(hello[0]!)).toBe('▁Hello');
    expect(tok.encode('<s>Hello', { addBos: false })).toEqual([1, ...hello]);
    expect(tok.decode([1, ...hello])).toBe('<s>Hello');
  });

  it('falls back to <0xXX> byte tokens for characters outside the vocabulary', () => {
    const ids = tok.encode('🦙', { addBos: false });
    expect(ids.slice(1).map((id) => tok.tokenText(id))).toEqual(['<0xF0>', '<0x9F>', '<0xA6>', '<0x99>']);
    expect(tok.decode(ids)).toBe('🦙');
  });

  it('merges per word chunk exactly as llama.cpp\'s single queue over the whole text does', () => {
    const texts = spm.file.metadata.get('tokenizer.ggml.tokens')!.value as string[];
    const scores = spm.file.metadata.get('tokenizer.ggml.scores')!.value as Float32Array;
    const vocab = new Map(texts.map((text, id) => [text, id]));
    const reference = new SpmModel(vocab, scores, 0, { chunkAtSpaces: false, scanLimit: 0 });
    const fast = new SpmModel(vocab, scores, 0);
    const encodeWith = (model: SpmModel, text: string): number[] => {
      const out: number[] = [];
      model.encode(text, true, out);
      return out;
    };
    for (const c of spm.cases.filter((c) => c.text !== '')) expect(encodeWith(reference, c.text)).toEqual(c.ids);
    // Long chunks (no spaces) take the queue path in the fast model too.
    for (const text of [MULTIBYTE, 'Pneumonoultramicroscopicsilicovolcanoconiosis'.repeat(4), '我想在apple工作1314151天～'.repeat(8)]) {
      expect(encodeWith(fast, text)).toEqual(encodeWith(reference, text));
    }
  });

  it('keeps the leading space when the ids continue earlier text', () => {
    const ids = tok.encode('Hello', { addBos: false });
    expect(tok.decode(ids, { continues: true })).toBe(' Hello');
    expect(tok.decode(ids)).toBe('Hello');
  });
});

describe('small synthetic byte-level vocabulary', () => {
  const ascii = Array.from({ length: 128 }, (_, b) => spellBytes(String.fromCharCode(b)));
  const extra = ['he', 'll', 'hell', 'hello', 'Ġw', 'or', 'Ġwor', 'ld', 'Ġworld', 'ab', 'bc', '<|end|>'];
  const tokens = [...ascii, ...extra];
  const idOf = (text: string): number => tokens.indexOf(text);
  // 'b c' outranks 'a b': rank decides, not position.
  const merges = ['b c', 'a b', 'h e', 'l l', 'he ll', 'hell o', 'Ġ w', 'o r', 'Ġw or', 'l d', 'Ġwor ld'];
  const build = (eos: number): Tokenizer => {
    const writer = new GgufWriter()
      .string('tokenizer.ggml.model', 'gpt2')
      .stringArray('tokenizer.ggml.tokens', tokens)
      .stringArray('tokenizer.ggml.merges', merges)
      .i32Array('tokenizer.ggml.token_type', Int32Array.from(tokens, (t) => (t === '<|end|>' ? TokenType.CONTROL : TokenType.NORMAL)))
      .u32('tokenizer.ggml.eos_token_id', eos);
    return Tokenizer.fromGguf(parseGguf(writer.toBytes(), 'synthetic.gguf'));
  };
  const tok = build(idOf('<|end|>'));

  it('uses llama.cpp\'s default pre-tokenizer when pre is absent and the vocabulary is not LLaMA-3\'s', () => {
    expect(tok.pre).toBe('default');
    expect(tok.addBos).toBe(false);
    expect(tok.bos).toBeUndefined();
  });

  it('merges by rank within each pre-token', () => {
    expect(tok.encode('hello world')).toEqual([idOf('hello'), idOf('Ġworld')]);
    expect(tok.encode('abc')).toEqual([idOf('a'), idOf('bc')]);
    expect(tok.decode(tok.encode('hello world!'))).toBe('hello world!');
  });

  it('matches control tokens and ends generation at EOS', () => {
    expect(tok.encode('hello<|end|>')).toEqual([idOf('hello'), idOf('<|end|>')]);
    expect(tok.isEog(idOf('<|end|>'))).toBe(true);
  });

  it('rejects a special id outside the vocabulary, naming the key', () => {
    expect(() => build(tokens.length)).toThrow(TokenizerError);
    expect(() => build(tokens.length)).toThrow(/tokenizer\.ggml\.eos_token_id/);
  });

  it('refuses to add a BOS the vocabulary does not have', () => {
    expect(() => tok.encode('hello', { addBos: true })).toThrow(TokenizerError);
  });
});

// Speed is measured in bench/tokenizer.mjs (build time, MB/s on unseen words), never asserted here.
describe('text of words the tokenizer has not seen', () => {
  it.each([
    ['llama-bpe', bpe],
    ['llama-spm', spm],
  ])('%s: 10 KB of made-up English-like words round-trip, and the same text always gives the same ids', (_name, vocab) => {
    const tok = Tokenizer.fromGguf(vocab.file);
    const first = pseudoEnglish(rng(1), 10240);
    const text = pseudoEnglish(rng(2), 10240); // another lexicon: no word of it was encoded before
    tok.encode(first);
    const ids = tok.encode(text, { addBos: false });
    expect(ids.length).toBeGreaterThan(1000);
    expect(tok.decode(ids)).toBe(text);
    expect(Tokenizer.fromGguf(vocab.file).encode(text, { addBos: false })).toEqual(ids); // no state carried from `first`
  });
});
