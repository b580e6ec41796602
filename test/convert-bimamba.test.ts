// `bitllm convert` of Bi-Mamba checkpoints (lib/convert/hf-mamba.ts; tangshengku/bi-mamba's layout,
// ../shared/families.md §8): a seeded upstream checkpoint written here (config.json as mamba_ssm's MambaConfig,
// `backbone.*` tensors with latent float in/out projections + wscale/wbias, safetensors and torch.save) converts
// to exactly the tensors of the direct export of the same model (lib/convert/export.ts, the trainer's path) and
// to the logits of the reference block built from the upstream tensors themselves; the shipped
// models/tiny-bimamba-q1_0.gguf, written back in the upstream layout, converts to itself byte for byte; bad input
// gives a ModelFormatError naming the tensor or key. (The trainer-written upstream checkpoint of the trained
// model is checked by train/check-convert.sh, which needs python.)
import { copyFileSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { ModelFormatError } from '../lib/errors.js';
import { type Mamba2TrainedConfig, exportGguf } from '../lib/convert/export.js';
import { convertCheckpoint } from '../lib/convert/hf.js';
import { decodeQ1_0 } from '../lib/convert/q1_0.js';
import { type SafetensorsInput, writeSafetensors } from '../lib/convert/safetensors.js';
import { readSpmModel } from '../lib/convert/spm-model.js';
import { type GgufFile, readGguf } from '../lib/format/gguf.js';
import { GGML } from '../lib/format/types.js';
import {
  type Mamba2Weights, loadMamba2Weights, mamba2ConfigFromGguf, mamba2ModelState, mamba2ReferenceForward,
} from '../lib/model/mamba2.js';
import { floatToHalf, halfToFloat } from '../lib/reference/numeric.js';
import { torchBin } from './hf-fixtures.js';
import { randomNormal, rng } from './helpers.js';

const TOKENIZER = fileURLToPath(new URL('../train/tokenizer.model', import.meta.url));
const SHIPPED = fileURLToPath(new URL('../models/tiny-bimamba-q1_0.gguf', import.meta.url));
/** Two groups, so that the group count reaches the gated norm's tensor shape. */
const S = { vocab: 4096, d: 128, nLayer: 2, expand: 2, headdim: 64, dState: 16, nGroups: 2, dConv: 4 };
const D_INNER = S.expand * S.d;
const HEADS = D_INNER / S.headdim;
const CONV_DIM = D_INNER + 2 * S.nGroups * S.dState;
const IN_DIM = 2 * D_INNER + 2 * S.nGroups * S.dState + HEADS;
const ZEROS = 3;

interface Upstream {
  config: Record<string, unknown>;
  /** Tensors under their upstream names (lm_head.weight included: a copy of the embedding). */
  hf: SafetensorsInput[];
  /** The export tensors (GGUF names) train/evaluate.py writes for the same model. */
  expected: SafetensorsInput[];
  cfg: Mamba2TrainedConfig;
}

const f32 = (name: string, shape: number[], data: Float32Array | Float64Array): SafetensorsInput =>
  ({ name, dtype: data instanceof Float64Array ? 'F64' : 'F32', shape, data });

function upstreamConfig(over: Record<string, unknown> = {}, ssm: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    d_model: S.d, d_intermediate: 0, n_layer: S.nLayer, vocab_size: S.vocab,
    ssm_cfg: { layer: 'Mamba2', d_state: S.dState, d_conv: S.dConv, expand: S.expand, headdim: S.headdim, ngroups: S.nGroups, ...ssm },
    attn_layer_idx: [], attn_cfg: {}, rms_norm: true, residual_in_fp32: true, fused_add_norm: true, pad_vocab_size_multiple: 16, tie_embeddings: true,
    ...over,
  };
}

