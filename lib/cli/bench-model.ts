// `bitllm bench MODEL`: llama-bench-like end-to-end throughput through the public API (worker thread,
// messages, sampling included): prefill of -p tokens, then decode of -n tokens, --reps times. Prints one
// JSON line with the means (and min/max) or a short table. The prompt is deterministic pseudo-random
// token ids, different per rep so no rep reuses another's KV cache; generation ignores EOG tokens.
import { performance } from 'node:perf_hooks';

import type { PhaseProfile, RequestProfile } from '../engine/generate.js';
import { type CommandSpec, CommandLine, MODEL_USAGE, MODEL_VALUED, loadOptions, openModel } from './run.js';
import { formatProfile } from './profile.js';
import { UsageError } from './args.js';
import { residentBytes } from '../engine/resident.js';

export const BENCH_MODEL_USAGE = `usage: bitllm bench MODEL [-p 128] [-n 32] [-t THREADS] [--reps 3] [--json] [--profile]
      -p, --prompt-tokens N      prompt length for the prefill figure (default 128; 0 = skip prefill)
      -n, --gen-tokens N         tokens to decode (default 32)
      --reps R                   repetitions (default 3); figures are means, with min and max
      --warmup W                 untimed warm-up runs before the reps (default 1)
      --json                     one JSON line: {"pp_tps","tg_tps","load_ms","rss_mb","isa","threads",...}
      --profile                  time per op class per token (decode and prefill), and the overhead outside the kernels
${MODEL_USAGE}
`;

const SPEC: CommandSpec = {
  name: 'bench',
  valued: { p: 'p', 'prompt-tokens': 'p', n: 'n', 'gen-tokens': 'n', reps: 'reps', warmup: 'warmup', ...MODEL_VALUED },
  flags: { json: 'json', profile: 'profile', help: 'help', h: 'help' },
};

interface Stat {
  mean: number;
  min: number;
  max: number;
}

function stat(xs: number[]): Stat {
  const r = (v: number) => Math.round(v * 100) / 100;
  return { mean: r(xs.reduce((a, b) => a + b, 0) / xs.length), min: r(Math.min(...xs)), max: r(Math.max(...xs)) };
}

/** Mean of several PhaseProfiles (same keys), weighted by tokens. */
function meanProfile(ps: PhaseProfile[]): PhaseProfile | undefined {
  if (ps.length === 0) return undefined;
  const n = ps.reduce((a, p) => a + p.tokens, 0);
  const avg = (f: (p: PhaseProfile) => number) => ps.reduce((a, p) => a + f(p) * p.tokens, 0) / n;
  const ops: Record<string, number> = {};
  for (const k of Object.keys(ps[0]!.ops)) ops[k] = avg((p) => p.ops[k] ?? 0);
  const overhead = {
    native: avg((p) => p.overhead.native), napi: avg((p) => p.overhead.napi), sampling: avg((p) => p.overhead.sampling), loop: avg((p) => p.overhead.loop),
  };
  const wall = avg((p) => p.wallMsPerToken);
  const over = overhead.native + overhead.napi + overhead.sampling + overhead.loop;
  return { tokens: n, wallMsPerToken: wall, ops, overhead, overheadPct: (100 * over) / wall };
}

/**
 * Deterministic prompt ids in [vocab/64, vocab/2): ordinary tokens, away from specials at the ends. The bench/
 * scripts use it too (bench/common.mjs), so every engine in a comparison gets the same prompts.
 */
export function promptIds(n: number, vocab: number, rep: number): number[] {
  let s = (0x9e3779b9 ^ (rep * 0x85ebca6b)) >>> 0;
  const lo = Math.floor(vocab / 64);
  const span = Math.max(1, Math.floor(vocab / 2) - lo);
  return Array.from({ length: n }, () => {
    s = (Math.imul(s ^ (s >>> 15), 0x2c1b3c6d) + 0x6d2b79f5) >>> 0;
    return lo + (s % span);
  });
}

