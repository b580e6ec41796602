import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

import { afterAll, describe, expect, it } from 'vitest';

import { type NativeLoadSite, PREBUILD_GLIBC_FLOOR, nativeLoadFailureMessage } from '../lib/native.js';

const site: NativeLoadSite = {
  platform: 'linux',
  arch: 'x64',
  nodeVersion: 'v20.20.2',
  glibcVersion: '2.31',
  packageRoot: '/app/node_modules/bitllm',
  prebuildTargets: ['linux-arm64', 'linux-x64'],
};

const npm12 = 'npm install-scripts approve bitllm && npm rebuild bitllm';

describe('the native load-failure message', () => {
  it('names a platform without a prebuild, the shipped ones and their glibc floor', () => {
    const msg = nativeLoadFailureMessage(
      { ...site, platform: 'darwin', arch: 'arm64', glibcVersion: null },
      'No native build was found for platform=darwin arch=arm64',
    );
    expect(msg).toContain('for darwin-arm64 (node v20.20.2, no glibc)');
    expect(msg).toContain('No prebuilt binary ships for darwin-arm64 (prebuilds: linux-arm64, linux-x64;');
    expect(msg).toContain(`glibc >= ${PREBUILD_GLIBC_FLOOR}`);
    expect(msg).toContain('No native build was found for platform=darwin arch=arm64');
  });

  it('names the glibc found and the glibc required when the system glibc is too old', () => {
    const msg = nativeLoadFailureMessage(
      { ...site, glibcVersion: '2.27' },
      "/lib/x86_64-linux-gnu/libm.so.6: version `GLIBC_2.29' not found",
    );
    expect(msg).toContain('(node v20.20.2, glibc 2.27)');
    expect(msg).toContain(`needs glibc >= ${PREBUILD_GLIBC_FLOOR}; this system has glibc 2.27.`);
    expect(msg).toContain("version `GLIBC_2.29' not found");
  });

  it('compares glibc versions numerically (2.9 is older than 2.28, 2.100 newer)', () => {
    expect(nativeLoadFailureMessage({ ...site, glibcVersion: '2.9' }, 'x')).toContain('this system has glibc 2.9.');
    expect(nativeLoadFailureMessage({ ...site, glibcVersion: '2.100' }, 'x')).toContain(
      'for linux-x64 (glibc >= 2.28; found glibc 2.100) did not load.',
    );
    expect(nativeLoadFailureMessage({ ...site, glibcVersion: PREBUILD_GLIBC_FLOOR }, 'x')).toContain('did not load.');
  });

  it('says when a Linux system has no glibc at all (musl)', () => {
    const msg = nativeLoadFailureMessage({ ...site, glibcVersion: null }, 'Error relocating bitllm.node');
    expect(msg).toContain('this system has none (musl?)');
  });

  it('says a copy without prebuilds (a git clone) has none', () => {
    const msg = nativeLoadFailureMessage({ ...site, prebuildTargets: [] }, 'No native build was found');
    expect(msg).toContain('No prebuilt binary ships for linux-x64 (prebuilds: none in this copy;');
  });

  it('gives the source-build commands that work under npm 12, npm 10/11, pnpm, bun and any client', () => {
    const msg = nativeLoadFailureMessage({ ...site, platform: 'freebsd' }, 'x');
    expect(msg).toContain('needs python3, make and a C++17 compiler');
    expect(msg).toContain(`npm 12+:      ${npm12}`);
    expect(msg).toContain('npm 10/11:    npm rebuild bitllm');
    expect(msg).toContain('pnpm approve-builds');
    expect(msg).toContain('bun pm trust bitllm');
    expect(msg).toContain('cd /app/node_modules/bitllm && npx --yes node-gyp rebuild');
  });
});

describe('loadNative when no binary fits', () => {
  const empty = mkdtempSync(join(tmpdir(), 'bitllm-noaddon-'));
  afterAll(() => rmSync(empty, { recursive: true, force: true }));

  it('throws NativeError with the real platform, glibc and commands', () => {
    // BITLLM_PREBUILD points node-gyp-build at a folder with no binary; PREBUILDS_ONLY skips build/.
    const code = `
      const { loadNative } = await import('./dist/native.js');
      try { loadNative(); console.log('LOADED'); }
      catch (e) { console.log(e.name); console.log(e.message); }`;
    const res = spawnSync(process.execPath, ['--input-type=module', '-e', code], {
      cwd: fileURLToPath(new URL('..', import.meta.url)),
      env: { ...process.env, BITLLM_PREBUILD: empty, PREBUILDS_ONLY: '1' },
      encoding: 'utf8',
    });
    expect(res.status, res.stderr).toBe(0);
    expect(res.stdout).toMatch(/^NativeError\n/);
    expect(res.stdout).toContain(`for ${process.platform}-${process.arch} (node ${process.version}, `);
    const glibc = (process.report.getReport() as { header: { glibcVersionRuntime?: string } }).header
      .glibcVersionRuntime;
    if (glibc) expect(res.stdout).toContain(`glibc ${glibc})`);
    expect(res.stdout).toContain('No native build was found');
    expect(res.stdout).toContain(npm12);
  });
});
