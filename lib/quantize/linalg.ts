// Dense float64 linear algebra for post-training quantization (GPTQ / BiLLM): Cholesky factors,
// triangular inverses and the upper Cholesky factor of an inverse. Matrices are row-major
// Float64Array [n, n]; every function returns a new array and leaves its input unchanged.

/** Raised when a matrix that must be symmetric positive definite is not (a pivot ≤ 0 or not finite). */
export class NotPositiveDefiniteError extends Error {
  constructor(readonly pivot: number, readonly value: number) {
    super(`matrix is not positive definite: pivot ${pivot} is ${value}`);
    this.name = 'NotPositiveDefiniteError';
  }
}

/** Σ_{k<n} a[ia + k]·b[ib + k], four partial sums (k mod 4) added as (s0 + s1) + (s2 + s3). */
export function dot(a: Float64Array, ia: number, b: Float64Array, ib: number, n: number): number {
  let s0 = 0, s1 = 0, s2 = 0, s3 = 0;
  let k = 0;
  for (; k + 4 <= n; k += 4) {
    s0 += a[ia + k]! * b[ib + k]!;
    s1 += a[ia + k + 1]! * b[ib + k + 1]!;
    s2 += a[ia + k + 2]! * b[ib + k + 2]!;
    s3 += a[ia + k + 3]! * b[ib + k + 3]!;
  }
  for (; k < n; k++) s0 += a[ia + k]! * b[ib + k]!;
  return s0 + s1 + (s2 + s3);
}

function checkSquare(fn: string, a: Float64Array, n: number): void {
  if (!Number.isInteger(n) || n < 1 || a.length !== n * n) throw new RangeError(`${fn}: expected [${n}, ${n}] = ${n * n} values, got ${a.length}`);
}

/**
 * Lower Cholesky factor L of a symmetric positive definite A (A = L·Lᵀ); only the lower triangle
 * of A is read. Row-oriented (each row of L is a dot product with earlier rows: contiguous reads).
 */
export function choleskyLower(a: Float64Array, n: number): Float64Array {
  checkSquare('choleskyLower', a, n);
  const l = new Float64Array(n * n);
  for (let i = 0; i < n; i++) {
    const ri = i * n;
    for (let j = 0; j <= i; j++) {
      const rj = j * n;
      const s = a[ri + j]! - dot(l, ri, l, rj, j);
      if (j === i) {
        if (!(s > 0) || !Number.isFinite(s)) throw new NotPositiveDefiniteError(i, s);
        l[ri + i] = Math.sqrt(s);
      } else {
        l[ri + j] = s / l[rj + j]!;
      }
    }
  }
  return l;
}

/** Inverse of a lower triangular matrix with a nonzero diagonal (the result is lower triangular). */
export function invertLowerTriangular(l: Float64Array, n: number): Float64Array {
  checkSquare('invertLowerTriangular', l, n);
  // Solve L·X = I column by column, written row-wise: X[i, j] = (δij − Σ_{j≤k<i} L[i,k]·X[k,j]) / L[i,i].
  const x = new Float64Array(n * n);
  for (let i = 0; i < n; i++) {
    const ri = i * n;
    const d = l[ri + i]!;
    // Row i of X: start from −Σ_k L[i,k]·X[k, :] over k < i (rows of X are contiguous).
    for (let k = 0; k < i; k++) {
      const lik = l[ri + k]!;
      if (lik === 0) continue;
      const rk = k * n;
      let j = 0;
      for (; j + 4 <= k + 1; j += 4) {
        x[ri + j] -= lik * x[rk + j]!;
        x[ri + j + 1] -= lik * x[rk + j + 1]!;
        x[ri + j + 2] -= lik * x[rk + j + 2]!;
        x[ri + j + 3] -= lik * x[rk + j + 3]!;
      }
      for (; j <= k; j++) x[ri + j] -= lik * x[rk + j]!;
    }
    x[ri + i] = 1;
    for (let j = 0; j <= i; j++) x[ri + j] = x[ri + j]! / d;
  }
  return x;
}

/** A⁻¹ of a symmetric positive definite A, through its Cholesky factor (A⁻¹ = L⁻ᵀ·L⁻¹). */
export function invertSpd(a: Float64Array, n: number): Float64Array {
  const li = invertLowerTriangular(choleskyLower(a, n), n);
  const out = new Float64Array(n * n);
  // out[i, j] = Σ_{k ≥ max(i,j)} Li[k, i]·Li[k, j]
  for (let k = 0; k < n; k++) {
    const rk = k * n;
    for (let i = 0; i <= k; i++) {
      const v = li[rk + i]!;
      if (v === 0) continue;
      const ri = i * n;
      for (let j = 0; j <= k; j++) out[ri + j] += v * li[rk + j]!;
    }
  }
  return out;
}

/**
 * Upper Cholesky factor U of A⁻¹ (A⁻¹ = Uᵀ·U, U upper triangular with a positive diagonal) for a
 * symmetric positive definite A: what GPTQ gets from cholesky(cholesky_inverse(cholesky(A)), upper).
 * Computed with one factorization: with P the order reversal, P·A·P = L'·L'ᵀ gives
 * A⁻¹ = P·L'⁻ᵀ·L'⁻¹·P = Uᵀ·U for U = P·L'⁻¹·P, which is upper triangular (U is unique).
 */
export function upperCholeskyOfInverse(a: Float64Array, n: number): Float64Array {
  checkSquare('upperCholeskyOfInverse', a, n);
  const rev = new Float64Array(n * n);
  for (let i = 0; i < n; i++)
    for (let j = 0; j < n; j++) rev[i * n + j] = a[(n - 1 - i) * n + (n - 1 - j)]!;
  const li = invertLowerTriangular(choleskyLower(rev, n), n);
  const u = new Float64Array(n * n);
  for (let i = 0; i < n; i++)
    for (let j = i; j < n; j++) u[i * n + j] = li[(n - 1 - i) * n + (n - 1 - j)]!;
  return u;
}
