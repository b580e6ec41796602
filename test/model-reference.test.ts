// The same model on the native kernels and on the pure-TS reference kernels (lib/reference via
// referenceBackend): synthetic models of every architecture × ternary type, 12 tokens as a prefill of
// 8 then 4 single-token decode steps, logits compared row by row.
//
// Bound. Act-quant, the ternary / q8 GEMMs, the embedding lookup and the f16 KV store are bit-exact
// between the backends; only the float ops differ (native float32 with its own summation order vs
// reference float64 rounded once: rmsnorm, RoPE, attention, GLU, the f16 lm_head). Those per-op
// differences are a few ulp, but an ulp-level change in a projection input can move one int8 code
// across a rounding boundary, which changes that GEMM output by ~scale/127 and is then carried
// through the residual stream. The bound is relative to the row's largest logit, in ulps of it:
//   max_j |native_j − ref_j| ≤ 2^-17 · max_j |ref_j|   (≥ 64 ulp of the row's largest logit)
// Measured on every ISA of the dev machine (scalar / avx2 / avx512, logits up to ~195): worst
// max|Δ| 6.0e-5 (small) and 1.1e-5..2.3e-5 (tiny), i.e. at most ~4 ulp, worst ratio 2^-21.4 —
// no int8 code flip occurred; the bound leaves ~20× for one. Cosine and argmax guard every row too.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { afterAll, describe, expect, it } from 'vitest';

import { KvCache } from '../lib/model/kv-cache.js';
import { readGguf } from '../lib/format/gguf.js';
import { KernelContext } from '../lib/kernels/context.js';
import { type ComputeBackend, nativeBackend, referenceBackend } from '../lib/model/backend.js';
import { TransformerModel } from '../lib/model/transformer.js';
import type { SynthArch } from '../lib/model/synth.js';
import { configFromGguf } from '../lib/model/config.js';
import { type SynthShapeName, type SynthType, synthesizeModel } from '../lib/model/synth.js';
import { loadWeights } from '../lib/model/weights.js';
import { scaledMs } from './time-scale.js';
import { eventLoopTurn } from './helpers.js';

/** Per-row max |native − reference| / max |reference| (measured worst 2^-21.4, see top). */
const MAX_REL_DIFF = 2 ** -17;
const MIN_COSINE = 0.9999;

const TOKENS = [1, 450, 4996, 17354, 1701, 432, 17204, 975, 278, 17366, 11203, 29889];
const PREFILL = 8;

interface Case {
  arch: SynthArch;
  type: SynthType;
  shape: SynthShapeName;
  activation?: 'relu2' | 'silu';
  headType?: 'f16' | 'q8' | 'q4';
}

const CASES: Case[] = [];
for (const arch of ['bitnet', 'bitnet-b1.58', 'bitnet-25'] as const)
  for (const type of ['i2_s', 'tq2_0', 'tq1_0'] as const) {
    if (type === 'i2_s' && arch === 'bitnet') continue; // i2_s exists only under bitnet.cpp's archs
    CASES.push({ arch, type, shape: 'tiny' });
    if (arch === 'bitnet') CASES.push({ arch, type, shape: 'tiny', activation: 'relu2' });
  }
CASES.push({ arch: 'bitnet-b1.58', type: 'i2_s', shape: 'small' });
CASES.push({ arch: 'bitnet-b1.58', type: 'tq2_0', shape: 'tiny', headType: 'q8' }); // q8 embedding / lm_head path
CASES.push({ arch: 'bitnet', type: 'tq1_0', shape: 'tiny', headType: 'q4' }); // q4 embedding / lm_head path

