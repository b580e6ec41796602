// Per-sequence KV cache: for every layer, K and V rows [nKvHeads, capacity, headDim] stored as IEEE half
// ('f16', default), as Q8_0-style blocks of 32 int8 codes + an fp16 scale ('q8', 34 bytes per 32 values), or
// as BitNet a4.8's 3-bit blocks ('q3', 14 bytes per 32 values).
import { type KvCacheShape, kvCacheBytesQ3, kvCacheBytesQ8, kvCacheElements } from '../kernels/ops.js';
import type { KvType } from './arch.js';

export type { KvType };

export class ContextOverflowError extends RangeError {
  override name = 'ContextOverflowError';
}

export class KvCache {
  readonly shape: KvCacheShape;
  /** Per layer: f16 → Uint16Array [nKvHeads, capacity, headDim]; q8 / q3 → Uint8Array [nKvHeads, capacity, headDim/32·34 or ·14]. */
  readonly k: Uint16Array[] | Uint8Array[];
  readonly v: Uint16Array[] | Uint8Array[];
  /** Positions [0, length) hold valid entries. */
  length = 0;

  constructor(nLayer: number, nKvHeads: number, headDim: number, capacity: number, readonly type: KvType = 'f16') {
    this.shape = { nKvHeads, headDim, capacity };
    if (type === 'q8' || type === 'q3') {
      if (headDim % 32 !== 0) throw new RangeError(`KvCache: ${type} needs a head size that is a multiple of 32, got ${headDim}`);
      const n = type === 'q8' ? kvCacheBytesQ8(this.shape) : kvCacheBytesQ3(this.shape);
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
