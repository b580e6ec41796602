// The install test's smoke run (scripts/install-test.sh copies it into a consumer project that
// installed the bitllm tarball): loads the bundled BitNet b1.58 model through the public API,
// generates 8 tokens greedily and checks the text, and that the addon came from prebuilds/.
//   node smoke.mjs EXPECTED_TEXT [FEATURE=yes|no ...]   e.g. dotprod=no
// Prints one JSON line (the text, the addon file, glibc, CPU features); exits 1 on any mismatch.
import { createRequire } from 'node:module';
import { dirname, join, sep } from 'node:path';
import { fileURLToPath } from 'node:url';

import { cpuInfo, loadModel } from 'bitllm';

const [expected, ...featureChecks] = process.argv.slice(2);
if (expected === undefined) {
  process.stderr.write('usage: node smoke.mjs EXPECTED_TEXT [FEATURE=yes|no ...]\n');
  process.exit(2);
}
const packageDir = join(dirname(fileURLToPath(import.meta.resolve('bitllm'))), '..');

const model = await loadModel(join(packageDir, 'models', 'tiny-b158-tq2_0.gguf'), { threads: 1 });
let text = '';
for await (const chunk of model.generate('Once upon a time', { maxTokens: 8, temperature: 0 })) text += chunk.text;
await model.close();
// After loading: with no binary, loadModel's NativeError (bitllm's message) is what fails first.
const addon = createRequire(join(packageDir, 'package.json'))('node-gyp-build').resolve(packageDir);

const info = cpuInfo();
const glibc = process.report.getReport().header.glibcVersionRuntime ?? null;
process.stdout.write(`${JSON.stringify({ text, addon, glibc, arch: process.arch, features: info.features })}\n`);

const problems = [];
if (text !== expected) problems.push(`text ${JSON.stringify(text)} != expected ${JSON.stringify(expected)}`);
if (!addon.includes(`${sep}prebuilds${sep}linux-${process.arch}${sep}`)) problems.push(`addon ${addon} is not a prebuild`);
for (const check of featureChecks) {
  const [feature, want] = check.split('=');
  if (info.features.includes(feature) !== (want === 'yes')) problems.push(`feature ${feature} should be ${want}`);
}
if (problems.length > 0) {
  process.stderr.write(`smoke: ${problems.join('; ')}\n`);
  process.exit(1);
}
