// Scale-out (docs/scale-out.md): `bitllm serve` replicas behind Debian's nginx running deploy/nginx/bitllm.conf
// as shipped; only the replica addresses, the listen port and the access log path are rewritten. Everything
// runs on 127.0.0.1 as the current user (root included): the replicas are `node dist/cli/main.js serve` on
// the tiny model with one thread each, nginx gets a prefix, pid file, logs and temp dirs in a temp folder.
//   - A replica that turns a request away before the first byte (429 queue full, 503 draining, connection
//     refused once it exited) costs the client nothing: nginx retries it on the other replica.
//   - SIGTERM to one of two replicas in the middle of a mixed load (chat and completions, streaming and not,
//     6 at a time) makes no request fail: its running streams end with [DONE], it exits 0, and every request
//     that starts after the signal is served by the other one.
// Run by `npm run test:scaleout` (CI: .ci/run). Needs nginx (Debian: apt-get install nginx, or nginx-light) and
// the build (dist/); a missing prerequisite fails here with the fix, never skips. About 10 s.
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { accessSync, constants, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { dataChunks, parseMetrics, post, readSse } from '../server-helpers.js';
import { scaledMs } from '../time-scale.js';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const MAIN = join(ROOT, 'dist', 'cli', 'main.js');
const MODEL = join(ROOT, 'models', 'tiny-b158-i2_s.gguf');
const SITE_CONF = join(ROOT, 'deploy', 'nginx', 'bitllm.conf');

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Resolves `p`, or rejects after `ms` (scaled: test/time-scale.ts) saying what it waited for. */
function within<T>(p: Promise<T>, native: number, what: string): Promise<T> {
  const ms = scaledMs(native);
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([p, new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms)))])
    .finally(() => clearTimeout(timer));
}

async function waitUntil(cond: () => boolean | Promise<boolean>, native: number, what: string): Promise<void> {
  const ms = scaledMs(native);
  const end = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > end) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await sleep(20);
  }
}

// ------------------------------------------------------------ nginx

const NGINX_MISSING = 'this suite needs nginx: on Debian `apt-get install -y nginx` (or nginx-light, which pulls it in); BITLLM_NGINX=/path/to/nginx names another binary';

function executable(path: string): boolean {
  try {
    accessSync(path, constants.X_OK);
    return statSync(path).isFile();
  } catch {
    return false;
  }
}

/** The nginx binary: $BITLLM_NGINX, else PATH, else the sbin folders a non-root PATH often lacks. */
function findNginx(): string {
  const given = process.env.BITLLM_NGINX;
  if (given) {
    if (!executable(given)) throw new Error(`BITLLM_NGINX=${given} is not an executable file`);
    return given;
  }
  const dirs = [...(process.env.PATH ?? '').split(':').filter(Boolean), '/usr/sbin', '/usr/local/sbin', '/sbin'];
  for (const d of dirs) if (executable(join(d, 'nginx'))) return join(d, 'nginx');
  throw new Error(`nginx not found (PATH, /usr/sbin, /usr/local/sbin): ${NGINX_MISSING}`);
}

/** deploy/nginx/bitllm.conf with the replica addresses, the listen port and the access log made ours. */
function siteConfig(replicas: Replica[], port: number, accessLog: string): string {
  let text = readFileSync(SITE_CONF, 'utf8');
  const swap = (pattern: RegExp, to: string) => {
    const hits = text.match(new RegExp(pattern.source, 'gm'))?.length ?? 0;
    if (hits !== 1) throw new Error(`${SITE_CONF}: expected exactly one match of ${pattern} to rewrite for the test, found ${hits}`);
    text = text.replace(pattern, to);
  };
  swap(/^(\s*)server 127\.0\.0\.1:8081 /m, `$1server 127.0.0.1:${replicas[0]!.port} `);
  swap(/^(\s*)server 127\.0\.0\.1:8082 /m, `$1server 127.0.0.1:${replicas[1]!.port} `);
  swap(/^(\s*)listen 8080;/m, `$1listen 127.0.0.1:${port};`);
  swap(/^(\s*)access_log \S+ bitllm;/m, `$1access_log ${accessLog} bitllm;`);
  return text;
}

