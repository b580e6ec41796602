// `bitllm run MODEL -p TEXT`: one completion, streamed to stdout (or one JSON line with --json).
// Also the option handling the model commands share (chat, perplexity): typed option access with usage
// errors, model loading with progress on a TTY, sampling flags.
import { basename, dirname, join } from 'node:path';
import { existsSync, statSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

import { type LoadModelOptions, type Model, loadModel } from '../api.js';
import type { GenerateOptions } from '../engine/generate.js';
import type { Isa } from '../native.js';
import { looksLikeRepoName, resolveModelPath } from '../hub/pull.js';
import { UsageError, parseArgs } from './args.js';
import { formatProfile } from './profile.js';

// ---------------------------------------------------------------- shared option handling

/**
 * The model `run` and `chat` use when none is given: the b1.58 model trained from scratch by train/ and
 * shipped in the package (models/, see docs/training.md).
 */
export const DEFAULT_MODEL = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'models', 'tiny-b158-i2_s.gguf');

export interface CommandSpec {
  /** e.g. 'run', for messages. */
  name: string;
  /** Options that take a value; an alias maps to its canonical name. */
  valued: Record<string, string>;
  /** Options without a value (aliases likewise). */
  flags: Record<string, string>;
}

/** Parsed arguments of one command: unknown options are usage errors, values are checked on access. */
export class CommandLine {
  readonly positionals: string[];
  private readonly values = new Map<string, string>();
  private readonly set = new Set<string>();

  constructor(argv: string[], private readonly spec: CommandSpec) {
    const { positionals, options } = parseArgs(argv, new Set(Object.keys(spec.valued)));
    this.positionals = positionals;
    for (const [key, value] of options) {
      const dash = key.length === 1 ? '-' : '--';
      const valued = spec.valued[key];
      const flag = spec.flags[key];
      if (valued !== undefined) {
        if (value === true) throw new UsageError(`${spec.name}: option ${dash}${key} needs a value`);
        this.values.set(valued, value);
      } else if (flag !== undefined) {
        if (value !== true) throw new UsageError(`${spec.name}: option ${dash}${key} takes no value`);
        this.set.add(flag);
      } else throw new UsageError(`${spec.name}: unknown option ${dash}${key}`);
    }
  }

  has(name: string): boolean {
    return this.set.has(name);
  }

  str(name: string): string | undefined {
    return this.values.get(name);
  }

  num(name: string, min: number, max: number): number | undefined {
    const v = this.values.get(name);
    if (v === undefined) return undefined;
    const n = Number(v);
    if (v.trim() === '' || !Number.isFinite(n) || n < min || n > max)
      throw new UsageError(`${this.spec.name}: --${name} must be a number in [${min}, ${max}], got '${v}'`);
    return n;
  }

  int(name: string, min: number, max: number): number | undefined {
    const v = this.values.get(name);
    if (v === undefined) return undefined;
    const n = Number(v);
    if (!/^-?\d+$/.test(v.trim()) || n < min || n > max)
      throw new UsageError(`${this.spec.name}: --${name} must be an integer in [${min}, ${max}], got '${v}'`);
    return n;
  }

  choice<T extends string>(name: string, allowed: readonly T[]): T | undefined {
    const v = this.values.get(name);
    if (v === undefined) return undefined;
    if (!(allowed as readonly string[]).includes(v)) throw new UsageError(`${this.spec.name}: --${name} must be one of ${allowed.join(', ')}, got '${v}'`);
    return v as T;
  }

  /** A comma-separated list of token ids. */
  ids(name: string): number[] | undefined {
    const v = this.values.get(name);
    if (v === undefined) return undefined;
    const parts = v.split(',').map((s) => s.trim());
    if (parts.some((p) => !/^\d+$/.test(p))) throw new UsageError(`${this.spec.name}: --${name} must be comma-separated token ids, got '${v}'`);
    return parts.map(Number);
  }

  /**
   * The model path (first positional), which must be an existing file or a hub reference already pulled into
   * the cache (`hf:owner/repo[/file][@rev]` or `owner/repo`); no further positionals unless `rest`.
   * With `useDefault`, no positional means the package's built-in model (DEFAULT_MODEL).
   */
  model(rest = false, useDefault = false): string {
    const [given, ...more] = this.positionals;
    let path = given;
    if (path === undefined && useDefault) {
      if (!existsSync(DEFAULT_MODEL)) throw new UsageError(`${this.spec.name}: no MODEL given and the built-in model ${DEFAULT_MODEL} is missing`);
      path = DEFAULT_MODEL;
    }
    if (path === undefined) throw new UsageError(`${this.spec.name}: MODEL (a .gguf file) is required`);
    if (!rest && more.length > 0) throw new UsageError(`${this.spec.name}: unexpected argument '${more[0]}'`);
    // A hub reference (hf:owner/repo[/file][@rev], or a bare owner/repo) names a pulled file in the cache.
    const resolved = resolveModelPath(path);
    if (resolved === undefined) {
      const hint = looksLikeRepoName(path) ? ` (nor is hub repo '${path}' in the cache: 'bitllm pull hf:${path}' downloads it)` : '';
      throw new UsageError(`${this.spec.name}: model file '${path}' does not exist${hint}`);
    }
    path = resolved;
    let isFile = false;
    try {
      isFile = statSync(path).isFile();
    } catch {
      throw new UsageError(`${this.spec.name}: model file '${path}' does not exist`);
    }
    if (!isFile) throw new UsageError(`${this.spec.name}: '${path}' is not a file`);
    return path;
  }
}

