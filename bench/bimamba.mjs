// Bi-Mamba on the native kernels op by op (lib/model/mamba2-exec.ts), at the shape of the paper's 780M model
// (48 layers, d_model 1536, inner 3072, state 128, 48 heads, 1 group, conv 4, vocab 32000), synthetic weights:
//   - decode tok/s after a context of 64 and of 4,096 tokens (the issue: within 10 %; the state is constant in
//     the sequence length, so is the cost);
//   - a 512-token prompt by the chunked scan vs token by token (the decode path over the prompt).
// One JSON line per figure. The synthetic file is written once to .cache/bench (about 200 MB, ~1 min).
//   npm run build && node bench/bimamba.mjs [--threads 2] [--isa avx512] [--decode 32] [--ctx 64,4096] [--reps 2]
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { performance } from 'node:perf_hooks';

import { readGguf } from '../dist/format/gguf.js';
import { KernelContext, cpuInfo } from '../dist/kernels/context.js';
import { Mamba2Exec } from '../dist/model/mamba2-exec.js';
import { mamba2ConfigFromGguf, synthMamba2Gguf } from '../dist/model/mamba2.js';
import { option } from './common.mjs';

const argv = process.argv.slice(2);
const threads = Number(option(argv, '--threads', String(cpuInfo().physicalCores)));
const isa = option(argv, '--isa', undefined);
const decodeN = Number(option(argv, '--decode', '32'));
const contexts = option(argv, '--ctx', '64,4096').split(',').map(Number);
const reps = Number(option(argv, '--reps', '2'));

const dir = new URL('../.cache/bench/', import.meta.url);
const file = new URL('bimamba-780m.gguf', dir);
if (!existsSync(file)) {
  mkdirSync(dir, { recursive: true });
  const t0 = performance.now();
  writeFileSync(file, synthMamba2Gguf({ dModel: 1536, nLayer: 48, dInner: 3072, dState: 128, nHeads: 48, nGroups: 1, dConv: 4, nVocab: 32000, seed: 1 }));
  console.error(`wrote ${file.pathname} in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
}
const gguf = readGguf(file.pathname);
const cfg = mamba2ConfigFromGguf(gguf);
const ctx = new KernelContext({ threads, ...(isa && { isa }) });
const t0 = performance.now();
const exec = new Mamba2Exec(ctx, cfg, gguf);
const info = ctx.info();
console.log(JSON.stringify({ model: 'bi-mamba 780M shape (synthetic)', isa: info.isa, threads: info.threads, loadMs: Math.round(performance.now() - t0), stateMiB: +(exec.stateBytes() / 2 ** 20).toFixed(1) }));

const prompt = (n, seed) => Array.from({ length: n }, (_, i) => 100 + ((i * 7919 + seed * 104729) % 31000));
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
