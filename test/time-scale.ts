/**
 * The suite's wall-clock bounds (test timeouts, waits, "answers within N ms" deadlines) times
 * BITLLM_TEST_TIME_SCALE (default 1). scripts/test-arm64.sh sets 10: under qemu-aarch64 the same work takes
 * 3-10× longer (docs/shipping.md), so a deadline written for native speed would fail on emulation, not on a
 * defect. Nothing else reads it; it never loosens a check that is not about time.
 */
export const TIME_SCALE = timeScale(process.env.BITLLM_TEST_TIME_SCALE);

function timeScale(v: string | undefined): number {
  if (v === undefined || v === '') return 1;
  const s = Number(v);
  if (!Number.isFinite(s) || s < 1) throw new Error(`BITLLM_TEST_TIME_SCALE must be a number >= 1, got ${JSON.stringify(v)}`);
  return s;
}

/** `ms` of wall clock at native speed, scaled by TIME_SCALE. */
export function scaledMs(ms: number): number {
  return ms * TIME_SCALE;
}