/** Options every model-loading command accepts. */
export const MODEL_VALUED: Record<string, string> = { t: 'threads', threads: 'threads', ctx: 'ctx', c: 'ctx', kv: 'kv', head: 'head', layout: 'layout', isa: 'isa', act: 'act' };

/** Sampling options of run and chat. */
export const SAMPLING_VALUED: Record<string, string> = {
  n: 'n', 'max-tokens': 'n', temp: 'temp', temperature: 'temp', 'top-k': 'top-k', 'top-p': 'top-p', 'min-p': 'min-p',
  'repeat-penalty': 'repeat-penalty', 'frequency-penalty': 'frequency-penalty', 'presence-penalty': 'presence-penalty',
  seed: 'seed', stop: 'stop',
};

export const MODEL_USAGE = `      -t, --threads N            kernel threads (default: physical cores)
      -c, --ctx N                context size in tokens (default: min(4096, the model's))
      --kv f16|q8|q3             KV cache type (q8: int8 blocks of 32, half the memory of f16; q3: 3-bit blocks,
                                 the default of bitnet-a4.8 models, which are trained with it)
      --head f16|q8|q4           lm_head / embedding type: q8 (0.53x the F16 bytes per token) or q4 (0.28x), repacked at load
      --layout auto|t2r16|td3    in-memory ternary layout: td3 is 1.6875 bits/weight (16 % fewer bytes, same results);
                                 auto (default) picks it where the CPU decodes it at least as fast (AVX-512 VBMI)
      --isa ISA                  force a kernel ISA (scalar, avx2, avx512, neon)
      --act auto|i8              FBI-LLM / OneBit projection inputs: float (auto, exact) or int8 per token (i8)`;

export const SAMPLING_USAGE = `      -n, --max-tokens N         tokens to generate
      --temp T                   temperature (0 = greedy; default 0.8)
      --top-k K --top-p P --min-p P      (defaults 40, 0.95, 0.05)
      --repeat-penalty R --frequency-penalty F --presence-penalty P
      --seed S                   RNG seed (default: random)
      --stop TEXT                stop before this text`;

export function loadOptions(cl: CommandLine, contextSize?: number): LoadModelOptions {
  const opts: LoadModelOptions = {};
  const threads = cl.int('threads', 1, 1024);
  if (threads !== undefined) opts.threads = threads;
  const ctx = contextSize ?? cl.int('ctx', 2, 1 << 20);
  if (ctx !== undefined) opts.contextSize = ctx;
  const kv = cl.choice('kv', ['f16', 'q8', 'q3'] as const);
  if (kv !== undefined) opts.kvType = kv;
  const head = cl.choice('head', ['f16', 'q8', 'q4'] as const);
  if (head !== undefined) opts.headType = head;
  const layout = cl.choice('layout', ['auto', 't2r16', 'td3'] as const);
  if (layout !== undefined) opts.layout = layout;
  const isa = cl.choice<Isa>('isa', ['scalar', 'avx2', 'avx512', 'neon']);
  if (isa !== undefined) opts.isa = isa;
  const act = cl.choice('act', ['auto', 'i8'] as const);
  if (act !== undefined) opts.actQuant = act;
  return opts;
}

export function samplingOptions(cl: CommandLine, defaultMaxTokens: number | undefined): GenerateOptions {
  const o: GenerateOptions = {};
  const set = <K extends keyof GenerateOptions>(k: K, v: GenerateOptions[K] | undefined) => {
    if (v !== undefined) o[k] = v;
  };
  set('maxTokens', cl.int('n', 1, 1 << 24) ?? defaultMaxTokens);
  set('temperature', cl.num('temp', 0, 100));
  set('topK', cl.int('top-k', 0, 1e9));
  set('topP', cl.num('top-p', 0, 1));
  set('minP', cl.num('min-p', 0, 1));
  set('repeatPenalty', cl.num('repeat-penalty', 0, 100));
  set('frequencyPenalty', cl.num('frequency-penalty', -100, 100));
  set('presencePenalty', cl.num('presence-penalty', -100, 100));
  set('seed', cl.int('seed', 0, 2 ** 32 - 1));
  const stop = cl.str('stop');
  if (stop !== undefined) {
    if (stop === '') throw new UsageError('--stop needs a non-empty text');
    o.stop = [stop];
  }
  return o;
}

