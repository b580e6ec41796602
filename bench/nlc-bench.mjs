#!/usr/bin/env node
// llama.cpp through node-llama-cpp (installed in .peers/ by scripts/install-peers.sh) on one GGUF: the
// same measurement as `bitllm bench` — prefill of -p prompt tokens, then -n greedily decoded tokens
// through the package's public sequence API, as a Node user runs it. Prints one JSON line.
//   node bench/nlc-bench.mjs MODEL [-p 128] [-n 32] [-t 2] [--reps 1] [--warmup 1]
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { performance } from 'node:perf_hooks';

import { promptIds } from './common.mjs';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');
const ENTRY = join(ROOT, '.peers', 'node_modules', 'node-llama-cpp', 'dist', 'index.js');

const argv = process.argv.slice(2);
const opt = (names, def) => {
  for (const n of names) {
    const i = argv.indexOf(n);
    if (i >= 0) return Number(argv[i + 1]);
  }
  return def;
};
const file = argv[0];
if (!file || !existsSync(file)) {
  console.error('usage: node bench/nlc-bench.mjs MODEL [-p 128] [-n 32] [-t 2] [--reps 1] [--warmup 1]');
  process.exit(2);
}
if (!existsSync(ENTRY)) {
  console.error(`nlc-bench: node-llama-cpp is not installed in .peers/: run bash scripts/install-peers.sh`);
  process.exit(1);
}
const p = opt(['-p'], 128), n = opt(['-n'], 32), threads = opt(['-t', '--threads'], 2);
const reps = opt(['--reps'], 1), warmup = opt(['--warmup'], 1);

const nlc = await import(pathToFileURL(ENTRY).href);
const llama = await nlc.getLlama({
  gpu: false, build: 'never', skipDownload: true, usePrebuiltBinaries: true, progressLogs: false, maxThreads: threads,
  logLevel: nlc.LlamaLogLevel.error,
});
const t0 = performance.now();
const model = await llama.loadModel({ modelPath: file, gpuLayers: 0, useMmap: true });
const loadMs = performance.now() - t0;
const V = model.tokens.vocabSize ?? 32000;

const pp = [], tg = [];
for (let r = -warmup; r < reps; r++) {
  const context = await model.createContext({ contextSize: p + n + 16, batchSize: Math.max(p, 1), threads, sequences: 1, flashAttention: false });
  try {
    const seq = context.getSequence();
    const prompt = promptIds(Math.max(p, 1), V, r + warmup);
    let t = performance.now();
    await seq.evaluateWithoutGeneratingNewTokens(prompt.slice(0, -1));
    // The last prompt token is evaluated with the first sampled token, as in bitllm's prefill.
    let count = 0;
    let tFirst = 0;
    const it = seq.evaluate([prompt.at(-1)], { temperature: 0 });
    for await (const _tok of it) {
      count++;
      if (count === 1) {
        tFirst = performance.now();
        if (r >= 0 && p > 0) pp.push(p / ((tFirst - t) / 1000));
      }
      if (count >= n) break;
    }
    const tEnd = performance.now();
    if (r >= 0 && n > 1) tg.push((count - 1) / ((tEnd - tFirst) / 1000));
  } finally {
    await context.dispose();
  }
}
const stat = (xs) => xs.length ? { mean: xs.reduce((a, b) => a + b, 0) / xs.length, min: Math.min(...xs), max: Math.max(...xs) } : null;
const r2 = (v) => v == null ? null : Math.round(v * 100) / 100;
const ps = stat(pp), ts = stat(tg);
console.log(JSON.stringify({
  engine: 'node-llama-cpp', version: '3.22.1', model: file, pp_tokens: p, tg_tokens: n, reps,
  pp_tps: r2(ps?.mean), pp_min: r2(ps?.min), pp_max: r2(ps?.max), tg_tps: r2(ts?.mean), tg_min: r2(ts?.min), tg_max: r2(ts?.max),
  load_ms: Math.round(loadMs), rss_mb: Math.round(process.memoryUsage().rss / 1e6), threads,
}));
await model.dispose();
await llama.dispose();
