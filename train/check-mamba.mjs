#!/usr/bin/env node
// A Mamba-2 family export (bi-mamba, mamba2 or bi-mamba-hybrid GGUF) against the trainer: lib/model/mamba2.ts reads the GGUF
// (mamba2ConfigFromGguf, loadMamba2Weights) and its float64 reference forward (mamba2ReferenceForward, the
// token-by-token recurrence) scores the first windows of val and ood — the `bitllm perplexity --ctx 256` windows
// train.py scored as eval.{val,ood}_check with its own quantized evaluation of the same tensors (float32, chunked
// SSD; a hybrid's attention layers with K/V rounded to half, as refAttention does). Fails when the mean NLLs
// differ by more than --tolerance (relative, default 0.1 %), or when a hybrid's layer pattern or attention shape
// read from the GGUF is not the trained one (run.json config.attn_layers, attn_head, attn_head_kv, rope_theta).
// usage: node train/check-mamba.mjs RUN_DIR MODEL.gguf [--tolerance 0.001]
// Needs the compiled library (npm run build:ts) and the corpus (node scripts/corpus.mjs).
import { readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const args = process.argv.slice(2);
const opt = (name, def) => { const i = args.indexOf(name); return i >= 0 ? args.splice(i, 2)[1] : def; };
const tolerance = Number(opt('--tolerance', '0.001'));
const [runDir, model] = args;
if (!runDir || !model) {
  process.stderr.write('usage: node train/check-mamba.mjs RUN_DIR MODEL.gguf [--tolerance 0.001]\n');
  process.exit(2);
}
const { readGguf } = await import(join(ROOT, 'dist', 'format', 'gguf.js'));
const m2 = await import(join(ROOT, 'dist', 'model', 'mamba2.js'));
const { Tokenizer } = await import(join(ROOT, 'dist', 'tokenizer', 'index.js'));

const run = JSON.parse(readFileSync(join(runDir, 'run.json'), 'utf8'));
const file = readGguf(model);
const cfg = m2.mamba2ConfigFromGguf(file);
const weights = m2.loadMamba2Weights(file, cfg);
const tok = Tokenizer.fromGguf(file);

let ok = true;
const rc = run.config;
if (rc.attn_layers !== undefined || cfg.attn) {
  // The hybrid: the GGUF's per-layer kinds and attention shape are the trained ones.
  const want = Array.from({ length: rc.n_layer }, (_, l) => ((rc.attn_layers ?? []).includes(l) ? 'attention' : 'mamba2'));
  const a = cfg.attn ?? {};
  const hd = rc.d_model / rc.attn_head;
  const good = cfg.layerKinds.join() === want.join() && a.nHead === rc.attn_head && a.nHeadKv === rc.attn_head_kv
    && a.headDim === hd && a.ropeTheta === rc.rope_theta;
  ok &&= good;
  process.stdout.write(`${good ? 'ok  ' : 'FAIL'} ${model} layers ${cfg.layerKinds.map((k) => (k === 'attention' ? 'A' : 'M')).join('')} (trained `
    + `${want.map((k) => (k === 'attention' ? 'A' : 'M')).join('')}), attention ${a.nHead} heads / ${a.nHeadKv} KV heads of ${a.headDim}, `
    + `RoPE base ${a.ropeTheta} (trained ${rc.attn_head} / ${rc.attn_head_kv} of ${hd}, ${rc.rope_theta})\n`);
}

/** Mean NLL of the first `n` windows of a split (BOS + ctx − 1 tokens each, every token after BOS scored). */
function score(split, n, ctx) {
  const ids = tok.encode(readFileSync(join(ROOT, '.cache', 'corpus', `${split}.txt`), 'utf8'), { addBos: false });
  let total = 0;
  let scored = 0;
  for (let w = 0; w < n; w++) {
    const win = [tok.bos, ...ids.slice(w * (ctx - 1), (w + 1) * (ctx - 1))];
    const logits = m2.mamba2ReferenceForward(cfg, weights, win, m2.mamba2ModelState(cfg));
    const V = cfg.nVocab;
    for (let t = 0; t + 1 < win.length; t++) {
      let max = -Infinity;
      for (let v = 0; v < V; v++) max = Math.max(max, logits[t * V + v]);
      let sum = 0;
      for (let v = 0; v < V; v++) sum += Math.exp(logits[t * V + v] - max);
      total += max + Math.log(sum) - logits[t * V + win[t + 1]];
      scored++;
    }
  }
  return { nll: total / scored, n_scored: scored };
}

for (const split of ['val', 'ood']) {
  const want = run.eval[`${split}_check`];
  if (!want) throw new Error(`${runDir}/run.json has no eval.${split}_check (train it with this train.py)`);
  const t0 = Date.now();
  const got = score(split, want.n_windows, want.ctx);
  const rel = got.nll / want.nll - 1;
  const good = got.n_scored === want.n_scored && Math.abs(rel) <= tolerance;
  ok &&= good;
  process.stdout.write(`${good ? 'ok  ' : 'FAIL'} ${model} ${split}, first ${want.n_windows} windows (${got.n_scored} tokens): float64 reference NLL ${got.nll.toFixed(6)} `
    + `(ppl ${Math.exp(got.nll).toFixed(4)}), trainer ${want.nll.toFixed(6)} (ppl ${want.ppl.toFixed(4)}), difference ${(100 * rel).toExponential(2)} % `
    + `[${((Date.now() - t0) / 1000).toFixed(1)} s]\n`);
}
process.exit(ok ? 0 : 1);
