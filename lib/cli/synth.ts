// `bitllm synth`: writes a synthetic model of any architecture row (lib/model/synth.ts) for tests and benchmarks.
import { writeFileSync } from 'node:fs';
import { performance } from 'node:perf_hooks';

import { GgufType, readGguf } from '../format/gguf.js';
import { ARCH_NAMES } from '../model/arch.js';
import { BI_MAMBA_ARCH, MAMBA2_SHAPES, type Mamba2ShapeName, synthMamba2Gguf } from '../model/mamba2.js';
import { SYNTH_SHAPES, SYNTH_TYPES, type SynthShapeName, type SynthType, SynthError, synthesizeModel } from '../model/synth.js';
import { UsageError, parseArgs } from './args.js';

export const SYNTH_USAGE = `usage: bitllm synth --shape SHAPE --type TYPE -o FILE [options]

  --shape tiny|small|large|1b3|3b|2b4t   model shape (1b3: FBI-LLM 1.3B; 3b: i2_s only; 2b4t: BitNet b1.58 2B-4T, llama-bpe vocabulary)
  --type i2_s|tq2_0|tq1_0|q1_0|f16   projection type: ternary layouts, Q1_0 signs, F16 dense
  -o, --out FILE                     output GGUF
  --arch ARCH                        general.architecture: ${ARCH_NAMES.join(', ')}, ${BI_MAMBA_ARCH}, mamba2
                                     (${BI_MAMBA_ARCH}: --shape ${Object.keys(MAMBA2_SHAPES).join('|')} --type q1_0, the paper's models;
                                     mamba2: the same shapes --type f16, the full-precision Mamba-2 layout;
                                     bi-mamba-hybrid: --type q1_0, attention in one layer of four)
                                     (default: bitnet-b1.58 for i2_s, bitnet for tq2_0/tq1_0, bitnet-1bit for q1_0,
                                     bitnet-f16 for f16); the type must fit the architecture's projections
  --activation relu2|silu            write <arch>.hidden_activation (default: not written)
  --seed N                           32-bit seed (default 1); one seed gives the same weights in every layout
  --vocab FILE                       GGUF whose tokenizer.ggml.* keys are copied (default in a checkout: llama.cpp's
                                     ggml-vocab-llama-spm/-bpe.gguf from .cache/test-data/vocab, see scripts/test-data.mjs)
  --json                             print a one-line JSON summary, no progress
`;

const VALUED = new Set(['shape', 'type', 'arch', 'activation', 'seed', 'vocab', 'o', 'out']);
const FLAGS = new Set(['json', 'help', 'h']);
const ARCHS: readonly string[] = [...ARCH_NAMES, BI_MAMBA_ARCH, 'mamba2', 'bi-mamba-hybrid'];

function choice<T extends string>(v: string | true | undefined, name: string, allowed: readonly T[], required: boolean): T | undefined {
  if (v === undefined) {
    if (required) throw new UsageError(`--${name} is required (one of ${allowed.join(', ')})`);
    return undefined;
  }
  if (v === true || !(allowed as readonly string[]).includes(v)) throw new UsageError(`--${name} must be one of ${allowed.join(', ')}, got '${v === true ? '' : v}'`);
  return v as T;
}

/** Progress on a TTY: one rewritten line, at most ~10 updates a second. */
function progressLine(label: string): { update: (done: number, total: number) => void; end: () => void } {
  let last = 0;
  let shown = false;
  return {
    update(done, total) {
      const now = Date.now();
      if (now - last < 100 && done < total) return;
      last = now;
      shown = true;
      process.stderr.write(`\r${label}: ${((100 * done) / total).toFixed(0).padStart(3)}% (${(done / 1e6).toFixed(0)}/${(total / 1e6).toFixed(0)} MB)`);
    },
    end() {
      if (shown) process.stderr.write('\n');
    },
  };
}

