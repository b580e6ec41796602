// lib/convert: safetensors reader/writer, the SentencePiece model reader, the Q1_0 codec, and the GGUF
// exporter of train/'s models (safetensors → GGUF → readGguf: names, shapes, types, decoded values).
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { loadModel } from '../lib/api.js';
import { ModelFormatError } from '../lib/errors.js';
import { type ExportType, type Family, type TrainedConfig, FAMILY_TYPES, MAMBA2_FAMILIES, architectureOf, exportGguf } from '../lib/convert/export.js';
import { decodeQ1_0, encodeQ1_0, q1_0Bytes } from '../lib/convert/q1_0.js';
import { type SafetensorsInput, encodeSafetensors, parseSafetensors, readSafetensors, writeSafetensors } from '../lib/convert/safetensors.js';
import { parseSpmModel, readSpmModel } from '../lib/convert/spm-model.js';
import { GgufMetadata, readGguf } from '../lib/format/gguf.js';
import { decodeI2S, decodeTQ1, decodeTQ2 } from '../lib/format/ternary.js';
import { GGML } from '../lib/format/types.js';
import { configFromGguf } from '../lib/model/config.js';
import { floatToHalf, halfToFloat } from '../lib/reference/numeric.js';
import { Tokenizer } from '../lib/tokenizer/index.js';
import { expectSameInts, randomNormal, randomTrits, rng } from './helpers.js';

const TOKENIZER = fileURLToPath(new URL('../train/tokenizer.model', import.meta.url));
const CFG: TrainedConfig = { vocab: 4096, d: 256, n_layer: 2, n_head: 4, n_head_kv: 2, ff: 512, ctx: 128, rope_theta: 10000, eps: 1e-5 };
const PROJ = ['attn_q', 'attn_k', 'attn_v', 'attn_output', 'ffn_gate', 'ffn_up', 'ffn_down'] as const;

function shape(p: (typeof PROJ)[number]): [number, number] {
  const dkv = CFG.n_head_kv * (CFG.d / CFG.n_head);
  const M = { attn_q: CFG.d, attn_k: dkv, attn_v: dkv, attn_output: CFG.d, ffn_gate: CFG.ff, ffn_up: CFG.ff, ffn_down: CFG.d }[p];
  return [M, p === 'ffn_down' ? CFG.ff : CFG.d];
}

const f16Value = (x: number) => halfToFloat(floatToHalf(x));

/** The export tensors train/evaluate.py writes for `family`, with seeded random values. */
function fakeTensors(family: Family, seed: number): SafetensorsInput[] {
  const r = rng(seed);
  const out: SafetensorsInput[] = [];
  const f32 = (name: string, shp: number[], v: Float32Array) => out.push({ name, dtype: 'F32', shape: shp, data: v });
  const halves = (v: Float32Array) => Uint16Array.from(v, (x) => floatToHalf(x));
  out.push({ name: 'token_embd.weight', dtype: 'F16', shape: [CFG.vocab, CFG.d], data: halves(randomNormal(r, CFG.vocab * CFG.d, 0.5)) });
  const gain = (n: number) => Float32Array.from({ length: n }, () => 1 + 0.1 * (r() - 0.5));
  f32('output_norm.weight', [CFG.d], gain(CFG.d));
  for (let l = 0; l < CFG.n_layer; l++) {
    const p = `blk.${l}.`;
    for (const n of ['attn_norm', 'attn_sub_norm', 'ffn_norm']) f32(`${p}${n}.weight`, [CFG.d], gain(CFG.d));
    f32(`${p}ffn_sub_norm.weight`, [CFG.ff], gain(CFG.ff));
    for (const n of PROJ) {
      const [M, K] = shape(n);
      const base = `${p}${n}.`;
      if (family === 'fp16') {
        out.push({ name: `${base}weight`, dtype: 'F16', shape: [M, K], data: halves(randomNormal(r, M * K, 0.05)) });
      } else if (family === 'b158' || family === 'a48') {
        out.push({ name: `${base}weight`, dtype: 'I8', shape: [M, K], data: randomTrits(r, M * K) });
        f32(`${base}scale`, [1], Float32Array.of(f16Value(1 / Math.sqrt((2 * K) / 3))));
      } else {
        const signs = Int8Array.from({ length: M * K }, () => (r() < 0.5 ? -1 : 1));
        out.push({ name: `${base}weight`, dtype: 'I8', shape: [M, K], data: signs });
        if (family === 'bitnet') f32(`${base}scale`, [1], Float32Array.of(f16Value(0.03)));
        if (family === 'fbi') { f32(`${base}alpha`, [K], randomNormal(r, K, 0.02)); f32(`${base}beta`, [K], randomNormal(r, K, 0.01)); }
        if (family === 'onebit') { f32(`${base}in_scale`, [K], randomNormal(r, K, 0.1)); f32(`${base}out_scale`, [M], randomNormal(r, M, 0.1)); }
      }
    }
  }
  return out;
}

