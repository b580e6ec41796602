import { describe, expect, it } from 'vitest';

import { Sampler, SamplerError, argmax, logprobsOf, topKFinite } from '../lib/engine/sampler.js';
import { rng } from './helpers.js';

const logits = () => Float32Array.from([1, 3, 2, 0.5, 2.9, -1]);

describe('Sampler', () => {
  it('greedy picks the argmax', () => {
    expect(new Sampler({ temperature: 0 }).sample(logits())).toBe(1);
  });

  it('same seed gives the same tokens; different seeds differ somewhere', () => {
    const run = (seed: number) => {
      const s = new Sampler({ temperature: 1, topK: 0, topP: 1, minP: 0, seed });
      return Array.from({ length: 50 }, () => s.sample(logits()));
    };
    expect(run(7)).toEqual(run(7));
    expect(run(7)).not.toEqual(run(8));
  });

  it('topK 1 is greedy whatever the temperature', () => {
    const s = new Sampler({ temperature: 5, topK: 1, seed: 1 });
    for (let i = 0; i < 20; i++) expect(s.sample(logits())).toBe(1);
  });

  it('topP keeps only the nucleus', () => {
    const s = new Sampler({ temperature: 1, topK: 0, topP: 0.5, minP: 0, seed: 3 });
    const seen = new Set(Array.from({ length: 200 }, () => s.sample(logits())));
    expect([...seen].every((t) => t === 1 || t === 4)).toBe(true);
  });

  it('minP drops tokens far below the best', () => {
    const s = new Sampler({ temperature: 1, topK: 0, topP: 1, minP: 0.3, seed: 3 });
    const seen = new Set(Array.from({ length: 200 }, () => s.sample(logits())));
    expect([...seen].sort()).toEqual([1, 2, 4]);
  });

  it('samples in proportion to softmax(logits / T)', () => {
    const s = new Sampler({ temperature: 1, topK: 0, topP: 1, minP: 0, seed: 11 });
    const l = Float32Array.from([0, Math.log(3)]);
    let ones = 0;
    for (let i = 0; i < 4000; i++) ones += s.sample(l.slice()) === 1 ? 1 : 0;
    expect(ones / 4000).toBeCloseTo(0.75, 1);
  });

  it('logit bias can ban or force tokens', () => {
    expect(new Sampler({ temperature: 0, logitBias: { 1: -Infinity } }).sample(logits())).toBe(4);
    expect(new Sampler({ temperature: 0, logitBias: new Map([[5, 100]]) }).sample(logits())).toBe(5);
    expect(() => new Sampler({ temperature: 0, logitBias: { 99: 1 } }).sample(logits())).toThrow(/outside the vocabulary/);
  });

  it('repetition, frequency and presence penalties lower seen tokens', () => {
    const s = new Sampler({ temperature: 0, repeatPenalty: 2 });
    s.accept(1);
    expect(s.sample(logits())).toBe(4); // 3/2 = 1.5 < 2.9
    const f = new Sampler({ temperature: 0, frequencyPenalty: 0.1 });
    f.accept(1);
    f.accept(1);
    expect(f.sample(logits())).toBe(4); // 3 - 0.2 = 2.8 < 2.9
    const p = new Sampler({ temperature: 0, presencePenalty: 0.05 });
    p.accept(1);
    expect(p.sample(logits())).toBe(1); // 2.95 > 2.9
  });

  it('rejects NaN and out-of-range options with a message naming the option', () => {
    expect(() => new Sampler({ temperature: NaN })).toThrow(SamplerError);
    expect(() => new Sampler({ topP: 1.5 })).toThrow(/topP/);
    expect(() => new Sampler({ topK: 2.5 })).toThrow(/topK/);
    expect(() => new Sampler({ logitBias: { [-1]: 1 } })).toThrow(/logitBias/);
  });

  it('argmax returns the first maximum', () => {
    expect(argmax(Float32Array.of(1, 5, 5, 2))).toBe(1);
  });
});

describe('topKFinite (the sampler\'s candidates)', () => {
  /** Brute force: finite logits sorted by (logit descending, id ascending), the first k ids. */
  const reference = (x: Float32Array, k: number): number[] =>
    Array.from(x.keys()).filter((i) => x[i]! > -Infinity).sort((a, b) => x[b]! - x[a]! || a - b).slice(0, k);
  const run = (x: Float32Array, k: number): number[] => {
    const out = new Int32Array(x.length);
    const c = topKFinite(x, k, out);
    return Array.from(out.subarray(0, c)).sort((a, b) => x[b]! - x[a]! || a - b);
  };

  it('keeps exactly the k best by (logit, lower id) on random, tied, banned and NaN logits', () => {
    const r = rng(11);
    for (let t = 0; t < 300; t++) {
      const n = 1 + Math.floor(r() * 600);
      const levels = [2, 5, 1000][t % 3]!; // heavy ties at 2 and 5 distinct values
      const x = Float32Array.from({ length: n }, () => Math.floor(r() * levels) - levels / 2);
      for (let i = 0; i < n; i++) {
        const u = r();
        if (u < 0.1) x[i] = -Infinity;
        else if (u < 0.12) x[i] = NaN;
        else if (u < 0.13) x[i] = Infinity;
      }
      for (const k of [1, 2, 7, 40, n, n + 3]) expect(run(x, k), `n ${n} k ${k} levels ${levels}`).toEqual(reference(x, k));
    }
  });

  it('returns nothing when every logit is banned, and all finite ones when k exceeds them', () => {
    expect(run(Float32Array.of(-Infinity, NaN, -Infinity), 2)).toEqual([]);
    expect(run(Float32Array.of(-Infinity, 1, NaN, 3, 3), 40)).toEqual([3, 4, 1]);
    expect(run(Float32Array.of(5, 5, 5, 5), 2)).toEqual([0, 1]);
  });

  it('is what the sampler draws from at a 128k vocabulary: every top-40 token and no other', () => {
    const r = rng(3);
    const n = 128256;
    const x = Float32Array.from({ length: n }, () => (r() + r() + r() - 1.5) * 0.05); // nearly flat
    const top = new Set(reference(x, 40));
    expect(run(x, 40)).toEqual(reference(x, 40));
    const s = new Sampler({ seed: 9, temperature: 1, topK: 40, topP: 1, minP: 0 });
    const seen = new Set<number>();
    for (let i = 0; i < 2000; i++) {
      const t = s.sample(x.slice());
      expect(top.has(t), `token ${t}`).toBe(true);
      seen.add(t);
    }
    expect(seen.size).toBe(40);
  });

  it('logprobsOf: the top alternatives are the brute-force order with log-softmax values', () => {
    const r = rng(21);
    for (const levels of [3, 100000]) {
      const x = Float32Array.from({ length: 5000 }, () => Math.floor(r() * levels) / 7);
      let m = -Infinity;
      for (const v of x) m = Math.max(m, v);
      let sum = 0;
      for (const v of x) sum += Math.exp(v - m);
      const lse = m + Math.log(sum);
      for (const top of [1, 5, 20, 1500]) { // 1500: above the heap, the quickselect path
        const got = logprobsOf(x, 17, top);
        expect(got.top).toEqual(reference(x, top).map((id) => [id, x[id]! - lse]));
        expect(got.logprob).toBe(x[17]! - lse);
      }
    }
  });
});
