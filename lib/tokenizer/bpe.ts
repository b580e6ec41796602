// Byte-level BPE (tokenizer.ggml.model = 'gpt2'), with llama.cpp's llm_tokenizer_bpe as the oracle:
// text -> pre-tokens (regexes chosen by tokenizer.ggml.pre) -> UTF-8 bytes spelled in GPT-2's printable
// alphabet -> merges applied lowest rank first inside each pre-token -> vocabulary ids.
import { TokenizerError } from './errors.js';

// ---------------------------------------------------------------- GPT-2 byte <-> unicode

/** Bytes that GPT-2 spells as themselves; the other 68 take code points 256, 257, ... in byte order. */
function isSelfSpelledByte(b: number): boolean {
  return (b >= 0x21 && b <= 0x7e) || (b >= 0xa1 && b <= 0xac) || (b >= 0xae && b <= 0xff);
}

/** byte -> its one-character spelling. (256) */
const BYTE_TO_CHAR: readonly string[] = (() => {
  const chars = new Array<string>(256);
  let next = 256;
  for (let b = 0; b < 256; b++) chars[b] = String.fromCharCode(isSelfSpelledByte(b) ? b : next++);
  return chars;
})();

/** char code -> byte it spells, -1 where it spells none. (324: the highest spelling is U+0143) */
const CHAR_TO_BYTE: Int16Array = (() => {
  const bytes = new Int16Array(324).fill(-1);
  BYTE_TO_CHAR.forEach((c, b) => { bytes[c.charCodeAt(0)] = b; });
  return bytes;
})();

/** The GPT-2 spelling of `text`'s UTF-8 bytes: one char per byte (lone surrogates become U+FFFD, as TextEncoder does). */
export function spellBytes(text: string): string {
  let out = '';
  const n = text.length;
  for (let i = 0; i < n; i++) {
    let c = text.charCodeAt(i);
    if (c < 0x80) { out += BYTE_TO_CHAR[c]!; continue; }
    if (c < 0x800) { out += BYTE_TO_CHAR[0xc0 | (c >> 6)]! + BYTE_TO_CHAR[0x80 | (c & 0x3f)]!; continue; }
    if (c >= 0xd800 && c <= 0xdbff && i + 1 < n) {
      const low = text.charCodeAt(i + 1);
      if (low >= 0xdc00 && low <= 0xdfff) {
        const cp = 0x10000 + ((c - 0xd800) << 10) + (low - 0xdc00);
        i++;
        out += BYTE_TO_CHAR[0xf0 | (cp >> 18)]! + BYTE_TO_CHAR[0x80 | ((cp >> 12) & 0x3f)]!
          + BYTE_TO_CHAR[0x80 | ((cp >> 6) & 0x3f)]! + BYTE_TO_CHAR[0x80 | (cp & 0x3f)]!;
        continue;
      }
    }
    if (c >= 0xd800 && c <= 0xdfff) c = 0xfffd;
    out += BYTE_TO_CHAR[0xe0 | (c >> 12)]! + BYTE_TO_CHAR[0x80 | ((c >> 6) & 0x3f)]! + BYTE_TO_CHAR[0x80 | (c & 0x3f)]!;
  }
  return out;
}

const utf8Encoder = new TextEncoder();

/**
 * Raw bytes of a byte-level token's text. A character outside the GPT-2 alphabet keeps its own UTF-8
 * (llama.cpp writes an "[UNK_BYTE_...]" marker there instead; no well-formed vocabulary has one).
 */
export function unspellBytes(text: string): Uint8Array {
  const bytes: number[] = [];
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    const b = c < CHAR_TO_BYTE.length ? CHAR_TO_BYTE[c]! : -1;
    if (b >= 0) { bytes.push(b); continue; }
    const cp = text.codePointAt(i)!;
    const ch = String.fromCodePoint(cp);
    for (const x of utf8Encoder.encode(ch)) bytes.push(x);
    i += ch.length - 1;
  }
  return Uint8Array.from(bytes);
}

// ---------------------------------------------------------------- pre-tokenizers

export interface PreTokenizer {
  /** Applied in order; each splits every piece of the one before into its matches and the gaps between them. */
  patterns: readonly RegExp[];
  /** A pre-token that is itself a vocabulary entry is emitted whole, merges unused (tiktoken-style vocabularies). */
  ignoreMerges: boolean;
  /** llama.cpp's add_bos default for this family when tokenizer.ggml.add_bos_token is absent. */
  addBos: boolean;
}