/** A seeded Bi-Mamba in the upstream layout, and the export tensors it must convert to. */
function upstream(seed: number): Upstream {
  const r = rng(seed);
  const uni = (n: number, lo: number, hi: number) => Float32Array.from({ length: n }, () => lo + (hi - lo) * r());
  const hf: SafetensorsInput[] = [];
  const ex: SafetensorsInput[] = [];
  const embed = randomNormal(r, S.vocab * S.d, 0.5);
  hf.push(f32('backbone.embedding.weight', [S.vocab, S.d], embed));
  ex.push({ name: 'token_embd.weight', dtype: 'F16', shape: [S.vocab, S.d], data: Uint16Array.from(embed, (x) => floatToHalf(x)) });
  const normF = uni(S.d, 0.8, 1.2);
  hf.push(f32('backbone.norm_f.weight', [S.d], normF));
  ex.push(f32('output_norm.weight', [S.d], normF));
  for (let l = 0; l < S.nLayer; l++) {
    const L = `backbone.layers.${l}.`;
    const X = `${L}mixer.`;
    const p = `blk.${l}.`;
    const norm = uni(S.d, 0.8, 1.2);
    hf.push(f32(`${L}norm.weight`, [S.d], norm));
    ex.push(f32(`${p}attn_norm.weight`, [S.d], norm));
    const fbi = (name: string, gguf: string, M: number, K: number) => {
      const latent = randomNormal(r, M * K, 0.05);
      if (l === 0 && name === 'in_proj') for (let i = 0; i < ZEROS; i++) latent[7 + 101 * i] = 0; // sign(0) upstream is 0: stored +1
      const alpha = uni(K, 0.5 / Math.sqrt(K), 1.5 / Math.sqrt(K));
      const beta = uni(K, -0.1 / Math.sqrt(K), 0.1 / Math.sqrt(K));
      hf.push(f32(`${X}${name}.weight`, [M, K], latent), f32(`${X}${name}.wscale`, [1, K], alpha), f32(`${X}${name}.wbias`, [1, K], beta));
      ex.push({ name: `${p}${gguf}.weight`, dtype: 'I8', shape: [M, K], data: Int8Array.from(latent, (v) => (v >= 0 ? 1 : -1)) },
        f32(`${p}${gguf}.alpha`, [K], alpha), f32(`${p}${gguf}.beta`, [K], beta));
    };
    fbi('in_proj', 'ssm_in', IN_DIM, S.d);
    const conv = uni(CONV_DIM * S.dConv, -0.5, 0.5);
    const convBias = uni(CONV_DIM, -0.1, 0.1);
    hf.push(f32(`${X}conv1d.weight`, [CONV_DIM, 1, S.dConv], conv), f32(`${X}conv1d.bias`, [CONV_DIM], convBias));
    ex.push(f32(`${p}ssm_conv1d.weight`, [CONV_DIM, S.dConv], conv), f32(`${p}ssm_conv1d.bias`, [CONV_DIM], convBias));
    // Mamba-2's init: dt in [0.001, 0.1] (dt_bias = softplus⁻¹), A in [1, 16]
    const dtBias = Float32Array.from({ length: HEADS }, () => { const dt = Math.exp(Math.log(0.001) + r() * Math.log(100)); return dt + Math.log(-Math.expm1(-dt)); });
    const aLog = Float32Array.from({ length: HEADS }, () => Math.log(1 + 15 * r()));
    const dSkip = uni(HEADS, 0.5, 1.5);
    hf.push(f32(`${X}dt_bias`, [HEADS], dtBias), f32(`${X}A_log`, [HEADS], aLog), f32(`${X}D`, [HEADS], dSkip));
    ex.push(f32(`${p}ssm_dt.bias`, [HEADS], dtBias), f32(`${p}ssm_a`, [HEADS], Float32Array.from(aLog, (v) => -Math.exp(v))), f32(`${p}ssm_d`, [HEADS], dSkip));
    const gnorm = uni(D_INNER, 0.8, 1.2);
    hf.push(f32(`${X}norm.weight`, [D_INNER], gnorm));
    ex.push(f32(`${p}ssm_norm.weight`, [D_INNER], gnorm));
    fbi('out_proj', 'ssm_out', S.d, D_INNER);
  }
  hf.push(f32('lm_head.weight', [S.vocab, S.d], embed.slice()));
  const cfg: Mamba2TrainedConfig = {
    block: 'mamba2', vocab: S.vocab, d_model: S.d, n_layer: S.nLayer, d_inner: D_INNER, d_state: S.dState, n_head: HEADS, n_group: S.nGroups,
    d_conv: S.dConv, ctx: 2048, eps: 1e-5, norm_eps: 1e-5,
  };
  return { config: upstreamConfig(), hf, expected: ex, cfg };
}

