// bitnet.cpp oracle: test/fixtures/golden holds a bitnet-b1.58 model (I2_S; scripts/test-data.mjs derives the
// same trits as TQ2_0) with bitnet.cpp's logits for a 48-token sequence, all rows from one batch.
import { readFileSync } from 'node:fs';

import { describe, expect, it } from 'vitest';

import { KvCache } from '../lib/model/kv-cache.js';
import { readGguf } from '../lib/format/gguf.js';
import { decodeI2S, decodeTQ2 } from '../lib/format/ternary.js';
import { GGML } from '../lib/format/types.js';
import { TransformerModel } from '../lib/model/transformer.js';
import { configFromGguf } from '../lib/model/config.js';
import { loadWeights } from '../lib/model/weights.js';
import { contextsPerIsa, goldenPath as golden } from './helpers.js';

const meta = JSON.parse(readFileSync(golden('small-b158-i2s-s11.json'), 'utf8')) as { tokens: number[]; n_vocab: number };
const gold = new Float32Array(readFileSync(golden('small-b158-i2s-s11.logits.f32')).buffer.slice(0));

function compare(logits: Float32Array) {
  const V = meta.n_vocab;
  let minCos = 1;
  let considered = 0;
  const disagreements: number[] = [];
  for (let i = 0; i < meta.tokens.length; i++) {
    const a = logits.subarray(i * V, (i + 1) * V);
    const g = gold.subarray(i * V, (i + 1) * V);
    let dot = 0, na = 0, ng = 0, am = 0, gm = 0;
    for (let j = 0; j < V; j++) {
      dot += a[j]! * g[j]!;
      na += a[j]! * a[j]!;
      ng += g[j]! * g[j]!;
      if (a[j]! > a[am]!) am = j;
      if (g[j]! > g[gm]!) gm = j;
    }
    minCos = Math.min(minCos, dot / Math.sqrt(na * ng));
    let second = -Infinity;
    for (let j = 0; j < V; j++) if (j !== gm && g[j]! > second) second = g[j]!;
    if (g[gm]! - second > 0.05) {
      considered++;
      if (am !== gm) disagreements.push(i);
    }
  }
  return { minCos, considered, disagreements };
}

describe('golden models', () => {
  it('the TQ2_0 model holds the I2_S model\'s trits, every block scale equal to its tensor scale, and the rest unchanged', () => {
    const i2s = readGguf(golden('small-b158-i2s-s11.gguf'));
    const tq2 = readGguf(golden('small-b158-tq2-s11.gguf'));
    expect([...tq2.metadata]).toEqual([...i2s.metadata]);
    expect(tq2.tensors.map((t) => [t.name, t.dims])).toEqual(i2s.tensors.map((t) => [t.name, t.dims]));
    const bytes = (f: typeof i2s, t: (typeof i2s.tensors)[number]) => f.bytes.subarray(t.offset, t.offset + t.nbytes);
    let ternary = 0;
    i2s.tensors.forEach((a, i) => {
      const b = tq2.tensors[i]!;
      if (a.type !== GGML.I2_S) {
        expect(b.type, a.name).toBe(a.type);
        expect(Buffer.compare(bytes(tq2, b), bytes(i2s, a)), a.name).toBe(0);
        return;
      }
      ternary++;
      expect(b.type, a.name).toBe(GGML.TQ2_0);
      const [K, M] = a.dims as [number, number];
      const want = decodeI2S(bytes(i2s, a), M, K);
      const got = decodeTQ2(bytes(tq2, b), M, K);
      expect(Buffer.compare(Buffer.from(got.trits.buffer), Buffer.from(want.trits.buffer)), `${a.name} trits`).toBe(0);
      expect(new Set(got.blockScales), `${a.name} block scales`).toEqual(new Set([want.scale]));
    });
    expect(ternary).toBe(4 * 7);
  });
});

describe.each(contextsPerIsa())('bitnet.cpp golden logits on %s', (isa, ctx) => {
  for (const file of ['small-b158-i2s-s11.gguf', 'small-b158-tq2-s11.gguf']) {
    it(`${file}: per-row cosine >= 0.99 and top-1 agrees on every row with margin > 0.05`, () => {
      const f = readGguf(golden(file));
      const cfg = configFromGguf(f);
      expect(cfg.activation).toBe('relu2');
      const model = new TransformerModel(ctx, cfg, loadWeights(ctx, f, cfg));
      const kv = new KvCache(cfg.nLayer, cfg.nHeadKv, cfg.headDim, 64);
      const r = compare(model.forward(meta.tokens, kv, true));
      expect(r.minCos, `${isa} ${file}`).toBeGreaterThanOrEqual(0.99);
      expect(r.considered).toBeGreaterThan(30);
      expect(r.disagreements, `${isa} ${file} rows where top-1 differs`).toEqual([]);
    });
  }

  // q8 K/V is lossy (bitnet.cpp keeps f16), so top-1 may flip on a near-tie row: allow up to 5 %.
  it('a q8 KV cache stays close to the golden logits (per-row cosine >= 0.99, top-1 >= 95 % of clear rows)', () => {
    const f = readGguf(golden('small-b158-i2s-s11.gguf'));
    const cfg = configFromGguf(f);
    const model = new TransformerModel(ctx, cfg, loadWeights(ctx, f, cfg));
    const kv = new KvCache(cfg.nLayer, cfg.nHeadKv, cfg.headDim, 64, 'q8');
    expect(kv.bytes).toBeLessThan(new KvCache(cfg.nLayer, cfg.nHeadKv, cfg.headDim, 64).bytes * 0.54);
    const r = compare(model.forward(meta.tokens, kv, true));
    expect(r.minCos, `${isa} q8 kv`).toBeGreaterThanOrEqual(0.99);
    expect(r.disagreements.length, `${isa} q8 kv rows where top-1 differs: ${r.disagreements.join(', ')}`).toBeLessThanOrEqual(Math.floor(r.considered * 0.05));
  });

  it('token-by-token decoding gives the same logits as one batch (KV cache consistency)', () => {
    const f = readGguf(golden('small-b158-i2s-s11.gguf'));
    const cfg = configFromGguf(f);
    const model = new TransformerModel(ctx, cfg, loadWeights(ctx, f, cfg));
    const kv = new KvCache(cfg.nLayer, cfg.nHeadKv, cfg.headDim, 64);
    const rows: Float32Array[] = [];
    for (const t of meta.tokens.slice(0, 12)) rows.push(model.forward([t], kv));
    const batch = model.forward(meta.tokens.slice(0, 12), new KvCache(cfg.nLayer, cfg.nHeadKv, cfg.headDim, 64), true);
    const V = cfg.nVocab;
    for (let i = 0; i < 12; i++) {
      const b = batch.subarray(i * V, (i + 1) * V);
      let maxDiff = 0;
      for (let j = 0; j < V; j++) maxDiff = Math.max(maxDiff, Math.abs(b[j]! - rows[i]![j]!));
      expect(maxDiff, `row ${i}`).toBeLessThan(1e-3);
    }
  });
});