export async function runBenchModelCommand(argv: string[]): Promise<number> {
  const cl = new CommandLine(argv, SPEC);
  if (cl.has('help')) {
    process.stdout.write(BENCH_MODEL_USAGE);
    return 0;
  }
  const path = cl.model();
  const p = cl.int('p', 0, 1 << 16) ?? 128;
  const n = cl.int('n', 1, 1 << 16) ?? 32;
  const reps = cl.int('reps', 1, 1000) ?? 3;
  const warmup = cl.int('warmup', 0, 100) ?? 1;
  const json = cl.has('json');
  const profile = cl.has('profile');
  const opts = loadOptions(cl, undefined);
  if (opts.contextSize !== undefined && opts.contextSize < p + n + 1)
    throw new UsageError(`bench: --ctx ${opts.contextSize} is smaller than -p + -n + 1 = ${p + n + 1}`);
  opts.contextSize ??= p + n + 1;
  const t0 = performance.now();
  const model = await openModel(path, opts, json);
  const wallLoadMs = performance.now() - t0;
  try {
    const vocab = model.tokenizer.vocabSize;
    const pp: number[] = [];
    const tg: number[] = [];
    const prefillProfiles: PhaseProfile[] = [];
    const decodeProfiles: PhaseProfile[] = [];
    for (let r = -warmup; r < reps; r++) {
      // A 1-token prompt when -p 0: decode needs one token to start from.
      const prompt = promptIds(Math.max(p, 1), vocab, r + warmup);
      const gen = model.generate(prompt, { maxTokens: n, temperature: 0, ignoreEog: true, profile });
      let res = await gen.next();
      while (!res.done) res = await gen.next();
      const s = res.value.stats;
      if (r < 0) continue;
      if (p > 0) pp.push(s.evaluatedTokens / (s.prefillMs / 1000));
      if (n > 1) tg.push(s.decodeTps);
      const prof: RequestProfile | undefined = s.profile;
      if (prof?.prefill && p > 0) prefillProfiles.push(prof.prefill);
      if (prof?.decode) decodeProfiles.push(prof.decode);
      if (!json && process.stderr.isTTY) process.stderr.write(`rep ${r + 1}/${reps}: pp ${pp.at(-1)?.toFixed(1) ?? '-'} tok/s, tg ${tg.at(-1)?.toFixed(2) ?? '-'} tok/s\n`);
    }
    const info = model.info;
    const ppS = pp.length ? stat(pp) : undefined;
    const tgS = tg.length ? stat(tg) : undefined;
    const out = {
      model: path, pp_tokens: p, tg_tokens: n, reps,
      pp_tps: ppS?.mean ?? null, pp_min: ppS?.min ?? null, pp_max: ppS?.max ?? null,
      tg_tps: tgS?.mean ?? null, tg_min: tgS?.min ?? null, tg_max: tgS?.max ?? null,
      load_ms: Math.round(info.loadMs), load_wall_ms: Math.round(wallLoadMs),
      rss_mb: Math.round(residentBytes() / 1e6), file_mb: Math.round(info.fileSize / 1e6),
      weight_mb_per_token: Math.round(info.weightBytes / 1e6), isa: info.isa, threads: info.threads, head: info.headType,
      layout: info.layout,
      linears: info.linears,
      kv: info.kvType,
      ...(profile && { profile: { prefill: meanProfile(prefillProfiles), decode: meanProfile(decodeProfiles) } }),
    };
    if (json) process.stdout.write(JSON.stringify(out) + '\n');
    else {
      process.stdout.write(`${path}: ${info.isa} × ${info.threads} threads, ${info.linears.join(' + ')} layers, head ${info.headType}, kv ${info.kvType}\n` +
        `  prefill ${p} tokens: ${ppS ? `${ppS.mean} tok/s (min ${ppS.min}, max ${ppS.max})` : '-'}\n` +
        `  decode  ${n} tokens: ${tgS ? `${tgS.mean} tok/s (min ${tgS.min}, max ${tgS.max})` : '-'}\n` +
        `  load ${out.load_ms} ms, rss ${out.rss_mb} MB (file ${out.file_mb} MB), ${out.weight_mb_per_token} MB of weights per token\n`);
      if (profile) process.stdout.write(formatProfile({ prefill: out.profile!.prefill, decode: out.profile!.decode }));
    }
    return 0;
  } finally {
    await model.close();
  }
}
