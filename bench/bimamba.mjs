// Bi-Mamba on the native kernels op by op (lib/model/mamba2-exec.ts), at the shape of the paper's 780M model
// (48 layers, d_model 1536, inner 3072, state 128, 48 heads, 1 group, conv 4, vocab 32000), synthetic weights:
//   - decode tok/s after a context of 64 and of 4,096 tokens (the issue: within 10 %; the state is constant in
//     the sequence length, so is the cost);
//   - a 512-token prompt by the chunked scan vs token by token (the decode path over the prompt);
//   - the one-call native forward over the native state pool vs its op-by-op twin over JS states (decode, and a
//     512-token prompt in one step);
//   - through the product path (loadModel: worker, step scheduler, recurrent state pool): decode tok/s after 64
//     and 4,096 tokens, and the aggregate tok/s of 1, 4 and 8 concurrent streams (prompt 64, --decode tokens).
// One JSON line per figure. The synthetic file (LLaMA-2's vocabulary from .cache/test-data, as `bitllm synth`)
// is written once to .cache/bench (about 200 MB, ~1 min).
//   npm run build && node bench/bimamba.mjs [--threads 2] [--isa avx512] [--decode 32] [--ctx 64,4096] [--reps 2]
//                                           [--streams 1,4,8] [--no-engine] [--compare FILE,FILE,...] [--head f16|q8|q4]
// --head: the embedding/head type (default f16, exact; the families table of README uses q8).
// --compare: only the product path's decode tok/s after a 64-token prompt for each file (e.g. the Bi-Mamba, hybrid
// and FP Mamba-2 files `bitllm synth --shape 780m` writes), files alternated rep by rep in one process.
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { performance } from 'node:perf_hooks';

import { readGguf } from '../dist/format/gguf.js';
import { KernelContext, cpuInfo } from '../dist/kernels/context.js';
import { Mamba2Exec } from '../dist/model/mamba2-exec.js';
import { Mamba2StatePool } from '../dist/model/mamba2-pool.js';
import { mamba2ConfigFromGguf, synthMamba2Gguf } from '../dist/model/mamba2.js';
import { loadModel } from '../dist/index.js';
import { option } from './common.mjs';

const argv = process.argv.slice(2);
const threads = Number(option(argv, '--threads', String(cpuInfo().physicalCores)));
const isa = option(argv, '--isa', undefined);
const decodeN = Number(option(argv, '--decode', '32'));
const contexts = option(argv, '--ctx', '64,4096').split(',').map(Number);
const reps = Number(option(argv, '--reps', '2'));

