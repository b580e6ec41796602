// BiLLM post-training binarization (arXiv 2402.04291; the reference code's BRAGPTQ.fasterquant) into
// a packed matrix, plus the calibration Hessian and the naive 1/2-bit baselines it is compared with.
//
// Algorithm (families.md §6), per 128-column block of W [M, K] in order:
//   1. salient columns: score_j = Σ_rows w² / U_jj² (U = upper Cholesky of H⁻¹; 'magnitude': Σ|w|);
//      candidates = the 50 best columns; for k = 1..49 the top-k are salient, the salient part and the
//      rest are each binarized order 2, and the k with the least squared error is kept (first on ties);
//   2. non-salient split: p over the 81 quantiles 0.10, 0.11, …, 0.90 (numpy 'linear') of |w| over the
//      block with the salient columns zeroed; group A ("concentrated") = non-salient |w| < p, group B
//      ("sparse") = non-salient |w| ≥ p, each binarized order 1; the p with least error is kept;
//   3. binarizer per row over the entries of a group: μ = mean, α = mean|x − μ|, b = μ + α·sign(x − μ);
//      order 2 repeats it on x − b and sums the two;
//   4. GPTQ error feedback: column i of the block has error e = (w − q)/U_ii, propagated to the
//      block's later columns (w_j −= e·U_ij) and, after the block, to all later columns.
// Deviations from the reference code, all forced by storing the result in bits:
//   - sign(0) := +1 (torch.sign(0) = 0 would be a third level): x = μ exactly maps to μ + α;
//   - the scalars are rounded to fp16 before the signs are taken and the second order is fitted to
//     the residual of the rounded first order, and the error feedback uses the stored (rounded) values;
//   - arithmetic is float64 (the reference runs float32 on the GPU).
import { floatToHalf, halfToFloat } from '../reference/numeric.js';
import { NotPositiveDefiniteError, dot, upperCholeskyOfInverse } from './linalg.js';

export const BILLM_BLOCK = 128;
/** Salient candidates per block (the reference's up_lim = 50: k = 1..49 is searched). */
export const BILLM_SALIENT_CANDIDATES = 50;
/** Quantiles 0.10 … 0.90 in steps of 0.01. */
export const BILLM_SPLIT_QUANTILES = 81;
/** Scalars per row per block, in this order (fp16): α1, α2, μ1, μ2, αA, μA, αB, μB. */
export const BILLM_SCALARS = 8;

/**
 * A BiLLM-binarized matrix W [M, K], K % 128 == 0, nb = K/128 blocks. Bits are LSB first: bit k of
 * a row is bit (k & 7) of byte k >> 3.
 *   salient  [K/8]        bit k = 1: column k is salient (shared by all rows).
 *   signs    [M, K/8]     bit = 1: +1, 0: −1. Salient columns: the first-order sign s1; other
 *                          columns: the sign of the column's group binarizer.
 *   groups   [M, K/8]     bit = 1: group B ("sparse", |w| ≥ p), 0: group A ("concentrated"). Always 0 at
 *                          salient columns.
 *   residual [M, R]       the second-order signs s2 of the salient columns only: row m, block j at byte
 *                          m·R + roff[j], ceil(nS_j/8) bytes, bit i = the i-th salient column of block j
 *                          (ascending); unused bits 0. R and roff follow from `salient` (billmResidualLayout).
 *   scalars  [M, nb, 8]   fp16 bits (α1, α2, μ1, μ2, αA, μA, αB, μB) of row m, block j.
 * Weight (m, k) of block j: salient (μ1 + α1·s1) + (μ2 + α2·s2); group A μA + αA·s; group B μB + αB·s.
 */
export interface BillmMatrix {
  M: number;
  K: number;
  salient: Uint8Array; // [K/8]
  signs: Uint8Array; // [M, K/8]
  groups: Uint8Array; // [M, K/8]
  residual: Uint8Array; // [M, R]
  scalars: Uint16Array; // [M, K/128, 8]
}

export interface BillmResidualLayout {
  /** Salient columns per block, [nb]. */
  counts: Int32Array;
  /** Byte offset of block j's residual bits within a row, [nb + 1]; offsets[nb] = stride R. */
  offsets: Int32Array;
  stride: number;
}

