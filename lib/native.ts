// Loads the N-API addon (prebuilds/<platform>-<arch>/ or build/Release) through node-gyp-build.
import { readdirSync } from 'node:fs';
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

/** The oldest glibc the shipped prebuilds load on (scripts/check-prebuilds.sh enforces it). */
export const PREBUILD_GLIBC_FLOOR = '2.28';

/** What a load-failure message says about the machine; loadNative fills it from the process. */
export interface NativeLoadSite {
  platform: string;
  arch: string;
  nodeVersion: string;
  /** glibc version at run time (process.report), null where there is none (musl, macOS, Windows). */
  glibcVersion: string | null;
  packageRoot: string;
  /** prebuilds/<platform>-<arch> folders in the package, e.g. ['linux-arm64', 'linux-x64']. */
  prebuildTargets: string[];
}

function versionLess(a: string, b: string): boolean {
  const pa = a.split('.').map(Number);
  const pb = b.split('.').map(Number);
  for (let i = 0; i < Math.max(pa.length, pb.length); i++) {
    const d = (pa[i] ?? 0) - (pb[i] ?? 0);
    if (d !== 0) return d < 0;
  }
  return false;
}

/**
 * The message of the error thrown when the addon does not load: the platform, the glibc found and
 * required, why no prebuild fitted, and the commands that build from source under each client
 * (npm 12 blocks `npm rebuild` of a package whose install script was not approved).
 */
export function nativeLoadFailureMessage(site: NativeLoadSite, cause: string): string {
  const target = `${site.platform}-${site.arch}`;
  const glibc = site.glibcVersion ? `glibc ${site.glibcVersion}` : 'no glibc';
  const lines = [
    `bitllm: could not load the native addon for ${target} (node ${site.nodeVersion}, ${glibc}) ` +
      `from ${site.packageRoot}: ${cause.trim()}`,
  ];
  const shipped = site.prebuildTargets.length > 0 ? site.prebuildTargets.join(', ') : 'none in this copy';
  if (!site.prebuildTargets.includes(target)) {
    lines.push(
      `No prebuilt binary ships for ${target} (prebuilds: ${shipped}; they need glibc >= ${PREBUILD_GLIBC_FLOOR}).`,
    );
  } else if (site.platform === 'linux' && site.glibcVersion === null) {
    lines.push(
      `The prebuilt binary for ${target} needs glibc >= ${PREBUILD_GLIBC_FLOOR}; this system has none (musl?).`,
    );
  } else if (site.glibcVersion !== null && versionLess(site.glibcVersion, PREBUILD_GLIBC_FLOOR)) {
    lines.push(
      `The prebuilt binary for ${target} needs glibc >= ${PREBUILD_GLIBC_FLOOR}; this system has glibc ${site.glibcVersion}.`,
    );
  } else {
    lines.push(
      `The prebuilt binary for ${target} (glibc >= ${PREBUILD_GLIBC_FLOOR}; found ${glibc}) did not load.`,
    );
  }
  lines.push(
    'Build it from source (needs python3, make and a C++17 compiler), in the project that installed bitllm:',
    '  npm 12+:      npm install-scripts approve bitllm && npm rebuild bitllm',
    '  npm 10/11:    npm rebuild bitllm',
    '  pnpm:         pnpm approve-builds (select bitllm), then pnpm rebuild bitllm',
    '  bun:          bun pm trust bitllm',
    `  any client:   cd ${site.packageRoot} && npx --yes node-gyp rebuild`,
  );
  return lines.join('\n');
}

function glibcVersionRuntime(): string | null {
  if (process.platform !== 'linux') return null;
  const header = (process.report?.getReport() as { header?: { glibcVersionRuntime?: string } } | undefined)?.header;
  return header?.glibcVersionRuntime ?? null;
}

function prebuildTargets(root: string): string[] {
  try {
    return readdirSync(join(root, 'prebuilds')).sort();
  } catch {
    return [];
  }
}

/** The addon, loaded once. Throws NativeError with what to do when no binary fits this machine. */
export function loadNative(): NativeAddon {
  if (cached) return cached;
  const require = createRequire(import.meta.url);
  try {
    const load = require('node-gyp-build') as (dir: string) => NativeAddon;
    cached = load(packageRoot);
  } catch (err) {
    const site: NativeLoadSite = {
      platform: process.platform,
      arch: process.arch,
      nodeVersion: process.version,
      glibcVersion: glibcVersionRuntime(),
      packageRoot,
      prebuildTargets: prebuildTargets(packageRoot),
    };
    throw new NativeError(nativeLoadFailureMessage(site, (err as Error).message), { cause: err });
  }
  return cached;
}

/** A binding by name, typed by the caller. */
export function binding<F>(name: string): F {
  const fn = loadNative()[name];
  if (typeof fn !== 'function') throw new NativeError(`bitllm: the native addon has no '${name}' binding`);
  return fn as F;
}
