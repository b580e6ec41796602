import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

import { describe, expect, it } from 'vitest';

import { NativeError } from '../lib/errors.js';
import { HUGE_PAGE_BYTES, KernelContext, WeightArena, cpuInfo, hugePagesEnabled, weightBytes } from '../lib/kernels/context.js';
import { binding } from '../lib/native.js';
import { scaledMs } from './time-scale.js';

const fuzzScript = fileURLToPath(new URL('./fixtures/fuzz-bindings.mjs', import.meta.url));

function nodeEval(code: string, env: Record<string, string>) {
  return spawnSync(process.execPath, ['--input-type=module', '-e', code], {
    env: { ...process.env, ...env },
    encoding: 'utf8',
    cwd: fileURLToPath(new URL('..', import.meta.url)),
  });
}

const probe = `
  import { createRequire } from 'node:module';
  const addon = createRequire(import.meta.url)('node-gyp-build')(process.cwd());
  try { console.log(JSON.stringify({ isa: new addon.Context({ threads: 1 }).info().isa })); }
  catch (e) { console.log(JSON.stringify({ error: e.message })); }`;

describe('CPU features and dispatch', () => {
  const info = cpuInfo();

  it('reports features, the supported ISAs (scalar first) and a default', () => {
    expect(info.supportedIsas[0]).toBe('scalar');
    expect(info.supportedIsas).toContain(info.bestIsa);
    expect(info.physicalCores).toBeGreaterThanOrEqual(1);
    if (info.arch === 'x64' && info.features.includes('avx512vnni')) expect(info.bestIsa).toBe('avx512');
    if (info.arch === 'arm64') expect(info.bestIsa).toBe('neon');
  });

  it('a context reports its ISA and the variant chosen for every kernel family', () => {
    for (const isa of info.supportedIsas) {
      const ctx = new KernelContext({ isa, threads: 1 });
      const k = ctx.info().kernels;
      expect(ctx.isa).toBe(isa);
      expect(Object.keys(k).sort(), 'every family the addon reports is checked here').toEqual(
        ['act_quant', 'billm', 'binary', 'binary_lut', 'f16', 'mamba2', 'ops', 'q4', 'q8', 'ternary_i2', 'ternary_lut', 'ternary_sparse', 'ternary_td3'],
      );
      for (const family of ['act_quant', 'ternary_i2', 'ternary_lut', 'ternary_td3', 'ternary_sparse', 'binary', 'binary_lut', 'billm', 'f16', 'q8', 'q4', 'ops', 'mamba2']) {
        expect(k[family], `${isa} ${family}`).toMatch(/^(scalar|avx2|avx512|avx512-vbmi|neon|neon-dotprod)$/);
      }
      if (isa !== 'scalar') expect(k['ternary_i2']).toMatch(new RegExp(`^${isa}`));
    }
  });

  it('BITLLM_ISA forces each supported ISA', () => {
    for (const isa of info.supportedIsas) {
      const r = nodeEval(probe, { BITLLM_ISA: isa });
      expect(JSON.parse(r.stdout), r.stderr).toEqual({ isa });
    }
  });

  it('BITLLM_ISA naming an unsupported or unknown ISA is a clear error', () => {
    const unsupported = info.arch === 'arm64' ? 'avx2' : 'neon';
    expect(JSON.parse(nodeEval(probe, { BITLLM_ISA: unsupported }).stdout).error).toMatch(/BITLLM_ISA='.*' is not supported/);
    expect(JSON.parse(nodeEval(probe, { BITLLM_ISA: 'sse9' }).stdout).error).toMatch(/not one of scalar, avx2, avx512, neon/);
  });

  it('rejects bad context options with NativeError', () => {
    expect(() => new KernelContext({ threads: 0 })).toThrow(NativeError);
    expect(() => new KernelContext({ threads: 1.5 })).toThrow(/threads/);
    expect(() => new KernelContext({ isa: 'mmx' as never })).toThrow(/isa 'mmx'/);
    const unsupported = info.arch === 'arm64' ? 'avx512' : 'neon';
    expect(() => new KernelContext({ isa: unsupported })).toThrow(/not supported/);
  });
});

describe('binding argument checks', () => {
  it('every binding survives garbage: typed errors only, never a crash', () => {
    for (const seed of [1, 2, 3]) {
      const r = spawnSync(process.execPath, [fuzzScript, String(seed)], { encoding: 'utf8', timeout: 120_000 });
      expect(r.status, `fuzz seed ${seed} crashed: ${r.stderr}`).toBe(0);
      const out = JSON.parse(r.stdout.trim().split('\n').pop()!);
      expect(out.bindings).toBeGreaterThanOrEqual(7);
      expect(out.nonTypedErrors).toEqual([]);
      expect(out.threw).toBeGreaterThan(out.calls * 0.9);
    }
  });
});

