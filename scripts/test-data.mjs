#!/usr/bin/env node
// Derives the test data that the repository does not hold, into .cache/test-data/ (never published):
//   vocab/ggml-vocab-llama-{spm,bpe}.gguf{,.inp,.out}
//       llama.cpp's vocabulary files and their test-tokenizer-0 cases (llama.cpp's files: not ours to
//       commit). Taken with git from the llama.cpp source bundle that node-llama-cpp ships
//       (llama/gitRelease.bundle), installed into .peers/ by scripts/install-peers.sh.
//   golden/small-b158-tq2-s11.gguf
//       test/fixtures/golden's I2_S model with the same trits in TQ2_0, transcoded with lib/format's
//       codecs (dist/, so `tsc` runs first): byte-identical to the file bitnet.cpp's oracle was run on.
// Every file is pinned by sha256. Files already there with the pinned sha256 are kept, so a second run
// only hashes them; anything else is rebuilt, written to a temporary name and renamed into place.
// Part of `npm test`'s pretest.
//
// usage: node scripts/test-data.mjs [--json]
import { createHash } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const OUT = join(ROOT, '.cache', 'test-data');
const PEER = join(ROOT, '.peers', 'node_modules', 'node-llama-cpp');
const BUNDLE = join(PEER, 'llama', 'gitRelease.bundle');
const GOLDEN = join(ROOT, 'test', 'fixtures', 'golden');

/** llama.cpp's models/<name> → sha256 (llama.cpp de3ff815, the bundle of node-llama-cpp 3.22.1). */
const VOCAB_FILES = {
  'ggml-vocab-llama-spm.gguf': '16c3724582d59aa8bf84711894e833f916ee46a31d80e21312759c48bf8d0e69',
  'ggml-vocab-llama-spm.gguf.inp': 'be0a11f7071f0c67d3053a2d377d8f35f0dbcb77ff11a60300fb57d36b477cf0',
  'ggml-vocab-llama-spm.gguf.out': 'ad6905c925c49c022974fe67e030382e8a4f56eb4489a0b9481dcedb1ec73b29',
  'ggml-vocab-llama-bpe.gguf': '97272e430d53bc7688f52d5e0ad8ea8f163ede9f1bbd1694feaa504797d5d96e',
  'ggml-vocab-llama-bpe.gguf.inp': 'be0a11f7071f0c67d3053a2d377d8f35f0dbcb77ff11a60300fb57d36b477cf0',
  'ggml-vocab-llama-bpe.gguf.out': '118abf2034a197fc5c9dec5204dfdeee7004c7c70952ae577f66b99e212fab9b',
};

const GOLDEN_I2S = { file: 'small-b158-i2s-s11.gguf', sha256: '97f9b59f9818456081c4b99ff1946a554177a82854750bc72d20c8b48faa3051' };
/** The TQ2_0 twin that bitnet.cpp's golden run was checked against (same trits, every block scale 0.0625). */
const GOLDEN_TQ2 = { file: 'small-b158-tq2-s11.gguf', sha256: 'df46e6070ed6c53100f8e809305fbe18fa815c807f9c598ac08b68e3399b08f6' };

/** A test-data step that cannot complete; the message says what is missing and how to get it. */
export class TestDataError extends Error {
  name = 'TestDataError';
}

function sha256(bytes) {
  return createHash('sha256').update(bytes).digest('hex');
}

const rel = (p) => relative(ROOT, p);

/** True when path exists with the pinned sha256 (a file with another hash is left for the caller to replace). */
function pinned(path, want) {
  return existsSync(path) && sha256(readFileSync(path)) === want;
}

/** Writes bytes to path through a temporary sibling and a rename, after checking their sha256. */
function writePinned(path, bytes, want, what) {
  const got = sha256(bytes);
  if (got !== want) throw new TestDataError(`test-data: ${what} has sha256 ${got}, expected ${want}`);
  mkdirSync(dirname(path), { recursive: true });
  const tmp = `${path}.tmp-${process.pid}`;
  writeFileSync(tmp, bytes);
  renameSync(tmp, path);
}

/** git with a clean environment: no GIT_DIR & co. inherited from a hook or an outer repository. */
function git(args, opts = {}) {
  const env = { ...process.env, GIT_TERMINAL_PROMPT: '0' };
  for (const k of ['GIT_DIR', 'GIT_WORK_TREE', 'GIT_INDEX_FILE', 'GIT_OBJECT_DIRECTORY', 'GIT_ALTERNATE_OBJECT_DIRECTORIES', 'GIT_NAMESPACE'])
    delete env[k];
  try {
    return execFileSync('git', args, { env, maxBuffer: 64 << 20, stdio: ['ignore', 'pipe', 'pipe'], ...opts });
  } catch (err) {
    if (err.code === 'ENOENT') throw new TestDataError('test-data: `git` is not on PATH: it reads llama.cpp\'s vocabulary files out of node-llama-cpp\'s source bundle (install git)');
    const stderr = err.stderr ? err.stderr.toString().trim() : err.message;
    throw new TestDataError(`test-data: git ${args.join(' ')} failed: ${stderr}`);
  }
}

