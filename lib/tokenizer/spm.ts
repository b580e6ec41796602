// SentencePiece BPE (tokenizer.ggml.model = 'llama'), with llama.cpp's llm_tokenizer_spm as the oracle:
// spaces become U+2581 (a leading one is added where the caller says so), the text starts as one symbol per
// code point, adjacent symbols whose concatenation is a vocabulary entry merge best score first, and a final
// symbol that is no entry falls back to <0xXX> byte tokens.
import { BinaryHeap } from './bpe.js';
import { TokenizerError } from './errors.js';

/** SentencePiece's visible space. */
export const SPACE_MARK = '\u2581';

interface Bigram {
  score: number;
  left: number;
  right: number;
  /** Combined length (UTF-16 units) when queued: a bigram whose symbols have changed since is stale. */
  size: number;
}

const bigramBefore = (a: Bigram, b: Bigram): boolean => a.score > b.score || (a.score === b.score && a.left < b.left);

const utf8Encoder = new TextEncoder();

/** Symbols per chunk up to which rescanning for the best pair beats a priority queue. */
const DEFAULT_SCAN_LIMIT = 48;

/** Per-symbol working arrays shared by every merge (encoding is synchronous), grown on demand. */
interface Scratch {
  start: Int32Array; // (capacity) first UTF-16 unit of symbol i
  length: Int32Array; // (capacity) UTF-16 units of symbol i, 0 once merged into its left neighbour
  next: Int32Array; // (capacity) next live symbol, -1 at the end
  prev: Int32Array; // (capacity) previous live symbol, -1 at the start
  pairToken: Int32Array; // (capacity) token id of symbol i joined with next[i], -1 if none (scan merging)
}
let scratchArrays: Scratch = allocateScratch(256);

function allocateScratch(capacity: number): Scratch {
  return {
    start: new Int32Array(capacity), length: new Int32Array(capacity), next: new Int32Array(capacity),
    prev: new Int32Array(capacity), pairToken: new Int32Array(capacity),
  };
}

function scratch(n: number): Scratch {
  if (scratchArrays.start.length < n) scratchArrays = allocateScratch(Math.max(n, 2 * scratchArrays.start.length));
  return scratchArrays;
}

/** Chunk results kept; the cache is dropped whole when it fills (text is Zipfian: it refills with hot words). */
const CHUNK_CACHE_LIMIT = 1 << 16;

export class SpmModel {
  /** byte -> id of its <0xXX> token, -1 where the vocabulary has none. (256) */
  private readonly byteIds = new Int32Array(256).fill(-1);
  /**
   * True when no entry has U+2581 right after another character: then no merge can join text across the start
   * of a "▁word", so each such chunk merges on its own with the same result, and can be cached.
   */
  private readonly chunksAtSpaces: boolean;
  /** Escaped chunk -> ids. */
  private readonly cache = new Map<string, number[]>();
  /** Chunks up to this many symbols merge by rescanning; longer ones through a priority queue. */
  private readonly scanLimit: number;

  constructor(
    private readonly vocab: ReadonlyMap<string, number>,
    /** Merge priority per token id. (n_vocab) */
    private readonly scores: ArrayLike<number>,
    private readonly unknownId: number | undefined,
    /** Tests force the plain llama.cpp path: one queue over the whole fragment. */
    options: { chunkAtSpaces?: boolean; scanLimit?: number } = {},
  ) {
    this.scanLimit = options.scanLimit ?? DEFAULT_SCAN_LIMIT;
    for (let b = 0; b < 256; b++) {
      const hex = b.toString(16).toUpperCase().padStart(2, '0');
      // As llama.cpp: the <0xXX> token, else an ASCII byte's own single-character token.
      const id = vocab.get(`<0x${hex}>`) ?? (b < 0x80 ? vocab.get(String.fromCharCode(b)) : undefined);
      if (id !== undefined) this.byteIds[b] = id;
    }
    this.chunksAtSpaces = (options.chunkAtSpaces ?? true) && !hasMarkAfterOtherChar(vocab.keys());
  }

  /** Appends the ids of raw text (no special tokens in it) to `out`; `spacePrefix` adds the leading U+2581. */
  encode(text: string, spacePrefix: boolean, out: number[]): void {
    const escaped = (spacePrefix ? SPACE_MARK : '') + text.replaceAll(' ', SPACE_MARK);
    if (!this.chunksAtSpaces) { this.mergeChunk(escaped, out); return; }
    let from = 0;
    for (let at = escaped.indexOf(SPACE_MARK, 1); from < escaped.length; at = escaped.indexOf(SPACE_MARK, at + 1)) {
      if (at > 0 && escaped[at - 1] === SPACE_MARK) continue;
      const end = at < 0 ? escaped.length : at;
      const chunk = escaped.slice(from, end);
      let ids = this.cache.get(chunk);
      if (ids === undefined) {
        ids = [];
        this.mergeChunk(chunk, ids);
        if (this.cache.size >= CHUNK_CACHE_LIMIT) this.cache.clear();
        this.cache.set(chunk, ids);
      }
      for (const id of ids) out.push(id);
      from = end;
    }
  }

