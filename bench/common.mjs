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
