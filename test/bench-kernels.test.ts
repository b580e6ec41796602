// `bitllm bench kernels`: every kernel case runs on every supported ISA, in both cache modes, and its
// reference; rows carry consistent figures. (Speed itself is never asserted.)
import { describe, expect, it } from 'vitest';

import { KERNEL_CASES, defaultIsas, runKernelBench, type BenchRow } from '../lib/cli/bench-kernels.js';

describe('bench kernels', () => {
  it('runs every kernel case on every ISA, DRAM and cache rows, plus the reference', () => {
    const lines: Array<Record<string, unknown>> = [];
    const isas = defaultIsas();
    const rows = runKernelBench({
      kernels: KERNEL_CASES.map((k) => k.name), isas, threads: [1], batches: [1, 9], shapes: [[272, 512]],
      seconds: 0.001, reference: true, coldBytes: 1 << 20, probeBytes: 16 << 20, emit: (l) => lines.push(l),
    });
    for (const kc of KERNEL_CASES) {
      for (const isa of isas) {
        const mine = rows.filter((r) => r.kernel === kc.name && r.isa === isa);
        expect(mine.map((r) => `${r.batch}:${r.cache}`).sort(), `${kc.name} ${isa}`).toEqual(['1:cache', '1:dram', '9:cache']);
      }
      expect(rows.some((r) => r.kernel === kc.name && r.isa === 'reference'), kc.name).toBe(true);
    }
    for (const r of rows as BenchRow[]) {
      expect(r.ms, JSON.stringify(r)).toBeGreaterThan(0);
      // ms is rounded to 4 decimals (the reference to 3): gops must lie within what that rounding allows.
      const half = r.isa === 'reference' ? 5e-4 : 5e-5, ops = (2 * r.m * r.k * r.batch) / 1e6;
      expect(r.gops, JSON.stringify(r)).toBeGreaterThanOrEqual(ops / (r.ms + half) - 0.01);
      expect(r.gops, JSON.stringify(r)).toBeLessThanOrEqual(r.ms > half ? ops / (r.ms - half) + 0.01 : Infinity);
    }
    expect(lines.filter((l) => l.probe === 'read_bw').length).toBe(2);
    expect(lines.filter((l) => 'kernel' in l).length).toBe(rows.length);
  });
});
