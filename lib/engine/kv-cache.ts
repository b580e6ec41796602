// Per-sequence KV cache: for every layer, K and V as IEEE half [nKvHeads, capacity, headDim].
import type { KvCacheShape } from '../kernels/ops.js';

export class ContextOverflowError extends RangeError {
  override name = 'ContextOverflowError';
}

export class KvCache {
  readonly shape: KvCacheShape;
  readonly k: Uint16Array[]; // per layer [nKvHeads, capacity, headDim]
  readonly v: Uint16Array[];
  /** Positions [0, length) hold valid entries. */
  length = 0;

  constructor(nLayer: number, nKvHeads: number, headDim: number, capacity: number) {
    this.shape = { nKvHeads, headDim, capacity };
    const n = nKvHeads * capacity * headDim;
    this.k = Array.from({ length: nLayer }, () => new Uint16Array(n));
    this.v = Array.from({ length: nLayer }, () => new Uint16Array(n));
  }

  get capacity(): number {
    return this.shape.capacity;
  }

  /** Throws ContextOverflowError when `n` more tokens do not fit. */
  reserve(n: number): void {
    if (this.length + n > this.capacity)
      throw new ContextOverflowError(`context full: ${this.length} tokens cached + ${n} new > contextSize ${this.capacity}`);
  }

  /** Forgets everything from position `pos` on (e.g. to re-run a changed suffix). */
  truncate(pos: number): void {
    if (pos < 0 || pos > this.length) throw new RangeError(`KvCache.truncate: ${pos} is outside [0, ${this.length}]`);
    this.length = pos;
  }

  get bytes(): number {
    return this.k.reduce((a, x) => a + x.byteLength * 2, 0);
  }
}