// `\s` is spelled \p{White_Space} (Unicode's set, as llama.cpp and the HF tokenizers use): JS's \s adds U+FEFF
// and lacks U+0085.
const WS = String.raw`\p{White_Space}`;

// LLaMA-3 (tiktoken cl100k-style); the original's `(?i:'s|...)` is spelled with explicit case pairs, as in
// llama.cpp, because JS's `i` flag would apply Unicode case folding to the whole pattern.
const LLAMA3 = new RegExp(
  String.raw`(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}` +
    String.raw`| ?[^${WS}\p{L}\p{N}]+[\r\n]*|${WS}*[\r\n]+|${WS}+(?!\P{White_Space})|${WS}+`,
  'gu',
);

// GPT-2; the trailing `\s+` is what llama.cpp's splitter does for whitespace the original pattern leaves unmatched.
const GPT2 = new RegExp(
  String.raw`'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^${WS}\p{L}\p{N}]+|${WS}+(?!\P{White_Space})|${WS}+`,
  'gu',
);

const LLAMA3_FAMILY: PreTokenizer = { patterns: [LLAMA3], ignoreMerges: true, addBos: true };
const GPT2_FAMILY: PreTokenizer = { patterns: [GPT2], ignoreMerges: false, addBos: false };
// llama.cpp's fallback for pre = 'default' (and for an absent pre on vocabularies that are not LLaMA-3's).
const DEFAULT_FAMILY: PreTokenizer = {
  patterns: [/[\p{P}$+<=>^~|]+/gu, GPT2, /\p{N}+/gu, /[0-9][0-9][0-9]/gu],
  ignoreMerges: false,
  addBos: false,
};

/** tokenizer.ggml.pre -> pre-tokenizer (names as llama.cpp's convert script writes them). */
const PRE_TOKENIZERS: Readonly<Record<string, PreTokenizer>> = {
  'llama-bpe': LLAMA3_FAMILY,
  llama3: LLAMA3_FAMILY,
  'llama-v3': LLAMA3_FAMILY,
  falcon3: LLAMA3_FAMILY,
  'falcon-h1': LLAMA3_FAMILY,
  pixtral: LLAMA3_FAMILY,
  'gpt-2': GPT2_FAMILY,
  gpt2: GPT2_FAMILY,
  'phi-2': GPT2_FAMILY,
  default: DEFAULT_FAMILY,
};

/** The pre-tokenizer named by tokenizer.ggml.pre; `source` names the file in the error for an unknown one. */
export function preTokenizerFor(pre: string, source: string): PreTokenizer {
  const found = Object.hasOwn(PRE_TOKENIZERS, pre) ? PRE_TOKENIZERS[pre] : undefined;
  if (found === undefined) {
    throw new TokenizerError(
      `${source}: unknown pre-tokenizer tokenizer.ggml.pre = '${pre}' (supported: ${Object.keys(PRE_TOKENIZERS).join(', ')})`,
    );
  }
  return found;
}

/** Splits `piece` into the matches of `pattern` and the unmatched gaps between them, in order. */
function splitByPattern(piece: string, pattern: RegExp, out: string[]): void {
  pattern.lastIndex = 0;
  let end = 0;
  for (let m = pattern.exec(piece); m !== null; m = pattern.exec(piece)) {
    if (m[0].length === 0) { pattern.lastIndex++; continue; }
    if (m.index > end) out.push(piece.slice(end, m.index));
    out.push(m[0]);
    end = m.index + m[0].length;
  }
  if (end < piece.length) out.push(piece.slice(end));
}

/** The pre-tokens of `text`. */
export function preTokenize(text: string, pre: PreTokenizer): string[] {
  let pieces = [text];
  for (const pattern of pre.patterns) {
    const next: string[] = [];
    for (const piece of pieces) splitByPattern(piece, pattern, next);
    pieces = next;
  }
  return pieces;
}

// ---------------------------------------------------------------- priority queue

/** Binary min-heap under `before` (used by both merge loops). */
export class BinaryHeap<T> {
  private readonly items: T[] = [];
  constructor(private readonly before: (a: T, b: T) => boolean) {}
  get size(): number { return this.items.length; }
  push(item: T): void {
    const a = this.items;
    let i = a.length;
    a.push(item);
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (!this.before(item, a[parent]!)) break;
      a[i] = a[parent]!;
      i = parent;
    }
    a[i] = item;
  }
  pop(): T | undefined {
    const a = this.items;
    const top = a[0];
    const last = a.pop();
    if (a.length === 0 || last === undefined) return top;
    let i = 0;
    for (;;) {
      const l = 2 * i + 1;
      if (l >= a.length) break;
      const r = l + 1;
      const child = r < a.length && this.before(a[r]!, a[l]!) ? r : l;
      if (!this.before(a[child]!, last)) break;
      a[i] = a[child]!;
      i = child;
    }
    a[i] = last;
    return top;
  }
}

