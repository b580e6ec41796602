#!/usr/bin/env node
// Exports models trained by train/ to GGUF (lib/convert/export.ts) and records them in models/manifest.json.
//
// usage: node scripts/export-model.mjs RUN_DIR [--type TYPE] [-o OUT.gguf] [--manifest FILE] [--no-manifest]
//        node scripts/export-model.mjs --all [--seed N] [--dir models]
//   RUN_DIR     a train/train.py output directory (export.safetensors + run.json), e.g. .cache/train/b158-s1
//   --type      i2_s | tq2_0 | tq1_0 (b158), tq2_0 | tq1_0 (a48), q1_0 (bitnet, fbi, onebit, bimamba, hybrid), f16 (fp16, mamba2)
//   --all       every family of seed N (default 1) in its shipped types, into --dir (default models/)
// Needs the compiled library (npm run build:ts) and, for the manifest's token count, /usr/bin/python3 with
// sentencepiece (train/spm_ids.py).
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { basename, dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const DIST = join(ROOT, 'dist', 'convert', 'export.js');
const TOKENIZER = join(ROOT, 'train', 'tokenizer.model');
const PYTHON = process.env.BITLLM_PYTHON ?? '/usr/bin/python3';

/** What --all ships: [family, type] in manifest order; the first file is the CLI's default model. */
export const SHIPPED = [
  ['b158', 'i2_s'], ['b158', 'tq2_0'], ['a48', 'tq2_0'], ['bitnet', 'q1_0'], ['fbi', 'q1_0'], ['onebit', 'q1_0'], ['fp16', 'f16'],
  ['bimamba', 'q1_0'], ['mamba2', 'f16'], ['hybrid', 'q1_0'],
];
const FAMILY_TITLE = {
  fp16: 'FP16 teacher', b158: 'BitNet b1.58', bitnet: 'BitNet (1-bit)', fbi: 'FBI-LLM', onebit: 'OneBit', a48: 'BitNet a4.8',
  mamba2: 'Mamba-2 (FP teacher)', bimamba: 'Bi-Mamba', hybrid: 'Bi-Mamba hybrid (attention + Mamba-2)',
};

/** Whether the engine runs the architecture: a row of the architecture table, attention or Mamba-2 block. */
function runnable(arch, lib) {
  return lib.arch.blockKindOf(arch) !== undefined;
}

function usage(msg) {
  if (msg) process.stderr.write(`export-model: ${msg}\n`);
  process.stderr.write('usage: node scripts/export-model.mjs RUN_DIR [--type TYPE] [-o OUT] [--manifest FILE] [--no-manifest]\n'
    + '       node scripts/export-model.mjs --all [--seed N] [--dir models]\n');
  process.exit(2);
}

function parseArgs(argv) {
  const o = { run: undefined, type: undefined, out: undefined, manifest: join(ROOT, 'models', 'manifest.json'), all: false, seed: 1, dir: join(ROOT, 'models') };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const val = () => argv[++i] ?? usage(`${a} needs a value`);
    if (a === '--type') o.type = val();
    else if (a === '-o' || a === '--out') o.out = resolve(val());
    else if (a === '--manifest') o.manifest = resolve(val());
    else if (a === '--no-manifest') o.manifest = undefined;
    else if (a === '--all') o.all = true;
    else if (a === '--seed') o.seed = Number(val());
    else if (a === '--dir') o.dir = resolve(val());
    else if (a === '-h' || a === '--help') usage();
    else if (a.startsWith('-')) usage(`unknown option ${a}`);
    else if (o.run === undefined) o.run = resolve(a);
    else usage(`unexpected argument ${a}`);
  }
  if (!o.all && o.run === undefined) usage('give RUN_DIR or --all');
  return o;
}

function sha256File(path) {
  return createHash('sha256').update(readFileSync(path)).digest('hex');
}

/** {count, sha256} of Python sentencepiece's ids of a text file (train/spm_ids.py). */
function pythonIds(textPath) {
  const r = spawnSync(PYTHON, [join(ROOT, 'train', 'spm_ids.py'), textPath, '--sha256'], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`train/spm_ids.py failed (needs ${PYTHON} with python3-sentencepiece):\n${r.stderr}`);
  return JSON.parse(r.stdout);
}

function rel(p) {
  return relative(ROOT, p).split('\\').join('/');
}

function pickEval(e) {
  return e && { ppl: e.ppl, nll: e.nll, n_scored: e.n_scored, n_windows: e.n_windows };
}

