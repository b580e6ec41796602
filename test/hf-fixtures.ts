// Test-time writers of Hugging Face checkpoint folders in the upstream layouts `bitllm convert` reads
// (lib/convert/hf.ts): safetensors (single or sharded with model.safetensors.index.json) and a torch.save-format
// .bin (a stored zip holding archive/data.pkl, pickled with protocol 2 as torch does, and archive/data/N).
// Each model comes with the export tensors train/evaluate.py would write for the same weights, computed here
// independently of the converter, so a test can export them directly and compare.
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

import { type TrainedConfig } from '../lib/convert/export.js';
import { type SafetensorsInput, encodeSafetensors } from '../lib/convert/safetensors.js';
import { floatToHalf, halfToFloat } from '../lib/reference/numeric.js';
import { randomNormal, randomTrits, rng } from './helpers.js';

export type FixtureLayout = 'bitnet-2b4t-packed' | 'bitnet-2b4t-master' | '1bitllm' | 'fbi-llm' | 'onebit';

// ---------------------------------------------------------------- pickle + zip (torch.save format)

/** Byte-level pickle builder (protocol 2 opcodes). */
export class PickleBuilder {
  private parts: number[] = [];
  op(...bytes: number[]): this { this.parts.push(...bytes); return this; }
  proto(): this { return this.op(0x80, 2); }
  global(mod: string, name: string): this { return this.op(0x63, ...Buffer.from(`${mod}\n${name}\n`, 'latin1')); }
  str(s: string): this {
    const b = Buffer.from(s, 'utf8');
    const n = Buffer.alloc(4); n.writeUInt32LE(b.length);
    return this.op(0x58, ...n, ...b);
  }
  int(v: number): this {
    if (v >= 0 && v < 256) return this.op(0x4b, v);
    if (v >= 0 && v < 65536) return this.op(0x4d, v & 255, v >> 8);
    const b = Buffer.alloc(4); b.writeInt32LE(v);
    return this.op(0x4a, ...b);
  }
  mark(): this { return this.op(0x28); }
  tuple(): this { return this.op(0x74); }
  emptyTuple(): this { return this.op(0x29); }
  reduce(): this { return this.op(0x52); }
  put(i: number): this { return this.op(0x71, i); }
  get(i: number): this { return this.op(0x68, i); }
  bytes(): Uint8Array { return Uint8Array.from(this.parts); }
}

const TORCH_STORAGE: Record<string, [string, number]> = {
  F32: ['FloatStorage', 4], F16: ['HalfStorage', 2], BF16: ['BFloat16Storage', 2], I8: ['CharStorage', 1], U8: ['ByteStorage', 1],
  F64: ['DoubleStorage', 8], I32: ['IntStorage', 4], I64: ['LongStorage', 8],
};

/** torch.save's pickle of an OrderedDict state dict: one storage per tensor, keys '0', '1', ... */
export function pickleStateDict(tensors: SafetensorsInput[]): Uint8Array {
  const p = new PickleBuilder().proto().global('collections', 'OrderedDict').put(0).emptyTuple().reduce().put(1).mark();
  let memo = 2;
  let rebuild = -1;
  tensors.forEach((t, i) => {
    const [cls, el] = TORCH_STORAGE[t.dtype]!;
    p.str(t.name);
    if (rebuild < 0) { p.global('torch._utils', '_rebuild_tensor_v2'); rebuild = memo++; p.put(rebuild); } else p.get(rebuild);
    p.mark().mark().str('storage').global('torch', cls).str(String(i)).str('cpu').int(t.data.byteLength / el).tuple().op(0x51); // BINPERSID
    p.int(0).mark();
    for (const d of t.shape) p.int(d);
    p.tuple().mark();
    const strides = t.shape.map((_, k) => t.shape.slice(k + 1).reduce((a, d) => a * d, 1));
    for (const s of strides) p.int(s);
    p.tuple().op(0x89).get(0).emptyTuple().reduce().tuple().reduce(); // requires_grad False, OrderedDict()
  });
  return p.op(0x75).op(0x2e).bytes(); // SETITEMS, STOP
}

