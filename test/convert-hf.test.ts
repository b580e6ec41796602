// `bitllm convert` (lib/convert/hf.ts): Hugging Face checkpoint folders in each upstream layout, written here
// at test time (test/hf-fixtures.ts: safetensors, sharded, torch.save zip + pickle), convert to the same GGUF
// tensors as the direct export of the same model (lib/convert/export.ts, what the trainer uses) and to the
// same logits; bad input (config keys, shapes, dtypes, hostile pickles, truncated archives, all-zero tensors)
// gives a ModelFormatError naming what is wrong; the restricted unpickler survives fuzzing.
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { loadModel } from '../lib/api.js';
import { ModelFormatError } from '../lib/errors.js';
import { exportGguf } from '../lib/convert/export.js';
import { PACKED_SCALE_DIRECTION, convertCheckpoint } from '../lib/convert/hf.js';
import { type SafetensorsInput, encodeSafetensors, parseSafetensors } from '../lib/convert/safetensors.js';
import { readSpmModel } from '../lib/convert/spm-model.js';
import { UnsafePickleError, indexTorchBin, unpickle } from '../lib/convert/torch-bin.js';
import { GgufMetadata, readGguf } from '../lib/format/gguf.js';
import { KernelContext } from '../lib/kernels/context.js';
import { configFromGguf } from '../lib/model/config.js';
import { loadWeights } from '../lib/model/weights.js';
import { Tokenizer } from '../lib/tokenizer/index.js';
import { type FixtureFormat, type FixtureLayout, type HfFixture, PickleBuilder, hfFixture, pickleStateDict, torchBin, writeHfFolder, zipStored } from './hf-fixtures.js';
import { rng, runProcess } from './helpers.js';

const MAIN = fileURLToPath(new URL('../dist/cli/main.js', import.meta.url));

const TOKENIZER = fileURLToPath(new URL('../train/tokenizer.model', import.meta.url));
const SHAPE = { vocab: 4096, d: 256, n_layer: 2, n_head: 4, n_head_kv: 2, ff: 512 };
/** Bad-input cases: the smallest shape every type accepts (K multiple of 128). */
const SMALL = { vocab: 4096, d: 128, n_layer: 1, n_head: 2, n_head_kv: 1, ff: 256 };
/** Lets the vitest worker report between long synchronous steps. */
const tick = () => new Promise((resolve) => setImmediate(resolve));
/** Runs fn once (after letting the worker report): it must throw a ModelFormatError matching `pattern`. */
async function rejects(fn: () => unknown, pattern: RegExp): Promise<void> {
  await tick();
  let err: unknown;
  try { fn(); } catch (e) { err = e; }
  expect(err).toBeInstanceOf(ModelFormatError);
  expect((err as Error).message).toMatch(pattern);
}
const PROMPT = [1, 974, 336, 4003, 750, 17, 2049];

let tmp: string;
beforeAll(() => { tmp = mkdtempSync(join(tmpdir(), 'bitllm-convert-hf-')); });
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

let serial = 0;
/** Writes the fixture as an HF folder with train/tokenizer.model; returns the folder. */
function folder(fx: HfFixture, format: FixtureFormat): string {
  const dir = join(tmp, `hf-${serial++}`);
  writeHfFolder(dir, fx, format);
  copyFileSync(TOKENIZER, join(dir, 'tokenizer.model'));
  return dir;
}

/** The trainer's direct export of the fixture's model. */
function directExport(fx: HfFixture, type: 'i2_s' | 'tq2_0' | 'tq1_0' | 'q1_0'): string {
  const out = join(tmp, `direct-${serial++}.gguf`);
  const family = fx.expected.some((t) => t.name.endsWith('.alpha')) ? 'fbi' : fx.expected.some((t) => t.name.endsWith('.in_scale')) ? 'onebit' : 'b158';
  exportGguf({ family, type, config: fx.cfg, tensors: parseSafetensors(encodeSafetensors(fx.expected)), tokenizer: readSpmModel(TOKENIZER), out });
  return out;
}

