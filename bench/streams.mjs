#!/usr/bin/env node
// Many sequences at once: aggregate generation throughput of N concurrent streams on one model, bitllm
// (loadModel({ sequences: N }), N concurrent generate() calls: its step scheduler batches them) vs llama.cpp
// through node-llama-cpp (one context with N sequences, N concurrent evaluate() calls: its own batching),
// on the same GGUF, same threads, engines alternated rep by rep in separate processes. Each stream gets its own
// prompt of -p tokens and samples -n tokens greedily past EOG. Throughput = all streams' generated tokens /
// wall time from the first request to the last token (prefill included, as a server sees it); also the mean
// time to first token. Prints JSON lines, then bitllm / llama.cpp per N.
//
//   npm run build && node bench/streams.mjs [MODEL] [--streams 1,4,8] [-p 64] [-n 32] [-t 2] [--reps 2]
//   (default MODEL: the synthetic 2B-4T TQ2_0 file of bench/families.mjs; one engine alone: --engine bitllm|nlc)
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

import { DEFAULT_2B4T_TQ2, option, positionals, promptIds } from './common.mjs';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');
const argv = process.argv.slice(2);
const val = (name, def) => option(argv, name, def);
const file = positionals(argv)[0] ?? DEFAULT_2B4T_TQ2;
const streamsList = val('--streams', '1,4,8').split(',').map(Number);
const p = Number(val('-p', '64'));
const n = Number(val('-n', '32'));
const threads = Number(val('-t', '2'));
const reps = Number(val('--reps', '2'));
const engine = val('--engine', undefined);

if (!existsSync(file)) throw new Error(`${file} is missing (node bench/families.mjs --only b158 makes it)`);

async function runBitllm(N, seed) {
  const { loadModel } = await import(pathToFileURL(join(ROOT, 'dist', 'index.js')).href);
  const model = await loadModel(file, { threads, sequences: N, contextSize: p + n + 16, headType: 'f16' });
  try {
    const V = model.tokenizer.vocabSize;
    const warm = model.generate(promptIds(8, V, 999), { maxTokens: 4, temperature: 0, ignoreEog: true });
    for await (const _ of warm);
    const t0 = performance.now();
    const ttft = [];
    const counts = await Promise.all(Array.from({ length: N }, async (_, i) => {
      let c = 0;
      for await (const _chunk of model.generate(promptIds(p, V, seed * 100 + i), { maxTokens: n, temperature: 0, ignoreEog: true })) {
        if (c++ === 0) ttft.push(performance.now() - t0);
      }
      return c;
    }));
    const wall = performance.now() - t0;
    return { tokens: counts.reduce((a, b) => a + b, 0), wall, ttft };
  } finally {
    await model.close();
  }
}

async function runNlc(N, seed) {
  const nlc = await import(pathToFileURL(join(ROOT, '.peers', 'node_modules', 'node-llama-cpp', 'dist', 'index.js')).href);
  const llama = await nlc.getLlama({ gpu: false, build: 'never', skipDownload: true, usePrebuiltBinaries: true, progressLogs: false, maxThreads: threads,
    logLevel: nlc.LlamaLogLevel.error });
  const model = await llama.loadModel({ modelPath: file, gpuLayers: 0, useMmap: true });
  const V = model.tokens.vocabSize ?? 32000;
  const context = await model.createContext({ contextSize: N * (p + n + 16), batchSize: Math.max(p, 64), threads, sequences: N, flashAttention: false });
  try {
    const warmSeq = context.getSequence();
    let w = 0;
    for await (const _ of warmSeq.evaluate(promptIds(8, V, 999), { temperature: 0 })) if (++w >= 4) break;
    warmSeq.dispose();
    const seqs = Array.from({ length: N }, () => context.getSequence());
    const t0 = performance.now();
    const ttft = [];
    const counts = await Promise.all(seqs.map(async (seq, i) => {
      let c = 0;
      for await (const _tok of seq.evaluate(promptIds(p, V, seed * 100 + i), { temperature: 0 })) {
        if (c++ === 0) ttft.push(performance.now() - t0);
        if (c >= n) break;
      }
      return c;
    }));
    const wall = performance.now() - t0;
    return { tokens: counts.reduce((a, b) => a + b, 0), wall, ttft };
  } finally {
    await context.dispose();
    await model.dispose();
    await llama.dispose();
  }
}

if (engine) {
  const N = Number(val('--n-streams', '1'));
  const seed = Number(val('--seed', '1'));
  const r = engine === 'bitllm' ? await runBitllm(N, seed) : await runNlc(N, seed);
  const mean = (xs) => xs.reduce((a, b) => a + b, 0) / xs.length;
  console.log(JSON.stringify({ engine, streams: N, threads, p, n, tokens: r.tokens, wall_ms: Math.round(r.wall), tps: Math.round((r.tokens / (r.wall / 1000)) * 100) / 100,
    ttft_ms: Math.round(mean(r.ttft)) }));
  process.exit(0);
}

const rows = [];
for (let rep = 0; rep < reps; rep++)
  for (const N of streamsList)
    for (const e of ['bitllm', 'nlc']) {
      const r = spawnSync(process.execPath, [fileURLToPath(import.meta.url), file, '--engine', e, '--n-streams', String(N), '--seed', String(rep + 1),
        '-p', String(p), '-n', String(n), '-t', String(threads)], { encoding: 'utf8', maxBuffer: 1 << 24 });
      if (r.status !== 0) throw new Error(`${e} N=${N} failed:\n${r.stderr}`);
      const row = JSON.parse(r.stdout.trim().split('\n').at(-1));
      console.log(JSON.stringify({ ...row, rep }));
      rows.push(row);
    }
for (const N of streamsList) {
  const m = (e, k) => {
    const rs = rows.filter((r) => r.engine === e && r.streams === N);
    return rs.reduce((a, r) => a + r[k], 0) / rs.length;
  };
  console.log(JSON.stringify({ ratio: `bitllm / llama.cpp aggregate tok/s, ${N} streams`, value: Math.round((m('bitllm', 'tps') / m('nlc', 'tps')) * 1000) / 1000,
    bitllm_tps: Math.round(m('bitllm', 'tps') * 100) / 100, llamacpp_tps: Math.round(m('nlc', 'tps') * 100) / 100,
    bitllm_ttft_ms: Math.round(m('bitllm', 'ttft_ms')), llamacpp_ttft_ms: Math.round(m('nlc', 'ttft_ms')) }));
}
