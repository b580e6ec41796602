// `pull`: a hub reference -> a verified file in the cache. Also the resolver that `run`, `chat`, `bench`,
// `inspect`, `perplexity` (and later `serve`) use for model arguments that name a hub repo.
import { mkdir, rename } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { dirname } from 'node:path';

import { HubCache, HubNotCachedError, hubCacheRoot, isGgufName } from './cache.js';
import { type HubClientOptions, HubClient, HubNetworkError, acquireLock } from './client.js';
import { type HubRef, HubError, formatHubRef, isCommitHash, isHubRef, parseHubRef } from './ref.js';

export interface PullOptions extends HubClientOptions {
  /** Resolve from the cache only; never touch the network (default: HF_HUB_OFFLINE=1). */
  offline?: boolean;
  /** Cache root (default: BITLLM_CACHE, else $XDG_CACHE_HOME/bitllm, else ~/.cache/bitllm). */
  cacheDir?: string;
}

export interface PullResult {
  /** The file in the cache. */
  path: string;
  repo: string;
  file: string;
  /** The revision asked for (branch, tag or commit). */
  revision: string;
  /** The commit it resolved to. */
  commit: string;
  size: number;
  sha256: string;
  /** True when the file was already in the cache (nothing downloaded). */
  cached: boolean;
}

function envOffline(): boolean {
  const v = process.env.HF_HUB_OFFLINE;
  return v !== undefined && ['1', 'true', 'yes', 'on'].includes(v.toLowerCase());
}

/** The one .gguf of a listing; several or none is an error that says what to do. */
function chooseGguf(ref: HubRef, files: Array<{ path: string; size: number | undefined }>): string {
  const ggufs = files.filter((f) => isGgufName(f.path));
  const text = formatHubRef(ref);
  if (ggufs.length === 1) return ggufs[0]!.path;
  if (ggufs.length > 1) {
    const list = ggufs.map((f) => `  hf:${ref.repo}/${f.path}${ref.revisionGiven ? `@${ref.revision}` : ''}${f.size !== undefined ? `  (${(f.size / 1e6).toFixed(1)} MB)` : ''}`).join('\n');
    throw new HubError(`${text} has ${ggufs.length} .gguf files; name one:\n${list}`);
  }
  const checkpoint = files.some((f) => /\.(safetensors|bin)$/.test(f.path));
  throw new HubError(`${text} has no .gguf file${checkpoint ? ' (it holds a safetensors / PyTorch checkpoint: pull its files and convert them with `bitllm convert HF_DIR -o model.gguf`)' : ''}; files: ${files.map((f) => f.path).join(', ') || 'none'}`);
}

/**
 * Downloads `hf:owner/repo[/file][@revision]` into the cache (or finds it there) and returns where it is.
 * Without a file, the repo must hold exactly one .gguf. Offline, the reference is resolved from the cache
 * alone; online, a network failure falls back to a cached copy when there is one (event 'offline-fallback').
 */
export async function pullModel(reference: string | HubRef, options: PullOptions = {}): Promise<PullResult> {
  const ref = typeof reference === 'string' ? parseHubRef(reference) : reference;
  const cache = new HubCache(options.cacheDir ?? hubCacheRoot());
  const fromCache = (): PullResult => {
    const hit = cache.resolve(ref);
    return { path: hit.path, repo: ref.repo, file: hit.file, revision: ref.revision, commit: hit.commit, size: hit.size, sha256: hit.sha256, cached: true };
  };
  if (options.offline ?? envOffline()) return fromCache();
  const client = new HubClient(options);
  try {
    return await pullOnline(ref, cache, client);
  } catch (err) {
    if (!(err instanceof HubNetworkError)) throw err;
    let cached: PullResult;
    try {
      cached = fromCache();
    } catch {
      throw err;
    }
    options.onEvent?.({ type: 'offline-fallback', reason: err.message });
    return cached;
  }
}

async function pullOnline(ref: HubRef, cache: HubCache, client: HubClient): Promise<PullResult> {
  let file = ref.file;
  let listingCommit: string | undefined;
  if (file === undefined) {
    const listing = await client.listFiles(ref.repo, ref.revision);
    file = chooseGguf(ref, listing.files);
    listingCommit = listing.commit;
  }
  const info = await client.fileInfo(ref.repo, ref.revision, file);
  const commit = info.commit ?? listingCommit ?? (isCommitHash(ref.revision) ? ref.revision : undefined);
  if (commit === undefined)
    throw new HubError(`${formatHubRef({ ...ref, file })}: the hub did not say which commit '${ref.revision}' is (no X-Repo-Commit header from ${client.resolveUrl(ref.repo, ref.revision, file)})`);
  const result = (path: string, size: number, sha256: string, cached: boolean): PullResult => ({ path, repo: ref.repo, file: file!, revision: ref.revision, commit, size, sha256, cached });

  const hit = cache.lookup(ref.repo, commit, file);
  if (hit && hit.etag === info.etag && hit.size === info.size) {
    cache.writeRef(ref.repo, ref.revision, commit);
    return result(hit.path, hit.size, hit.sha256, true);
  }
  const finalPath = cache.filePath(ref.repo, commit, file);
  const partPath = `${finalPath}.part`;
  await mkdir(dirname(finalPath), { recursive: true });
  const release = await acquireLock(`${partPath}.lock`, formatHubRef({ ...ref, file }));
  try {
    const sha256 = await client.download(ref.repo, ref.revision, file, info, partPath);
    await rename(partPath, finalPath);
    cache.writeMeta(ref.repo, commit, file, { size: info.size, sha256, etag: info.etag });
    cache.writeRef(ref.repo, ref.revision, commit);
    return result(finalPath, info.size, sha256, false);
  } finally {
    await release();
  }
}

/**
 * Resolves a model argument without the network: an existing path is returned as is; `hf:owner/repo[/file][@rev]`
 * is looked up in the cache (HubNotCachedError when it is not there: a model must be pulled first, this never
 * downloads); a bare `owner/repo[/file][@rev]` likewise, except that a name the cache does not hold returns
 * undefined, so the caller reports a missing file its own way.
 */
export function resolveModelPath(text: string, options: { cacheDir?: string } = {}): string | undefined {
  if (!isHubRef(text) && (existsSync(text) || !looksLikeRepoName(text))) return existsSync(text) ? text : undefined;
  const cache = new HubCache(options.cacheDir ?? hubCacheRoot());
  try {
    return cache.resolve(parseHubRef(text)).path;
  } catch (err) {
    if (err instanceof HubNotCachedError && !isHubRef(text)) return undefined;
    throw err;
  }
}

/** `owner/repo`, `owner/repo/file.gguf`, with an optional `@rev`: a bare name the cache may know. */
export function looksLikeRepoName(text: string): boolean {
  if (text.startsWith('/') || text.startsWith('.') || text.includes('\\')) return false;
  try {
    parseHubRef(text);
    return true;
  } catch {
    return false;
  }
}