export function billmResidualLayout(salient: Uint8Array, K: number): BillmResidualLayout {
  checkBlockK('billmResidualLayout', K);
  if (salient.length !== K / 8) throw new RangeError(`billmResidualLayout: salient mask has ${salient.length} bytes, K = ${K} needs ${K / 8}`);
  const nb = K / BILLM_BLOCK;
  const counts = new Int32Array(nb);
  const offsets = new Int32Array(nb + 1);
  for (let j = 0; j < nb; j++) {
    let c = 0;
    for (let i = 0; i < 16; i++) c += popcount8(salient[16 * j + i]!);
    counts[j] = c;
    offsets[j + 1] = offsets[j]! + Math.ceil(c / 8);
  }
  return { counts, offsets, stride: offsets[nb]! };
}

function popcount8(v: number): number {
  let c = 0;
  for (let x = v; x; x &= x - 1) c++;
  return c;
}

function checkBlockK(fn: string, K: number): void {
  if (!Number.isInteger(K) || K < BILLM_BLOCK || K % BILLM_BLOCK !== 0) throw new RangeError(`${fn}: K = ${K} must be a positive multiple of ${BILLM_BLOCK}`);
}

/** Byte sizes of the planes of an M×K BiLLM matrix with residual stride R. */
export function billmPlaneBytes(M: number, K: number, R: number): { salient: number; signs: number; groups: number; residual: number; scalars: number } {
  return { salient: K / 8, signs: (M * K) / 8, groups: (M * K) / 8, residual: M * R, scalars: M * (K / BILLM_BLOCK) * BILLM_SCALARS * 2 };
}

export type BillmPlane = 'salient' | 'signs' | 'groups' | 'residual' | 'scalars';

/** A malformed plane of a BiLLM matrix: `plane` names it (the GGUF decoder maps it to its tensor), `detail` says what. */
export class BillmPlaneError extends RangeError {
  override name = 'BillmPlaneError';
  constructor(readonly plane: BillmPlane, readonly detail: string) {
    super(`BiLLM matrix: ${detail}`);
  }
}

/**
 * Throws a BillmPlaneError (a RangeError) unless `m` is a well-formed BiLLM matrix: plane lengths match the shape and
 * the salient mask, group bits are 0 at salient columns, residual padding bits are 0, every fp16
 * scalar is finite (a NaN or ±Inf scalar would turn its row's outputs into NaN).
 */
export function validateBillmMatrix(m: BillmMatrix): BillmResidualLayout {
  const { M, K } = m;
  const fail = (plane: BillmPlane, detail: string): never => {
    throw new BillmPlaneError(plane, detail);
  };
  if (!Number.isInteger(M) || M < 1) throw new RangeError(`BiLLM matrix: M = ${M} must be a positive integer`);
  const layout = billmResidualLayout(m.salient, K);
  const want = billmPlaneBytes(M, K, layout.stride);
  const got = { salient: m.salient.length, signs: m.signs.length, groups: m.groups.length, residual: m.residual.length, scalars: m.scalars.length * 2 };
  for (const key of Object.keys(want) as Array<keyof typeof want>)
    if (got[key] !== want[key]) fail(key, `${key} has ${got[key]} bytes, [${M}, ${K}] needs ${want[key]}`);
  const bad = firstNonFiniteHalf(m.scalars);
  if (bad >= 0) {
    const per = (K / BILLM_BLOCK) * BILLM_SCALARS;
    const name = ['a1', 'a2', 'mu1', 'mu2', 'aA', 'muA', 'aB', 'muB'][bad % BILLM_SCALARS];
    fail('scalars', `scalar ${bad} (row ${Math.floor(bad / per)}, block ${Math.floor((bad % per) / BILLM_SCALARS)}, ${name}) is ${(m.scalars[bad]! & 0x3ff) ? 'NaN' : (m.scalars[bad]! & 0x8000 ? '-Infinity' : 'Infinity')}, not a finite number`);
  }
  const rowBytes = K / 8;
  for (let r = 0; r < M; r++)
    for (let i = 0; i < rowBytes; i++)
      if (m.groups[r * rowBytes + i]! & m.salient[i]!) fail('groups', `row ${r} has group bits set at salient columns (byte ${i})`);
  const nb = K / BILLM_BLOCK;
  for (let r = 0; r < M; r++)
    for (let j = 0; j < nb; j++) {
      const c = layout.counts[j]!;
      const o = r * layout.stride + layout.offsets[j]!;
      const nbytes = layout.offsets[j + 1]! - layout.offsets[j]!;
      for (let b = 0; b < nbytes; b++) {
        const used = Math.min(8, c - 8 * b);
        const padMask = used >= 8 ? 0 : 0xff & ~((1 << used) - 1);
        if (m.residual[o + b]! & padMask) fail('residual', `row ${r} block ${j} has residual padding bits set`);
      }
    }
  return layout;
}