function expectSameTensors(got: string, want: string): void {
  const a = readGguf(got);
  const b = readGguf(want);
  expect(a.tensors.map((t) => [t.name, t.type, t.dims])).toEqual(b.tensors.map((t) => [t.name, t.type, t.dims]));
  for (let i = 0; i < a.tensors.length; i++) {
    const x = a.tensors[i]!;
    const y = b.tensors[i]!;
    const same = Buffer.from(a.bytes.subarray(x.offset, x.offset + x.nbytes)).equals(Buffer.from(b.bytes.subarray(y.offset, y.offset + y.nbytes)));
    expect(same, `tensor ${x.name}`).toBe(true);
  }
  const ma = new GgufMetadata(a);
  const mb = new GgufMetadata(b);
  const arch = mb.string('general.architecture');
  expect(ma.string('general.architecture')).toBe(arch);
  for (const k of ['block_count', 'embedding_length', 'feed_forward_length', 'attention.head_count', 'attention.head_count_kv', 'rope.freq_base', 'attention.layer_norm_rms_epsilon', 'context_length'])
    expect(ma.number(`${arch}.${k}`), k).toBe(mb.number(`${arch}.${k}`));
  expect(ma.string(`${arch}.hidden_activation`)).toBe(mb.string(`${arch}.hidden_activation`));
}

async function logits(path: string): Promise<Float32Array> {
  const model = await loadModel(path, { threads: 1, contextSize: 16 });
  try {
    const chunks: number[] = [];
    for await (const c of model.evaluate(PROMPT)) chunks.push(...c.logits);
    return Float32Array.from(chunks);
  } finally {
    await model.close();
  }
}

const CASES: Array<[FixtureLayout, FixtureFormat, 'i2_s' | 'tq2_0' | 'tq1_0' | 'q1_0']> = [
  ['1bitllm', 'safetensors', 'i2_s'],
  ['1bitllm', 'sharded', 'tq2_0'],
  ['1bitllm', 'bin', 'tq1_0'],
  ['bitnet-2b4t-master', 'safetensors', 'i2_s'],
  ['bitnet-2b4t-packed', 'safetensors', 'i2_s'],
  ['bitnet-2b4t-packed', 'sharded', 'tq2_0'],
  ['fbi-llm', 'bin', 'q1_0'],
  ['fbi-llm', 'bin-sharded', 'q1_0'],
  ['fbi-llm', 'safetensors', 'q1_0'],
  ['onebit', 'safetensors', 'q1_0'],
  ['onebit', 'bin', 'q1_0'],
];

