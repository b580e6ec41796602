#!/usr/bin/env node
// A/B kernel speed of two addon binaries in one run: `bitllm bench kernels --json` alternately with
// BITLLM_PREBUILD=A and BITLLM_PREBUILD=B (node-gyp-build looks in DIR/build/Release, then in
// DIR/prebuilds/<platform>-<arch>/), several rounds; the best time of each row per build; prints
// each row's speed ratio B/A (A ms / B ms: > 1 means B is faster), their geometric mean and the worst.
//   node scripts/bench-prebuild.mjs --a DIR_A --b DIR_B [--rounds 3] [--min 0.97] [-- bench args...]
// Default bench args: -t 1 --batch 1,8 --shapes 2560x2560,6912x2560 --seconds 0.15 --no-reference.
// Exits 1 when the geometric mean is below --min. Needs dist/ (npx tsc).
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const argv = process.argv.slice(2);
const sep = argv.indexOf('--');
const own = sep >= 0 ? argv.slice(0, sep) : argv;
const benchArgs =
  sep >= 0
    ? argv.slice(sep + 1)
    : ['-t', '1', '--batch', '1,8', '--shapes', '2560x2560,6912x2560', '--seconds', '0.15', '--no-reference'];
const opt = (name, fallback) => {
  const i = own.indexOf(name);
  return i >= 0 && i + 1 < own.length ? own[i + 1] : fallback;
};
const dirs = { A: opt('--a'), B: opt('--b') };
const rounds = Number(opt('--rounds', '3'));
const minRatio = Number(opt('--min', '0.97'));
if (!dirs.A || !dirs.B || !Number.isInteger(rounds) || rounds < 1 || !(minRatio > 0)) {
  process.stderr.write('usage: node scripts/bench-prebuild.mjs --a DIR --b DIR [--rounds N] [--min R] [-- bench args]\n');
  process.exit(2);
}
for (const [name, dir] of Object.entries(dirs)) {
  const abs = resolve(dir);
  const candidates = [join(abs, 'build/Release/bitllm.node'), join(abs, `prebuilds/${process.platform}-${process.arch}/bitllm.node`)];
  if (!candidates.some((f) => existsSync(f))) {
    process.stderr.write(`bench-prebuild: ${name}=${abs} has neither ${candidates.join(' nor ')}\n`);
    process.exit(2);
  }
  dirs[name] = abs;
}

const best = { A: new Map(), B: new Map() };
for (let r = 0; r < rounds; r++) {
  for (const name of r % 2 === 0 ? ['A', 'B'] : ['B', 'A']) {
    const res = spawnSync(process.execPath, [join(root, 'dist/cli/main.js'), 'bench', 'kernels', '--json', ...benchArgs], {
      env: { ...process.env, BITLLM_PREBUILD: dirs[name] },
      encoding: 'utf8',
      maxBuffer: 64 << 20,
    });
    if (res.status !== 0) {
      process.stderr.write(`bench-prebuild: bench kernels with ${name} failed (${res.status}):\n${res.stderr}\n`);
      process.exit(1);
    }
    let rows = 0;
    for (const line of res.stdout.split('\n')) {
      if (!line.startsWith('{')) continue;
      const row = JSON.parse(line);
      if (!row.kernel || typeof row.ms !== 'number') continue;
      const key = `${row.kernel} ${row.isa} ${row.m}x${row.k} B=${row.batch} t=${row.threads} ${row.cache}`;
      const prev = best[name].get(key);
      best[name].set(key, prev === undefined ? row.ms : Math.min(prev, row.ms));
      rows++;
    }
    process.stderr.write(`bench-prebuild: round ${r + 1}/${rounds} ${name}: ${rows} rows\n`);
  }
}

const ratios = [];
for (const [key, msA] of best.A) {
  const msB = best.B.get(key);
  if (msB === undefined) continue;
  ratios.push({ key, msA, msB, ratio: msA / msB });
}
if (ratios.length === 0) {
  process.stderr.write('bench-prebuild: no rows in common\n');
  process.exit(1);
}
ratios.sort((x, y) => x.ratio - y.ratio);
for (const { key, msA, msB, ratio } of ratios) {
  process.stdout.write(`${key.padEnd(44)} A ${msA.toFixed(4).padStart(9)} ms  B ${msB.toFixed(4).padStart(9)} ms  B/A speed ${ratio.toFixed(3)}\n`);
}
const geomean = Math.exp(ratios.reduce((s, x) => s + Math.log(x.ratio), 0) / ratios.length);
const byKernel = new Map();
for (const x of ratios) {
  const kernel = x.key.split(' ')[0];
  byKernel.set(kernel, [...(byKernel.get(kernel) ?? []), Math.log(x.ratio)]);
}
const kernelLine = [...byKernel].map(([k, logs]) => `${k} ${Math.exp(logs.reduce((s, v) => s + v, 0) / logs.length).toFixed(3)}`);
process.stdout.write(`per kernel (geomean B/A speed): ${kernelLine.join(', ')}\n`);
process.stdout.write(
  `B/A speed: geomean ${geomean.toFixed(3)} over ${ratios.length} rows, worst ${ratios[0].ratio.toFixed(3)} (${ratios[0].key}), ` +
    `best ${ratios[ratios.length - 1].ratio.toFixed(3)}; ${rounds} rounds each, interleaved\n`,
);
process.exit(geomean >= minRatio ? 0 : 1);
