// `bitllm bench kernels`: GEMV/GEMM throughput per kernel × ISA × shape × batch × threads, plus the
// machine's read-bandwidth and int8-peak probes measured in the same process. JSON lines out.
import { performance } from 'node:perf_hooks';

import { KernelContext, cpuInfo } from '../kernels/context.js';
import type { Isa } from '../native.js';
import { binding } from '../native.js';
import { allocActivations, refActQuantI8 } from '../reference/act_quant.js';
import { ScaleMode, refTernaryGemm, t2CodeBytes } from '../reference/ternary.js';
import { quantizeActivationsI8, ternaryGemm } from '../kernels/ternary.js';

export interface BenchRow {
  kernel: string;
  isa: Isa | 'reference';
  m: number;
  k: number;
  batch: number;
  threads: number;
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
  /** Total weight bytes cycled through for batch <= 8 so weights come from DRAM, not cache. */
  coldBytes: number;
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

/** Bytes holding 4 valid ternary codes each (0..2 in every 2-bit field). */
function randomTernaryBytes(n: number, seed: number): Uint8Array {
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
    const ws = Array.from({ length: copies }, (_, i) => ({
      codes: randomTernaryBytes(t2CodeBytes(m, k), seed + i),
      scales: Float32Array.of(0.5),
      M: m,
      K: k,
      scaleMode: ScaleMode.Tensor,
    }));
    const a = quantizeActivationsI8(ctx, randomActivations(batch * k, seed), batch, k);
    const y = new Float32Array(batch * m);
    let i = 0;
    return () => {
      ternaryGemm(ctx, ws[i]!, a, y);
      i = (i + 1) % copies;
    };
  },
  reference(m, k, seed) {
    const w = { codes: randomTernaryBytes(t2CodeBytes(m, k), seed), scales: Float32Array.of(0.5), M: m, K: k, scaleMode: ScaleMode.Tensor };
    const a = refActQuantI8(randomActivations(k, seed), 1, k);
    return () => void refTernaryGemm(w, a);
  },
};

export const KERNEL_CASES: KernelCase[] = [ternaryI2];

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
  const rows: BenchRow[] = [];
  const cases = KERNEL_CASES.filter((c) => opts.kernels.includes(c.name));
  for (const threads of opts.threads) {
    const ctx = new KernelContext({ threads, isa: opts.isas[opts.isas.length - 1] });
    const read = binding<(c: unknown, bytes: number, reps: number) => number>('probeReadBandwidth')(ctx.handle, 1 << 30, 3);
    opts.emit({ probe: 'read_bw', threads, gbps: round(read) });
    const peak = binding<(c: unknown, s: number) => { gops: number; instruction: string }>('probeInt8Peak')(ctx.handle, 0.3);
    if (peak.gops > 0) opts.emit({ probe: 'int8_peak', threads, gops: round(peak.gops), instruction: peak.instruction });
  }
  for (const kc of cases) {
    for (const [m, k] of opts.shapes) {
      if (!kc.supports(m, k)) continue;
      const wb = kc.weightBytes(m, k);
      for (const isa of opts.isas) {
        for (const threads of opts.threads) {
          const ctx = new KernelContext({ isa, threads });
          for (const batch of opts.batches) {
            const copies = batch <= 8 ? Math.max(1, Math.ceil(opts.coldBytes / wb)) : 1;
            const ms = timeCalls(kc.prepare(ctx, m, k, batch, copies, m + k + batch), opts.seconds);
            const row: BenchRow = { kernel: kc.name, isa, m, k, batch, threads, ms: round(ms, 4), gbps: round(wb / ms / 1e6), gops: round((2 * m * k * batch) / ms / 1e6) };
            rows.push(row);
            opts.emit({ ...row });
          }
        }
      }
      if (opts.reference && kc.reference) {
        const ms = timeCalls(kc.reference(m, k, m + k), Math.min(opts.seconds, 0.5), 1);
        const row: BenchRow = { kernel: kc.name, isa: 'reference', m, k, batch: 1, threads: 1, ms: round(ms, 3), gbps: round(wb / ms / 1e6), gops: round((2 * m * k) / ms / 1e6) };
        rows.push(row);
        opts.emit({ ...row });
      }
    }
  }
  return rows;
}

function round(v: number, digits = 2): number {
  const f = 10 ** digits;
  return Math.round(v * f) / f;
}

export function defaultIsas(): Isa[] {
  return cpuInfo().supportedIsas;
}

export { allocActivations };