/** The main context around it: everything in `dir`, in the foreground, and as root only where we are root. */
function mainConfig(dir: string): string {
  const asRoot = process.getuid?.() === 0;
  return `# written by test/scaleout/nginx.test.ts
${asRoot ? 'user root;  # the suite runs as root (CI): the worker keeps the rights to the temp folder\n' : ''}daemon off;
worker_processes 1;
pid ${dir}/nginx.pid;
error_log ${dir}/error.log notice;
events { worker_connections 256; }
http {
    access_log off;
    client_body_temp_path ${dir}/tmp/body;
    proxy_temp_path ${dir}/tmp/proxy;
    fastcgi_temp_path ${dir}/tmp/fastcgi;
    uwsgi_temp_path ${dir}/tmp/uwsgi;
    scgi_temp_path ${dir}/tmp/scgi;
    include ${dir}/bitllm.conf;
}
`;
}

/** One access log line of the bitllm format, for a request the test tagged with X-Request-Id. */
interface LogEntry {
  rid: string;
  status: number;
  /** Every replica tried, in order (host:port), and what each answered (502 for a connect error). */
  upstreams: string[];
  statuses: string[];
}

interface Nginx {
  base: string;
  child: ChildProcess;
  /** The tagged requests logged so far, by request id. */
  log(): Map<string, LogEntry>;
  errors(): string;
}

async function freePort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const { port } = s.address() as { port: number };
  await new Promise((r) => s.close(r));
  return port;
}

// ------------------------------------------------------------ replicas

interface Replica {
  name: string;
  child: ChildProcess;
  port: number;
  base: string;
  stderr: () => string;
  /** performance.now() when its stderr said `SIGTERM: draining` (printed just before it turns requests away). */
  drainingAt: () => number | undefined;
  exit: Promise<number | null>;
}

function startReplica(name: string, args: string[]): Promise<Replica> {
  const child = spawn(process.execPath, [MAIN, 'serve', MODEL, '--host', '127.0.0.1', '--port', '0', '-t', '1', ...args], { stdio: ['ignore', 'ignore', 'pipe'] });
  processes.push(child);
  let err = '';
  let drainingAt: number | undefined;
  const exit = new Promise<number | null>((r) => child.on('exit', (code) => r(code)));
  return within(new Promise((resolve, reject) => {
    child.stderr!.setEncoding('utf8').on('data', (d: string) => {
      err += d;
      if (drainingAt === undefined && /SIGTERM: draining/.test(err)) drainingAt = performance.now();
      const port = /listening on http:\/\/127\.0\.0\.1:(\d+)/.exec(err)?.[1];
      if (port && err.includes('ready:')) resolve({ name, child, port: Number(port), base: `http://127.0.0.1:${port}`, stderr: () => err, drainingAt: () => drainingAt, exit });
    });
    void exit.then((code) => reject(new Error(`replica ${name} exited (${code}) before it was ready: ${err}`)));
  }), 15_000, `replica ${name} to be ready`);
}

async function metrics(r: Replica): Promise<Map<string, number>> {
  return parseMetrics(await (await fetch(`${r.base}/metrics`)).text());
}

// ------------------------------------------------------------ requests

interface Outcome {
  rid: string;
  what: string;
  status: number;
  /** performance.now() when the request was sent and when its response was complete. */
  start: number;
  end: number;
  /** Why it is not a success: a status other than 200, a malformed body, a stream cut short, a network error. */
  error?: string;
}

