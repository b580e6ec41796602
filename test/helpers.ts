import { spawn } from 'node:child_process';
import { setImmediate as realSetImmediate } from 'node:timers';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
// Shared test helpers: deterministic RNG, one kernel context per supported ISA, bit comparison, test data paths.
import { expect } from 'vitest';

import { KernelContext, cpuInfo } from '../lib/kernels/context.js';
import type { Isa } from '../lib/native.js';
import type { LoadWeightsOptions } from '../lib/model/weights.js';
import { scaledMs } from './time-scale.js';

/**
 * Per-row max |native − reference| / max |reference| where an int8 code can flip (test/batch.test.ts,
 * test/families.test.ts; their tight bound is 2^-12): with an int8-quantized input to the head (q8 head), a
 * q8 KV cache, or NEON's float order (neonFloatOrder), a float difference of an ulp between native and
 * reference can move one int8 code of the head's activations or of a cached K/V row, which moves logits by
 * ~1/127 of a block's scale. Measured worst 2^-8.1 (q8 head, OneBit i8) and 2^-9.9 (q8 KV); the bit-exact
 * checks are the tight ones.
 */
export const MAX_REL_DIFF_Q8 = 2 ** -6;

/**
 * True when `ctx`'s float ops (attention, norms) are NEON's. They sum in 4 lanes where the TS reference (and
 * the scalar and AVX2 kernels) sum in 8, so their last bits differ from the reference's and an int8 activation
 * code can flip on the way, with the q8 bound's effect (2^-6) even on an f16 head: measured 2^-9.6 on
 * tiny-b158 (prompt 0, position 1) under qemu, in test/batch.test.ts and test/families.test.ts
 * (`scripts/test-arm64.sh`). The bit-exact checks (batch invariance, fused vs op by op) hold on NEON as on x64.
 */
export function neonFloatOrder(ctx: KernelContext): boolean {
  return ctx.info().kernels['ops']?.startsWith('neon') ?? false;
}

/**
 * One turn of the event loop (node:timers' setImmediate, which fake timers leave alone). Long synchronous
 * tests take one between their stages: vitest's worker answers its runner's RPC only when its loop turns, and
 * fails the run with 'Timeout calling "onTaskUpdate"' when one synchronous stretch outlasts 60 s (under
 * qemu: test/families.test.ts, test/model-reference.test.ts, test/batch.test.ts).
 */
export function eventLoopTurn(): Promise<void> {
  return new Promise((resolve) => realSetImmediate(resolve));
}

/** Every ISA this machine supports, each with a 2-thread context (threads split tiles). */
export function contextsPerIsa(threads = 2): Array<[Isa, KernelContext]> {
  return cpuInfo().supportedIsas.map((isa) => [isa, new KernelContext({ isa, threads })]);
}

/** mulberry32: small, deterministic, good enough for test data. */
export function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export function randInt(r: () => number, lo: number, hi: number): number {
  return lo + Math.floor(r() * (hi - lo + 1));
}

export function randomTrits(r: () => number, n: number, zeroProb = 1 / 3): Int8Array {
  const t = new Int8Array(n);
  for (let i = 0; i < n; i++) t[i] = r() < zeroProb ? 0 : r() < 0.5 ? -1 : 1;
  return t;
}

export function randomNormal(r: () => number, n: number, scale = 1): Float32Array {
  const x = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    const u = r() + 1e-12;
    x[i] = scale * Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * r());
  }
  return x;
}

/** Asserts two float arrays are identical bit for bit (reports the first difference). */
export function expectSameBits(got: Float32Array, want: Float32Array, what: string): void {
  expect(got.length, `${what}: length`).toBe(want.length);
  const a = new Uint32Array(got.buffer, got.byteOffset, got.length);
  const b = new Uint32Array(want.buffer, want.byteOffset, want.length);
  for (let i = 0; i < a.length; i++) {
    if (a[i] !== b[i]) expect.fail(`${what}: element ${i} is ${got[i]}, reference ${want[i]}`);
  }
}

/** Asserts typed integer arrays are equal (reports the first difference). */
export function expectSameInts(got: ArrayLike<number>, want: ArrayLike<number>, what: string): void {
  expect(got.length, `${what}: length`).toBe(want.length);
  for (let i = 0; i < got.length; i++) {
    if (got[i] !== want[i]) expect.fail(`${what}: element ${i} is ${got[i]}, reference ${want[i]}`);
  }
}

/**
 * Runs a child process without blocking this worker's event loop (a spawnSync of tens of seconds starves
 * vitest's worker RPC, which then times out). Resolves with the exit status and the whole output. `env`
 * replaces the child's environment (default: this process's).
 */
export function runProcess(cmd: string, args: string[], timeoutMs = scaledMs(300_000), env?: NodeJS.ProcessEnv): Promise<{ status: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'], ...(env && { env }) });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.on('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    child.on('close', (status) => {
      clearTimeout(timer);
      resolve({ status, stdout, stderr });
    });
  });
}

// ---------------------------------------------------------------- test data

const REPO_ROOT = fileURLToPath(new URL('..', import.meta.url));
const DERIVED_TEST_DATA = join(REPO_ROOT, '.cache', 'test-data');

/** A file scripts/test-data.mjs derives (npm test's pretest runs it); a missing one fails with the command to run. */
function derivedTestData(folder: 'golden' | 'vocab', file: string): string {
  const path = join(DERIVED_TEST_DATA, folder, file);
  if (!existsSync(path)) throw new Error(`${path} is missing: run \`node scripts/test-data.mjs\` (npm test's pretest does)`);
  return path;
}

/**
 * bitnet.cpp's golden data (test/fixtures/golden/README.md): the committed I2_S model, tokens and logits, or the
 * TQ2_0 twin that scripts/test-data.mjs transcodes from the I2_S model.
 */
export function goldenPath(file: string): string {
  const committed = join(REPO_ROOT, 'test', 'fixtures', 'golden', file);
  return existsSync(committed) ? committed : derivedTestData('golden', file);
}

/**
 * llama.cpp's vocabulary files and test-tokenizer-0 cases (`ggml-vocab-llama-spm.gguf`, `ggml-vocab-llama-bpe.gguf.inp`,
 * ...), extracted by scripts/test-data.mjs from the llama.cpp source bundle inside node-llama-cpp.
 */
export function vocabPath(file: string): string {
  return derivedTestData('vocab', file);
}

/** A bundled model (models/) and load options that pick one of its paths. */
export interface FamilyModel {
  file: string;
  opts: LoadWeightsOptions;
}

/** Every bundled family model with the load options that pick each of its kernel paths (float or int8 inputs). */
export const BUNDLED_FAMILY_MODELS: FamilyModel[] = [
  { file: 'tiny-b158-i2_s.gguf', opts: {} },
  { file: 'tiny-a48-tq2_0.gguf', opts: {} },
  { file: 'tiny-bitnet-q1_0.gguf', opts: {} },
  { file: 'tiny-fbi-q1_0.gguf', opts: {} },
  { file: 'tiny-fbi-q1_0.gguf', opts: { actQuant: 'i8' } },
  { file: 'tiny-onebit-q1_0.gguf', opts: {} },
  { file: 'tiny-onebit-q1_0.gguf', opts: { actQuant: 'i8' } },
  { file: 'tiny-fp16-f16.gguf', opts: {} },
];