const dir = new URL('../.cache/bench/', import.meta.url);
const file = new URL('bimamba-780m-llama.gguf', dir);
if (!existsSync(file)) {
  mkdirSync(dir, { recursive: true });
  const t0 = performance.now();
  const vocab = readGguf(new URL('../.cache/test-data/vocab/ggml-vocab-llama-spm.gguf', import.meta.url).pathname);
  writeFileSync(file, synthMamba2Gguf({
    dModel: 1536, nLayer: 48, dInner: 3072, dState: 128, nHeads: 48, nGroups: 1, dConv: 4, nVocab: 32000, seed: 1,
    metadata: (w) => {
      for (const [k, e] of vocab.metadata) if (k.startsWith('tokenizer.ggml.')) w.set(k, e.type, e.value, e.itemType);
    },
  }));
  console.error(`wrote ${file.pathname} in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
}
const prompt = (n, seed) => Array.from({ length: n }, (_, i) => 100 + ((i * 7919 + seed * 104729) % 31000));
const headType = option(argv, '--head', 'f16');
const compare = option(argv, '--compare', undefined);
if (compare) {
  const files = compare.split(',');
  const runs = new Map(files.map((f) => [f, []]));
  for (let r = 0; r < reps; r++)
    for (const f of r % 2 ? [...files].reverse() : files) {
      const model = await loadModel(f, { threads, ...(isa && { isa }), headType, sequences: 1, contextSize: 64 + decodeN + 16 });
      for await (const _ of model.generate(prompt(8, 99), { maxTokens: 4, temperature: 0, ignoreEog: true }));
      let first = 0;
      let n = 0;
      for await (const _ of model.generate(prompt(64, r + 3), { maxTokens: decodeN + 1, temperature: 0, ignoreEog: true })) if (n++ === 0) first = performance.now();
      runs.get(f).push(decodeN / ((performance.now() - first) / 1000));
      await model.close();
    }
  const base = Math.max(...runs.get(files[0]));
  for (const f of files)
    console.log(JSON.stringify({ figure: 'engine decode after 64', file: f, tokPerS: +Math.max(...runs.get(f)).toFixed(2), runs: runs.get(f).map((v) => +v.toFixed(2)), vsFirst: +(Math.max(...runs.get(f)) / base).toFixed(3) }));
  process.exit(0);
}
const gguf = readGguf(file.pathname);
const cfg = mamba2ConfigFromGguf(gguf);
const ctx = new KernelContext({ threads, ...(isa && { isa }) });
const t0 = performance.now();
const exec = new Mamba2Exec(ctx, cfg, gguf, { headType });
const info = ctx.info();
console.log(JSON.stringify({ model: 'bi-mamba 780M shape (synthetic)', isa: info.isa, threads: info.threads, headType, loadMs: Math.round(performance.now() - t0), stateMiB: +(exec.stateBytes() / 2 ** 20).toFixed(1) }));

const argmax = (l) => {
  let b = 0;
  for (let i = 1; i < l.length; i++) if (l[i] > l[b]) b = i;
  return b;
};

// Decode after each context, contexts alternated rep by rep.
const decode = new Map(contexts.map((c) => [c, []]));
for (let r = 0; r < reps; r++) {
  for (const c of r % 2 ? [...contexts].reverse() : contexts) {
    const st = exec.newState();
    const tp = performance.now();
    let logits = exec.forward(prompt(c, r), st);
    const prefillMs = performance.now() - tp;
    const td = performance.now();
    for (let i = 0; i < decodeN; i++) logits = exec.forward([argmax(logits)], st);
    const ms = performance.now() - td;
    decode.get(c).push(decodeN / (ms / 1000));
    console.error(`ctx ${c}: prefill ${(c / (prefillMs / 1000)).toFixed(1)} tok/s, decode ${(decodeN / (ms / 1000)).toFixed(2)} tok/s`);
  }
}
const best = (a) => Math.max(...a);
const base = best(decode.get(contexts[0]));
for (const c of contexts)
  console.log(JSON.stringify({ figure: 'decode', context: c, tokPerS: +best(decode.get(c)).toFixed(2), runs: decode.get(c).map((v) => +v.toFixed(2)), vsFirst: +(best(decode.get(c)) / base).toFixed(3) }));

// A 512-token prompt: chunked scan (one call) vs token by token.
const p512 = prompt(512, 9);
const chunked = [];
const byToken = [];
for (let r = 0; r < reps; r++) {
  let t = performance.now();
  exec.forward(p512, exec.newState(), { chunk: 64 });
  chunked.push(performance.now() - t);
  const st = exec.newState();
  t = performance.now();
  for (const tok of p512) exec.forward([tok], st);
  byToken.push(performance.now() - t);
}
const cm = Math.min(...chunked);
const bm = Math.min(...byToken);
console.log(JSON.stringify({ figure: 'prefill 512', chunkedMs: Math.round(cm), tokenByTokenMs: Math.round(bm), speedup: +(bm / cm).toFixed(2) }));

// The one-call native forward over the native state pool (what loadModel runs) vs its op-by-op twin over JS
// states (~12 N-API calls per layer): a 512-token prompt in one step, then decode; modes alternated rep by rep.
{
  const modes = ['native', 'ops'];
  const res = new Map(modes.map((k) => [k, { prefill: [], decode: [] }]));
  for (let r = 0; r < reps; r++)
    for (const mode of r % 2 ? [...modes].reverse() : modes) {
      const pool = new Mamba2StatePool(exec, { maxSequences: 1, contextSize: 512 + decodeN + 1, native: mode === 'native' });
      const s = pool.create();
      let t = performance.now();
      let l = pool.forwardBatch(p512.map((token, pos) => ({ token, seq: s, pos, logits: pos === 511 })));
      res.get(mode).prefill.push(performance.now() - t);
      t = performance.now();
      for (let i = 0; i < decodeN; i++) l = pool.forwardBatch([{ token: argmax(l), seq: s, pos: 512 + i, logits: true }]);
      res.get(mode).decode.push(decodeN / ((performance.now() - t) / 1000));
    }
  const nat = res.get('native');
  const ops = res.get('ops');
  // The same 512-token prompt token by token (the recurrence, one step per token) through the native path.
  const byTok = [];
  for (let r = 0; r < reps; r++) {
    const pool = new Mamba2StatePool(exec, { maxSequences: 1, contextSize: 513, native: true });
    const s = pool.create();
    const t = performance.now();
    p512.forEach((token, pos) => pool.forwardBatch([{ token, seq: s, pos, logits: pos === 511 }]));
    byTok.push(performance.now() - t);
  }
  console.log(JSON.stringify({ figure: 'prefill 512 (native)', chunkedMs: Math.round(Math.min(...nat.prefill)), tokenByTokenMs: Math.round(Math.min(...byTok)), speedup: +(Math.min(...byTok) / Math.min(...nat.prefill)).toFixed(2) }));
  console.log(JSON.stringify({
    figure: 'native one-call vs op by op', decodeTokPerS: { native: +best(nat.decode).toFixed(2), ops: +best(ops.decode).toFixed(2) },
    decodeRatio: +(best(nat.decode) / best(ops.decode)).toFixed(3),
    prefill512Ms: { native: Math.round(Math.min(...nat.prefill)), ops: Math.round(Math.min(...ops.prefill)) },
    prefillRatio: +(Math.min(...ops.prefill) / Math.min(...nat.prefill)).toFixed(3),
  }));
}

// The product path: loadModel (worker + scheduler + Mamba2StatePool), greedy past EOG.
if (!argv.includes('--no-engine')) {
  const streams = option(argv, '--streams', '1,4,8').split(',').map(Number);
  const maxN = Math.max(...streams);
  const model = await loadModel(file.pathname, { threads, ...(isa && { isa }), headType, sequences: maxN, contextSize: Math.max(...contexts) + decodeN + 16 });
  const gen = async (ids, n) => {
    let c = 0;
    let tFirst = 0;
    for await (const _ of model.generate(ids, { maxTokens: n, temperature: 0, ignoreEog: true })) if (c++ === 0) tFirst = performance.now();
    return { c, tFirst, stats: model.stats.last };
  };
  await gen(prompt(8, 99), 4); // warm
  const apiDecode = new Map(contexts.map((c) => [c, []]));
  for (let r = 0; r < reps; r++)
    for (const c of r % 2 ? [...contexts].reverse() : contexts) {
      const tp = performance.now();
      let first = 0;
      let n = 0;
      for await (const _ of model.generate(prompt(c, r + 7), { maxTokens: decodeN + 1, temperature: 0, ignoreEog: true })) if (n++ === 0) first = performance.now();
      const ms = performance.now() - first;
      apiDecode.get(c).push(decodeN / (ms / 1000));
      console.error(`engine ctx ${c}: prefill ${(c / ((first - tp) / 1000)).toFixed(1)} tok/s, decode ${(decodeN / (ms / 1000)).toFixed(2)} tok/s`);
    }
  const b0 = best(apiDecode.get(contexts[0]));
  for (const c of contexts)
    console.log(JSON.stringify({ figure: 'engine decode', context: c, tokPerS: +best(apiDecode.get(c)).toFixed(2), runs: apiDecode.get(c).map((v) => +v.toFixed(2)), vsFirst: +(best(apiDecode.get(c)) / b0).toFixed(3) }));
  let one = 0;
  for (const N of streams) {
    const runs = [];
    for (let r = 0; r < reps; r++) {
      const t0s = performance.now();
      const counts = await Promise.all(Array.from({ length: N }, (_, i) => gen(prompt(64, 1000 + 10 * r + i), decodeN).then((x) => x.c)));
      runs.push(counts.reduce((a, b) => a + b, 0) / ((performance.now() - t0s) / 1000));
    }
    const tps = best(runs);
    if (N === streams[0]) one = tps;
    console.log(JSON.stringify({ figure: 'engine streams', streams: N, prompt: 64, tokens: decodeN, tokPerS: +tps.toFixed(2), runs: runs.map((v) => +v.toFixed(2)), vsOne: +(tps / one).toFixed(2) }));
  }
  await model.close();
}
