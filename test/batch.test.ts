// The batch-first forward over the sequence-state pool (lib/model/state.ts, native/runtime/kv_pool.h,
// ModelExec::forward_batch): batch invariance over the whole forward for every bundled family model
// (a sequence's logits are bit-identical alone, one token at a time, on one thread, or inside mixed
// batches of prefill chunks and decode rows at any index on two threads), paged vs flat (the flat
// one-sequence forward gives the same bits), and the TS reference's batch contract as the oracle.
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

import { afterEach, describe, expect, it } from 'vitest';

import { readGguf } from '../lib/format/gguf.js';
import { KernelContext, cpuInfo } from '../lib/kernels/context.js';
import { referenceBackend } from '../lib/model/backend.js';
import { type ModelConfig, configFromGguf } from '../lib/model/config.js';
import { KvCache } from '../lib/model/kv-cache.js';
import { type BatchRow, SequencePool } from '../lib/model/state.js';
import { TransformerModel } from '../lib/model/transformer.js';
import { type ModelWeights, loadWeights } from '../lib/model/weights.js';
import { BUNDLED_FAMILY_MODELS, type FamilyModel, MAX_REL_DIFF_Q8, eventLoopTurn, neonFloatOrder } from './helpers.js';
import { scaledMs } from './time-scale.js';

const MODELS = join(fileURLToPath(new URL('..', import.meta.url)), 'models');
const ctx2 = new KernelContext({ threads: 2 });
const ctx1 = new KernelContext({ threads: 1 });

/** Per-row max |native − reference| / max |reference| (test/families.test.ts's bound for these models). */
const MAX_REL_DIFF = 2 ** -12;
/** On NEON the reference comparison takes the q8 bound (test/helpers.ts neonFloatOrder says why). */
const NEON_ORDER = neonFloatOrder(ctx2);

// Every test here is one long synchronous native computation (~12 s each under qemu), and vitest moves
// from test to test through promise continuations only, so the worker's event loop never ran during the
// file: the replies to its RPC calls waited, and its 60 s RPC timer fired ("Timeout calling onTaskUpdate",
// scripts/test-arm64.sh). One turn of the event loop after each test lets the replies in.
afterEach(eventLoopTurn);

/** Every bundled family, and the b1.58 model in TQ2_0 too. */
const BUNDLED: FamilyModel[] = [...BUNDLED_FAMILY_MODELS, { file: 'tiny-b158-tq2_0.gguf', opts: {} }];

/** Three prompts; C is longer than a block (16 positions) so its table spans blocks. */
const PROMPTS: number[][] = [
  [1, 450, 496, 1735, 170, 432, 1720, 975, 278],
  [1, 29, 3000, 17],
  [1, 1736, 1120, 2988, 40, 41, 42, 43, 44, 45, 46, 47, 48, 49, 50, 51, 52, 53, 54, 55, 56],
];

interface Loaded {
  cfg: ModelConfig;
  w: ModelWeights;
}
const cache = new Map<string, Loaded>();
function load(m: FamilyModel, headType: 'f16' | 'q8'): Loaded {
  const key = `${m.file}|${JSON.stringify(m.opts)}|${headType}`;
  let l = cache.get(key);
  if (!l) {
    const f = readGguf(join(MODELS, m.file));
    const cfg = configFromGguf(f);
    l = { cfg, w: loadWeights(ctx2, f, cfg, { ...m.opts, headType }) };
    cache.set(key, l);
  }
  return l;
}

const bits = (a: Float32Array) => Buffer.from(a.buffer, a.byteOffset, a.byteLength);

/** Every prompt alone, one token per call, logits of every position: [prompt][pos] -> logits. */
function alone(model: TransformerModel, kvType: 'f16' | 'q8' | 'q3'): Float32Array[][] {
  const pool = new SequencePool(model, { maxTokens: 4096, contextSize: 64, kvType });
  return PROMPTS.map((p) => {
    const s = pool.create();
    return p.map((token, pos) => pool.forwardBatch([{ token, seq: s, pos, logits: true }]));
  });
}

/**
 * The prompts interleaved: step 1 mixes prefill chunks of all three (rows shuffled between sequences),
 * later steps mix decode rows with the rest of the prefills, sequences at varying row indices.
 */