describe('bitllm convert: upstream layouts → the direct export', () => {
  it.each(CASES)('%s (%s) as %s: the same tensors and hyperparameters', async (layout, format, type) => {
    const fx = hfFixture(layout, 11, SHAPE);
    const dir = folder(fx, format);
    await tick();
    const out = join(tmp, `conv-${serial++}.gguf`);
    const r = convertCheckpoint({ dir, out, type });
    await tick();
    expect(r.layout).toBe(layout);
    expectSameTensors(out, directExport(fx, type));
    if (layout === 'fbi-llm') {
      expect(fx.zeros).toBeGreaterThan(0);
      expect(r.findings.zeroLatentWeights).toBe(fx.zeros);
      expect(Object.values(r.findings.zeroLatentTensors).reduce((a, b) => a + b, 0)).toBe(fx.zeros);
    }
    if (layout === 'bitnet-2b4t-packed') expect(r.findings.scaleDirection).toBe(PACKED_SCALE_DIRECTION);
  });

  it.each([['1bitllm', 'i2_s'], ['bitnet-2b4t-packed', 'tq2_0'], ['fbi-llm', 'q1_0'], ['onebit', 'q1_0']] as const)(
    '%s: the converted GGUF loads and its logits equal the direct export\'s bit for bit', async (layout, type) => {
      const fx = hfFixture(layout, 5, SHAPE);
      const out = join(tmp, `conv-${serial++}.gguf`);
      convertCheckpoint({ dir: folder(fx, layout === 'fbi-llm' ? 'bin' : 'safetensors'), out, type });
      const got = await logits(out);
      const want = await logits(directExport(fx, type));
      expect(got.length).toBe(PROMPT.length * SHAPE.vocab);
      expect(got.every(Number.isFinite)).toBe(true);
      expect(Buffer.from(got.buffer).equals(Buffer.from(want.buffer))).toBe(true);
      if (layout === '1bitllm') {
        // An untied head: output.weight runs as F16T32 tiles, token_embd stays the file's F16 rows (only looked up).
        const f = readGguf(out);
        const w = loadWeights(new KernelContext({ threads: 1 }), f, configFromGguf(f));
        expect(w.output.kind).toBe('f16t');
        expect(w.tokEmbd.kind).toBe('f16');
        expect(w.tokEmbd.m.data.buffer).toBe(f.bytes.buffer);
      }
    });

  it('a packed checkpoint whose quantization_config says autobitlinear multiplies by weight_scale', () => {
    const fx = hfFixture('bitnet-2b4t-packed', 3, SHAPE);
    (fx.config['quantization_config'] as Record<string, unknown>)['linear_class'] = 'autobitlinear';
    // The same ternary scales under multiplication: store the scale itself.
    const scales = new Map(fx.expected.filter((t) => t.name.endsWith('.scale')).map((t) => [t.name, (t.data as Float32Array)[0]!]));
    let i = 0;
    for (const t of fx.hf) {
      if (!t.name.endsWith('.weight_scale')) continue;
      const s = [...scales.values()][i++]!;
      t.data = Uint16Array.of(new Uint32Array(Float32Array.of(s).buffer)[0]! >>> 16);
    }
    const out = join(tmp, `conv-${serial++}.gguf`);
    const r = convertCheckpoint({ dir: folder(fx, 'safetensors'), out, type: 'i2_s' });
    expect(r.findings.scaleDirection).toBe('multiply');
    expectSameTensors(out, directExport(fx, 'i2_s'));
  });

  it('--scale-reference settles the packed weight_scale direction against the float master', () => {
    const master = hfFixture('bitnet-2b4t-master', 6, SMALL);
    const masterDir = folder(master, 'safetensors');
    /** The packed checkpoint of the master's own trits, weight_scale = f(ternary scale) as F32. */
    const packedOf = (f: (scale: number) => number, linearClass: string) => {
      const byName = new Map(master.expected.map((t) => [t.name, t]));
      const hf: SafetensorsInput[] = master.hf.filter((t) => !/_proj\.weight$/.test(t.name));
      const proj: Record<string, string> = { attn_q: 'self_attn.q_proj', attn_k: 'self_attn.k_proj', attn_v: 'self_attn.v_proj', attn_output: 'self_attn.o_proj', ffn_gate: 'mlp.gate_proj', ffn_up: 'mlp.up_proj', ffn_down: 'mlp.down_proj' };
      for (let l = 0; l < SMALL.n_layer; l++) {
        for (const [p, hp] of Object.entries(proj)) {
          const w = byName.get(`blk.${l}.${p}.weight`)!;
          const [M, K] = w.shape as [number, number];
          const trits = w.data as Int8Array;
          const packed = new Uint8Array((M / 4) * K);
          for (let m = 0; m < M; m++) for (let k = 0; k < K; k++) packed[(m % (M / 4)) * K + k]! |= (trits[m * K + k]! + 1) << (2 * Math.floor(m / (M / 4)));
          const scale = (byName.get(`blk.${l}.${p}.scale`)!.data as Float32Array)[0]!;
          hf.push({ name: `model.layers.${l}.${hp}.weight`, dtype: 'U8', shape: [M / 4, K], data: packed });
          hf.push({ name: `model.layers.${l}.${hp}.weight_scale`, dtype: 'F32', shape: [1], data: Float32Array.of(f(scale)) });
        }
      }
      const fx: HfFixture = { ...master, hf, config: { ...master.config, quantization_config: { quant_method: 'bitnet', linear_class: linearClass } } };
      return folder(fx, 'safetensors');
    };
    // Stored as 1/γ while the config claims autobitlinear: the master wins, and the result is the master's export.
    const out = join(tmp, `conv-${serial++}.gguf`);
    const r = convertCheckpoint({ dir: packedOf((s) => 1 / s, 'autobitlinear'), out, type: 'i2_s', scaleReference: masterDir });
    expect(r.findings.scaleDirection).toBe('divide');
    expect(r.findings.scaleCheck!.masterMeanAbs * r.findings.scaleCheck!.weightScale).toBeCloseTo(1, 2);
    expectSameTensors(out, directExport(master, 'i2_s'));
    const m = convertCheckpoint({ dir: packedOf((s) => s, 'bitlinear'), out: join(tmp, `conv-${serial++}.gguf`), scaleReference: masterDir });
    expect(m.findings.scaleDirection).toBe('multiply');
    expect(() => convertCheckpoint({ dir: packedOf((s) => 3 * s, 'bitlinear'), out: join(tmp, 'x.gguf'), scaleReference: masterDir }))
      .toThrow(/matches neither 1\/mean\|W\| nor mean\|W\|.*not the same model or revision/);
    expect(() => convertCheckpoint({ dir: masterDir, out: join(tmp, 'x.gguf'), scaleReference: masterDir })).toThrow(/applies to packed 2B-4T checkpoints/);
  });

  it('grows a SentencePiece vocabulary to the model\'s rows with added_tokens.json, then unused padding', () => {
    const fx = hfFixture('1bitllm', 2, { ...SHAPE, vocab: 4100 });
    const dir = folder(fx, 'safetensors');
    writeFileSync(join(dir, 'added_tokens.json'), JSON.stringify({ '<pad>': 4096, '<extra>': 4097 }));
    const out = join(tmp, `conv-${serial++}.gguf`);
    convertCheckpoint({ dir, out });
    const md = new GgufMetadata(readGguf(out));
    const tokens = md.strings('tokenizer.ggml.tokens')!;
    expect(tokens.length).toBe(4100);
    expect(tokens.slice(4096)).toEqual(['<pad>', '<extra>', '[PAD4098]', '[PAD4099]']);
    expect(Tokenizer.fromGguf(readGguf(out)).encode('Hello world', { addBos: true })).toEqual([1, 974, 336, 4003, 750]);
  });
});

