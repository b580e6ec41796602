// Synthetic models (lib/model/synth.ts): loadable and runnable in every layout, one seed = one model
// whatever the layout or architecture name, and the 2B-4T header matches the published file's layout.
import { closeSync, ftruncateSync, mkdtempSync, openSync, rmSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { afterAll, describe, expect, it, vi } from 'vitest';

import { runSynthCommand } from '../lib/cli/synth.js';
import { KvCache } from '../lib/model/kv-cache.js';
import { type GgufFile, readGguf } from '../lib/format/gguf.js';
import { decodeI2S, decodeTQ1, decodeTQ2, encodeI2S, encodeTQ1, encodeTQ2 } from '../lib/format/ternary.js';
import { GGML } from '../lib/format/types.js';
import { KernelContext } from '../lib/kernels/context.js';
import { TransformerModel } from '../lib/model/transformer.js';
import { archRow } from '../lib/model/arch.js';
import { configFromGguf } from '../lib/model/config.js';
import { SynthError, type SynthOptions, type SynthType, planModel, synthesizeModel, ternaryScale } from '../lib/model/synth.js';
import { loadWeights } from '../lib/model/weights.js';
import { loadMamba2Weights, mamba2ConfigFromGguf } from '../lib/model/mamba2.js';
import { Tokenizer } from '../lib/tokenizer/index.js';
import { expectSameBits, expectSameInts, vocabPath } from './helpers.js';

const TYPES: SynthType[] = ['i2_s', 'tq2_0', 'tq1_0'];
const TOKENS = [1, 450, 4996, 17354, 1701, 432, 17204, 975, 278, 17366, 11203, 29889, 13, 3492, 263, 31999];
const dir = mkdtempSync(join(tmpdir(), 'bitllm-synth-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const ctx = new KernelContext({ threads: 2 });

const made = new Map<string, Promise<GgufFile>>();
/** Synthesizes (once per option set) and maps a model. */
function model(opts: Omit<SynthOptions, 'out'>): Promise<GgufFile> {
  const key = JSON.stringify(opts);
  let p = made.get(key);
  if (!p) {
    const out = join(dir, `m${made.size}.gguf`);
    p = synthesizeModel({ ...opts, out }).then(() => readGguf(out));
    made.set(key, p);
  }
  return p;
}

function logits(f: GgufFile): Float32Array {
  const cfg = configFromGguf(f);
  const m = new TransformerModel(ctx, cfg, loadWeights(ctx, f, cfg));
  return m.forward(TOKENS, new KvCache(cfg.nLayer, cfg.nHeadKv, cfg.headDim, 32), true);
}

const tensorBytes = (f: GgufFile, name: string) => {
  const t = f.tensors.find((x) => x.name === name)!;
  return f.bytes.subarray(t.offset, t.offset + t.nbytes);
};
const ternaryNames = (f: GgufFile) => f.tensors.filter((t) => t.type !== GGML.F32 && t.type !== GGML.F16).map((t) => t.name);

function decode(f: GgufFile, name: string): { trits: Int8Array; scales: Float32Array } {
  const t = f.tensors.find((x) => x.name === name)!;
  const [K, M] = t.dims as [number, number];
  const src = tensorBytes(f, name);
  if (t.type === GGML.I2_S) { const r = decodeI2S(src, M, K); return { trits: r.trits, scales: Float32Array.of(r.scale) }; }
  const r = t.type === GGML.TQ2_0 ? decodeTQ2(src, M, K) : decodeTQ1(src, M, K);
  return { trits: r.trits, scales: r.blockScales };
}

describe('synthetic models load and run', () => {
  for (const shape of ['tiny', 'small'] as const)
    for (const type of TYPES)
      it(`${shape} ${type}: loads and gives finite, non-constant logits for 16 tokens`, async () => {
        const f = await model({ shape, type, seed: 1 });
        const cfg = configFromGguf(f);
        expect(cfg.nVocab).toBe(32000);
        expect(cfg.activation).toBe(type === 'i2_s' ? 'relu2' : 'silu');
        const y = logits(f);
        expect(y.length).toBe(16 * 32000);
        let min = Infinity, max = -Infinity, nonFinite = 0;
        for (const v of y) {
          if (!Number.isFinite(v)) nonFinite++;
          min = Math.min(min, v);
          max = Math.max(max, v);
        }
        expect(nonFinite).toBe(0);
        expect(max - min).toBeGreaterThan(1);
        expect(Math.max(-min, max)).toBeLessThan(1e3);
      });
});

describe('one seed, one model', () => {
  it('tiny: i2_s, tq2_0 and tq1_0 hold the same trits (file decoders) and scales, byte-exact with the reference encoders', async () => {
    const [a, b, c] = await Promise.all(TYPES.map((type) => model({ shape: 'tiny', type, seed: 1 })));
    const names = ternaryNames(a!);
    expect(names).toHaveLength(14);
    for (const name of names) {
      const t = a!.tensors.find((x) => x.name === name)!;
      const [K, M] = t.dims as [number, number];
      const i2 = decode(a!, name), tq2 = decode(b!, name), tq1 = decode(c!, name);
      expectSameInts(tq2.trits, i2.trits, `${name} tq2_0 vs i2_s`);
      expectSameInts(tq1.trits, i2.trits, `${name} tq1_0 vs i2_s`);
      const g = ternaryScale(K);
      expect(i2.scales[0]).toBe(g);
      for (const s of [...tq2.scales, ...tq1.scales]) expect(s).toBe(g);
      expectSameInts(tensorBytes(a!, name), encodeI2S(i2.trits, M, K, g), `${name} i2_s bytes`);
      expectSameInts(tensorBytes(b!, name), encodeTQ2(i2.trits, M, K, tq2.scales), `${name} tq2_0 bytes`);
      expectSameInts(tensorBytes(c!, name), encodeTQ1(i2.trits, M, K, tq1.scales), `${name} tq1_0 bytes`);
    }
    for (const t of a!.tensors.filter((x) => x.type === GGML.F32 || x.type === GGML.F16))
      for (const other of [b!, c!]) expectSameInts(tensorBytes(other, t.name), tensorBytes(a!, t.name), t.name);
  });

  it('trits are i.i.d. uniform: P(0), P(+1), P(-1) ≈ 1/3 over the small model', async () => {
    const f = await model({ shape: 'small', type: 'i2_s', seed: 1 });
    const counts = [0, 0, 0];
    let n = 0;
    for (const name of ternaryNames(f)) {
      const { trits } = decode(f, name);
      for (const v of trits) counts[v + 1]!++;
      n += trits.length;
    }
    for (const c of counts) expect(Math.abs(c / n - 1 / 3)).toBeLessThan(0.002);
  });

  it('the architecture name does not change the tensor data', async () => {
    const pairs: Array<[Omit<SynthOptions, 'out'>, Omit<SynthOptions, 'out'>]> = [
      [{ shape: 'tiny', type: 'i2_s', seed: 1 }, { shape: 'tiny', type: 'i2_s', seed: 1, arch: 'bitnet-25', activation: 'silu' }],
      [{ shape: 'tiny', type: 'tq2_0', seed: 1 }, { shape: 'tiny', type: 'tq2_0', seed: 1, arch: 'bitnet-b1.58' }],
    ];
    for (const [x, y] of pairs) {
      const [a, b] = await Promise.all([model(x), model(y)]);
      expect(configFromGguf(b).arch).toBe(y.arch);
      for (const t of a.tensors) expectSameInts(tensorBytes(b, t.name), tensorBytes(a, t.name), `${y.arch} ${t.name}`);
    }
  });

  for (const shape of ['tiny', 'small'] as const)
    it(`${shape}: the three layouts give bit-identical logits over 16 tokens (native path)`, async () => {
      // Same arch for all three so the FFN activation matches too.
      const files = await Promise.all(TYPES.map((type) => model({ shape, type, seed: 1, arch: 'bitnet-b1.58' })));
      const [ref, ...rest] = files.map(logits);
      rest.forEach((y, i) => expectSameBits(y, ref!, `${shape} ${TYPES[i + 1]} vs i2_s`));
    });
});

describe('different seeds', () => {
  it('give different trits, embeddings and logits', async () => {
    const [a, b] = await Promise.all([model({ shape: 'tiny', type: 'i2_s', seed: 1 }), model({ shape: 'tiny', type: 'i2_s', seed: 2 })]);
    const ta = decode(a, 'blk.0.attn_q.weight').trits;
    const tb = decode(b, 'blk.0.attn_q.weight').trits;
    let same = 0;
    for (let i = 0; i < ta.length; i++) if (ta[i] === tb[i]) same++;
    expect(same / ta.length).toBeGreaterThan(0.3); // independent uniform trits agree 1/3 of the time
    expect(same / ta.length).toBeLessThan(0.37);
    expect(Buffer.compare(tensorBytes(a, 'token_embd.weight'), tensorBytes(b, 'token_embd.weight'))).not.toBe(0);
    const ya = logits(a), yb = logits(b);
    let diff = 0;
    for (let i = 0; i < ya.length; i++) if (ya[i] !== yb[i]) diff++;
    expect(diff / ya.length).toBeGreaterThan(0.9);
  });

  it('different tensors of one seed get independent streams', async () => {
    const f = await model({ shape: 'tiny', type: 'i2_s', seed: 1 });
    const q = decode(f, 'blk.0.attn_q.weight').trits;
    const o = decode(f, 'blk.0.attn_output.weight').trits;
    let same = 0;
    for (let i = 0; i < q.length; i++) if (q[i] === o[i]) same++;
    expect(Math.abs(same / q.length - 1 / 3)).toBeLessThan(0.02);
  });
});

describe('2B-4T layout (header only: no weights generated)', () => {
  const plan = planModel({ shape: '2b4t', type: 'i2_s', seed: 1 });

  it('has the published tensor table: 332 tensors, 121 F32 norms, 1 F16 token_embd, 210 I2_S, no output.weight', () => {
    const count = (type: number) => plan.tensors.filter((t) => t.type === type).length;
    expect(plan.tensors).toHaveLength(332);
    expect(count(GGML.F32)).toBe(121);
    expect(count(GGML.F16)).toBe(1);
    expect(count(GGML.I2_S)).toBe(210);
    expect(plan.tensors.filter((t) => t.type === GGML.F32).every((t) => t.name.endsWith('_norm.weight'))).toBe(true);
    expect(plan.tensors.find((t) => t.type === GGML.F16)!).toMatchObject({ name: 'token_embd.weight', dims: [2560, 128256] });
    expect(plan.tensors.some((t) => t.name === 'output.weight')).toBe(false);
    expect(plan.tensors.find((t) => t.name === 'blk.29.ffn_down.weight')!.dims).toEqual([6912, 2560]);
    expect(plan.tensors.find((t) => t.name === 'blk.0.attn_k.weight')!.dims).toEqual([2560, 640]);
    // Codes + 32-byte tail per projection: 520.9 MB of I2_S, as computed for the published file.
    const i2s = plan.tensors.filter((t) => t.type === GGML.I2_S).reduce((a, t) => a + t.nbytes, 0);
    expect(i2s).toBe((30 * (2560 * 2560 * 2 + 640 * 2560 * 2 + 6912 * 2560 * 3)) / 4 + 210 * 32);
  });

  it('reads back through readGguf/configFromGguf as BitNet b1.58 2B-4T, without tokenizer.ggml.pre', () => {
    // Header plus a sparse data section: the reader checks every offset and size against the file length.
    const path = join(dir, '2b4t-header.gguf');
    const fd = openSync(path, 'w');
    writeSync(fd, plan.header);
    ftruncateSync(fd, plan.fileBytes);
    closeSync(fd);
    const f = readGguf(path);
    expect(f.tensors.map((t) => [t.name, t.offset, t.nbytes])).toEqual(plan.tensors.map((t) => [t.name, plan.header.byteLength + t.offset, t.nbytes]));
    expect(configFromGguf(f)).toEqual({
      arch: 'bitnet-b1.58', row: archRow('bitnet-b1.58'), nEmbd: 2560, nLayer: 30, nHead: 20, nHeadKv: 5, headDim: 128, nFf: 6912,
      nVocab: 128256, nCtxTrain: 4096, ropeTheta: 500000, nRot: 128, eps: Math.fround(1e-5), activation: 'relu2', topkRatio: 1,
      linearNormEps: 1e-5,
    });
    const md = f.metadata;
    expect(md.has('tokenizer.ggml.pre')).toBe(false);
    expect(md.get('general.file_type')!.value).toBe(40);
    expect(md.get('tokenizer.ggml.model')!.value).toBe('gpt2');
    expect(md.get('tokenizer.ggml.bos_token_id')!.value).toBe(128000);
    expect(md.get('tokenizer.ggml.padding_token_id')!.value).toBe(128001);
    expect(md.get('tokenizer.ggml.add_bos_token')!.value).toBe(true);
    expect([...md.keys()].filter((k) => k.startsWith('bitnet-b1.58.'))).toHaveLength(10);
    expect(Tokenizer.fromGguf(f).pre).toBe('llama-bpe');
  });

  it('as tq2_0 defaults to llama.cpp naming and 210 TQ2_0 tensors', () => {
    // The small SentencePiece vocabulary keeps this fast; the tensor table does not depend on it beyond token_embd.
    const p = planModel({ shape: '2b4t', type: 'tq2_0', seed: 1, vocab: vocabPath('ggml-vocab-llama-spm.gguf') });
    expect(p.arch).toBe('bitnet');
    expect(p.tensors.filter((t) => t.type === GGML.TQ2_0)).toHaveLength(210);
  });
});

describe('errors', () => {
  it('3b only as i2_s (K = 3200 / 8640 are not multiples of 256)', () => {
    for (const type of ['tq2_0', 'tq1_0'] as const) expect(() => planModel({ shape: '3b', type })).toThrow(/not a multiple of 256.*--type i2_s/);
    expect(planModel({ shape: '3b', type: 'i2_s' }).tensors.find((t) => t.name === 'blk.25.ffn_down.weight')!.dims).toEqual([8640, 3200]);
  });

  it('i2_s under arch bitnet is refused', () => {
    expect(() => planModel({ shape: 'tiny', type: 'i2_s', arch: 'bitnet' })).toThrow(SynthError);
    expect(() => planModel({ shape: 'tiny', type: 'i2_s', arch: 'bitnet' })).toThrow(/bitnet-b1.58/);
  });

  it('a missing vocabulary says to pass --vocab', () => {
    expect(() => planModel({ shape: 'tiny', type: 'tq2_0', vocab: join(dir, 'none.gguf') })).toThrow(/not found: pass --vocab/);
  });

  it('bad seeds are refused', () => {
    for (const seed of [-1, 1.5, 2 ** 32]) expect(() => planModel({ shape: 'tiny', type: 'tq2_0', seed })).toThrow(SynthError);
  });

  it('the CLI exits 2 with a message on bad flags and impossible combinations, 0 with a JSON line on success', async () => {
    const err = vi.spyOn(process.stderr, 'write').mockImplementation(() => true);
    const outSpy = vi.spyOn(process.stdout, 'write').mockImplementation(() => true);
    try {
      const out = join(dir, 'cli.gguf');
      for (const argv of [
        ['--type', 'i2_s', '-o', out],
        ['--shape', 'tiny', '--type', 'q4_0', '-o', out],
        ['--shape', 'tiny', '--type', 'i2_s'],
        ['--shape', 'tiny', '--type', 'i2_s', '-o', out, '--frobnicate'],
        ['--shape', 'tiny', '--type', 'i2_s', '-o', out, '--seed', 'x'],
        ['--shape', '3b', '--type', 'tq1_0', '-o', out],
        ['--shape', 'tiny', '--type', 'i2_s', '--arch', 'bitnet', '-o', out],
      ]) expect(await runSynthCommand(argv), argv.join(' ')).toBe(2);
      expect(String(err.mock.calls.at(-1)![0])).toMatch(/bitnet-b1.58/);
      outSpy.mockClear();
      expect(await runSynthCommand(['synth', '--shape', 'tiny', '--type', 'tq2_0', '--seed', '3', '-o', out, '--json'])).toBe(0);
      const line = outSpy.mock.calls.map((c) => String(c[0])).join('');
      expect(JSON.parse(line)).toMatchObject({ path: out, shape: 'tiny', type: 'tq2_0', arch: 'bitnet', seed: 3, nVocab: 32000, tensors: 24 });
      // Bi-Mamba: its own shapes, Q1_0 only, LLaMA-2's vocabulary by default; the file passes every check of its layout.
      for (const argv of [
        ['--arch', 'bi-mamba', '--shape', '2b4t', '--type', 'q1_0', '-o', out],
        ['--arch', 'bi-mamba', '--shape', 'tiny', '--type', 'tq2_0', '-o', out],
        ['--arch', 'bi-mamba', '--shape', 'tiny', '--type', 'q1_0', '--activation', 'silu', '-o', out],
      ]) expect(await runSynthCommand(argv), argv.join(' ')).toBe(2);
      outSpy.mockClear();
      const mb = join(dir, 'bimamba.gguf');
      expect(await runSynthCommand(['--arch', 'bi-mamba', '--shape', 'tiny', '--type', 'q1_0', '--seed', '2', '-o', mb, '--json'])).toBe(0);
      expect(JSON.parse(outSpy.mock.calls.map((c) => String(c[0])).join(''))).toMatchObject({ arch: 'bi-mamba', shape: 'tiny', seed: 2, nVocab: 32000 });
      const file = readGguf(mb);
      const cfg = mamba2ConfigFromGguf(file);
      expect(cfg).toMatchObject({ dModel: 128, nLayer: 2, dInner: 256, dState: 16, nHeads: 4, nVocab: 32000 });
      expect(loadMamba2Weights(file, cfg).layers).toHaveLength(2);
      expect(Tokenizer.fromGguf(file).encode('Hello world').length).toBeGreaterThan(1);
      // The FP Mamba-2 layout: F16 only; dense in/out projections, no α/β.
      expect(await runSynthCommand(['--arch', 'mamba2', '--shape', 'tiny', '--type', 'q1_0', '-o', mb])).toBe(2);
      expect(await runSynthCommand(['--arch', 'mamba2', '--shape', 'tiny', '--type', 'f16', '-o', mb])).toBe(0);
      const dense = readGguf(mb);
      const dcfg = mamba2ConfigFromGguf(dense);
      expect(dcfg).toMatchObject({ arch: 'mamba2', dModel: 128, nLayer: 2 });
      expect(dense.tensors.find((t) => t.name === 'blk.0.ssm_in.weight')!.typeName).toBe('F16');
      expect(dense.tensors.some((t) => t.name.endsWith('.alpha'))).toBe(false);
      expect(loadMamba2Weights(dense, dcfg).layers[1]!.outProj).toMatchObject({ M: 128, K: 256 });
    } finally {
      err.mockRestore();
      outSpy.mockRestore();
    }
  });
});
