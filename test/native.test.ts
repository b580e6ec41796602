import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

import { describe, expect, it } from 'vitest';

import { NativeError } from '../lib/errors.js';
import { KernelContext, cpuInfo } from '../lib/kernels/context.js';

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
      for (const family of ['act_quant', 'ternary_i2', 'ternary_lut', 'ternary_td3', 'binary', 'f16', 'q8', 'q4', 'ops']) {
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