/** One chat or completion request, streaming or not, through `base`; checks the whole response. */
async function call(base: string, rid: string, chat: boolean, stream: boolean, maxTokens: number): Promise<Outcome> {
  const what = `${chat ? 'chat' : 'completion'}${stream ? ' stream' : ''}`;
  const body = chat
    ? { messages: [{ role: 'user', content: `Tell me a story, number ${rid}.` }], max_tokens: maxTokens, temperature: 0, ignore_eos: true, stream }
    : { prompt: `Once upon a time, story ${rid}`, max_tokens: maxTokens, temperature: 0, ignore_eos: true, stream };
  const start = performance.now();
  const out = (status: number, error?: string): Outcome => ({ rid, what, status, start, end: performance.now(), ...(error !== undefined && { error }) });
  try {
    const res = await post(base, chat ? '/v1/chat/completions' : '/v1/completions', body, { headers: { 'x-request-id': rid } });
    if (res.status !== 200) return out(res.status, `HTTP ${res.status}: ${(await res.text()).slice(0, 300)}`);
    if (stream) {
      if (!res.headers.get('content-type')?.startsWith('text/event-stream')) return out(200, `content-type ${res.headers.get('content-type')}`);
      const events = [];
      for await (const e of readSse(res)) events.push(e);
      const chunks = dataChunks(events); // throws unless the stream ends with [DONE]
      const finish = chunks.filter((c) => c.choices?.[0]?.finish_reason);
      if (finish.length !== 1 || finish[0]!.choices[0].finish_reason !== 'length') return out(200, `finish chunks: ${JSON.stringify(finish)}`);
      const text = chunks.map((c) => (chat ? c.choices[0]?.delta?.content : c.choices[0]?.text) ?? '').join('');
      if (text === '') return out(200, 'empty stream text');
    } else {
      const json = (await res.json()) as Record<string, any>;
      const choice = json.choices?.[0];
      if (choice?.finish_reason !== 'length' || json.usage?.completion_tokens !== maxTokens || !(chat ? choice.message?.content : choice.text))
        return out(200, `unexpected body ${JSON.stringify(json).slice(0, 300)}`);
    }
    return out(200);
  } catch (err) {
    return out(-1, `${(err as Error).message}${(err as Error).cause ? ` (${String((err as Error).cause)})` : ''}`);
  }
}

// ------------------------------------------------------------ setup

let nginxBin: string;
let tmp: string;
const processes: ChildProcess[] = [];
let A: Replica, B: Replica, C: Replica;

