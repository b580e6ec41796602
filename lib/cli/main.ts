#!/usr/bin/env node
// bitllm command line. Exit codes: 0 ok, 1 a model/file/native failure (message names the file), 2 a usage
// or request error. Expected errors print one message, never a stack trace.
import { RequestError } from '../engine/generate.js';
import { ContextOverflowError } from '../model/kv-cache.js';
import { SamplerError } from '../engine/sampler.js';
import { BitllmError } from '../errors.js';
import { cpuInfo, kernelInfo } from '../kernels/context.js';
import type { Isa } from '../native.js';
import { UsageError, intList, parseArgs } from './args.js';
import { DEFAULT_SHAPES, KERNEL_CASES, defaultIsas, lastLevelCacheBytes, runKernelBench } from './bench-kernels.js';
import { runChatCommand } from './chat.js';
import { runConvertCommand } from './convert.js';
import { runInspectCommand } from './inspect.js';
import { runPerplexityCommand } from './perplexity.js';
import { runPullCommand } from './pull.js';
import { runBenchModelCommand } from './bench-model.js';
import { runRunCommand } from './run.js';
import { runServeCommand } from './serve.js';
import { runSynthCommand } from './synth.js';
import { runQuantizeCommand } from './quantize.js';
import { runTokenizeCommand } from './tokenize.js';

const USAGE = `usage: bitllm <command> [options]

commands:
  run [MODEL] -p TEXT          generate a completion (-n N, --temp T, --seed S, --json, ...); no MODEL: the built-in one
  chat [MODEL]                 interactive chat (/reset, /exit; Ctrl-C stops a reply)
  serve [MODEL]                OpenAI-compatible HTTP server (--host, --port, --parallel, --api-key, ...; docs/server.md)
  inspect MODEL [--json]       architecture, hyperparameters, tensor types and sizes, tokenizer
  tokenize MODEL TEXT          token ids (--json, --no-bos, --file F); vocab-only files work
  perplexity MODEL -f TEXT     mean NLL and perplexity over --ctx windows (--json, --dump-logits OUT)
  synth --shape S --type T -o F   write a synthetic model of any architecture (--arch)
  quantize MODEL --method M -o F  post-training binarization of a dense model: billm (--calib TEXT) or absmax (--bits 1|2)
  pull hf:OWNER/REPO[/FILE][@REV]  download a model from the Hugging Face hub into the cache (--offline, --json);
                               MODEL may then be hf:OWNER/REPO or OWNER/REPO
  convert HF_DIR -o F.gguf     a Hugging Face checkpoint (BitNet 2B-4T, 1bitLLM, FBI-LLM, OneBit) to GGUF (--type)
  info                         CPU features, supported ISAs and the default kernel variants
  bench MODEL [-p 128] [-n 32]   end-to-end prefill / decode tok/s (-t, --reps, --head, --json, --profile)
  bench kernels [--json]       kernel GEMV/GEMM throughput vs the machine's read bandwidth
      --kernels a,b            kernels to run (default: all: ${KERNEL_CASES.map((k) => k.name).join(', ')})
      --isa a,b                ISAs (default: every supported one)
      -t, --threads 1,4        thread counts (default: 1 and the physical core count)
      --batch 1,8,128          batch sizes (default: 1,8,128)
      --shapes MxK,...         shapes (default: the BitNet 2B-4T and 3B projections)
      --seconds S              timed seconds per row (default 0.3)
      --quick                  fewer, shorter rows (2560x2560 and 6912x2560, 0.05 s)
      --no-reference           skip the TypeScript reference rows

'bitllm COMMAND --help' shows a command's options.
`;

const VALUED = new Set(['kernels', 'isa', 'threads', 't', 'batch', 'shapes', 'seconds']);

function list(v: string | true | undefined): string[] | undefined {
  return typeof v === 'string' ? v.split(',').map((s) => s.trim()).filter(Boolean) : undefined;
}

/** Commands with their own option parsing: they get the arguments after the command name. */
const COMMANDS = new Map<string, (argv: string[]) => Promise<number>>([
  ['run', runRunCommand],
  ['chat', runChatCommand],
  ['serve', runServeCommand],
  ['inspect', runInspectCommand],
  ['tokenize', runTokenizeCommand],
  ['perplexity', runPerplexityCommand],
  ['synth', runSynthCommand],
  ['quantize', runQuantizeCommand],
  ['pull', runPullCommand],
  ['convert', runConvertCommand],
]);

