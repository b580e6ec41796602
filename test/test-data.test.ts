// scripts/test-data.mjs (npm test's pretest): derives the test data the repository does not hold, each file
// pinned by sha256; a second run keeps what is there, a damaged file is rebuilt.
import { createHash } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { afterAll, describe, expect, it } from 'vitest';

// @ts-expect-error: a plain ES module script, no type declarations
import { prepareTestData } from '../scripts/test-data.mjs';
import { goldenPath, vocabPath } from './helpers.js';
import { scaledMs } from './time-scale.js';

interface Summary { vocab: { files: number; extracted: number }; golden: { files: number; derived: number } }
const prepare = prepareTestData as (dir: string) => Promise<Summary>;
const sha256 = (path: string) => createHash('sha256').update(readFileSync(path)).digest('hex');

const dir = mkdtempSync(join(tmpdir(), 'bitllm-test-data-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('scripts/test-data.mjs', () => {
  it('extracts llama.cpp\'s vocabularies and derives the TQ2_0 golden model, rebuilds a damaged file, keeps good ones', async () => {
    mkdirSync(join(dir, 'vocab'), { recursive: true });
    writeFileSync(join(dir, 'vocab', 'ggml-vocab-llama-spm.gguf.out'), 'not the cases\n');
    const first = await prepare(dir);
    expect(first).toMatchObject({ vocab: { files: 6, extracted: 6 }, golden: { files: 1, derived: 1 } });
    // Same bytes as the copies the suite uses (both checked against the script's pins when written).
    for (const f of readdirSync(join(dir, 'vocab'))) expect(sha256(join(dir, 'vocab', f)), f).toBe(sha256(vocabPath(f)));
    expect(sha256(join(dir, 'golden', 'small-b158-tq2-s11.gguf'))).toBe('df46e6070ed6c53100f8e809305fbe18fa815c807f9c598ac08b68e3399b08f6');
    expect(sha256(goldenPath('small-b158-tq2-s11.gguf'))).toBe('df46e6070ed6c53100f8e809305fbe18fa815c807f9c598ac08b68e3399b08f6');
    expect(readdirSync(dir).sort()).toEqual(['golden', 'vocab']); // no temporary repository or file left behind

    const second = await prepare(dir);
    expect(second).toMatchObject({ vocab: { extracted: 0 }, golden: { derived: 0 } });
  }, scaledMs(120_000));
});
