import { describe, expect, it } from 'vitest';

import { Sampler, SamplerError, argmax } from '../lib/engine/sampler.js';

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
