// Decode throughput of the batch-first forward (lib/model/state.ts) against the single-sequence forward,
// interleaved round by round in one process (a shared machine drifts between separate runs):
//   single   model.forward(token, KvCache)             one stream, the path the worker uses today
//   batch1   SequencePool.forwardBatch, 1 stream        the same work through the pool
//   batchN   SequencePool.forwardBatch, N streams       one row per stream per step (aggregate tok/s)
// Every stream first prefills --prompt tokens, then decodes; logits of every row are computed.
//   node bench/batch-decode.mjs MODEL.gguf [--threads 2] [--streams 8] [--prompt 64] [--steps 16] [--rounds 3]
import { performance } from 'node:perf_hooks';

import { readGguf } from '../dist/format/gguf.js';
import { KernelContext } from '../dist/kernels/context.js';
import { configFromGguf } from '../dist/model/config.js';
import { KvCache } from '../dist/model/kv-cache.js';
import { SequencePool } from '../dist/model/state.js';
import { TransformerModel } from '../dist/model/transformer.js';
import { loadWeights } from '../dist/model/weights.js';

const file = process.argv[2];
const args = new Map();
for (let i = 3; i < process.argv.length; i += 2) args.set(process.argv[i].replace(/^--/, ''), Number(process.argv[i + 1]));
const threads = args.get('threads') ?? 2;
const N = args.get('streams') ?? 8;
const prompt = args.get('prompt') ?? 64;
const steps = args.get('steps') ?? 16;
const rounds = args.get('rounds') ?? 3;

const ctx = new KernelContext({ threads });
const f = readGguf(file);
const cfg = configFromGguf(f);
const model = new TransformerModel(ctx, cfg, loadWeights(ctx, f, cfg));
const kvType = cfg.row.kv;
const tok = (i) => 1 + ((i * 7919) % (cfg.nVocab - 1));
const ctxLen = prompt + steps + 1;

function single() {
  const kv = new KvCache(cfg.nLayer, cfg.nHeadKv, cfg.headDim, ctxLen, kvType);
  model.forward(Array.from({ length: prompt }, (_, i) => tok(i)), kv, false);
  const t0 = performance.now();
  for (let s = 0; s < steps; s++) model.forward([tok(prompt + s)], kv, false);
  return steps / ((performance.now() - t0) / 1000);
}

function batch(n) {
  const pool = new SequencePool(model, { maxTokens: n * Math.ceil(ctxLen / 16) * 16, contextSize: ctxLen, kvType });
  const ids = Array.from({ length: n }, () => pool.create());
  for (const [j, id] of ids.entries())
    pool.forwardBatch(Array.from({ length: prompt }, (_, i) => ({ token: tok(i + j), seq: id, pos: i, logits: i === prompt - 1 })));
  const t0 = performance.now();
  for (let s = 0; s < steps; s++) pool.forwardBatch(ids.map((id, j) => ({ token: tok(prompt + s + j), seq: id, pos: prompt + s, logits: true })));
  return (n * steps) / ((performance.now() - t0) / 1000);
}

const res = { single: [], batch1: [], [`batch${N}`]: [] };
for (let r = 0; r < rounds; r++) {
  res.single.push(single());
  res.batch1.push(batch(1));
  res[`batch${N}`].push(batch(N));
}
const best = Object.fromEntries(Object.entries(res).map(([k, v]) => [k, Math.round(Math.max(...v) * 10) / 10]));
console.log(JSON.stringify({ model: file, isa: ctx.isa ?? undefined, threads, streams: N, prompt, steps, rounds, tokPerSec: best,
  aggregateOverSingle: Math.round((best[`batch${N}`] / best.single) * 100) / 100 }));
