// A local stand-in for the Hugging Face hub (node:http), with the URL layout and behaviour that lib/hub
// relies on (docs/hub.md lists the sources):
//   GET  /api/models/{owner}/{repo}/revision/{rev}   {id, sha, siblings: [{rfilename, size, blobId, lfs?}]}
//   HEAD/GET /{owner}/{repo}/resolve/{rev}/{file}    LFS files (.gguf, .safetensors): 302 to the "CDN" server (another
//        origin) with X-Linked-Etag (sha256) and X-Linked-Size; small files: 200 with ETag = git blob sha1. Both
//        carry X-Repo-Commit. Errors carry X-Error-Code (RepoNotFound 401 for a private repo without its token,
//        RevisionNotFound / EntryNotFound 404).
//   GET  (CDN) /blobs/{sha256}   Range: bytes=N- -> 206 + Content-Range, 416 past the end.
// Faults to inject per blob: cut the connection after N bytes, stall after N bytes, ignore Range (200),
// refuse a range (416), serve corrupted bytes.
import { createHash } from 'node:crypto';
import { type IncomingMessage, type Server, type ServerResponse, createServer } from 'node:http';
import type { AddressInfo } from 'node:net';

export interface MockRepo {
  /** Commit hash -> files (path -> bytes). */
  commits: Map<string, Map<string, Buffer>>;
  /** Branch / tag -> commit hash. */
  refs: Map<string, string>;
  /** When set, requests need `Authorization: Bearer <token>` (else 401 RepoNotFound). */
  token?: string;
}

export interface BlobFaults {
  /** Destroy the socket after this many body bytes, for the next `times` GETs. */
  cutAfter?: { bytes: number; times: number };
  /** Answer a Range request with the whole file (200), for the next `times` GETs. */
  ignoreRange?: number;
  /** Answer a Range request with 416, for the next `times` GETs. */
  refuseRange?: number;
  /** Send this many body bytes, then nothing (the connection stays open), for the next `times` GETs. */
  stallAfter?: { bytes: number; times: number };
  /** Serve the file with one byte flipped (the etag stays the true sha256). */
  corrupt?: boolean;
}

export interface LoggedRequest {
  server: 'hub' | 'cdn';
  method: string;
  url: string;
  range: string | undefined;
  authorization: string | undefined;
  status: number;
}

export const sha256Hex = (b: Buffer) => createHash('sha256').update(b).digest('hex');
export const gitBlobSha1 = (b: Buffer) => createHash('sha1').update(`blob ${b.length}\0`).update(b).digest('hex');
const isLfs = (path: string) => /\.(gguf|safetensors|bin)$/.test(path);

export class MockHub {
  readonly repos = new Map<string, MockRepo>();
  readonly faults = new Map<string, BlobFaults>(); // by sha256
  readonly log: LoggedRequest[] = [];
  private readonly blobs = new Map<string, Buffer>();
  private hub!: Server;
  private cdn!: Server;
  endpoint = '';
  cdnOrigin = '';

  /** Adds a repo; `commits` lists (commit, files) oldest first; refs name commits. */
  addRepo(repo: string, commits: Array<[string, Record<string, Buffer>]>, refs: Record<string, string>, token?: string): void {
    const r: MockRepo = { commits: new Map(), refs: new Map(Object.entries(refs)), ...(token && { token }) };
    for (const [commit, files] of commits) {
      r.commits.set(commit, new Map(Object.entries(files)));
      for (const bytes of Object.values(files)) this.blobs.set(sha256Hex(bytes), bytes);
    }
    this.repos.set(repo, r);
  }

  async start(): Promise<void> {
    this.hub = createServer((req, res) => this.handleHub(req, res));
    this.cdn = createServer((req, res) => this.handleCdn(req, res));
    await Promise.all([listen(this.hub), listen(this.cdn)]);
    this.endpoint = `http://127.0.0.1:${(this.hub.address() as AddressInfo).port}`;
    this.cdnOrigin = `http://127.0.0.1:${(this.cdn.address() as AddressInfo).port}`;
  }

  async stop(): Promise<void> {
    for (const s of [this.hub, this.cdn]) {
      s.closeAllConnections();
      await new Promise<void>((r) => s.close(() => r()));
    }
  }

  requests(server: 'hub' | 'cdn', method?: string): LoggedRequest[] {
    return this.log.filter((l) => l.server === server && (method === undefined || l.method === method));
  }

  private record(server: 'hub' | 'cdn', req: IncomingMessage, status: number): void {
    this.log.push({ server, method: req.method ?? '', url: req.url ?? '', range: req.headers.range, authorization: req.headers.authorization, status });
  }

  private fail(req: IncomingMessage, res: ServerResponse, status: number, code: string): void {
    this.record('hub', req, status);
    res.writeHead(status, { 'X-Error-Code': code, 'Content-Type': 'text/plain' });
    res.end(req.method === 'HEAD' ? undefined : `${code}\n`);
  }

