// References for the sampler's selections over a row of logits (native/runtime/logits_select.h has the same
// contracts; lib/engine/sampler.ts runs the native ones when the addon loads): comparisons only, so the
// native ids are these ids exactly.

/** The index of the first largest logit above -Infinity (NaN never); 0 when there is none. */
export function refArgmax(x: Float32Array): number {
  let best = 0;
  let bv = -Infinity;
  for (let i = 0; i < x.length; i++) {
    if (x[i]! > bv) {
      bv = x[i]!;
      best = i;
    }
  }
  return best;
}

/**
 * Writes to out[0..c) the ids of the c = min(k, #finite) largest finite logits, unordered: the first k by
 * (logit descending, id ascending), so ties at the cut keep the lower ids. One pass over the logits with a
 * min-heap of the best k so far (its root the worst kept: lowest logit, then highest id); a later id never
 * displaces an equal logit. At a 128k vocabulary and k = 40: ~0.1 ms where the old filter + quickselect took
 * ~1 ms per sampled token.
 */
export function refTopKFinite(logits: Float32Array, k: number, out: Int32Array): number {
  const n = logits.length;
  let c = 0;
  // worse(a, b): id a ranks below id b.
  const worse = (a: number, b: number): boolean => logits[a]! < logits[b]! || (logits[a] === logits[b] && a > b);
  const siftDown = (i: number): void => {
    for (;;) {
      const l = 2 * i + 1;
      if (l >= c) return;
      const r = l + 1;
      const m = r < c && worse(out[r]!, out[l]!) ? r : l;
      if (!worse(out[m]!, out[i]!)) return;
      const t = out[i]!;
      out[i] = out[m]!;
      out[m] = t;
      i = m;
    }
  };
  let i = 0;
  for (; i < n && c < k; i++) {
    if (!(logits[i]! > -Infinity)) continue; // -Infinity (banned) and NaN are never candidates
    out[c] = i;
    for (let j = c++; j > 0; ) {  // sift up
      const p = (j - 1) >> 1;
      if (!worse(out[j]!, out[p]!)) break;
      const t = out[j]!;
      out[j] = out[p]!;
      out[p] = t;
      j = p;
    }
  }
  if (c < k) return c;
  let floor = logits[out[0]!]!;
  for (; i < n; i++) {
    const v = logits[i]!;
    if (v > floor) {  // strictly: an equal logit has a higher id than the root and ranks below it
      out[0] = i;
      siftDown(0);
      floor = logits[out[0]!]!;
    }
  }
  return c;
}