const CRC_TABLE = Uint32Array.from({ length: 256 }, (_, n) => {
  let c = n;
  for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
  return c >>> 0;
});
function crc32(b: Uint8Array): number {
  let c = 0xffffffff;
  for (let i = 0; i < b.length; i++) c = CRC_TABLE[(c ^ b[i]!) & 255]! ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

/** A zip archive with stored (uncompressed) entries. */
export function zipStored(entries: Array<[string, Uint8Array]>): Uint8Array {
  const chunks: Buffer[] = [];
  const central: Buffer[] = [];
  let off = 0;
  for (const [name, data] of entries) {
    const n = Buffer.from(name, 'utf8');
    const h = Buffer.alloc(30);
    h.writeUInt32LE(0x04034b50, 0); h.writeUInt16LE(20, 4); h.writeUInt32LE(crc32(data), 14);
    h.writeUInt32LE(data.byteLength, 18); h.writeUInt32LE(data.byteLength, 22); h.writeUInt16LE(n.length, 26);
    const c = Buffer.alloc(46);
    c.writeUInt32LE(0x02014b50, 0); c.writeUInt16LE(20, 4); c.writeUInt16LE(20, 6); c.writeUInt32LE(crc32(data), 16);
    c.writeUInt32LE(data.byteLength, 20); c.writeUInt32LE(data.byteLength, 24); c.writeUInt16LE(n.length, 28); c.writeUInt32LE(off, 42);
    central.push(c, n);
    chunks.push(h, n, Buffer.from(data));
    off += 30 + n.length + data.byteLength;
  }
  const cd = Buffer.concat(central);
  const e = Buffer.alloc(22);
  e.writeUInt32LE(0x06054b50, 0); e.writeUInt16LE(entries.length, 8); e.writeUInt16LE(entries.length, 10);
  e.writeUInt32LE(cd.length, 12); e.writeUInt32LE(off, 16);
  return new Uint8Array(Buffer.concat([...chunks, cd, e]));
}

/** A torch.save file of a state dict. */
export function torchBin(tensors: SafetensorsInput[], prefix = 'archive'): Uint8Array {
  const bytes = (t: SafetensorsInput) => new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength);
  return zipStored([
    [`${prefix}/data.pkl`, pickleStateDict(tensors)],
    [`${prefix}/byteorder`, new TextEncoder().encode('little')],
    ...tensors.map((t, i): [string, Uint8Array] => [`${prefix}/data/${i}`, bytes(t)]),
    [`${prefix}/version`, new TextEncoder().encode('3\n')],
  ]);
}

// ---------------------------------------------------------------- models

export interface HfFixture {
  config: Record<string, unknown>;
  /** Tensors under their Hugging Face names, as the upstream checkpoint stores them. */
  hf: SafetensorsInput[];
  /** The export tensors (GGUF names) train/evaluate.py would write for the same model. */
  expected: SafetensorsInput[];
  /** The same model for the direct exporter. */
  cfg: TrainedConfig;
  /** FBI-LLM: latent weights set exactly to 0. */
  zeros: number;
}

const f16 = (x: number) => halfToFloat(floatToHalf(x));
/** The bf16 bits of x, rounded to nearest even (as torch's .to(torch.bfloat16)). */
const bf16Bits = (x: number) => { const u = new Uint32Array(Float32Array.of(x).buffer)[0]!; return Math.floor((u + 0x7fff + ((u >>> 16) & 1)) / 65536) & 0xffff; };
const bf16 = (x: number) => new Float32Array(Uint32Array.of(bf16Bits(x) << 16).buffer)[0]!;

const HF_PROJ: Record<string, string> = {
  attn_q: 'self_attn.q_proj', attn_k: 'self_attn.k_proj', attn_v: 'self_attn.v_proj', attn_output: 'self_attn.o_proj',
  ffn_gate: 'mlp.gate_proj', ffn_up: 'mlp.up_proj', ffn_down: 'mlp.down_proj',
};

/** Round half to even (torch.round), written here independently of lib/. */
function rne(x: number): number {
  const f = Math.floor(x);
  const d = x - f;
  return d > 0.5 ? f + 1 : d < 0.5 ? f : f % 2 === 0 ? f : f + 1;
}

/**
 * A random model of `layout` with the given shape: tensors in the upstream layout and the export tensors the
 * trainer would write for it.
 */
