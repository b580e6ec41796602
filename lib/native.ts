// Loads the N-API addon (prebuilds/<platform>-<arch>/ or build/Release) through node-gyp-build.
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

import { NativeError } from './errors.js';

export type Isa = 'scalar' | 'avx2' | 'avx512' | 'neon';

export interface CpuInfo {
  arch: 'x64' | 'arm64' | 'other';
  features: string[];
  supportedIsas: Isa[];
  bestIsa: Isa;
  /** BITLLM_ISA if set and valid, else bestIsa; null with defaultIsaError when BITLLM_ISA is bad. */
  defaultIsa: Isa | null;
  defaultIsaError?: string;
  physicalCores: number;
}

export interface NativeContextInfo {
  isa: Isa;
  threads: number;
  /** Variant chosen per kernel family, e.g. { ternary_i2: 'avx512', f16: 'avx2' }. */
  kernels: Record<string, string>;
}

export interface NativeContext {
  readonly threads: number;
  info(): NativeContextInfo;
}

/** The raw addon surface: positional, typed-array arguments; lib/kernels wraps it. */
export interface NativeAddon {
  Context: new (options?: { threads?: number; isa?: Isa }) => NativeContext;
  cpuInfo(): CpuInfo;
  [binding: string]: unknown;
}

const packageRoot = join(dirname(fileURLToPath(import.meta.url)), '..');
let cached: NativeAddon | undefined;

/** The addon, loaded once. Throws NativeError with what to do when no binary fits this machine. */
export function loadNative(): NativeAddon {
  if (cached) return cached;
  const require = createRequire(import.meta.url);
  try {
    const load = require('node-gyp-build') as (dir: string) => NativeAddon;
    cached = load(packageRoot);
  } catch (err) {
    throw new NativeError(
      `bitllm: could not load the native addon for ${process.platform}-${process.arch} (node ${process.version}) ` +
        `from ${packageRoot}: ${(err as Error).message}\n` +
        `No prebuilt binary fits this machine. Build from source with \`npm rebuild bitllm\` ` +
        `(needs python3, make and a C++17 compiler).`,
      { cause: err },
    );
  }
  return cached;
}

/** A binding by name, typed by the caller. */
export function binding<F>(name: string): F {
  const fn = loadNative()[name];
  if (typeof fn !== 'function') throw new NativeError(`bitllm: the native addon has no '${name}' binding`);
  return fn as F;
}
