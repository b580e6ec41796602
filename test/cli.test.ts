// The command line as a user runs it: `node dist/cli/main.js ...` (build first: npx tsc -p tsconfig.json).
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { loadModel } from '../lib/api.js';
import { goldenPath, vocabPath } from './helpers.js';

const MAIN = fileURLToPath(new URL('../dist/cli/main.js', import.meta.url));
const MODEL = goldenPath('small-b158-i2s-s11.gguf');

function bitllm(...args: string[]): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [MAIN, ...args], { encoding: 'utf8', timeout: 30_000 });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

/** Case `index` of a llama.cpp vocab test: the input text and its expected ids (no BOS). */
function vocabCase(vocab: string, text: string): number[] {
  const inputs = readFileSync(vocabPath(`${vocab}.inp`), 'utf8').split('\n__ggml_vocab_test__\n');
  const outputs = readFileSync(vocabPath(`${vocab}.out`), 'utf8').split('\n');
  const i = inputs.indexOf(text);
  if (i < 0) throw new Error(`no case '${text}' in ${vocab}.inp`);
  return outputs[i]!.trim().split(/\s+/).filter(Boolean).map(Number);
}

let tmp: string;
beforeAll(() => {
  if (!existsSync(MAIN)) throw new Error(`${MAIN} is missing: build with \`npx tsc -p tsconfig.json\` first`);
  tmp = mkdtempSync(join(tmpdir(), 'bitllm-cli-'));
});
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

describe('bitllm run', () => {
  it('--json prints one line with the tokens the API generates greedily', async () => {
    const r = bitllm('run', MODEL, '-p', 'Once upon a time', '-n', '12', '--temp', '0', '-t', '1', '--json');
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    const lines = r.stdout.trim().split('\n');
    expect(lines).toHaveLength(1);
    const out = JSON.parse(lines[0]!) as Record<string, unknown>;
    expect(Object.keys(out).sort()).toEqual(['decode_tps', 'prompt_tokens', 'text', 'tokens']);
    expect(out['tokens']).toHaveLength(12);
    expect(out['decode_tps']).toBeGreaterThan(0);

    const model = await loadModel(MODEL, { threads: 1, contextSize: 128 });
    try {
      const tokens: number[] = [];
      let text = '';
      for await (const c of model.generate('Once upon a time', { maxTokens: 12, temperature: 0 })) {
        tokens.push(c.token);
        text += c.text;
      }
      expect(out['tokens']).toEqual(tokens);
      expect(out['text']).toBe(text);
      expect(out['prompt_tokens']).toBe(model.tokenize('Once upon a time').length);
    } finally {
      await model.close();
    }
  });

  it('without MODEL it runs the built-in b1.58 model (models/tiny-b158-i2_s.gguf), the same as naming it', () => {
    const builtin = fileURLToPath(new URL('../models/tiny-b158-i2_s.gguf', import.meta.url));
    expect(existsSync(builtin)).toBe(true);
    const args = ['-p', 'Once upon a time', '-n', '8', '--temp', '0', '-t', '1', '--json'];
    const a = bitllm('run', ...args);
    expect(a.status, a.stderr).toBe(0);
    const b = bitllm('run', builtin, ...args);
    const pick = (o: { tokens: number[]; text: string; prompt_tokens: number }) => ({ tokens: o.tokens, text: o.text, prompt_tokens: o.prompt_tokens });
    expect(pick(JSON.parse(a.stdout))).toEqual(pick(JSON.parse(b.stdout)));
    expect((JSON.parse(a.stdout) as { tokens: number[] }).tokens).toHaveLength(8);
  });

  it('--tokens takes the prompt as ids; without --json the text streams to stdout', () => {
    const args = ['run', MODEL, '--tokens', '1,3104,3550', '-n', '8', '--temp', '0', '-t', '1'];
    const json = JSON.parse(bitllm(...args, '--json').stdout) as { text: string; prompt_tokens: number };
    expect(json.prompt_tokens).toBe(3);
    const r = bitllm(...args);
    expect(r.status).toBe(0);
    expect(r.stdout).toBe(json.text.endsWith('\n') ? json.text : `${json.text}\n`);
  });
});

