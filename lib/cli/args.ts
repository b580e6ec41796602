// Minimal command-line parsing: positionals, --flag, --key value, --key=value, -k value.
export interface ParsedArgs {
  positionals: string[];
  options: Map<string, string | true>;
}

export class UsageError extends Error {
  override name = 'UsageError';
}

export function parseArgs(argv: string[], valued: ReadonlySet<string>): ParsedArgs {
  const positionals: string[] = [];
  const options = new Map<string, string | true>();
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === '--') {
      positionals.push(...argv.slice(i + 1));
      break;
    }
    if (a.startsWith('-') && a.length > 1 && !/^-\d/.test(a)) {
      const eq = a.indexOf('=');
      const key = (eq > 0 ? a.slice(0, eq) : a).replace(/^--?/, '');
      if (eq > 0) options.set(key, a.slice(eq + 1));
      else if (valued.has(key)) {
        const v = argv[++i];
        if (v === undefined) throw new UsageError(`option ${a} needs a value`);
        options.set(key, v);
      } else options.set(key, true);
    } else positionals.push(a);
  }
  return { positionals, options };
}

export function intList(value: string | true | undefined, name: string, fallback: number[]): number[] {
  if (value === undefined) return fallback;
  if (value === true) throw new UsageError(`--${name} needs a value`);
  const out = value.split(',').map((s) => Number(s.trim()));
  if (out.some((n) => !Number.isInteger(n) || n < 1)) throw new UsageError(`--${name}: expected positive integers, got '${value}'`);
  return out;
}
