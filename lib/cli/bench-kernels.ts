// `bitllm bench kernels`: GEMV/GEMM throughput per kernel × ISA × shape × batch × threads, plus the
// machine's read-bandwidth and int8-peak probes measured in the same process. JSON lines out.
import { readFileSync } from 'node:fs';
import { performance } from 'node:perf_hooks';

import { KernelContext, cpuInfo } from '../kernels/context.js';
import type { Isa } from '../native.js';
import { binding } from '../native.js';
import { allocActivations, refActQuantI8 } from '../reference/act_quant.js';
import { ScaleMode, refTernaryGemm, t2CodeBytes } from '../reference/ternary.js';
import { billmGemm, packBillmTiles } from '../kernels/billm.js';
import { binaryGemm } from '../kernels/binary.js';
import { binaryLutGemm, binaryToLut } from '../kernels/binary-lut.js';
import { ternarySparseGemm, ternaryToSparse } from '../kernels/ternary-sparse.js';
import { f16Gemm, f16tElems, f16tGemm, q4Gemm, q8Gemm, repackF16T, repackQ4, repackQ8 } from '../kernels/dense.js';
import { lutLayout, ternaryLutGemm, ternaryToLut } from '../kernels/lut.js';
import { td3Layout, ternaryTd3Gemm, ternaryToTd3 } from '../kernels/td3.js';
import { quantizeActivationsI8, ternaryGemm } from '../kernels/ternary.js';
import { b1BitsBytes, refBinaryGemm } from '../reference/binary.js';
import { refBinaryLutGemm } from '../reference/binary-lut.js';
import { br16Geometry, refBillmGemm } from '../reference/billm.js';
import { billmResidualLayout, type BillmMatrix } from '../quantize/billm.js';
import { refTernarySparseGemm } from '../reference/ternary-sparse.js';
import { refF16Gemm, refF16TGemm, refQ4Gemm, refQ8Gemm, refRepackF16T } from '../reference/dense.js';
import { refLutGemm } from '../reference/lut.js';
import { refTd3Gemm } from '../reference/td3.js';

export interface BenchRow {
  kernel: string;
  isa: Isa | 'reference';
  m: number;
  k: number;
  batch: number;
  threads: number;
  /** 'dram': the call cycles through ≥ coldBytes of weight copies (decode's case); 'cache': one copy, re-read hot. */
  cache: 'dram' | 'cache';
  ms: number;
  gbps: number;
  gops: number;
}

export interface BenchOptions {
  kernels: string[];
  isas: Isa[];
  threads: number[];
  batches: number[];
  shapes: Array<[number, number]>;
  /** Seconds of timed calls per row. */
  seconds: number;
  /** Time the TypeScript reference (batch 1, 1 thread). */
  reference: boolean;
  /** Total weight bytes cycled through for batch <= 8 so weights come from DRAM, not cache (≥ 8× the L3). */
  coldBytes: number;
  /** Bytes the read-bandwidth probe streams (default 1 GiB: far past any L3). */
  probeBytes?: number;
  emit: (line: Record<string, unknown>) => void;
}

/** BitNet b1.58 2B-4T projections and 1bitLLM-3B (m x k). */
export const DEFAULT_SHAPES: Array<[number, number]> = [
  [2560, 2560], [640, 2560], [6912, 2560], [2560, 6912], [8640, 3200], [3200, 8640],
];

/** A kernel under test: prepares weights/activations for one row and returns the call to time. */
interface KernelCase {
  name: string;
  /** Bytes of weights one call reads. */
  weightBytes(m: number, k: number): number;
  supports(m: number, k: number): boolean;
  prepare(ctx: KernelContext, m: number, k: number, batch: number, copies: number, seed: number): () => void;
  reference?(m: number, k: number, seed: number): () => void;
}

/**
 * Weight copies only need distinct memory, not distinct values: the first array of each kind and size
 * is generated, later ones are copies of it (generating 256 MiB per row in JS would dominate the run).
 */
