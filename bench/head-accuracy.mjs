#!/usr/bin/env node
// What a smaller lm_head / embedding costs in logits: the same model loaded with --head f16 (the file's),
// q8 and q4, teacher-forced over the same tokens; per position top-1 agreement with f16, KL(f16 ‖ other)
// in nats, and the largest |Δlogit| relative to the row's logit range. Prints one JSON line per head type.
//   node bench/head-accuracy.mjs MODEL [--tokens 128] [--heads q8,q4] [--seed 1]
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');
const imp = (p) => import(join(ROOT, 'dist', p));
const { readGguf } = await imp('format/gguf.js');
const { configFromGguf } = await imp('model/config.js');
const { loadWeights } = await imp('model/weights.js');
const { KernelContext } = await imp('kernels/context.js');
const { TransformerModel } = await imp('model/transformer.js');
const { KvCache } = await imp('engine/kv-cache.js');

const argv = process.argv.slice(2);
const val = (k, d) => (argv.includes(k) ? argv[argv.indexOf(k) + 1] : d);
const file = argv[0];
const N = Number(val('--tokens', '128'));
const heads = val('--heads', 'q8').split(',');
let s = Number(val('--seed', '1')) >>> 0;
const rand = () => ((s = (Math.imul(s ^ (s >>> 15), 0x2c1b3c6d) + 0x6d2b79f5) >>> 0) / 2 ** 32);

const ctx = new KernelContext({ threads: 2 });
const f = readGguf(file);
const cfg = configFromGguf(f);
const V = cfg.nVocab;
const tokens = [1, ...Array.from({ length: N - 1 }, () => 3 + Math.floor(rand() * (V / 2 - 3)))];

function logits(headType) {
  const m = new TransformerModel(ctx, cfg, loadWeights(ctx, f, cfg, { headType }));
  const out = new Float32Array(N * V);
  const kv = new KvCache(cfg.nLayer, cfg.nHeadKv, cfg.headDim, N);
  for (let p = 0; p < N; p += 64) out.set(m.forward(tokens.slice(p, p + 64), kv, true), p * V);
  return out;
}

const ref = logits('f16');
for (const head of heads) {
  const got = logits(head);
  let agree = 0, kl = 0, maxRel = 0;
  for (let i = 0; i < N; i++) {
    const a = ref.subarray(i * V, (i + 1) * V), b = got.subarray(i * V, (i + 1) * V);
    let am = 0, bm = 0, amax = -Infinity, bmax = -Infinity, amin = Infinity, d = 0;
    for (let j = 0; j < V; j++) {
      if (a[j] > amax) (amax = a[j]), (am = j);
      if (b[j] > bmax) (bmax = b[j]), (bm = j);
      amin = Math.min(amin, a[j]);
      d = Math.max(d, Math.abs(a[j] - b[j]));
    }
    if (am === bm) agree++;
    let za = 0, zb = 0;
    for (let j = 0; j < V; j++) (za += Math.exp(a[j] - amax)), (zb += Math.exp(b[j] - bmax));
    const la = Math.log(za), lb = Math.log(zb);
    for (let j = 0; j < V; j++) {
      const lpa = a[j] - amax - la, lpb = b[j] - bmax - lb;
      kl += Math.exp(lpa) * (lpa - lpb);
    }
    maxRel = Math.max(maxRel, d / (amax - amin));
  }
  console.log(JSON.stringify({ model: file, head, tokens: N, top1_agreement: +(agree / N).toFixed(4), mean_kl_nats: +(kl / N).toExponential(3), max_dlogit_over_range: +maxRel.toExponential(3) }));
}