/** Runs `bitllm synth` with the arguments after the command name; returns the exit code. */
export async function runSynthCommand(argv: string[]): Promise<number> {
  const args = argv[0] === 'synth' ? argv.slice(1) : argv;
  let opts: Parameters<typeof synthesizeModel>[0];
  let json: boolean;
  try {
    const { positionals, options } = parseArgs(args, VALUED);
    if (options.has('help') || options.has('h')) {
      process.stdout.write(SYNTH_USAGE);
      return 0;
    }
    for (const k of options.keys()) if (!VALUED.has(k) && !FLAGS.has(k)) throw new UsageError(`unknown option ${k.length === 1 ? '-' : '--'}${k}`);
    for (const k of FLAGS) if (options.has(k) && options.get(k) !== true) throw new UsageError(`--${k} takes no value`);
    if (positionals.length > 0) throw new UsageError(`unexpected argument '${positionals[0]}'`);
    json = options.has('json');
    if ([BI_MAMBA_ARCH, 'mamba2', 'bi-mamba-hybrid'].includes(options.get('arch') as string)) return synthBiMamba(options, json);
    const shape = choice(options.get('shape'), 'shape', Object.keys(SYNTH_SHAPES) as SynthShapeName[], true)!;
    const type = choice(options.get('type'), 'type', SYNTH_TYPES, true)!;
    const arch = choice(options.get('arch'), 'arch', ARCHS, false);
    const activation = choice(options.get('activation'), 'activation', ['relu2', 'silu'] as const, false);
    const seedOpt = options.get('seed');
    let seed: number | undefined;
    if (seedOpt !== undefined) {
      seed = seedOpt === true || !/^\d+$/.test(seedOpt) ? NaN : Number(seedOpt);
      if (!(Number.isInteger(seed) && seed <= 0xffffffff)) throw new UsageError(`--seed must be an integer in [0, 4294967295], got '${seedOpt === true ? '' : seedOpt}'`);
    }
    const vocab = options.get('vocab');
    if (vocab === true) throw new UsageError('--vocab needs a file');
    if (options.has('o') && options.has('out')) throw new UsageError('give the output once (-o or --out)');
    const out = options.get('o') ?? options.get('out');
    if (out === undefined || out === true) throw new UsageError('-o FILE is required');
    opts = { shape, type, out, ...(arch && { arch }), ...(activation && { activation }), ...(seed !== undefined && { seed }), ...(vocab !== undefined && { vocab }) };
  } catch (err) {
    if (err instanceof UsageError) {
      process.stderr.write(`bitllm synth: ${err.message}\n\n${SYNTH_USAGE}`);
      return 2;
    }
    throw err;
  }

  const progress = !json && process.stderr.isTTY ? progressLine(`synth ${opts.shape} ${opts.type}`) : undefined;
  try {
    const r = await synthesizeModel({ ...opts, ...(progress && { onProgress: progress.update }) });
    progress?.end();
    if (json) process.stdout.write(JSON.stringify(r) + '\n');
    else process.stdout.write(`wrote ${r.path}: ${r.shape} ${r.type} (${r.arch}, seed ${r.seed}, vocab ${r.nVocab}), ${r.tensors} tensors, ${(r.bytes / 1e6).toFixed(1)} MB in ${r.seconds.toFixed(1)} s\n`);
    return 0;
  } catch (err) {
    progress?.end();
    // An impossible combination (3b as tq2_0, i2_s under 'bitnet', no vocabulary) is a usage error.
    if (err instanceof SynthError) {
      process.stderr.write(`bitllm synth: ${err.message}\n`);
      return 2;
    }
    throw err;
  }
}

/**
 * `bitllm synth --arch bi-mamba` (`--type q1_0`) or `--arch mamba2` (`--type f16`, the FP teacher's layout): a
 * Mamba-2 block kind GGUF (lib/model/mamba2.ts) with LLaMA-2's vocabulary by default.
 */
function synthBiMamba(options: Map<string, string | true>, json: boolean): number {
  const arch = options.get('arch') as string;
  const dense = arch === 'mamba2';
  const shape = choice(options.get('shape'), 'shape', Object.keys(MAMBA2_SHAPES) as Mamba2ShapeName[], true)!;
  const type = choice(options.get('type'), 'type', dense ? ['f16'] as const : ['q1_0'] as const, true)!;
  if (options.has('activation')) throw new UsageError(`--activation does not apply to ${arch}`);
  const seedOpt = options.get('seed');
  const seed = seedOpt === undefined ? 1 : seedOpt === true || !/^\d+$/.test(seedOpt) ? NaN : Number(seedOpt);
  if (!(Number.isInteger(seed) && seed <= 0xffffffff)) throw new UsageError(`--seed must be an integer in [0, 4294967295], got '${String(seedOpt)}'`);
  const out = options.get('o') ?? options.get('out');
  if (out === undefined || out === true) throw new UsageError('-o FILE is required');
  const vocabOpt = options.get('vocab');
  if (vocabOpt === true) throw new UsageError('--vocab needs a file');
  const vocabPath = vocabOpt ?? new URL('../../.cache/test-data/vocab/ggml-vocab-llama-spm.gguf', import.meta.url).pathname;
  let vocab;
  try {
    vocab = readGguf(vocabPath);
  } catch (err) {
    process.stderr.write(`bitllm synth: vocabulary ${vocabPath}: ${(err as Error).message}; pass --vocab FILE (a GGUF with tokenizer.ggml.* keys)\n`);
    return 2;
  }
  const tokens = vocab.metadata.get('tokenizer.ggml.tokens');
  if (!tokens || !Array.isArray(tokens.value) || tokens.value.length === 0) {
    process.stderr.write(`bitllm synth: ${vocabPath} has no tokenizer.ggml.tokens: pass --vocab with a GGUF that has a tokenizer\n`);
    return 2;
  }
  const t0 = performance.now();
  const bytes = synthMamba2Gguf({
    ...MAMBA2_SHAPES[shape], nVocab: tokens.value.length, seed, dense,
    // The hybrid: one attention layer in four (layers 1, 5, 9, ...), heads of 64, four query heads per KV head.
    ...(arch === 'bi-mamba-hybrid' && {
      hybrid: {
        attnLayers: Array.from({ length: MAMBA2_SHAPES[shape].nLayer }, (_, l) => l).filter((l) => l % 4 === 1),
        nHead: MAMBA2_SHAPES[shape].dModel / 64, nHeadKv: Math.max(1, MAMBA2_SHAPES[shape].dModel / 256),
      },
    }),
    metadata: (w) => {
      for (const [k, e] of vocab.metadata) if (k.startsWith('tokenizer.ggml.')) w.set(k, e.type, e.value, e.itemType);
      w.set('general.name', GgufType.STRING, `synthetic-${arch}-${shape}-s${seed}`);
    },
  });
  writeFileSync(out, bytes);
  const r = { path: out, shape, type, arch, seed, nVocab: tokens.value.length, bytes: bytes.length, seconds: (performance.now() - t0) / 1000 };
  if (json) process.stdout.write(JSON.stringify(r) + '\n');
  else process.stdout.write(`wrote ${r.path}: ${shape} ${type} (${r.arch}, seed ${seed}, vocab ${r.nVocab}), ${(r.bytes / 1e6).toFixed(1)} MB in ${r.seconds.toFixed(1)} s\n`);
  return 0;
}