let tmp: string;

/** Writes the fake tensors of `family` as safetensors and exports them as `type`; returns both paths. */
function exportFake(family: Family, type: ExportType, seed = 7): { st: string; gguf: string; input: SafetensorsInput[] } {
  const st = join(tmp, `${family}-${type}.safetensors`);
  const input = fakeTensors(family, seed);
  writeSafetensors(st, input, { family });
  const gguf = join(tmp, `${family}-${type}.gguf`);
  exportGguf({ family, type, config: CFG, tensors: readSafetensors(st), tokenizer: readSpmModel(TOKENIZER), out: gguf });
  return { st, gguf, input };
}

beforeAll(() => { tmp = mkdtempSync(join(tmpdir(), 'bitllm-convert-')); });
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

describe('safetensors', () => {
  it('round-trips tensors and metadata', () => {
    const a = Float32Array.of(1, -2.5, 3);
    const b = Int8Array.of(-1, 0, 1, 1);
    const path = join(tmp, 'x.safetensors');
    writeSafetensors(path, [{ name: 'a', dtype: 'F32', shape: [3], data: a }, { name: 'b.w', dtype: 'I8', shape: [2, 2], data: b }], { family: 'b158' });
    const f = readSafetensors(path);
    expect(f.metadata).toEqual({ family: 'b158' });
    expect([...f.tensors.keys()]).toEqual(['a', 'b.w']);
    expect(f.tensors.get('b.w')!.shape).toEqual([2, 2]);
    expect([...new Float32Array(f.tensors.get('a')!.data.slice().buffer)]).toEqual([...a]);
    expect([...new Int8Array(f.tensors.get('b.w')!.data.slice().buffer)]).toEqual([...b]);
  });

  it('rejects truncated files and inconsistent headers with ModelFormatError', () => {
    const good = encodeSafetensors([{ name: 'a', dtype: 'F32', shape: [2], data: Float32Array.of(1, 2) }]);
    expect(() => parseSafetensors(good.subarray(0, good.byteLength - 1))).toThrow(ModelFormatError);
    expect(() => parseSafetensors(good.subarray(0, 5))).toThrow(/too short/);
    const bad = (header: object) => {
      const h = new TextEncoder().encode(JSON.stringify(header));
      const b = new Uint8Array(8 + h.byteLength + 8);
      new DataView(b.buffer).setBigUint64(0, BigInt(h.byteLength), true);
      b.set(h, 8);
      return b;
    };
    expect(() => parseSafetensors(bad({ a: { dtype: 'F32', shape: [3], data_offsets: [0, 8] } }))).toThrow(/8 bytes for 3/);
    expect(() => parseSafetensors(bad({ a: { dtype: 'Q4', shape: [2], data_offsets: [0, 8] } }))).toThrow(/dtype/);
    expect(() => parseSafetensors(bad({ a: { dtype: 'F32', shape: [4], data_offsets: [0, 16] } }))).toThrow(/outside/);
  });
});

describe('Q1_0 codec', () => {
  it('packs signs LSB-first per 128-element block with an fp16 d first', () => {
    const M = 3;
    const K = 256;
    const r = rng(5);
    const signs = Int8Array.from({ length: M * K }, () => (r() < 0.5 ? -1 : 1));
    const scales = Float32Array.from({ length: M * 2 }, (_, i) => 0.25 * (i + 1));
    const enc = encodeQ1_0(signs, M, K, scales);
    expect(enc.byteLength).toBe(q1_0Bytes(M, K));
    // element 8j + i of block 0 of row 0 is bit i of byte 2 + j; d is the first two bytes
    expect(halfToFloat(enc[0]! | (enc[1]! << 8))).toBe(0.25);
    for (let e = 0; e < 128; e++) expect(((enc[2 + (e >> 3)]! >> (e & 7)) & 1) === 1).toBe(signs[e] === 1);
    const dec = decodeQ1_0(enc, M, K);
    expectSameInts(dec.signs, signs, 'signs');
    expect([...dec.blockScales]).toEqual([...scales]);
    expect(() => encodeQ1_0(Int8Array.from({ length: 128 }), 1, 128, 1)).toThrow(/not ±1/);
  });
});

