// models/manifest.json and the corpus it was measured on (scripts/corpus.mjs), for the tests of the models
// we trained ourselves: test/train-models.test.ts (no corpus needed), test/corpus (needs Debian's bible-kjv for
// the KJV part of the corpus) and test/python (needs python3-sentencepiece too).
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const ROOT = fileURLToPath(new URL('../..', import.meta.url));
export const MAIN = join(ROOT, 'dist', 'cli', 'main.js');
export const MODELS = join(ROOT, 'models');

export interface EvalResult { ppl: number; nll: number; n_scored: number; n_windows: number }
export interface ManifestModel {
  file: string; family: string; arch: string; type: string; runnable: boolean; bytes: number; sha256: string;
  eval: { val: EvalResult; ood: EvalResult; val_a8?: EvalResult; ood_a8?: EvalResult };
}
export type CorpusSplit = 'val' | 'ood';
export interface Manifest {
  default: string;
  tokenizer: { file: string; sha256: string };
  corpus: Record<CorpusSplit, { file: string; sha256: string; bytes: number; ids: { count: number; sha256: string } }>;
  eval: { ctx: number };
  models: ManifestModel[];
}

export const manifest = JSON.parse(readFileSync(join(MODELS, 'manifest.json'), 'utf8')) as Manifest;

/** sha256 over the ids as decimal numbers joined by ',' (train/spm_ids.py --sha256, manifest.corpus.*.ids). */
export function idsDigest(ids: readonly number[]): string {
  return createHash('sha256').update(ids.join(',')).digest('hex');
}

/**
 * Builds (or reuses) the corpus with scripts/corpus.mjs, which checks every output against its pinned sha256,
 * and returns the validation and out-of-domain texts. Throws with the script's message (e.g. the apt-get line
 * for Debian's bible-kjv) when it cannot.
 */
export function corpusTexts(): Record<CorpusSplit, string> {
  const r = spawnSync(process.execPath, [join(ROOT, 'scripts', 'corpus.mjs'), '--json'], { encoding: 'utf8', timeout: 300_000 });
  if (r.status !== 0) throw new Error(`scripts/corpus.mjs failed: ${(r.stderr || r.error?.message || '').trim()}`);
  return {
    val: readFileSync(join(ROOT, manifest.corpus.val.file), 'utf8'),
    ood: readFileSync(join(ROOT, manifest.corpus.ood.file), 'utf8'),
  };
}