const generated = new Map<string, Uint8Array | Uint16Array>();
function cachedCopy<T extends Uint8Array | Uint16Array>(kind: string, n: number, make: () => T): T {
  const k = `${kind}:${n}`;
  const hit = generated.get(k) as T | undefined;
  if (hit) return hit.slice() as T;
  const fresh = make();
  generated.set(k, fresh);
  return fresh.slice() as T;
}

/** Bytes holding 4 valid ternary codes each (0..2 in every 2-bit field). */
function randomTernaryBytes(n: number, seed: number): Uint8Array {
  return cachedCopy('t2', n, () => generateTernaryBytes(n, seed));
}

function generateTernaryBytes(n: number, seed: number): Uint8Array {
  const valid: number[] = [];
  for (let v = 0; v < 256; v++) if ([0, 2, 4, 6].every((s) => ((v >> s) & 3) !== 3)) valid.push(v);
  const out = new Uint8Array(n);
  let s = seed >>> 0;
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    out[i] = valid[(s >>> 8) % valid.length]!;
  }
  return out;
}

function randomActivations(n: number, seed: number): Float32Array {
  const x = new Float32Array(n);
  let s = seed >>> 0;
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    x[i] = (s / 4294967296 - 0.5) * 4;
  }
  return x;
}

const ternaryI2: KernelCase = {
  name: 'ternary_i2',
  weightBytes: (m, k) => (m * k) / 4,
  supports: (_m, k) => k % 16 === 0,
  prepare(ctx, m, k, batch, copies, seed) {
    const a = quantizeActivationsI8(ctx, randomActivations(batch * k, seed), batch, k);
    const y = new Float32Array(batch * m);
    return rotating(copies, (i) => tmat(m, k, seed + i), (w) => void ternaryGemm(ctx, w, a, y));
  },
  reference(m, k, seed) {
    const w = tmat(m, k, seed);
    const a = refActQuantI8(randomActivations(k, seed), 1, k);
    return () => void refTernaryGemm(w, a);
  },
};

/** Cycles through `copies` weight sets so batch-1 rows stream from DRAM like real decode. */
function rotating<W>(copies: number, make: (i: number) => W, call: (w: W) => void): () => void {
  const ws = Array.from({ length: copies }, (_, i) => make(i));
  let i = 0;
  return () => {
    call(ws[i]!);
    i = (i + 1) % copies;
  };
}

function randomBytes(n: number, seed: number): Uint8Array {
  return cachedCopy('u8', n, () => generateBytes(n, seed));
}

function generateBytes(n: number, seed: number): Uint8Array {
  const out = new Uint8Array(n);
  let s = seed >>> 0;
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    out[i] = s >>> 24;
  }
  return out;
}

function randomHalves(n: number, seed: number): Uint16Array {
  return cachedCopy('f16', n, () => generateHalves(n, seed));
}

function generateHalves(n: number, seed: number): Uint16Array {
  // Halves of magnitude about 0.25..2 with random signs and mantissas.
  const b = generateBytes(2 * n, seed);
  const h = new Uint16Array(n);
  for (let i = 0; i < n; i++) h[i] = ((b[2 * i]! & 0x80) << 8) | (0x3400 + (((b[2 * i]! & 0x7f) << 4) | (b[2 * i + 1]! >> 4)));
  return h;
}

const ternaryLut: KernelCase = {
  name: 'ternary_lut',
  weightBytes: (m, k) => lutLayout(m, k).weightBytes,
  supports: () => true,
  prepare(ctx, m, k, batch, copies, seed) {
    const a = quantizeActivationsI8(ctx, randomActivations(batch * k, seed), batch, k);
    const y = new Float32Array(batch * m);
    return rotating(copies, (i) => ternaryToLut(ctx, tmat(m, k, seed + i)), (w) => void ternaryLutGemm(ctx, w, a, y));
  },
  reference(m, k, seed) {
    const ctx = new KernelContext({ isa: 'scalar', threads: 1 });
    const w = ternaryToLut(ctx, tmat(m, k, seed));
    const a = refActQuantI8(randomActivations(k, seed), 1, k);
    return () => void refLutGemm(w, a);
  },
};

