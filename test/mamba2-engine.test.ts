// The Mamba-2 block kind in the engine (issue 13): loadModel → worker → step scheduler → Mamba2StatePool →
// Mamba2Exec, for Bi-Mamba (FBI in/out projections) and the FP Mamba-2 teacher (dense F16), checked against
// the float64 whole-model reference (lib/model/mamba2.ts); batch invariance under load; the recurrent state's
// reuse rules (a prefix is reused only whole; a held sequence cut back recomputes); the pool's contract.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { type Model, loadModel } from '../lib/api.js';
import { alignedChunk } from '../lib/engine/scheduler.js';
import type { GenerateChunk, GenerationResult } from '../lib/engine/generate.js';
import { KernelContext } from '../lib/kernels/context.js';
import { KvPoolFullError, ModelFormatError, SequenceError } from '../lib/errors.js';
import { GgufType, GgufWriter, parseGguf, readGguf } from '../lib/format/gguf.js';
import { loadMamba2Weights, mamba2ConfigFromGguf, mamba2ModelState, mamba2ReferenceForward, synthMamba2Gguf } from '../lib/model/mamba2.js';
import { Mamba2Exec } from '../lib/model/mamba2-exec.js';
import { Mamba2StatePool } from '../lib/model/mamba2-pool.js';
import { ContextOverflowError } from '../lib/model/kv-cache.js';
import { loadNative } from '../lib/native.js';
import { rng } from './helpers.js';
import { ModelEngine, createServer } from '../lib/server/index.js';
import { post } from './server-helpers.js';

const VOCAB = readGguf(new URL('../models/tiny-b158-i2_s.gguf', import.meta.url).pathname);
const SHAPE = { dModel: 128, nLayer: 2, dInner: 256, dState: 16, nHeads: 4, nGroups: 2, nVocab: 4096 };

type Variant = 'bi-mamba' | 'mamba2' | 'bi-mamba-hybrid';

function synth(variant: Variant | boolean, seed: number): Uint8Array {
  const v = variant === true ? 'mamba2' : variant === false ? 'bi-mamba' : variant;
  return synthMamba2Gguf({
    ...SHAPE, seed, dense: v === 'mamba2',
    // The hybrid: attention (2 heads sharing 1 KV head) in layers 1 and 3 of 4.
    ...(v === 'bi-mamba-hybrid' && { nLayer: 4, hybrid: { attnLayers: [1, 3], nHead: 2, nHeadKv: 1 } }),
    metadata: (w) => {
      for (const [k, e] of VOCAB.metadata) if (k.startsWith('tokenizer.ggml.')) w.set(k, e.type, e.value, e.itemType);
    },
  });
}

async function collect(gen: AsyncGenerator<GenerateChunk, GenerationResult, undefined>) {
  const chunks: GenerateChunk[] = [];
  let r = await gen.next();
  for (; !r.done; r = await gen.next()) chunks.push(r.value);
  return { tokens: chunks.map((c) => c.token), result: r.value };
}

function ids(seed: number, n: number): number[] {
  const r = rng(seed);
  return [1, ...Array.from({ length: n - 1 }, () => 3 + Math.floor(r() * 4000))];
}

async function logitsOf(model: Model, tokens: number[]): Promise<Float32Array> {
  const V = model.info.hparams.nVocab;
  const all = new Float32Array(tokens.length * V);
  for await (const c of model.evaluate(tokens)) all.set(c.logits, c.start * V);
  return all;
}

/** max |a - b| over max |b|: the engine (float32) against the float64 reference. */
function relErr(a: Float32Array, b: Float64Array): number {
  let d = 0;
  let m = 0;
  for (let i = 0; i < b.length; i++) {
    d = Math.max(d, Math.abs(a[i]! - b[i]!));
    m = Math.max(m, Math.abs(b[i]!));
  }
  return d / m;
}

