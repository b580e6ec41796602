// `bitllm pull` and the hub cache, against a local server that behaves like the Hugging Face hub
// (test/mock-hub.ts): the listing API, resolve URLs that 302 to a CDN on another origin, etags, Range, 416,
// connection cuts, a corrupted download, private repos, revisions; then the CLI end to end.
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';

import { HubCache } from '../lib/hub/cache.js';
import { HubChecksumError, HubError, HubNotCachedError, type PullEvent, type PullOptions, parseHubRef, pullModel, resolveModelPath } from '../lib/hub/index.js';
import { runProcess } from './helpers.js';
import { MockHub, gitBlobSha1, sha256Hex } from './mock-hub.js';

const MAIN = fileURLToPath(new URL('../dist/cli/main.js', import.meta.url));
const MODEL = fileURLToPath(new URL('../models/tiny-b158-i2_s.gguf', import.meta.url));
const MODEL_BYTES = readFileSync(MODEL);

const C1 = '1'.repeat(40);
const C2 = '2'.repeat(40);
const C3 = '3'.repeat(40);

/** Deterministic filler bytes (distinct per seed). */
function bytes(n: number, seed: number): Buffer {
  const b = Buffer.alloc(n);
  let s = seed >>> 0;
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    b[i] = s >>> 24;
  }
  return b;
}

const V1 = bytes(200_000, 1);
const V2 = bytes(300_000, 2);
const CONFIG = Buffer.from('{"architectures": ["BitNetForCausalLM"]}\n');

let hub: MockHub;
let cache: string;

beforeAll(async () => {
  hub = new MockHub();
  hub.addRepo('test-org/tiny', [[C1, { 'tiny-b158-i2_s.gguf': MODEL_BYTES, 'README.md': Buffer.from('# tiny\n') }]], { main: C1 });
  hub.addRepo('test-org/versions', [[C1, { 'model.gguf': V1 }], [C2, { 'model.gguf': V2, 'config.json': CONFIG }]], { main: C2, v1: C1 });
  hub.addRepo('test-org/private', [[C1, { 'model.gguf': V1 }]], { main: C1 }, 'hf_secret');
  hub.addRepo('test-org/several', [[C1, { 'a-q1.gguf': V1, 'sub/b-q2.gguf': V2 }]], { main: C1 });
  hub.addRepo('test-org/checkpoint', [[C1, { 'model.safetensors': V1, 'config.json': CONFIG }]], { main: C1 });
  hub.addRepo('test-org/flaky', [[C3, { 'model.gguf': V2 }]], { main: C3 });
  await hub.start();
});
afterAll(() => hub.stop());

beforeEach(() => {
  cache = mkdtempSync(join(tmpdir(), 'bitllm-hub-'));
  hub.log.length = 0;
  hub.faults.clear();
});
afterEach(() => rmSync(cache, { recursive: true, force: true }));

function pull(ref: string, extra: PullOptions = {}) {
  return pullModel(ref, { endpoint: hub.endpoint, cacheDir: cache, token: '', retryDelayMs: 10, ...extra });
}

/** Every file under the cache folder (relative paths). */
function cacheFiles(): string[] {
  const out: string[] = [];
  const walk = (d: string, p: string) => {
    for (const e of readdirSync(d, { withFileTypes: true })) e.isDirectory() ? walk(join(d, e.name), `${p}${e.name}/`) : out.push(p + e.name);
  };
  walk(cache, '');
  return out.sort();
}

describe('hub references', () => {
  it('parse owner, repo, a nested file and a revision after the last @', () => {
    expect(parseHubRef('hf:o/r')).toEqual({ repo: 'o/r', file: undefined, revision: 'main', revisionGiven: false });
    expect(parseHubRef('hf:o/r/dir/m.gguf@refs/pr/1')).toEqual({ repo: 'o/r', file: 'dir/m.gguf', revision: 'refs/pr/1', revisionGiven: true });
  });

  it('reject paths that leave the repo and malformed names', () => {
    expect(() => parseHubRef('hf:o/r/../x.gguf')).toThrow(/not a relative path/);
    expect(() => parseHubRef('hf:o')).toThrow(/expected hf:OWNER\/REPO/);
    expect(() => parseHubRef('hf:o/r@')).toThrow(/revision '' is not/);
    expect(() => parseHubRef('hf:o--x/r')).toThrow(/not a valid hub name/);
  });
});

