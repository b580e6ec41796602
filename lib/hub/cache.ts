// The download cache. Layout under the cache root (BITLLM_CACHE, else $XDG_CACHE_HOME/bitllm, else
// ~/.cache/bitllm):
//
//   hub/{owner}--{repo}/refs/{revision}               text: the commit hash that branch/tag resolved to last
//   hub/{owner}--{repo}/snapshots/{commit}/{file}       the file as the hub served it at that commit
//   hub/{owner}--{repo}/snapshots/{commit}/{file}.part  an unfinished download (resumed by the next pull)
//   hub/{owner}--{repo}/meta/{commit}/{file}.json       {size, sha256, etag} of a finished file
//
// Revisions stay apart (one folder per commit); a ref file lets --offline resolve `main` without the network.
// Every write is a temp file renamed into place, so a reader never sees half a ref or half a model.
import { existsSync, mkdirSync, readFileSync, readdirSync, renameSync, statSync, writeFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { dirname, join } from 'node:path';

import { type HubRef, HubError, formatHubRef, isCommitHash } from './ref.js';

/** The reference is not (or not wholly) in the cache. */
export class HubNotCachedError extends HubError {}

/** The cache root: BITLLM_CACHE, else $XDG_CACHE_HOME/bitllm, else ~/.cache/bitllm. */
export function hubCacheRoot(env: NodeJS.ProcessEnv = process.env): string {
  if (env.BITLLM_CACHE) return env.BITLLM_CACHE;
  if (env.XDG_CACHE_HOME) return join(env.XDG_CACHE_HOME, 'bitllm');
  return join(homedir(), '.cache', 'bitllm');
}

/** Metadata kept beside a finished file. */
export interface CachedFileMeta {
  size: number;
  /** Hex sha256 of the file's bytes. */
  sha256: string;
  /** The hub's etag for it (sha256 for LFS files, the git blob sha1 otherwise). */
  etag: string;
}

/** A finished file in the cache. */
export interface CachedFile extends CachedFileMeta {
  path: string;
  repo: string;
  file: string;
  commit: string;
}

export class HubCache {
  constructor(readonly root: string) {}

  repoDir(repo: string): string {
    return join(this.root, 'hub', repo.replace('/', '--'));
  }

  snapshotDir(repo: string, commit: string): string {
    return join(this.repoDir(repo), 'snapshots', commit);
  }

  filePath(repo: string, commit: string, file: string): string {
    return join(this.snapshotDir(repo, commit), ...file.split('/'));
  }

  private metaPath(repo: string, commit: string, file: string): string {
    return join(this.repoDir(repo), 'meta', commit, ...`${file}.json`.split('/'));
  }

  private refPath(repo: string, revision: string): string {
    return join(this.repoDir(repo), 'refs', encodeURIComponent(revision));
  }

  /** The commit a branch or tag resolved to at the last pull (a commit hash resolves to itself). */
  readRef(repo: string, revision: string): string | undefined {
    if (isCommitHash(revision)) return revision;
    try {
      const commit = readFileSync(this.refPath(repo, revision), 'utf8').trim();
      return isCommitHash(commit) ? commit : undefined;
    } catch {
      return undefined;
    }
  }

  writeRef(repo: string, revision: string, commit: string): void {
    if (revision === commit) return;
    writeAtomic(this.refPath(repo, revision), commit + '\n');
  }

  readMeta(repo: string, commit: string, file: string): CachedFileMeta | undefined {
    try {
      const m = JSON.parse(readFileSync(this.metaPath(repo, commit, file), 'utf8')) as Partial<CachedFileMeta>;
      if (typeof m.size === 'number' && typeof m.sha256 === 'string' && typeof m.etag === 'string') return { size: m.size, sha256: m.sha256, etag: m.etag };
    } catch {
      // no metadata: not a finished file
    }
    return undefined;
  }

  writeMeta(repo: string, commit: string, file: string, meta: CachedFileMeta): void {
    writeAtomic(this.metaPath(repo, commit, file), JSON.stringify(meta) + '\n');
  }

  /** A finished file: present with its metadata, and of the recorded size. */
  lookup(repo: string, commit: string, file: string): CachedFile | undefined {
    const path = this.filePath(repo, commit, file);
    const meta = this.readMeta(repo, commit, file);
    if (!meta) return undefined;
    try {
      if (statSync(path).size !== meta.size) return undefined;
    } catch {
      return undefined;
    }
    return { path, repo, file, commit, ...meta };
  }

  /** Finished .gguf files of one snapshot (paths relative to the repo root), sorted. */
  ggufFiles(repo: string, commit: string): string[] {
    const base = this.snapshotDir(repo, commit);
    const out: string[] = [];
    const walk = (dir: string, prefix: string) => {
      let entries;
      try {
        entries = readdirSync(dir, { withFileTypes: true });
      } catch {
        return;
      }
      for (const e of entries) {
        const rel = prefix + e.name;
        if (e.isDirectory()) walk(join(dir, e.name), rel + '/');
        else if (e.isFile() && isGgufName(e.name) && this.lookup(repo, commit, rel)) out.push(rel);
      }
    };
    walk(base, '');
    return out.sort();
  }

  /**
   * Resolves a reference from the cache alone: its revision through the refs map, its file as named or the
   * snapshot's one .gguf. Throws a HubError that says what is missing and what to run.
   */
  resolve(ref: HubRef): CachedFile {
    const text = formatHubRef(ref);
    const commit = this.readRef(ref.repo, ref.revision);
    const pullHint = `run 'bitllm pull ${text}' first`;
    if (commit === undefined || !existsSync(this.snapshotDir(ref.repo, commit)))
      throw new HubNotCachedError(`${text} is not in the cache (${this.repoDir(ref.repo)}): ${pullHint}`);
    if (ref.file !== undefined) {
      const hit = this.lookup(ref.repo, commit, ref.file);
      if (!hit) throw new HubNotCachedError(`${text}: file '${ref.file}' of commit ${commit} is not in the cache (${this.snapshotDir(ref.repo, commit)}): ${pullHint}`);
      return hit;
    }
    const ggufs = this.ggufFiles(ref.repo, commit);
    if (ggufs.length === 0) throw new HubNotCachedError(`${text}: no finished .gguf file in the cache for commit ${commit}: ${pullHint}`);
    if (ggufs.length > 1)
      throw new HubError(`${text}: the cache holds several .gguf files of commit ${commit}; name one as hf:${ref.repo}/FILE:\n  ${ggufs.join('\n  ')}`);
    return this.lookup(ref.repo, commit, ggufs[0]!)!;
  }
}

export function isGgufName(name: string): boolean {
  return name.toLowerCase().endsWith('.gguf');
}

/** Writes a small file through a temp file and a rename (readers see the old or the new text, never half). */
export function writeAtomic(path: string, text: string): void {
  mkdirSync(dirname(path), { recursive: true });
  const tmp = `${path}.${process.pid}.tmp`;
  writeFileSync(tmp, text);
  renameSync(tmp, path);
}