/** Extracts llama.cpp's models/<name> from the bundle into dir/vocab, for every file not already pinned there. */
function extractVocab(dir) {
  const vocabDir = join(dir, 'vocab');
  const missing = Object.entries(VOCAB_FILES).filter(([name, sha]) => !pinned(join(vocabDir, name), sha));
  if (missing.length === 0) return { extracted: 0 };
  if (!existsSync(BUNDLE))
    throw new TestDataError(
      `test-data: ${rel(BUNDLE)} is missing: it holds llama.cpp's source, from which the tests take ` +
        `${missing.map(([name]) => `models/${name}`).join(', ')}. Run \`bash scripts/install-peers.sh\` (npm test's pretest does).`,
    );
  mkdirSync(dir, { recursive: true });
  const repo = mkdtempSync(join(dir, '.bundle-'));
  try {
    git(['init', '-q', '--bare', repo]);
    git(['-C', repo, 'fetch', '-q', '--no-tags', BUNDLE, 'HEAD']);
    const commit = git(['-C', repo, 'rev-parse', 'FETCH_HEAD']).toString().trim();
    for (const [name, sha] of missing) {
      let bytes;
      try {
        bytes = git(['-C', repo, 'cat-file', 'blob', `FETCH_HEAD:models/${name}`]);
      } catch (err) {
        throw new TestDataError(`test-data: llama.cpp ${commit} (${rel(BUNDLE)}) has no models/${name}: ${err.message}`);
      }
      writePinned(join(vocabDir, name), bytes, sha, `models/${name} of llama.cpp ${commit} (${rel(BUNDLE)})`);
    }
  } finally {
    rmSync(repo, { recursive: true, force: true });
  }
  return { extracted: missing.length };
}

/** Rebuilds the TQ2_0 golden model from the I2_S one: same metadata and tensor order, ternary tensors transcoded. */
async function deriveGoldenTq2(dir) {
  const out = join(dir, 'golden', GOLDEN_TQ2.file);
  if (pinned(out, GOLDEN_TQ2.sha256)) return { derived: 0 };
  const dist = (p) => pathToFileURL(join(ROOT, 'dist', 'format', p)).href;
  if (!existsSync(join(ROOT, 'dist', 'format', 'ternary.js')))
    throw new TestDataError('test-data: dist/format/ternary.js is missing: build with `npx tsc -p tsconfig.json` first (npm test\'s pretest does)');
  const { GgufWriter, parseGguf } = await import(dist('gguf.js'));
  const { QK_K, decodeI2S, encodeTQ2 } = await import(dist('ternary.js'));
  const { GGML } = await import(dist('types.js'));

  const src = join(GOLDEN, GOLDEN_I2S.file);
  const bytes = readFileSync(src);
  if (sha256(bytes) !== GOLDEN_I2S.sha256) throw new TestDataError(`test-data: ${rel(src)} has sha256 ${sha256(bytes)}, expected ${GOLDEN_I2S.sha256}`);
  const i2s = parseGguf(new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength), rel(src));
  const writer = new GgufWriter();
  for (const [key, entry] of i2s.metadata) writer.set(key, entry.type, entry.value, entry.itemType);
  for (const t of i2s.tensors) {
    const data = i2s.bytes.subarray(t.offset, t.offset + t.nbytes);
    if (t.type !== GGML.I2_S) {
      writer.addTensor(t.name, t.dims, t.type, data);
      continue;
    }
    const [K, M] = t.dims; // ne0 = K (row length), ne1 = M rows
    const { trits, scale } = decodeI2S(data, M, K);
    writer.addTensor(t.name, t.dims, GGML.TQ2_0, encodeTQ2(trits, M, K, new Float32Array((M * K) / QK_K).fill(scale)));
  }
  writePinned(out, writer.toBytes(), GOLDEN_TQ2.sha256, `${GOLDEN_TQ2.file} transcoded from ${rel(src)}`);
  return { derived: 1 };
}

export async function prepareTestData(dir = OUT) {
  const vocab = extractVocab(dir);
  const golden = await deriveGoldenTq2(dir);
  return { dir, vocab: { files: Object.keys(VOCAB_FILES).length, ...vocab }, golden: { files: 1, ...golden } };
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const json = process.argv.includes('--json');
  const unknown = process.argv.slice(2).filter((a) => a !== '--json');
  if (unknown.length) {
    process.stderr.write(`test-data: unknown argument '${unknown[0]}' (usage: node scripts/test-data.mjs [--json])\n`);
    process.exit(2);
  }
  try {
    const s = await prepareTestData();
    if (json) process.stdout.write(JSON.stringify(s) + '\n');
    else
      process.stdout.write(
        `test-data: ${rel(s.dir)}/: ${s.vocab.files} llama.cpp vocabulary files (${s.vocab.extracted} extracted), ` +
          `TQ2_0 golden model (${s.golden.derived ? 'derived' : 'cached'}), all sha256-checked\n`,
      );
  } catch (err) {
    process.stderr.write(`${err instanceof TestDataError ? err.message : err.stack}\n`);
    process.exit(1);
  }
}