/** Index of the first fp16 value that is NaN or ±Inf (exponent bits all ones), or -1. */
function firstNonFiniteHalf(h: Uint16Array): number {
  for (let i = 0; i < h.length; i++) if ((h[i]! & 0x7c00) === 0x7c00) return i;
  return -1;
}

/** Bits per weight of the packed matrix, every plane counted (salient mask, sign, group, residual, fp16 scalars). */
export function billmBitsPerWeight(m: BillmMatrix): number {
  const bytes = m.salient.length + m.signs.length + m.groups.length + m.residual.length + m.scalars.length * 2;
  return (8 * bytes) / (m.M * m.K);
}

const bit = (plane: Uint8Array, base: number, k: number): number => (plane[base + (k >> 3)]! >> (k & 7)) & 1;

/** The dense weights a BiLLM matrix stands for, [M, K] (each value computed in float64, rounded once to float32). */
export function billmDequantize(m: BillmMatrix): Float32Array {
  const { M, K } = m;
  const layout = validateBillmMatrix(m);
  const nb = K / BILLM_BLOCK;
  const out = new Float32Array(M * K);
  const sc = new Float64Array(BILLM_SCALARS);
  for (let r = 0; r < M; r++) {
    const rowBase = (r * K) / 8;
    for (let j = 0; j < nb; j++) {
      for (let i = 0; i < BILLM_SCALARS; i++) sc[i] = halfToFloat(m.scalars[(r * nb + j) * BILLM_SCALARS + i]!);
      const [a1, a2, mu1, mu2, aA, muA, aB, muB] = sc as unknown as number[] as [number, number, number, number, number, number, number, number];
      const resBase = r * layout.stride + layout.offsets[j]!;
      let si = 0;
      for (let c = 0; c < BILLM_BLOCK; c++) {
        const k = j * BILLM_BLOCK + c;
        const s = bit(m.signs, rowBase, k) ? 1 : -1;
        let v: number;
        if (bit(m.salient, 0, k)) {
          const s2 = bit(m.residual, resBase, si++) ? 1 : -1;
          v = mu1 + a1 * s + (mu2 + a2 * s2);
        } else if (bit(m.groups, rowBase, k)) {
          v = muB + aB * s;
        } else {
          v = muA + aA * s;
        }
        out[r * K + k] = v;
      }
    }
  }
  return out;
}

// ---------------------------------------------------------------- calibration Hessian

/** Fewest calibration tokens a Hessian of K input columns needs: K (below that H = 2/n·XᵀX is singular). */
export const billmMinTokens = (K: number): number => K;

/** Accumulates H = 2/n·Σ_t x_t·x_tᵀ over calibration tokens (GPTQ add_batch), in float64. */
export class HessianAccumulator {
  private readonly sum: Float64Array; // [K, K], lower triangle accumulated
  private n = 0;
  private static readonly CHUNK = 64;

  constructor(readonly K: number) {
    if (!Number.isInteger(K) || K < 1) throw new RangeError(`HessianAccumulator: K = ${K} must be a positive integer`);
    this.sum = new Float64Array(K * K);
  }

  get tokens(): number {
    return this.n;
  }

  /** Adds token rows x [n, K] (row-major). */
  add(x: Float32Array | Float64Array, n: number): void {
    const K = this.K;
    if (!Number.isInteger(n) || n < 0 || x.length < n * K) throw new RangeError(`HessianAccumulator.add: x has ${x.length} values, [${n}, ${K}] needs ${n * K}`);
    const C = HessianAccumulator.CHUNK;
    const xt = new Float64Array(K * C); // [K, C]: tokens of the chunk contiguous per column
    for (let t0 = 0; t0 < n; t0 += C) {
      const c = Math.min(C, n - t0);
      for (let t = 0; t < c; t++)
        for (let i = 0; i < K; i++) {
          const v = x[(t0 + t) * K + i]!;
          if (!Number.isFinite(v)) throw new RangeError(`HessianAccumulator.add: token ${t0 + t} column ${i} is ${v}`);
          xt[i * C + t] = v;
        }
      for (let i = 0; i < K; i++) {
        const ri = i * C;
        for (let j = 0; j <= i; j++) this.sum[i * K + j] += dot(xt, ri, xt, j * C, c);
      }
    }
    this.n += n;
  }

