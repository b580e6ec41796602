// `bitllm quantize MODEL --method billm|absmax -o OUT`: post-training binarization of a model whose
// projections are dense (F16 / BF16 / F32; the `bitnet-f16` teacher and any row whose linears are 'f16').
//   billm    BiLLM (lib/quantize/billm.ts): Hessians H = 2/n·Σ x xᵀ of every projection's input over the
//            calibration text, computed on the full-precision model (one pass, every layer at once), then
//            salient columns with an order-2 residual and the bell-curve split, 128-column blocks, stored
//            packed (sign / group planes, salient mask, residual signs, fp16 scalars) under the `billm`
//            architecture, which runs them with the billm kernel.
//   absmax   the naive round-to-nearest baselines of the PTQ table: W1 (per-row α·sign(w)) or W2 (per-row
//            symmetric 2-bit), written back as F16 projections (quality baselines, not a fast format).
import { readFileSync } from 'node:fs';
import { performance } from 'node:perf_hooks';

import { ModelFormatError } from '../errors.js';
import { type GgufFile, GgufMetadata, GgufWriter, readGguf } from '../format/gguf.js';
import { GGML } from '../format/types.js';
import { KernelContext } from '../kernels/context.js';
import { PROJECTIONS, type Projection, TENSORS, projectionShape } from '../model/arch.js';
import { nativeBackend } from '../model/backend.js';
import { configFromGguf } from '../model/config.js';
import { KvCache } from '../model/kv-cache.js';
import { type GroupName, TransformerModel } from '../model/transformer.js';
import { loadWeights } from '../model/weights.js';
import { encodeBillmTensors } from '../quantize/billm-gguf.js';
import { HessianAccumulator, absmaxQuantize, billmBitsPerWeight, billmMinTokens, billmQuantize } from '../quantize/billm.js';
import { dequantizeBF16, floatsToHalves } from '../format/dequant.js';
import { halfToFloat } from '../reference/numeric.js';
import { Tokenizer } from '../tokenizer/index.js';
import { UsageError } from './args.js';
import { type CommandSpec, CommandLine } from './run.js';

export const QUANTIZE_USAGE = `usage: bitllm quantize MODEL -o OUT.gguf --method billm|absmax [options]

  MODEL                      a GGUF whose projections are dense (F16 / BF16 / F32), e.g. the FP16 teacher
  --method billm             BiLLM: Hessian-based salient columns (order-2 residual) + bell-curve split, packed
  --method absmax --bits B   naive per-row round-to-nearest baseline, B = 1 (α·sign) or 2 (symmetric 2-bit)
  --calib FILE               calibration text (billm; required)
  --calib-tokens N           calibration tokens to use (default 16384; at least the largest projection input)
  --ctx N                    calibration window length, each opened by BOS (default 256)
  -t, --threads N            kernel threads for the calibration forward
  -o, --out FILE             output GGUF
  --json                     one JSON line: method, bits per weight, seconds, calibration tokens
`;

const SPEC: CommandSpec = {
  name: 'quantize',
  valued: { method: 'method', bits: 'bits', calib: 'calib', 'calib-tokens': 'calib-tokens', ctx: 'ctx', t: 'threads', threads: 'threads', o: 'out', out: 'out' },
  flags: { json: 'json', help: 'help', h: 'help' },
};

/** Projection p of layer l as float rows [M, K]. */
function denseWeights(file: GgufFile, l: number, p: Projection, M: number, K: number): Float32Array {
  const name = TENSORS.weight(l, p);
  const t = file.tensors.find((x) => x.name === name);
  if (!t) throw new ModelFormatError(`${file.source}: missing tensor '${name}'`);
  const src = file.bytes.subarray(t.offset, t.offset + t.nbytes);
  if (t.type === GGML.F32) return new Float32Array(src.slice().buffer);
  if (t.type === GGML.BF16) return dequantizeBF16(src, M * K, new Float32Array(M * K));
  if (t.type === GGML.F16) return Float32Array.from(new Uint16Array(src.slice().buffer), halfToFloat);
  throw new ModelFormatError(`${file.source}: tensor '${name}' is ${t.typeName}; quantize needs dense F16 / BF16 / F32 projections`);
}

const GROUP_OF: Record<Projection, GroupName> = {
  attn_q: 'wqkv', attn_k: 'wqkv', attn_v: 'wqkv', attn_output: 'wo', ffn_gate: 'wgu', ffn_up: 'wgu', ffn_down: 'wdown',
};

/** Hessians of every linear group's input over the calibration windows, on the full-precision model. */
function calibrate(file: GgufFile, ids: number[], ctx: number, threads: number | undefined): Map<string, Float64Array> {
  const cfg = configFromGguf(file);
  const kctx = new KernelContext({ threads });
  const model = new TransformerModel(kctx, cfg, loadWeights(kctx, file, cfg), nativeBackend(kctx));
  const acc = new Map<string, HessianAccumulator>();
  model.inputTap = (l, g, x, B, K) => {
    const key = `${l}:${g}`;
    let h = acc.get(key);
    if (!h) acc.set(key, (h = new HessianAccumulator(K)));
    h.add(x, B);
  };
  const bos = new GgufMetadata(file).number('tokenizer.ggml.bos_token_id', 1)!;
  for (let i = 0; i < ids.length; i += ctx - 1) {
    const win = [bos, ...ids.slice(i, i + ctx - 1)];
    model.forward(win, new KvCache(cfg.nLayer, cfg.nHeadKv, cfg.headDim, win.length), false);
  }
  return new Map([...acc].map(([k, h]) => [k, h.finalize()]));
}

