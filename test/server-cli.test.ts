// `bitllm serve` as a user runs it (node dist/cli/main.js; build first): the built-in model by default,
// SIGTERM drains (the running stream ends with [DONE], exit 0), a second signal exits at once, API key files,
// usage errors.
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { dataChunks, post, readSse, type SseEvent } from './server-helpers.js';
import { scaledMs } from './time-scale.js';

const MAIN = fileURLToPath(new URL('../dist/cli/main.js', import.meta.url));
const LONG = { prompt: 'Once upon a time', max_tokens: 1500, ignore_eos: true, temperature: 0, stream: true };

let tmp: string;
const children: ChildProcess[] = [];
beforeAll(() => {
  if (!existsSync(MAIN)) throw new Error(`${MAIN} is missing: build with \`npx tsc -p tsconfig.json\` first`);
  tmp = mkdtempSync(join(tmpdir(), 'bitllm-serve-'));
});
afterAll(() => {
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  rmSync(tmp, { recursive: true, force: true });
});

/** Starts `bitllm serve --port 0 ...` and resolves with its base URL once it says it is ready. */
function serve(...args: string[]): Promise<{ child: ChildProcess; base: string; stderr: () => string; exit: Promise<number | null> }> {
  const child = spawn(process.execPath, [MAIN, 'serve', '--port', '0', '-t', '1', ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  children.push(child);
  let err = '';
  const exit = new Promise<number | null>((r) => child.on('exit', (code) => r(code)));
  return new Promise((resolve, reject) => {
    child.stderr!.setEncoding('utf8').on('data', (d: string) => {
      err += d;
      const port = /listening on http:\/\/127\.0\.0\.1:(\d+)/.exec(err)?.[1];
      if (port && err.includes('ready:')) resolve({ child, base: `http://127.0.0.1:${port}`, stderr: () => err, exit });
    });
    void exit.then((code) => reject(new Error(`serve exited (${code}) before it was ready: ${err}`)));
  });
}

describe('bitllm serve', () => {
  it('serves the built-in model on 127.0.0.1 and drains on SIGTERM: the stream ends with [DONE], exit code 0', async () => {
    // The default drain timeout (30 s) holds the stream natively; under emulation it takes longer (test/time-scale.ts).
    const { child, base, exit, stderr } = await serve('--ctx', '2048', '--drain-timeout', String(scaledMs(30)));
    const models = await (await fetch(`${base}/v1/models`)).json();
    expect(models.data[0].id).toBe('tiny-b158-i2_s');
    const res = await post(base, '/v1/completions', LONG);
    const it = readSse(res);
    const events: SseEvent[] = [(await it.next()).value!];
    child.kill('SIGTERM');
    // /ready turns 503 while the stream still runs.
    let sawDraining = false;
    for (let i = 0; i < 50 && !sawDraining; i++) {
      const r = await fetch(`${base}/ready`).catch(() => undefined);
      if (!r) break;
      sawDraining = r.status === 503;
    }
    expect(sawDraining).toBe(true);
    for (let r = await it.next(); !r.done; r = await it.next()) events.push(r.value);
    const chunks = dataChunks(events);
    expect(chunks[chunks.length - 1]!.choices[0].finish_reason).toBe('length');
    expect(await exit).toBe(0);
    expect(stderr()).toMatch(/SIGTERM: draining/);
  });

  it('a second signal exits at once', async () => {
    const { child, base, exit } = await serve('--ctx', '4096', '--drain-timeout', '600');
    const res = await post(base, '/v1/completions', { ...LONG, max_tokens: 4000 });
    const it = readSse(res);
    await it.next();
    child.kill('SIGTERM');
    await new Promise((r) => setTimeout(r, 50));
    const t0 = performance.now();
    child.kill('SIGTERM');
    expect(await exit).toBe(1);
    expect(performance.now() - t0).toBeLessThan(scaledMs(3000));
  });

  it('--api-key-file: keys one per line; --help; usage errors exit 2', async () => {
    const file = join(tmp, 'keys.txt');
    writeFileSync(file, '# keys\nalpha\n\nbeta\n');
    const { child, base, exit } = await serve('--api-key-file', file);
    expect((await fetch(`${base}/v1/models`)).status).toBe(401);
    expect((await fetch(`${base}/v1/models`, { headers: { authorization: 'Bearer beta' } })).status).toBe(200);
    expect((await fetch(`${base}/health`)).status).toBe(200);

    // The port is taken now: a one-line error, exit 1.
    const { port } = new URL(base);
    const clash = spawnSync(process.execPath, [MAIN, 'serve', '--port', port, '-t', '1'], { encoding: 'utf8', timeout: 20_000 });
    expect(clash.status).toBe(1);
    expect(clash.stderr).toMatch(/^bitllm: serve: cannot listen on 127\.0\.0\.1:\d+: .*EADDRINUSE/m);
    child.kill('SIGTERM');
    expect(await exit).toBe(0);

    const help = spawnSync(process.execPath, [MAIN, 'serve', '--help'], { encoding: 'utf8' });
    expect(help.status).toBe(0);
    expect(help.stdout).toContain('--parallel N');
    for (const args of [['--api-key', 'a', '--api-key-file', file], ['--port', '70000'], ['--bogus'], ['--api-key-file', join(tmp, 'missing')]]) {
      const r = spawnSync(process.execPath, [MAIN, 'serve', ...args], { encoding: 'utf8', timeout: 20_000 });
      expect(r.status, args.join(' ')).toBe(2);
      expect(r.stderr).toMatch(/^bitllm: serve: /);
    }
  });
});