function batched(model: TransformerModel, kvType: 'f16' | 'q8' | 'q3'): Float32Array[][] {
  const pool = new SequencePool(model, { maxTokens: 4096, contextSize: 64, kvType });
  const ids = PROMPTS.map(() => pool.create());
  const next = PROMPTS.map(() => 0);
  const out: Float32Array[][] = PROMPTS.map(() => []);
  const plan = [
    [[2, 5], [0, 3], [1, 1], [0, 2], [2, 1]], // (prompt, rows) chunks in row order
    [[1, 1], [2, 6], [0, 1]],
    [[0, 1], [1, 1], [2, 1]],
    [[2, 8], [0, 2]],
    [[1, 1], [0, 1], [2, 1]],
  ];
  for (const step of plan) {
    const rows: BatchRow[] = [];
    const who: number[] = [];
    for (const [p, n] of step) {
      for (let i = 0; i < n! && next[p!]! < PROMPTS[p!]!.length; i++) {
        rows.push({ token: PROMPTS[p!]![next[p!]!]!, seq: ids[p!]!, pos: next[p!]!, logits: true });
        who.push(p!);
        next[p!]!++;
      }
    }
    if (!rows.length) continue;
    const logits = pool.forwardBatch(rows);
    const V = model.cfg.nVocab;
    who.forEach((p, i) => out[p]!.push(logits.slice(i * V, (i + 1) * V)));
  }
  // Whatever the plan left: one more mixed step.
  const rest: BatchRow[] = [];
  const who: number[] = [];
  PROMPTS.forEach((pr, p) => {
    for (; next[p]! < pr.length; next[p]!++) {
      rest.push({ token: pr[next[p]!]!, seq: ids[p]!, pos: next[p]!, logits: true });
      who.push(p);
    }
  });
  if (rest.length) {
    const logits = pool.forwardBatch(rest);
    const V = model.cfg.nVocab;
    who.forEach((p, i) => out[p]!.push(logits.slice(i * V, (i + 1) * V)));
  }
  return out;
}

function expectClose(got: Float32Array, want: Float32Array, what: string, bound = MAX_REL_DIFF): void {
  let maxAbs = 0;
  let maxDiff = 0;
  for (let j = 0; j < want.length; j++) {
    maxAbs = Math.max(maxAbs, Math.abs(want[j]!));
    maxDiff = Math.max(maxDiff, Math.abs(got[j]! - want[j]!));
  }
  expect(maxDiff, what).toBeLessThanOrEqual(bound * maxAbs);
}

