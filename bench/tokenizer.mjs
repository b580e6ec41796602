// Tokenizer speed: building the tokenizer from a GGUF vocabulary, and encoding 10 KB of English-like text
// whose words the tokenizer has not seen (no cache hits). One JSON line per vocabulary and measure.
//   node bench/tokenizer.mjs [--reps 5] [--kb 10]
// Vocabularies: llama.cpp's ggml-vocab-llama-bpe / -spm, extracted by `node scripts/test-data.mjs` into
// .cache/test-data/vocab (npm test's pretest does it).
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

import { readGguf } from '../dist/format/gguf.js';
import { Tokenizer } from '../dist/tokenizer/index.js';
import { option } from './common.mjs';
import { pseudoEnglish } from './text.mjs';

const reps = Number(option(process.argv, '--reps', '5'));
const bytes = Number(option(process.argv, '--kb', '10')) * 1024;

/** A seeded uniform [0, 1) stream (xorshift32). */
function uniform(seed) {
  let s = seed >>> 0 || 1;
  return () => {
    s ^= s << 13;
    s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5;
    s >>>= 0;
    return s / 4294967296;
  };
}

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

for (const name of ['llama-bpe', 'llama-spm']) {
  const path = fileURLToPath(new URL(`../.cache/test-data/vocab/ggml-vocab-${name}.gguf`, import.meta.url));
  if (!existsSync(path)) throw new Error(`${path} is missing: run node scripts/test-data.mjs`);
  const file = readGguf(path);
  const build = [];
  let tok;
  for (let r = 0; r < reps; r++) {
    const t0 = performance.now();
    tok = Tokenizer.fromGguf(file);
    build.push(performance.now() - t0);
  }
  tok.encode(pseudoEnglish(uniform(1), bytes)); // warms the JIT
  const encode = [];
  let tokens = 0;
  for (let r = 0; r < reps; r++) {
    const text = pseudoEnglish(uniform(100 + r), bytes); // a new lexicon each rep
    const t0 = performance.now();
    tokens = tok.encode(text).length;
    encode.push(performance.now() - t0);
  }
  const enc = median(encode);
  console.log(JSON.stringify({ bench: 'tokenizer', vocab: name, vocab_size: tok.vocabSize, build_ms: +median(build).toFixed(1), text_bytes: bytes, tokens,
    encode_ms: +enc.toFixed(2), mb_per_s: +(bytes / enc / 1e3).toFixed(2), reps }));
}
