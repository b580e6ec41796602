#!/usr/bin/env node
// bitllm vs llama.cpp (node-llama-cpp 3.22.1, what a Node user installs today) on the same files, same
// threads, run alternately so both see the same machine state. Builds the synthetic BitNet b1.58
// 2B-4T-shaped models it needs with `bitllm synth` (TQ2_0 and TQ1_0 under llama.cpp's `bitnet` arch, which
// both engines load; I2_S under bitnet.cpp's arch, bitllm only) and installs node-llama-cpp into .peers/
// when it is missing. Prints every measurement as a JSON line, then the ratios.
//
//   npm run build && node bench/peers.mjs [--dir DIR] [--threads 1,2] [--reps 3] [-p 128] [-n 32]
//                                        [--types tq2_0,tq1_0,i2_s] [--heads f16,q8] [--no-peer]
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { tmpdir } from 'node:os';
import { fileURLToPath } from 'node:url';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');
const CLI = join(ROOT, 'dist', 'cli', 'main.js');
const NLC = join(ROOT, 'bench', 'nlc-bench.mjs');

const argv = process.argv.slice(2);
const val = (name, def) => {
  const i = argv.indexOf(name);
  return i >= 0 ? argv[i + 1] : def;
};
const list = (name, def) => val(name, def).split(',').map((s) => s.trim()).filter(Boolean);
const dir = val('--dir', join(tmpdir(), 'bitllm-models'));
const threadsList = list('--threads', '1,2').map(Number);
const reps = Number(val('--reps', '3'));
const p = Number(val('-p', '128'));
const n = Number(val('-n', '32'));
const types = list('--types', 'tq2_0,tq1_0,i2_s');
const heads = list('--heads', 'f16,q8');
const withPeer = !argv.includes('--no-peer');

if (!existsSync(CLI)) throw new Error(`${CLI} is missing: run npm run build first`);
mkdirSync(dir, { recursive: true });

function run(cmd, args) {
  const r = spawnSync(cmd, args, { encoding: 'utf8', maxBuffer: 1 << 24 });
  if (r.status !== 0) throw new Error(`${[cmd, ...args].join(' ')} failed (${r.status}):\n${r.stderr}`);
  return r.stdout;
}

// Models: the same seed gives the same trits in every layout.
const files = {};
for (const type of types) {
  const arch = type === 'i2_s' ? 'bitnet-b1.58' : 'bitnet';
  const file = join(dir, `peers-2b4t-${type}.gguf`);
  if (!existsSync(file)) {
    process.stderr.write(`synthesizing ${file}…\n`);
    run(process.execPath, [CLI, 'synth', '--shape', '2b4t', '--type', type, '--arch', arch, '--seed', '1', '-o', file]);
  }
  files[type] = file;
}
if (withPeer) run('bash', [join(ROOT, 'scripts', 'install-peers.sh')]);

const results = [];
function record(row) {
  results.push(row);
  console.log(JSON.stringify(row));
}
const ours = (file, t, head) =>
  JSON.parse(run(process.execPath, [CLI, 'bench', file, '-p', String(p), '-n', String(n), '-t', String(t), '--reps', '1', '--warmup', '1', '--head', head, '--json']));
const peer = (file, t) => JSON.parse(run(process.execPath, [NLC, file, '-p', String(p), '-n', String(n), '-t', String(t), '--reps', '1', '--warmup', '1']));

// Alternate engines rep by rep, so a drift in the machine's bandwidth hits both alike.
for (let rep = 0; rep < reps; rep++)
  for (const t of threadsList)
    for (const type of types) {
      const file = files[type];
      for (const head of heads) {
        const o = ours(file, t, head);
        record({ engine: 'bitllm', type, head, threads: t, rep, pp_tps: o.pp_tps, tg_tps: o.tg_tps, rss_mb: o.rss_mb, load_ms: o.load_ms, isa: o.isa });
      }
      if (withPeer && type !== 'i2_s') {
        const o = peer(file, t);
        record({ engine: 'node-llama-cpp', type, head: 'f16', threads: t, rep, pp_tps: o.pp_tps, tg_tps: o.tg_tps, rss_mb: o.rss_mb, load_ms: o.load_ms });
      }
    }

// Means and ratios.
const mean = (f) => {
  const xs = results.filter(f);
  return xs.length ? { pp: xs.reduce((a, r) => a + r.pp_tps, 0) / xs.length, tg: xs.reduce((a, r) => a + r.tg_tps, 0) / xs.length } : undefined;
};
const r2 = (v) => (v === undefined || Number.isNaN(v) ? null : Math.round(v * 100) / 100);
const summary = [];
for (const t of threadsList) {
  const peerTq2 = mean((r) => r.engine === 'node-llama-cpp' && r.type === 'tq2_0' && r.threads === t);
  const ourTq2 = mean((r) => r.engine === 'bitllm' && r.type === 'tq2_0' && r.head === 'f16' && r.threads === t);
  for (const type of types)
    for (const head of heads) {
      const m = mean((r) => r.engine === 'bitllm' && r.type === type && r.head === head && r.threads === t);
      const pm = mean((r) => r.engine === 'node-llama-cpp' && r.type === type && r.threads === t);
      if (!m) continue;
      summary.push({
        threads: t, type, head, bitllm_pp: r2(m.pp), bitllm_tg: r2(m.tg), nlc_pp: r2(pm?.pp), nlc_tg: r2(pm?.tg),
        // vs node-llama-cpp on the same file (its F16 head), and vs node-llama-cpp on TQ2_0 for I2_S.
        pp_ratio: r2(m.pp / (pm ?? peerTq2)?.pp), tg_ratio: r2(m.tg / (pm ?? peerTq2)?.tg),
        tg_vs_our_tq2_f16: r2(m.tg / ourTq2?.tg),
      });
    }
}
if (threadsList.includes(1) && threadsList.includes(2))
  for (const type of types) {
    const a = mean((r) => r.engine === 'bitllm' && r.type === type && r.head === 'f16' && r.threads === 1);
    const b = mean((r) => r.engine === 'bitllm' && r.type === type && r.head === 'f16' && r.threads === 2);
    if (a && b) summary.push({ type, head: 'f16', tg_speedup_1_to_2_threads: r2(b.tg / a.tg), pp_speedup_1_to_2_threads: r2(b.pp / a.pp) });
  }
console.log(JSON.stringify({ summary }));
for (const s of summary) process.stderr.write(Object.entries(s).map(([k, v]) => `${k}=${v}`).join(' ') + '\n');
