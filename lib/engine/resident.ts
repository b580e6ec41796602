// Resident memory of this process, for `bitllm bench --json` (rss_mb) and the server's
// process_resident_memory_bytes.
import { readFileSync } from 'node:fs';

/**
 * Bytes resident: Node's figure (the rss field of /proc/self/stat), or, where that reads 0, VmRSS of
 * /proc/self/status. qemu-user emulates /proc/self/stat with rss 0 (arm64 under emulation, the suite's
 * scripts/test-arm64.sh); its /proc/self/status is the emulator's own, guest memory included. 0 only when
 * neither gives a figure (no procfs).
 */
export function residentBytes(): number {
  const rss = process.memoryUsage.rss();
  if (rss > 0) return rss;
  try {
    const m = /^VmRSS:\s*(\d+)\s*kB/m.exec(readFileSync('/proc/self/status', 'utf8'));
    return m ? Number(m[1]) * 1024 : 0;
  } catch {
    return 0;
  }
}
