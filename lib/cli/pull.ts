// `bitllm pull hf:owner/repo[/file][@revision]`: download a model from the Hugging Face hub into the cache
// (lib/hub, docs/hub.md). On a TTY: a progress bar on stderr and the cached path on stdout. Otherwise (or
// with --json): JSON lines on stdout, only notices (retry, restart, offline fallback) and a final line
// {"event":"done","path","size","sha256","commit",...}.
import { basename } from 'node:path';

import { type PullEvent, parseHubRef, pullModel } from '../hub/index.js';
import { hubCacheRoot } from '../hub/cache.js';
import { UsageError } from './args.js';
import { type CommandSpec, CommandLine } from './run.js';

export const PULL_USAGE = `usage: bitllm pull hf:OWNER/REPO[/FILE][@REVISION] [--offline] [--json]
      FILE                       a file in the repo (default: the repo's only .gguf file)
      REVISION                   branch, tag or commit (default: main)
      --offline                  resolve from the cache only (also HF_HUB_OFFLINE=1)
      --json                     JSON lines on stdout (the default when stderr is not a terminal)
environment:
      HF_TOKEN                   access token for private and gated repos
      HF_ENDPOINT                hub URL (default https://huggingface.co)
      BITLLM_CACHE               cache folder (default $XDG_CACHE_HOME/bitllm or ~/.cache/bitllm; now ${hubCacheRoot()})
Pulled models run by name: bitllm run OWNER/REPO -p TEXT (or hf:OWNER/REPO[/FILE][@REVISION]).
`;

const PULL_SPEC: CommandSpec = {
  name: 'pull',
  valued: {},
  flags: { offline: 'offline', json: 'json', help: 'help', h: 'help' },
};

function megabytes(n: number): string {
  return (n / 1e6).toFixed(1);
}

/** A one-line progress bar on stderr, redrawn at most every 100 ms. */
function progressBar(): { onEvent: (e: PullEvent) => void; finish: () => void } {
  let last = 0;
  let startTime = Date.now();
  let startBytes = 0;
  let drawn = false;
  const draw = (file: string, done: number, size: number) => {
    const width = 30;
    const frac = size > 0 ? done / size : 1;
    const filled = Math.round(frac * width);
    const secs = (Date.now() - startTime) / 1000;
    const rate = secs > 0 ? (done - startBytes) / secs : 0;
    process.stderr.write(`\r\x1b[K${basename(file)} [${'#'.repeat(filled)}${'.'.repeat(width - filled)}] ${(frac * 100).toFixed(0)}% ` +
      `${megabytes(done)}/${megabytes(size)} MB ${megabytes(rate)} MB/s`);
    drawn = true;
  };
  return {
    onEvent: (e) => {
      if (e.type === 'start') {
        startTime = Date.now();
        startBytes = e.resumeFrom;
        if (e.resumeFrom > 0) process.stderr.write(`resuming ${e.file} at ${megabytes(e.resumeFrom)} MB\n`);
        draw(e.file, e.resumeFrom, e.size);
      } else if (e.type === 'progress') {
        const now = Date.now();
        if (now - last >= 100 || e.done === e.size) {
          last = now;
          draw(e.file, e.done, e.size);
        }
      } else {
        if (drawn) process.stderr.write('\n');
        drawn = false;
        const text = e.type === 'retry' ? `retry ${e.attempt} in ${(e.delayMs / 1000).toFixed(1)} s (resuming at ${megabytes(e.resumeFrom)} MB): ${e.reason}`
          : e.type === 'restart' ? `starting over: ${e.reason}` : `network unavailable, using the cached copy: ${e.reason}`;
        process.stderr.write(`bitllm: ${text}\n`);
      }
    },
    finish: () => {
      if (drawn) process.stderr.write('\n');
    },
  };
}

export async function runPullCommand(argv: string[]): Promise<number> {
  const cl = new CommandLine(argv, PULL_SPEC);
  if (cl.has('help')) {
    process.stdout.write(PULL_USAGE);
    return 0;
  }
  const [ref, ...more] = cl.positionals;
  if (ref === undefined) throw new UsageError('pull: give the model as hf:OWNER/REPO[/FILE][@REVISION]');
  if (more.length > 0) throw new UsageError(`pull: unexpected argument '${more[0]}'`);
  const reference = ref.startsWith('hf:') ? ref : `hf:${ref}`;
  try {
    parseHubRef(reference);
  } catch (err) {
    throw new UsageError(`pull: ${(err as Error).message}`);
  }
  const json = cl.has('json') || !process.stderr.isTTY;
  const bar = json ? undefined : progressBar();
  const onEvent = json
    ? (e: PullEvent) => {
        const { type, ...fields } = e;
        if (type !== 'progress') process.stdout.write(JSON.stringify({ event: type, ...fields }) + '\n');
      }
    : bar!.onEvent;
  try {
    const r = await pullModel(reference, { offline: cl.has('offline') || undefined, onEvent });
    bar?.finish();
    if (json) process.stdout.write(JSON.stringify({ event: 'done', ...r }) + '\n');
    else {
      process.stderr.write(`${r.cached ? 'cached' : 'pulled'} hf:${r.repo}/${r.file} at ${r.commit.slice(0, 12)}: ${megabytes(r.size)} MB, sha256 ${r.sha256}\n`);
      process.stdout.write(r.path + '\n');
    }
    return 0;
  } catch (err) {
    bar?.finish();
    throw err;
  }
}
