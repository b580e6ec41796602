#!/usr/bin/env node
// `bitllm serve` vs llama.cpp's llama-server under the same streaming load: same GGUF file, same threads, the same
// number of slots with continuous batching, the same token-id prompts, greedy, max_tokens -n with EOG ignored.
//
// llama-server is built here from the llama.cpp source that node-llama-cpp 3.22.1 ships (llama/gitRelease.bundle,
// installed into .peers/ by scripts/install-peers.sh, which this script runs when it is missing): the bundle is
// cloned into .cache/llama-server/src and built CPU-only, Release, GGML_NATIVE=ON (tuned to this machine's CPU),
// static, target llama-server only, into .cache/llama-server/build-<commit>/ -- outside the package (.cache/ is
// git-ignored and not in package.json "files"). Skipped when the binary of the same bundle commit and flags exists.
//
// The servers run one at a time, alternately (rep r: bitllm first when r is even, llama-server first when odd), so
// a drift in the machine's state hits both. Per engine, rep and concurrency C (--concurrency 1,8): C clients, each
// running --requests streaming /v1/completions requests back to back. Every request has its own prompt (request k
// of a level gets the same ids on both engines), and prompt reuse is off on both: llama-server gets
// `cache_prompt: false` on every request and runs with --cache-ram 0 (no host-memory prompt cache); bitllm keeps
// its prefix cache but the prompts share no prefix (the reused-token count of its /metrics is reported).
// Prints JSON lines: one per engine × rep × concurrency (aggregate generated tok/s, TTFT and inter-token-gap
// percentiles), then one ratio line per concurrency (bitllm / llama-server, medians over reps).
// Every request is checked to have generated exactly -n tokens (usage.completion_tokens); the exit status is 1 if not.
//
//   npm run build && node bench/llama-server.mjs [MODEL] [-t 2] [--parallel 8] [--concurrency 1,8] [--requests 2]
//        [-p 64] [-n 32] [--ctx 4096 (per slot)] [--reps 1] [--engines bitllm,llama-server] [--head f16|q8|q4]
//        [--vocab 32000] [--build-only] [--jobs 2]
// (default MODEL: the synthetic 2B-4T TQ2_0 file of bench/families.mjs: `node bench/families.mjs --only b158`)
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

import { DEFAULT_2B4T_TQ2, option, positionals, promptIds } from './common.mjs';
import { freePort, launchServer, runClients, streamCompletion, summarize } from './load-client.mjs';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');
const CLI = join(ROOT, 'dist', 'cli', 'main.js');
const BUNDLE = join(ROOT, '.peers', 'node_modules', 'node-llama-cpp', 'llama', 'gitRelease.bundle');
const CACHE = join(ROOT, '.cache', 'llama-server');

const argv = process.argv.slice(2);
const val = (name, def) => option(argv, name, def);
const file = positionals(argv)[0] ?? DEFAULT_2B4T_TQ2;
const threads = Number(val('-t', '2'));
const parallel = Number(val('--parallel', '8'));
const levels = val('--concurrency', '1,8').split(',').map(Number);
const perClient = Number(val('--requests', '2'));
const p = Number(val('-p', '64'));
const n = Number(val('-n', '32'));
const ctx = Number(val('--ctx', '4096')); // per slot / sequence
const reps = Number(val('--reps', '1'));
const engines = val('--engines', 'bitllm,llama-server').split(',');
const head = val('--head', undefined);
const VOCAB = Number(val('--vocab', '32000'));
const jobs = val('--jobs', '2');
const buildOnly = argv.includes('--build-only');
const log = (s) => process.stderr.write(`llama-server bench: ${s}\n`);

/** git with a clean environment (no GIT_DIR & co. from a hook or an outer repository), as scripts/test-data.mjs. */
function git(args) {
  const env = { ...process.env, GIT_TERMINAL_PROMPT: '0' };
  for (const k of ['GIT_DIR', 'GIT_WORK_TREE', 'GIT_INDEX_FILE', 'GIT_OBJECT_DIRECTORY', 'GIT_ALTERNATE_OBJECT_DIRECTORIES', 'GIT_NAMESPACE']) delete env[k];
  return execFileSync('git', args, { env, encoding: 'utf8', maxBuffer: 64 << 20, stdio: ['ignore', 'pipe', 'pipe'] }).trim();
}

function run(cmd, args, what) {
  const r = spawnSync(cmd, args, { stdio: ['ignore', 'inherit', 'inherit'] });
  if (r.status !== 0) throw new Error(`${what ?? cmd} failed (${r.status ?? r.signal}): ${[cmd, ...args].join(' ')}`);
}

