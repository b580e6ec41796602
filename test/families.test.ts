// Every architecture row of the table (lib/model/arch.ts) on the bundled model of its family and on
// synthetic models: the one-call native forward equals the op-by-op native path bit for bit, every ISA
// stays within the stated bound of the pure-TS reference backend, and bad family files fail with a
// ModelFormatError naming the tensor or key.
//
// Bound (as test/model-reference.test.ts argues it for b1.58): integer GEMMs, act-quant, binary_prep, the
// LayerNorm and the f16 KV store are bit-exact between backends; float ops (norms, RoPE, attention, GLU, the
// f16 GEMMs and the float sign GEMM) differ by summation order. Through a 4-layer model a few-ulp change can
// flip an int8 code; the per-row bound is relative to the row's largest logit.
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

import { afterAll, describe, expect, it } from 'vitest';

import { ModelFormatError } from '../lib/errors.js';
import { type GgufFile, GgufWriter, readGguf } from '../lib/format/gguf.js';
import { GGML } from '../lib/format/types.js';
import { KernelContext } from '../lib/kernels/context.js';
import { ARCHITECTURES, LINEAR_KIND_SPECS, PROJECTIONS, archRow, ssmArchRow } from '../lib/model/arch.js';
import { nativeBackend, referenceBackend } from '../lib/model/backend.js';
import { configFromGguf } from '../lib/model/config.js';
import { KvCache } from '../lib/model/kv-cache.js';
import { type SynthType, synthesizeModel } from '../lib/model/synth.js';
import { TransformerModel } from '../lib/model/transformer.js';
import { type LoadWeightsOptions, loadWeights } from '../lib/model/weights.js';
import { BUNDLED_FAMILY_MODELS, type FamilyModel, MAX_REL_DIFF_Q8, contextsPerIsa, eventLoopTurn, neonFloatOrder, runProcess } from './helpers.js';
import { scaledMs } from './time-scale.js';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const MODELS = join(ROOT, 'models');
const dir = mkdtempSync(join(tmpdir(), 'bitllm-families-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** Per-row max |native − reference| / max |reference|. */
const MAX_REL_DIFF = 2 ** -12;
/** GGML's plain int8 tensor type id. */
const GGML_I8 = 24;
const MIN_COSINE = 0.99999;
const TOKENS = [1, 450, 496, 1735, 170, 432, 1720, 975, 278, 1736, 1120, 2988];
const PREFILL = 8;

/** The bundled models and the load options that pick each of their paths. */
const BUNDLED: FamilyModel[] = BUNDLED_FAMILY_MODELS;

/** Logits [12, vocab]: a prefill of PREFILL tokens (all rows), then one token at a time, with a turn of the
 * event loop after each forward (long synchronous stretches under qemu: test/helpers.ts eventLoopTurn). */
async function run(model: TransformerModel): Promise<Float32Array> {
  const cfg = model.cfg;
  const V = cfg.nVocab;
  const kv = new KvCache(cfg.nLayer, cfg.nHeadKv, cfg.headDim, 16, cfg.row.kv); // a4.8: its 3-bit cache
  const out = new Float32Array(TOKENS.length * V);
  out.set(model.forward(TOKENS.slice(0, PREFILL), kv, true), 0);
  for (let i = PREFILL; i < TOKENS.length; i++) {
    await eventLoopTurn();
    out.set(model.forward([TOKENS[i]!], kv), i * V);
  }
  return out;
}

/** `got` (from `ctx`) against `want` row by row; NEON's float order takes the q8 bound (test/helpers.ts). */
function expectClose(got: Float32Array, want: Float32Array, V: number, what: string, ctx: KernelContext): void {
  const bound = neonFloatOrder(ctx) ? MAX_REL_DIFF_Q8 : MAX_REL_DIFF;
  for (let r = 0; r < got.length / V; r++) {
    const g = got.subarray(r * V, (r + 1) * V);
    const w = want.subarray(r * V, (r + 1) * V);
    let maxAbs = 0;
    let maxDiff = 0;
    let dot = 0;
    let ng = 0;
    let nw = 0;
    for (let j = 0; j < V; j++) {
      maxAbs = Math.max(maxAbs, Math.abs(w[j]!));
      maxDiff = Math.max(maxDiff, Math.abs(g[j]! - w[j]!));
      dot += g[j]! * w[j]!;
      ng += g[j]! * g[j]!;
      nw += w[j]! * w[j]!;
    }
    expect(maxDiff, `${what}: row ${r}`).toBeLessThanOrEqual(bound * maxAbs);
    expect(dot / Math.sqrt(ng * nw), `${what}: row ${r} cosine`).toBeGreaterThanOrEqual(MIN_COSINE);
  }
}

function sameBits(a: Float32Array, b: Float32Array): boolean {
  return Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(Buffer.from(b.buffer, b.byteOffset, b.byteLength));
}

describe('the architecture table', () => {
  it('has one row per architecture name, every projection of every row a known linear kind with a quantizer it can run', () => {
    expect(new Set(ARCHITECTURES.map((r) => r.arch)).size).toBe(ARCHITECTURES.length);
    for (const row of ARCHITECTURES)
      for (const p of PROJECTIONS) {
        const spec = row.linears[p];
        expect(LINEAR_KIND_SPECS[spec.kind], `${row.arch} ${p}`).toBeDefined();
        expect(LINEAR_KIND_SPECS[spec.kind].quants, `${row.arch} ${p}`).toContain(spec.act);
      }
  });

  it('names every family of the bundled manifest', () => {
    const manifest = JSON.parse(readFileSync(join(MODELS, 'manifest.json'), 'utf8')) as { models: { arch: string; family: string }[] };
    for (const m of manifest.models) expect((ssmArchRow(m.arch) ?? archRow(m.arch)).family, m.arch).toBe(m.family);
  });

  it('rejects an unknown architecture naming the file and the supported rows', () => {
    const w = new GgufWriter();
    w.string('general.architecture', 'llama-9bit');
    const path = join(dir, 'unknown-arch.gguf');
    w.write(path);
    expect(() => configFromGguf(readGguf(path))).toThrow(ModelFormatError);
    expect(() => configFromGguf(readGguf(path))).toThrow(/unknown-arch\.gguf: architecture 'llama-9bit' is not supported \(supported: bitnet, /);
  });
});

describe('bundled family models: one-call native forward vs op by op', () => {
  const ctx = new KernelContext({ threads: 2 });
  for (const m of BUNDLED)
    it(`${m.file} ${JSON.stringify(m.opts)}: bit-identical to the op-by-op native path, within the bound of the TS reference`, async () => {
      const f = readGguf(join(MODELS, m.file));
      const cfg = configFromGguf(f);
      const w = loadWeights(ctx, f, cfg, m.opts);
      const fused = await run(new TransformerModel(ctx, cfg, w));
      const ops = await run(new TransformerModel(ctx, cfg, w, nativeBackend(ctx)));
      expect(sameBits(fused, ops)).toBe(true);
      expectClose(fused, await run(new TransformerModel(ctx, cfg, w, referenceBackend())), cfg.nVocab, m.file, ctx);
    }, scaledMs(120_000));
});

describe('every ISA on every family (synthetic tiny models) within the bound of the reference', () => {
  const synth: Array<{ arch: string; type: SynthType; opts: LoadWeightsOptions }> = [
    { arch: 'bitnet-1bit', type: 'q1_0', opts: {} },
    { arch: 'bitnet-a4.8', type: 'tq2_0', opts: {} },
    { arch: 'bitnet-a4.8', type: 'tq2_0', opts: { layout: 't2r16' } },
    { arch: 'fbi-llm', type: 'q1_0', opts: {} },
    { arch: 'fbi-llm', type: 'q1_0', opts: { actQuant: 'i8' } },
    { arch: 'onebit', type: 'q1_0', opts: {} },
    { arch: 'onebit', type: 'q1_0', opts: { actQuant: 'i8' } },
    { arch: 'bitnet-f16', type: 'f16', opts: {} },
    { arch: 'billm', type: 'billm', opts: {} },
  ];
  for (const s of synth)
    it(`${s.arch} ${JSON.stringify(s.opts)}`, async () => {
      const out = join(dir, `${s.arch}-${JSON.stringify(s.opts).replace(/\W/g, '')}.gguf`);
      await synthesizeModel({ shape: 'tiny', type: s.type, arch: s.arch, seed: 5, out, vocab: join(MODELS, 'tiny-b158-i2_s.gguf') });
      const f = readGguf(out);
      const cfg = configFromGguf(f);
      const refCtx = new KernelContext({ threads: 1, isa: 'scalar' });
      const ref = await run(new TransformerModel(refCtx, cfg, loadWeights(refCtx, f, cfg, s.opts), referenceBackend()));
      for (const [isa, c] of contextsPerIsa()) expectClose(await run(new TransformerModel(c, cfg, loadWeights(c, f, cfg, s.opts))), ref, cfg.nVocab, `${s.arch} ${isa}`, c);
    }, scaledMs(180_000));
});

describe('BiLLM: bitllm quantize of the FP16 teacher', () => {
  const CLI = join(ROOT, 'dist', 'cli', 'main.js');
  // Calibration text from the repository's own docs (English prose, several thousand tokens).
  const calib = join(dir, 'calib.txt');
  writeFileSync(calib, ['README.md', 'docs/DESIGN.md', 'docs/training.md'].map((f) => readFileSync(join(ROOT, f), 'utf8')).join('\n\n'));
  const quantize = (...args: string[]) => runProcess(process.execPath, [CLI, 'quantize', join(MODELS, 'tiny-fp16-f16.gguf'), ...args]);

  it('writes a packed billm model that runs natively, bit-identical to the op-by-op path and within the bound of the reference', async () => {
    const out = join(dir, 'billm.gguf');
    const r = await quantize('--method', 'billm', '--calib', calib, '--calib-tokens', '1024', '-o', out, '--json');
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    const s = JSON.parse(r.stdout) as { arch: string; bits_per_weight: number; calib_tokens: number };
    expect(s.arch).toBe('billm');
    expect(s.calib_tokens).toBeGreaterThanOrEqual(1024);
    // Sign + group planes (2 bits), fp16 scalars (8 × 16 bits per 128 columns = 1 bit), the residual of
    // the salient columns and the mask: a little over 3 bits per weight.
    expect(s.bits_per_weight).toBeGreaterThan(3);
    expect(s.bits_per_weight).toBeLessThan(3.5);
    const f = readGguf(out);
    const cfg = configFromGguf(f);
    expect(cfg.row.family).toBe('billm');
    expect(f.tensors.some((t) => t.name === 'blk.0.ffn_down.billm_salient')).toBe(true);
    const ctx = new KernelContext({ threads: 2 });
    const w = loadWeights(ctx, f, cfg);
    expect(w.layers[0]!.wqkv.map((l) => l.w.kind)).toEqual(['billm', 'billm', 'billm']);
    const fused = await run(new TransformerModel(ctx, cfg, w));
    expect(sameBits(fused, await run(new TransformerModel(ctx, cfg, w, nativeBackend(ctx))))).toBe(true);
    expectClose(fused, await run(new TransformerModel(ctx, cfg, w, referenceBackend())), cfg.nVocab, 'billm', ctx);
    for (const [isa, c] of contextsPerIsa()) expectClose(await run(new TransformerModel(c, cfg, loadWeights(c, f, cfg))), fused, cfg.nVocab, `billm ${isa}`, c);
  }, scaledMs(300_000));

  it('absmax baselines are dense F16 models of the same architecture', async () => {
    const out = join(dir, 'absmax-w1.gguf');
    const r = await quantize('--method', 'absmax', '--bits', '1', '-o', out, '--json');
    expect(r.status).toBe(0);
    const f = readGguf(out);
    expect(configFromGguf(f).arch).toBe('bitnet-f16');
    // W1: every row of a projection holds two values, ±α.
    const t = f.tensors.find((x) => x.name === 'blk.0.attn_q.weight')!;
    const row = new Uint16Array(f.bytes.slice(t.offset, t.offset + t.dims[0]! * 2).buffer);
    expect(new Set(Array.from(row, (h) => h & 0x7fff)).size).toBe(1);
  }, scaledMs(120_000));

  it('a calibration text too short says how many tokens BiLLM needs', async () => {
    const short = join(dir, 'short.txt');
    writeFileSync(short, 'Only a few words of calibration text.');
    const r = await quantize('--method', 'billm', '--calib', short, '-o', join(dir, 'never.gguf'));
    expect(r.status).toBe(2);
    expect(r.stderr).toMatch(/the calibration text gives \d+ tokens; BiLLM needs at least 768 \(the largest projection input, ffn_down's K = 768\)/);
  });

  it('refuses a model whose projections are not dense', async () => {
    const r = await runProcess(process.execPath, [CLI, 'quantize', join(MODELS, 'tiny-b158-i2_s.gguf'), '--method', 'absmax', '--bits', '1', '-o', join(dir, 'x.gguf')]);
    expect(r.status).toBe(2);
    expect(r.stderr).toMatch(/quantize needs dense \(f16\) projections/);
  });
});

describe('BiLLM files with bad planes fail with ModelFormatError naming the tensor', () => {
  const ctx = new KernelContext({ threads: 1 });
  it('a missing or mis-shaped plane', () => {
    const src = readGguf(join(dir, 'billm.gguf'));
    const load = (path: string) => {
      const f = readGguf(path);
      return () => loadWeights(ctx, f, configFromGguf(f));
    };
    const noGroups = rewrite(src, join(dir, 'billm-no-groups.gguf'), (n) => (n === 'blk.1.attn_v.billm_groups' ? null : undefined));
    expect(load(noGroups)).toThrow(ModelFormatError);
    expect(load(noGroups)).toThrow(/blk\.1\.attn_v\.billm_groups' is missing/);
    const short = rewrite(src, join(dir, 'billm-short.gguf'), (n, type, dims, data) =>
      n === 'blk.0.ffn_up.billm_scalars' ? { type, dims: [dims[0]!, dims[1]!, dims[2]! - 1], data: data.subarray(0, data.length - 2 * dims[0]! * dims[1]!) } : undefined);
    expect(load(short)).toThrow(/blk\.0\.ffn_up\.billm_scalars/);
  });

  it.each([['NaN', 0x7e00], ['-Infinity', 0xfc00]] as const)('a %s scalar (the packed planes would compute NaN rows)', (what, h) => {
    const src = readGguf(join(dir, 'billm.gguf'));
    const p = rewrite(src, join(dir, `billm-scalar-${what}.gguf`), (n, type, dims, data) => {
      if (n !== 'blk.1.ffn_down.billm_scalars') return undefined;
      const d = data.slice();
      d[2 * 22] = h & 0xff; // element 22: row 0, block 2, scalar 6 (aB)
      d[2 * 22 + 1] = h >> 8;
      return { type, dims, data: d };
    });
    const f = readGguf(p);
    expect(() => loadWeights(ctx, f, configFromGguf(f))).toThrow(ModelFormatError);
    expect(() => loadWeights(ctx, f, configFromGguf(f))).toThrow(new RegExp(`tensor 'blk\\.1\\.ffn_down\\.billm_scalars': scalar 22 \\(row 0, block 2, aB\\) is ${what}`));
  });
});

// ---------------------------------------------------------------- bad family files

/** A copy of `src` with its tensors rewritten by `edit` (name → replacement or null to drop). */
function rewrite(src: GgufFile, path: string, edit: (name: string, type: number, dims: number[], data: Uint8Array) =>
  { type: number; dims: number[]; data: Uint8Array } | null | undefined): string {
  const w = new GgufWriter();
  for (const [k, e] of src.metadata) w.set(k, e.type, e.value, e.itemType);
  for (const t of src.tensors) {
    const data = src.bytes.slice(t.offset, t.offset + t.nbytes);
    const r = edit(t.name, t.type, [...t.dims], data);
    if (r === null) continue;
    const x = r ?? { type: t.type, dims: [...t.dims], data };
    w.addTensor(t.name, x.dims, x.type, x.data);
  }
  w.write(path);
  return path;
}

describe('bad family files fail with ModelFormatError naming the tensor', () => {
  const ctx = new KernelContext({ threads: 1 });
  const fbi = readGguf(join(MODELS, 'tiny-fbi-q1_0.gguf'));
  const onebit = readGguf(join(MODELS, 'tiny-onebit-q1_0.gguf'));
  const load = (path: string, opts: LoadWeightsOptions = {}) => {
    const f = readGguf(path);
    return () => loadWeights(ctx, f, configFromGguf(f), opts);
  };
  const f32 = (values: number[]) => new Uint8Array(Float32Array.from(values).buffer);

  it('a missing sibling tensor (FBI-LLM alpha)', () => {
    const p = rewrite(fbi, join(dir, 'no-alpha.gguf'), (n) => (n === 'blk.1.attn_k.alpha' ? null : undefined));
    expect(load(p)).toThrow(ModelFormatError);
    expect(load(p)).toThrow(/missing tensor 'blk\.1\.attn_k\.alpha'/);
  });

  it('a mis-shaped sibling tensor (OneBit out_scale)', () => {
    const p = rewrite(onebit, join(dir, 'short-h.gguf'), (n, type, dims, data) =>
      n === 'blk.0.ffn_up.out_scale' ? { type, dims: [dims[0]! - 1], data: data.subarray(0, data.length - 4) } : undefined);
    expect(load(p)).toThrow(/tensor 'blk\.0\.ffn_up\.out_scale': shape \[767\] does not match the expected \[768\]/);
  });

  it.each([NaN, Infinity, -Infinity])('a sibling scale of %s', (bad) => {
    const p = rewrite(fbi, join(dir, `bad-beta-${bad}.gguf`), (n, type, dims, data) => {
      if (n !== 'blk.2.ffn_down.beta') return undefined;
      const v = new Float32Array(data.slice().buffer);
      v[5] = bad;
      return { type, dims, data: new Uint8Array(v.buffer) };
    });
    expect(load(p)).toThrow(new RegExp(`tensor 'blk\\.2\\.ffn_down\\.beta': element 5 is ${String(bad)}, not a finite number`));
  });

  it('a non-finite Q1_0 block scale', () => {
    const p = rewrite(readGguf(join(MODELS, 'tiny-bitnet-q1_0.gguf')), join(dir, 'nan-d.gguf'), (n, type, dims, data) => {
      if (n !== 'blk.0.attn_q.weight') return undefined;
      const d = data.slice();
      for (let o = 0; o < d.length; o += 18) { d[o] = 0x00; d[o + 1] = 0x7e; } // every block's fp16 d = NaN
      return { type, dims, data: d };
    });
    expect(load(p)).toThrow(/blk\.0\.attn_q\.weight/);
  });

  it('a sibling of the wrong type', () => {
    const p = rewrite(fbi, join(dir, 'i8-alpha.gguf'), (n, _type, dims, data) =>
      n === 'blk.0.attn_q.alpha' ? { type: GGML_I8, dims, data: data.subarray(0, dims[0]!) } : undefined);
    expect(load(p)).toThrow(/tensor 'blk\.0\.attn_q\.alpha': type I8 is not supported for a vector/);
  });

  it('a projection type the linear kind does not store (F16 signs in an FBI-LLM file)', () => {
    const p = rewrite(fbi, join(dir, 'f16-signs.gguf'), (n, _type, dims) =>
      n === 'blk.3.ffn_gate.weight' ? { type: GGML.F16, dims, data: new Uint8Array(dims[0]! * dims[1]! * 2) } : undefined);
    expect(load(p)).toThrow(/tensor 'blk\.3\.ffn_gate\.weight': type F16 is not a sign type \(Q1_0\)/);
  });

  it('a ternary file whose sub-norm the row requires is missing (a4.8)', () => {
    const a48 = readGguf(join(MODELS, 'tiny-a48-tq2_0.gguf'));
    const p = rewrite(a48, join(dir, 'a48-no-subnorm.gguf'), (n) => (n === 'blk.0.ffn_sub_norm.weight' ? null : undefined));
    expect(load(p)).toThrow(/missing tensor 'blk\.0\.ffn_sub_norm\.weight'/);
  });

  it('an OneBit linear_norm_epsilon out of range, naming the key', () => {
    const w = new GgufWriter();
    for (const [k, e] of onebit.metadata) w.set(k, e.type, k === 'onebit.linear_norm_epsilon' ? -1 : e.value, e.itemType);
    const path = join(dir, 'bad-eps.gguf');
    w.write(path);
    expect(() => configFromGguf(readGguf(path))).toThrow(/metadata 'onebit\.linear_norm_epsilon' = -1 is out of range/);
  });

  it('a truncated family file', () => {
    const bytes = readFileSync(join(MODELS, 'tiny-onebit-q1_0.gguf'));
    const path = join(dir, 'truncated.gguf');
    writeFileSync(path, bytes.subarray(0, bytes.length - 1000));
    expect(() => readGguf(path)).toThrow(ModelFormatError);
  });
});