const dir = mkdtempSync(join(tmpdir(), 'bitllm-modelref-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const ctx = new KernelContext({ threads: 2 });

/** Logits of TOKENS: a prefill, then one token at a time, with a turn of the event loop after each forward
 * (the TS reference backend takes ~60 s for the small model under qemu: test/helpers.ts eventLoopTurn). */
async function run(model: TransformerModel, capacity: number, kvType: 'f16' | 'q8' = 'f16'): Promise<Float32Array> {
  const cfg = model.cfg;
  const V = cfg.nVocab;
  const kv = new KvCache(cfg.nLayer, cfg.nHeadKv, cfg.headDim, capacity, kvType);
  const out = new Float32Array(TOKENS.length * V);
  out.set(model.forward(TOKENS.slice(0, PREFILL), kv, true), 0);
  for (let i = PREFILL; i < TOKENS.length; i++) {
    await eventLoopTurn();
    out.set(model.forward([TOKENS[i]!], kv), i * V);
  }
  return out;
}

function argmax(a: Float32Array): number {
  let m = 0;
  for (let j = 1; j < a.length; j++) if (a[j]! > a[m]!) m = j;
  return m;
}

describe('native vs TS-reference backend on synthetic models', () => {
  let n = 0;
  for (const c of CASES) {
    const label = `${c.shape} ${c.arch} ${c.type}${c.activation ? ` ${c.activation}` : ''}${c.headType ? ` head ${c.headType}` : ''}`;
    it(label, async () => {
      const out = join(dir, `m${n++}.gguf`);
      await synthesizeModel({ shape: c.shape, type: c.type, arch: c.arch, activation: c.activation, seed: 3, out });
      const f = readGguf(out);
      const cfg = configFromGguf(f);
      if (c.activation) expect(cfg.activation).toBe(c.activation);
      // One load: both backends read the same natively repacked weights.
      const weights = loadWeights(ctx, f, cfg, { headType: c.headType });
      const ref: ComputeBackend = referenceBackend();
      const got = await run(new TransformerModel(ctx, cfg, weights), 16);
      const want = await run(new TransformerModel(ctx, cfg, weights, ref), 16);
      const V = cfg.nVocab;
      let maxDiff = 0;
      let maxRatio = 0;
      let minCos = 1;
      for (let i = 0; i < TOKENS.length; i++) {
        const a = got.subarray(i * V, (i + 1) * V);
        const b = want.subarray(i * V, (i + 1) * V);
        let dot = 0, na = 0, nb = 0, rowDiff = 0, rowMax = 0;
        for (let j = 0; j < V; j++) {
          dot += a[j]! * b[j]!;
          na += a[j]! * a[j]!;
          nb += b[j]! * b[j]!;
          rowDiff = Math.max(rowDiff, Math.abs(a[j]! - b[j]!));
          rowMax = Math.max(rowMax, Math.abs(b[j]!));
        }
        const cos = dot / Math.sqrt(na * nb);
        minCos = Math.min(minCos, cos);
        maxDiff = Math.max(maxDiff, rowDiff);
        maxRatio = Math.max(maxRatio, rowDiff / rowMax);
        expect(cos, `${label} row ${i} cosine`).toBeGreaterThanOrEqual(MIN_COSINE);
        expect(rowDiff, `${label} row ${i} max |Δ|`).toBeLessThanOrEqual(MAX_REL_DIFF * rowMax);
        expect(argmax(a), `${label} row ${i} argmax`).toBe(argmax(b));
      }
      if (process.env.BITLLM_REPORT_DEVIATION) console.log(`${label}: max|Δ| ${maxDiff.toExponential(3)}, max ratio 2^${Math.log2(maxRatio).toFixed(2)}, min cosine ${minCos}`);
    }, scaledMs(30_000));
  }
});

// The one-call native forward (native/runtime/bitnet_exec.cpp) against the same kernels driven op by op
// from TS (nativeBackend): same kernels on the same rows, so the logits must be bit-identical.
describe('one-call native forward vs op-by-op native kernels', () => {
  const cases: Case[] = [
    { arch: 'bitnet-b1.58', type: 'i2_s', shape: 'small' },
    { arch: 'bitnet', type: 'tq2_0', shape: 'tiny' },
    { arch: 'bitnet', type: 'tq1_0', shape: 'tiny', activation: 'relu2' },
    { arch: 'bitnet-25', type: 'tq2_0', shape: 'tiny', headType: 'q8' },
    { arch: 'bitnet-b1.58', type: 'i2_s', shape: 'tiny', headType: 'q4' },
  ];
  let n = 0;
  for (const c of cases)
    for (const kvType of ['f16', 'q8'] as const) {
      const label = `${c.shape} ${c.arch} ${c.type}${c.activation ? ` ${c.activation}` : ''}${c.headType ? ` head ${c.headType}` : ''} kv ${kvType}`;
      it(label, async () => {
        const out = join(dir, `b${n++}.gguf`);
        await synthesizeModel({ shape: c.shape, type: c.type, arch: c.arch, activation: c.activation, seed: 5, out });
        const f = readGguf(out);
        const cfg = configFromGguf(f);
        const weights = loadWeights(ctx, f, cfg, { headType: c.headType });
        const fused = new TransformerModel(ctx, cfg, weights);
        expect(fused.native).not.toBeNull();
        const got = await run(fused, 16, kvType);
        const want = await run(new TransformerModel(ctx, cfg, weights, nativeBackend(ctx)), 16, kvType);
        let firstDiff = -1;
        for (let j = 0; j < got.length && firstDiff < 0; j++) if (!Object.is(got[j], want[j])) firstDiff = j;
        expect(firstDiff, `${label}: first differing logit index`).toBe(-1);
      }, scaledMs(30_000));
    }

  // TD3 holds the same trits and scales as T2R16 and its kernels are bit-exact with T2R16's, so a model
  // loaded in either layout gives identical logits - through the one-call forward and op by op.
  for (const [type, arch] of [['tq1_0', 'bitnet'], ['i2_s', 'bitnet-b1.58'], ['tq2_0', 'bitnet-25']] as const)
    it(`${type} ${arch}: the TD3 layout gives the T2R16 logits bit for bit (prefill + decode, both paths)`, async () => {
      const out = join(dir, `td3-${type}.gguf`);
      await synthesizeModel({ shape: 'small', type, arch, seed: 9, out });
      const f = readGguf(out);
      const cfg = configFromGguf(f);
      const t2 = loadWeights(ctx, f, cfg, { layout: 't2r16' });
      const td3 = loadWeights(ctx, f, cfg, { layout: 'td3' });
      expect(t2.layout).toBe('t2r16');
      expect(td3.layout).toBe('td3');
      expect(td3.bytesPerToken).toBeLessThan(t2.bytesPerToken);
      const want = await run(new TransformerModel(ctx, cfg, t2), 16);
      for (const got of [await run(new TransformerModel(ctx, cfg, td3), 16), await run(new TransformerModel(ctx, cfg, td3, nativeBackend(ctx)), 16)]) {
        let firstDiff = -1;
        for (let j = 0; j < got.length && firstDiff < 0; j++) if (!Object.is(got[j], want[j])) firstDiff = j;
        expect(firstDiff).toBe(-1);
      }
    }, scaledMs(60_000));

  // Weight memory: every layer matrix is a slice of one huge-page-advised block and an F16 head is copied
  // out of the file mapping; with BITLLM_HUGE_PAGES=0 both stay as before. Same bytes, same logits.
  for (const layout of ['td3', 't2r16'] as const)
    it(`${layout}: layer matrices share one arena block, the F16 head leaves the file mapping; BITLLM_HUGE_PAGES=0 gives the same logits`, async () => {
      const out = join(dir, `arena-${layout}.gguf`);
      await synthesizeModel({ shape: 'tiny', type: 'tq2_0', arch: 'bitnet', seed: 3, out });
      const f = readGguf(out);
      const cfg = configFromGguf(f);
      const saved = process.env.BITLLM_HUGE_PAGES;
      let plain;
      try {
        process.env.BITLLM_HUGE_PAGES = '0';
        plain = loadWeights(ctx, f, cfg, { layout });
      } finally {
        if (saved === undefined) delete process.env.BITLLM_HUGE_PAGES;
        else process.env.BITLLM_HUGE_PAGES = saved;
      }
      const w = loadWeights(ctx, f, cfg, { layout });
      const bytes = (g: (typeof w.layers)[0]['wqkv']) => {
        expect(g.length).toBe(1); // b1.58 fuses q|k|v and gate|up
        const lw = g[0]!.w;
        return lw.kind === 'td3' ? lw.m.data : lw.kind === 't2r16' ? lw.m.codes : new Uint8Array(0);
      };
      const block = bytes(w.layers[0]!.wqkv).buffer;
      const slices = w.layers.flatMap((l) => [l.wqkv, l.wo, l.wgu, l.wdown].map(bytes));
      expect(slices.every((s) => s.buffer === block && s.byteOffset % 64 === 0)).toBe(true);
      expect(block.byteLength).toBe(slices.reduce((a, s) => a + Math.ceil(s.byteLength / 64) * 64, 0));
      // The tied F16 head runs as F16T32 tiles (copied out of the mapping either way), and embeds from them.
      expect(w.output.kind).toBe('f16t');
      expect(w.tokEmbd).toBe(w.output);
      expect(w.output.m.data.buffer).not.toBe(f.bytes.buffer);
      expect(plain.output.m.data.buffer).not.toBe(f.bytes.buffer);
      const same = (a: ArrayBufferView, b: ArrayBufferView) =>
        Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(Buffer.from(b.buffer, b.byteOffset, b.byteLength));
      expect(same(w.output.m.data, plain.output.m.data)).toBe(true);
      expect(w.layers.every((l, i) => same(bytes(l.wgu), bytes(plain.layers[i]!.wgu)))).toBe(true);
      const got = await run(new TransformerModel(ctx, cfg, w), 12);
      const want = await run(new TransformerModel(ctx, cfg, plain), 12);
      expect(same(got, want)).toBe(true);
    }, scaledMs(60_000));

  it('the TS reference backend runs TD3 weights too (same logits as on T2R16 weights)', async () => {
    const out = join(dir, 'td3-ref.gguf');
    await synthesizeModel({ shape: 'tiny', type: 'tq2_0', arch: 'bitnet', seed: 4, out });
    const f = readGguf(out);
    const cfg = configFromGguf(f);
    const a = await run(new TransformerModel(ctx, cfg, loadWeights(ctx, f, cfg, { layout: 't2r16' }), referenceBackend()), 16);
    const b = await run(new TransformerModel(ctx, cfg, loadWeights(ctx, f, cfg, { layout: 'td3' }), referenceBackend()), 16);
    expect(Array.from(b)).toEqual(Array.from(a));
  }, scaledMs(60_000));

  it('rejects bad tokens and a full cache with typed errors, leaving the cache as it was', async () => {
    const out = join(dir, 'bad.gguf');
    await synthesizeModel({ shape: 'tiny', type: 'tq2_0', arch: 'bitnet', seed: 1, out });
    const f = readGguf(out);
    const cfg = configFromGguf(f);
    const model = new TransformerModel(ctx, cfg, loadWeights(ctx, f, cfg));
    const kv = new KvCache(cfg.nLayer, cfg.nHeadKv, cfg.headDim, 4);
    expect(() => model.forward([1, cfg.nVocab], kv)).toThrow(/outside the vocabulary/);
    expect(() => model.forward([1, -1], kv)).toThrow(/outside the vocabulary/);
    expect(() => model.forward([1, 2.5], kv)).toThrow(/outside the vocabulary/);
    expect(kv.length).toBe(0);
    model.forward([1, 2, 3], kv);
    expect(() => model.forward([4, 5], kv)).toThrow(/context full/);
    expect(kv.length).toBe(3);
    model.forward([4], kv);
    expect(kv.length).toBe(4);
  });
});