  /** H = 2/n·Σ x·xᵀ, [K, K] symmetric. Throws when fewer than billmMinTokens(K) tokens were added. */
  finalize(): Float64Array {
    const K = this.K;
    const need = billmMinTokens(K);
    if (this.n < need) throw tooFewTokens(K, this.n);
    const h = new Float64Array(K * K);
    const f = 2 / this.n;
    for (let i = 0; i < K; i++)
      for (let j = 0; j <= i; j++) {
        const v = this.sum[i * K + j]! * f;
        h[i * K + j] = v;
        h[j * K + i] = v;
      }
    return h;
  }
}

export function hessianAccumulator(K: number): HessianAccumulator {
  return new HessianAccumulator(K);
}

// ---------------------------------------------------------------- binarizer

const sgn = (v: number): number => (v >= 0 ? 1 : -1); // sign(0) := +1 (see the header)
const roundHalf = (v: number): number => {
  const h = floatToHalf(v);
  if ((h & 0x7c00) === 0x7c00) throw new RangeError(`billmQuantize: scalar ${v} does not fit fp16`);
  return h;
};

/** One binarizer fit: μ, α (and their fp16 bits when rounded). */
interface Fit {
  mu: number;
  alpha: number;
}

/** μ = mean(x), α = mean|x − μ| over x[0, n); with `round` both are rounded to fp16 (α from the rounded μ). */
function fit(x: Float64Array, n: number, round: boolean): Fit {
  if (n === 0) return { mu: 0, alpha: 0 };
  let s = 0;
  for (let i = 0; i < n; i++) s += x[i]!;
  let mu = s / n;
  if (round) mu = halfToFloat(roundHalf(mu));
  let a = 0;
  for (let i = 0; i < n; i++) a += Math.abs(x[i]! - mu);
  let alpha = a / n;
  if (round) alpha = halfToFloat(roundHalf(alpha));
  return { mu, alpha };
}

/** Squared error of the order-2 binarization of x[0, n) (unrounded scalars). */
function binarizeError2(x: Float64Array, n: number, tmp: Float64Array): number {
  if (n === 0) return 0;
  const f1 = fit(x, n, false);
  for (let i = 0; i < n; i++) tmp[i] = x[i]! - (f1.mu + f1.alpha * sgn(x[i]! - f1.mu));
  const f2 = fit(tmp, n, false);
  let e = 0;
  for (let i = 0; i < n; i++) {
    const d = tmp[i]! - (f2.mu + f2.alpha * sgn(tmp[i]! - f2.mu));
    e += d * d;
  }
  return e;
}

/**
 * Total order-2 error over all rows of binarizing the entries of block `wb` [M, 128] whose `sel` code
 * equals `code`, each row on its own.
 */
function groupError2(wb: Float64Array, M: number, sel: Uint8Array, code: number, vals: Float64Array, tmp: Float64Array): number {
  let e = 0;
  for (let r = 0; r < M; r++) {
    let n = 0;
    const o = r * BILLM_BLOCK;
    for (let c = 0; c < BILLM_BLOCK; c++) if (sel[o + c] === code) vals[n++] = wb[o + c]!;
    e += binarizeError2(vals, n, tmp);
  }
  return e;
}

/**
 * The non-salient values of each row of a block, sorted ascending, with prefix sums of x and x²: the
 * split search then costs O(log n) per row and threshold instead of a pass over the row.
 */
export interface SortedRows {
  M: number;
  n: number; // non-salient values per row
  vals: Float64Array; // [M, n]
  p1: Float64Array; // [M, n + 1] Σ x over vals[0, i)
  p2: Float64Array; // [M, n + 1] Σ x²
}