export async function runQuantizeCommand(argv: string[]): Promise<number> {
  const cl = new CommandLine(argv, SPEC);
  if (cl.has('help')) {
    process.stdout.write(QUANTIZE_USAGE);
    return 0;
  }
  const t0 = performance.now();
  const path = cl.model();
  const method = cl.choice('method', ['billm', 'absmax'] as const);
  if (method === undefined) throw new UsageError('quantize: --method billm|absmax is required');
  const out = cl.str('out');
  if (out === undefined) throw new UsageError('quantize: -o OUT.gguf is required');
  const bits = cl.int('bits', 1, 2);
  if (method === 'absmax' && bits === undefined) throw new UsageError('quantize: --method absmax needs --bits 1 or 2');
  const json = cl.has('json');
  const file = readGguf(path);
  const cfg = configFromGguf(file);
  for (const p of PROJECTIONS)
    if (cfg.row.linears[p].kind !== 'f16')
      throw new UsageError(`quantize: ${path} is ${cfg.arch}, whose ${p} is '${cfg.row.linears[p].kind}'; quantize needs dense (f16) projections, e.g. the FP16 teacher`);
  const dkv = cfg.nHeadKv * cfg.headDim;
  const shape = (p: Projection) => projectionShape(p, cfg.nEmbd, dkv, cfg.nFf);

  let hessians: Map<string, Float64Array> | undefined;
  let calibTokens = 0;
  if (method === 'billm') {
    const calib = cl.str('calib');
    if (calib === undefined) throw new UsageError('quantize: --method billm needs --calib FILE (calibration text)');
    let text: string;
    try {
      text = readFileSync(calib, 'utf8');
    } catch (err) {
      throw new UsageError(`quantize: cannot read --calib '${calib}': ${(err as Error).message}`);
    }
    const ctx = cl.int('ctx', 2, 1 << 16) ?? 256;
    const want = cl.int('calib-tokens', 1, 1 << 24) ?? 16384;
    const ids = Tokenizer.fromGguf(file).encode(text, { addBos: false }).slice(0, want);
    const need = billmMinTokens(Math.max(cfg.nEmbd, cfg.nFf));
    // Every window adds a BOS row, which counts for the Hessian too.
    calibTokens = ids.length + Math.ceil(ids.length / (ctx - 1));
    if (calibTokens < need)
      throw new UsageError(`quantize: the calibration text gives ${calibTokens} tokens; BiLLM needs at least ${need} (the largest projection input, ffn_down's K = ${cfg.nFf}): use a longer --calib text${ids.length === want ? ' or a larger --calib-tokens' : ''}`);
    hessians = calibrate(file, ids, ctx, cl.int('threads', 1, 1024));
  }

  const md = new GgufMetadata(file);
  const srcArch = cfg.arch;
  const dstArch = method === 'billm' ? 'billm' : srcArch;
  const w = new GgufWriter();
  for (const [k, e] of file.metadata) {
    const key = k.startsWith(`${srcArch}.`) ? `${dstArch}.${k.slice(srcArch.length + 1)}` : k;
    let value = e.value;
    if (k === 'general.architecture') value = dstArch;
    if (k === 'general.name') value = `${String(e.value)}-${method === 'billm' ? 'billm' : `absmax-w${bits}`}`;
    w.set(key, e.type, value, e.itemType);
  }
  if (!md.has('general.name')) w.string('general.name', method === 'billm' ? 'billm' : `absmax-w${bits}`);
  const projection = new Map<string, [number, Projection]>();
  for (let l = 0; l < cfg.nLayer; l++) for (const p of PROJECTIONS) projection.set(TENSORS.weight(l, p), [l, p]);
  let storedBits = 0;
  let weights = 0;
  for (const t of file.tensors) {
    const at = projection.get(t.name);
    if (!at) {
      w.addTensor(t.name, [...t.dims], t.type, file.bytes.slice(t.offset, t.offset + t.nbytes));
      continue;
    }
    const [l, p] = at;
    const { M, K } = shape(p);
    const W = denseWeights(file, l, p, M, K);
    weights += M * K;
    if (method === 'billm') {
      const m = billmQuantize(W, M, K, hessians!.get(`${l}:${GROUP_OF[p]}`)!);
      storedBits += billmBitsPerWeight(m) * M * K;
      for (const x of encodeBillmTensors(`blk.${l}.${p}`, m)) w.addTensor(x.name, x.dims, x.type, x.data);
    } else {
      const q = absmaxQuantize(W, M, K, bits as 1 | 2);
      const halves = new Uint16Array(M * K);
      if (floatsToHalves(q, halves, M * K) > 0) throw new ModelFormatError(`${path}: '${t.name}' quantized to values outside F16`);
      storedBits += 16 * M * K;
      w.addTensor(t.name, [K, M], GGML.F16, new Uint8Array(halves.buffer));
    }
    if (!json && process.stderr.isTTY) process.stderr.write(`\r\x1b[Kquantized ${t.name}`);
  }
  if (!json && process.stderr.isTTY) process.stderr.write('\n');
  w.write(out);
  const summary = {
    method: method === 'billm' ? 'billm' : `absmax-w${bits}`, out, arch: dstArch, calib_tokens: calibTokens,
    bits_per_weight: method === 'billm' ? Math.round((storedBits / weights) * 1000) / 1000 : bits,
    seconds: Math.round((performance.now() - t0) / 100) / 10,
  };
  if (json) process.stdout.write(JSON.stringify(summary) + '\n');
  else process.stdout.write(`${out}: ${summary.method} (${dstArch}), ${summary.bits_per_weight} bits per weight stored, ${summary.seconds} s\n`);
  return 0;
}