// ---------------------------------------------------------------- merges

interface Bigram {
  rank: number;
  left: number;
  right: number;
  /** Symbol lengths when queued: a bigram whose symbols have changed since is stale. */
  leftLen: number;
  rightLen: number;
}

const bigramBefore = (a: Bigram, b: Bigram): boolean => a.rank < b.rank || (a.rank === b.rank && a.left < b.left);

/** Pre-token results kept; the cache is dropped whole when it fills (text is Zipfian: it refills with hot words). */
const WORD_CACHE_LIMIT = 1 << 16;

export class BpeModel {
  /** "left right" (as tokenizer.ggml.merges spells it) -> rank; lower merges first. */
  private readonly ranks = new Map<string, number>();
  /** Pre-token -> ids. */
  private readonly cache = new Map<string, number[]>();

  constructor(
    private readonly vocab: ReadonlyMap<string, number>,
    merges: readonly string[],
    private readonly pre: PreTokenizer,
  ) {
    // Byte-level tokens never contain a literal space, so "left right" is unambiguous. Filled last to first so a
    // repeated merge keeps its lowest rank.
    for (let i = merges.length - 1; i >= 0; i--) this.ranks.set(merges[i]!, i);
  }

  /** Appends the ids of raw text (no special tokens in it) to `out`. */
  encode(text: string, out: number[]): void {
    for (const word of preTokenize(text, this.pre)) {
      let ids = this.cache.get(word);
      if (ids === undefined) {
        ids = this.mergeWord(spellBytes(word));
        if (this.cache.size >= WORD_CACHE_LIMIT) this.cache.clear();
        this.cache.set(word, ids);
      }
      for (const id of ids) out.push(id);
    }
  }

  /** Merges one spelled pre-token (one char per byte), best rank first, leftmost first among equals. */
  private mergeWord(spelled: string): number[] {
    if (this.pre.ignoreMerges) {
      const whole = this.vocab.get(spelled);
      if (whole !== undefined) return [whole];
    }
    const n = spelled.length;
    // Symbol i always starts at char i (merges fold the right symbol into the left); a merged-away symbol has length 0.
    const length = new Int32Array(n).fill(1); // (n)
    const next = new Int32Array(n); // (n) next live symbol, -1 at the end
    const prev = new Int32Array(n); // (n) previous live symbol, -1 at the start
    for (let i = 0; i < n; i++) { next[i] = i + 1 < n ? i + 1 : -1; prev[i] = i - 1; }

    const queue = new BinaryHeap<Bigram>(bigramBefore);
    const enqueue = (left: number, right: number): void => {
      const pair = spelled.substr(left, length[left]!) + ' ' + spelled.substr(right, length[right]!);
      const rank = this.ranks.get(pair);
      if (rank !== undefined) queue.push({ rank, left, right, leftLen: length[left]!, rightLen: length[right]! });
    };
    for (let i = 0; i + 1 < n; i++) enqueue(i, i + 1);

    for (let b = queue.pop(); b !== undefined; b = queue.pop()) {
      if (length[b.left] !== b.leftLen || length[b.right] !== b.rightLen) continue;
      length[b.left] = b.leftLen + b.rightLen;
      length[b.right] = 0;
      const after = next[b.right]!;
      next[b.left] = after;
      if (after >= 0) prev[after] = b.left;
      if (prev[b.left]! >= 0) enqueue(prev[b.left]!, b.left);
      if (after >= 0) enqueue(b.left, after);
    }

    const ids: number[] = [];
    for (let i = 0; i >= 0; i = next[i]!) {
      const symbol = spelled.substr(i, length[i]!);
      const id = this.vocab.get(symbol);
      if (id !== undefined) { ids.push(id); continue; }
      // A merge result missing from the vocabulary: fall back to one token per byte, skipping bytes with none.
      for (const ch of symbol) {
        const byteId = this.vocab.get(ch);
        if (byteId !== undefined) ids.push(byteId);
      }
    }
    return ids;
  }
}