export function sortedNonSalientRows(wb: Float64Array, M: number, isSalient: Uint8Array): SortedRows {
  let n = 0;
  for (let c = 0; c < BILLM_BLOCK; c++) if (!isSalient[c]) n++;
  const vals = new Float64Array(M * n), p1 = new Float64Array(M * (n + 1)), p2 = new Float64Array(M * (n + 1));
  for (let r = 0; r < M; r++) {
    const row = vals.subarray(r * n, (r + 1) * n);
    let i = 0;
    for (let c = 0; c < BILLM_BLOCK; c++) if (!isSalient[c]) row[i++] = wb[r * BILLM_BLOCK + c]!;
    row.sort();
    const o = r * (n + 1);
    for (let k = 0; k < n; k++) {
      p1[o + k + 1] = p1[o + k]! + row[k]!;
      p2[o + k + 1] = p2[o + k]! + row[k]! * row[k]!;
    }
  }
  return { M, n, vals, p1, p2 };
}

/** First i in [lo, hi) with a[base + i] > x (strict) or ≥ x (not strict); hi if none. */
function searchSorted(a: Float64Array, base: number, lo: number, hi: number, x: number, strict: boolean): number {
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    const v = a[base + mid]!;
    if (strict ? v > x : v >= x) hi = mid;
    else lo = mid + 1;
  }
  return lo;
}

/** Σ |v − mu| over the sorted range [lo, hi) of row r. */
function absDeviation(rows: SortedRows, r: number, lo: number, hi: number, mu: number): number {
  if (hi <= lo) return 0;
  const base = r * rows.n, o = r * (rows.n + 1);
  const m = searchSorted(rows.vals, base, lo, hi, mu, false);
  const above = rows.p1[o + hi]! - rows.p1[o + m]! - mu * (hi - m);
  const below = mu * (m - lo) - (rows.p1[o + m]! - rows.p1[o + lo]!);
  return above + below;
}

/**
 * Order-1 binarization error of the split at p, summed over rows: group A = {|v| < p}, group B = the
 * rest. For a group of n values with sums S1, S2 and D = Σ|v − μ| (μ = S1/n, α = D/n, signs
 * sign(v − μ) with sign(0) := +1): Σ (v − μ − α·s)² = S2 − S1²/n − D²/n.
 */
export function splitError(rows: SortedRows, p: number): number {
  const { n } = rows;
  let total = 0;
  for (let r = 0; r < rows.M; r++) {
    const base = r * n, o = r * (n + 1);
    const lo = searchSorted(rows.vals, base, 0, n, -p, true); // v ≤ −p below
    const hi = Math.max(lo, searchSorted(rows.vals, base, 0, n, p, false)); // v < p below
    // A = [lo, hi)
    const nA = hi - lo;
    if (nA > 0) {
      const s1 = rows.p1[o + hi]! - rows.p1[o + lo]!, s2 = rows.p2[o + hi]! - rows.p2[o + lo]!;
      const d = absDeviation(rows, r, lo, hi, s1 / nA);
      total += Math.max(0, s2 - (s1 * s1) / nA - (d * d) / nA);
    }
    // B = [0, lo) ∪ [hi, n)
    const nB = n - nA;
    if (nB > 0) {
      const s1 = rows.p1[o + lo]! + rows.p1[o + n]! - rows.p1[o + hi]!;
      const s2 = rows.p2[o + lo]! + rows.p2[o + n]! - rows.p2[o + hi]!;
      const mu = s1 / nB;
      const d = absDeviation(rows, r, 0, lo, mu) + absDeviation(rows, r, hi, n, mu);
      total += Math.max(0, s2 - (s1 * s1) / nB - (d * d) / nB);
    }
  }
  return total;
}

// Codes of the per-entry selection of a block in the salient search.
const SEL_REST = 0;
const SEL_S = 1; // salient

/** numpy.quantile(sorted, q) with the default 'linear' method. */
function quantileSorted(sorted: Float64Array, q: number): number {
  const pos = q * (sorted.length - 1);
  const lo = Math.floor(pos);
  const hi = Math.min(lo + 1, sorted.length - 1);
  return sorted[lo]! + (sorted[hi]! - sorted[lo]!) * (pos - lo);
}

export interface BillmOptions {
  /** Damping added to the Hessian diagonal, as a fraction of its mean (GPTQ percdamp). Default 0.01. */
  percDamp?: number;
  /** Salient column score: 'hessian' (w²/U_jj², the default) or 'magnitude' (|w|). */
  salientMetric?: 'hessian' | 'magnitude';
  /** Tokens behind H, when H was not built by HessianAccumulator (which checks this itself): fewer than billmMinTokens(K) is an error. */
  calibrationTokens?: number;
}