  /** Merges escaped text best score first, leftmost first among equals; appends the ids to `out`. */
  private mergeChunk(escaped: string, out: number[]): void {
    // Symbols are contiguous runs of `escaped`: symbol i starts at start[i]; a merged-away symbol has length 0.
    let n = 0;
    for (let i = 0; i < escaped.length; i += escaped.codePointAt(i)! > 0xffff ? 2 : 1) n++;
    if (n === 0) return;
    const { start, length, next, prev } = scratch(n);
    for (let i = 0, at = 0; i < n; i++) {
      start[i] = at;
      length[i] = escaped.codePointAt(at)! > 0xffff ? 2 : 1;
      at += length[i]!;
      next[i] = i + 1 < n ? i + 1 : -1;
      prev[i] = i - 1;
    }
    if (n <= this.scanLimit) this.mergeByScan(escaped, n);
    else this.mergeByQueue(escaped, n);

    for (let i = 0; i >= 0; i = next[i]!) {
      const symbol = escaped.substr(start[i]!, length[i]!);
      const id = this.vocab.get(symbol);
      if (id !== undefined) { out.push(id); continue; }
      // Every merged symbol is a vocabulary entry, so this is a single code point the vocabulary lacks.
      for (const byte of utf8Encoder.encode(symbol)) out.push(this.byteToken(byte));
    }
  }

  /** Token id of symbol `left` joined with the one after it, -1 if that is no entry. */
  private joined(escaped: string, left: number): number {
    const { start, length, next } = scratchArrays;
    const right = next[left]!;
    if (right < 0) return -1;
    return this.vocab.get(escaped.substr(start[left]!, length[left]! + length[right]!)) ?? -1;
  }

  /** Short chunks (most words): rescan the live pairs for the best one each step; no allocation. */
  private mergeByScan(escaped: string, n: number): void {
    const { length, next, prev, pairToken } = scratchArrays;
    for (let i = 0; i < n; i++) pairToken[i] = this.joined(escaped, i);
    for (;;) {
      let best = -1;
      let bestScore = 0;
      for (let i = 0; i >= 0; i = next[i]!) {
        const id = pairToken[i]!;
        if (id >= 0 && (best < 0 || this.scores[id]! > bestScore)) { best = i; bestScore = this.scores[id]!; }
      }
      if (best < 0) return;
      const right = next[best]!;
      length[best] = length[best]! + length[right]!;
      length[right] = 0;
      next[best] = next[right]!;
      if (next[best]! >= 0) prev[next[best]!] = best;
      pairToken[best] = this.joined(escaped, best);
      if (prev[best]! >= 0) pairToken[prev[best]!] = this.joined(escaped, prev[best]!);
    }
  }

  /** Long chunks (text without spaces): a priority queue keeps the merging O(n log n). */
  private mergeByQueue(escaped: string, n: number): void {
    const { length, next, prev } = scratchArrays;
    const queue = new BinaryHeap<Bigram>(bigramBefore);
    const enqueue = (left: number): void => {
      const id = this.joined(escaped, left);
      if (id >= 0) queue.push({ score: this.scores[id]!, left, right: next[left]!, size: length[left]! + length[next[left]!]! });
    };
    for (let i = 0; i + 1 < n; i++) enqueue(i);
    for (let b = queue.pop(); b !== undefined; b = queue.pop()) {
      const leftLen = length[b.left]!;
      const rightLen = length[b.right]!;
      if (leftLen === 0 || rightLen === 0 || leftLen + rightLen !== b.size) continue;
      length[b.left] = b.size;
      length[b.right] = 0;
      const after = next[b.right]!;
      next[b.left] = after;
      if (after >= 0) prev[after] = b.left;
      if (prev[b.left]! >= 0) enqueue(prev[b.left]!);
      if (after >= 0) enqueue(b.left);
    }
  }

  private byteToken(byte: number): number {
    const id = this.byteIds[byte]!;
    if (id >= 0) return id;
    if (this.unknownId !== undefined) return this.unknownId;
    throw new TokenizerError(`no <0x${byte.toString(16).toUpperCase().padStart(2, '0')}> byte token and no unknown token to stand for byte 0x${byte.toString(16)}`);
  }
}

/** Whether some entry has U+2581 right after a character other than U+2581. */
function hasMarkAfterOtherChar(texts: Iterable<string>): boolean {
  for (const text of texts) {
    for (let at = text.indexOf(SPACE_MARK, 1); at > 0; at = text.indexOf(SPACE_MARK, at + 1)) {
      if (text[at - 1] !== SPACE_MARK) return true;
    }
  }
  return false;
}

/** Raw bytes of a normal SentencePiece token: U+2581 stands for a space. */
export function spmPieceBytes(text: string): Uint8Array {
  return utf8Encoder.encode(text.replaceAll(SPACE_MARK, ' '));
}