const dir = mkdtempSync(join(tmpdir(), 'bitllm-mamba2-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe.each([['bi-mamba', 3], ['mamba2', 5], ['bi-mamba-hybrid', 9]] as const)('the %s model in the engine', (arch, seed) => {
  const bytes = synth(arch, seed);
  const path = join(dir, `${arch}.gguf`);
  let model: Model;
  beforeAll(async () => {
    writeFileSync(path, bytes);
    model = await loadModel(path, { threads: 2, contextSize: 512, sequences: 4 });
  });
  afterAll(() => model?.close());

  it('loads as its block kind, and evaluate() gives the float64 reference logits (prefill chunks of 128 and a tail)', async () => {
    expect(model.info.arch).toBe(arch);
    expect(model.info.block).toBe('mamba2');
    expect(model.info.linears).toEqual([arch === 'mamba2' ? 'f16' : 'b1l64']);
    const file = parseGguf(bytes, arch);
    const cfg = mamba2ConfigFromGguf(file);
    // A sequence's state: conv rows + SSM state per Mamba-2 layer, a hybrid's f16 K and V for the context per attention layer.
    const nAttn = cfg.layerKinds.filter((k) => k === 'attention').length;
    expect(nAttn).toBe(arch === 'bi-mamba-hybrid' ? 2 : 0);
    expect(model.info.kvBytes).toBe((cfg.nLayer - nAttn) * 4 * (3 * (cfg.dInner + 2 * cfg.nGroups * cfg.dState) + cfg.dInner * cfg.dState)
      + nAttn * 2 * 2 * 512 * (cfg.attn?.nHeadKv ?? 0) * (cfg.attn?.headDim ?? 0));
    const tokens = ids(11, 150); // chunks 0..127 (scan), 128..149 (recurrence)
    const ref = mamba2ReferenceForward(cfg, loadMamba2Weights(file, cfg), tokens, mamba2ModelState(cfg));
    expect(relErr(await logitsOf(model, tokens), ref)).toBeLessThan(2e-5);
  });

  it('profile: true gives the native forward\'s per-op ms per token; the parts add up to the wall time', async () => {
    const r = await collect(model.generate(ids(19, 40), { maxTokens: 5, temperature: 0, profile: true }));
    const prof = r.result.stats.profile!;
    expect(prof.decode!.tokens).toBe(4);
    for (const p of [prof.prefill!, prof.decode!]) {
      for (const op of ['in_proj', 'conv', 'scan', 'gated_norm', 'out_proj', 'head']) expect(p.ops[op], op).toBeGreaterThan(0);
      if (arch === 'bi-mamba-hybrid') expect(p.ops['attention']).toBeGreaterThan(0);
      else expect(p.ops['attention']).toBe(0);
      const parts = Object.values(p.ops).reduce((a, b) => a + b, 0) + Object.values(p.overhead).reduce((a, b) => a + b, 0);
      expect(Math.abs(parts - p.wallMsPerToken) / p.wallMsPerToken).toBeLessThan(0.02);
    }
    const plain = await collect(model.generate(ids(19, 40), { maxTokens: 5, temperature: 0 }));
    expect(plain.result.stats.profile).toBeUndefined();
    expect(plain.tokens).toEqual(r.tokens);
  });

  it('headType q8 / q4: the embedding and head quantized (int8 activations into the head), logits near the F16 ones', async () => {
    const tokens = ids(12, 40);
    const exact = await logitsOf(model, tokens);
    let maxAbs = 0;
    for (const v of exact) maxAbs = Math.max(maxAbs, Math.abs(v));
    for (const [headType, tol] of [['q8', 0.02], ['q4', 0.15]] as const) {
      const q = await loadModel(path, { threads: 2, contextSize: 512, headType });
      try {
        expect(q.info.weightBytes).toBeLessThan(model.info.weightBytes);
        const got = await logitsOf(q, tokens);
        let d = 0;
        for (let i = 0; i < got.length; i++) d = Math.max(d, Math.abs(got[i]! - exact[i]!));
        expect(d / maxAbs, headType).toBeLessThan(tol);
        expect(d, headType).toBeGreaterThan(0); // it is another head, not the F16 one
      } finally {
        await q.close();
      }
    }
  });

  it('a sequence gets the same tokens and logits alone and among other sequences (batch invariance)', async () => {
    const prompts = [ids(21, 90), ids(22, 7), ids(23, 140), ids(24, 33)];
    const solo = [];
    for (const p of prompts) solo.push((await collect(model.generate(p, { maxTokens: 10, temperature: 0.9, seed: 4 }))).tokens);
    const together = await Promise.all(prompts.map((p) => collect(model.generate(p, { maxTokens: 10, temperature: 0.9, seed: 4 }))));
    expect(together.map((r) => r.tokens)).toEqual(solo);
    // Evaluate while generations run: bit-identical logits.
    const probe = ids(25, 100);
    const alone = await logitsOf(model, probe);
    const busy = prompts.map((p) => collect(model.generate(p, { maxTokens: 24, temperature: 0 })));
    const loaded = await logitsOf(model, probe);
    await Promise.all(busy);
    expect(Buffer.from(loaded.buffer).equals(Buffer.from(alone.buffer))).toBe(true);
  });

  it('a prefix is reused only when it is all a sequence holds; a held sequence cut back recomputes', async () => {
    const p = ids(31, 40);
    const first = await collect(model.generate(p, { maxTokens: 6, temperature: 0 }));
    // The parked state holds p + 5 fed tokens: a prompt that extends all of it reuses it ...
    const cont = [...p, ...first.tokens, ...ids(32, 9).slice(1)];
    const second = await collect(model.generate(cont, { maxTokens: 3, temperature: 0 }));
    expect(second.result.stats.reusedTokens).toBe(p.length + 5);
    // ... and gives the logits of a fresh run within the float bound (the scan's chunks start elsewhere).
    const file = parseGguf(bytes, arch);
    const cfg = mamba2ConfigFromGguf(file);
    const ref = mamba2ReferenceForward(cfg, loadMamba2Weights(file, cfg), cont, mamba2ModelState(cfg));
    const refLast = ref.subarray((cont.length - 1) * cfg.nVocab);
    let best = 0;
    for (let v = 1; v < cfg.nVocab; v++) if (refLast[v]! > refLast[best]!) best = v;
    expect(second.tokens[0]).toBe(best);
    // A prompt sharing only part of a held state cannot cut it back: nothing is reused.
    const partial = [...p.slice(0, 20), ...ids(33, 10).slice(1)];
    const third = await collect(model.generate(partial, { maxTokens: 2, temperature: 0 }));
    expect(third.result.stats.reusedTokens).toBe(0);
    // A held sequence: continuing reuses all of it; truncate() to a shorter length recomputes from the start and
    // gives exactly what a fresh sequence of the same tokens gives.
    const ctx = model.createContext({ sequences: 2 });
    const [s, fresh] = [ctx.getSequence(), ctx.getSequence()];
    await collect(s.generate(ids(34, 70), { maxTokens: 4, temperature: 0 }));
    const more = await collect(s.generate(ids(35, 6).slice(1), { maxTokens: 4, temperature: 0 }));
    expect(more.result.stats.reusedTokens).toBe(73);
    s.truncate(50);
    const cut = await collect(s.generate(ids(36, 5).slice(1), { maxTokens: 5, temperature: 0 }));
    expect(cut.result.stats.reusedTokens).toBe(0);
    const again = await collect(fresh.generate([...ids(34, 70).slice(0, 50), ...ids(36, 5).slice(1)], { maxTokens: 5, temperature: 0 }));
    expect(cut.tokens).toEqual(again.tokens);
    ctx.dispose();
  });
});