// CPU-only, Release, static, no OpenSSL and no web UI (nothing downloaded); GGML_NATIVE: -march=native (a local peer
// build). This llama.cpp has no curl any more (LLAMA_CURL is deprecated and ignored; -hf downloads would need LLAMA_OPENSSL).
const CMAKE_FLAGS = [
  '-DCMAKE_BUILD_TYPE=Release', '-DGGML_NATIVE=ON', '-DBUILD_SHARED_LIBS=OFF',
  '-DGGML_CUDA=OFF', '-DGGML_VULKAN=OFF', '-DGGML_METAL=OFF', '-DGGML_BLAS=OFF', '-DGGML_RPC=OFF',
  '-DLLAMA_BUILD_TESTS=OFF', '-DLLAMA_BUILD_EXAMPLES=OFF', '-DLLAMA_BUILD_TOOLS=ON', '-DLLAMA_BUILD_SERVER=ON', '-DLLAMA_BUILD_APP=OFF',
  '-DLLAMA_BUILD_UI=OFF', '-DLLAMA_USE_PREBUILT_UI=OFF', '-DLLAMA_OPENSSL=OFF',
];

/** Builds (once per bundle commit and flags) llama-server from node-llama-cpp's llama.cpp bundle; returns its path and version. */
function buildLlamaServer() {
  if (!existsSync(BUNDLE)) run('bash', [join(ROOT, 'scripts', 'install-peers.sh')], 'scripts/install-peers.sh');
  if (!existsSync(BUNDLE)) throw new Error(`${BUNDLE} is missing after scripts/install-peers.sh`);
  const nlc = JSON.parse(readFileSync(join(dirname(dirname(BUNDLE)), 'package.json'), 'utf8')).version;
  const head = git(['bundle', 'list-heads', BUNDLE]).split('\n').map((l) => l.split(' ')).find(([, ref]) => ref === 'HEAD')?.[0];
  if (!head) throw new Error(`${BUNDLE} has no HEAD`);
  const build = join(CACHE, `build-${head.slice(0, 12)}`);
  const bin = join(build, 'bin', 'llama-server');
  const stampFile = join(build, 'bitllm-stamp.json');
  const stamp = JSON.stringify({ commit: head, flags: CMAKE_FLAGS });
  if (existsSync(bin) && existsSync(stampFile) && readFileSync(stampFile, 'utf8') === stamp) {
    log(`llama-server of llama.cpp ${head} (node-llama-cpp ${nlc}) already built: ${bin}`);
    return { bin, commit: head, nlc, built_s: 0 };
  }
  const t0 = Date.now();
  const src = join(CACHE, 'src');
  let have;
  try { have = git(['-C', src, 'rev-parse', 'HEAD']); } catch { have = undefined; }
  if (have !== head) {
    log(`checking out llama.cpp ${head} from ${BUNDLE} into ${src}`);
    rmSync(src, { recursive: true, force: true });
    mkdirSync(CACHE, { recursive: true });
    git(['clone', '-q', '--no-checkout', BUNDLE, src]);
    git(['-C', src, '-c', 'advice.detachedHead=false', 'checkout', '-q', '--detach', head]);
  }
  rmSync(stampFile, { force: true });
  log(`configuring (${CMAKE_FLAGS.join(' ')})`);
  run('cmake', ['-S', src, '-B', build, ...CMAKE_FLAGS], 'cmake configure');
  log(`building target llama-server with -j${jobs}`);
  run('cmake', ['--build', build, '--target', 'llama-server', '--config', 'Release', '-j', jobs], 'cmake build');
  if (!existsSync(bin)) throw new Error(`the build finished but ${bin} is missing`);
  writeFileSync(stampFile, stamp);
  const built_s = Math.round((Date.now() - t0) / 1000);
  log(`built ${bin} in ${built_s} s`);
  return { bin, commit: head, nlc, built_s };
}

const llama = engines.includes('llama-server') || buildOnly ? buildLlamaServer() : undefined;
if (llama) {
  const v = spawnSync(llama.bin, ['--version'], { encoding: 'utf8' });
  llama.version = `${v.stdout}${v.stderr}`.split('\n').filter((l) => /version|built with/.test(l)).join('; ').trim();
  console.log(JSON.stringify({ peer: 'llama-server', llama_cpp_commit: llama.commit, node_llama_cpp: llama.nlc, version: llama.version,
    build: 'CPU-only Release static, GGML_NATIVE=ON (-march=native)', bin: llama.bin, built_s: llama.built_s }));
}
if (buildOnly) process.exit(0);
if (engines.includes('bitllm') && !existsSync(CLI)) throw new Error(`${CLI} is missing: run npm run build first`);
if (!existsSync(file)) throw new Error(`${file} is missing: run \`node bench/families.mjs --only b158\` (it synthesizes it), or name a GGUF file`);

