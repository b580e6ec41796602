// Prints the native source files of one group, space separated, for binding.gyp. Mirrors the globs
// in CMakeLists.txt: the file-name convention is the one source list both builds share.
//   node native/sources.cjs base|avx2|avx512|neon|neondot|addon
'use strict';
const fs = require('fs');
const path = require('path');

const root = __dirname;
const list = (dir, pred) =>
  fs
    .readdirSync(path.join(root, dir))
    .filter((f) => f.endsWith('.cpp') && pred(f))
    .sort()
    .map((f) => `native/${dir}/${f}`);

const groups = {
  base: () => [...list('runtime', () => true), ...list('kernels', (f) => f.endsWith('_scalar.cpp'))],
  avx2: () => list('kernels', (f) => f.endsWith('_avx2.cpp')),
  avx512: () => list('kernels', (f) => f.endsWith('_avx512.cpp')),
  neon: () => list('kernels', (f) => f.endsWith('_neon.cpp')),
  neondot: () => list('kernels', (f) => f.endsWith('_neondot.cpp')),
  addon: () => list('addon', () => true),
};

const group = process.argv[2];
if (!groups[group]) {
  process.stderr.write(`usage: node native/sources.cjs ${Object.keys(groups).join('|')}\n`);
  process.exit(2);
}
process.stdout.write(groups[group]().join(' '));