describe('bitllm serve on a Mamba-2 model', () => {
  it('serves concurrent completions and n > 1 choices with the tokens a lone request gets', async () => {
    const path = join(dir, 'serve-bi-mamba.gguf');
    writeFileSync(path, synth('bi-mamba', 3));
    const model = await loadModel(path, { threads: 2, contextSize: 256, sequences: 4 });
    const server = createServer({ engine: new ModelEngine(model) });
    try {
      const base = `http://127.0.0.1:${(await server.listen(0)).port}`;
      const ask = async (prompt: string, n = 1) => {
        const res = await post(base, '/v1/completions', { prompt, max_tokens: 8, temperature: 0, n });
        expect(res.status).toBe(200);
        return ((await res.json()) as { choices: Array<{ text: string }> }).choices.map((c) => c.text);
      };
      const prompts = ['In the beginning God created', 'Call me Ishmael.', 'The State of the Union is'];
      const solo = [];
      for (const p of prompts) solo.push((await ask(p))[0]);
      expect(await Promise.all(prompts.map((p) => ask(p).then((c) => c[0])))).toEqual(solo);
      expect(await ask(prompts[0]!, 3)).toEqual([solo[0], solo[0], solo[0]]);
    } finally {
      await server.close();
      await model.close();
    }
  });
});