async function main(argv: string[]): Promise<number> {
  const command = argv[0] !== undefined ? COMMANDS.get(argv[0]) : undefined;
  if (command) return command(argv.slice(1));
  // `bench MODEL ...` (anything but the `kernels` subcommand) is the end-to-end model benchmark.
  if (argv[0] === 'bench' && argv[1] !== undefined && argv[1] !== 'kernels' && !argv[1].startsWith('-')) return runBenchModelCommand(argv.slice(1));
  const { positionals, options } = parseArgs(argv, VALUED);
  const [cmd, sub] = positionals;
  if (!cmd || options.has('help') || options.has('h')) {
    process.stdout.write(USAGE);
    return cmd ? 0 : 1;
  }
  if (cmd === 'info') {
    process.stdout.write(JSON.stringify(kernelInfo(), null, 2) + '\n');
    return 0;
  }
  if (cmd === 'bench' && sub === 'kernels') {
    const json = options.has('json');
    const quick = options.has('quick');
    const supported = defaultIsas();
    const isas = (list(options.get('isa')) ?? supported) as Isa[];
    for (const isa of isas) if (!supported.includes(isa)) throw new UsageError(`--isa ${isa} is not supported here (supported: ${supported.join(', ')})`);
    const kernels = list(options.get('kernels')) ?? KERNEL_CASES.map((k) => k.name);
    for (const k of kernels) if (!KERNEL_CASES.some((c) => c.name === k)) throw new UsageError(`unknown kernel '${k}'`);
    const shapesOpt = list(options.get('shapes'));
    const shapes = shapesOpt
      ? shapesOpt.map((s) => {
          const m = /^(\d+)x(\d+)$/.exec(s);
          if (!m) throw new UsageError(`--shapes: expected MxK, got '${s}'`);
          return [Number(m[1]), Number(m[2])] as [number, number];
        })
      : quick ? [[2560, 2560], [6912, 2560]] as Array<[number, number]> : DEFAULT_SHAPES;
    const secondsOpt = options.get('seconds');
    const seconds = typeof secondsOpt === 'string' ? Number(secondsOpt) : quick ? 0.05 : 0.3;
    if (!(seconds > 0)) throw new UsageError('--seconds must be a positive number');
    const rows: Array<Record<string, unknown>> = [];
    runKernelBench({
      kernels,
      isas,
      threads: intList(options.get('threads') ?? options.get('t'), 'threads', [...new Set([1, cpuInfo().physicalCores])]),
      batches: intList(options.get('batch'), 'batch', [1, 8, 128]),
      shapes,
      seconds,
      reference: !options.has('no-reference'),
      coldBytes: Math.max(256 << 20, 8 * lastLevelCacheBytes()),
      emit: (line) => {
        if (json) process.stdout.write(JSON.stringify(line) + '\n');
        else rows.push(line);
      },
    });
    if (!json) printKernelTable(rows);
    return 0;
  }
  throw new UsageError(`unknown command '${positionals.join(' ')}'`);
}

/**
 * The human form of `bench kernels`: the machine's probes first (read bandwidth and int8 peak per thread
 * count, start and end averaged), then one line per kernel row with its share of the read bandwidth — the
 * figure to compare across boards: a batch-1 'dram' row near 100 % means decode is memory-bound there.
 */
function printKernelTable(lines: Array<Record<string, unknown>>): void {
  const probe = (name: string, threads: unknown, field: string): number | undefined => {
    const v = lines.filter((l) => l.probe === name && l.threads === threads).map((l) => Number(l[field]));
    return v.length ? v.reduce((a, b) => a + b, 0) / v.length : undefined;
  };
  const threadCounts = [...new Set(lines.filter((l) => l.probe).map((l) => l.threads))];
  for (const t of threadCounts) {
    const bw = probe('read_bw', t, 'gbps'), peak = probe('int8_peak', t, 'gops');
    console.log(`${t} thread(s): read bandwidth ${bw?.toFixed(1) ?? '?'} GB/s` + (peak !== undefined ? `, int8 peak ${peak.toFixed(0)} Gop/s` : ''));
  }
  const rows = lines.filter((l) => 'kernel' in l).map((l) => {
    const bw = probe('read_bw', l.threads, 'gbps');
    return {
      kernel: l.kernel, isa: l.isa, shape: `${l.m}x${l.k}`, batch: l.batch, threads: l.threads, weights: l.cache,
      ms: l.ms, 'GB/s': l.gbps, '% read bw': bw && l.isa !== 'reference' ? Math.round((100 * Number(l.gbps)) / bw) : '', 'Gop/s': l.gops,
    };
  });
  console.table(rows);
}

/** User errors (exit 2): the request was wrong, not the model. */
function isUserError(err: unknown): boolean {
  return err instanceof UsageError || err instanceof RequestError || err instanceof SamplerError || err instanceof ContextOverflowError;
}

/** Exits once stdout has taken everything written to it. */
function exit(code: number): void {
  process.stdout.write('', () => process.exit(code));
}

main(process.argv.slice(2)).then(
  (code) => exit(code),
  (err: unknown) => {
    if (err instanceof UsageError && !COMMANDS.has(argv0() ?? '')) {
      process.stderr.write(`bitllm: ${err.message}\n\n${USAGE}`);
      exit(2);
      return;
    }
    if (isUserError(err)) {
      const hint = err instanceof UsageError ? ` (see 'bitllm ${argv0()} --help')` : '';
      process.stderr.write(`bitllm: ${(err as Error).message}${hint}\n`);
      exit(2);
      return;
    }
    // Model format, tokenizer and native errors carry a message naming the file; anything else is a bug.
    const expected = err instanceof BitllmError;
    process.stderr.write(`bitllm: ${expected ? (err as Error).message : err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
    exit(1);
  },
);

function argv0(): string | undefined {
  return process.argv[2];
}
