// Tokenizers of Hugging Face checkpoints → GGUF tokenizer keys.
//   tokenizer.model (SentencePiece)  the `llama` section (spm-model.ts); tokens the model has beyond the
//                                    pieces (1bitLLM: 32000 pieces + 2 added) come from added_tokens.json /
//                                    tokenizer.json's added_tokens, then `[PAD<id>]` unused entries
//   tokenizer.json (byte-level BPE)  the `gpt2` section: model.vocab and model.merges, added_tokens (special →
//                                    control, others user-defined), the pre-tokenizer named after its regex
//                                    (LLaMA-3's split → 'llama-bpe', a bare ByteLevel → 'gpt2'), BOS/EOS from
//                                    tokenizer_config.json / config.json
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

import { ModelFormatError } from '../errors.js';
import { type GgufWriter } from '../format/gguf.js';
import { type TokenizerSection } from './export.js';
import { type SpmModelFile, readSpmModel, writeSpmTokenizer } from './spm-model.js';

interface AddedToken { id: number; content: string; special: boolean }

function readJson(path: string): Record<string, unknown> {
  try {
    const v = JSON.parse(readFileSync(path, 'utf8')) as unknown;
    if (v === null || typeof v !== 'object' || Array.isArray(v)) throw new Error('not a JSON object');
    return v as Record<string, unknown>;
  } catch (err) {
    throw new ModelFormatError(`${path}: ${(err as Error).message}`);
  }
}

function addedTokens(dir: string): AddedToken[] {
  const out = new Map<number, AddedToken>();
  const tj = join(dir, 'tokenizer.json');
  if (existsSync(tj)) {
    const added = readJson(tj)['added_tokens'];
    if (Array.isArray(added)) {
      for (const a of added as Array<Record<string, unknown>>) {
        if (Number.isInteger(a['id']) && typeof a['content'] === 'string') out.set(a['id'] as number, { id: a['id'] as number, content: a['content'], special: a['special'] === true });
      }
    }
  }
  const aj = join(dir, 'added_tokens.json');
  if (existsSync(aj)) {
    for (const [content, id] of Object.entries(readJson(aj))) {
      if (!Number.isInteger(id)) throw new ModelFormatError(`${aj}: id of '${content}' is not an integer`);
      if (!out.has(id as number)) out.set(id as number, { id: id as number, content, special: false });
    }
  }
  return [...out.values()];
}

/** Special token ids from tokenizer_config.json (content strings) and config.json (ids). */
function specialIds(dir: string, vocab: Map<string, number>, config: Record<string, unknown>): { bos?: number; eos?: number } {
  const out: { bos?: number; eos?: number } = {};
  const tc = join(dir, 'tokenizer_config.json');
  if (existsSync(tc)) {
    const j = readJson(tc);
    for (const k of ['bos', 'eos'] as const) {
      const v = j[`${k}_token`];
      const text = typeof v === 'string' ? v : v && typeof v === 'object' ? (v as { content?: unknown }).content : undefined;
      if (typeof text === 'string' && vocab.has(text)) out[k] = vocab.get(text)!;
    }
  }
  for (const k of ['bos', 'eos'] as const) {
    const v = config[`${k}_token_id`];
    const id = Array.isArray(v) ? v[0] : v;
    if (out[k] === undefined && Number.isInteger(id)) out[k] = id as number;
  }
  return out;
}

/** The SentencePiece model of `dir`, grown to `vocab` entries with the added tokens and unused padding. */
export function spmTokenizer(dir: string, vocab: number): SpmModelFile {
  const path = join(dir, 'tokenizer.model');
  const m = readSpmModel(path);
  if (m.pieces.length > vocab) throw new ModelFormatError(`${path}: ${m.pieces.length} pieces, but the model has only ${vocab} embeddings`);
  const pieces = m.pieces.slice();
  const extra = new Map(addedTokens(dir).filter((a) => a.id >= m.pieces.length).map((a) => [a.id, a]));
  for (let id = pieces.length; id < vocab; id++) {
    const a = extra.get(id);
    pieces.push(a ? { piece: a.content, score: 0, type: a.special ? 3 : 4 } : { piece: `[PAD${id}]`, score: 0, type: 5 });
  }
  return { ...m, pieces };
}

const LLAMA3_SPLIT = "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