describe('bitllm bench / --profile', () => {
  it('bench --json prints one line with prefill / decode tok/s (mean, min, max), load time, RSS, ISA and threads', () => {
    const r = bitllm('bench', MODEL, '-p', '16', '-n', '6', '--reps', '2', '--warmup', '0', '-t', '1', '--json');
    expect(r.status, r.stderr).toBe(0);
    const lines = r.stdout.trim().split('\n');
    expect(lines).toHaveLength(1);
    const out = JSON.parse(lines[0]!) as Record<string, number | string>;
    for (const k of ['pp_tps', 'tg_tps', 'pp_min', 'pp_max', 'tg_min', 'tg_max', 'load_ms', 'rss_mb']) expect(out[k], k).toBeGreaterThan(0);
    expect(out['pp_min']).toBeLessThanOrEqual(out['pp_tps'] as number);
    expect(out['tg_max']).toBeGreaterThanOrEqual(out['tg_tps'] as number);
    expect(out['threads']).toBe(1);
    expect(typeof out['isa']).toBe('string');
    expect(out['reps']).toBe(2);
  });

  it('bench --profile splits each token into op classes and overhead that add up to the wall time', () => {
    const r = bitllm('bench', MODEL, '-p', '16', '-n', '6', '--reps', '1', '--warmup', '0', '--profile', '--json');
    expect(r.status, r.stderr).toBe(0);
    const prof = (JSON.parse(r.stdout) as { profile: Record<string, { tokens: number; wallMsPerToken: number; ops: Record<string, number>; overhead: Record<string, number>; overheadPct: number }> }).profile;
    for (const phase of ['prefill', 'decode']) {
      const p = prof[phase]!;
      expect(p.tokens).toBe(phase === 'prefill' ? 16 : 5);
      for (const k of ['gemm_qkv', 'gemm_o', 'gemm_gate_up', 'gemm_down', 'attention', 'norm', 'head']) expect(p.ops[k], `${phase} ${k}`).toBeGreaterThan(0);
      const sum = Object.values(p.ops).reduce((a, b) => a + b, 0) + Object.values(p.overhead).reduce((a, b) => a + b, 0);
      expect(Math.abs(sum - p.wallMsPerToken) / p.wallMsPerToken, `${phase}: parts vs wall`).toBeLessThan(0.02);
      expect(p.overheadPct).toBeGreaterThanOrEqual(0);
      expect(p.overheadPct).toBeLessThan(100);
    }
  });

  it('run --profile prints the per-op table to stderr and keeps stdout the completion', () => {
    const r = bitllm('run', MODEL, '-p', 'Once upon a time', '-n', '4', '--temp', '0', '--profile');
    expect(r.status, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/^decode: 3 tokens, [\d.]+ ms\/token/m);
    expect(r.stderr).toMatch(/gemm_gate_up/);
    expect(r.stdout).not.toMatch(/gemm/);
  });

  it('bench usage errors exit 2', () => {
    for (const args of [['bench', MODEL, '-p', 'x'], ['bench', MODEL, '--reps', '0'], ['bench', MODEL, '--ctx', '8', '-p', '16']]) {
      const r = bitllm(...args);
      expect(r.status, args.join(' ')).toBe(2);
      expect(r.stderr).toMatch(/^bitllm: /);
    }
  });
});

describe('bitllm tokenize', () => {
  it.each([
    ['ggml-vocab-llama-bpe.gguf', 'Hello world'],
    ['ggml-vocab-llama-spm.gguf', 'Hello world'],
    ['ggml-vocab-llama-bpe.gguf', ' Hello world'],
  ])('--json on the vocab-only file %s matches llama.cpp for %j', (vocab, text) => {
    const r = bitllm('tokenize', vocabPath(vocab), '--no-bos', '--json', text);
    expect(r.status).toBe(0);
    expect(JSON.parse(r.stdout)).toEqual({ ids: vocabCase(vocab, text) });
  });

  it('adds BOS by default and reads --file', () => {
    const file = join(tmp, 'hello.txt');
    writeFileSync(file, 'Hello world');
    const r = bitllm('tokenize', vocabPath('ggml-vocab-llama-bpe.gguf'), '--file', file, '--json');
    expect(JSON.parse(r.stdout)).toEqual({ ids: [128000, 9906, 1917] });
  });
});