describe('batch invariance over the whole forward (bundled family models)', () => {
  for (const m of BUNDLED)
    for (const headType of ['f16', 'q8'] as const) {
      const name = `${m.file}${m.opts.actQuant ? ` actQuant=${m.opts.actQuant}` : ''} head=${headType}`;
      it(`${name}: alone (1 thread, 1 token per call) = mixed batches (2 threads) = flat forward, bit for bit; reference within bounds`, () => {
        const { cfg, w } = load(m, headType);
        const kvType = cfg.row.kv;
        const solo = alone(new TransformerModel(ctx1, cfg, w), kvType);
        const mixed = batched(new TransformerModel(ctx2, cfg, w), kvType);
        const V = cfg.nVocab;
        PROMPTS.forEach((p, s) => {
          expect(mixed[s]!.length).toBe(p.length);
          for (let i = 0; i < p.length; i++)
            expect(bits(mixed[s]![i]!).equals(bits(solo[s]![i]!)), `${name} prompt ${s} pos ${i}: batched != alone`).toBe(true);
          // The flat single-sequence forward (one prefill, all logits) on the same rows.
          const flat = new TransformerModel(ctx2, cfg, w).forward(p, new KvCache(cfg.nLayer, cfg.nHeadKv, cfg.headDim, 64, kvType), true);
          for (let i = 0; i < p.length; i++)
            expect(bits(flat.subarray(i * V, (i + 1) * V)).equals(bits(solo[s]![i]!)), `${name} prompt ${s} pos ${i}: flat != paged`).toBe(true);
        });
        // The TS reference's batch contract on the same plan (the oracle).
        const refModel = new TransformerModel(ctx2, cfg, w, referenceBackend());
        const ref = batched(refModel, kvType);
        const bound = headType === 'q8' || NEON_ORDER ? MAX_REL_DIFF_Q8 : MAX_REL_DIFF;
        PROMPTS.forEach((p, s) => {
          for (let i = 0; i < p.length; i++) expectClose(mixed[s]![i]!, ref[s]![i]!, `${name} prompt ${s} pos ${i} vs reference`, bound);
          // The reference keeps the contract too: its batched rows = its flat forward, bit for bit.
          const flat = refModel.forward(p, new KvCache(cfg.nLayer, cfg.nHeadKv, cfg.headDim, 64, kvType), true);
          for (let i = 0; i < p.length; i++)
            expect(bits(flat.subarray(i * V, (i + 1) * V)).equals(bits(ref[s]![i]!)), `${name} prompt ${s} pos ${i}: reference batched != flat`).toBe(true);
        });
      }, scaledMs(120_000));
    }

  it('holds for a q8 KV cache too (tiny-b158-tq2_0)', () => {
    const { cfg, w } = load(BUNDLED[1]!, 'f16');
    const solo = alone(new TransformerModel(ctx1, cfg, w), 'q8');
    const mixed = batched(new TransformerModel(ctx2, cfg, w), 'q8');
    PROMPTS.forEach((p, s) => {
      for (let i = 0; i < p.length; i++) expect(bits(mixed[s]![i]!).equals(bits(solo[s]![i]!)), `q8 prompt ${s} pos ${i}`).toBe(true);
    });
    const ref = batched(new TransformerModel(ctx2, cfg, w, referenceBackend()), 'q8');
    PROMPTS.forEach((p, s) => {
      for (let i = 0; i < p.length; i++) expectClose(mixed[s]![i]!, ref[s]![i]!, `q8 prompt ${s} pos ${i} vs reference`, MAX_REL_DIFF_Q8);
    });
  }, scaledMs(120_000));

  it('rows that want no logits cost no head and leave the others in row order', () => {
    const { cfg, w } = load(BUNDLED[0]!, 'f16');
    const model = new TransformerModel(ctx2, cfg, w);
    const pool = new SequencePool(model, { maxTokens: 256, contextSize: 64 });
    const a = pool.create();
    const b = pool.create();
    const all = pool.forwardBatch([
      { token: 5, seq: a, pos: 0, logits: true }, { token: 6, seq: b, pos: 0, logits: true }, { token: 7, seq: a, pos: 1, logits: true },
    ]);
    const pool2 = new SequencePool(model, { maxTokens: 256, contextSize: 64 });
    const a2 = pool2.create();
    const b2 = pool2.create();
    const some = pool2.forwardBatch([{ token: 5, seq: a2, pos: 0 }, { token: 6, seq: b2, pos: 0 }, { token: 7, seq: a2, pos: 1, logits: true }]);
    const V = cfg.nVocab;
    expect(some.length).toBe(V);
    expect(bits(some).equals(bits(all.subarray(2 * V, 3 * V)))).toBe(true);
    const none = pool2.forwardBatch([{ token: 8, seq: b2, pos: 1 }]);
    expect(none.length).toBe(0);
    expect(pool2.length(b2)).toBe(2);
  });
});

describe.each(cpuInfo().supportedIsas)('batch invariance on %s', (isa) => {
  const one = new KernelContext({ isa, threads: 1 });
  const two = new KernelContext({ isa, threads: 2 });
  // f16 head and f16 dense linears (FP16 teacher), the binary LUT float path (OneBit), the q3 cache (a4.8).
  for (const file of ['tiny-fp16-f16.gguf', 'tiny-onebit-q1_0.gguf', 'tiny-a48-tq2_0.gguf'])
    it(`${file}: alone on 1 thread = mixed batches on 2 threads, bit for bit`, () => {
      const f = readGguf(join(MODELS, file));
      const cfg = configFromGguf(f);
      const w = loadWeights(two, f, cfg);
      const solo = alone(new TransformerModel(one, cfg, w), cfg.row.kv);
      const mixed = batched(new TransformerModel(two, cfg, w), cfg.row.kv);
      PROMPTS.forEach((p, s) => {
        for (let i = 0; i < p.length; i++) expect(bits(mixed[s]![i]!).equals(bits(solo[s]![i]!)), `${isa} ${file} prompt ${s} pos ${i}`).toBe(true);
      });
    }, scaledMs(60_000));
});