describe('loadModel of a malformed Mamba-2 file', () => {
  it('rejects with the ModelFormatError naming the tensor (read in the worker)', async () => {
    const src = parseGguf(synth(false, 3), 'src.gguf');
    const w = new GgufWriter();
    for (const [k, e] of src.metadata) w.set(k, e.type, e.value, e.itemType);
    for (const t of src.tensors) {
      const data = src.bytes.slice(t.offset, t.offset + t.nbytes);
      if (t.name === 'blk.1.ssm_a') new DataView(data.buffer).setFloat32(4, Number.NaN, true);
      w.addTensor(t.name, t.dims, t.type, data);
    }
    const path = join(dir, 'nan-a.gguf');
    writeFileSync(path, w.toBytes());
    const err = await loadModel(path).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ModelFormatError);
    expect((err as Error).message).toMatch(/tensor 'blk\.1\.ssm_a'.*non-finite value \(NaN\) at element 1/);
    await expect(loadModel(join(dir, 'bi-mamba.gguf'), { kvType: 'q8' })).rejects.toThrow(/no KV cache, so options.kvType 'q8' does not apply/);
  });

  it("a hybrid's layer pattern and attention tensors are checked against the metadata", () => {
    const src = parseGguf(synth('bi-mamba-hybrid', 9), 'hybrid.gguf');
    const rewrite = (kv: Uint32Array | null, heads?: number, drop?: string) => {
      const w = new GgufWriter();
      for (const [k, e] of src.metadata) {
        if (k === 'bi-mamba-hybrid.attention.head_count_kv' && kv) w.set(k, GgufType.ARRAY, kv, GgufType.UINT32);
        else if (k === 'bi-mamba-hybrid.attention.head_count' && heads !== undefined) w.u32(k, heads);
        else w.set(k, e.type, e.value, e.itemType);
      }
      for (const t of src.tensors) if (t.name !== drop) w.addTensor(t.name, t.dims, t.type, src.bytes.slice(t.offset, t.offset + t.nbytes));
      const f = parseGguf(w.toBytes(), 'hybrid.gguf');
      return () => loadMamba2Weights(f, mamba2ConfigFromGguf(f));
    };
    expect(rewrite(Uint32Array.of(0, 1, 0))).toThrow(/'bi-mamba-hybrid.attention.head_count_kv' must be an array of 4 integers/);
    expect(rewrite(Uint32Array.of(0, 1, 0, 2))).toThrow(/different KV head counts \(1, 2\)/);
    expect(rewrite(null, 3)).toThrow(/embedding_length 128 is not a multiple of 'bi-mamba-hybrid.attention.head_count' 3/);
    expect(rewrite(null, undefined, 'blk.3.attn_k.alpha')).toThrow(/tensor 'blk.3.attn_k.alpha' is missing/);
    // Layer 0 turned into attention: its ssm tensors do not make it one.
    expect(rewrite(Uint32Array.of(1, 1, 0, 1))).toThrow(/tensor 'blk.0.attn_q.weight' is missing/);
    expect(rewrite(null)).not.toThrow();
  });
});

