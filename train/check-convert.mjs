#!/usr/bin/env node
// `bitllm convert` of a folder written by train/export_hf.py vs the direct export of the same weights:
// every GGUF tensor byte-identical, and `bitllm perplexity --dump-logits` of both models byte-identical.
// With --against FILE.gguf the converted model's tensors are also compared with that file's (the shipped model the
// folder's run was exported to).
// usage: node train/check-convert.mjs HF_DIR [--type T] [--text FILE] [--against FILE.gguf]
import { spawnSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const args = process.argv.slice(2);
const opt = (name, def) => { const i = args.indexOf(name); return i >= 0 ? args.splice(i, 2)[1] : def; };
const type = opt('--type', undefined);
const text = opt('--text', join(ROOT, 'docs', 'DESIGN.md'));
const against = opt('--against', undefined);
const [dir] = args;
if (!dir) {
  process.stderr.write('usage: node train/check-convert.mjs HF_DIR [--type T] [--text FILE] [--against FILE.gguf]\n');
  process.exit(2);
}
const ex = await import(join(ROOT, 'dist', 'convert', 'export.js'));
const st = await import(join(ROOT, 'dist', 'convert', 'safetensors.js'));
const spm = await import(join(ROOT, 'dist', 'convert', 'spm-model.js'));
const gguf = await import(join(ROOT, 'dist', 'format', 'gguf.js'));
const CLI = join(ROOT, 'dist', 'cli', 'main.js');

const run = JSON.parse(readFileSync(join(dir, 'direct', 'run.json'), 'utf8'));
const direct = join(dir, 'direct.gguf');
ex.exportGguf({ family: run.family, type, config: ex.parseTrainedConfig(run.config), tensors: st.readSafetensors(join(dir, 'direct', 'export.safetensors')),
  tokenizer: spm.readSpmModel(join(ROOT, 'train', 'tokenizer.model')), out: direct });
const converted = join(dir, 'converted.gguf');
const c = spawnSync(process.execPath, [CLI, 'convert', dir, '-o', converted, '--json', ...(type ? ['--type', type] : [])], { encoding: 'utf8' });
if (c.status !== 0) { process.stderr.write(c.stderr); process.exit(1); }
const info = JSON.parse(c.stdout);

const a = gguf.readGguf(converted);
const b = gguf.readGguf(direct);
const bad = [];
const compare = (b, what) => {
  if (a.tensors.length !== b.tensors.length) bad.push(`${a.tensors.length} tensors vs ${b.tensors.length}${what}`);
  for (const y of b.tensors) {
    const x = a.tensors.find((t) => t.name === y.name);
    if (!x) { bad.push(`missing ${y.name}${what}`); continue; }
    if (x.type !== y.type || !Buffer.from(a.bytes.subarray(x.offset, x.offset + x.nbytes)).equals(Buffer.from(b.bytes.subarray(y.offset, y.offset + y.nbytes)))) bad.push(`differs: ${y.name}${what}`);
  }
};
compare(b, '');
if (against) compare(gguf.readGguf(resolve(against)), ` (vs ${against})`);
const sample = join(dir, 'text.txt'); // the first 3000 characters (~1000 tokens)
writeFileSync(sample, readFileSync(text, 'utf8').slice(0, 3000));
const ppl = (model, dump) => {
  const r = spawnSync(process.execPath, [CLI, 'perplexity', model, '-f', sample, '--ctx', '128', '--json', '-t', '2', '--dump-logits', dump], { encoding: 'utf8' });
  if (r.status !== 0) { process.stderr.write(r.stderr); process.exit(1); }
  return JSON.parse(r.stdout);
};
const pa = ppl(converted, join(dir, 'converted.logits'));
const pb = ppl(direct, join(dir, 'direct.logits'));
const same = readFileSync(join(dir, 'converted.logits')).equals(readFileSync(join(dir, 'direct.logits')));
if (!same) bad.push('logits differ');
const ok = bad.length === 0;
process.stdout.write(`${ok ? 'ok  ' : 'FAIL'} ${info.layout} → ${info.arch} ${info.type}: ${a.tensors.length} tensors${bad.length ? ` (${bad.slice(0, 5).join('; ')})` : ` identical${against ? ` (also to ${against})` : ''}`}, `
  + `logits ${same ? 'identical' : 'DIFFER'} over ${pa.n_tokens} tokens (ppl ${pa.ppl.toFixed(4)} vs ${pb.ppl.toFixed(4)})`
  + `${info.findings.zeroLatentWeights ? `, ${info.findings.zeroLatentWeights} zero latent weights` : ''}\n`);
process.exit(ok ? 0 : 1);
