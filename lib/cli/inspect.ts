// `bitllm inspect MODEL`: what a GGUF holds: architecture and hyperparameters, tensors by type with sizes,
// tokenizer and chat format, metadata. Reads metadata only (vocab-only files work).
import { statSync } from 'node:fs';

import { detectChatFormat } from '../engine/chat.js';
import { BitllmError } from '../errors.js';
import { type GgufFile, type GgufValue, GgufMetadata, readGguf } from '../format/gguf.js';
import { PROJECTIONS } from '../model/arch.js';
import { type ModelConfig, configFromGguf } from '../model/config.js';
import { blockKindOf } from '../model/arch.js';
import { type Mamba2Config, mamba2ConfigFromGguf } from '../model/mamba2.js';
import { Tokenizer } from '../tokenizer/index.js';
import { type CommandSpec, CommandLine } from './run.js';

export const INSPECT_USAGE = `usage: bitllm inspect MODEL [--json] [--tensors]
      --json                     one JSON object
      --tensors                  also list every tensor (name, type, shape, bytes)
`;

const INSPECT_SPEC: CommandSpec = {
  name: 'inspect',
  valued: {},
  flags: { json: 'json', tensors: 'tensors', help: 'help', h: 'help' },
};

export interface InspectReport {
  file: string;
  size: number;
  ggufVersion: number;
  architecture: string | undefined;
  name: string | undefined;
  /** null when the architecture is not one bitllm runs (hparamsError says why). */
  hparams: ModelConfig | Mamba2Config | null;
  hparamsError?: string;
  tensors: {
    count: number;
    bytes: number;
    types: Record<string, { count: number; bytes: number }>;
    list?: Array<{ name: string; type: string; dims: number[]; bytes: number }>;
  };
  tokenizer: {
    model: string; pre: string | undefined; vocabSize: number; bos: number | undefined; eos: number | undefined;
    eog: number[]; addBos: boolean; chatFormat: string; chatFormatSource: string;
  } | null;
  tokenizerError?: string;
  /** Scalars as they are; arrays summarized as '[n × type]'. */
  metadata: Record<string, string | number | boolean>;
}

function summarize(value: GgufValue): string | number | boolean {
  if (typeof value === 'bigint') return value.toString();
  if (typeof value !== 'object') return value;
  const kind = Array.isArray(value) ? (typeof value[0] === 'string' ? 'string' : 'array') : value.constructor.name.replace(/Array$/, '').toLowerCase();
  return `[${value.length} × ${kind}]`;
}

export function inspectGguf(file: GgufFile, withTensors: boolean): InspectReport {
  const md = new GgufMetadata(file);
  const architecture = md.string('general.architecture', undefined);
  const report: InspectReport = {
    file: file.source, size: statSync(file.source).size, ggufVersion: file.version, architecture,
    name: md.string('general.name', undefined), hparams: null,
    tensors: { count: file.tensors.length, bytes: 0, types: {} }, tokenizer: null, metadata: {},
  };
  try {
    report.hparams = architecture !== undefined && blockKindOf(architecture) === 'mamba2' ? mamba2ConfigFromGguf(file) : configFromGguf(file);
  } catch (err) {
    if (!(err instanceof BitllmError)) throw err;
    report.hparamsError = err.message;
  }
  for (const t of file.tensors) {
    const entry = (report.tensors.types[t.typeName] ??= { count: 0, bytes: 0 });
    entry.count++;
    entry.bytes += t.nbytes;
    report.tensors.bytes += t.nbytes;
  }
  if (withTensors) report.tensors.list = file.tensors.map((t) => ({ name: t.name, type: t.typeName, dims: t.dims, bytes: t.nbytes }));
  if (md.has('tokenizer.ggml.model')) {
    try {
      const tok = Tokenizer.fromGguf(file);
      const chat = detectChatFormat(tok, md.string('tokenizer.chat_template', undefined), architecture ?? '');
      report.tokenizer = {
        model: tok.model, pre: tok.pre, vocabSize: tok.vocabSize, bos: tok.bos, eos: tok.eos, eog: [...tok.eog],
        addBos: tok.addBos, chatFormat: chat.name, chatFormatSource: chat.source,
      };
    } catch (err) {
      if (!(err instanceof BitllmError)) throw err;
      report.tokenizerError = err.message;
    }
  }
  for (const [key, entry] of file.metadata) report.metadata[key] = summarize(entry.value);
  return report;
}