/** TD3 (1.6875 bits/weight, decoded to T2R16 codes in registers; docs/kernels-lut.md §6). */
const ternaryTd3: KernelCase = {
  name: 'ternary_td3',
  weightBytes: (m, k) => td3Layout(m, k).weightBytes,
  supports: (_m, k) => k % 16 === 0,
  prepare(ctx, m, k, batch, copies, seed) {
    const a = quantizeActivationsI8(ctx, randomActivations(batch * k, seed), batch, k);
    const y = new Float32Array(batch * m);
    return rotating(copies, (i) => ternaryToTd3(ctx, tmat(m, k, seed + i)), (w) => void ternaryTd3Gemm(ctx, w, a, y));
  },
  reference(m, k, seed) {
    const ctx = new KernelContext({ isa: 'scalar', threads: 1 });
    const w = ternaryToTd3(ctx, tmat(m, k, seed));
    const a = refActQuantI8(randomActivations(k, seed), 1, k);
    return () => void refTd3Gemm(w, a);
  },
};

const binary: KernelCase = {
  name: 'binary',
  weightBytes: (m, k) => (m * k) / 8,
  supports: (_m, k) => k % 64 === 0,
  prepare(ctx, m, k, batch, copies, seed) {
    const a = quantizeActivationsI8(ctx, randomActivations(batch * k, seed), batch, k);
    const y = new Float32Array(batch * m);
    return rotating(copies, (i) => bmat(m, k, seed + i), (w) => void binaryGemm(ctx, w, a, undefined, y));
  },
  reference(m, k, seed) {
    const w = bmat(m, k, seed);
    const a = refActQuantI8(randomActivations(k, seed), 1, k);
    return () => void refBinaryGemm(w, a);
  },
};

/** B1L64 (sign weights × float activations through 16-entry tables; FBI-LLM / OneBit's exact path). */
const binaryLut: KernelCase = {
  name: 'binary_lut',
  weightBytes: (m, k) => (m * k) / 8,
  supports: (_m, k) => k % 64 === 0,
  prepare(ctx, m, k, batch, copies, seed) {
    const u = randomActivations(batch * k, seed);
    const y = new Float32Array(batch * m);
    return rotating(copies, (i) => binaryToLut(ctx, bmat(m, k, seed + i)), (w) => void binaryLutGemm(ctx, w, u, batch, undefined, y));
  },
  reference(m, k, seed) {
    const ctx = new KernelContext({ isa: 'scalar', threads: 1 });
    const w = binaryToLut(ctx, bmat(m, k, seed));
    const u = randomActivations(k, seed);
    return () => void refBinaryLutGemm(w, u, 1);
  },
};

/** Share of zero activation codes in the ternary_sparse rows: a4.8's ReLU²-GLU down-projection input. */
const SPARSE_ZEROS = 0.8;

/** Int8 activations whose codes are zero on a fixed SPARSE_ZEROS share of the columns of every token. */
function sparseActivations(ctx: KernelContext, batch: number, k: number, seed: number) {
  const x = randomActivations(batch * k, seed);
  let s = (seed ^ 0x9e3779b9) >>> 0;
  for (let i = 0; i < x.length; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    if (s / 4294967296 < SPARSE_ZEROS) x[i] = 0;
  }
  return quantizeActivationsI8(ctx, x, batch, k);
}

/**
 * TS256 (column-sparse ternary) with SPARSE_ZEROS of the activation codes zero: the GEMV reads only the
 * columns of non-zero codes, so weightBytes (and gbps) count those columns' bytes, not the whole matrix.
 */