describe('weight memory (huge-page advised native buffers)', () => {
  it('prepareWeights: a 2 MiB-aligned offset where the bytes fit, 0 below 2 MiB; typed errors for bad arguments', () => {
    const prepare = binding<(b: unknown, n: unknown) => number>('prepareWeights');
    for (const n of [0, 1, HUGE_PAGE_BYTES - 1, HUGE_PAGE_BYTES, 3 * HUGE_PAGE_BYTES + 17, 40 * 1024 * 1024 + 5]) {
      const buf = new ArrayBuffer(n + HUGE_PAGE_BYTES);
      const off = prepare(buf, n);
      expect(Number.isInteger(off) && off >= 0 && off + n <= buf.byteLength).toBe(true);
      if (n < HUGE_PAGE_BYTES) expect(off).toBe(0);
      const b = new Uint8Array(buf, off, n);
      let nonZero = 0;
      for (let i = 0; i < n; i += 511) nonZero += b[i]!;
      expect(nonZero).toBe(0);
    }
    // Too small to hold the bytes at a 2 MiB boundary: nothing is advised, offset 0.
    expect(prepare(new ArrayBuffer(HUGE_PAGE_BYTES + 5), HUGE_PAGE_BYTES + 5)).toBeGreaterThanOrEqual(0);
    for (const [b, n] of [[new ArrayBuffer(8), 9], [new ArrayBuffer(8), -1], [new ArrayBuffer(8), 1.5], [new Uint8Array(8), 1], [{}, 1], [new ArrayBuffer(8), 'x']] as const)
      expect(() => prepare(b, n), `${String(b)} ${String(n)}`).toThrow(/prepareWeights/);
  });

  it('weightBytes frees like any JS buffer: 40 x 256 MiB allocated and dropped stay far below their sum', () => {
    const rss = () => Number(readFileSync('/proc/self/status', 'utf8').match(/VmRSS:\s+(\d+)/)![1]) / 1024;
    if (process.platform !== 'linux') return;
    let max = 0;
    for (let i = 0; i < 40; i++) {
      const b = weightBytes(256 * 1024 * 1024);
      b[b.length - 1] = i;
      max = Math.max(max, rss());
    }
    expect(max).toBeLessThan(4 * 1024); // MB; 10 GB if nothing were collected
  }, scaledMs(60_000));

  it('weightBytes: a 2 MiB-aligned view from 2 MiB up, a plain buffer below it or with BITLLM_HUGE_PAGES=0', () => {
    expect(weightBytes(HUGE_PAGE_BYTES - 1).buffer.byteLength).toBe(HUGE_PAGE_BYTES - 1);
    const big = weightBytes(HUGE_PAGE_BYTES + 3);
    expect(big.byteLength).toBe(HUGE_PAGE_BYTES + 3);
    expect(big.every((x) => x === 0)).toBe(true);
    const saved = process.env.BITLLM_HUGE_PAGES;
    try {
      for (const v of ['0', 'off', 'false']) {
        process.env.BITLLM_HUGE_PAGES = v;
        expect(hugePagesEnabled()).toBe(false);
      }
      process.env.BITLLM_HUGE_PAGES = '1';
      expect(hugePagesEnabled()).toBe(true);
    } finally {
      if (saved === undefined) delete process.env.BITLLM_HUGE_PAGES;
      else process.env.BITLLM_HUGE_PAGES = saved;
    }
  });

  it('WeightArena: 64-byte aligned, disjoint, zeroed slices of one block; past the capacity a buffer of its own', () => {
    const sizes = [1, 63, 64, 65, 1000, 4096, 7, 0, 129];
    const arena = new WeightArena(sizes.reduce((a, n) => a + WeightArena.slot(n), 0));
    const slices = sizes.map((n) => arena.alloc(n));
    const block = slices[0]!.buffer;
    let end = 0;
    slices.forEach((s, i) => {
      expect(s.byteLength).toBe(sizes[i]);
      expect(s.buffer).toBe(block);
      expect(s.byteOffset % 64).toBe(0);
      expect(s.byteOffset).toBeGreaterThanOrEqual(end);
      end = s.byteOffset + s.byteLength;
      expect(s.every((x) => x === 0)).toBe(true);
      s.fill(i + 1);
    });
    slices.forEach((s, i) => expect(s.every((x) => x === i + 1)).toBe(true));
    const extra = arena.alloc(10);
    expect(extra.buffer).not.toBe(block);
    expect(extra.byteLength).toBe(10);
    expect(() => new WeightArena(-1)).toThrow(RangeError);
    expect(() => arena.alloc(1.5)).toThrow(RangeError);
  });
});
