// Helpers shared by the bench/ scripts: option parsing and the prompts of `bitllm bench` (lib/cli/bench-model.ts).
import { join } from 'node:path';
import { tmpdir } from 'node:os';

export { promptIds } from '../dist/cli/bench-model.js';

/** The value after `name` in argv, or `def`. */
export function option(argv, name, def) {
  const i = argv.indexOf(name);
  return i >= 0 ? argv[i + 1] : def;
}

/** Arguments that are neither options nor an option's value. */
export function positionals(argv) {
  return argv.filter((a, i) => !a.startsWith('-') && (i === 0 || !argv[i - 1].startsWith('-')));
}

/** The synthetic 2B-4T b1.58 TQ2_0 model bench/families.mjs writes (the default of the throughput benches). */
export const DEFAULT_2B4T_TQ2 = join(tmpdir(), 'bitllm-models', 'families-2b4t-bitnet-tq2_0.gguf');

/** The families of bench/families.mjs: [family, synth type, architecture]. */
export const FAMILY_SYNTH = [
  ['b158', 'tq2_0', 'bitnet'], ['bitnet', 'q1_0', 'bitnet-1bit'], ['fbi', 'q1_0', 'fbi-llm'], ['onebit', 'q1_0', 'onebit'],
  ['a48', 'tq2_0', 'bitnet-a4.8'], ['fp16', 'f16', 'bitnet-f16'], ['billm', 'billm', 'billm'],
];

/** Where bench/families.mjs writes a family's synthetic model: the 2B-4T shape, the PTQ pair (fp16, billm) at ptqShape. */
export function familyFile(dir, family, ptqShape = '1b3') {
  const row = FAMILY_SYNTH.find(([f]) => f === family);
  if (!row) throw new Error(`unknown family '${family}' (known: ${FAMILY_SYNTH.map(([f]) => f).join(', ')})`);
  const [, type, arch] = row;
  const shape = family === 'fp16' || family === 'billm' ? ptqShape : '2b4t';
  return { file: join(dir, `families-${shape}-${arch}-${type}.gguf`), shape, type, arch };
}
