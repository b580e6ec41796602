#!/usr/bin/env node
// `bitllm perplexity` of an exported model vs the trainer's own quantized evaluation (run.json).
// usage: node train/check-parity.mjs RUN_DIR MODEL.gguf [--split val|ood] [--tolerance 0.01]
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const args = process.argv.slice(2);
const opt = (name, def) => { const i = args.indexOf(name); return i >= 0 ? args.splice(i, 2)[1] : def; };
const split = opt('--split', 'val');
const tolerance = Number(opt('--tolerance', '0.01'));
const [runDir, model] = args;
if (!runDir || !model) {
  process.stderr.write('usage: node train/check-parity.mjs RUN_DIR MODEL.gguf [--split val|ood] [--tolerance 0.01]\n');
  process.exit(2);
}
const run = JSON.parse(readFileSync(join(runDir, 'run.json'), 'utf8'));
const want = run.eval[split];
if (!want) throw new Error(`${runDir}/run.json has no ${split} evaluation`);
const r = spawnSync(process.execPath, [join(ROOT, 'dist', 'cli', 'main.js'), 'perplexity', model, '-f', join(ROOT, '.cache', 'corpus', `${split}.txt`),
  '--ctx', String(want.ctx), '--json'], { encoding: 'utf8' });
if (r.status !== 0) {
  process.stderr.write(r.stderr);
  process.exit(1);
}
const got = JSON.parse(r.stdout);
const rel = got.ppl / want.ppl - 1;
const ok = got.n_scored === want.n_scored && Math.abs(rel) <= tolerance;
process.stdout.write(`${ok ? 'ok  ' : 'FAIL'} ${model} ${split}: bitllm ppl ${got.ppl.toFixed(4)} (${got.n_scored} tokens), trainer ${want.ppl.toFixed(4)} (${want.n_scored}), difference ${(100 * rel).toFixed(4)} %\n`);
process.exit(ok ? 0 : 1);