// ---------------------------------------------------------------- tokenizer.json (byte-level BPE, LLaMA-3 split)

/** GPT-2's byte → printable character map. */
function byteChars(): string[] {
  const keep: number[] = [];
  for (let b = 33; b <= 126; b++) keep.push(b);
  for (let b = 161; b <= 172; b++) keep.push(b);
  for (let b = 174; b <= 255; b++) keep.push(b);
  const out: string[] = new Array(256);
  let n = 0;
  for (let b = 0; b < 256; b++) out[b] = String.fromCodePoint(keep.includes(b) ? b : 256 + n++);
  return out;
}

describe('bitllm convert: tokenizer.json', () => {
  it('writes the gpt2 section: vocab, merges, added tokens, llama-bpe pre-tokenizer, BOS/EOS', () => {
    const chars = byteChars();
    const vocab: Record<string, number> = {};
    chars.forEach((c, i) => { vocab[c] = i; });
    const merges = [['h', 'e'], ['l', 'l'], ['he', 'll'], ['Ġ', 'w'], ['o', 'r']];
    merges.forEach(([a, b], i) => { vocab[a! + b!] = 256 + i; });
    const fx = hfFixture('bitnet-2b4t-packed', 4, { ...SHAPE, vocab: 264 });
    const dir = join(tmp, `hf-${serial++}`);
    writeHfFolder(dir, fx, 'safetensors');
    const split = "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
    writeFileSync(join(dir, 'tokenizer.json'), JSON.stringify({
      added_tokens: [{ id: 261, content: '<|begin_of_text|>', special: true }, { id: 262, content: '<|end_of_text|>', special: true }],
      pre_tokenizer: { type: 'Sequence', pretokenizers: [{ type: 'Split', pattern: { Regex: split }, behavior: 'Isolated' }, { type: 'ByteLevel', add_prefix_space: false, use_regex: false }] },
      model: { type: 'BPE', vocab, merges },
    }));
    const template = "{% for message in messages %}{{ message['role'] | capitalize }}: {{ message['content'] }}<|eot_id|>{% endfor %}Assistant: ";
    writeFileSync(join(dir, 'tokenizer_config.json'), JSON.stringify({ bos_token: '<|begin_of_text|>', eos_token: '<|end_of_text|>', chat_template: template }));
    const out = join(tmp, `conv-${serial++}.gguf`);
    convertCheckpoint({ dir, out });
    const f = readGguf(out);
    const md = new GgufMetadata(f);
    expect(md.string('tokenizer.ggml.model')).toBe('gpt2');
    expect(md.string('tokenizer.ggml.pre')).toBe('llama-bpe');
    expect(md.number('tokenizer.ggml.bos_token_id')).toBe(261);
    expect(md.number('tokenizer.ggml.eos_token_id')).toBe(262);
    expect(md.string('tokenizer.chat_template')).toBe(template);
    const tok = Tokenizer.fromGguf(f);
    // 'hello' → he|ll|o, ' world' → Ġw|or|l|d; BOS from the llama-bpe family
    expect(tok.encode('hello world', { addBos: true })).toEqual([261, 258, chars.indexOf('o'), 259, 260, chars.indexOf('l'), chars.indexOf('d')]);
    expect(tok.encode('<|end_of_text|>', { addBos: false })).toEqual([262]);
    expect(md.strings('tokenizer.ggml.tokens')![263]).toBe('[PAD263]');
  });

  it('refuses a pre-tokenizer it does not implement, naming it', () => {
    const fx = hfFixture('bitnet-2b4t-packed', 4, { ...SHAPE, vocab: 264 });
    const dir = join(tmp, `hf-${serial++}`);
    writeHfFolder(dir, fx, 'safetensors');
    writeFileSync(join(dir, 'tokenizer.json'), JSON.stringify({ pre_tokenizer: { type: 'Whitespace' }, model: { type: 'BPE', vocab: { a: 0 }, merges: [] } }));
    expect(() => convertCheckpoint({ dir, out: join(tmp, 'x.gguf') })).toThrow(/tokenizer\.json: pre_tokenizer .*Whitespace/);
  });
});

