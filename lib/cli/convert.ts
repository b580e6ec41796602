// `bitllm convert HF_DIR -o OUT.gguf`: a Hugging Face checkpoint folder (BitNet b1.58 2B-4T packed or bf16,
// 1bitLLM, FBI-LLM, OneBit; safetensors, sharded or not, or PyTorch .bin) → GGUF (lib/convert/hf.ts,
// docs/convert.md).
import { existsSync, statSync } from 'node:fs';
import { performance } from 'node:perf_hooks';

import { type ExportType } from '../convert/export.js';
import { HF_LAYOUTS, convertCheckpoint } from '../convert/hf.js';
import { UsageError } from './args.js';
import { type CommandSpec, CommandLine } from './run.js';

export const CONVERT_USAGE = `usage: bitllm convert HF_DIR -o OUT.gguf [options]

  HF_DIR               a checkpoint folder: config.json, model.safetensors (or shards + model.safetensors.index.json,
                       or pytorch_model.bin[.index.json]), tokenizer.model or tokenizer.json
  -o, --out FILE       output GGUF
  --type T             i2_s (default), tq2_0, tq1_0 for BitNet b1.58 checkpoints; q1_0 for FBI-LLM / OneBit
  --layout L           skip detection: ${HF_LAYOUTS.join(', ')}
  --name NAME          general.name (default: the config's _name_or_path)
  --scale-reference D  packed 2B-4T: settle weight_scale's direction against the float master in D (the -bf16
                       repository of the same revision) instead of the config's linear_class
  --json               one JSON line: layout, architecture, type, bytes, sha256, findings
`;

const SPEC: CommandSpec = {
  name: 'convert',
  valued: { o: 'out', out: 'out', type: 'type', layout: 'layout', name: 'name', 'scale-reference': 'scale-reference' },
  flags: { json: 'json', help: 'help', h: 'help' },
};

export async function runConvertCommand(argv: string[]): Promise<number> {
  const cl = new CommandLine(argv, SPEC);
  if (cl.has('help')) {
    process.stdout.write(CONVERT_USAGE);
    return 0;
  }
  const [dir, ...rest] = cl.positionals;
  if (dir === undefined) throw new UsageError('convert: HF_DIR is required');
  if (rest.length) throw new UsageError(`convert: unexpected argument '${rest[0]}'`);
  if (!existsSync(dir) || !statSync(dir).isDirectory()) throw new UsageError(`convert: ${dir} is not a folder`);
  const out = cl.str('out');
  if (out === undefined) throw new UsageError('convert: -o OUT.gguf is required');
  const type = cl.choice('type', ['i2_s', 'tq2_0', 'tq1_0', 'q1_0'] as const) as ExportType | undefined;
  const layout = cl.choice('layout', HF_LAYOUTS);
  const t0 = performance.now();
  const scaleReference = cl.str('scale-reference');
  if (scaleReference !== undefined && !(existsSync(scaleReference) && statSync(scaleReference).isDirectory())) throw new UsageError(`convert: --scale-reference ${scaleReference} is not a folder`);
  const r = convertCheckpoint({ dir, out, type, layout, name: cl.str('name'), scaleReference });
  const seconds = (performance.now() - t0) / 1000;
  if (cl.has('json')) {
    process.stdout.write(JSON.stringify({ path: r.path, layout: r.layout, family: r.family, arch: r.arch, type: r.type, tensors: r.tensors,
      bytes: r.bytes, sha256: r.sha256, findings: r.findings, seconds: Number(seconds.toFixed(2)) }) + '\n');
  } else {
    process.stdout.write(`${dir}: ${r.layout} → ${r.path} (${r.arch}, ${r.type}, ${r.tensors} tensors, ${r.bytes} bytes, ${seconds.toFixed(1)} s)\n`);
    if (r.findings.scaleDirection) process.stdout.write(`  weight_scale applied as a ${r.findings.scaleDirection === 'divide' ? 'divisor (ternary scale = 1/weight_scale)' : 'multiplier'}\n`);
    const c = r.findings.scaleCheck;
    if (c) process.stdout.write(`  settled against the master: ${c.tensor} mean|W| = ${c.masterMeanAbs}, weight_scale = ${c.weightScale}\n`);
    if (r.layout === 'fbi-llm') {
      const per = Object.entries(r.findings.zeroLatentTensors);
      process.stdout.write(`  latent weights exactly 0: ${r.findings.zeroLatentWeights}${per.length ? ` (stored as +1; upstream sign(0) = 0) in ${per.map(([n, c]) => `${n}: ${c}`).join(', ')}` : ''}\n`);
    }
  }
  return 0;
}
