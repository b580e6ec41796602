import { afterEach, describe, expect, it, vi } from 'vitest';

import { residentBytes } from '../lib/engine/resident.js';

describe('residentBytes (bench --json rss_mb, process_resident_memory_bytes)', () => {
  afterEach(() => vi.restoreAllMocks());

  it("is Node's resident set size where Node knows it, and a real figure everywhere (qemu-user included)", () => {
    const node = process.memoryUsage.rss();
    const r = residentBytes();
    expect(r).toBeGreaterThan(10 << 20);
    if (node > 0) expect(Math.abs(r - node) / node).toBeLessThan(0.25);
  });

  it("reads VmRSS from /proc/self/status where Node's figure is 0 (qemu-user emulates /proc/self/stat's rss as 0)", () => {
    const before = residentBytes();
    vi.spyOn(process.memoryUsage, 'rss').mockReturnValue(0);
    const r = residentBytes();
    expect(r % 1024).toBe(0); // kB, as /proc/self/status gives it
    expect(Math.abs(r - before) / before).toBeLessThan(0.25);
  });
});