const ternarySparse: KernelCase = {
  name: 'ternary_sparse',
  weightBytes: (m, k) => (Math.ceil(m / 256) * 256 * k * (1 - SPARSE_ZEROS)) / 4,
  supports: (_m, k) => k % 16 === 0,
  prepare(ctx, m, k, batch, copies, seed) {
    const a = sparseActivations(ctx, batch, k, seed);
    const y = new Float32Array(batch * m);
    return rotating(copies, (i) => ternaryToSparse(ctx, tmat(m, k, seed + i)), (w) => void ternarySparseGemm(ctx, w, a, y));
  },
  reference(m, k, seed) {
    const ctx = new KernelContext({ isa: 'scalar', threads: 1 });
    const w = ternaryToSparse(ctx, tmat(m, k, seed));
    const a = sparseActivations(ctx, 1, k, seed);
    return () => void refTernarySparseGemm(w, a);
  },
};

/** Salient columns of BiLLM block j in the bench matrices: 1..49 (the quantizer's range), mean 25. */
const billmSalientCount = (j: number): number => 1 + ((j * 37) % 49);

function billmSalient(k: number): Uint8Array {
  const salient = new Uint8Array(k / 8);
  for (let j = 0; j < k / 128; j++) {
    const n = billmSalientCount(j);
    for (let i = 0; i < n; i++) {
      const c = j * 128 + ((i * 53 + j * 11) % 128); // n distinct columns (53 is odd, n <= 49 < 128)
      salient[c >> 3]! |= 1 << (c & 7);
    }
  }
  return salient;
}

/** Random BiLLM planes (bits, fp16 scalars ~1e-2..4e-2), the salient pattern of billmSalient. */
function billmPlanes(m: number, k: number, seed: number): BillmMatrix {
  const salient = billmSalient(k);
  const { stride } = billmResidualLayout(salient, k);
  const groups = randomBytes((m * k) / 8, seed + 1).slice();
  for (let i = 0; i < groups.length; i++) groups[i] = groups[i]! & ~salient[i % (k / 8)]!;
  const scalars = new Uint16Array(m * (k / 128) * 8);
  const b = randomBytes(scalars.length, seed + 2);
  for (let i = 0; i < scalars.length; i++) scalars[i] = 0x2000 + (b[i]! << 4);
  return { M: m, K: k, salient, signs: randomBytes((m * k) / 8, seed), groups, residual: randomBytes(m * stride, seed + 3), scalars };
}

/** BiLLM on BR16 (binary planes + salient residual, int8 activations; families.md §6). */
const billm: KernelCase = {
  name: 'billm',
  weightBytes: (m, k) => Math.ceil(m / 16) * br16Geometry(billmSalient(k), k).tileBytes + k / 8,
  supports: (_m, k) => k % 128 === 0,
  prepare(ctx, m, k, batch, copies, seed) {
    const a = quantizeActivationsI8(ctx, randomActivations(batch * k, seed), batch, k);
    const y = new Float32Array(batch * m);
    const w0 = packBillmTiles(ctx, billmPlanes(m, k, seed));
    return rotating(copies, (i) => (i === 0 ? w0 : { ...w0, data: w0.data.slice() }), (w) => void billmGemm(ctx, w, a, y));
  },
  reference(m, k, seed) {
    const w = billmPlanes(m, k, seed);
    const a = refActQuantI8(randomActivations(k, seed), 1, k);
    return () => void refBillmGemm(w, a);
  },
};

const f16: KernelCase = {
  name: 'f16',
  weightBytes: (m, k) => m * k * 2,
  supports: () => true,
  prepare(ctx, m, k, batch, copies, seed) {
    const x = randomActivations(batch * k, seed);
    const y = new Float32Array(batch * m);
    return rotating(copies, (i) => ({ data: randomHalves(m * k, seed + i), M: m, K: k }), (w) => void f16Gemm(ctx, w, x, batch, y));
  },
  reference(m, k, seed) {
    const w = { data: randomHalves(m * k, seed), M: m, K: k };
    const x = randomActivations(k, seed);
    return () => void refF16Gemm(w, x, 1);
  },
};

