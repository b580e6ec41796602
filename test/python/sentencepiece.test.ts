// bitllm's tokenizer gives exactly Python sentencepiece's ids (the trainer's tokenizer, train/spm_ids.py) on the
// validation and out-of-domain texts of the corpus and on edge cases, for every shipped model.
// Run by `npm run test:python` (CI: .ci/run). Needs /usr/bin/python3 with python3-sentencepiece, and the corpus
// (scripts/corpus.mjs: Debian's bible-kjv): a missing prerequisite fails here with the fix, never skips.
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';

import { beforeAll, describe, expect, it } from 'vitest';

import { readGguf } from '../../lib/format/gguf.js';
import { Tokenizer } from '../../lib/tokenizer/index.js';
import { type CorpusSplit, MODELS, ROOT, corpusTexts, idsDigest, manifest } from '../corpus/manifest.js';
import { scaledMs } from '../time-scale.js';

const PYTHON = process.env.BITLLM_PYTHON ?? '/usr/bin/python3';

function python(args: string[], input?: string): string {
  const r = spawnSync(PYTHON, [join(ROOT, 'train', 'spm_ids.py'), ...args], { encoding: 'utf8', input, maxBuffer: 64 << 20 });
  if (r.error || r.status !== 0)
    throw new Error(`${PYTHON} train/spm_ids.py failed (${r.error?.message ?? r.stderr.trim()}): install Debian's python3-sentencepiece (apt-get install -y python3-sentencepiece)`);
  return r.stdout;
}

describe('tokenizer parity with Python sentencepiece on the corpus', () => {
  let texts: Record<CorpusSplit, string>;
  beforeAll(() => {
    texts = corpusTexts();
  }, scaledMs(300_000));

  it.each(['val', 'ood'] as const)('%s text: identical ids', (split) => {
    const tok = Tokenizer.fromGguf(readGguf(join(MODELS, manifest.default)));
    const ours = tok.encode(texts[split], { addBos: false });
    const theirs = JSON.parse(python([join(ROOT, manifest.corpus[split].file)])) as number[];
    expect(ours.length).toBe(theirs.length);
    const first = ours.findIndex((id, i) => id !== theirs[i]);
    expect(first, `first difference at token ${first}`).toBe(-1);
    expect({ count: ours.length, sha256: idsDigest(ours) }).toEqual(manifest.corpus[split].ids);
  });
});

describe('tokenizer parity with Python sentencepiece on edge cases', () => {
  it('edge cases: spaces, newlines, digits, byte fallback', () => {
    const cases = ['Hello  world', ' leading', 'trailing ', '   ', 'tab\there', 'x\n\ny\n', 'emoji 😀 and 中文 ünïcödé',
      '1234567 3.14 1,000', 'Call me Ishmael—never mind.', '“quoted” ‘single’ …', 'a\u00a0b', 'Z'.repeat(300), '\u2581 visible'];
    const theirs = JSON.parse(python(['--stdin'], JSON.stringify(cases))) as number[][];
    for (const m of manifest.models) {
      const tok = Tokenizer.fromGguf(readGguf(join(MODELS, m.file)));
      cases.forEach((c, i) => expect(tok.encode(c, { addBos: false }), `${m.file}: ${JSON.stringify(c)}`).toEqual(theirs[i]));
    }
  });
});
