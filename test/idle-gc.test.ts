// The idle collector: one full collection after the delay with nothing to do, none while busy.
import { describe, expect, it } from 'vitest';

import { IdleCollector } from '../lib/engine/idle-gc.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('IdleCollector', () => {
  it('collects once after the idle delay; busy() before it cancels; idle() twice schedules one', async () => {
    const c = new IdleCollector(30);
    c.idle();
    c.idle();
    await sleep(80);
    expect(c.runs).toBe(1);
    c.idle();
    await sleep(5);
    c.busy();
    await sleep(60);
    expect(c.runs).toBe(1);
    c.idle();
    await sleep(80);
    expect(c.runs).toBe(2);
  });

  it('runs release once per idle period, after the delay, before the collection; busy() cancels it', async () => {
    const calls: number[] = [];
    const c = new IdleCollector(30, () => calls.push(c.runs));
    c.idle();
    await sleep(10);
    expect(calls).toEqual([]); // not at once: blocks freed between requests that follow each other are kept
    c.busy();
    await sleep(50);
    expect(calls).toEqual([]);
    c.idle();
    c.idle();
    await sleep(80);
    expect(calls).toEqual([1]); // runs was already counted when release ran
    expect(c.runs).toBe(1);
  });

  it('frees garbage: the finalizer of a dropped object runs after the collection', async () => {
    let finalized = false;
    const registry = new FinalizationRegistry(() => {
      finalized = true;
    });
    (() => {
      registry.register({ big: new Array(1000).fill(0) }, 0);
    })();
    const c = new IdleCollector(10);
    c.idle();
    for (let i = 0; i < 50 && !finalized; i++) await sleep(20);
    expect(c.runs).toBe(1);
    expect(finalized).toBe(true);
  });
});