/** The F16 head's F16T32 tiles (dense.h): the same halves as f16, 32 rows a tile, column by column. */
const f16t: KernelCase = {
  name: 'f16t',
  weightBytes: (m, k) => f16tElems(m, k) * 2,
  supports: () => true,
  prepare(ctx, m, k, batch, copies, seed) {
    const x = randomActivations(batch * k, seed);
    const y = new Float32Array(batch * m);
    return rotating(copies, (i) => repackF16T(ctx, randomHalves(m * k, seed + i), m, k), (w) => void f16tGemm(ctx, w, x, batch, y));
  },
  reference(m, k, seed) {
    const w = refRepackF16T(randomHalves(m * k, seed), m, k).w;
    const x = randomActivations(k, seed);
    return () => void refF16TGemm(w, x, 1);
  },
};

const q8: KernelCase = {
  name: 'q8',
  weightBytes: (m, k) => (m * k * 34) / 32,
  supports: (_m, k) => k % 32 === 0,
  prepare(ctx, m, k, batch, copies, seed) {
    const a = quantizeActivationsI8(ctx, randomActivations(batch * k, seed), batch, k);
    const y = new Float32Array(batch * m);
    return rotating(copies, (i) => repackQ8(ctx, 'f16', randomHalves(m * k, seed + i), m, k), (w) => void q8Gemm(ctx, w, a, y));
  },
  reference(m, k, seed) {
    const ctx = new KernelContext({ isa: 'scalar', threads: 1 });
    const w = repackQ8(ctx, 'f16', randomHalves(m * k, seed), m, k);
    const a = refActQuantI8(randomActivations(k, seed), 1, k);
    return () => void refQ8Gemm(w, a);
  },
};

const q4: KernelCase = {
  name: 'q4',
  weightBytes: (m, k) => (m * k * 18) / 32,
  supports: (_m, k) => k % 32 === 0,
  prepare(ctx, m, k, batch, copies, seed) {
    const a = quantizeActivationsI8(ctx, randomActivations(batch * k, seed), batch, k);
    const y = new Float32Array(batch * m);
    return rotating(copies, (i) => repackQ4(ctx, 'f16', randomHalves(m * k, seed + i), m, k), (w) => void q4Gemm(ctx, w, a, y));
  },
  reference(m, k, seed) {
    const ctx = new KernelContext({ isa: 'scalar', threads: 1 });
    const w = repackQ4(ctx, 'f16', randomHalves(m * k, seed), m, k);
    const a = refActQuantI8(randomActivations(k, seed), 1, k);
    return () => void refQ4Gemm(w, a);
  },
};

function tmat(m: number, k: number, seed: number) {
  return { codes: randomTernaryBytes(t2CodeBytes(m, k), seed), scales: Float32Array.of(0.5), M: m, K: k, scaleMode: ScaleMode.Tensor };
}

function bmat(m: number, k: number, seed: number) {
  return { bits: randomBytes(b1BitsBytes(m, k), seed), scales: Float32Array.of(0.5), M: m, K: k, scaleMode: ScaleMode.Tensor as const };
}

export const KERNEL_CASES: KernelCase[] = [ternaryI2, ternaryLut, ternaryTd3, ternarySparse, binary, binaryLut, billm, f16, f16t, q8, q4];

/** Median milliseconds per call over at least `seconds` and 5 calls, after warm-up. */
function timeCalls(call: () => void, seconds: number, warmup = 2): number {
  for (let i = 0; i < warmup; i++) call();
  const times: number[] = [];
  const until = performance.now() + seconds * 1000;
  while (times.length < 5 || (performance.now() < until && times.length < 100_000)) {
    const t0 = performance.now();
    call();
    times.push(performance.now() - t0);
  }
  times.sort((a, b) => a - b);
  return times[Math.floor(times.length / 2)]!;
}

