#!/usr/bin/env node
// Load generator for `bitllm serve`: starts the server on a free loopback port, then drives it over HTTP with
// streaming /v1/completions requests (token-id prompts, greedy, max_tokens -n, EOG ignored) and prints JSON lines:
//   - per concurrency C (--concurrency 1,2,4,8,16): C clients, each running --requests requests back to back;
//     aggregate generated tok/s over the wall time, and TTFT / inter-token-latency percentiles (p50, p90, p99);
//     decode_tps: the aggregate decode rate, tokens after each request's first over the time during which at
//     least one request was between its first and last token (the union of those spans: another request's
//     prefill inside it counts against it, the client's gaps between its requests do not); with 1 in the list,
//     each other level's decode_tps over the one-client run beside it, median over rounds (1,8,1,8,1,8);
//   - with --long N: the "long prompt" scenario: 4 streams decode steadily, then one N-token prompt arrives;
//     the running streams' p99 inter-token gap while it is prefilled vs their steady gap, and the issue's bound:
//     2 x the steady p50 gap + one step budget (a solo prefill of the step's prompt budget, 64 tokens);
//   - with --behind N: a short (-p) prompt queued behind three N-token prompts: its TTFT vs its solo TTFT, and
//     the bound solo TTFT + one chunk (a solo 128-token prefill) per waiting prompt.
//
//   npm run build && node bench/serve-load.mjs [MODEL] [--parallel 8] [-t 2] [--concurrency 1,2,4,8,16]
//        [--requests 2] [-p 64] [-n 32] [--long 2048] [--behind 2048] [--ctx 4096]
// (default MODEL: the synthetic 2B-4T TQ2_0 file of bench/families.mjs)
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

import { DEFAULT_2B4T_TQ2, option, positionals, promptIds } from './common.mjs';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');
const CLI = join(ROOT, 'dist', 'cli', 'main.js');
const argv = process.argv.slice(2);
const val = (name, def) => option(argv, name, def);
const file = positionals(argv)[0] ?? DEFAULT_2B4T_TQ2;
const parallel = Number(val('--parallel', '8'));
const threads = val('-t', '2');
const levels = val('--concurrency', '1,2,4,8,16').split(',').map(Number);
const perClient = Number(val('--requests', '2'));
const p = Number(val('-p', '64'));
const n = Number(val('-n', '32'));
const longN = Number(val('--long', '0'));
const behindN = Number(val('--behind', '0'));
const ctx = Number(val('--ctx', String(Math.max(4096, longN + n + 64, behindN + 64))));
if (!existsSync(CLI)) throw new Error(`${CLI} is missing: run npm run build first`);
if (!existsSync(file)) throw new Error(`${file} is missing (node bench/families.mjs --only b158 makes it)`);

const server = spawn(process.execPath, [CLI, 'serve', file, '--port', '0', '--parallel', String(parallel), '--max-queue', '256', '-t', threads,
  '--ctx', String(ctx)], { stdio: ['ignore', 'ignore', 'pipe'] });
const base = await new Promise((resolve, reject) => {
  let err = '';
  server.stderr.on('data', (d) => {
    err += d;
    const m = /listening on (http:\/\/\S+)/.exec(err);
    if (m) resolve(m[1]);
  });
  server.on('exit', (code) => reject(new Error(`bitllm serve exited (${code}):\n${err}`)));
});
for (;;) {
  const r = await fetch(`${base}/ready`).catch(() => undefined);
  if (r?.status === 200) break;
  await new Promise((res) => setTimeout(res, 200));
}

let seed = 1;
// Prompts as `bitllm bench` makes them, ids in [V/64, V/2): valid for every vocabulary of at least --vocab ids.
const VOCAB = Number(val('--vocab', '32000'));
const prompt = (len) => promptIds(len, VOCAB, seed++);

/** One streaming request; returns the arrival time of every content chunk (ms, performance.now). */
async function stream(ids, maxTokens) {
  const t0 = performance.now();
  const res = await fetch(`${base}/v1/completions`, {
    method: 'POST', headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ prompt: ids, max_tokens: maxTokens, temperature: 0, stream: true, ignore_eos: true }),
  });
  if (res.status !== 200) throw new Error(`HTTP ${res.status}: ${await res.text()}`);
  const times = [];
  const dec = new TextDecoder();
  let buf = '';
  for await (const chunk of res.body) {
    buf += dec.decode(chunk, { stream: true });
    let i;
    while ((i = buf.indexOf('\n\n')) >= 0) {
      const ev = buf.slice(0, i);
      buf = buf.slice(i + 2);
      if (!ev.startsWith('data: ') || ev === 'data: [DONE]') continue;
      const o = JSON.parse(ev.slice(6));
      if (o.choices?.[0] && o.choices[0].finish_reason == null) times.push(performance.now());
    }
  }
  return { t0, times };
}

