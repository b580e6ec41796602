// HTTP side of the hub: the repo listing, a file's metadata (HEAD on its resolve URL), and a resumable,
// verified download into a `.part` file. Node's built-in fetch; redirects are followed by hand so the token
// goes to the hub's own origin only, never to the CDN a large file redirects to.
//
// Hub behaviour relied on (see docs/hub.md for the sources):
//   GET  {endpoint}/api/models/{repo}/revision/{rev}?blobs=true -> {sha, siblings: [{rfilename, size, lfs?: {sha256, size}}]}
//   HEAD {endpoint}/{repo}/resolve/{rev}/{file}  -> 200 (small files) or 302 to a CDN (LFS files), with
//        X-Repo-Commit (the commit the revision resolved to), X-Linked-Etag / X-Linked-Size (LFS: the sha256
//        and size of the real file; on a 302 the plain ETag / Content-Length describe the redirect), ETag
//        (small files: the git blob sha1), X-Error-Code (RepoNotFound, RevisionNotFound, EntryNotFound, GatedRepo)
import { createHash, type Hash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { type FileHandle, open, rm, stat, writeFile, readFile } from 'node:fs/promises';

import { HubError } from './ref.js';

export const DEFAULT_ENDPOINT = 'https://huggingface.co';

/** The file's bytes do not match the hub's hash; the partial download has been deleted. */
export class HubChecksumError extends HubError {}

/** Progress and notices of a pull, for a progress bar or JSON lines. */
export type PullEvent =
  | { type: 'start'; file: string; size: number; resumeFrom: number }
  | { type: 'progress'; file: string; done: number; size: number }
  | { type: 'retry'; file: string; attempt: number; delayMs: number; reason: string; resumeFrom: number }
  | { type: 'restart'; file: string; reason: string }
  | { type: 'offline-fallback'; reason: string };

export interface HubClientOptions {
  /** Hub base URL (default: HF_ENDPOINT, else https://huggingface.co). */
  endpoint?: string;
  /** Access token for private and gated repos (default: HF_TOKEN); sent as `Authorization: Bearer`. */
  token?: string;
  /** Failed attempts in a row (no byte received in between) before a download gives up (default 5). */
  retries?: number;
  /** First retry delay; doubles each time, at most 30 s (default 1000 ms). */
  retryDelayMs?: number;
  /** A response that sends nothing for this long is dropped and retried (default 60 s). */
  stallTimeoutMs?: number;
  onEvent?: (event: PullEvent) => void;
}

export interface RepoListing {
  /** The commit the revision resolved to, when the hub says. */
  commit: string | undefined;
  files: Array<{ path: string; size: number | undefined }>;
}

export interface RemoteFileInfo {
  /** Normalized etag: the sha256 of an LFS file, the git blob sha1 of a small one. */
  etag: string;
  size: number;
  commit: string | undefined;
}

/** The expected digest of a file, from its etag. */
type ExpectedDigest = { kind: 'sha256'; hex: string } | { kind: 'git-sha1'; hex: string } | { kind: 'none' };

function digestFromEtag(etag: string): ExpectedDigest {
  if (/^[0-9a-f]{64}$/.test(etag)) return { kind: 'sha256', hex: etag };
  if (/^[0-9a-f]{40}$/.test(etag)) return { kind: 'git-sha1', hex: etag };
  return { kind: 'none' };
}

/** `W/"abc"` / `"abc"` -> `abc`. */
export function normalizeEtag(value: string): string {
  return value.trim().replace(/^W\//, '').replace(/^"(.*)"$/, '$1').toLowerCase();
}

function encodePath(file: string): string {
  return file.split('/').map(encodeURIComponent).join('/');
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

export class HubClient {
  readonly endpoint: string;
  private readonly origin: string;
  private readonly token: string | undefined;
  private readonly retries: number;
  private readonly retryDelayMs: number;
  private readonly stallTimeoutMs: number;
  private readonly emit: (event: PullEvent) => void;

  constructor(options: HubClientOptions = {}) {
    this.endpoint = (options.endpoint ?? process.env.HF_ENDPOINT ?? DEFAULT_ENDPOINT).replace(/\/+$/, '');
    try {
      this.origin = new URL(this.endpoint).origin;
    } catch {
      throw new HubError(`hub endpoint '${this.endpoint}' (HF_ENDPOINT) is not a URL`);
    }
    this.token = options.token ?? (process.env.HF_TOKEN || undefined);
    this.retries = options.retries ?? 5;
    this.retryDelayMs = options.retryDelayMs ?? 1000;
    this.stallTimeoutMs = options.stallTimeoutMs ?? 60_000;
    this.emit = options.onEvent ?? (() => {});
  }

  resolveUrl(repo: string, revision: string, file: string): string {
    return `${this.endpoint}/${repo}/resolve/${encodeURIComponent(revision)}/${encodePath(file)}`;
  }

  listingUrl(repo: string, revision: string): string {
    return `${this.endpoint}/api/models/${repo}/revision/${encodeURIComponent(revision)}?blobs=true`;
  }

  private headers(url: string, extra: Record<string, string> = {}): Record<string, string> {
    const h: Record<string, string> = { 'User-Agent': 'bitllm', 'Accept-Encoding': 'identity', ...extra };
    if (this.token && new URL(url).origin === this.origin) h.Authorization = `Bearer ${this.token}`;
    return h;
  }

  /**
   * One request; network failures become HubNetworkErrors naming the URL (with `cause`). Without a `signal`
   * of the caller's, a request that gets no answer within the stall timeout is abandoned.
   */
  private async request(url: string, init: { method: string; headers?: Record<string, string>; signal?: AbortSignal }): Promise<Response> {
    const signal = init.signal ?? AbortSignal.timeout(this.stallTimeoutMs);
    try {
      return await fetch(url, { method: init.method, headers: this.headers(url, init.headers), redirect: 'manual', signal });
    } catch (err) {
      const why = signal.aborted && !init.signal ? `no answer within ${this.stallTimeoutMs} ms` : describeNetworkError(err);
      throw new HubNetworkError(`${init.method} ${url}: ${why}`, { cause: err });
    }
  }

  /** A failed response as an error that names what was asked for and what to try. */
  private async statusError(res: Response, what: string, url: string): Promise<HubError> {
    await res.body?.cancel().catch(() => {});
    const code = res.headers.get('x-error-code') ?? '';
    const auth = this.token ? 'HF_TOKEN was sent; check that it has access to this repo' : 'if the repo is private or gated, set HF_TOKEN to an access token';
    let why: string;
    if (code === 'RevisionNotFound') why = 'revision not found: check the @revision (a branch, tag or commit)';
    else if (code === 'EntryNotFound') why = 'no such file at this revision: check the file name and the @revision';
    else if (code === 'GatedRepo') why = `gated repo: accept its conditions on the repo page; ${auth}`;
    else if (code === 'RepoNotFound' || res.status === 401) why = `repo not found or not accessible; ${auth}`;
    else if (res.status === 403) why = `access denied; ${auth}`;
    else if (res.status === 404) why = `not found: check the repo name, the file name and the @revision; ${auth}`;
    else why = res.statusText || 'request failed';
    const Err = res.status >= 500 || res.status === 429 ? HubRetryableError : HubError;
    return new Err(`${what}: HTTP ${res.status} from ${url}: ${why}`);
  }

  /** The files of a repo at a revision. */
  async listFiles(repo: string, revision: string): Promise<RepoListing> {
    const url = this.listingUrl(repo, revision);
    const res = await this.withRetries(`listing of ${repo}@${revision}`, async () => {
      const r = await this.request(url, { method: 'GET', headers: { Accept: 'application/json' } });
      if (!r.ok) throw await this.statusError(r, `hf:${repo}@${revision}`, url);
      return r;
    });
    let body: unknown;
    try {
      body = await res.json();
    } catch (err) {
      throw new HubError(`hf:${repo}@${revision}: the listing at ${url} is not JSON (${(err as Error).message})`);
    }
    const siblings = (body as { siblings?: unknown }).siblings;
    if (!Array.isArray(siblings)) throw new HubError(`hf:${repo}@${revision}: the listing at ${url} has no 'siblings' array`);
    const files: RepoListing['files'] = [];
    for (const s of siblings as Array<{ rfilename?: unknown; size?: unknown; lfs?: { size?: unknown } }>) {
      if (typeof s?.rfilename !== 'string') continue;
      const size = typeof s.lfs?.size === 'number' ? s.lfs.size : typeof s.size === 'number' ? s.size : undefined;
      files.push({ path: s.rfilename, size });
    }
    const sha = (body as { sha?: unknown }).sha;
    return { commit: typeof sha === 'string' && /^[0-9a-f]{40}$/.test(sha) ? sha : undefined, files };
  }

  /**
   * HEAD on the file's resolve URL. Follows same-origin redirects (a renamed repo) but not the one to the
   * CDN: the hub's headers on that redirect describe the real file.
   */
  async fileInfo(repo: string, revision: string, file: string): Promise<RemoteFileInfo> {
    const what = `hf:${repo}/${file}@${revision}`;
    let url = this.resolveUrl(repo, revision, file);
    const res = await this.withRetries(`metadata of ${what}`, async () => {
      for (let hops = 0; hops < 10; hops++) {
        const r = await this.request(url, { method: 'HEAD' });
        const location = r.headers.get('location');
        if (r.status >= 300 && r.status < 400 && location && !r.headers.get('x-linked-etag')) {
          const next = new URL(location, url);
          if (next.origin === this.origin) {
            url = next.href;
            continue;
          }
        }
        if (r.status >= 400) throw await this.statusError(r, what, url);
        return r;
      }
      throw new HubError(`${what}: more than 10 redirects from ${url}`);
    });
    const etagHeader = res.headers.get('x-linked-etag') ?? res.headers.get('etag');
    if (!etagHeader) throw new HubError(`${what}: the hub sent no ETag for ${url}`);
    const sizeHeader = res.headers.get('x-linked-size') ?? res.headers.get('content-length');
    const size = sizeHeader !== null && /^\d+$/.test(sizeHeader.trim()) ? Number(sizeHeader) : NaN;
    if (!Number.isSafeInteger(size)) throw new HubError(`${what}: the hub sent no file size (X-Linked-Size / Content-Length) for ${url}`);
    const commit = res.headers.get('x-repo-commit') ?? undefined;
    return { etag: normalizeEtag(etagHeader), size, commit: commit && /^[0-9a-f]{40}$/.test(commit) ? commit : undefined };
  }

  /** Runs `attempt`, retrying network errors, 5xx and 429 with exponential backoff. */
  private async withRetries<T>(what: string, attempt: () => Promise<T>): Promise<T> {
    for (let failures = 0; ; ) {
      try {
        return await attempt();
      } catch (err) {
        if (!(err instanceof HubNetworkError || err instanceof HubRetryableError) || ++failures > this.retries) throw err;
        const delayMs = Math.min(30_000, this.retryDelayMs * 2 ** (failures - 1));
        this.emit({ type: 'retry', file: what, attempt: failures, delayMs, reason: err.message, resumeFrom: 0 });
        await sleep(delayMs);
      }
    }
  }

  /**
   * Downloads a file into `partPath`, resuming from what the part already holds (`Range: bytes=N-`), and
   * verifies its size and hash (sha256 for LFS files, git blob sha1 for small ones) before returning its
   * sha256. A wrong hash deletes the part and throws HubChecksumError naming the file and both hashes.
   */
  async download(repo: string, revision: string, file: string, info: RemoteFileInfo, partPath: string): Promise<string> {
    const what = `hf:${repo}/${file}@${revision}`;
    const url = this.resolveUrl(repo, revision, file);
    const expected = digestFromEtag(info.etag);
    let failures = 0;
    let restarts = 0;
    let started = false;
    for (;;) {
      if (restarts > 3) throw new HubError(`${what}: the server keeps answering ranges inconsistently (${restarts} restarts from byte 0 at ${url})`);
      const have = await partSize(partPath);
      if (have > info.size) {
        restarts++;
        await rm(partPath, { force: true });
        this.emit({ type: 'restart', file, reason: `the partial file holds ${have} bytes, more than the file's ${info.size}` });
        continue;
      }
      if (!started) {
        this.emit({ type: 'start', file, size: info.size, resumeFrom: have });
        started = true;
      }
      let received = 0;
      try {
        if (have === info.size && info.size > 0) return await this.verify(partPath, info, expected, what);
        const outcome = await this.fetchInto(url, what, file, partPath, have, info.size, (n) => {
          received += n;
        });
        if (outcome === 'complete') return await this.verify(partPath, info, expected, what);
        // 'restart': the server refused the range or sent another one; the part was deleted: go again.
        restarts++;
      } catch (err) {
        if (!(err instanceof HubNetworkError || err instanceof HubRetryableError)) throw err;
        if (received > 0) failures = 0;
        if (++failures > this.retries) throw new HubError(`${what}: download failed after ${this.retries} retries: ${err.message}`, { cause: err });
        const delayMs = Math.min(30_000, this.retryDelayMs * 2 ** (failures - 1));
        this.emit({ type: 'retry', file, attempt: failures, delayMs, reason: err.message, resumeFrom: await partSize(partPath) });
        await sleep(delayMs);
      }
    }
  }

  /**
   * One GET of the file from byte `have` on, appended to the part. 'complete' when the part now holds
   * `size` bytes (or the server says 416 for a part of exactly that size), 'restart' when the part was reset.
   */
  private async fetchInto(url: string, what: string, file: string, partPath: string, have: number, size: number, onBytes: (n: number) => void): Promise<'complete' | 'restart'> {
    const abort = new AbortController();
    let stalled = false;
    let timer = setTimeout(() => ((stalled = true), abort.abort()), this.stallTimeoutMs);
    const touch = () => {
      clearTimeout(timer);
      timer = setTimeout(() => ((stalled = true), abort.abort()), this.stallTimeoutMs);
    };
    let handle: FileHandle | undefined;
    try {
      let res: Response | undefined;
      let target = url;
      for (let hops = 0; hops < 10 && !res; hops++) {
        const r = await this.request(target, { method: 'GET', headers: have > 0 ? { Range: `bytes=${have}-` } : {}, signal: abort.signal });
        const location = r.headers.get('location');
        if (r.status >= 300 && r.status < 400 && location) {
          await r.body?.cancel().catch(() => {});
          target = new URL(location, target).href;
          continue;
        }
        res = r;
      }
      if (!res) throw new HubError(`${what}: more than 10 redirects from ${url}`);
      touch();
      if (res.status === 416) {
        await res.body?.cancel().catch(() => {});
        // Range not satisfiable: our part is complete (verify it) or stale (start over).
        if (have === size) return 'complete';
        await rm(partPath, { force: true });
        this.emit({ type: 'restart', file, reason: `the server refused bytes=${have}- (416)` });
        return 'restart';
      }
      if (res.status !== 200 && res.status !== 206) throw await this.statusError(res, what, target);
      let offset = have;
      if (res.status === 200 && have > 0) {
        this.emit({ type: 'restart', file, reason: 'the server ignored the Range request (200): downloading from the start' });
        offset = 0;
      } else if (res.status === 206) {
        const m = /^bytes (\d+)-\d+\/(\d+|\*)$/.exec(res.headers.get('content-range') ?? '');
        if (!m || Number(m[1]) !== have) {
          await res.body?.cancel().catch(() => {});
          await rm(partPath, { force: true });
          this.emit({ type: 'restart', file, reason: `the server sent range '${res.headers.get('content-range')}' for bytes=${have}-` });
          return 'restart';
        }
      }
      handle = await open(partPath, offset === 0 ? 'w' : 'a');
      if (!res.body) throw new HubNetworkError(`GET ${target}: empty response body`);
      let done = offset;
      const reader = res.body.getReader();
      for (;;) {
        let chunk: ReadableStreamReadResult<Uint8Array>;
        try {
          chunk = await reader.read();
        } catch (err) {
          throw new HubNetworkError(`GET ${target}: ${stalled ? `no data for ${this.stallTimeoutMs} ms` : `connection lost after ${done} of ${size} bytes (${describeNetworkError(err)})`}`, { cause: err });
        }
        if (chunk.done) break;
        touch();
        if (done + chunk.value.length > size) {
          await reader.cancel().catch(() => {});
          await handle.close();
          handle = undefined;
          await rm(partPath, { force: true });
          throw new HubError(`${what}: the server sent more than the ${size} bytes the hub announced (from ${target}); the partial file was deleted`);
        }
        await handle.write(chunk.value);
        done += chunk.value.length;
        onBytes(chunk.value.length);
        this.emit({ type: 'progress', file, done, size });
      }
      if (done < size) throw new HubNetworkError(`GET ${target}: the response ended after ${done} of ${size} bytes`);
      return 'complete';
    } catch (err) {
      if (stalled && (err instanceof HubNetworkError || !(err instanceof HubError))) throw new HubNetworkError(`GET ${url}: no data for ${this.stallTimeoutMs} ms`, { cause: err });
      throw err;
    } finally {
      clearTimeout(timer);
      await handle?.close();
    }
  }

  /** Hashes the finished part; on a mismatch deletes it and throws. Returns the sha256. */
  private async verify(partPath: string, info: RemoteFileInfo, expected: ExpectedDigest, what: string): Promise<string> {
    const size = await partSize(partPath);
    if (size !== info.size) throw new HubNetworkError(`${what}: the partial file holds ${size} bytes, expected ${info.size}`);
    const sha256 = createHash('sha256');
    const sha1 = expected.kind === 'git-sha1' ? createHash('sha1').update(`blob ${size}\0`) : undefined;
    await hashFile(partPath, [sha256, ...(sha1 ? [sha1] : [])]);
    const sha256Hex = sha256.digest('hex');
    const got = expected.kind === 'git-sha1' ? sha1!.digest('hex') : sha256Hex;
    if (expected.kind !== 'none' && got !== expected.hex) {
      await rm(partPath, { force: true });
      const name = expected.kind === 'sha256' ? 'sha256' : 'git blob sha1';
      throw new HubChecksumError(`${what}: ${name} mismatch: the hub says ${expected.hex}, the download has ${got}; the partial file was deleted`);
    }
    return sha256Hex;
  }
}

/** A connection failure (refused, reset, cut, stalled): worth a retry. */
export class HubNetworkError extends HubError {}

/** A server-side failure (5xx, 429): worth a retry. */
class HubRetryableError extends HubError {}

/** fetch says 'fetch failed' / 'terminated'; the reason (ECONNREFUSED, ECONNRESET, ...) is in its cause chain. */
function describeNetworkError(err: unknown): string {
  const parts: string[] = [];
  for (let e: unknown = err, depth = 0; e instanceof Error && depth < 4; e = e.cause, depth++) {
    const first = e instanceof AggregateError && e.errors[0] instanceof Error ? e.errors[0] : e;
    const code = (first as NodeJS.ErrnoException).code;
    parts.push(code ? `${code} (${first.message})` : first.message);
  }
  return parts.join(': ') || String(err);
}

async function partSize(path: string): Promise<number> {
  try {
    return (await stat(path)).size;
  } catch {
    return 0;
  }
}

function hashFile(path: string, hashes: Hash[]): Promise<void> {
  return new Promise((resolve, reject) => {
    createReadStream(path, { highWaterMark: 1 << 20 })
      .on('data', (d) => {
        for (const h of hashes) h.update(d);
      })
      .on('error', reject)
      .on('end', () => resolve());
  });
}

/** Creates `lockPath` for this process; an existing lock of a live process is an error naming it. */
export async function acquireLock(lockPath: string, what: string): Promise<() => Promise<void>> {
  for (let tries = 0; tries < 2; tries++) {
    try {
      await writeFile(lockPath, String(process.pid), { flag: 'wx' });
      return () => rm(lockPath, { force: true });
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      const pid = Number((await readFile(lockPath, 'utf8').catch(() => '')).trim());
      if (Number.isInteger(pid) && pid > 0 && pid !== process.pid && processAlive(pid))
        throw new HubError(`${what} is being downloaded by another process (pid ${pid}, lock ${lockPath}); wait for it, or delete the lock if that process is not bitllm`);
      await rm(lockPath, { force: true }); // stale: its process is gone
    }
  }
  throw new HubError(`${what}: could not take the download lock ${lockPath}`);
}

function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}