async function exportRun(lib, runDir, type, out) {
  const runPath = join(runDir, 'run.json');
  const stPath = join(runDir, 'export.safetensors');
  if (!existsSync(runPath) || !existsSync(stPath)) throw new Error(`${runDir} has no run.json / export.safetensors: train it first (npm run train -- --family ...)`);
  const run = JSON.parse(readFileSync(runPath, 'utf8'));
  const tensors = lib.st.readSafetensors(stPath);
  const tokenizer = lib.spm.readSpmModel(TOKENIZER);
  const family = run.family;
  const t = type ?? lib.ex.FAMILY_TYPES[family][0];
  const file = out ?? join(ROOT, 'models', `tiny-${family}-${t}.gguf`);
  mkdirSync(dirname(file), { recursive: true });
  const w = lib.ex.exportGguf({
    family, type: t, config: lib.ex.parseTrainedConfig(run.config), tensors, tokenizer, out: file,
    name: `bitllm-tiny-${family}-s${run.seed}`,
    description: `bitllm tiny reference model: ${FAMILY_TITLE[family]}, ${run.parameters} parameters, trained from scratch on public-domain English (docs/training.md)`,
  });
  const entry = {
    file: basename(file), family, title: FAMILY_TITLE[family], arch: w.arch, type: w.type, runnable: runnable(w.arch, lib),
    bytes: w.bytes, sha256: w.sha256, parameters: run.parameters, training_tokens: run.training_tokens, steps: run.steps,
    seed: run.seed, lr: run.lr, loss: run.loss, init: run.init ? basename(dirname(resolve(runDir, run.init))) : null,
    wall_seconds: run.wall_seconds, threads: run.threads,
    eval: { val: pickEval(run.eval.val), ood: pickEval(run.eval.ood), ...(run.eval.val_a8 && { val_a8: pickEval(run.eval.val_a8), ood_a8: pickEval(run.eval.ood_a8) }) },
  };
  return entry;
}

function updateManifest(path, entries, extra) {
  const m = existsSync(path) ? JSON.parse(readFileSync(path, 'utf8')) : { models: [] };
  for (const e of entries) {
    const i = m.models.findIndex((x) => x.file === e.file);
    if (i >= 0) m.models[i] = e;
    else m.models.push(e);
  }
  for (const [k, v] of Object.entries(extra)) if (v !== undefined) m[k] = v;
  const ordered = {
    description: 'Tiny models trained from scratch by train/ (docs/training.md). eval.*.ppl: the trainer\'s own quantized evaluation, on the windows of `bitllm perplexity --ctx <eval.ctx>` over the corpus split (scripts/corpus.mjs).',
    default: m.default, tokenizer: m.tokenizer, corpus: m.corpus, eval: m.eval, models: m.models,
  };
  writeFileSync(path, JSON.stringify(ordered, null, 2) + '\n');
}

async function main() {
  const o = parseArgs(process.argv.slice(2));
  if (!existsSync(DIST)) throw new Error(`${DIST} is missing: build with \`npm run build:ts\` first`);
  const lib = {
    ex: await import(DIST),
    st: await import(join(ROOT, 'dist', 'convert', 'safetensors.js')),
    spm: await import(join(ROOT, 'dist', 'convert', 'spm-model.js')),
    arch: await import(join(ROOT, 'dist', 'model', 'arch.js')),
  };
  const entries = [];
  if (o.all) {
    for (const [family, type] of SHIPPED) {
      const e = await exportRun(lib, join(ROOT, '.cache', 'train', `${family}-s${o.seed}`), type, join(o.dir, `tiny-${family}-${type}.gguf`));
      process.stdout.write(`${rel(join(o.dir, e.file))}: ${e.arch} ${e.type}, ${(e.bytes / 1e6).toFixed(2)} MB, val ppl ${e.eval.val.ppl.toFixed(3)}, ood ppl ${e.eval.ood.ppl.toFixed(3)}\n`);
      entries.push(e);
    }
  } else {
    const e = await exportRun(lib, o.run, o.type, o.out);
    process.stdout.write(`${o.out ? rel(o.out) : `models/${e.file}`}: ${e.arch} ${e.type}, ${(e.bytes / 1e6).toFixed(2)} MB, val ppl ${e.eval.val.ppl.toFixed(3)}\n`);
    entries.push(e);
  }
  if (o.manifest) {
    const corpus = JSON.parse(readFileSync(join(ROOT, '.cache', 'corpus', 'corpus.json'), 'utf8'));
    const split = (name) => ({ file: `.cache/corpus/${name}.txt`, bytes: corpus.files[`${name}.txt`].bytes, sha256: corpus.files[`${name}.txt`].sha256 });
    const ids = (name) => pythonIds(join(ROOT, '.cache', 'corpus', `${name}.txt`));
    updateManifest(o.manifest, entries, {
      default: o.all ? `tiny-${SHIPPED[0][0]}-${SHIPPED[0][1]}.gguf` : undefined,
      tokenizer: { file: rel(TOKENIZER), sha256: sha256File(TOKENIZER), pieces: lib.spm.readSpmModel(TOKENIZER).pieces.length, kind: 'SentencePiece BPE, byte fallback, identity normalization' },
      corpus: { assemble: 'node scripts/corpus.mjs', val: { ...split('val'), ids: ids('val') }, ood: { ...split('ood'), ids: ids('ood') }, train: split('train') },
      eval: { ctx: 256, windows: 'non-overlapping runs of ctx-1 tokens, each opened by BOS; every token after BOS scored (lib/cli/perplexity.ts)' },
    });
    process.stdout.write(`updated ${rel(o.manifest)}\n`);
  }
}

main().catch((err) => {
  process.stderr.write(`export-model: ${err.message}\n`);
  process.exit(1);
});
