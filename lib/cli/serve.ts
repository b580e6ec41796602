// `bitllm serve [MODEL]`: the OpenAI-compatible HTTP server (lib/server) on a loaded model. It listens at once
// (/health answers, /ready is 503 until the model is loaded); SIGTERM or SIGINT drains it (no new requests,
// running and queued ones finish, then exit 0); a second signal exits at once.
import { readFileSync } from 'node:fs';
import type { AddressInfo } from 'node:net';

import type { Model } from '../api.js';
import { BitllmError } from '../errors.js';
import { ModelEngine, createServer } from '../server/index.js';
import { UsageError } from './args.js';
import { type CommandSpec, CommandLine, MODEL_USAGE, MODEL_VALUED, loadOptions, openModel } from './run.js';

export const SERVE_USAGE = `usage: bitllm serve [MODEL] [options]   (default MODEL: the built-in tiny b1.58 model)
      --host H                   address to bind (default 127.0.0.1; 0.0.0.0 exposes it to the network)
      --port P                   port (default 8080; 0 picks a free one)
      --parallel N               sequences that run at once, decoded together in one batched forward per step
                                 (default 4, at most 256); the KV cache is paged, so memory grows with tokens in use
      --max-queue Q              sequences that may wait for a slot; beyond it 429 + Retry-After (default 64)
      --api-key K                require this key (Authorization: Bearer K or X-Api-Key: K); /health and /ready stay public
      --api-key-file F           keys from a file, one per line (# comments and blank lines ignored)
      --cors-origin O            allow this browser origin (exact match; '*' = any, without credentials); default: CORS off
      --alias NAME               model id in /v1/models and requests (default: the file name without .gguf)
      --max-body BYTES           largest request body (default 8388608)
      --sse-ping-ms MS           SSE comment line after this long without output (default 15000)
      --drain-timeout S          on SIGTERM, seconds to let requests finish before aborting them (default 30)
      -c, --ctx N                context size per sequence in tokens (default: min(4096, the model's))
${MODEL_USAGE.split('\n').filter((l) => !l.includes('--ctx')).join('\n')}
`;

const SERVE_SPEC: CommandSpec = {
  name: 'serve',
  valued: {
    host: 'host', port: 'port', parallel: 'parallel', np: 'parallel', 'max-queue': 'max-queue', 'api-key': 'api-key', 'api-key-file': 'api-key-file',
    'cors-origin': 'cors-origin', alias: 'alias', 'max-body': 'max-body', 'sse-ping-ms': 'sse-ping-ms', 'drain-timeout': 'drain-timeout', ...MODEL_VALUED,
  },
  flags: { help: 'help', h: 'help' },
};

function readKeys(path: string): string[] {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    throw new UsageError(`serve: cannot read --api-key-file '${path}': ${(err as Error).message}`);
  }
  const keys = text.split(/\r?\n/).map((l) => l.trim()).filter((l) => l !== '' && !l.startsWith('#'));
  if (keys.length === 0) throw new UsageError(`serve: --api-key-file '${path}' holds no key`);
  return keys;
}

export async function runServeCommand(argv: string[]): Promise<number> {
  const cl = new CommandLine(argv, SERVE_SPEC);
  if (cl.has('help')) {
    process.stdout.write(SERVE_USAGE);
    return 0;
  }
  const path = cl.model(false, true);
  const host = cl.str('host') ?? '127.0.0.1';
  const port = cl.int('port', 0, 65535) ?? 8080;
  const key = cl.str('api-key');
  const keyFile = cl.str('api-key-file');
  if (key !== undefined && keyFile !== undefined) throw new UsageError('serve: give --api-key or --api-key-file, not both');
  if (key === '') throw new UsageError('serve: --api-key needs a non-empty key');
  const apiKeys = key !== undefined ? [key] : keyFile !== undefined ? readKeys(keyFile) : [];
  const drainSeconds = cl.num('drain-timeout', 0, 86_400) ?? 30;
  const parallel = cl.int('parallel', 1, 256) ?? 4;
  // The model runs `parallel` sequences at once (continuous batching); the server admits as many.
  const loadOpts = { ...loadOptions(cl), sequences: parallel };

  const modelPromise = openModel(path, loadOpts, true);
  const server = createServer({
    engine: modelPromise.then((m) => new ModelEngine(m)),
    parallel,
    maxQueue: cl.int('max-queue', 0, 1 << 20) ?? 64,
    apiKeys,
    corsOrigin: cl.str('cors-origin'),
    modelId: cl.str('alias'),
    maxBodyBytes: cl.int('max-body', 1, 2 ** 31),
    keepAliveMs: cl.int('sse-ping-ms', 1, 3_600_000),
    idleGc: true,
  });
  let address: AddressInfo;
  try {
    address = await server.listen(port, host);
  } catch (err) {
    void modelPromise.then((m) => m.close(), () => undefined);
    throw new BitllmError(`serve: cannot listen on ${host}:${port}: ${(err as Error).message}`);
  }
  process.stderr.write(`bitllm serve: listening on http://${address.family === 'IPv6' ? `[${address.address}]` : address.address}:${address.port} (loading ${path})\n`);

  // Signals are handled from now on, also while the model loads.
  let signalled = false;
  const drained = new Promise<void>((resolve) => {
    const onSignal = (sig: NodeJS.Signals) => {
      if (signalled) {
        process.stderr.write(`bitllm serve: ${sig} again, exiting now\n`);
        process.exit(1);
      }
      signalled = true;
      process.stderr.write(`bitllm serve: ${sig}: draining (up to ${drainSeconds} s; send it again to exit at once)\n`);
      void server.drain(drainSeconds * 1000).then(resolve);
    };
    process.on('SIGTERM', onSignal).on('SIGINT', onSignal);
  });
  let model: Model;
  try {
    model = await modelPromise;
  } catch (err) {
    await server.close();
    throw err;
  }
  if (!signalled) {
    const i = model.info;
    process.stderr.write(`bitllm serve: ready: ${i.arch}, ctx ${i.contextSize}, ${i.isa} × ${i.threads} threads, ` +
      `${apiKeys.length ? 'API key required' : 'no API key'}, ${(i.loadMs / 1000).toFixed(2)} s to load\n`);
  }
  await drained;
  await model.close();
  process.stderr.write('bitllm serve: drained, exiting\n');
  return 0;
}