function tooFewTokens(K: number, n: number): RangeError {
  const need = billmMinTokens(K);
  return new RangeError(`BiLLM calibration: a Hessian of K = ${K} input columns needs at least ${need} tokens (H = 2/n·XᵀX has rank ≤ n), got ${n}; add ${need - n} more`);
}

/**
 * BiLLM-binarizes W [M, K] (row-major, K % 128 == 0) with the calibration Hessian H [K, K]
 * (2/n·Σxxᵀ, e.g. from hessianAccumulator). Deterministic. Cost: O(K³) for U, O(M·K²) for the
 * error feedback and ~260 binarizations of every 128-column block.
 */
export function billmQuantize(W: Float32Array, M: number, K: number, H: Float64Array, opts: BillmOptions = {}): BillmMatrix {
  checkBlockK('billmQuantize', K);
  if (!Number.isInteger(M) || M < 1) throw new RangeError(`billmQuantize: M = ${M} must be a positive integer`);
  if (W.length !== M * K) throw new RangeError(`billmQuantize: W has ${W.length} values, [${M}, ${K}] needs ${M * K}`);
  if (H.length !== K * K) throw new RangeError(`billmQuantize: H has ${H.length} values, [${K}, ${K}] needs ${K * K}`);
  const percDamp = opts.percDamp ?? 0.01;
  if (!(percDamp >= 0) || !Number.isFinite(percDamp)) throw new RangeError(`billmQuantize: percDamp = ${percDamp} must be a finite number ≥ 0`);
  const metric = opts.salientMetric ?? 'hessian';
  if (opts.calibrationTokens !== undefined && opts.calibrationTokens < billmMinTokens(K)) throw tooFewTokens(K, opts.calibrationTokens);
  if (metric !== 'hessian' && metric !== 'magnitude') throw new RangeError(`billmQuantize: salientMetric '${String(metric)}' is not 'hessian' or 'magnitude'`);
  for (let i = 0; i < W.length; i++) if (!Number.isFinite(W[i]!)) throw new RangeError(`billmQuantize: W[${i}] is ${W[i]}`);
  for (let i = 0; i < H.length; i++) if (!Number.isFinite(H[i]!)) throw new RangeError(`billmQuantize: H[${i}] is ${H[i]}`);

  const w = Float64Array.from(W); // [M, K], updated by the error feedback
  const h = Float64Array.from(H);
  // Dead inputs (never active in calibration): H_jj = 1, column zeroed (GPTQ).
  for (let j = 0; j < K; j++)
    if (h[j * K + j] === 0) {
      h[j * K + j] = 1;
      for (let r = 0; r < M; r++) w[r * K + j] = 0;
    }
  let diagMean = 0;
  for (let j = 0; j < K; j++) diagMean += h[j * K + j]!;
  diagMean /= K;
  for (let j = 0; j < K; j++) h[j * K + j] += percDamp * diagMean;
  let U: Float64Array; // [K, K]
  try {
    U = upperCholeskyOfInverse(h, K);
  } catch (e) {
    if (e instanceof NotPositiveDefiniteError)
      throw new RangeError(`billmQuantize: the damped Hessian is not positive definite (${e.message}); use more calibration tokens or a larger percDamp (now ${percDamp})`);
    throw e;
  }

  const nb = K / BILLM_BLOCK;
  const rowBytes = K / 8;
  const salient = new Uint8Array(rowBytes);
  const signs = new Uint8Array(M * rowBytes);
  const groups = new Uint8Array(M * rowBytes);
  const scalars = new Uint16Array(M * nb * BILLM_SCALARS);
  const residualBlocks: Uint8Array[] = []; // per block [M, ceil(nS/8)]

  const wb = new Float64Array(M * BILLM_BLOCK); // block working copy [M, 128]
  const qb = new Float64Array(M * BILLM_BLOCK); // stored values of the block
  const err = new Float64Array(M * BILLM_BLOCK); // (w − q)/U_ii
  const sel = new Uint8Array(M * BILLM_BLOCK);
  const vals = new Float64Array(BILLM_BLOCK);
  const tmp = new Float64Array(BILLM_BLOCK);
  const absSorted = new Float64Array(M * BILLM_BLOCK);
  const score = new Float64Array(BILLM_BLOCK);

  for (let j = 0; j < nb; j++) {
    const c0 = j * BILLM_BLOCK;
    const c1 = c0 + BILLM_BLOCK;
    for (let r = 0; r < M; r++) wb.set(w.subarray(r * K + c0, r * K + c1), r * BILLM_BLOCK);

    // 1. Salient columns.
    for (let c = 0; c < BILLM_BLOCK; c++) {
      let s = 0;
      for (let r = 0; r < M; r++) {
        const v = wb[r * BILLM_BLOCK + c]!;
        s += metric === 'hessian' ? v * v : Math.abs(v);
      }
      if (metric === 'hessian') {
        const u = U[(c0 + c) * K + c0 + c]!;
        s /= u * u;
      }
      score[c] = s;
    }
    const order = Array.from({ length: BILLM_BLOCK }, (_, c) => c).sort((a, b) => score[b]! - score[a]! || a - b);
    let bestK = 1;
    let bestErr = Number.POSITIVE_INFINITY;
    for (let k = 1; k < BILLM_SALIENT_CANDIDATES; k++) {
      sel.fill(SEL_REST);
      for (let i = 0; i < k; i++) for (let r = 0; r < M; r++) sel[r * BILLM_BLOCK + order[i]!] = SEL_S;
      const e = groupError2(wb, M, sel, SEL_S, vals, tmp) + groupError2(wb, M, sel, SEL_REST, vals, tmp);
      if (e < bestErr) {
        bestErr = e;
        bestK = k;
      }
    }
    const isSalient = new Uint8Array(BILLM_BLOCK);
    for (let i = 0; i < bestK; i++) isSalient[order[i]!] = 1;

    // 2. Non-salient split at a quantile of |w| (salient columns counted as zeros).
    for (let r = 0; r < M; r++)
      for (let c = 0; c < BILLM_BLOCK; c++) absSorted[r * BILLM_BLOCK + c] = isSalient[c] ? 0 : Math.abs(wb[r * BILLM_BLOCK + c]!);
    absSorted.sort();
    const rows = sortedNonSalientRows(wb, M, isSalient);
    let bestP = 0;
    bestErr = Number.POSITIVE_INFINITY;
    for (let i = 0; i < BILLM_SPLIT_QUANTILES; i++) {
      const p = quantileSorted(absSorted, 0.1 + 0.01 * i);
      const e = splitError(rows, p);
      if (e < bestErr) {
        bestErr = e;
        bestP = p;
      }
    }

    // 3. Final fit with fp16 scalars; planes and stored values.
    const salientCols: number[] = [];
    for (let c = 0; c < BILLM_BLOCK; c++) if (isSalient[c]) salientCols.push(c);
    for (const c of salientCols) salient[(c0 + c) >> 3] |= 1 << ((c0 + c) & 7);
    const resBytes = Math.ceil(salientCols.length / 8);
    const res = new Uint8Array(M * resBytes);
    for (let r = 0; r < M; r++) {
      const o = r * BILLM_BLOCK;
      const rb = r * rowBytes;
      const sc = (r * nb + j) * BILLM_SCALARS;
      // Salient, order 2.
      let n = 0;
      for (const c of salientCols) vals[n++] = wb[o + c]!;
      const f1 = fit(vals, n, true);
      for (let i = 0; i < n; i++) tmp[i] = vals[i]! - (f1.mu + f1.alpha * sgn(vals[i]! - f1.mu));
      const f2 = fit(tmp, n, true);
      for (let i = 0; i < n; i++) {
        const c = salientCols[i]!;
        const s1 = sgn(vals[i]! - f1.mu);
        const s2 = sgn(tmp[i]! - f2.mu);
        if (s1 > 0) signs[rb + ((c0 + c) >> 3)] |= 1 << ((c0 + c) & 7);
        if (s2 > 0) res[r * resBytes + (i >> 3)] |= 1 << (i & 7);
        qb[o + c] = f1.mu + f1.alpha * s1 + (f2.mu + f2.alpha * s2);
      }
      // Groups A and B, order 1.
      const fits: Fit[] = [];
      for (const groupB of [false, true]) {
        n = 0;
        for (let c = 0; c < BILLM_BLOCK; c++) {
          if (isSalient[c]) continue;
          const inB = Math.abs(wb[o + c]!) >= bestP;
          if (groupB === inB) vals[n++] = wb[o + c]!;
        }
        fits.push(fit(vals, n, true));
      }
      const [fa, fb] = fits as [Fit, Fit];
      for (let c = 0; c < BILLM_BLOCK; c++) {
        if (isSalient[c]) continue;
        const v = wb[o + c]!;
        const inB = Math.abs(v) >= bestP;
        const f = inB ? fb : fa;
        const s = sgn(v - f.mu);
        const k = c0 + c;
        if (inB) groups[rb + (k >> 3)] |= 1 << (k & 7);
        if (s > 0) signs[rb + (k >> 3)] |= 1 << (k & 7);
        qb[o + c] = f.mu + f.alpha * s;
      }
      const stored = [f1.alpha, f2.alpha, f1.mu, f2.mu, fa.alpha, fa.mu, fb.alpha, fb.mu];
      for (let i = 0; i < BILLM_SCALARS; i++) scalars[sc + i] = floatToHalf(stored[i]!);
    }
    residualBlocks.push(res);

    // 4. Error feedback: inside the block column by column, then to the later blocks.
    for (let i = 0; i < BILLM_BLOCK; i++) {
      const urow = (c0 + i) * K + c0;
      const d = U[urow + i]!;
      for (let r = 0; r < M; r++) {
        const o = r * BILLM_BLOCK;
        const e = (wb[o + i]! - qb[o + i]!) / d;
        err[o + i] = e;
        if (e === 0) continue;
        for (let c = i + 1; c < BILLM_BLOCK; c++) wb[o + c] -= e * U[urow + c]!;
      }
    }
    if (c1 < K)
      for (let r = 0; r < M; r++) {
        const wr = r * K;
        for (let i = 0; i < BILLM_BLOCK; i++) {
          const e = err[r * BILLM_BLOCK + i]!;
          if (e === 0) continue;
          const urow = (c0 + i) * K;
          // K − c1 is a multiple of 128: no remainder.
          for (let c = c1; c < K; c += 4) {
            w[wr + c] -= e * U[urow + c]!;
            w[wr + c + 1] -= e * U[urow + c + 1]!;
            w[wr + c + 2] -= e * U[urow + c + 2]!;
            w[wr + c + 3] -= e * U[urow + c + 3]!;
          }
        }
      }
  }

  // Residual plane: per row the blocks' bytes one after another.
  const stride = residualBlocks.reduce((s, b) => s + b.length / M, 0);
  const residual = new Uint8Array(M * stride);
  let off = 0;
  for (const b of residualBlocks) {
    const nbytes = b.length / M;
    for (let r = 0; r < M; r++) residual.set(b.subarray(r * nbytes, (r + 1) * nbytes), r * stride + off);
    off += nbytes;
  }
  return { M, K, salient, signs, groups, residual, scalars };
}