export function hfFixture(layout: FixtureLayout, seed: number, shape: { vocab: number; d: number; n_layer: number; n_head: number; n_head_kv: number; ff: number }): HfFixture {
  const r = rng(seed);
  const { vocab, d, n_layer, n_head, n_head_kv, ff } = shape;
  const dkv = n_head_kv * (d / n_head);
  const bitnet = layout.startsWith('bitnet');
  const subNorms = bitnet || layout === '1bitllm';
  const tied = bitnet;
  const act = layout === 'bitnet-2b4t-packed' || layout === 'bitnet-2b4t-master' ? 'relu2' : 'silu';
  const hf: SafetensorsInput[] = [];
  const expected: SafetensorsInput[] = [];
  const gain = (n: number) => Float32Array.from({ length: n }, () => 1 + 0.1 * (r() - 0.5));
  // bf16 checkpoints store bf16 norms; the export holds their f32 values.
  const floatOut = (name: string, v: Float32Array, shp: number[]) => {
    if (bitnet) hf.push({ name, dtype: 'BF16', shape: shp, data: Uint16Array.from(v, (x) => bf16Bits(x)) });
    else hf.push({ name, dtype: 'F32', shape: shp, data: v });
    return bitnet ? Float32Array.from(v, bf16) : v;
  };
  const norm = (hfName: string, ggufName: string, n: number) => expected.push({ name: ggufName, dtype: 'F32', shape: [n], data: floatOut(hfName, gain(n), [n]) });
  const embd = Float32Array.from(randomNormal(r, vocab * d, 0.5), f16);
  expected.push({ name: 'token_embd.weight', dtype: 'F16', shape: [vocab, d], data: Uint16Array.from(floatOut('model.embed_tokens.weight', embd, [vocab, d]), (x) => floatToHalf(x)) });
  if (!tied) {
    const head = Float32Array.from(randomNormal(r, vocab * d, 0.5), f16);
    hf.push({ name: 'lm_head.weight', dtype: 'F32', shape: [vocab, d], data: head });
    expected.push({ name: 'output.weight', dtype: 'F16', shape: [vocab, d], data: Uint16Array.from(head, (x) => floatToHalf(x)) });
  }
  norm('model.norm.weight', 'output_norm.weight', d);
  let zeros = 0;
  for (let l = 0; l < n_layer; l++) {
    const L = `model.layers.${l}.`;
    const B = `blk.${l}.`;
    norm(`${L}input_layernorm.weight`, `${B}attn_norm.weight`, d);
    norm(`${L}post_attention_layernorm.weight`, `${B}ffn_norm.weight`, d);
    if (subNorms) {
      norm(`${L}${layout === '1bitllm' ? 'self_attn.inner_attn_ln' : 'self_attn.attn_sub_norm'}.weight`, `${B}attn_sub_norm.weight`, d);
      norm(`${L}${layout === '1bitllm' ? 'mlp.ffn_layernorm' : 'mlp.ffn_sub_norm'}.weight`, `${B}ffn_sub_norm.weight`, ff);
    }
    for (const [p, hp] of Object.entries(HF_PROJ)) {
      const M = { attn_q: d, attn_k: dkv, attn_v: dkv, attn_output: d, ffn_gate: ff, ffn_up: ff, ffn_down: d }[p]!;
      const K = p === 'ffn_down' ? ff : d;
      const h = `${L}${hp}.`;
      const g = `${B}${p}.`;
      if (layout === 'bitnet-2b4t-packed') {
        const trits = randomTrits(r, M * K);
        const packed = new Uint8Array((M / 4) * K);
        for (let m = 0; m < M; m++) for (let k = 0; k < K; k++) packed[(m % (M / 4)) * K + k]! |= (trits[m * K + k]! + 1) << (2 * Math.floor(m / (M / 4)));
        const scale = [0.125, 0.0625, 0.25][(l + p.length) % 3]!; // 1/scale is exact in bf16
        hf.push({ name: `${h}weight`, dtype: 'U8', shape: [M / 4, K], data: packed });
        hf.push({ name: `${h}weight_scale`, dtype: 'BF16', shape: [1], data: Uint16Array.of(bf16Bits(1 / scale)) });
        expected.push({ name: `${g}weight`, dtype: 'I8', shape: [M, K], data: trits }, { name: `${g}scale`, dtype: 'F32', shape: [1], data: Float32Array.of(scale) });
      } else if (layout === 'bitnet-2b4t-master' || layout === '1bitllm') {
        const w = floatOut(`${h}weight`, randomNormal(r, M * K, 0.05), [M, K]);
        let sum = 0;
        for (const x of w) sum += Math.abs(x);
        const gamma = Math.fround(sum / w.length);
        const trits = Int8Array.from(w, (x) => Math.max(-1, Math.min(1, rne(Math.fround(x / gamma)))));
        expected.push({ name: `${g}weight`, dtype: 'I8', shape: [M, K], data: trits }, { name: `${g}scale`, dtype: 'F32', shape: [1], data: Float32Array.of(f16(gamma)) });
      } else if (layout === 'fbi-llm') {
        const w = randomNormal(r, M * K, 0.02);
        for (let z = 0; z < 3; z++) w[Math.floor(r() * w.length)] = 0; // exact zeros: counted, stored as +1
        zeros += w.filter((x) => x === 0).length;
        const alpha = randomNormal(r, K, 0.02);
        const beta = randomNormal(r, K, 0.01);
        hf.push({ name: `${h}weight`, dtype: 'F32', shape: [M, K], data: w });
        hf.push({ name: `${h}wscale`, dtype: 'F32', shape: [1, K], data: alpha }, { name: `${h}wbias`, dtype: 'F32', shape: [1, K], data: beta });
        expected.push({ name: `${g}weight`, dtype: 'I8', shape: [M, K], data: Int8Array.from(w, (x) => (x >= 0 ? 1 : -1)) },
          { name: `${g}alpha`, dtype: 'F32', shape: [K], data: alpha }, { name: `${g}beta`, dtype: 'F32', shape: [K], data: beta });
      } else {
        const signs = Int8Array.from({ length: M * K }, () => (r() < 0.5 ? -1 : 1));
        const packed = new Int8Array((M * K) / 8);
        for (let i = 0; i < M * K; i++) if (signs[i] === -1) packed[i >> 3]! |= 1 << (i & 7);
        const gin = randomNormal(r, K, 0.1);
        const hout = randomNormal(r, M, 0.1);
        hf.push({ name: `${h}weight`, dtype: 'I8', shape: [M, K / 8], data: packed });
        hf.push({ name: `${h}input_factor`, dtype: 'F32', shape: [K], data: gin }, { name: `${h}weight_scale`, dtype: 'F32', shape: [M], data: hout });
        expected.push({ name: `${g}weight`, dtype: 'I8', shape: [M, K], data: signs },
          { name: `${g}in_scale`, dtype: 'F32', shape: [K], data: gin }, { name: `${g}out_scale`, dtype: 'F32', shape: [M], data: hout });
      }
    }
  }
  const config: Record<string, unknown> = {
    hidden_size: d, intermediate_size: ff, num_hidden_layers: n_layer, num_attention_heads: n_head, num_key_value_heads: n_head_kv,
    vocab_size: vocab, max_position_embeddings: 128, rms_norm_eps: 1e-5, rope_theta: bitnet ? 500000 : 10000, hidden_act: act,
    tie_word_embeddings: tied,
    ...(bitnet ? { model_type: 'bitnet', architectures: ['BitNetForCausalLM'] } : layout === '1bitllm' ? { model_type: 'llama', architectures: ['BitnetForCausalLM'], weight_bits: 1, input_bits: 8 }
      : layout === 'onebit' ? { model_type: 'bitllama', architectures: ['BitLlamaForCausalLMInf'] } : { model_type: 'llama', architectures: ['LlamaForCausalLM'] }),
    ...(layout === 'bitnet-2b4t-packed' ? { quantization_config: { quant_method: 'bitnet', linear_class: 'bitlinear', quantization_mode: 'offline' } } : {}),
  };
  const cfg: TrainedConfig = {
    vocab, d, n_layer, n_head, n_head_kv, ff, ctx: 128, rope_theta: bitnet ? 500000 : 10000, eps: 1e-5,
    block: subNorms ? 'bitnet' : 'llama', sub_norms: subNorms, hidden_act: act, tied_head: tied,
  };
  return { config, hf, expected, cfg, zeros };
}