export function runKernelBench(opts: BenchOptions): BenchRow[] {
  generated.clear();
  const rows: BenchRow[] = [];
  const cases = KERNEL_CASES.filter((c) => opts.kernels.includes(c.name));
  // Probes before and after the kernel rows: DRAM bandwidth on a shared machine drifts during a run.
  const probe = (phase: 'start' | 'end') => {
    for (const threads of opts.threads) {
      const ctx = new KernelContext({ threads, isa: opts.isas[opts.isas.length - 1] });
      const read = binding<(c: unknown, bytes: number, reps: number) => { median: number; best: number }>('probeReadBandwidth')(ctx.handle, opts.probeBytes ?? 1 << 30, 7);
      opts.emit({ probe: 'read_bw', phase, threads, gbps: round(read.median), best_gbps: round(read.best) });
      const peak = binding<(c: unknown, s: number) => { gops: number; instruction: string }>('probeInt8Peak')(ctx.handle, 0.3);
      if (peak.gops > 0) opts.emit({ probe: 'int8_peak', phase, threads, gops: round(peak.gops), instruction: peak.instruction });
    }
  };
  probe('start');
  for (const kc of cases) {
    for (const [m, k] of opts.shapes) {
      if (!kc.supports(m, k)) continue;
      const wb = kc.weightBytes(m, k);
      for (const isa of opts.isas) {
        for (const threads of opts.threads) {
          const ctx = new KernelContext({ isa, threads });
          for (const batch of opts.batches) {
            // Decode-sized batches are measured twice: streaming from DRAM (the figure that matters) and
            // with one copy that the L3 holds (its own row, never mixed into the DRAM figures).
            const modes: Array<BenchRow['cache']> = batch <= 8 ? ['dram', 'cache'] : ['cache'];
            for (const cache of modes) {
              const copies = cache === 'dram' ? Math.max(1, Math.ceil(opts.coldBytes / wb)) : 1;
              const ms = timeCalls(kc.prepare(ctx, m, k, batch, copies, m + k + batch), opts.seconds);
              const row: BenchRow = { kernel: kc.name, isa, m, k, batch, threads, cache, ms: round(ms, 4), gbps: round(wb / ms / 1e6), gops: round((2 * m * k * batch) / ms / 1e6) };
              rows.push(row);
              opts.emit({ ...row });
            }
          }
        }
      }
      if (opts.reference && kc.reference) {
        const ms = timeCalls(kc.reference(m, k, m + k), Math.min(opts.seconds, 0.5), 1);
        const row: BenchRow = { kernel: kc.name, isa: 'reference', m, k, batch: 1, threads: 1, cache: 'cache', ms: round(ms, 3), gbps: round(wb / ms / 1e6), gops: round((2 * m * k) / ms / 1e6) };
        rows.push(row);
        opts.emit({ ...row });
      }
    }
  }
  probe('end');
  return rows;
}

function round(v: number, digits = 2): number {
  const f = 10 ** digits;
  return Math.round(v * f) / f;
}

/**
 * Bytes of the last-level cache (sysfs on Linux; 32 MiB, this project's Zen 4 machines, where the VM hides
 * it). Cold rows rotate through at least 8× this.
 */
export function lastLevelCacheBytes(): number {
  for (let i = 0; i < 8; i++) {
    const base = `/sys/devices/system/cpu/cpu0/cache/index${i}`;
    try {
      if (readFileSync(`${base}/level`, 'utf8').trim() !== '3') continue;
      const m = /^(\d+)([KMG]?)/.exec(readFileSync(`${base}/size`, 'utf8').trim());
      if (m) return Number(m[1]) * (m[2] === 'G' ? 1 << 30 : m[2] === 'M' ? 1 << 20 : m[2] === 'K' ? 1 << 10 : 1);
    } catch {
      // no such cache index
    }
  }
  return 32 << 20;
}

export function defaultIsas(): Isa[] {
  return cpuInfo().supportedIsas;
}

export { allocActivations };
