// Formats a RequestProfile (options.profile) as a table for humans: ms per token by op class, then the
// overhead outside the kernels, for prefill and decode side by side.
import type { PhaseProfile, RequestProfile } from '../engine/generate.js';

function rows(p: PhaseProfile): Array<[string, number]> {
  const out: Array<[string, number]> = Object.entries(p.ops).filter(([, v]) => v > 0);
  out.sort((a, b) => b[1] - a[1]);
  for (const [k, v] of Object.entries(p.overhead)) out.push([`overhead: ${k}`, v]);
  return out;
}

export function formatProfile(prof: RequestProfile): string {
  const phases = (['prefill', 'decode'] as const).filter((k) => prof[k]);
  const lines: string[] = [];
  for (const k of phases) {
    const p = prof[k]!;
    lines.push(`${k}: ${p.tokens} tokens, ${p.wallMsPerToken.toFixed(3)} ms/token, overhead outside the kernels ${p.overheadPct.toFixed(2)} %`);
    for (const [name, ms] of rows(p)) {
      const pct = (100 * ms) / p.wallMsPerToken;
      lines.push(`  ${name.padEnd(22)} ${ms.toFixed(3).padStart(9)} ms  ${pct.toFixed(1).padStart(5)} %`);
    }
  }
  return lines.join('\n') + '\n';
}
