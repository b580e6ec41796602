// Hugging Face hub model references: `hf:owner/repo[/path/to/file][@revision]`, or the same without the
// `hf:` prefix where the caller has already ruled out a local path.
import { BitllmError } from '../errors.js';

/** A reference that does not parse, or a hub / cache failure; the message names the repo, file or URL. */
export class HubError extends BitllmError {}

export interface HubRef {
  /** `owner/repo`. */
  repo: string;
  /** A path inside the repo (`dir/model.gguf`), or undefined: choose the repo's one .gguf file. */
  file: string | undefined;
  /** Branch, tag or commit hash; `main` when the reference names none. */
  revision: string;
  /** Whether the reference named the revision (`@rev`). */
  revisionGiven: boolean;
}

export const HUB_PREFIX = 'hf:';
export const DEFAULT_REVISION = 'main';

// Hub repo ids: letters, digits, '-', '_', '.'; no '--' or '..' (the hub forbids both; '--' is our cache separator).
const NAME = /^[A-Za-z0-9][A-Za-z0-9._-]*$/;

function checkName(part: string, what: string, text: string): void {
  if (!NAME.test(part) || part.includes('--') || part.includes('..') || part.length > 96)
    throw new HubError(`'${text}': ${what} '${part}' is not a valid hub name (letters, digits, '-', '_', '.'; no '--' or '..')`);
}

/** Whether `text` is written as a hub reference (`hf:` prefix). */
export function isHubRef(text: string): boolean {
  return text.startsWith(HUB_PREFIX);
}

/**
 * Parses `hf:owner/repo[/file][@revision]` (the `hf:` prefix is optional). The revision is everything after
 * the last '@' (tags and `refs/pr/1` may hold '/'); file paths may not hold '..' segments.
 */
export function parseHubRef(text: string): HubRef {
  const body = isHubRef(text) ? text.slice(HUB_PREFIX.length) : text;
  const at = body.lastIndexOf('@');
  const path = at >= 0 ? body.slice(0, at) : body;
  const revision = at >= 0 ? body.slice(at + 1) : DEFAULT_REVISION;
  if (at >= 0 && (revision === '' || /[\s\0]/.test(revision) || revision.split('/').some((s) => s === '' || s === '.' || s === '..')))
    throw new HubError(`'${text}': revision '${revision}' is not a branch, tag or commit`);
  const parts = path.split('/');
  if (parts.length < 2 || parts[0] === '' || parts[1] === '')
    throw new HubError(`'${text}' is not a hub reference: expected hf:OWNER/REPO[/FILE][@REVISION]`);
  const [owner, name, ...fileParts] = parts as [string, string, ...string[]];
  checkName(owner, 'owner', text);
  checkName(name, 'repo', text);
  let file: string | undefined;
  if (fileParts.length > 0) {
    if (fileParts.some((s) => s === '' || s === '.' || s === '..' || /[\0\\]/.test(s)))
      throw new HubError(`'${text}': file '${fileParts.join('/')}' is not a relative path inside the repo`);
    file = fileParts.join('/');
  }
  return { repo: `${owner}/${name}`, file, revision, revisionGiven: at >= 0 };
}

/** The canonical text of a reference (`hf:owner/repo/file@rev`), for messages. */
export function formatHubRef(ref: { repo: string; file?: string | undefined; revision: string }): string {
  return `${HUB_PREFIX}${ref.repo}${ref.file !== undefined ? `/${ref.file}` : ''}${ref.revision !== DEFAULT_REVISION ? `@${ref.revision}` : ''}`;
}

/** A full 40-hex git commit hash. */
export function isCommitHash(revision: string): boolean {
  return /^[0-9a-f]{40}$/.test(revision);
}
