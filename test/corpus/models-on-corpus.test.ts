// Quality evidence for the models we trained ourselves, on the corpus they were evaluated on
// (scripts/corpus.mjs: @stdlib datasets from npm and the KJV from Debian's bible-kjv, every output pinned by sha256):
//   - the validation and out-of-domain texts are the ones models/manifest.json was measured on;
//   - bitllm's tokenizer gives the manifest's token ids on them (the trainer's, from Python sentencepiece);
//   - `bitllm perplexity` on every shipped model equals the trainer's own quantized evaluation within 1 %,
//     on the same windows and tokens.
// Run by `npm run test:corpus` (CI: .ci/run). Needs the `bible` command (apt-get install -y bible-kjv): a
// missing prerequisite fails here with the fix, never skips.
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { join } from 'node:path';

import { beforeAll, describe, expect, it } from 'vitest';

import { readGguf } from '../../lib/format/gguf.js';
import { Tokenizer } from '../../lib/tokenizer/index.js';
import { runProcess } from '../helpers.js';
import { type CorpusSplit, type EvalResult, MAIN, MODELS, ROOT, corpusTexts, idsDigest, manifest } from './manifest.js';
import { scaledMs } from '../time-scale.js';

const TOLERANCE = 0.01;
let texts: Record<CorpusSplit, string>;

beforeAll(() => {
  if (!existsSync(MAIN)) throw new Error(`${MAIN} is missing: build with \`npm run build:ts\` first`);
  texts = corpusTexts();
}, scaledMs(300_000));

describe('the corpus', () => {
  it.each(['val', 'ood'] as const)('%s text is the one the manifest was measured on', (split) => {
    const bytes = Buffer.from(texts[split], 'utf8');
    expect(bytes.byteLength, split).toBe(manifest.corpus[split].bytes);
    expect(createHash('sha256').update(bytes).digest('hex'), split).toBe(manifest.corpus[split].sha256);
  });

  it.each(['val', 'ood'] as const)('%s text: bitllm\'s token ids are the manifest\'s (count and digest)', (split) => {
    const tok = Tokenizer.fromGguf(readGguf(join(MODELS, manifest.default)));
    const ours = tok.encode(texts[split], { addBos: false });
    expect({ count: ours.length, sha256: idsDigest(ours) }).toEqual(manifest.corpus[split].ids);
  });
});

describe('perplexity parity: bitllm vs the trainer', () => {
  // W1A16 families (FBI-LLM, OneBit) also on their int8 path (--act i8), against the trainer's A8 evaluation.
  const cases = manifest.models.filter((m) => m.runnable).flatMap((m) => (['val', 'ood'] as const).flatMap((split) => [
    { m, split, key: split, args: [] as string[] },
    ...(m.eval[`${split}_a8`] ? [{ m, split, key: `${split}_a8` as const, args: ['--act', 'i8'] }] : []),
  ]));
  for (const { m, split, key, args } of cases)
    it(`${m.file} on ${split}${args.length ? ` (${args.join(' ')})` : ''}: within 1 % of the trainer's quantized evaluation (${key})`, async () => {
      const r = await runProcess(process.execPath, [MAIN, 'perplexity', join(MODELS, m.file), '-f', join(ROOT, manifest.corpus[split].file),
        '--ctx', String(manifest.eval.ctx), '--json', ...args]);
      expect(r.stderr).toBe('');
      expect(r.status).toBe(0);
      const got = JSON.parse(r.stdout) as EvalResult;
      const want = m.eval[key]!;
      expect(got.n_scored).toBe(want.n_scored);
      expect(got.n_windows).toBe(want.n_windows);
      const rel = Math.abs(got.ppl / want.ppl - 1);
      expect(rel, `bitllm ppl ${got.ppl}, trainer ${want.ppl}`).toBeLessThanOrEqual(TOLERANCE);
    }, scaledMs(300_000));
});