let tmp: string;
let fx: Upstream;
let n = 0;

/** Writes an upstream folder: config.json, tokenizer.model and the tensors (safetensors without the tied lm_head, or torch.save). */
function writeFolder(config: Record<string, unknown>, tensors: SafetensorsInput[], format: 'safetensors' | 'bin'): string {
  const dir = join(tmp, `ckpt-${n++}`);
  mkdirSync(dir);
  writeFileSync(join(dir, 'config.json'), JSON.stringify(config));
  copyFileSync(TOKENIZER, join(dir, 'tokenizer.model'));
  if (format === 'bin') writeFileSync(join(dir, 'pytorch_model.bin'), torchBin(tensors));
  else writeSafetensors(join(dir, 'model.safetensors'), tensors.filter((t) => t.name !== 'lm_head.weight'));
  return dir;
}

function tensorBytes(f: GgufFile, name: string): Uint8Array {
  const t = f.tensors.find((x) => x.name === name)!;
  return f.bytes.subarray(t.offset, t.offset + t.nbytes);
}

/** Every tensor of `got` has the name, type, dims and bytes of `want`'s. */
function expectSameTensors(got: GgufFile, want: GgufFile): void {
  expect(got.tensors.map((t) => t.name)).toEqual(want.tensors.map((t) => t.name));
  for (const w of want.tensors) {
    const g = got.tensors.find((t) => t.name === w.name)!;
    expect([g.type, g.dims], w.name).toEqual([w.type, w.dims]);
    expect(Buffer.from(tensorBytes(got, w.name)).equals(Buffer.from(tensorBytes(want, w.name))), w.name).toBe(true);
  }
}

/** Runs fn: it must throw a ModelFormatError matching `pattern`. */
function rejects(fn: () => unknown, pattern: RegExp): void {
  let err: unknown;
  try { fn(); } catch (e) { err = e; }
  expect(err).toBeInstanceOf(ModelFormatError);
  expect((err as Error).message).toMatch(pattern);
}

beforeAll(() => {
  tmp = mkdtempSync(join(tmpdir(), 'bitllm-bimamba-'));
  fx = upstream(11);
});
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

