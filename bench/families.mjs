#!/usr/bin/env node
// Every family at the BitNet b1.58 2B-4T shape (the FP16 teacher and BiLLM at --ptq-shape) (`bitllm synth --shape 2b4t`, seeded random weights of each
// family's layout), end to end through `bitllm bench` (public API: worker, sampling, ignoreEog), run
// alternately rep by rep so every model sees the same machine state. Prints each measurement as a JSON
// line, then the ratios the families issue names, each taken within one run:
//   BitNet 1-bit decode / b1.58 TQ2_0 decode (same q8 head), against the default TD3 layout and TQ2_0's 2-bit T2R16
//   FBI-LLM and OneBit decode on the exact float path / the same model on the int8 path (--act i8)
//   a4.8 decode / b1.58 decode (same shape and head); a4.8 prefill / b1.58 prefill
//   BiLLM decode / FP16 teacher decode (synthetic BiLLM planes: 8 salient columns per 128-column block), at
//   --ptq-shape (default 1b3, FBI-LLM 1.3B's: the 2B-4T FP16 file is 4.8 GB, past the 4 GiB bitllm can map)
//
//   npm run build && node bench/families.mjs [--dir DIR] [--threads 2] [--reps 3] [-p 128] [-n 32] [--head q8]
//                                          [--only b158,bitnet,fbi,onebit,a48,fp16,billm] [--ptq-shape 1b3]
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { tmpdir } from 'node:os';
import { fileURLToPath } from 'node:url';

import { FAMILY_SYNTH, familyFile, option } from './common.mjs';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');
const CLI = join(ROOT, 'dist', 'cli', 'main.js');

const argv = process.argv.slice(2);
const val = (name, def) => option(argv, name, def);
const dir = val('--dir', join(tmpdir(), 'bitllm-models'));
const threads = Number(val('--threads', '2'));
const reps = Number(val('--reps', '3'));
const p = Number(val('-p', '128'));
const n = Number(val('-n', '32'));
const head = val('--head', 'q8');
const ptqShape = val('--ptq-shape', '1b3');
const only = new Set(val('--only', 'b158,bitnet,fbi,onebit,a48,fp16,billm').split(','));

if (!existsSync(CLI)) throw new Error(`${CLI} is missing: run npm run build first`);
mkdirSync(dir, { recursive: true });

function run(args) {
  const r = spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8', maxBuffer: 1 << 24 });
  if (r.status !== 0) throw new Error(`bitllm ${args.join(' ')} failed (${r.status}):\n${r.stderr}`);
  return r.stdout;
}

const files = {};
for (const [family] of FAMILY_SYNTH.filter(([f]) => only.has(f))) {
  const { file, shape, type, arch } = familyFile(dir, family, ptqShape);
  if (!existsSync(file)) {
    process.stderr.write(`synthesizing ${file}…\n`);
    run(['synth', '--shape', shape, '--type', type, '--arch', arch, '--activation', 'relu2', '--seed', '1', '-o', file]);
  }
  files[family] = file;
}

// What each run measures: [label, family, extra bench options].
const RUNS = [
  ['b158', 'b158', []], ['b158-t2r16', 'b158', ['--layout', 't2r16']], ['bitnet', 'bitnet', []], ['fbi-float', 'fbi', []], ['fbi-i8', 'fbi', ['--act', 'i8']],
  ['onebit-float', 'onebit', []], ['onebit-i8', 'onebit', ['--act', 'i8']], ['a48', 'a48', []], ['fp16', 'fp16', []],
  ['billm', 'billm', []],
].filter(([, f]) => files[f]);

const results = {};
for (let rep = 0; rep < reps; rep++)
  for (const [label, family, extra] of RUNS) {
    const o = JSON.parse(run(['bench', files[family], '-p', String(p), '-n', String(n), '-t', String(threads), '--reps', '1',
      '--warmup', '1', '--head', head, '--json', ...extra]));
    const row = { label, rep, threads, head, pp_tps: o.pp_tps.mean ?? o.pp_tps, tg_tps: o.tg_tps.mean ?? o.tg_tps, rss_mb: o.rss_mb, load_ms: o.load_ms, isa: o.isa };
    console.log(JSON.stringify(row));
    (results[label] ??= []).push(row);
  }

const mean = (label, k) => {
  const rs = results[label];
  return rs ? rs.reduce((a, r) => a + r[k], 0) / rs.length : undefined;
};
const ratio = (name, a, b, k, target) => {
  const x = mean(a, k);
  const y = mean(b, k);
  if (x === undefined || y === undefined) return;
  console.log(JSON.stringify({ ratio: name, value: Math.round((x / y) * 1000) / 1000, target, [a]: Math.round(x * 100) / 100, [b]: Math.round(y * 100) / 100, metric: k }));
};
ratio('bitnet-1bit decode / b1.58 decode', 'bitnet', 'b158', 'tg_tps', 1.3);
// The same b1.58 file in TQ2_0's own 2-bit layout (T2R16): the "half the layer bytes" the 1.3x target assumes.
// The default TD3 layout stores b1.58 at 1.6875 bits, which bounds the ratio above at ~1.25x (docs/benchmarks.md).
ratio('bitnet-1bit decode / b1.58 decode in the 2-bit TQ2_0 layout (--layout t2r16)', 'bitnet', 'b158-t2r16', 'tg_tps', 1.3);
ratio('fbi float decode / fbi int8 decode', 'fbi-float', 'fbi-i8', 'tg_tps', 0.8);
ratio('onebit float decode / onebit int8 decode', 'onebit-float', 'onebit-i8', 'tg_tps', 0.8);
ratio('a4.8 decode / b1.58 decode', 'a48', 'b158', 'tg_tps', 1.15);
ratio('a4.8 prefill / b1.58 prefill', 'a48', 'b158', 'pp_tps', 1.0);
ratio('billm decode / fp16 decode', 'billm', 'fp16', 'tg_tps', 3);