export type FixtureFormat = 'safetensors' | 'sharded' | 'bin' | 'bin-sharded';

/** Writes config.json and the weights of a fixture into `dir` (created), in the given container format. */
export function writeHfFolder(dir: string, fx: HfFixture, format: FixtureFormat): void {
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, 'config.json'), JSON.stringify(fx.config, null, 1));
  const ext = format.startsWith('bin') ? 'bin' : 'safetensors';
  const encode = (ts: SafetensorsInput[]) => (ext === 'bin' ? torchBin(ts) : encodeSafetensors(ts, { format: 'pt' }));
  const base = ext === 'bin' ? 'pytorch_model' : 'model';
  if (format === 'safetensors' || format === 'bin') {
    writeFileSync(join(dir, `${base}.${ext}`), encode(fx.hf));
    return;
  }
  const half = Math.ceil(fx.hf.length / 2);
  const shards = [fx.hf.slice(0, half), fx.hf.slice(half)];
  const weightMap: Record<string, string> = {};
  shards.forEach((ts, i) => {
    const file = `${base}-0000${i + 1}-of-00002.${ext}`;
    writeFileSync(join(dir, file), encode(ts));
    for (const t of ts) weightMap[t.name] = file;
  });
  writeFileSync(join(dir, `${base}.${ext}.index.json`), JSON.stringify({ metadata: {}, weight_map: weightMap }));
}