describe('pull', () => {
  it("downloads a repo's one .gguf through the CDN redirect and verifies its sha256", async () => {
    const r = await pull('hf:test-org/tiny');
    expect(r).toMatchObject({ repo: 'test-org/tiny', file: 'tiny-b158-i2_s.gguf', revision: 'main', commit: C1, size: MODEL_BYTES.length, sha256: sha256Hex(MODEL_BYTES), cached: false });
    expect(r.path).toBe(join(cache, 'hub', 'test-org--tiny', 'snapshots', C1, 'tiny-b158-i2_s.gguf'));
    expect(readFileSync(r.path).equals(MODEL_BYTES)).toBe(true);
    expect(readFileSync(join(cache, 'hub', 'test-org--tiny', 'refs', 'main'), 'utf8').trim()).toBe(C1);
    expect(hub.requests('cdn', 'GET')).toHaveLength(1);
    expect(cacheFiles().some((f) => f.endsWith('.part') || f.endsWith('.lock') || f.endsWith('.tmp'))).toBe(false);
  });

  it('a second pull finds the file in the cache and downloads nothing', async () => {
    await pull('hf:test-org/tiny');
    hub.log.length = 0;
    const r = await pull('hf:test-org/tiny');
    expect(r.cached).toBe(true);
    expect(hub.requests('cdn')).toHaveLength(0);
  });

  it('downloads a small (non-LFS) file directly and checks its git blob sha1', async () => {
    const r = await pull('hf:test-org/versions/config.json');
    expect(readFileSync(r.path).equals(CONFIG)).toBe(true);
    expect(r.sha256).toBe(sha256Hex(CONFIG));
    expect(hub.requests('cdn')).toHaveLength(0);
    expect(hub.requests('hub', 'GET')[0]!.url).toContain('/resolve/main/config.json');
    expect(gitBlobSha1(CONFIG)).toMatch(/^[0-9a-f]{40}$/);
  });

  it('resumes a connection cut mid-file from the part it holds (Range, 206)', async () => {
    hub.faults.set(sha256Hex(V2), { cutAfter: { bytes: 100_000, times: 2 } });
    const events: PullEvent[] = [];
    const r = await pull('hf:test-org/flaky', { onEvent: (e) => events.push(e) });
    expect(readFileSync(r.path).equals(V2)).toBe(true);
    const gets = hub.requests('cdn', 'GET');
    expect(gets.map((g) => [g.range, g.status])).toEqual([[undefined, 200], ['bytes=100000-', 206], ['bytes=200000-', 206]]);
    expect(events.filter((e) => e.type === 'retry').map((e) => e.type === 'retry' && e.resumeFrom)).toEqual([100_000, 200_000]);
  });

  it('gives up after the retries when the connection keeps failing, keeping the part for the next pull', async () => {
    hub.faults.set(sha256Hex(V2), { cutAfter: { bytes: 0, times: 100 } });
    await expect(pull('hf:test-org/flaky', { retries: 2 })).rejects.toThrow(/hf:test-org\/flaky\/model.gguf@main: download failed after 2 retries/);
    hub.faults.clear();
    const r = await pull('hf:test-org/flaky');
    expect(readFileSync(r.path).equals(V2)).toBe(true);
  });

  it('drops a response that stalls and resumes where it stopped', async () => {
    hub.faults.set(sha256Hex(V2), { stallAfter: { bytes: 70_000, times: 1 } });
    const events: PullEvent[] = [];
    const r = await pull('hf:test-org/flaky', { stallTimeoutMs: 300, onEvent: (e) => events.push(e) });
    expect(readFileSync(r.path).equals(V2)).toBe(true);
    expect(hub.requests('cdn', 'GET').map((g) => [g.range, g.status])).toEqual([[undefined, 200], ['bytes=70000-', 206]]);
    const retry = events.find((e) => e.type === 'retry');
    expect(retry?.type === 'retry' && retry.reason).toMatch(/no data for 300 ms/);
  });

  it('refuses to download a file another live process is downloading; takes over a stale lock', async () => {
    const final = new HubCache(cache).filePath('test-org/flaky', C3, 'model.gguf');
    mkdirSync(dirname(final), { recursive: true });
    writeFileSync(`${final}.part.lock`, String(process.ppid));
    await expect(pull('hf:test-org/flaky')).rejects.toThrow(`hf:test-org/flaky/model.gguf is being downloaded by another process (pid ${process.ppid}`);
    const dead = await runProcess(process.execPath, ['-e', 'process.stdout.write(String(process.pid))']);
    writeFileSync(`${final}.part.lock`, dead.stdout);
    const r = await pull('hf:test-org/flaky');
    expect(readFileSync(r.path).equals(V2)).toBe(true);
    expect(existsSync(`${final}.part.lock`)).toBe(false);
  });

  it('resumes from a .part left by an earlier run', async () => {
    const final = new HubCache(cache).filePath('test-org/flaky', C3, 'model.gguf');
    mkdirSync(dirname(final), { recursive: true });
    writeFileSync(`${final}.part`, V2.subarray(0, 123_456));
    const events: PullEvent[] = [];
    const r = await pull('hf:test-org/flaky', { onEvent: (e) => events.push(e) });
    expect(readFileSync(r.path).equals(V2)).toBe(true);
    expect(hub.requests('cdn', 'GET').map((g) => [g.range, g.status])).toEqual([['bytes=123456-', 206]]);
    expect(events[0]).toEqual({ type: 'start', file: 'model.gguf', size: V2.length, resumeFrom: 123_456 });
  });

  it('starts over when the server ignores the Range request (200)', async () => {
    const final = new HubCache(cache).filePath('test-org/flaky', C3, 'model.gguf');
    mkdirSync(dirname(final), { recursive: true });
    writeFileSync(`${final}.part`, V2.subarray(0, 5000));
    hub.faults.set(sha256Hex(V2), { ignoreRange: 1 });
    const r = await pull('hf:test-org/flaky');
    expect(readFileSync(r.path).equals(V2)).toBe(true);
    expect(hub.requests('cdn', 'GET').map((g) => [g.range, g.status])).toEqual([['bytes=5000-', 200]]);
  });

  it('starts over when the server refuses the range of a stale part (416)', async () => {
    const final = new HubCache(cache).filePath('test-org/flaky', C3, 'model.gguf');
    mkdirSync(dirname(final), { recursive: true });
    writeFileSync(`${final}.part`, V2.subarray(0, 5000));
    hub.faults.set(sha256Hex(V2), { refuseRange: 1 });
    const r = await pull('hf:test-org/flaky');
    expect(readFileSync(r.path).equals(V2)).toBe(true);
    expect(hub.requests('cdn', 'GET').map((g) => [g.range, g.status])).toEqual([['bytes=5000-', 416], [undefined, 200]]);
  });

  it('gives up on a server that answers every range from the wrong place', async () => {
    const final = new HubCache(cache).filePath('test-org/flaky', C3, 'model.gguf');
    mkdirSync(dirname(final), { recursive: true });
    writeFileSync(`${final}.part`, Buffer.concat([V2, Buffer.alloc(10)]));
    hub.faults.set(sha256Hex(V2), { cutAfter: { bytes: 1000, times: 100 }, refuseRange: 100 });
    // Each attempt: cut after 1000 bytes, then the resumed range is refused (416) and the part deleted.
    await expect(pull('hf:test-org/flaky')).rejects.toThrow(/the server keeps answering ranges inconsistently \(4 restarts/);
  });

  it('verifies a complete part without downloading it again', async () => {
    const final = new HubCache(cache).filePath('test-org/flaky', C3, 'model.gguf');
    mkdirSync(dirname(final), { recursive: true });
    writeFileSync(`${final}.part`, V2);
    const r = await pull('hf:test-org/flaky');
    expect(readFileSync(r.path).equals(V2)).toBe(true);
    expect(hub.requests('cdn')).toHaveLength(0);
  });

  it('a part longer than the file is discarded and the file downloaded whole', async () => {
    const final = new HubCache(cache).filePath('test-org/flaky', C3, 'model.gguf');
    mkdirSync(dirname(final), { recursive: true });
    writeFileSync(`${final}.part`, Buffer.concat([V2, Buffer.alloc(10)]));
    const r = await pull('hf:test-org/flaky');
    expect(readFileSync(r.path).equals(V2)).toBe(true);
    expect(hub.requests('cdn', 'GET').map((g) => g.range)).toEqual([undefined]);
  });

  it('a wrong checksum fails with both hashes and leaves no file behind', async () => {
    hub.faults.set(sha256Hex(V2), { corrupt: true });
    const corrupted = Buffer.from(V2);
    corrupted[corrupted.length >> 1]! ^= 0x40;
    const err = await pull('hf:test-org/flaky').catch((e: unknown) => e);
    expect(err).toBeInstanceOf(HubChecksumError);
    const msg = (err as Error).message;
    expect(msg).toContain('hf:test-org/flaky/model.gguf@main');
    expect(msg).toContain(`the hub says ${sha256Hex(V2)}`);
    expect(msg).toContain(`the download has ${sha256Hex(corrupted)}`);
    expect(cacheFiles().filter((f) => f.includes('snapshots'))).toEqual([]);
  });

  it('a private repo is a 401 naming the repo and HF_TOKEN, and downloads with the token (never sent to the CDN)', async () => {
    const err = await pull('hf:test-org/private').catch((e: unknown) => e);
    expect(err).toBeInstanceOf(HubError);
    expect((err as Error).message).toMatch(/hf:test-org\/private@main: HTTP 401 .*repo not found or not accessible; if the repo is private or gated, set HF_TOKEN/);
    const wrong = await pull('hf:test-org/private', { token: 'hf_wrong' }).catch((e: unknown) => e);
    expect((wrong as Error).message).toMatch(/HF_TOKEN was sent; check that it has access/);
    hub.log.length = 0;
    const r = await pull('hf:test-org/private', { token: 'hf_secret' });
    expect(readFileSync(r.path).equals(V1)).toBe(true);
    expect(hub.requests('hub').every((l) => l.authorization === 'Bearer hf_secret')).toBe(true);
    expect(hub.requests('cdn').every((l) => l.authorization === undefined)).toBe(true);
  });

  it('takes the token from HF_TOKEN', async () => {
    const saved = process.env.HF_TOKEN;
    process.env.HF_TOKEN = 'hf_secret';
    try {
      const r = await pullModel('hf:test-org/private', { endpoint: hub.endpoint, cacheDir: cache });
      expect(r.sha256).toBe(sha256Hex(V1));
    } finally {
      if (saved === undefined) delete process.env.HF_TOKEN;
      else process.env.HF_TOKEN = saved;
    }
  });

  it('a missing file or revision is a 404 that names it and hints at the revision', async () => {
    await expect(pull('hf:test-org/versions/nope.gguf')).rejects.toThrow(/hf:test-org\/versions\/nope.gguf@main: HTTP 404 .*no such file at this revision/);
    await expect(pull('hf:test-org/versions@v9')).rejects.toThrow(/hf:test-org\/versions@v9: HTTP 404 .*revision not found: check the @revision/);
    await expect(pull('hf:test-org/absent')).rejects.toThrow(/HTTP 401 .*repo not found/);
  });

  it('a repo with several .gguf files asks for one and lists them', async () => {
    await expect(pull('hf:test-org/several')).rejects.toThrow(/has 2 .gguf files; name one:\n {2}hf:test-org\/several\/a-q1.gguf {2}\(0.2 MB\)\n {2}hf:test-org\/several\/sub\/b-q2.gguf/);
    const r = await pull('hf:test-org/several/sub/b-q2.gguf');
    expect(r.path).toBe(join(cache, 'hub', 'test-org--several', 'snapshots', C1, 'sub', 'b-q2.gguf'));
  });

  it('a repo without .gguf points at bitllm convert', async () => {
    await expect(pull('hf:test-org/checkpoint')).rejects.toThrow(/has no .gguf file \(it holds a safetensors .*bitllm convert HF_DIR -o model.gguf/);
  });

  it('keeps revisions apart: a tag, a commit and main each resolve to their own file', async () => {
    const main = await pull('hf:test-org/versions');
    const v1 = await pull('hf:test-org/versions@v1');
    const byCommit = await pull(`hf:test-org/versions@${C1}`);
    expect([main.commit, v1.commit, byCommit.commit]).toEqual([C2, C1, C1]);
    expect(readFileSync(main.path).equals(V2)).toBe(true);
    expect(readFileSync(v1.path).equals(V1)).toBe(true);
    expect(byCommit).toMatchObject({ path: v1.path, cached: true });
    expect(hub.requests('hub', 'HEAD').map((l) => l.url)).toContain(`/test-org/versions/resolve/${C1}/model.gguf`);
  });

  it('offline: resolves main and a tag from the cache without a request', async () => {
    const online = await pull('hf:test-org/versions');
    const v1 = await pull('hf:test-org/versions@v1');
    hub.log.length = 0;
    expect(await pull('hf:test-org/versions', { offline: true })).toMatchObject({ path: online.path, commit: C2, sha256: sha256Hex(V2), cached: true });
    expect((await pull('hf:test-org/versions@v1', { offline: true })).path).toBe(v1.path);
    expect(hub.log).toHaveLength(0);
  });

  it('offline: a reference not in the cache fails and says to pull it', async () => {
    const err = await pull('hf:test-org/tiny', { offline: true }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(HubNotCachedError);
    expect((err as Error).message).toMatch(/hf:test-org\/tiny is not in the cache .*: run 'bitllm pull hf:test-org\/tiny' first/);
    expect(hub.log).toHaveLength(0);
  });

  it('falls back to the cached copy when the hub cannot be reached', async () => {
    await pull('hf:test-org/tiny');
    const closed = createServer();
    await new Promise<void>((r) => closed.listen(0, '127.0.0.1', () => r()));
    const down = `http://127.0.0.1:${(closed.address() as AddressInfo).port}`;
    await new Promise<void>((r) => closed.close(() => r()));
    const events: PullEvent[] = [];
    const r = await pull('hf:test-org/tiny', { endpoint: down, retries: 0, onEvent: (e) => events.push(e) });
    expect(r.cached).toBe(true);
    expect(events.map((e) => e.type)).toEqual(['offline-fallback']);
    await expect(pull('hf:test-org/versions', { endpoint: down, retries: 0 })).rejects.toThrow(/GET http:\/\/127.0.0.1:\d+\/api\/models\/test-org\/versions\/revision\/main\?blobs=true: fetch failed: ECONNREFUSED/);
  });
});

describe('resolveModelPath', () => {
  it('resolves hf: references and bare repo names from the cache; a bare name not cached is undefined', async () => {
    const r = await pull('hf:test-org/tiny');
    expect(resolveModelPath('hf:test-org/tiny', { cacheDir: cache })).toBe(r.path);
    expect(resolveModelPath('test-org/tiny', { cacheDir: cache })).toBe(r.path);
    expect(resolveModelPath('test-org/tiny/tiny-b158-i2_s.gguf@main', { cacheDir: cache })).toBe(r.path);
    expect(resolveModelPath(MODEL, { cacheDir: cache })).toBe(MODEL);
    expect(resolveModelPath('test-org/versions', { cacheDir: cache })).toBeUndefined();
    expect(() => resolveModelPath('hf:test-org/versions', { cacheDir: cache })).toThrow(HubNotCachedError);
  });

  it('a cached repo with several .gguf files asks for one', async () => {
    await pull('hf:test-org/several/a-q1.gguf');
    await pull('hf:test-org/several/sub/b-q2.gguf');
    expect(() => resolveModelPath('test-org/several', { cacheDir: cache })).toThrow(/several .gguf files .*\n {2}a-q1.gguf\n {2}sub\/b-q2.gguf/);
  });
});

describe('bitllm pull / run (CLI)', () => {
  const env = () => ({ ...process.env, HF_ENDPOINT: hub.endpoint, BITLLM_CACHE: cache, HF_TOKEN: '' });
  const bitllm = (args: string[]) => runProcess(process.execPath, [MAIN, ...args], 120_000, env());

  beforeAll(() => {
    if (!existsSync(MAIN)) throw new Error(`${MAIN} is missing: build with \`npx tsc -p tsconfig.json\` first`);
  });

  it('pull prints JSON lines off a TTY, the last with path, size, sha256 and commit', async () => {
    const r = await bitllm(['pull', 'hf:test-org/tiny']);
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    const lines = r.stdout.trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(lines[0]).toMatchObject({ event: 'start', file: 'tiny-b158-i2_s.gguf', size: MODEL_BYTES.length, resumeFrom: 0 });
    expect(lines.at(-1)).toEqual({
      event: 'done', path: join(cache, 'hub', 'test-org--tiny', 'snapshots', C1, 'tiny-b158-i2_s.gguf'), repo: 'test-org/tiny',
      file: 'tiny-b158-i2_s.gguf', revision: 'main', commit: C1, size: MODEL_BYTES.length, sha256: sha256Hex(MODEL_BYTES), cached: false,
    });
  });

  it('run <owner/repo> generates from the pulled model exactly as from the file itself', async () => {
    expect((await bitllm(['pull', 'hf:test-org/tiny', '--json'])).status).toBe(0);
    const args = ['-p', 'Once upon a time', '-n', '8', '--temp', '0', '-t', '1', '--json'];
    const byName = await bitllm(['run', 'test-org/tiny', ...args]);
    const byRef = await bitllm(['run', 'hf:test-org/tiny@main', ...args]);
    const byPath = await bitllm(['run', MODEL, ...args]);
    expect(byName.stderr).toBe('');
    expect(byName.status).toBe(0);
    const completion = (stdout: string) => {
      const { tokens, text } = JSON.parse(stdout) as { tokens: number[]; text: string };
      return { tokens, text };
    };
    const want = completion(byPath.stdout);
    expect(want.tokens).toHaveLength(8);
    expect(want.text.length).toBeGreaterThan(0);
    expect(completion(byName.stdout)).toEqual(want);
    expect(completion(byRef.stdout)).toEqual(want);
  });

  it('inspect accepts a pulled repo name', async () => {
    expect((await bitllm(['pull', 'hf:test-org/tiny'])).status).toBe(0);
    const r = await bitllm(['inspect', 'test-org/tiny', '--json']);
    expect(r.status).toBe(0);
    expect((JSON.parse(r.stdout) as { size: number }).size).toBe(MODEL_BYTES.length);
  });

  it('run with a repo that was never pulled says how to pull it, and downloads nothing', async () => {
    const r = await bitllm(['run', 'hf:test-org/tiny', '-p', 'x']);
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(/hf:test-org\/tiny is not in the cache .*run 'bitllm pull hf:test-org\/tiny' first/);
    const bare = await bitllm(['run', 'test-org/tiny', '-p', 'x']);
    expect(bare.status).toBe(2);
    expect(bare.stderr).toContain("model file 'test-org/tiny' does not exist (nor is hub repo 'test-org/tiny' in the cache: 'bitllm pull hf:test-org/tiny' downloads it)");
    expect(hub.log).toHaveLength(0);
  });

  it('pull --offline of an uncached repo fails with exit 1 and a clear message', async () => {
    const r = await bitllm(['pull', 'hf:test-org/tiny', '--offline']);
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(/^bitllm: hf:test-org\/tiny is not in the cache/);
  });

  it('pull of a private repo without HF_TOKEN exits 1 naming the repo and HF_TOKEN', async () => {
    const r = await bitllm(['pull', 'hf:test-org/private']);
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(/hf:test-org\/private@main: HTTP 401 .*set HF_TOKEN/);
  });

  it('pull without a reference, or with a malformed one, is a usage error', async () => {
    const r = await bitllm(['pull']);
    expect(r.status).toBe(2);
    expect(r.stderr).toContain('pull: give the model as hf:OWNER/REPO[/FILE][@REVISION]');
    const bad = await bitllm(['pull', 'hf:test-org']);
    expect(bad.status).toBe(2);
    expect(bad.stderr).toContain("pull: 'hf:test-org' is not a hub reference: expected hf:OWNER/REPO[/FILE][@REVISION]");
  });
});