describe('Mamba2StatePool and the recurrent scheduler rules', () => {
  const file = parseGguf(synth(false, 3), 'pool.gguf');
  const cfg = mamba2ConfigFromGguf(file);
  const exec = new Mamba2Exec(new KernelContext({ threads: 1 }), cfg, file);

  for (const native of [true, false]) {
  const kind = native ? 'native pool' : 'JS twin';
  it(`holds a fixed number of states, forks copy the whole state, truncate keeps all or nothing, rows are checked first (${kind})`, () => {
    const pool = new Mamba2StatePool(exec, { maxSequences: 2, contextSize: 64, native });
    expect(pool.isNative).toBe(native);
    const a = pool.create();
    const la = pool.forwardBatch(Array.from({ length: 10 }, (_, i) => ({ token: 5 + i, seq: a, pos: i, logits: i === 9 })));
    const b = pool.fork(a);
    expect(pool.length(b)).toBe(10);
    expect(() => pool.create()).toThrow(KvPoolFullError);
    expect(() => pool.truncate(a, 4)).toThrow(/recurrent \(Mamba-2\) state of 10 positions.*not cut back/);
    pool.truncate(a, 10);
    // The fork continues exactly like its source.
    const next = (s: number) => Array.from(pool.forwardBatch([{ token: 77, seq: s, pos: 10, logits: true }]));
    expect(next(b)).toEqual(next(a));
    // Rows out of order, past the context or with a bad token change nothing.
    expect(() => pool.forwardBatch([{ token: 1, seq: a, pos: 12 }])).toThrow(SequenceError);
    expect(() => pool.forwardBatch([{ token: 4096, seq: a, pos: 11 }])).toThrow(/outside the vocabulary/);
    expect(() => pool.forwardBatch(Array.from({ length: 60 }, (_, i) => ({ token: 3, seq: a, pos: 11 + i })))).toThrow(ContextOverflowError);
    expect(pool.length(a)).toBe(11);
    pool.truncate(a, 0);
    expect(pool.length(a)).toBe(0);
    const again = pool.forwardBatch(Array.from({ length: 10 }, (_, i) => ({ token: 5 + i, seq: a, pos: i, logits: i === 9 })));
    expect(Array.from(again)).toEqual(Array.from(la));
    pool.dispose(b);
    expect(pool.stats()).toMatchObject({ sequences: 1, blocksUsed: 1, blocksCached: 1, blocksMax: 2, tokensHeld: 10 });
    expect(() => pool.length(b)).toThrow(/does not exist/);
  });

  it(`interleaved rows of two sequences give each its solo logits (${kind})`, () => {
    const pool = new Mamba2StatePool(exec, { maxSequences: 4, contextSize: 256, native });
    const t1 = ids(41, 70);
    const t2 = ids(42, 9);
    const solo = (t: number[]) => {
      const s = pool.create();
      const l = pool.forwardBatch(t.map((token, pos) => ({ token, seq: s, pos, logits: true }))).slice();
      pool.dispose(s);
      return l;
    };
    const [l1, l2] = [solo(t1), solo(t2)];
    const [s1, s2] = [pool.create(), pool.create()];
    const rows = [];
    for (let i = 0; i < 70; i++) {
      rows.push({ token: t1[i]!, seq: s1, pos: i, logits: true });
      if (i < 9) rows.push({ token: t2[i]!, seq: s2, pos: i, logits: true });
    }
    const mixed = pool.forwardBatch(rows);
    const V = cfg.nVocab;
    const pick = (seq: number) => {
      const out: number[] = [];
      rows.forEach((r, i) => {
        if (r.seq === seq) out.push(...mixed.subarray(i * V, (i + 1) * V));
      });
      return out;
    };
    expect(pick(s1)).toEqual(Array.from(l1));
    expect(pick(s2)).toEqual(Array.from(l2));
  });
  }

  it('the native pool rejects a pool of another model and bad arguments with typed errors', () => {
    const other = new Mamba2Exec(new KernelContext({ threads: 1 }), cfg, file);
    const pool = new Mamba2StatePool(other, { maxSequences: 1, contextSize: 8 });
    const s = pool.create();
    const handle = (pool as unknown as { handle: object }).handle;
    const row = (n: number) => [Int32Array.of(1), Int32Array.of(s), Int32Array.of(0), Int32Array.of(0), new Float32Array(n)] as const;
    expect(() => pool.forwardBatch([{ token: 1, seq: s, pos: 3 }])).toThrow(SequenceError);
    expect(() => pool.forwardBatch([{ token: 1, seq: s + 1, pos: 0 }])).toThrow(/does not exist/);
    expect(() => pool.forwardBatch([{ token: 1, seq: s, pos: 0 }, { token: 1, seq: s, pos: 1 }, { token: 1, seq: s, pos: 2 }, ...Array.from({ length: 6 }, (_, i) => ({ token: 1, seq: s, pos: 3 + i }))])).toThrow(ContextOverflowError);
    expect(() => exec.forwardNative(handle as never, ...row(cfg.nVocab))).toThrow(/pool was made for another model/);
    expect(() => exec.forwardNative({} as never, ...row(cfg.nVocab))).toThrow(/pool must be a Mamba2PoolNative/);
    expect(() => other.forwardNative(handle as never, Int32Array.of(1), Int32Array.of(s), Int32Array.of(0), Int32Array.of(1), new Float32Array(cfg.nVocab))).toThrow(/outRows/);
    expect(() => other.forwardNative(handle as never, Int32Array.of(1), Int32Array.of(s), Int32Array.of(0), Int32Array.of(0), new Float32Array(cfg.nVocab), 999)).toThrow(/chunk/);
    expect(pool.length(s)).toBe(0);
    expect(() => pool.fork(s)).toThrow(KvPoolFullError);
    expect(() => pool.truncate(s, 3)).toThrow(SequenceError);
  });

  it('prompt chunks of a recurrent model end at multiples of the scan chunk or at the prompt end', () => {
    expect(alignedChunk(0, 128, 150, 64)).toBe(128);
    expect(alignedChunk(128, 128, 150, 64)).toBe(22);
    expect(alignedChunk(0, 100, 300, 64)).toBe(64);
    expect(alignedChunk(10, 16, 300, 64)).toBe(54); // short of the next multiple: run to it
    expect(alignedChunk(10, 200, 300, 64)).toBe(182);
    expect(alignedChunk(64, 16, 70, 64)).toBe(6);
  });
});

