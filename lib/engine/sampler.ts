// Token sampling: penalties, logit bias, temperature, top-k, top-p, min-p, seeded randomness.
// Same seed and same logits ⇒ same tokens.
import { binding } from '../native.js';
import { refArgmax, refTopKFinite } from '../reference/select.js';

interface NativeSelect {
  argmax(x: Float32Array): number;
  topK(x: Float32Array, k: number, out: Int32Array): number;
}
let select: NativeSelect | null | undefined;

/**
 * The addon's selections over a logits row (native/runtime/logits_select.h, the same ids as the references),
 * or null where the addon does not load: a greedy pick over 128k logits takes ~0.17 ms in TypeScript, a
 * per-row cost the worker pays while the other kernel thread waits (8 streams: ~1.5 ms a step).
 */
function nativeSelect(): NativeSelect | null {
  if (select !== undefined) return select;
  try {
    select = { argmax: binding<NativeSelect['argmax']>('logitsArgmax'), topK: binding<NativeSelect['topK']>('logitsTopK') };
  } catch {
    select = null;
  }
  return select;
}

export interface SamplerOptions {
  /** 0 = greedy (argmax). Default 0.8. */
  temperature?: number;
  /** Keep the k most likely tokens; 0 = off. Default 40. */
  topK?: number;
  /** Nucleus: keep the smallest set whose probability mass reaches p; 1 = off. Default 0.95. */
  topP?: number;
  /** Drop tokens whose probability is below minP × the top probability; 0 = off. Default 0.05. */
  minP?: number;
  /** Divide positive / multiply negative logits of recently seen tokens; 1 = off. */
  repeatPenalty?: number;
  /** Subtract frequencyPenalty × count of each seen token. */
  frequencyPenalty?: number;
  /** Subtract presencePenalty once for each seen token. */
  presencePenalty?: number;
  /** How many recent tokens the penalties look at (default 64; -1 = all). */
  penaltyWindow?: number;
  /** Added to the logit of a token id (-Infinity bans it). */
  logitBias?: Record<number, number> | Map<number, number>;
  /** RNG seed; default: random. */
  seed?: number;
}

/**
 * Candidate ids and probabilities of a sample() call, shared by every sampler of the thread (sample() runs to
 * completion, never interleaved): no allocation proportional to the vocabulary per token or per request (a
 * per-request pair was 1.5 MB of allocator churn per request at a 128k vocabulary).
 */
let scratch = { idx: new Int32Array(0), probs: new Float64Array(0) };

export class SamplerError extends RangeError {
  override name = 'SamplerError';
}

function checkNumber(name: string, v: number | undefined, lo: number, hi: number): void {
  if (v === undefined) return;
  if (typeof v !== 'number' || Number.isNaN(v) || v < lo || v > hi)
    throw new SamplerError(`sampler: ${name} must be a number in [${lo}, ${hi}], got ${String(v)}`);
}

/** xoshiro128** — small, fast, seedable. */
class Rng {
  private s = new Uint32Array(4);
  constructor(seed: number) {
    let x = (seed >>> 0) ^ 0x9e3779b9;
    for (let i = 0; i < 4; i++) {
      // splitmix32 to fill the state
      x = (x + 0x9e3779b9) >>> 0;
      let z = x;
      z = Math.imul(z ^ (z >>> 16), 0x85ebca6b);
      z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35);
      this.s[i] = (z ^ (z >>> 16)) >>> 0;
    }
  }
  next(): number {
    const s = this.s;
    const result = Math.imul(rotl(Math.imul(s[1]!, 5), 7), 9) >>> 0;
    const t = s[1]! << 9;
    s[2]! ^= s[0]!;
    s[3]! ^= s[1]!;
    s[1]! ^= s[2]!;
    s[0]! ^= s[3]!;
    s[2]! ^= t;
    s[3] = rotl(s[3]!, 11);
    return result / 4294967296;
  }
}
const rotl = (x: number, k: number) => ((x << k) | (x >>> (32 - k))) >>> 0;