describe('SentencePiece model reader', () => {
  it('reads train/tokenizer.model: BPE, byte fallback, identity normalization, llama-style ids', () => {
    const m = readSpmModel(TOKENIZER);
    expect(m.pieces).toHaveLength(4096);
    expect(m.modelType).toBe(2);
    expect(m.vocabSize).toBe(4096);
    expect(m.byteFallback).toBe(true);
    expect([m.unkId, m.bosId, m.eosId, m.padId]).toEqual([0, 1, 2, -1]);
    expect(m.normalizer).toMatchObject({ name: 'identity', addDummyPrefix: true, removeExtraWhitespaces: false });
    expect(m.pieces.slice(0, 4).map((p) => [p.piece, p.type])).toEqual([['<unk>', 2], ['<s>', 3], ['</s>', 3], ['<0x00>', 6]]);
    expect(m.pieces[258]).toEqual({ piece: '<0xFF>', score: 0, type: 6 });
    // BPE pieces score −rank
    expect(m.pieces[259]!.score).toBe(-0);
    expect(m.pieces[300]!.score).toBe(-41);
  });

  it('rejects bytes that are not a model', () => {
    expect(() => parseSpmModel(new Uint8Array([0xff, 0xff, 0xff]))).toThrow(ModelFormatError);
    expect(() => parseSpmModel(new Uint8Array(0))).toThrow(/no pieces/);
  });
});