/** Loads a model, with a progress line on stderr when it is a TTY and `quiet` is off. */
export async function openModel(path: string, opts: LoadModelOptions, quiet: boolean): Promise<Model> {
  const tty = !quiet && process.stderr.isTTY;
  if (tty) process.stderr.write(`loading ${basename(path)}…`);
  try {
    const model = await loadModel(path, {
      ...opts,
      ...(tty && { onProgress: (done: number, total: number) => process.stderr.write(`\r\x1b[Kloading ${basename(path)}: layer ${done}/${total}`) }),
    });
    if (tty) {
      const i = model.info;
      process.stderr.write(`\r\x1b[Kloaded ${basename(path)}: ${i.arch}, ${i.hparams.nLayer} layers, ` +
        `${(i.weightBytes / 1e6).toFixed(0)} MB/token, ${i.isa} × ${i.threads} threads, ctx ${i.contextSize} (${(i.loadMs / 1000).toFixed(2)} s)\n`);
    }
    return model;
  } catch (err) {
    if (tty) process.stderr.write('\r\x1b[K');
    throw err;
  }
}

// ---------------------------------------------------------------- run

export const RUN_USAGE = `usage: bitllm run [MODEL] (-p TEXT | --tokens 1,2,3) [options]
      MODEL                      a .gguf file, or a pulled hub model: hf:OWNER/REPO[/FILE][@REV] or OWNER/REPO (default: the built-in tiny b1.58 model, models/tiny-b158-i2_s.gguf)
      -p, --prompt TEXT          prompt text (tokenized with the model's BOS rule)
      --tokens 1,2,3             prompt as token ids
      --json                     print one line {"tokens","text","prompt_tokens","decode_tps"}, nothing else
      --profile                  time per op class per token (stderr; in the JSON line with --json)
${SAMPLING_USAGE}
${MODEL_USAGE}
`;

const RUN_SPEC: CommandSpec = {
  name: 'run',
  valued: { p: 'prompt', prompt: 'prompt', tokens: 'tokens', ...SAMPLING_VALUED, ...MODEL_VALUED },
  flags: { json: 'json', profile: 'profile', help: 'help', h: 'help' },
};

export async function runRunCommand(argv: string[]): Promise<number> {
  const cl = new CommandLine(argv, RUN_SPEC);
  if (cl.has('help')) {
    process.stdout.write(RUN_USAGE);
    return 0;
  }
  const path = cl.model(false, true);
  const text = cl.str('prompt');
  const ids = cl.ids('tokens');
  if ((text === undefined) === (ids === undefined)) throw new UsageError('run: give the prompt as -p TEXT or as --tokens 1,2,3 (one of them)');
  if (text === '') throw new UsageError('run: -p needs a non-empty prompt');
  const json = cl.has('json');
  const sampling = samplingOptions(cl, 128);
  const model = await openModel(path, loadOptions(cl), json);
  const abort = new AbortController();
  const onSigint = () => abort.abort(); // Ctrl-C ends the completion; what was generated is kept
  process.once('SIGINT', onSigint);
  try {
    const profile = cl.has('profile');
    const gen = model.generate(text ?? ids!, { ...sampling, signal: abort.signal, ...(profile && { profile }) });
    let r = await gen.next();
    for (; !r.done; r = await gen.next()) if (!json) process.stdout.write(r.value.text);
    const res = r.value;
    if (json) {
      process.stdout.write(JSON.stringify({
        tokens: res.tokens, text: res.text, prompt_tokens: res.stats.promptTokens, decode_tps: Math.round(res.stats.decodeTps * 100) / 100,
        ...(res.stats.profile && { profile: res.stats.profile }),
      }) + '\n');
    } else {
      if (!res.text.endsWith('\n')) process.stdout.write('\n');
      if (process.stderr.isTTY) {
        const s = res.stats;
        process.stderr.write(`[${s.promptTokens} prompt tokens in ${(s.prefillMs / 1000).toFixed(2)} s, ${s.generatedTokens} generated at ` +
          `${s.decodeTps.toFixed(1)} tok/s, finish: ${res.finishReason}]\n`);
      }
      if (res.stats.profile) process.stderr.write(formatProfile(res.stats.profile));
    }
    return 0;
  } finally {
    process.off('SIGINT', onSigint);
    await model.close();
  }
}