export class Sampler {
  readonly temperature: number;
  readonly topK: number;
  readonly topP: number;
  readonly minP: number;
  readonly repeatPenalty: number;
  readonly frequencyPenalty: number;
  readonly presencePenalty: number;
  readonly penaltyWindow: number;
  private readonly bias: Array<[number, number]>;
  private readonly rng: Rng;
  private readonly history: number[] = [];

  constructor(opts: SamplerOptions = {}) {
    checkNumber('temperature', opts.temperature, 0, 100);
    checkNumber('topK', opts.topK, 0, 1e9);
    checkNumber('topP', opts.topP, 0, 1);
    checkNumber('minP', opts.minP, 0, 1);
    checkNumber('repeatPenalty', opts.repeatPenalty, 0, 100);
    checkNumber('frequencyPenalty', opts.frequencyPenalty, -100, 100);
    checkNumber('presencePenalty', opts.presencePenalty, -100, 100);
    checkNumber('penaltyWindow', opts.penaltyWindow, -1, 1e9);
    checkNumber('seed', opts.seed, 0, 2 ** 53);
    if (opts.topK !== undefined && !Number.isInteger(opts.topK)) throw new SamplerError('sampler: topK must be an integer');
    this.temperature = opts.temperature ?? 0.8;
    this.topK = opts.topK ?? 40;
    this.topP = opts.topP ?? 0.95;
    this.minP = opts.minP ?? 0.05;
    this.repeatPenalty = opts.repeatPenalty ?? 1;
    this.frequencyPenalty = opts.frequencyPenalty ?? 0;
    this.presencePenalty = opts.presencePenalty ?? 0;
    this.penaltyWindow = opts.penaltyWindow ?? 64;
    const bias = opts.logitBias instanceof Map ? [...opts.logitBias] : Object.entries(opts.logitBias ?? {}).map(([k, v]) => [Number(k), v] as [number, number]);
    for (const [id, v] of bias) {
      if (!Number.isInteger(id) || id < 0) throw new SamplerError(`sampler: logitBias key ${id} is not a token id`);
      if (typeof v !== 'number' || Number.isNaN(v)) throw new SamplerError(`sampler: logitBias[${id}] must be a number`);
    }
    this.bias = bias;
    this.rng = new Rng(opts.seed ?? Math.floor(Math.random() * 2 ** 32));
  }

  /** Records tokens (prompt or generated) for the penalties. */
  accept(token: number): void {
    this.history.push(token);
  }

  /** Picks the next token from logits [vocab]; modifies `logits` in place. */
  sample(logits: Float32Array): number {
    const n = logits.length;
    for (const [id, v] of this.bias) {
      if (id >= n) throw new SamplerError(`sampler: logitBias token ${id} is outside the vocabulary (${n})`);
      logits[id] = logits[id]! + v;
    }
    this.applyPenalties(logits);
    if (this.temperature === 0) return argmax(logits);

    // Candidates: the k largest finite logits (ties: lower id), sorted descending.
    if (scratch.idx.length < n) scratch = { idx: new Int32Array(n), probs: new Float64Array(n) };
    const k = this.topK > 0 ? Math.min(this.topK, n) : n;
    const { idx, probs } = scratch;
    const count = topCandidates(logits, k, idx);
    if (count === 0) return argmax(logits);
    const sorted = Array.from(idx.subarray(0, count)).sort((a, b) => logits[b]! - logits[a]! || a - b);
    // Softmax with temperature.
    const max = logits[sorted[0]!]!;
    let sum = 0;
    for (let i = 0; i < sorted.length; i++) {
      const p = Math.exp((logits[sorted[i]!]! - max) / this.temperature);
      probs[i] = p;
      sum += p;
    }
    let m = sorted.length;
    for (let i = 0; i < m; i++) probs[i]! /= sum;
    if (this.minP > 0) {
      const cut = probs[0]! * this.minP;
      let j = 1;
      while (j < m && probs[j]! >= cut) j++;
      m = j;
    }
    if (this.topP < 1) {
      let acc = 0;
      let j = 0;
      while (j < m) {
        acc += probs[j]!;
        j++;
        if (acc >= this.topP) break;
      }
      m = j;
    }
    let total = 0;
    for (let i = 0; i < m; i++) total += probs[i]!;
    let r = this.rng.next() * total;
    for (let i = 0; i < m; i++) {
      r -= probs[i]!;
      if (r < 0) return sorted[i]!;
    }
    return sorted[m - 1]!;
  }