describe('GGUF export of trained models', () => {
  // The attention families (the Mamba-2 ones: test/convert-bimamba.test.ts and train/check-mamba.mjs).
  const cases: Array<[Family, ExportType]> = (Object.entries(FAMILY_TYPES) as Array<[Family, readonly ExportType[]]>)
    .filter(([f]) => !MAMBA2_FAMILIES.includes(f))
    .flatMap(([f, types]) => types.map((t): [Family, ExportType] => [f, t]));

  it.each(cases)('%s as %s: names, shapes, types and values survive safetensors → GGUF', (family, type) => {
    const { gguf, input } = exportFake(family, type);
    const f = readGguf(gguf);
    const md = new GgufMetadata(f);
    const arch = architectureOf(family, type);
    expect(md.string('general.architecture')).toBe(arch);
    expect(md.number(`${arch}.block_count`)).toBe(CFG.n_layer);
    expect(md.number(`${arch}.attention.head_count_kv`)).toBe(CFG.n_head_kv);
    expect(md.string(`${arch}.hidden_activation`)).toBe('relu2');
    expect(md.string('tokenizer.ggml.model')).toBe('llama');
    expect(f.tensors).toHaveLength(2 + CFG.n_layer * (4 + 7 * (family === 'fbi' || family === 'onebit' ? 3 : 1)));

    const byName = new Map(f.tensors.map((t) => [t.name, t]));
    const src = new Map(input.map((t) => [t.name, t]));
    const bytes = (name: string) => { const t = byName.get(name)!; return f.bytes.subarray(t.offset, t.offset + t.nbytes); };
    expect(byName.get('token_embd.weight')).toMatchObject({ dims: [CFG.d, CFG.vocab], type: GGML.F16 });
    expect(Buffer.from(bytes('token_embd.weight')).equals(Buffer.from((src.get('token_embd.weight')!.data as Uint16Array).buffer))).toBe(true);
    for (let l = 0; l < CFG.n_layer; l++) {
      expect(byName.get(`blk.${l}.ffn_sub_norm.weight`)).toMatchObject({ dims: [CFG.ff], type: GGML.F32 });
      for (const n of PROJ) {
        const [M, K] = shape(n);
        const name = `blk.${l}.${n}.weight`;
        const t = byName.get(name)!;
        expect(t.dims, name).toEqual([K, M]);
        const want = src.get(name)!.data;
        const b = bytes(name);
        if (family === 'fp16') {
          expect(t.type).toBe(GGML.F16);
          expect(Buffer.from(b).equals(Buffer.from((want as Uint16Array).buffer))).toBe(true);
        } else if (family === 'b158' || family === 'a48') {
          const scale = (src.get(`blk.${l}.${n}.scale`)!.data as Float32Array)[0]!;
          if (type === 'i2_s') {
            expect(t.typeName).toBe('I2_S');
            const d = decodeI2S(b, M, K);
            expectSameInts(d.trits, want as Int8Array, name);
            expect(d.scale).toBe(scale);
          } else {
            expect(t.type).toBe(type === 'tq2_0' ? GGML.TQ2_0 : GGML.TQ1_0);
            const d = type === 'tq2_0' ? decodeTQ2(b, M, K) : decodeTQ1(b, M, K);
            expectSameInts(d.trits, want as Int8Array, name);
            expect(d.blockScales.every((s) => s === scale)).toBe(true);
          }
        } else {
          expect(t.type).toBe(GGML.Q1_0);
          const d = decodeQ1_0(b, M, K);
          expectSameInts(d.signs, want as Int8Array, name);
          const scale = family === 'bitnet' ? (src.get(`blk.${l}.${n}.scale`)!.data as Float32Array)[0]! : 1;
          expect(d.blockScales.every((s) => s === scale)).toBe(true);
          const extra = family === 'fbi' ? ['alpha', 'beta'] : family === 'onebit' ? ['in_scale', 'out_scale'] : [];
          for (const x of extra) {
            const xn = `blk.${l}.${n}.${x}`;
            expect(byName.get(xn)!.dims).toEqual([x === 'out_scale' ? M : K]);
            expect([...new Float32Array(bytes(xn).slice().buffer)]).toEqual([...(src.get(xn)!.data as Float32Array)]);
          }
        }
      }
    }
    // The architectures bitllm runs read as ReLU² BitNet models with our SentencePiece vocabulary.
    if (family === 'b158') {
      const cfg = configFromGguf(f);
      expect(cfg).toMatchObject({ nEmbd: CFG.d, nLayer: CFG.n_layer, nFf: CFG.ff, nVocab: CFG.vocab, activation: 'relu2', ropeTheta: CFG.rope_theta });
      const tok = Tokenizer.fromGguf(f);
      expect(tok.encode('Hello world', { addBos: true })).toEqual([1, 974, 336, 4003, 750]);
    }
  });

  it('b158 as I2_S, TQ2_0 and TQ1_0 gives the same logits in bitllm', async () => {
    const logits: Float32Array[] = [];
    for (const type of ['i2_s', 'tq2_0', 'tq1_0'] as const) {
      const model = await loadModel(exportFake('b158', type).gguf, { threads: 1, contextSize: 16 });
      try {
        const chunks: Float32Array[] = [];
        for await (const c of model.evaluate([1, 974, 336, 4003, 750])) chunks.push(c.logits.slice());
        logits.push(Float32Array.from(chunks.flatMap((c) => [...c])));
      } finally {
        await model.close();
      }
    }
    expect(logits[0]!.length).toBe(5 * CFG.vocab);
    expect(Buffer.from(logits[1]!.buffer).equals(Buffer.from(logits[0]!.buffer))).toBe(true);
    expect(Buffer.from(logits[2]!.buffer).equals(Buffer.from(logits[0]!.buffer))).toBe(true);
  });

  it('refuses impossible combinations and malformed tensors', () => {
    const tensors = readSafetensors(exportFake('b158', 'tq2_0').st);
    const tokenizer = readSpmModel(TOKENIZER);
    const out = join(tmp, 'bad.gguf');
    expect(() => exportGguf({ family: 'a48', type: 'i2_s', config: CFG, tensors, tokenizer, out })).toThrow(/cannot be written as i2_s/);
    expect(() => exportGguf({ family: 'bitnet', config: CFG, tensors, tokenizer, out })).toThrow(/not ±1|missing tensor/);
    expect(() => exportGguf({ family: 'b158', config: { ...CFG, vocab: 4000 }, tensors, tokenizer, out })).toThrow(/4096 pieces/);
    expect(() => exportGguf({ family: 'b158', config: { ...CFG, ff: 768 }, tensors, tokenizer, out })).toThrow(/shape/);
    // A TQ block scale must be an F16 value, or TQ2_0 would not reproduce the trained model.
    const input = fakeTensors('b158', 3).map((t) => (t.name === 'blk.0.attn_q.scale' ? { ...t, data: Float32Array.of(0.1) } : t));
    const st2 = join(tmp, 'b158-nonhalf.safetensors');
    writeSafetensors(st2, input);
    expect(() => exportGguf({ family: 'b158', type: 'tq2_0', config: CFG, tensors: readSafetensors(st2), tokenizer, out })).toThrow(/not an F16 value/);
    expect(() => exportGguf({ family: 'b158', type: 'i2_s', config: CFG, tensors: readSafetensors(st2), tokenizer, out })).not.toThrow();
  });
});