describe('bitllm convert: Bi-Mamba checkpoints', () => {
  it('convert (safetensors and torch.save) to exactly the direct export of the same model', () => {
    const direct = join(tmp, 'direct.gguf');
    exportGguf({ family: 'bimamba', config: fx.cfg, tensors: { source: 'expected', tensors: new Map(fx.expected.map((t) => [t.name, { ...t, data: new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength) }])), metadata: {} }, tokenizer: readSpmModel(TOKENIZER), out: direct });
    const want = readGguf(direct);
    expect(want.tensors).toHaveLength(2 + 13 * S.nLayer);
    for (const format of ['safetensors', 'bin'] as const) {
      const dir = writeFolder(fx.config, fx.hf, format);
      const out = join(tmp, `converted-${format}.gguf`);
      const r = convertCheckpoint({ dir, out });
      expect(r).toMatchObject({ layout: 'bi-mamba', family: 'bimamba', arch: 'bi-mamba', type: 'q1_0', tensors: 2 + 13 * S.nLayer });
      expect(r.findings.zeroLatentWeights).toBe(ZEROS);
      expect(r.findings.zeroLatentTensors).toEqual({ 'backbone.layers.0.mixer.in_proj.weight': ZEROS });
      const got = readGguf(out);
      expectSameTensors(got, want);
      const cfg = mamba2ConfigFromGguf(got);
      expect(cfg).toMatchObject({ arch: 'bi-mamba', dModel: S.d, dInner: D_INNER, dState: S.dState, nHeads: HEADS, nGroups: S.nGroups, dConv: S.dConv, nLayer: S.nLayer, nVocab: S.vocab });
      const norm = got.tensors.find((t) => t.name === 'blk.0.ssm_norm.weight')!;
      expect(norm.dims).toEqual([D_INNER / S.nGroups, S.nGroups]);
      expect(got.tensors.find((t) => t.name === 'blk.0.ssm_conv1d.weight')!.dims).toEqual([S.dConv, CONV_DIM]);
      expect(got.tensors.find((t) => t.name === 'blk.0.ssm_in.weight')!.type).toBe(GGML.Q1_0);
    }
  });

  it('gives the logits of the reference block built from the upstream tensors themselves', () => {
    const dir = writeFolder(fx.config, fx.hf, 'safetensors');
    const out = join(tmp, 'logits.gguf');
    convertCheckpoint({ dir, out });
    const file = readGguf(out);
    const cfg = mamba2ConfigFromGguf(file);
    const w = loadMamba2Weights(file, cfg);
    // The same model read straight from the upstream arrays: A_log as it is, conv [convDim, 1, K] as the
    // reference's [convDim, K], signs of the latent weights, α/β from wscale/wbias; the embedding rounded to F16
    // (what the GGUF holds).
    const hf = new Map(fx.hf.map((t) => [t.name, t.data as Float32Array]));
    const fbi = (base: string, M: number, K: number) => ({
      M, K, signs: Int8Array.from(hf.get(`${base}.weight`)!, (v) => (v >= 0 ? 1 : -1)), alpha: hf.get(`${base}.wscale`)!, beta: hf.get(`${base}.wbias`)!,
    });
    const ref: Mamba2Weights = {
      embd: Float32Array.from(hf.get('backbone.embedding.weight')!, (v) => halfToFloat(floatToHalf(v))), output: null,
      outputNorm: hf.get('backbone.norm_f.weight')!,
      layers: Array.from({ length: S.nLayer }, (_, l) => {
        const X = `backbone.layers.${l}.mixer.`;
        return {
          norm: hf.get(`backbone.layers.${l}.norm.weight`)!, inProj: fbi(`${X}in_proj`, IN_DIM, S.d), outProj: fbi(`${X}out_proj`, S.d, D_INNER),
          convWeight: hf.get(`${X}conv1d.weight`)!, convBias: hf.get(`${X}conv1d.bias`)!, dtBias: hf.get(`${X}dt_bias`)!,
          ALog: Float64Array.from(hf.get(`${X}A_log`)!), D: hf.get(`${X}D`)!, normWeight: hf.get(`${X}norm.weight`)!,
        };
      }),
    };
    const tokens = [1, 450, 17, 3999, 812, 812, 5, 2048, 77, 3000, 260, 1023];
    const got = mamba2ReferenceForward(cfg, w, tokens, mamba2ModelState(cfg));
    const want = mamba2ReferenceForward(cfg, ref, tokens, mamba2ModelState(cfg));
    let scale = 0;
    let diff = 0;
    for (let i = 0; i < want.length; i++) { scale = Math.max(scale, Math.abs(want[i]!)); diff = Math.max(diff, Math.abs(got[i]! - want[i]!)); }
    expect(scale).toBeGreaterThan(0.1);
    // The only rounding between the two: A = −exp(A_log) stored as f32 (relative 2⁻²⁴).
    expect(diff / scale).toBeLessThan(1e-5);
  });

  it('writes the shipped tiny Bi-Mamba back from its upstream layout byte for byte', () => {
    const shipped = readGguf(SHIPPED);
    const cfg = mamba2ConfigFromGguf(shipped);
    const values = (name: string): Float32Array => {
      const t = shipped.tensors.find((x) => x.name === name)!;
      const b = tensorBytes(shipped, name);
      const dv = new DataView(b.buffer, b.byteOffset, b.byteLength);
      const count = t.dims.reduce((a, d) => a * d, 1);
      return t.type === GGML.F16 ? Float32Array.from({ length: count }, (_, i) => halfToFloat(dv.getUint16(2 * i, true)))
        : Float32Array.from({ length: count }, (_, i) => dv.getFloat32(4 * i, true));
    };
    const r = rng(3);
    const hf: SafetensorsInput[] = [f32('backbone.embedding.weight', [cfg.nVocab, cfg.dModel], values('token_embd.weight')),
      f32('backbone.norm_f.weight', [cfg.dModel], values('output_norm.weight'))];
    const convDim = cfg.dInner + 2 * cfg.nGroups * cfg.dState;
    for (let l = 0; l < cfg.nLayer; l++) {
      const L = `backbone.layers.${l}.`;
      const X = `${L}mixer.`;
      const p = `blk.${l}.`;
      const lin = (up: string, gguf: string, M: number, K: number) => {
        const { signs } = decodeQ1_0(tensorBytes(shipped, `${p}${gguf}.weight`), M, K);
        // latent weights of the right signs and arbitrary magnitudes
        hf.push(f32(`${X}${up}.weight`, [M, K], Float32Array.from(signs, (s) => s * (0.001 + r()))),
          f32(`${X}${up}.wscale`, [1, K], values(`${p}${gguf}.alpha`)), f32(`${X}${up}.wbias`, [1, K], values(`${p}${gguf}.beta`)));
      };
      hf.push(f32(`${L}norm.weight`, [cfg.dModel], values(`${p}attn_norm.weight`)));
      lin('in_proj', 'ssm_in', 2 * cfg.dInner + 2 * cfg.nGroups * cfg.dState + cfg.nHeads, cfg.dModel);
      hf.push(f32(`${X}conv1d.weight`, [convDim, 1, cfg.dConv], values(`${p}ssm_conv1d.weight`)), f32(`${X}conv1d.bias`, [convDim], values(`${p}ssm_conv1d.bias`)));
      // A_log in float64: −exp(A_log) rounds back to the stored f32 A
      hf.push(f32(`${X}dt_bias`, [cfg.nHeads], values(`${p}ssm_dt.bias`)), f32(`${X}A_log`, [cfg.nHeads], Float64Array.from(values(`${p}ssm_a`), (a) => Math.log(-a))),
        f32(`${X}D`, [cfg.nHeads], values(`${p}ssm_d`)), f32(`${X}norm.weight`, [cfg.dInner], values(`${p}ssm_norm.weight`)));
      lin('out_proj', 'ssm_out', cfg.dModel, cfg.dInner);
    }
    const config = upstreamConfig({ d_model: cfg.dModel, n_layer: cfg.nLayer, vocab_size: cfg.nVocab },
      { d_state: cfg.dState, d_conv: cfg.dConv, expand: cfg.dInner / cfg.dModel, headdim: cfg.dInner / cfg.nHeads, ngroups: cfg.nGroups });
    const out = join(tmp, 'shipped.gguf');
    convertCheckpoint({ dir: writeFolder(config, hf, 'safetensors'), out });
    const got = readGguf(out);
    expectSameTensors(got, shipped);
    const tokens = [1, 450, 17, 3999, 812, 260];
    const a = mamba2ReferenceForward(cfg, loadMamba2Weights(shipped, cfg), tokens, mamba2ModelState(cfg));
    const b = mamba2ReferenceForward(mamba2ConfigFromGguf(got), loadMamba2Weights(got, mamba2ConfigFromGguf(got)), tokens, mamba2ModelState(cfg));
    expect(Buffer.from(b.buffer).equals(Buffer.from(a.buffer))).toBe(true);
  });

  it('rejects bad checkpoints with a ModelFormatError naming the tensor or key', () => {
    const out = join(tmp, 'bad.gguf');
    const conv = (dir: string) => () => convertCheckpoint({ dir, out });
    const without = (name: string) => fx.hf.filter((t) => t.name !== name);
    const replaced = (name: string, t: Partial<SafetensorsInput>) => fx.hf.map((x) => (x.name === name ? { ...x, ...t } : x));
    rejects(conv(writeFolder(fx.config, without('backbone.layers.1.mixer.D'), 'safetensors')), /missing tensor 'backbone\.layers\.1\.mixer\.D'/);
    rejects(conv(writeFolder(fx.config, without('backbone.norm_f.weight'), 'bin')), /missing tensor 'backbone\.norm_f\.weight'/);
    // state size: in_proj's rows (and the conv's channels) follow d_state
    rejects(conv(writeFolder(upstreamConfig({}, { d_state: 32 }), fx.hf, 'safetensors')),
      /'backbone\.layers\.0\.mixer\.in_proj\.weight' has shape \[580, 128\], expected \[644, 128\].*d_state 32/);
    // head count: headdim 32 makes 8 heads, the tensors have 4
    rejects(conv(writeFolder(upstreamConfig({}, { headdim: 32 }), fx.hf, 'safetensors')), /'backbone\.layers\.0\.mixer\.A_log' has shape \[4\], expected 8 values.*heads 8/);
    // a conv weight without its depthwise axis, or with the taps first
    const convData = fx.hf.find((t) => t.name === 'backbone.layers.1.mixer.conv1d.weight')!.data;
    rejects(conv(writeFolder(fx.config, replaced('backbone.layers.1.mixer.conv1d.weight', { shape: [CONV_DIM, S.dConv] }), 'safetensors')),
      /'backbone\.layers\.1\.mixer\.conv1d\.weight' has shape \[320, 4\], expected \[320, 1, 4\]/);
    rejects(conv(writeFolder(fx.config, replaced('backbone.layers.1.mixer.conv1d.weight', { shape: [S.dConv, 1, CONV_DIM], data: convData }), 'bin')),
      /'backbone\.layers\.1\.mixer\.conv1d\.weight' has shape \[4, 1, 320\]/);
    const nanALog = Float32Array.of(0.5, NaN, 1, 2);
    rejects(conv(writeFolder(fx.config, replaced('backbone.layers.0.mixer.A_log', { data: nanALog }), 'safetensors')), /'backbone\.layers\.0\.mixer\.A_log' element 1 is NaN/);
    const outW = fx.hf.find((t) => t.name === 'backbone.layers.1.mixer.out_proj.weight')!;
    rejects(conv(writeFolder(fx.config, replaced('backbone.layers.1.mixer.out_proj.weight', { data: new Float32Array(outW.shape.reduce((a, b) => a * b, 1)) }), 'safetensors')),
      /linear tensor 'backbone\.layers\.1\.mixer\.out_proj\.weight' is entirely zero/);
    rejects(conv(writeFolder(upstreamConfig({ d_intermediate: 512 }), fx.hf, 'safetensors')), /'d_intermediate' = 512/);
    rejects(conv(writeFolder(upstreamConfig({}, { norm_before_gate: true }), fx.hf, 'safetensors')), /'ssm_cfg\.norm_before_gate' = true/);
    rejects(conv(writeFolder(upstreamConfig({ n_layer: 1 }), fx.hf, 'safetensors')), /'backbone\.layers\.1\..*beyond config\.json's n_layer 1/);
    const { d_model: _, ...noDModel } = fx.config;
    rejects(conv(writeFolder(noDModel, fx.hf, 'safetensors')), /missing key 'd_model'/);
    const untied = randomNormal(rng(9), S.vocab * S.d, 0.5);
    rejects(conv(writeFolder(fx.config, replaced('lm_head.weight', { data: untied }), 'bin')), /'lm_head\.weight' differs from backbone\.embedding\.weight/);
    rejects(conv(writeFolder(fx.config, [...fx.hf, f32('backbone.layers.0.mixer.in_proj.bias', [IN_DIM], new Float32Array(IN_DIM))], 'safetensors')),
      /'backbone\.layers\.0\.mixer\.in_proj\.bias': projections with a bias are not supported/);
    rejects(() => convertCheckpoint({ dir: writeFolder(fx.config, fx.hf, 'safetensors'), out, type: 'i2_s' }), /bi-mamba converts to q1_0, not i2_s/);
  });
});