  private applyPenalties(logits: Float32Array): void {
    if (this.repeatPenalty === 1 && this.frequencyPenalty === 0 && this.presencePenalty === 0) return;
    const start = this.penaltyWindow < 0 ? 0 : Math.max(0, this.history.length - this.penaltyWindow);
    const counts = new Map<number, number>();
    for (let i = start; i < this.history.length; i++) {
      const t = this.history[i]!;
      counts.set(t, (counts.get(t) ?? 0) + 1);
    }
    for (const [t, c] of counts) {
      if (t < 0 || t >= logits.length) continue;
      let v = logits[t]!;
      if (this.repeatPenalty !== 1) v = v > 0 ? v / this.repeatPenalty : v * this.repeatPenalty;
      v -= c * this.frequencyPenalty + this.presencePenalty;
      logits[t] = v;
    }
  }
}

export function argmax(x: Float32Array): number {
  const sel = nativeSelect();
  return sel ? sel.argmax(x) : refArgmax(x);
}

/** Up to this k, top-k is one pass with a k-entry heap; above it, a sort of every candidate. */
const TOP_K_HEAP_MAX = 1024;

/**
 * Writes to out[0..c) the ids of the c = min(k, #finite) largest finite logits, unordered: the first k by
 * (logit descending, id ascending), so ties at the cut keep the lower ids (lib/reference/select.ts
 * refTopKFinite: one pass with a k-entry min-heap; the native one skips 16 logits at a time while none beats
 * the heap's root). At a 128k vocabulary and k = 40: 0.24 ms in TypeScript, ~0.03 ms native.
 */
export function topKFinite(logits: Float32Array, k: number, out: Int32Array): number {
  const sel = nativeSelect();
  return sel && k >= 1 ? sel.topK(logits, k, out) : refTopKFinite(logits, k, out);
}

/**
 * The ids of the k largest finite logits by (logit descending, id ascending), unordered, into out[0..count);
 * returns count. k ≤ TOP_K_HEAP_MAX: topKFinite (out needs k entries); above, every finite id sorted by
 * that order (out needs logits.length; the caller sorts its candidates anyway).
 */
function topCandidates(logits: Float32Array, k: number, out: Int32Array): number {
  if (k <= TOP_K_HEAP_MAX) return topKFinite(logits, k, out);
  let count = 0;
  for (let i = 0; i < logits.length; i++) if (logits[i]! > -Infinity) out[count++] = i;
  if (k >= count) return count;
  out.subarray(0, count).sort((a, b) => logits[b]! - logits[a]! || a - b);
  return k;
}

/** A sampled token's log-probability and the most likely alternatives, best first (ties: lower id first). */
export interface TokenLogprobs {
  logprob: number;
  top: Array<[token: number, logprob: number]>;
}

/**
 * Log-probabilities under the model's own distribution: log-softmax of the logits as the model produced them
 * (before logit bias, penalties and temperature), for `token` and the `top` most likely tokens (finite logits;
 * ties: lower id first).
 */
export function logprobsOf(logits: Float32Array, token: number, top: number): TokenLogprobs {
  const n = logits.length;
  const max = logits[argmax(logits)]!;
  let sum = 0;
  for (let i = 0; i < n; i++) sum += Math.exp(logits[i]! - max);
  const lse = max + Math.log(sum);
  const best: Array<[number, number]> = [];
  if (top > 0) {
    const k = Math.min(top, n);
    const ids = new Int32Array(k <= TOP_K_HEAP_MAX ? k : n);
    const chosen = Array.from(ids.subarray(0, topCandidates(logits, k, ids))).sort((a, b) => logits[b]! - logits[a]! || a - b);
    for (const id of chosen) best.push([id, logits[id]! - lse]);
  }
  return { logprob: logits[token]! - lse, top: best };
}