// ---------------------------------------------------------------- naive baselines

/**
 * Round-to-nearest baselines without calibration, dense float weights [M, K]:
 *   bits 1: per row α = mean_k |w|, w' = α·sign(w) with sign(0) := +1 (XNOR-style absmean binarization);
 *   bits 2: per row Δ = max_k |w| / 1.5, w' = Δ·(clamp(floor(w/Δ), −2, 1) + 0.5): the nearest of the four
 *           symmetric levels {−1.5, −0.5, 0.5, 1.5}·Δ, so ±max|w| are represented exactly (Δ = 0: w' = 0).
 * Values computed in float64, rounded once to float32.
 */
export function absmaxQuantize(W: Float32Array, M: number, K: number, bits: 1 | 2): Float32Array {
  if (W.length !== M * K) throw new RangeError(`absmaxQuantize: W has ${W.length} values, [${M}, ${K}] needs ${M * K}`);
  if (bits !== 1 && bits !== 2) throw new RangeError(`absmaxQuantize: bits = ${String(bits)} must be 1 or 2`);
  const out = new Float32Array(M * K);
  for (let r = 0; r < M; r++) {
    const row = W.subarray(r * K, (r + 1) * K);
    if (bits === 1) {
      let s = 0;
      for (let k = 0; k < K; k++) s += Math.abs(row[k]!);
      const alpha = s / K;
      for (let k = 0; k < K; k++) out[r * K + k] = alpha * sgn(row[k]!);
    } else {
      let mx = 0;
      for (let k = 0; k < K; k++) mx = Math.max(mx, Math.abs(row[k]!));
      const delta = mx / 1.5;
      if (delta === 0) continue;
      for (let k = 0; k < K; k++) {
        const level = Math.min(1, Math.max(-2, Math.floor(row[k]! / delta)));
        out[r * K + k] = delta * (level + 0.5);
      }
    }
  }
  return out;
}