async function startNginx(name: string, replicas: Replica[]): Promise<Nginx> {
  const dir = join(tmp, name);
  mkdirSync(join(dir, 'tmp'), { recursive: true });
  const port = await freePort();
  const accessLog = join(dir, 'access.log');
  writeFileSync(join(dir, 'bitllm.conf'), siteConfig(replicas, port, accessLog));
  writeFileSync(join(dir, 'nginx.conf'), mainConfig(dir));
  const args = ['-p', `${dir}/`, '-c', join(dir, 'nginx.conf'), '-e', join(dir, 'error.log')];
  const check = spawnSync(nginxBin, ['-t', '-q', ...args], { encoding: 'utf8' });
  if (check.error || check.status !== 0) throw new Error(`${nginxBin} -t rejects the config (${check.error?.message ?? check.stderr.trim()}); ${NGINX_MISSING}`);
  const child = spawn(nginxBin, args, { stdio: ['ignore', 'ignore', 'pipe'] });
  processes.push(child);
  let stderr = '';
  child.stderr!.setEncoding('utf8').on('data', (d: string) => (stderr += d));
  const errors = () => stderr + (existsSync(join(dir, 'error.log')) ? readFileSync(join(dir, 'error.log'), 'utf8') : '');
  const base = `http://127.0.0.1:${port}`;
  await waitUntil(async () => {
    if (child.exitCode !== null) throw new Error(`nginx exited (${child.exitCode}): ${errors()}`);
    return (await fetch(`${base}/health`).catch(() => undefined))?.status === 200;
  }, 10_000, `nginx (${name}) to proxy /health`);
  const log = () => {
    const out = new Map<string, LogEntry>();
    if (!existsSync(accessLog)) return out;
    for (const line of readFileSync(accessLog, 'utf8').split('\n')) {
      const f = Object.fromEntries([...line.matchAll(/(\w+)="([^"]*)"/g)].map((m) => [m[1], m[2]]));
      const status = /status=(\d+)/.exec(line)?.[1];
      if (!f.rid || f.rid === '-' || !status) continue;
      out.set(f.rid, { rid: f.rid, status: Number(status), upstreams: f.upstream!.split(', '), statuses: f.ustatus!.split(', ') });
    }
    return out;
  };
  return { base, child, log, errors };
}

/** The log entry of each request, once nginx has written them all. */
async function entries(ng: Nginx, rids: string[]): Promise<LogEntry[]> {
  await waitUntil(() => rids.every((r) => ng.log().has(r)), 5000, `nginx to log ${rids.length} requests`);
  const log = ng.log();
  return rids.map((r) => log.get(r)!);
}

const addr = (r: Replica) => `127.0.0.1:${r.port}`;

beforeAll(async () => {
  nginxBin = findNginx();
  if (!existsSync(MAIN)) throw new Error(`${MAIN} is missing: build with \`npx tsc -p tsconfig.json\` first (npm run test:scaleout does)`);
  tmp = mkdtempSync(join(tmpdir(), 'bitllm-scaleout-'));
  // A and B: the pair of the drain test. C: one slot and no queue, so a single request fills it.
  [A, B, C] = await Promise.all([
    startReplica('A', ['--parallel', '2', '--ctx', '512']),
    startReplica('B', ['--parallel', '2', '--ctx', '512']),
    startReplica('C', ['--parallel', '1', '--max-queue', '0', '--ctx', '8192']),
  ]);
}, scaledMs(30_000));

afterAll(async () => {
  // SIGTERM to whatever still runs: nginx's master then takes its worker down with it (SIGKILL would orphan it).
  const alive = (c: ChildProcess) => c.exitCode === null && c.signalCode === null;
  const gone = (c: ChildProcess) => new Promise<void>((r) => (alive(c) ? c.once('exit', () => r()) : r()));
  await Promise.all(processes.map(async (c) => {
    if (!alive(c)) return;
    c.kill('SIGTERM');
    await within(gone(c), 5000, 'exit').catch(() => c.kill('SIGKILL'));
  }));
  if (tmp) rmSync(tmp, { recursive: true, force: true });
});

// ------------------------------------------------------------ tests

describe('bitllm serve replicas behind nginx (deploy/nginx/bitllm.conf)', () => {
  it('429 (queue full), 503 (draining) and a refused connection are retried on the other replica: every client gets 200', async () => {
    // Fill C's one slot with a long stream sent to it directly: nginx does not know C is busy.
    const occupier = new AbortController();
    const long = await post(C.base, '/v1/completions', { prompt: 'Once upon a time', max_tokens: 8000, ignore_eos: true, temperature: 0, stream: true }, { signal: occupier.signal });
    expect(long.status).toBe(200);
    const longEvents = readSse(long);
    await longEvents.next(); // its first token: admitted and running
    const direct = async () => (await post(C.base, '/v1/completions', { prompt: 'x', max_tokens: 1 })).status;
    expect(await direct()).toBe(429);

    /** Requests through `ng`, one at a time, until one was turned away by C with `code` and retried on B. */
    const untilRetried = async (ng: Nginx, phase: string, code: string): Promise<LogEntry[]> => {
      const seen: LogEntry[] = [];
      for (let i = 0; i < 6; i++) {
        const rid = `${phase}-${i}`;
        const o = await call(ng.base, rid, i % 2 === 0, i % 4 < 2, 8);
        expect(o.error, `${rid} (${o.what})`).toBeUndefined();
        const [e] = await entries(ng, [rid]);
        seen.push(e!);
        expect(e!.status).toBe(200);
        expect(e!.upstreams.at(-1), `${rid} served by B`).toBe(addr(B));
        if (e!.upstreams.length === 2) {
          expect(e!.upstreams[0]).toBe(addr(C));
          expect(e!.statuses).toEqual([code, '200']);
          return seen;
        }
      }
      throw new Error(`${phase}: nginx sent none of 6 requests to C: ${JSON.stringify(seen)}`);
    };

    // 429: C's queue is full.
    const ng1 = await startNginx('queue-full', [C, B]);
    const full = await untilRetried(ng1, 'full', '429');
    expect(await direct()).toBe(429); // C was full the whole time
    const rejected = (await metrics(C)).get('bitllm_requests_rejected_total{reason="queue_full"}');
    expect(rejected, 'C counted the 429s: 2 direct, the rest from nginx').toBe(2 + full.filter((e) => e.upstreams.length === 2).length);

    // 503: C drains (SIGTERM) while its long stream runs; a fresh nginx, so no failure of C is counted yet.
    C.child.kill('SIGTERM');
    await waitUntil(async () => (await fetch(`${C.base}/ready`)).status === 503, 5000, 'C /ready 503');
    const ng2 = await startNginx('draining', [C, B]);
    await untilRetried(ng2, 'draining', '503');
    expect((await fetch(`${C.base}/ready`)).status).toBe(503); // still draining

    // The long stream's client leaves: C's drain has nothing left, it exits 0 and its port refuses connections.
    occupier.abort();
    await longEvents.return(undefined).catch(() => undefined);
    expect(await within(C.exit, 10_000, 'C to exit')).toBe(0);
    expect(C.stderr()).toMatch(/SIGTERM: draining[\s\S]*drained, exiting/);
    await untilRetried(ng2, 'refused', '502'); // nginx logs a connect error as 502; the client saw B's 200
  }, scaledMs(30_000));

  it('SIGTERM to one of two replicas mid-run: 0 failed requests, its streams end with [DONE], it exits 0, the rest go to the other', async () => {
    const ng = await startNginx('drain', [A, B]);
    const TOTAL = 48;
    const CONCURRENCY = 6;
    const MAX_TOKENS = 160;
    const outcomes: Outcome[] = [];
    let next = 0;
    let signalAt: number | undefined;
    let checking = false;
    // After a quarter of the requests, once both replicas served some and A has work in flight: SIGTERM to A.
    const maybeSignal = async () => {
      if (signalAt !== undefined || checking || outcomes.length < TOTAL / 4) return;
      checking = true;
      try {
        const log = ng.log();
        const servedBy = (r: Replica) => outcomes.filter((o) => log.get(o.rid)?.upstreams.at(-1) === addr(r)).length;
        if (servedBy(A) === 0 || servedBy(B) === 0) return;
        const m = await metrics(A);
        if ((m.get('bitllm_requests_running') ?? 0) + (m.get('bitllm_requests_waiting') ?? 0) === 0) return;
        signalAt = performance.now();
        A.child.kill('SIGTERM');
      } finally {
        checking = false;
      }
    };
    const worker = async () => {
      while (next < TOTAL) {
        const i = next++;
        // chat stream, completion stream, chat, completion, ...
        outcomes.push(await call(ng.base, `run-${i}`, i % 2 === 0, i % 4 < 2, MAX_TOKENS));
        await maybeSignal();
      }
    };
    await Promise.all(Array.from({ length: CONCURRENCY }, worker));

    expect(outcomes.filter((o) => o.error !== undefined), 'failed requests').toEqual([]);
    expect(outcomes).toHaveLength(TOTAL);
    expect(signalAt, 'A was signalled mid-run').toBeDefined();
    const t = signalAt!;
    expect(await within(A.exit, 10_000, 'A to exit')).toBe(0);
    expect(A.stderr()).toMatch(/SIGTERM: draining[\s\S]*drained, exiting/);
    // A turns requests away from the moment it prints `SIGTERM: draining` (the signal itself takes a moment to
    // be handled: a request nginx passed on before that is A's to finish, like any other in flight).
    const draining = A.drainingAt()!;

    const log = await entries(ng, outcomes.map((o) => o.rid));
    const final = new Map(log.map((e) => [e.rid, e.upstreams.at(-1)]));
    for (const e of log) expect(e.status, e.rid).toBe(200);
    const before = outcomes.filter((o) => o.end < t);
    const spanning = outcomes.filter((o) => o.start < t && o.end > t);
    const after = outcomes.filter((o) => o.start > draining);
    // Both replicas served requests before the signal.
    expect(before.filter((o) => final.get(o.rid) === addr(A)).length).toBeGreaterThan(0);
    expect(before.filter((o) => final.get(o.rid) === addr(B)).length).toBeGreaterThan(0);
    // A finished what it had when the signal came (streams included: every stream above ended with [DONE]).
    expect(spanning.filter((o) => final.get(o.rid) === addr(A)).length, 'requests A finished while draining').toBeGreaterThan(0);
    // Everything sent after A began draining was served by B; what reached A first was turned away before the
    // first byte (503 draining, or 502 = connection refused once A had exited) and retried.
    expect(after.length).toBeGreaterThan(TOTAL / 4);
    for (const o of after) expect(final.get(o.rid), `${o.rid} (sent after A began draining)`).toBe(addr(B));
    const retried = log.filter((e) => e.upstreams.length > 1);
    for (const e of retried) {
      expect(e.upstreams, e.rid).toEqual([addr(A), addr(B)]);
      expect(['503', '502'], `${e.rid}: A answered ${e.statuses[0]}`).toContain(e.statuses[0]);
    }
    console.log(`scaleout drain: ${TOTAL} requests, ${before.length} done before SIGTERM, ${spanning.filter((o) => final.get(o.rid) === addr(A)).length} finished by A while ` +
      `draining, ${after.length} sent after it began draining ${(draining - t).toFixed(0)} ms after the signal (all served by B), ${retried.length} retried (A answered ${retried.map((e) => e.statuses[0]).join(', ') || 'none'})`);
  }, scaledMs(30_000));
});