  private handleHub(req: IncomingMessage, res: ServerResponse): void {
    const url = new URL(req.url ?? '/', 'http://x');
    const api = /^\/api\/models\/([^/]+\/[^/]+)\/revision\/([^/]+)$/.exec(url.pathname);
    const resolve = /^\/([^/]+\/[^/]+)\/resolve\/([^/]+)\/(.+)$/.exec(url.pathname);
    const m = api ?? resolve;
    if (!m) return this.fail(req, res, 404, 'RepoNotFound');
    const repo = this.repos.get(m[1]!);
    if (!repo || (repo.token && req.headers.authorization !== `Bearer ${repo.token}`)) return this.fail(req, res, 401, 'RepoNotFound');
    const revision = decodeURIComponent(m[2]!);
    const commit = repo.commits.has(revision) ? revision : repo.refs.get(revision);
    const files = commit !== undefined ? repo.commits.get(commit) : undefined;
    if (commit === undefined || !files) return this.fail(req, res, 404, 'RevisionNotFound');
    if (api) {
      const siblings = [...files].map(([path, bytes]) => ({
        rfilename: path, size: bytes.length, blobId: gitBlobSha1(bytes),
        ...(isLfs(path) && { lfs: { sha256: sha256Hex(bytes), size: bytes.length, pointerSize: 130 } }),
      }));
      this.record('hub', req, 200);
      res.writeHead(200, { 'Content-Type': 'application/json' });
      res.end(JSON.stringify({ id: m[1], sha: commit, siblings }));
      return;
    }
    const path = m[3]!.split('/').map(decodeURIComponent).join('/');
    const bytes = files.get(path);
    if (!bytes) return this.fail(req, res, 404, 'EntryNotFound');
    if (isLfs(path)) {
      const sha = sha256Hex(bytes);
      this.record('hub', req, 302);
      res.writeHead(302, {
        Location: `${this.cdnOrigin}/blobs/${sha}?signed=1`, 'X-Repo-Commit': commit, 'X-Linked-Etag': `"${sha}"`,
        'X-Linked-Size': String(bytes.length), ETag: '"redirect-etag"', 'Content-Length': '0',
      });
      res.end();
      return;
    }
    serveBytes(req, res, bytes, { 'X-Repo-Commit': commit, ETag: `"${gitBlobSha1(bytes)}"` }, {}, (status) => this.record('hub', req, status));
  }

  private handleCdn(req: IncomingMessage, res: ServerResponse): void {
    const m = /^\/blobs\/([0-9a-f]{64})$/.exec(new URL(req.url ?? '/', 'http://x').pathname);
    const bytes = m ? this.blobs.get(m[1]!) : undefined;
    if (!m || !bytes) {
      this.record('cdn', req, 404);
      res.writeHead(404).end();
      return;
    }
    const faults = this.faults.get(m[1]!) ?? {};
    serveBytes(req, res, bytes, { ETag: `"${m[1]}"` }, faults, (status) => this.record('cdn', req, status));
  }
}

function listen(server: Server): Promise<void> {
  return new Promise((r) => server.listen(0, '127.0.0.1', () => r()));
}

/** Serves `bytes` with Range support and the faults asked for (each consumed as it fires). */
function serveBytes(req: IncomingMessage, res: ServerResponse, bytes: Buffer, headers: Record<string, string>, faults: BlobFaults, record: (status: number) => void): void {
  const body = faults.corrupt ? Buffer.from(bytes) : bytes;
  if (faults.corrupt) body[body.length >> 1] ^= 0x40;
  const range = /^bytes=(\d+)-$/.exec(req.headers.range ?? '');
  let start = 0;
  let status = 200;
  const h: Record<string, string> = { ...headers, 'Accept-Ranges': 'bytes', 'Content-Type': 'application/octet-stream' };
  if (range && req.method === 'GET') {
    if (faults.refuseRange) {
      faults.refuseRange--;
      status = 416;
    } else if (faults.ignoreRange) {
      faults.ignoreRange--;
    } else {
      start = Number(range[1]);
      status = start >= body.length ? 416 : 206;
    }
  }
  if (status === 416) {
    record(416);
    res.writeHead(416, { ...h, 'Content-Range': `bytes */${body.length}` }).end();
    return;
  }
  const part = body.subarray(start);
  if (status === 206) h['Content-Range'] = `bytes ${start}-${body.length - 1}/${body.length}`;
  h['Content-Length'] = String(part.length);
  record(status);
  res.writeHead(status, h);
  if (req.method === 'HEAD') {
    res.end();
    return;
  }
  if (faults.stallAfter && faults.stallAfter.times > 0 && faults.stallAfter.bytes < part.length) {
    faults.stallAfter.times--;
    res.write(part.subarray(0, faults.stallAfter.bytes));
    return;
  }
  if (faults.cutAfter && faults.cutAfter.times > 0 && faults.cutAfter.bytes < part.length) {
    faults.cutAfter.times--;
    res.write(part.subarray(0, faults.cutAfter.bytes), () => setTimeout(() => res.socket?.destroy(), 20));
    return;
  }
  res.end(part);
}
