// The models we trained ourselves (models/, docs/training.md): the shipped files are the ones
// models/manifest.json describes, and every one of them runs. Their quality evidence needs the corpus and
// runs from its own npm scripts: `npm run test:corpus` (test/corpus: bitllm's perplexity equals the trainer's,
// needs Debian's bible-kjv) and `npm run test:python` (test/python: token ids equal Python sentencepiece's).
import { createHash } from 'node:crypto';
import { existsSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';

import { describe, expect, it } from 'vitest';

import { MODELS, ROOT, manifest } from './corpus/manifest.js';

describe('shipped models', () => {
  it('match the manifest, stay under 10 MB, and the default is the b1.58 I2_S model', () => {
    expect(manifest.models.length).toBeGreaterThanOrEqual(6);
    for (const m of manifest.models) {
      const path = join(MODELS, m.file);
      expect(existsSync(path), `${m.file} missing`).toBe(true);
      expect(statSync(path).size, m.file).toBe(m.bytes);
      expect(statSync(path).size, m.file).toBeLessThanOrEqual(10 * 1024 * 1024);
      expect(createHash('sha256').update(readFileSync(path)).digest('hex'), m.file).toBe(m.sha256);
    }
    const def = manifest.models.find((m) => m.file === manifest.default)!;
    expect(def).toMatchObject({ family: 'b158', type: 'i2_s', runnable: true });
    expect(createHash('sha256').update(readFileSync(join(ROOT, manifest.tokenizer.file))).digest('hex')).toBe(manifest.tokenizer.sha256);
    expect(new Set(manifest.models.map((m) => m.family))).toEqual(new Set(['fp16', 'b158', 'bitnet', 'fbi', 'onebit', 'a48', 'mamba2', 'bimamba', 'hybrid']));
  });

  it('are all runnable: every family of the survey runs', () => {
    expect(manifest.models.filter((m) => m.runnable).map((m) => m.file)).toEqual(manifest.models.map((m) => m.file));
  });
});