/** tokenizer.ggml.pre for a tokenizer.json pre_tokenizer (only the ones bitllm's BPE implements). */
function preTokenizerName(pre: unknown, path: string): string {
  const parts = pre && typeof pre === 'object' && (pre as { type?: unknown }).type === 'Sequence'
    ? ((pre as { pretokenizers?: unknown }).pretokenizers as Array<Record<string, unknown>> | undefined) ?? []
    : pre ? [pre as Record<string, unknown>] : [];
  const split = parts.find((p) => p['type'] === 'Split');
  const byteLevel = parts.find((p) => p['type'] === 'ByteLevel');
  if (split) {
    const regex = (split['pattern'] as { Regex?: unknown } | undefined)?.Regex;
    // LLaMA-3's split: the exact pattern, or a copy differing only in escaping (same alternatives, digits in threes).
    const llama3 = regex === LLAMA3_SPLIT || (typeof regex === 'string' && regex.startsWith("(?i:'s|'t|'re|'ve|'m|'ll|'d)") && regex.includes('\\p{N}{1,3}'));
    if (llama3 && byteLevel && byteLevel['use_regex'] === false) return 'llama-bpe';
    throw new ModelFormatError(`${path}: pre-tokenizer split ${JSON.stringify(regex)} is not one bitllm implements (LLaMA-3's, or GPT-2's ByteLevel)`);
  }
  if (byteLevel && byteLevel['use_regex'] !== false) return 'gpt2';
  throw new ModelFormatError(`${path}: pre_tokenizer ${JSON.stringify(pre)?.slice(0, 200)} is not one bitllm implements (LLaMA-3's split, or GPT-2's ByteLevel)`);
}

/** tokenizer.json's byte-level BPE as the GGUF `gpt2` section. */
export function bpeTokenizer(dir: string, vocab: number, config: Record<string, unknown>): TokenizerSection {
  const path = join(dir, 'tokenizer.json');
  const j = readJson(path);
  const model = j['model'] as Record<string, unknown> | undefined;
  if (!model || model['type'] !== 'BPE') throw new ModelFormatError(`${path}: model.type is ${JSON.stringify(model?.['type'])}, not BPE`);
  const v = model['vocab'];
  if (!v || typeof v !== 'object') throw new ModelFormatError(`${path}: model.vocab is missing`);
  const texts: Array<string | undefined> = new Array(vocab);
  const types = new Int32Array(vocab).fill(1);
  const put = (text: string, id: unknown, type: number) => {
    if (!Number.isInteger(id) || (id as number) < 0) throw new ModelFormatError(`${path}: token '${text}' has id ${String(id)}`);
    if ((id as number) >= vocab) throw new ModelFormatError(`${path}: token '${text}' has id ${String(id)}, outside the model's ${vocab} embeddings`);
    texts[id as number] = text;
    types[id as number] = type;
  };
  for (const [text, id] of Object.entries(v as Record<string, unknown>)) put(text, id, 1);
  for (const a of addedTokens(dir)) put(a.content, a.id, a.special ? 3 : 4);
  for (let id = 0; id < vocab; id++) if (texts[id] === undefined) { texts[id] = `[PAD${id}]`; types[id] = 5; }
  const rawMerges = model['merges'];
  if (!Array.isArray(rawMerges)) throw new ModelFormatError(`${path}: model.merges is missing`);
  const merges = rawMerges.map((m: unknown, i) => {
    if (typeof m === 'string' && m.split(' ').length === 2) return m;
    if (Array.isArray(m) && m.length === 2 && m.every((x) => typeof x === 'string')) return `${m[0] as string} ${m[1] as string}`;
    throw new ModelFormatError(`${path}: merge ${i} is ${JSON.stringify(m)}`);
  });
  const pre = preTokenizerName(j['pre_tokenizer'], path);
  const vocabMap = new Map(texts.map((t, i) => [t!, i]));
  const ids = specialIds(dir, vocabMap, config);
  return {
    size: vocab,
    write(w: GgufWriter) {
      w.string('tokenizer.ggml.model', 'gpt2');
      w.string('tokenizer.ggml.pre', pre);
      w.stringArray('tokenizer.ggml.tokens', texts as string[]);
      w.i32Array('tokenizer.ggml.token_type', types);
      w.stringArray('tokenizer.ggml.merges', merges);
      if (ids.bos !== undefined) w.u32('tokenizer.ggml.bos_token_id', ids.bos);
      if (ids.eos !== undefined) w.u32('tokenizer.ggml.eos_token_id', ids.eos);
    },
  };
}

/** tokenizer_config.json's chat_template (a string), if any. */
function chatTemplate(dir: string): string | undefined {
  const tc = join(dir, 'tokenizer_config.json');
  if (!existsSync(tc)) return undefined;
  const t = readJson(tc)['chat_template'];
  return typeof t === 'string' ? t : undefined;
}

/**
 * The checkpoint's tokenizer: tokenizer.model if present (SentencePiece), else tokenizer.json (BPE), plus
 * tokenizer_config.json's chat_template as tokenizer.chat_template (the engine picks the chat format from it).
 */
export function checkpointTokenizer(dir: string, vocab: number, config: Record<string, unknown>): TokenizerSection {
  let section: TokenizerSection;
  if (existsSync(join(dir, 'tokenizer.model'))) {
    const m = spmTokenizer(dir, vocab);
    section = { size: m.pieces.length, write: (w) => writeSpmTokenizer(w, m, join(dir, 'tokenizer.model')) };
  } else if (existsSync(join(dir, 'tokenizer.json'))) section = bpeTokenizer(dir, vocab, config);
  else throw new ModelFormatError(`${dir}: no tokenizer.model or tokenizer.json`);
  const template = chatTemplate(dir);
  if (template === undefined) return section;
  return { size: section.size, write: (w) => { section.write(w); w.string('tokenizer.chat_template', template); } };
}