describe('bitllm inspect', () => {
  it('--json reports architecture, hyperparameters, tensor types and sizes', () => {
    const r = bitllm('inspect', MODEL, '--json');
    expect(r.status).toBe(0);
    const out = JSON.parse(r.stdout);
    expect(out.architecture).toBe('bitnet-b1.58');
    expect(out.hparams).toMatchObject({ nLayer: 4, nEmbd: 512, nHead: 8, nHeadKv: 4, nFf: 1536, nVocab: 4096 });
    expect(out.tensors.count).toBe(46);
    expect(out.tensors.types.I2_S.count).toBe(28);
    expect(out.tensors.types.F16).toEqual({ count: 1, bytes: 4096 * 512 * 2 });
    expect(out.size).toBe(statSync(MODEL).size);
    expect(out.tokenizer).toMatchObject({ model: 'llama', vocabSize: 4096, bos: 1, eos: 2, chatFormat: 'llama2' });
  });

  it('works on a vocab-only file', () => {
    const out = JSON.parse(bitllm('inspect', vocabPath('ggml-vocab-llama-bpe.gguf'), '--json').stdout);
    expect(out.hparams).toBeNull();
    expect(out.tensors.count).toBe(0);
    expect(out.tokenizer.chatFormat).toBe('llama3');
  });
});

describe('bitllm perplexity', () => {
  it('--json scores every token after the first of each window; --dump-logits writes [n_tokens, n_vocab] f32', () => {
    const text = join(tmp, 'text.txt');
    writeFileSync(text, 'The quick brown fox jumps over the lazy dog. '.repeat(4));
    const dump = join(tmp, 'logits.f32');
    const r = bitllm('perplexity', MODEL, '-f', text, '--ctx', '64', '--json', '--dump-logits', dump, '-t', '1');
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    const out = JSON.parse(r.stdout);
    expect(out.ctx).toBe(64);
    expect(out.n_windows).toBe(Math.ceil((out.n_tokens - out.n_windows) / 63));
    expect(out.n_scored).toBe(out.n_tokens - out.n_windows); // BOS opens each window and is never scored
    expect(out.ppl).toBeCloseTo(Math.exp(out.nll), 6);
    expect(out.ppl).toBeGreaterThan(1);
    expect(statSync(dump).size).toBe(out.n_tokens * 4096 * 4);
  });

  it('--tokens that already start with BOS get no second BOS (48 ids, 48 rows, the same numbers as without it)', () => {
    const ids = Array.from({ length: 47 }, (_, i) => 300 + 7 * i);
    const run = (list: number[]) => {
      const r = bitllm('perplexity', MODEL, '--tokens', list.join(','), '--ctx', '64', '--json', '-t', '1');
      expect(r.stderr).toBe('');
      expect(r.status).toBe(0);
      return JSON.parse(r.stdout);
    };
    const withBos = run([1, ...ids]); // 1 = <s> of the bundled vocabulary
    const without = run(ids);
    expect(withBos.n_tokens).toBe(48);
    expect(withBos.n_scored).toBe(47);
    expect(withBos).toEqual(without);
  });
});

describe('errors', () => {
  it.each([
    [['run', MODEL]], // no prompt
    [['run']], // no model
    [['run', MODEL, '-p', 'x', '--bogus']],
    [['run', MODEL, '-p', 'x', '--temp', 'hot']],
    [['run', MODEL, '-p', 'x', '-n', '-1']],
    [['run', join('no', 'such', 'model.gguf'), '-p', 'x']],
    [['run', MODEL, '--tokens', '1,99999']],
    [['run', MODEL, '-p', 'x', '--kv', 'q4']],
    [['tokenize', MODEL]],
    [['perplexity', MODEL]],
    [['nonsense']],
  ])('usage error %j exits 2 with a message, no stack trace', (args) => {
    const r = bitllm(...args);
    expect(r.status).toBe(2);
    expect(r.stderr).toMatch(/^bitllm: /);
    expect(r.stderr).not.toMatch(/\n\s+at /);
  });

  it('run --kv q8 generates with the int8 KV cache', () => {
    const r = bitllm('run', MODEL, '-p', 'x', '-n', '4', '--kv', 'q8', '--temp', '0', '--json');
    expect(r.status, r.stderr).toBe(0);
    expect(JSON.parse(r.stdout.trim().split('\n').pop()!).tokens).toHaveLength(4);
  });

  it('a file that is not a model exits 1 with a message naming it', () => {
    const bad = join(tmp, 'bad.gguf');
    writeFileSync(bad, 'not a gguf file at all');
    for (const cmd of ['run', 'inspect', 'tokenize']) {
      const r = bitllm(cmd, bad, ...(cmd === 'run' ? ['-p', 'x'] : cmd === 'tokenize' ? ['x'] : []));
      expect(r.status).toBe(1);
      expect(r.stderr).toContain(bad);
      expect(r.stderr).not.toMatch(/\n\s+at /);
    }
  });
});
