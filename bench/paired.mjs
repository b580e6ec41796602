#!/usr/bin/env node
// Decode ratios of model pairs, measured in one process in tightly interleaved rounds: every model is loaded once
// and stays resident, then each round decodes -n tokens (after a -p token prompt, greedy, EOG ignored) with
// each model of a pair back to back, in ABBA order (A B in even rounds, B A in odd ones), so that the host's
// drift (the read bandwidth of this shared machine moves by tens of percent within seconds) falls on both
// sides of every ratio. Prints one JSON line per measurement, then per pair the median of the per-round
// ratios with their quartiles, next to the ratio of the mean speeds (what bench/families.mjs reports, from
// separate processes one model after another). Each round also probes the read bandwidth (the kernels bench's
// probe, 256 MiB, on -t threads): the bandwidth-bound side of a pair (b1.58, FP16) moves with it, the side
// bound by compute (BiLLM) much less, so a ratio is only meaningful next to the bandwidth it was taken at.
//
//   npm run build && node bench/paired.mjs [--pairs bitnet/b158,a48/b158,billm/fp16] [--rounds 12] [-p 32] [-n 32]
//                                          [-t 2] [--head q8] [--dir DIR]
// Labels are bench/families.mjs's (the same synthetic files, made by that script or by `bitllm synth`):
//   b158, b158-t2r16, bitnet, fbi-float, fbi-i8, onebit-float, onebit-i8, a48, fp16, billm.
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { tmpdir } from 'node:os';

import { loadModel } from '../dist/index.js';
import { KernelContext } from '../dist/kernels/context.js';
import { binding } from '../dist/native.js';
import { familyFile, option, promptIds } from './common.mjs';

const argv = process.argv.slice(2);
const val = (name, def) => option(argv, name, def);
const dir = val('--dir', join(tmpdir(), 'bitllm-models'));
const rounds = Number(val('--rounds', '12'));
const p = Number(val('-p', '32'));
const n = Number(val('-n', '32'));
const threads = Number(val('-t', '2'));
const head = val('--head', 'q8');
const pairs = val('--pairs', 'bitnet/b158,bitnet/b158-t2r16,a48/b158,billm/fp16').split(',').map((s) => s.split('/'));

// label -> [family, load options]; the files of bench/families.mjs.
const LABELS = {
  b158: ['b158', {}], 'b158-t2r16': ['b158', { layout: 't2r16' }], bitnet: ['bitnet', {}],
  'fbi-float': ['fbi', {}], 'fbi-i8': ['fbi', { actQuant: 'i8' }], 'onebit-float': ['onebit', {}],
  'onebit-i8': ['onebit', { actQuant: 'i8' }], a48: ['a48', {}], fp16: ['fp16', {}], billm: ['billm', {}],
};
const MODELS = Object.fromEntries(Object.entries(LABELS).map(([label, [family, opts]]) => [label, [familyFile(dir, family).file, opts]]));
for (const pair of pairs) {
  if (pair.length !== 2) throw new Error(`--pairs: '${pair.join('/')}' is not A/B`);
  for (const label of pair) {
    if (!MODELS[label]) throw new Error(`--pairs: unknown label '${label}' (known: ${Object.keys(MODELS).join(', ')})`);
    if (!existsSync(MODELS[label][0])) throw new Error(`${MODELS[label][0]} is missing: node bench/families.mjs makes it`);
  }
}

const models = {};
for (const label of new Set(pairs.flat())) {
  const [file, opts] = MODELS[label];
  models[label] = await loadModel(file, { threads, headType: head, sequences: 1, ...opts });
}

let seed = 1;
/** Decode tok/s of one greedy generation of n tokens after a p-token prompt. */
async function decode(label) {
  const m = models[label];
  const ids = promptIds(p, Math.min(32000, m.info.tokenizer.vocabSize), seed++);
  const it = m.generate(ids, { maxTokens: n, temperature: 0, ignoreEog: true });
  for (;;) {
    const r = await it.next();
    if (r.done) return r.value.stats.decodeTps;
  }
}

for (const label of Object.keys(models)) await decode(label); // warm-up: page in every model
const probeCtx = new KernelContext({ threads });
const readBw = () => binding('probeReadBandwidth')(probeCtx.handle, 1 << 28, 3).median;
const quant = (xs, q) => {
  const s = [...xs].sort((a, b) => a - b);
  const i = (s.length - 1) * q;
  const lo = Math.floor(i);
  return s[lo] + (s[Math.min(lo + 1, s.length - 1)] - s[lo]) * (i - lo);
};
const r3 = (x) => Math.round(x * 1000) / 1000;
for (const [a, b] of pairs) {
  const ratios = [];
  const tps = { [a]: [], [b]: [] };
  const bws = [];
  for (let r = 0; r < rounds; r++) {
    const order = r % 2 === 0 ? [a, b] : [b, a];
    const got = {};
    for (const label of order) got[label] = await decode(label);
    tps[a].push(got[a]);
    tps[b].push(got[b]);
    ratios.push(got[a] / got[b]);
    const bw = readBw();
    bws.push(bw);
    console.log(JSON.stringify({ pair: `${a}/${b}`, round: r, [a]: r3(got[a]), [b]: r3(got[b]), ratio: r3(got[a] / got[b]), read_gbps: r3(bw) }));
  }
  const mean = (xs) => xs.reduce((s, x) => s + x, 0) / xs.length;
  console.log(JSON.stringify({
    pair: `${a}/${b}`, metric: 'decode tok/s', rounds, p, n, threads, head,
    median_ratio: r3(quant(ratios, 0.5)), q1: r3(quant(ratios, 0.25)), q3: r3(quant(ratios, 0.75)),
    ratio_of_means: r3(mean(tps[a]) / mean(tps[b])), [`${a}_mean`]: r3(mean(tps[a])), [`${b}_mean`]: r3(mean(tps[b])),
    read_gbps: { min: r3(Math.min(...bws)), median: r3(quant(bws, 0.5)), max: r3(Math.max(...bws)) },
  }));
}
for (const m of Object.values(models)) await m.close();