describe('the one-call native Mamba-2 forward and native state pool equal the op-by-op twin bit for bit', () => {
  for (const variant of ['bi-mamba', 'mamba2', 'bi-mamba-hybrid'] as const) {
    for (const headType of ['f16', 'q8'] as const) {
      it(`${variant}, ${headType} head: prefill across chunk boundaries, interleaved decode, forks, a cleared state`, () => {
        const file = parseGguf(synth(variant, 11), 'twin.gguf');
        const cfg = mamba2ConfigFromGguf(file);
        const exec = new Mamba2Exec(new KernelContext({ threads: 2 }), cfg, file, { headType });
        const pools = [true, false].map((native) => new Mamba2StatePool(exec, { maxSequences: 4, contextSize: 300, native }));
        const steps: Array<(p: Mamba2StatePool, ids: number[]) => Float32Array> = [];
        const a = ids(71, 150);
        const b = ids(72, 70);
        // a: 70 then 80 prompt rows (the second crosses 64 and 128); b: 70 rows with logits at every row.
        steps.push((p, [sa]) => p.forwardBatch(a.slice(0, 70).map((token, pos) => ({ token, seq: sa!, pos, logits: pos === 69 }))));
        steps.push((p, [sa, sb]) => p.forwardBatch([
          ...b.map((token, pos) => ({ token, seq: sb!, pos, logits: true })),
          ...a.slice(70).map((token, i) => ({ token, seq: sa!, pos: 70 + i, logits: i % 7 === 0 })),
        ]));
        // Interleaved decode of both, b first, then a fork of a continuing beside its source.
        for (let k = 0; k < 3; k++)
          steps.push((p, [sa, sb]) => p.forwardBatch([
            { token: 100 + k, seq: sb!, pos: 70 + k, logits: true }, { token: 200 + k, seq: sa!, pos: 150 + k, logits: true },
          ]));
        steps.push((p, [sa, , sc]) => p.forwardBatch([
          { token: 9, seq: sc!, pos: 153, logits: true }, { token: 9, seq: sa!, pos: 153, logits: true },
        ]));
        // b cleared (truncate to 0) and run again from the start beside a.
        steps.push((p, [sa, sb]) => p.forwardBatch([
          ...a.slice(0, 40).map((token, pos) => ({ token, seq: sb!, pos, logits: pos === 39 })),
          { token: 10, seq: sa!, pos: 154, logits: true },
        ]));
        const run = (p: Mamba2StatePool) => {
          const seqs = [p.create(), p.create()];
          const out: number[][] = [];
          steps.forEach((step, i) => {
            if (i === 5) seqs[2] = p.fork(seqs[0]!);
            if (i === 6) p.truncate(seqs[1]!, 0);
            out.push(Array.from(step(p, seqs)));
          });
          return { out, stats: p.stats() };
        };
        const [nat, js] = pools.map(run);
        expect(nat!.out.length).toBe(js!.out.length);
        nat!.out.forEach((l, i) => {
          expect(l.every(Number.isFinite)).toBe(true);
          expect(l, `step ${i}`).toEqual(js!.out[i]);
        });
        expect(nat!.stats).toMatchObject({ sequences: 3, blocksUsed: 3, tokensHeld: js!.stats.tokensHeld, blockBytes: js!.stats.blockBytes });
      });
    }
  }
});