const ENGINES = {
  bitllm: async () => {
    const args = [CLI, 'serve', file, '--port', '0', '--parallel', String(parallel), '--max-queue', '256', '-t', String(threads), '--ctx', String(ctx)];
    if (head) args.push('--head', head);
    const srv = await launchServer({ command: process.execPath, args, listening: /listening on (http:\/\/\S+)/, readyPath: '/ready', name: 'bitllm serve' });
    const ready = /bitllm serve: ready: .*/.exec(srv.log())?.[0];
    return { srv, info: ready, body: {} };
  },
  'llama-server': async () => {
    const port = await freePort();
    // -c is the whole KV cache; llama-server splits it among the -np slots (non-unified KV with an explicit -np).
    const args = ['-m', file, '--host', '127.0.0.1', '--port', String(port), '-t', String(threads), '-tb', String(threads), '-np', String(parallel),
      '-c', String(parallel * ctx), '--cont-batching', '--cache-ram', '0', '--no-webui'];
    const srv = await launchServer({ command: llama.bin, args, base: `http://127.0.0.1:${port}`, readyPath: '/health', name: 'llama-server' });
    // At its default verbosity llama-server logs little (run it with -lv 4 to see system_info, flash_attn, buffers).
    const info = /n_slots = .*/.exec(srv.log())?.[0]?.trim();
    return { srv, info, body: { cache_prompt: false } };
  },
};

/** The engine's prompt-reuse count from its metrics, where it has one. */
async function reusedPromptTokens(engine, base) {
  if (engine !== 'bitllm') return undefined;
  const text = await fetch(`${base}/metrics`).then((r) => r.text()).catch(() => '');
  const m = /^bitllm_engine_reused_prompt_tokens(?:\{[^}]*\})?\s+(\S+)/m.exec(text);
  return m ? Number(m[1]) : undefined;
}

const rows = [];
let bad = 0;
for (let rep = 0; rep < reps; rep++) {
  const order = rep % 2 === 0 ? engines : [...engines].reverse();
  for (const engine of order) {
    const t0 = performance.now();
    const { srv, info, body: extra } = await ENGINES[engine]();
    const load_s = Math.round((performance.now() - t0) / 100) / 10;
    if (info) log(`${engine}: ${info}`);
    try {
      const request = (ids) => streamCompletion(srv.base, {
        prompt: ids, max_tokens: n, temperature: 0, ignore_eos: true, stream_options: { include_usage: true }, ...extra,
      });
      await request(promptIds(8, VOCAB, 999_999)); // warm-up
      for (const [li, c] of levels.entries()) {
        // Request i of client k at level li: the same prompt on both engines, a different one for every request.
        const { wallMs, results } = await runClients(c, perClient, (k, i) => request(promptIds(p, VOCAB, 1 + li * 100_000 + k * 1000 + i)));
        const s = summarize(results, wallMs);
        const short = results.filter((r) => r.completionTokens !== n || r.usage == null);
        const cached = results.reduce((a, r) => a + (r.usage?.prompt_tokens_details?.cached_tokens ?? 0), 0);
        const promptTokens = results.reduce((a, r) => a + (r.usage?.prompt_tokens ?? 0), 0);
        const row = { engine, rep, concurrency: c, parallel, threads, p, n, ...s, prompt_tokens: promptTokens,
          ...(engine === 'llama-server' && { cached_prompt_tokens: cached }), verified: short.length === 0, load_s };
        if (short.length) {
          bad++;
          row.short = short.map((r) => ({ tokens: r.completionTokens, chunks: r.chunks, finish: r.finishReason }));
        }
        rows.push(row);
        console.log(JSON.stringify(row));
      }
      const reused = await reusedPromptTokens(engine, srv.base);
      if (reused !== undefined) log(`${engine}: prompt tokens served from its prefix cache over the whole run: ${reused}`);
    } finally {
      await srv.close();
    }
  }
}

const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};
if (engines.includes('bitllm') && engines.includes('llama-server'))
  for (const c of levels) {
    const at = (e, f) => median(rows.filter((r) => r.engine === e && r.concurrency === c).map(f));
    const [b, l] = [at('bitllm', (r) => r.tps), at('llama-server', (r) => r.tps)];
    const r2 = (x) => Math.round(x * 100) / 100;
    console.log(JSON.stringify({ ratio: 'bitllm/llama-server', concurrency: c, reps, bitllm_tps: r2(b), llama_server_tps: r2(l), tps_ratio: r2(b / l),
      ttft_p50_ratio: r2(at('bitllm', (r) => r.ttft_ms.p50) / at('llama-server', (r) => r.ttft_ms.p50)),
      itl_p50_ratio: r2(at('bitllm', (r) => r.itl_ms.p50) / at('llama-server', (r) => r.itl_ms.p50)) }));
  }
if (bad) {
  log(`${bad} measurement(s) had requests that did not generate exactly ${n} tokens (see "short")`);
  process.exitCode = 1;
}
