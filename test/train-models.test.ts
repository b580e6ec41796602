// Quality evidence for the models we trained ourselves (models/, docs/training.md):
//   - the shipped files are the ones models/manifest.json describes;
//   - bitllm's tokenizer gives exactly Python sentencepiece's ids on the validation and out-of-domain texts;
//   - `bitllm perplexity` on every shipped model bitllm can run equals the trainer's own quantized
//     evaluation (stored in the manifest) within 1 %, on the same windows and tokens.
// Needs the corpus (scripts/corpus.mjs: the npm registry and Debian's bible-kjv) and /usr/bin/python3 with
// python3-sentencepiece; .ci/run installs both. A missing prerequisite fails here with the fix, never skips.
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

import { beforeAll, describe, expect, it } from 'vitest';

import { readGguf } from '../lib/format/gguf.js';
import { Tokenizer } from '../lib/tokenizer/index.js';
import { runProcess } from './helpers.js';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const MAIN = join(ROOT, 'dist', 'cli', 'main.js');
const MODELS = join(ROOT, 'models');
const PYTHON = process.env.BITLLM_PYTHON ?? '/usr/bin/python3';
const TOLERANCE = 0.01;

interface EvalResult { ppl: number; nll: number; n_scored: number; n_windows: number }
interface ManifestModel {
  file: string; family: string; arch: string; type: string; runnable: boolean; bytes: number; sha256: string;
  eval: { val: EvalResult; ood: EvalResult; val_a8?: EvalResult; ood_a8?: EvalResult };
}
interface Manifest {
  default: string;
  tokenizer: { file: string; sha256: string };
  corpus: Record<'val' | 'ood', { file: string; sha256: string; bytes: number; ids: { count: number; sha256: string } }>;
  eval: { ctx: number };
  models: ManifestModel[];
}

const manifest = JSON.parse(readFileSync(join(MODELS, 'manifest.json'), 'utf8')) as Manifest;
const runnable = manifest.models.filter((m) => m.runnable);
const texts: Record<'val' | 'ood', string> = { val: '', ood: '' };

function idsDigest(ids: readonly number[]): string {
  return createHash('sha256').update(ids.join(',')).digest('hex');
}

function python(args: string[], input?: string): string {
  const r = spawnSync(PYTHON, [join(ROOT, 'train', 'spm_ids.py'), ...args], { encoding: 'utf8', input, maxBuffer: 64 << 20 });
  if (r.error || r.status !== 0)
    throw new Error(`${PYTHON} train/spm_ids.py failed (${r.error?.message ?? r.stderr.trim()}): install Debian's python3-sentencepiece (apt-get install -y python3-sentencepiece)`);
  return r.stdout;
}

beforeAll(() => {
  if (!existsSync(MAIN)) throw new Error(`${MAIN} is missing: build with \`npm run build:ts\` first`);
  const r = spawnSync(process.execPath, [join(ROOT, 'scripts', 'corpus.mjs'), '--json'], { encoding: 'utf8', timeout: 300_000 });
  if (r.status !== 0) throw new Error(`scripts/corpus.mjs failed: ${r.stderr.trim()}`);
  for (const split of ['val', 'ood'] as const) texts[split] = readFileSync(join(ROOT, manifest.corpus[split].file), 'utf8');
}, 300_000);

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
    expect(new Set(manifest.models.map((m) => m.family))).toEqual(new Set(['fp16', 'b158', 'bitnet', 'fbi', 'onebit', 'a48']));
  });

  it('were evaluated on this corpus', () => {
    for (const split of ['val', 'ood'] as const) {
      const bytes = Buffer.from(texts[split], 'utf8');
      expect(bytes.byteLength, split).toBe(manifest.corpus[split].bytes);
      expect(createHash('sha256').update(bytes).digest('hex'), split).toBe(manifest.corpus[split].sha256);
    }
  });
});

describe('tokenizer parity with Python sentencepiece', () => {
  it.each(['val', 'ood'] as const)('%s text: identical ids', (split) => {
    const tok = Tokenizer.fromGguf(readGguf(join(MODELS, manifest.default)));
    const ours = tok.encode(texts[split], { addBos: false });
    const theirs = JSON.parse(python([join(ROOT, manifest.corpus[split].file)])) as number[];
    expect(ours.length).toBe(theirs.length);
    const first = ours.findIndex((id, i) => id !== theirs[i]);
    expect(first, `first difference at token ${first}`).toBe(-1);
    expect({ count: ours.length, sha256: idsDigest(ours) }).toEqual(manifest.corpus[split].ids);
  });

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

describe('perplexity parity: bitllm vs the trainer', () => {
  it('covers every shipped model: every family of the survey runs', () => {
    expect(runnable.map((m) => m.file)).toEqual(manifest.models.map((m) => m.file));
  });

  // W1A16 families (FBI-LLM, OneBit) also on their int8 path (--act i8), against the trainer's A8 evaluation.
  const cases = runnable.flatMap((m) => (['val', 'ood'] as const).flatMap((split) => [
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
    }, 300_000);
});