// ---------------------------------------------------------------- the command

describe('bitllm convert (the command, dist/cli/main.js)', () => {
  it('converts a folder (--json) and exits 1 with the message for bad input, 2 for bad usage', async () => {
    const fx = hfFixture('fbi-llm', 8, SMALL);
    const dir = folder(fx, 'bin');
    const out = join(tmp, `cli-${serial++}.gguf`);
    const ok = await runProcess(process.execPath, [MAIN, 'convert', dir, '-o', out, '--json']);
    expect(ok.status, ok.stderr).toBe(0);
    const j = JSON.parse(ok.stdout) as { layout: string; arch: string; type: string; findings: { zeroLatentWeights: number } };
    expect(j).toMatchObject({ layout: 'fbi-llm', arch: 'fbi-llm', type: 'q1_0' });
    expect(j.findings.zeroLatentWeights).toBe(fx.zeros);
    const text = await runProcess(process.execPath, [MAIN, 'convert', dir, '-o', out]);
    expect(text.stdout).toMatch(new RegExp(`latent weights exactly 0: ${fx.zeros} \\(stored as \\+1`));
    writeFileSync(join(dir, 'config.json'), '{"hidden_size": 128');
    const bad = await runProcess(process.execPath, [MAIN, 'convert', dir, '-o', out]);
    expect(bad.status).toBe(1);
    expect(bad.stderr).toMatch(/config\.json: .*JSON/);
    const usage = await runProcess(process.execPath, [MAIN, 'convert', dir]);
    expect(usage.status).toBe(2);
    expect(usage.stderr).toMatch(/-o OUT\.gguf is required/);
    const badType = await runProcess(process.execPath, [MAIN, 'convert', dir, '-o', out, '--type', 'q4_0']);
    expect(badType.status).toBe(2);
  });
});

// ---------------------------------------------------------------- bad input

