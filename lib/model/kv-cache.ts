// Per-sequence KV cache: for every layer, K and V rows [nKvHeads, capacity, headDim] stored as IEEE half
// ('f16', default) or as Q8_0-style blocks of 32 int8 codes + an fp16 scale ('q8', 34 bytes per 32 values).
import { type KvCacheShape, kvCacheBytesQ8, kvCacheElements } from '../kernels/ops.js';

export type KvType = 'f16' | 'q8';

export class ContextOverflowError extends RangeError {
  override name = 'ContextOverflowError';
}

export class KvCache {
  readonly shape: KvCacheShape;
  /** Per layer: f16 → Uint16Array [nKvHeads, capacity, headDim]; q8 → Uint8Array [nKvHeads, capacity, headDim/32·34]. */
  readonly k: Uint16Array[] | Uint8Array[];
  readonly v: Uint16Array[] | Uint8Array[];
  /** Positions [0, length) hold valid entries. */
  length = 0;

  constructor(nLayer: number, nKvHeads: number, headDim: number, capacity: number, readonly type: KvType = 'f16') {
    this.shape = { nKvHeads, headDim, capacity };
    if (type === 'q8') {
      if (headDim % 32 !== 0) throw new RangeError(`KvCache: q8 needs a head size that is a multiple of 32, got ${headDim}`);
      const n = kvCacheBytesQ8(this.shape);
      this.k = Array.from({ length: nLayer }, () => new Uint8Array(n));
      this.v = Array.from({ length: nLayer }, () => new Uint8Array(n));
    } else {
      const n = kvCacheElements(this.shape);
      this.k = Array.from({ length: nLayer }, () => new Uint16Array(n));
      this.v = Array.from({ length: nLayer }, () => new Uint16Array(n));
    }
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
    let total = 0;
    for (let l = 0; l < this.k.length; l++) total += this.k[l]!.byteLength + this.v[l]!.byteLength;
    return total;
  }
}