describe('Mamba2ModelNative / Mamba2PoolNative check everything that comes from JS', () => {
  const file = parseGguf(synth('bi-mamba-hybrid', 5), 'spec.gguf');
  const cfg = mamba2ConfigFromGguf(file);
  const ctx = new KernelContext({ threads: 1 });
  const exec = new Mamba2Exec(ctx, cfg, file, { native: false });
  const addon = loadNative() as Record<string, new (...a: unknown[]) => { forwardBatch(...a: unknown[]): void; create(): number; length(id: number): number }>;
  const Model = addon.Mamba2ModelNative!;
  const Pool = addon.Mamba2PoolNative!;
  type Spec = Record<string, unknown> & { layers: Array<Record<string, unknown>> };
  // A deep-enough copy: the spec and its layers' objects are new, the typed arrays shared.
  const spec = (): Spec => {
    const s = exec.nativeSpec() as Spec;
    return { ...s, layers: s.layers.map((L) => ({ ...L })) };
  };
  const rejects = (edit: (s: Spec) => void, message: RegExp) => {
    const s = spec();
    edit(s);
    expect(() => new Model(s)).toThrow(message);
  };

  it('a malformed spec is refused with an error naming the field, never a crash', () => {
    expect(() => new Model()).toThrow(/spec must be an object/);
    rejects((s) => (s.dModel = 1.5), /dModel/);
    rejects((s) => (s.nHeads = 3), /nHeads must divide dInner/);
    rejects((s) => (s.nGroups = 3), /nGroups/);
    rejects((s) => (s.dConv = 99), /dConv/);
    rejects((s) => (s.eps = Number.NaN), /eps/);
    rejects((s) => (s.layers = []), /layers must hold 1 to 4096/);
    rejects((s) => (s.layers[0]!.kind = 'rwkv'), /layers\[0\]\.kind 'rwkv' is not/);
    rejects((s) => (s.layers[0]!.convWeight = new Float32Array(3)), /layers\[0\]\.convWeight has 3 elements/);
    rejects((s) => (s.layers[0]!.ALog = new Float64Array(cfg.nHeads)), /layers\[0\]\.ALog must be a Float32Array/);
    rejects((s) => (s.layers[0]!.inProj = { ...(s.layers[0]!.inProj as object), M: 7 }), /layers\[0\]\.inProj/);
    rejects((s) => (s.layers[0]!.outProj = { ...(s.layers[0]!.outProj as object), bits: new Uint8Array(10) }), /layers\[0\]\.outProj\.bits has 10 elements/);
    rejects((s) => (s.layers[1]!.wqkv = (s.layers[1]!.wqkv as unknown[]).slice(0, 2)), /layers\[1\]\.wqkv linears give/);
    rejects((s) => delete s.attn, /layers\[1\]\.kind is 'attention' but the spec has no attn shape/);
    rejects((s) => (s.embd = { ...(s.embd as object), kind: 'q5' }), /embd\.kind 'q5'/);
  });

  it('pools and forward arguments are checked before any state changes', () => {
    const model = new Model(exec.nativeSpec());
    expect(() => new Pool({}, 2, 16)).toThrow(/model must be a Mamba2ModelNative/);
    expect(() => new Pool(model, 0, 16)).toThrow(/maxSequences/);
    expect(() => new Pool(model, 2, 0)).toThrow(/contextSize/);
    const pool = new Pool(model, 2, 16);
    const s = pool.create();
    const V = cfg.nVocab;
    const fwd = (...a: unknown[]) => () => model.forwardBatch(ctx.handle, ...a);
    const I = (...v: number[]) => Int32Array.from(v);
    const kv = new (addon.KvPoolNative!)('f16', 1, 1, 2, 16, 16);
    expect(fwd(kv, I(1), I(s), I(0), I(0), new Float32Array(V), 64)).toThrow(/pool must be a Mamba2PoolNative/);
    expect(fwd(pool, I(V), I(s), I(0), I(0), new Float32Array(V), 64)).toThrow(/tokens\[0\] = 4096 is outside the vocabulary/);
    expect(fwd(pool, I(1), I(s), I(-1), I(0), new Float32Array(V), 64)).toThrow(/pos\[0\]/);
    expect(fwd(pool, I(1), I(s), I(0), I(0), new Float32Array(V - 1), 64)).toThrow(/logits/);
    expect(fwd(pool, I(1, 2), I(s, s), I(0, 1), I(1, 0), new Float32Array(2 * V), 64)).toThrow(/outRows must be ascending/);
    expect(fwd(pool, I(1), I(s), I(0), I(0), new Float32Array(V), 257)).toThrow(/chunk/);
    expect(fwd(pool, I(1), I(s), I(0), I(0), new Float32Array(V), 1.5)).toThrow(/chunk/);
    expect(fwd(pool, I(1, 2), I(s, s), I(0, 2), I(1), new Float32Array(V), 64)).toThrow(/expected 1/);
    expect(fwd(pool, I(...Array(17).fill(1)), I(...Array(17).fill(s)), I(...Array.from({ length: 17 }, (_, i) => i)), I(16), new Float32Array(V), 64)).toThrow(/context size 16/);
    expect(pool.length(s)).toBe(0);
    // And a valid call runs.
    const logits = new Float32Array(V);
    model.forwardBatch(ctx.handle, pool, I(1, 5), I(s, s), I(0, 1), I(1), logits, 64);
    expect(pool.length(s)).toBe(2);
    expect(logits.every(Number.isFinite)).toBe(true);
  });
});