const mb = (n: number) => `${(n / 1e6).toFixed(2)} MB`;

function printReport(r: InspectReport): void {
  const out: string[] = [];
  out.push(`${r.file}: GGUF v${r.ggufVersion}, ${mb(r.size)}`);
  out.push(`architecture: ${r.architecture ?? '(none)'}${r.name ? `   name: ${r.name}` : ''}`);
  if (r.hparams && !('headDim' in r.hparams)) {
    const h = r.hparams;
    out.push(`  layers ${h.nLayer}, d_model ${h.dModel}, Mamba-2 mixer: inner ${h.dInner}, ${h.nHeads} heads of ${h.dInner / h.nHeads}, state ${h.dState}, `
      + `groups ${h.nGroups}, conv kernel ${h.dConv},`);
    out.push(`  vocab ${h.nVocab}, context ${h.nCtxTrain}, rms eps ${h.eps}, gated-norm eps ${h.normEps}`);
    const row = h.row;
    const attn = h.layerKinds.map((k, l) => (k === 'attention' ? l : -1)).filter((l) => l >= 0);
    const pattern = attn.length === 0 ? 'recurrent state, no KV cache'
      : `attention in layers ${attn.join(', ')} (${h.attn!.nHead} heads of ${h.attn!.headDim}, ${h.attn!.nHeadKv} KV, f16 KV cache), Mamba-2 in the rest`;
    out.push(`  family ${row.title} (${row.family}): ${row.block} blocks (${pattern}); linear kind/input quantizer: `
      + `ssm_in ${row.linears.ssm_in.kind}/${row.linears.ssm_in.act}, ssm_out ${row.linears.ssm_out.kind}/${row.linears.ssm_out.act}`);
  } else if (r.hparams) {
    const h = r.hparams;
    out.push(`  layers ${h.nLayer}, d_model ${h.nEmbd}, heads ${h.nHead} (kv ${h.nHeadKv}, head dim ${h.headDim}), ffn ${h.nFf} (${h.activation}),`);
    out.push(`  vocab ${h.nVocab}, context ${h.nCtxTrain}, rope θ ${h.ropeTheta} (${h.nRot} dims), rms eps ${h.eps}`);
    const row = h.row;
    const kinds = PROJECTIONS.map((p) => `${p} ${row.linears[p].kind}/${row.linears[p].act}`).join(', ');
    out.push(`  family ${row.title} (${row.family}): ${row.block} blocks, kv ${row.kv}; linear kind/input quantizer: ${kinds}`);
  } else out.push(`  (not runnable: ${r.hparamsError})`);
  out.push(`tensors: ${r.tensors.count}, ${mb(r.tensors.bytes)}`);
  for (const [type, t] of Object.entries(r.tensors.types).sort((a, b) => b[1].bytes - a[1].bytes))
    out.push(`  ${type.padEnd(8)} ${String(t.count).padStart(5)} tensors  ${mb(t.bytes).padStart(12)}`);
  for (const t of r.tensors.list ?? []) out.push(`    ${t.name.padEnd(32)} ${t.type.padEnd(6)} [${t.dims.join(', ')}]  ${t.bytes} B`);
  if (r.tokenizer) {
    const t = r.tokenizer;
    out.push(`tokenizer: ${t.model}${t.pre ? ` (${t.pre})` : ''}, ${t.vocabSize} tokens, bos ${t.bos ?? '-'}, eos ${t.eos ?? '-'}, ` +
      `eog [${t.eog.join(', ')}], add_bos ${t.addBos}; chat format ${t.chatFormat} (from the ${t.chatFormatSource})`);
  } else if (r.tokenizerError) out.push(`tokenizer: unusable: ${r.tokenizerError}`);
  out.push('metadata:');
  for (const [k, v] of Object.entries(r.metadata)) {
    const s = typeof v === 'string' ? JSON.stringify(v.length > 120 ? `${v.slice(0, 117)}...` : v) : String(v);
    out.push(`  ${k} = ${s}`);
  }
  process.stdout.write(out.join('\n') + '\n');
}

export async function runInspectCommand(argv: string[]): Promise<number> {
  const cl = new CommandLine(argv, INSPECT_SPEC);
  if (cl.has('help')) {
    process.stdout.write(INSPECT_USAGE);
    return 0;
  }
  const report = inspectGguf(readGguf(cl.model()), cl.has('tensors'));
  if (cl.has('json')) process.stdout.write(JSON.stringify(report) + '\n');
  else printReport(report);
  return 0;
}