describe('bitllm convert: bad input is a ModelFormatError naming the problem', () => {
  const out = () => join(tmp, `bad-${serial++}.gguf`);

  it('missing and wrong config keys', async () => {
    for (const key of ['hidden_size', 'num_hidden_layers', 'vocab_size', 'intermediate_size', 'num_attention_heads']) {
      const fx = hfFixture('1bitllm', 1, SMALL);
      delete fx.config[key];
      await rejects(() => convertCheckpoint({ dir: folder(fx, 'safetensors'), out: out() }), new RegExp(`config\\.json: missing key '${key}'`));
    }
    const fx = hfFixture('1bitllm', 1, SMALL);
    fx.config['rope_scaling'] = { type: 'yarn', factor: 4 };
    await rejects(() => convertCheckpoint({ dir: folder(fx, 'safetensors'), out: out() }), /rope_scaling/);
    const fx2 = hfFixture('1bitllm', 1, SMALL);
    fx2.config['hidden_act'] = 'gelu';
    await rejects(() => convertCheckpoint({ dir: folder(fx2, 'safetensors'), out: out() }), /hidden_act 'gelu'/);
    const fx3 = hfFixture('fbi-llm', 1, SMALL);
    fx3.config['model_type'] = 'gpt2';
    fx3.hf = fx3.hf.filter((t) => !t.name.endsWith('.wscale') && !t.name.endsWith('.wbias'));
    await rejects(() => convertCheckpoint({ dir: folder(fx3, 'safetensors'), out: out() }), /not a checkpoint layout bitllm converts/);
    const empty = join(tmp, `hf-${serial++}`);
    mkdirSync(empty);
    await rejects(() => convertCheckpoint({ dir: empty, out: out() }), /no config\.json/);
  });

  it('wrong shapes, dtypes and missing tensors name the tensor', async () => {
    const swap = (layout: FixtureLayout, name: string, f: (t: SafetensorsInput) => SafetensorsInput | undefined) => {
      const fx = hfFixture(layout, 1, SMALL);
      fx.hf = fx.hf.flatMap((t) => (t.name === name ? (f(t) ? [f(t)!] : []) : [t]));
      return () => convertCheckpoint({ dir: folder(fx, 'safetensors'), out: out() });
    };
    const q = 'model.layers.0.self_attn.q_proj.weight';
    await rejects(swap('1bitllm', q, (t) => ({ ...t, shape: [64, 256] })), /q_proj\.weight' has shape \[64, 256\], expected \[128, 128\]/);
    await rejects(swap('1bitllm', q, (t) => ({ ...t, dtype: 'I32' })), /q_proj\.weight' is I32, not a float type/);
    await rejects(swap('1bitllm', q, () => undefined), /missing tensor 'model\.layers\.0\.self_attn\.q_proj\.weight'/);
    await rejects(swap('bitnet-2b4t-packed', 'model.layers.0.mlp.up_proj.weight', (t) => ({ ...t, dtype: 'I8' })), /up_proj\.weight' is I8 .*expected packed U8/);
    await rejects(swap('onebit', 'model.layers.0.mlp.down_proj.input_factor', (t) => ({ ...t, shape: [128], data: (t.data as Float32Array).subarray(0, 128) })), /down_proj\.input_factor' has shape \[128\], expected 256 values/);
    await rejects(swap('fbi-llm', 'model.layers.0.self_attn.k_proj.wbias', () => undefined), /missing tensor 'model\.layers\.0\.self_attn\.k_proj\.wbias'/);
    // A packed code 3 (value 2) is not a trit.
    await rejects(swap('bitnet-2b4t-packed', 'model.layers.0.self_attn.v_proj.weight', (t) => ({ ...t, data: new Uint8Array(t.data.byteLength).fill(0xff) })), /attn_v\.weight' element 0 is 2/);
    // Unknown safetensors dtype.
    const fx = hfFixture('1bitllm', 1, SMALL);
    const dir = folder(fx, 'safetensors');
    const st = readFileSync(join(dir, 'model.safetensors'));
    const n = Number(st.readBigUInt64LE(0));
    const header = st.subarray(8, 8 + n).toString('utf8').replace('"F32"', '"Q32"');
    writeFileSync(join(dir, 'model.safetensors'), Buffer.concat([st.subarray(0, 8 + 0), Buffer.from(header), st.subarray(8 + n)]));
    await rejects(() => convertCheckpoint({ dir, out: out() }), /unsupported dtype "Q32"/);
  });

  it('refuses all-zero linear tensors (BitNet issue #608), naming the tensor and the revision pin', async () => {
    const fxm = hfFixture('bitnet-2b4t-master', 1, SMALL);
    for (const t of fxm.hf) if (t.name === 'model.layers.0.mlp.gate_proj.weight') t.data = new Uint16Array(t.data.byteLength / 2);
    await rejects(() => convertCheckpoint({ dir: folder(fxm, 'safetensors'), out: out() }), /'model\.layers\.0\.mlp\.gate_proj\.weight' is entirely zero.*#608.*@<commit>/);
    const fxp = hfFixture('bitnet-2b4t-packed', 1, SMALL);
    for (const t of fxp.hf) if (t.name === 'model.layers.0.mlp.down_proj.weight') t.data = new Uint8Array(t.data.byteLength).fill(0x55);
    await rejects(() => convertCheckpoint({ dir: folder(fxp, 'safetensors'), out: out() }), /'model\.layers\.0\.mlp\.down_proj\.weight' is entirely zero.*pinned by commit/);
  });

  it('sharded index naming a missing shard or a tensor its shard lacks', async () => {
    const fx = hfFixture('1bitllm', 1, SMALL);
    const dir = folder(fx, 'sharded');
    const idx = join(dir, 'model.safetensors.index.json');
    const j = JSON.parse(readFileSync(idx, 'utf8')) as { weight_map: Record<string, string> };
    j.weight_map['model.extra.weight'] = 'model-00001-of-00002.safetensors';
    writeFileSync(idx, JSON.stringify(j));
    await rejects(() => convertCheckpoint({ dir, out: out() }), /'model\.extra\.weight' is mapped to model-00001-of-00002\.safetensors, which does not hold it/);
    j.weight_map['model.extra.weight'] = '../etc/passwd';
    writeFileSync(idx, JSON.stringify(j));
    await rejects(() => convertCheckpoint({ dir, out: out() }), /is not a file name in the folder/);
  });

  it('a type the family cannot be written as', async () => {
    const fx = hfFixture('onebit', 1, SMALL);
    await rejects(() => convertCheckpoint({ dir: folder(fx, 'safetensors'), out: out(), type: 'i2_s' }), /onebit converts to q1_0, not i2_s/);
  });
});

// ---------------------------------------------------------------- the restricted unpickler

describe('torch .bin: restricted unpickler and zip reader', () => {
  const wrap = (pkl: Uint8Array) => zipStored([['archive/data.pkl', pkl]]);
  const binFile = (bytes: Uint8Array) => { const p = join(tmp, `x-${serial++}.bin`); writeFileSync(p, bytes); return p; };

  it('refuses any global outside the tensor-rebuild set by name, before calling anything', () => {
    const hostile: Array<[string, string]> = [['os', 'system'], ['builtins', 'eval'], ['posix', 'system'], ['subprocess', 'Popen'], ['torch', 'load'], ['__builtin__', 'exec']];
    for (const [mod, name] of hostile) {
      const pkl = new PickleBuilder().proto().global(mod, name).str('echo pwned').op(0x85).reduce().op(0x2e).bytes();
      expect(() => unpickle(pkl, 'evil.pkl')).toThrow(UnsafePickleError);
      expect(() => unpickle(pkl, 'evil.pkl')).toThrow(new RegExp(`global '${mod}\\.${name}'`));
      expect(() => indexTorchBin(binFile(wrap(pkl)))).toThrow(UnsafePickleError);
    }
    // STACK_GLOBAL (protocol 4) goes through the same check.
    const sg = new PickleBuilder().proto().op(0x8c, 2, ...Buffer.from('os')).op(0x8c, 6, ...Buffer.from('system')).op(0x93).op(0x2e).bytes();
    expect(() => unpickle(sg, 'evil.pkl')).toThrow(/global 'os\.system'/);
    // A storage type outside the list in a persistent id is refused too.
    const cx = new PickleBuilder().proto().mark().str('storage').global('torch', 'ComplexFloatStorage').op(0x2e).bytes();
    expect(() => unpickle(cx, 'evil.pkl')).toThrow(/global 'torch\.ComplexFloatStorage'/);
  });

  it('reads what the writer above produces: names, dtypes, shapes, bytes', () => {
    const tensors: SafetensorsInput[] = [
      { name: 'a.weight', dtype: 'F32', shape: [2, 3], data: Float32Array.of(1, 2, 3, 4, 5, 6) },
      { name: 'b', dtype: 'BF16', shape: [4], data: Uint16Array.of(1, 2, 3, 4) },
      { name: 'c', dtype: 'I8', shape: [3, 1], data: Int8Array.of(-1, 0, 1) },
    ];
    const path = binFile(torchBin(tensors, 'pytorch_model'));
    const entries = indexTorchBin(path);
    const file = readFileSync(path);
    expect(entries.map((e) => [e.name, e.dtype, e.shape])).toEqual(tensors.map((t) => [t.name, t.dtype, t.shape]));
    entries.forEach((e, i) => {
      const t = tensors[i]!;
      expect(Buffer.from(file.subarray(e.offset, e.offset + e.nbytes)).equals(Buffer.from(t.data.buffer, t.data.byteOffset, t.data.byteLength))).toBe(true);
    });
  });

  it('truncated or damaged archives are typed errors', () => {
    const good = torchBin([{ name: 'w', dtype: 'F32', shape: [64], data: new Float32Array(64) }]);
    for (const n of [0, 10, 21, 100, good.byteLength - 30, good.byteLength - 1]) expect(() => indexTorchBin(binFile(good.subarray(0, n)))).toThrow(ModelFormatError);
    expect(() => indexTorchBin(binFile(good.subarray(0, good.byteLength - 1)))).toThrow(/not a readable torch zip|truncated/);
    expect(() => indexTorchBin(binFile(zipStored([['x/other.txt', new Uint8Array(3)]])))).toThrow(/no <name>\/data\.pkl/);
    expect(() => indexTorchBin(binFile(Uint8Array.of(0x80, 2, 0x8a, 0x0a)))).toThrow(/legacy/);
    // A storage missing from the archive, a view past its storage.
    const pkl = pickleStateDict([{ name: 'w', dtype: 'F32', shape: [4], data: new Float32Array(4) }]);
    expect(() => indexTorchBin(binFile(zipStored([['archive/data.pkl', pkl]])))).toThrow(/storage '0' is missing/);
    expect(() => indexTorchBin(binFile(zipStored([['archive/data.pkl', pkl], ['archive/data/0', new Uint8Array(8)]])))).toThrow(/holds 8 bytes, not 4 × F32/);
  });

  it('fuzz: random bytes, truncations and byte flips of a valid pickle never crash, hang or pass silently', () => {
    const r = rng(99);
    const valid = pickleStateDict([
      { name: 'model.layers.0.self_attn.q_proj.weight', dtype: 'F32', shape: [8, 8], data: new Float32Array(64) },
      { name: 'model.norm.weight', dtype: 'BF16', shape: [8], data: new Uint16Array(8) },
    ]);
    expect(unpickle(valid, 'ok')).toMatchObject({ kind: 'dict' });
    const t0 = performance.now();
    let typed = 0;
    const tryOne = (b: Uint8Array) => {
      try {
        unpickle(b, 'fuzz');
      } catch (err) {
        expect(err).toBeInstanceOf(ModelFormatError);
        typed++;
      }
    };
    for (let n = 0; n < valid.byteLength; n++) tryOne(valid.subarray(0, n));
    for (let i = 0; i < 3000; i++) tryOne(Uint8Array.from({ length: 1 + Math.floor(r() * 200) }, () => Math.floor(r() * 256)));
    for (let i = 0; i < 3000; i++) {
      const b = valid.slice();
      for (let k = 0; k < 1 + Math.floor(r() * 4); k++) b[Math.floor(r() * b.length)] = Math.floor(r() * 256);
      tryOne(b);
    }
    expect(typed).toBeGreaterThan(6000);
    expect(performance.now() - t0).toBeLessThan(20_000);
    // Zip-level fuzz: truncations and flips of a whole archive.
    const zip = torchBin([{ name: 'w', dtype: 'F32', shape: [16], data: new Float32Array(16) }]);
    for (let i = 0; i < 300; i++) {
      const b = zip.slice(0, Math.floor(r() * zip.byteLength) + 1);
      if (r() < 0.5) b[Math.floor(r() * b.length)] = Math.floor(r() * 256);
      const path = join(tmp, 'fuzz.bin');
      writeFileSync(path, b);
      try { indexTorchBin(path); } catch (err) { expect(err).toBeInstanceOf(ModelFormatError); }
    }
  });
});