const pct = (xs, q) => {
  if (xs.length === 0) return null;
  const s = [...xs].sort((a, b) => a - b);
  return Math.round(s[Math.min(s.length - 1, Math.floor(q * s.length))] * 10) / 10;
};
const gaps = (times) => times.slice(1).map((t, i) => t - times[i]);
/** Σ (tokens - 1) over the union of the requests' [first token, last token] spans, in tok/s. */
function decodeTps(results) {
  const spans = results.filter((r) => r.times.length > 1).map((r) => [r.times[0], r.times[r.times.length - 1]]).sort((a, b) => a[0] - b[0]);
  let busy = 0;
  let end = -Infinity;
  for (const [s, e] of spans) {
    if (e <= end) continue;
    busy += e - Math.max(s, end);
    end = e;
  }
  const tokens = results.reduce((a, r) => a + Math.max(0, r.times.length - 1), 0);
  return busy > 0 ? Math.round((tokens / (busy / 1000)) * 100) / 100 : null;
}
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
/** Median solo TTFT (ms) of a `len`-token prompt, one token generated, the server otherwise idle. */
async function soloTtft(len, reps = 3) {
  const out = [];
  for (let r = 0; r < reps; r++) {
    const s = await stream(prompt(len), 1);
    out.push(s.times[0] - s.t0);
  }
  return median(out);
}

try {
  await stream(prompt(8), 4); // warm-up
  const byLevel = []; // [concurrency, decode_tps] in run order, for the ratios below
  for (const c of levels) {
    const t0 = performance.now();
    const results = (await Promise.all(Array.from({ length: c }, async () => {
      const out = [];
      for (let r = 0; r < perClient; r++) out.push(await stream(prompt(p), n));
      return out;
    }))).flat();
    const wall = performance.now() - t0;
    const tokens = results.reduce((a, r) => a + r.times.length, 0);
    const ttft = results.map((r) => r.times[0] - r.t0);
    const itl = results.flatMap((r) => gaps(r.times));
    const decode = decodeTps(results);
    byLevel.push([c, decode]);
    console.log(JSON.stringify({ concurrency: c, parallel, threads: Number(threads), p, n, requests: results.length, tokens,
      tps: Math.round((tokens / (wall / 1000)) * 100) / 100, decode_tps: decode, ttft_ms: { p50: pct(ttft, 0.5), p90: pct(ttft, 0.9), p99: pct(ttft, 0.99) },
      itl_ms: { p50: pct(itl, 0.5), p90: pct(itl, 0.9), p99: pct(itl, 0.99) } }));
  }
  // With one client in the list: each other level's decode_tps over the one-client measurement next to it in
  // run order (the mean of the two around it, when there are), so that `--concurrency 1,8,1,8,1,8` gives one
  // ratio per round despite the host's drift; the median over rounds.
  if (byLevel.some(([c]) => c === 1)) {
    const ratios = new Map();
    byLevel.forEach(([c, tps], i) => {
      if (c === 1 || tps === null) return;
      const near = [byLevel[i - 1], byLevel[i + 1]].filter((x) => x && x[0] === 1 && x[1] !== null).map((x) => x[1]);
      if (near.length === 0) return;
      (ratios.get(c) ?? ratios.set(c, []).get(c)).push(tps / (near.reduce((a, x) => a + x, 0) / near.length));
    });
    for (const [c, rs] of ratios)
      console.log(JSON.stringify({ ratio: `decode_tps at ${c} clients / at 1`, rounds: rs.length, median: Math.round(median(rs) * 1000) / 1000,
        min: Math.round(Math.min(...rs) * 1000) / 1000, max: Math.round(Math.max(...rs) * 1000) / 1000 }));
  }
  if (longN > 0) {
    const budgetMs = await soloTtft(64);
    // 4 steady streams; once they run, one long prompt arrives. Compare their gaps before it and while it prefills.
    const runners = Array.from({ length: 4 }, () => stream(prompt(16), 4 * n));
    await new Promise((res) => setTimeout(res, 1500));
    const tLong = performance.now();
    const long = await stream(prompt(longN), 1);
    const tFirst = long.times[0];
    const rs = await Promise.all(runners);
    const steady = rs.flatMap((r) => gaps(r.times.filter((t) => t < tLong)));
    const during = rs.flatMap((r) => gaps(r.times.filter((t) => t >= tLong && t <= tFirst)));
    console.log(JSON.stringify({ scenario: 'long prompt', long_tokens: longN, long_ttft_ms: Math.round(tFirst - long.t0),
      steady_itl_ms: { p50: pct(steady, 0.5), p99: pct(steady, 0.99) }, during_itl_ms: { p50: pct(during, 0.5), p99: pct(during, 0.99) },
      bound_ms: Math.round(2 * pct(steady, 0.5) + budgetMs), step_budget_ms: Math.round(budgetMs),
      within: during.length > 0 ? pct(during, 0.99) <= 2 * pct(steady, 0.5) + budgetMs : null }));
  }
  if (behindN > 0) {
    const solo = await soloTtft(p);
    const chunkMs = await soloTtft(128);
    const longs = Array.from({ length: 3 }, () => stream(prompt(behindN), 1));
    await new Promise((res) => setTimeout(res, 50)); // the three arrive first
    const short = await stream(prompt(p), 1);
    const ttft = short.times[0] - short.t0;
    const ls = await Promise.all(longs);
    const bound = solo + 3 * chunkMs;
    console.log(JSON.stringify({ scenario: 'short behind three long', long_tokens: behindN, short_tokens: p, short_ttft_ms: Math.round(ttft),
      solo_ttft_ms: Math.round(solo), chunk_ms: Math.round(chunkMs), bound_ms: Math.round(bound), within: ttft <= bound,
      long_ttft_ms: ls.map((l) => Math.round(l.times[0] - l.t0)) }));
  }
} finally {
  server.kill('SIGTERM');
}
