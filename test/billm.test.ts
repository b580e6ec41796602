// BiLLM: the float64 linear algebra, the calibration Hessian, the quantizer (structure, determinism,
// error vs the naive baselines), the packed format (bits, GGUF round trip) and the GEMM kernel on every
// ISA against the TypeScript reference, bit for bit.
import { describe, expect, it } from 'vitest';

import { GgufWriter, parseGguf } from '../lib/format/gguf.js';
import { billmGemm, packBillmTiles } from '../lib/kernels/billm.js';
import { KernelContext } from '../lib/kernels/context.js';
import {
  type BillmMatrix, BILLM_BLOCK, BILLM_SCALARS, absmaxQuantize, billmBitsPerWeight, billmDequantize, billmMinTokens,
  billmQuantize, billmResidualLayout, hessianAccumulator, sortedNonSalientRows, splitError, validateBillmMatrix,
} from '../lib/quantize/billm.js';
import { type BillmTensor, decodeBillmTensors, encodeBillmTensors } from '../lib/quantize/billm-gguf.js';
import { choleskyLower, invertSpd, upperCholeskyOfInverse } from '../lib/quantize/linalg.js';
import { type QuantizedActivations, refActQuantI8 } from '../lib/reference/act_quant.js';
import { br16BitsPerWeight, refBillmGemm, refPackBillmTiles } from '../lib/reference/billm.js';
import { floatToHalf, halfToFloat } from '../lib/reference/numeric.js';
import { contextsPerIsa, expectSameBits, randInt, randomNormal, rng } from './helpers.js';

const contexts = contextsPerIsa();

// ---------------------------------------------------------------- helpers

/** A random SPD matrix A = XᵀX/n + εI from n correlated rows (a realistic calibration Hessian). */
function calibration(r: () => number, n: number, K: number): { x: Float32Array; H: Float64Array } {
  const base = randomNormal(r, n * K);
  const x = new Float32Array(n * K);
  // Correlate neighbouring columns and give columns different scales (outlier channels).
  for (let t = 0; t < n; t++)
    for (let k = 0; k < K; k++) {
      const scale = k % 17 === 0 ? 6 : 1 + (k % 5) * 0.25;
      x[t * K + k] = scale * (base[t * K + k]! + 0.5 * (k > 0 ? base[t * K + k - 1]! : 0));
    }
  const acc = hessianAccumulator(K);
  acc.add(x, n);
  return { x, H: acc.finalize() };
}

/** Σ_t ‖(W − Ŵ)·x_t‖² over the calibration tokens. */
function outputError(W: Float32Array, Wq: Float32Array, M: number, K: number, x: Float32Array, n: number): number {
  let e = 0;
  for (let t = 0; t < n; t++)
    for (let m = 0; m < M; m++) {
      let d = 0;
      for (let k = 0; k < K; k++) d += (W[m * K + k]! - Wq[m * K + k]!) * x[t * K + k]!;
      e += d * d;
    }
  return e;
}

const weightError = (a: Float32Array, b: Float32Array): number => a.reduce((s, v, i) => s + (v - b[i]!) ** 2, 0);

/** A random well-formed packed matrix; nS per block cycles through `counts` (0 … 128 salient columns). */
function randomBillm(r: () => number, M: number, K: number, counts = [0, 1, 7, 8, 9, 49, 64, 65, 100, 128]): BillmMatrix {
  const nb = K / BILLM_BLOCK;
  const rowBytes = K / 8;
  const salient = new Uint8Array(rowBytes);
  for (let j = 0; j < nb; j++) {
    const n = counts[(j + randInt(r, 0, counts.length - 1)) % counts.length]!;
    const cols = Array.from({ length: BILLM_BLOCK }, (_, c) => c);
    for (let i = cols.length - 1; i > 0; i--) {
      const s = randInt(r, 0, i);
      [cols[i], cols[s]] = [cols[s]!, cols[i]!];
    }
    for (const c of cols.slice(0, n)) salient[(j * BILLM_BLOCK + c) >> 3] |= 1 << (c & 7);
  }
  const layout = billmResidualLayout(salient, K);
  const signs = Uint8Array.from({ length: M * rowBytes }, () => randInt(r, 0, 255));
  const groups = Uint8Array.from({ length: M * rowBytes }, (_, i) => randInt(r, 0, 255) & ~salient[i % rowBytes]!);
  const residual = new Uint8Array(M * layout.stride);
  for (let m = 0; m < M; m++)
    for (let j = 0; j < nb; j++)
      for (let i = 0; i < layout.counts[j]!; i++)
        if (r() < 0.5) residual[m * layout.stride + layout.offsets[j]! + (i >> 3)] |= 1 << (i & 7);
  const scalars = Uint16Array.from({ length: M * nb * BILLM_SCALARS }, () => floatToHalf(0.05 * randomNormal(r, 1)[0]!));
  return { M, K, salient, signs, groups, residual, scalars };
}

/** The same matrix with rows `zeroRows` all zero (every bit and scalar 0). */
function withZeroRows(w: BillmMatrix, zeroRows: number[]): BillmMatrix {
  const out = { ...w, signs: w.signs.slice(), groups: w.groups.slice(), residual: w.residual.slice(), scalars: w.scalars.slice() };
  const rowBytes = w.K / 8, stride = w.residual.length / w.M, ns = (w.K / BILLM_BLOCK) * BILLM_SCALARS;
  for (const m of zeroRows) {
    out.signs.fill(0, m * rowBytes, (m + 1) * rowBytes);
    out.groups.fill(0, m * rowBytes, (m + 1) * rowBytes);
    out.residual.fill(0, m * stride, (m + 1) * stride);
    out.scalars.fill(0, m * ns, (m + 1) * ns);
  }
  return out;
}

function activations(r: () => number, B: number, K: number, kind: 'normal' | 'extreme' | 'zero'): QuantizedActivations {
  const x = kind === 'zero' ? new Float32Array(B * K) : randomNormal(r, B * K, 2);
  if (kind === 'extreme') for (let i = 0; i < x.length; i++) x[i] = r() < 0.5 ? -1 : r() < 0.5 ? 1 : x[i]!;
  return refActQuantI8(x, B, K);
}

// ---------------------------------------------------------------- linear algebra

describe('float64 linear algebra', () => {
  const r = rng(11);
  const n = 37;
  const { H } = calibration(r, 80, n);

  it('choleskyLower reproduces A = L·Lᵀ', () => {
    const L = choleskyLower(H, n);
    for (let i = 0; i < n; i++)
      for (let j = 0; j < n; j++) {
        let s = 0;
        for (let k = 0; k < n; k++) s += L[i * n + k]! * L[j * n + k]!;
        expect(Math.abs(s - H[i * n + j]!)).toBeLessThan(1e-9 * (1 + Math.abs(H[i * n + j]!)));
      }
  });

  it('upperCholeskyOfInverse is upper triangular with Uᵀ·U = A⁻¹', () => {
    const U = upperCholeskyOfInverse(H, n);
    const inv = invertSpd(H, n);
    for (let i = 0; i < n; i++) {
      expect(U[i * n + i]!).toBeGreaterThan(0);
      for (let j = 0; j < i; j++) expect(U[i * n + j]).toBe(0);
    }
    for (let i = 0; i < n; i++)
      for (let j = 0; j < n; j++) {
        let s = 0;
        for (let k = 0; k < n; k++) s += U[k * n + i]! * U[k * n + j]!;
        expect(Math.abs(s - inv[i * n + j]!)).toBeLessThan(1e-9 * (1 + Math.abs(inv[i * n + j]!)));
      }
    // and A·A⁻¹ = I
    for (let i = 0; i < n; i++)
      for (let j = 0; j < n; j++) {
        let s = 0;
        for (let k = 0; k < n; k++) s += H[i * n + k]! * inv[k * n + j]!;
        expect(Math.abs(s - (i === j ? 1 : 0))).toBeLessThan(1e-8);
      }
  });

  it('a matrix that is not positive definite is rejected with the pivot', () => {
    expect(() => choleskyLower(Float64Array.of(1, 2, 2, 1), 2)).toThrow(/not positive definite: pivot 1/);
  });
});

// ---------------------------------------------------------------- Hessian

describe('hessianAccumulator', () => {
  it('finalizes to 2/n·Σ x·xᵀ over all added chunks', () => {
    const r = rng(5);
    const K = 9, n = 150;
    const x = randomNormal(r, n * K);
    const acc = hessianAccumulator(K);
    acc.add(x.subarray(0, 70 * K), 70);
    acc.add(x.subarray(70 * K), 80);
    expect(acc.tokens).toBe(n);
    const H = acc.finalize();
    for (let i = 0; i < K; i++)
      for (let j = 0; j < K; j++) {
        let s = 0;
        for (let t = 0; t < n; t++) s += x[t * K + i]! * x[t * K + j]!;
        expect(H[i * K + j]!).toBeCloseTo((2 / n) * s, 10);
      }
  });

  it('refuses a Hessian from fewer tokens than input columns and says how many it needs', () => {
    const acc = hessianAccumulator(256);
    acc.add(new Float32Array(100 * 256).fill(1), 100);
    expect(billmMinTokens(256)).toBe(256);
    expect(() => acc.finalize()).toThrow(/needs at least 256 tokens.*got 100; add 156 more/);
    const H = new Float64Array(256 * 256);
    for (let i = 0; i < 256; i++) H[i * 257] = 1;
    expect(() => billmQuantize(new Float32Array(256), 1, 256, H, { calibrationTokens: 64 })).toThrow(/needs at least 256 tokens.*got 64/);
  });
});

// ---------------------------------------------------------------- quantizer

describe('billmQuantize', () => {
  const r = rng(2024);
  const M = 24, K = 256, n = 320;
  const { x, H } = calibration(r, n, K);
  const W = randomNormal(r, M * K, 0.02);
  const q = billmQuantize(W, M, K, H);

  it('packs a well-formed matrix with 1..49 salient columns per block', () => {
    const layout = validateBillmMatrix(q);
    for (const c of layout.counts) {
      expect(c).toBeGreaterThanOrEqual(1);
      expect(c).toBeLessThanOrEqual(49);
    }
    expect(q.signs.length).toBe((M * K) / 8);
    expect(q.scalars.length).toBe(M * (K / 128) * 8);
  });

  it('stores per row and block exactly the BiLLM value structure', () => {
    const d = billmDequantize(q);
    const layout = billmResidualLayout(q.salient, K);
    for (let m = 0; m < M; m++)
      for (let j = 0; j < K / BILLM_BLOCK; j++) {
        const s = Array.from(q.scalars.subarray((m * 2 + j) * 8, (m * 2 + j) * 8 + 8), halfToFloat);
        const [a1, a2, mu1, mu2, aA, muA, aB, muB] = s as [number, number, number, number, number, number, number, number];
        expect(a1).toBeGreaterThanOrEqual(0);
        expect(aA).toBeGreaterThanOrEqual(0);
        expect(aB).toBeGreaterThanOrEqual(0);
        const salientVals = new Set([1, -1].flatMap((s1) => [1, -1].map((s2) => Math.fround(mu1 + a1 * s1 + (mu2 + a2 * s2)))));
        const aVals = new Set([Math.fround(muA + aA), Math.fround(muA - aA)]);
        const bVals = new Set([Math.fround(muB + aB), Math.fround(muB - aB)]);
        let ns = 0;
        for (let c = 0; c < BILLM_BLOCK; c++) {
          const k = j * BILLM_BLOCK + c;
          const v = d[m * K + k]!;
          const isS = (q.salient[k >> 3]! >> (k & 7)) & 1;
          const isB = (q.groups[(m * K + k) >> 3]! >> (k & 7)) & 1;
          if (isS) {
            ns++;
            expect(salientVals.has(v)).toBe(true);
          } else expect((isB ? bVals : aVals).has(v)).toBe(true);
        }
        expect(ns).toBe(layout.counts[j]);
      }
  });

  it('is deterministic', () => {
    const again = billmQuantize(W, M, K, H);
    for (const key of ['salient', 'signs', 'groups', 'residual', 'scalars'] as const) expect(again[key]).toEqual(q[key]);
  });

  it('has less weight and output error than absmax W1 (Gaussian weights, a real Hessian)', () => {
    const d = billmDequantize(q);
    const w1 = absmaxQuantize(W, M, K, 1);
    // Measured (seed 2024): weight error 0.21 vs 0.36 of ‖W‖², output error 0.098 vs 0.346 of ‖W·X‖².
    expect(weightError(W, d)).toBeLessThan(0.7 * weightError(W, w1));
    expect(outputError(W, d, M, K, x, n)).toBeLessThan(0.4 * outputError(W, w1, M, K, x, n));
  });

  it('lowers the output error with the GPTQ error feedback (vs an identity Hessian)', () => {
    const I = new Float64Array(K * K);
    for (let i = 0; i < K; i++) I[i * K + i] = 1;
    const plain = billmDequantize(billmQuantize(W, M, K, I));
    // Measured: 0.098 (real H) vs 0.124 (H = I, no feedback across columns) of ‖W·X‖².
    expect(outputError(W, billmDequantize(q), M, K, x, n)).toBeLessThan(0.9 * outputError(W, plain, M, K, x, n));
  });

  it('counts every plane in its bits per weight', () => {
    const layout = billmResidualLayout(q.salient, K);
    const bytes = K / 8 + 2 * (M * K) / 8 + M * layout.stride + M * (K / 128) * 8 * 2;
    expect(billmBitsPerWeight(q)).toBe((8 * bytes) / (M * K));
    expect(billmBitsPerWeight(q)).toBeGreaterThan(3);
    expect(billmBitsPerWeight(q)).toBeLessThan(3.5);
    // BR16 (kernel layout): sign + group words 2 bits, s1 + s2 words 2·4·ceil(nS/4) bits per row and block,
    // fp16 scalars 1 bit, the mask; M = 24 pads to 32 rows.
    const tiles = refPackBillmTiles(q);
    const ng = layout.counts.reduce((s, c) => s + Math.ceil(c / 4), 0);
    expect(br16BitsPerWeight(tiles)).toBe((8 * (2 * (768 * (K / 128) + 16 * ng) + K / 8)) / (M * K));
  });

  it("accepts the 'magnitude' salient metric and rejects unknown ones", () => {
    const qm = billmQuantize(W, M, K, H, { salientMetric: 'magnitude' });
    validateBillmMatrix(qm);
    expect(weightError(W, billmDequantize(qm))).toBeLessThan(weightError(W, absmaxQuantize(W, M, K, 1)));
    expect(() => billmQuantize(W, M, K, H, { salientMetric: 'x' as 'hessian' })).toThrow(/salientMetric 'x'/);
  });

  it('zeroes dead input columns (H_jj = 0) like GPTQ', () => {
    const Hd = H.slice();
    for (let i = 0; i < K; i++) {
      Hd[5 * K + i] = 0;
      Hd[i * K + 5] = 0;
    }
    const qd = billmQuantize(W, M, K, Hd);
    validateBillmMatrix(qd);
    const d = billmDequantize(qd);
    expect(Number.isFinite(d.reduce((s, v) => s + v, 0))).toBe(true);
  });

  it('rejects bad shapes and non-finite values', () => {
    expect(() => billmQuantize(W, M, 200, H)).toThrow(/multiple of 128/);
    expect(() => billmQuantize(W.subarray(1), M, K, H)).toThrow(/W has/);
    expect(() => billmQuantize(W, M, K, H.subarray(1))).toThrow(/H has/);
    const bad = W.slice();
    bad[3] = Number.NaN;
    expect(() => billmQuantize(bad, M, K, H)).toThrow(/W\[3\] is NaN/);
    const indefinite = new Float64Array(K * K);
    for (let i = 0; i < K; i++) indefinite[i * K + i] = i === 7 ? -50 : 1;
    expect(() => billmQuantize(W, M, K, indefinite, { percDamp: 0 })).toThrow(/not positive definite.*percDamp/);
  });
});

describe('non-salient split search', () => {
  /** Direct order-1 error of {|v| < p} and {|v| ≥ p} per row (sign(0) := +1), summed. */
  function directSplitError(wb: Float64Array, M: number, isSalient: Uint8Array, p: number): number {
    let total = 0;
    for (let r = 0; r < M; r++)
      for (const groupB of [false, true]) {
        const v: number[] = [];
        for (let c = 0; c < BILLM_BLOCK; c++) {
          const x = wb[r * BILLM_BLOCK + c]!;
          if (!isSalient[c] && (Math.abs(x) >= p) === groupB) v.push(x);
        }
        if (v.length === 0) continue;
        const mu = v.reduce((a, b) => a + b, 0) / v.length;
        const alpha = v.reduce((a, b) => a + Math.abs(b - mu), 0) / v.length;
        total += v.reduce((a, b) => a + (b - (mu + alpha * (b - mu >= 0 ? 1 : -1))) ** 2, 0);
      }
    return total;
  }

  it('prefix-sum errors equal the direct binarization error at every threshold (zeros and ties included)', () => {
    const r = rng(31);
    const M = 7;
    const wb = Float64Array.from(randomNormal(r, M * BILLM_BLOCK));
    for (let i = 0; i < 40; i++) wb[randInt(r, 0, wb.length - 1)] = 0; // exact zeros (dead inputs)
    for (let i = 0; i < 20; i++) wb[randInt(r, 0, wb.length - 1)] = 0.5; // ties with a threshold
    const isSalient = new Uint8Array(BILLM_BLOCK);
    for (let i = 0; i < 30; i++) isSalient[randInt(r, 0, BILLM_BLOCK - 1)] = 1;
    const rows = sortedNonSalientRows(wb, M, isSalient);
    for (const p of [0, 1e-9, 0.1, 0.5, 0.7, 1.3, 2.5, 10]) {
      const want = directSplitError(wb, M, isSalient, p);
      expect(Math.abs(splitError(rows, p) - want)).toBeLessThan(1e-9 * (1 + want));
    }
  });
});

describe('absmaxQuantize', () => {
  it('W1: per row mean|w| times sign, sign(0) = +1', () => {
    const w = Float32Array.of(0.5, -1, 0, 2.5, /* row 2 */ 0, 0, 0, 0);
    expect(Array.from(absmaxQuantize(w, 2, 4, 1))).toEqual([1, -1, 1, 1, 0, 0, 0, 0]);
  });

  it('W2: nearest of {±0.5, ±1.5}·max|w|/1.5 per row', () => {
    const w = Float32Array.of(3, -3, 0.9, 1.1, -0.2, 0, -1.01, 2);
    // Δ = 2: levels −3, −1, 1, 3
    expect(Array.from(absmaxQuantize(w, 1, 8, 2))).toEqual([3, -3, 1, 1, -1, 1, -1, 3]);
  });

  it('W2 is closer than W1 on Gaussian rows', () => {
    const r = rng(3);
    const W = randomNormal(r, 16 * 256);
    expect(weightError(W, absmaxQuantize(W, 16, 256, 2))).toBeLessThan(weightError(W, absmaxQuantize(W, 16, 256, 1)));
  });
});

// ---------------------------------------------------------------- packed format and GGUF

describe('BiLLM GGUF tensors', () => {
  const r = rng(77);
  const w = randomBillm(r, 5, 640);

  it('round-trips through a GGUF file', () => {
    const tensors = encodeBillmTensors('blk.3.ffn_down', w);
    expect(tensors.map((t) => t.name)).toEqual([
      'blk.3.ffn_down.weight', 'blk.3.ffn_down.billm_groups', 'blk.3.ffn_down.billm_salient',
      'blk.3.ffn_down.billm_residual', 'blk.3.ffn_down.billm_scalars',
    ]);
    const writer = new GgufWriter().string('general.architecture', 'llama');
    for (const t of tensors) writer.addTensor(t.name, t.dims, t.type, t.data);
    const file = parseGguf(writer.toBytes());
    const lookup = (name: string): BillmTensor | undefined => {
      const t = file.tensors.find((i) => i.name === name);
      return t && { name, dims: t.dims, type: t.type, data: file.bytes.subarray(t.offset, t.offset + t.nbytes) };
    };
    const back = decodeBillmTensors('blk.3.ffn_down', lookup);
    expect(back.M).toBe(5);
    expect(back.K).toBe(640);
    for (const key of ['salient', 'signs', 'groups', 'residual', 'scalars'] as const) expect(back[key]).toEqual(w[key]);
    for (const key of ['salient', 'signs', 'groups', 'residual', 'scalars'] as const) expect(back[key].buffer).not.toBe(file.bytes.buffer);
    // copy = false (the loader, which packs at once): views of the file's bytes, the same values.
    const view = decodeBillmTensors('blk.3.ffn_down', lookup, { copy: false });
    for (const key of ['salient', 'signs', 'groups', 'residual', 'scalars'] as const) {
      expect(view[key]).toEqual(w[key]);
      expect(view[key].buffer).toBe(file.bytes.buffer); // GGUF data is 32-byte aligned: the fp16 scalars are a view too
    }
  });

  it('omits the residual tensor when no column is salient and reads it back', () => {
    const w0 = randomBillm(r, 3, 256, [0]);
    const tensors = encodeBillmTensors('p', w0);
    expect(tensors.some((t) => t.name === 'p.billm_residual')).toBe(false);
    const back = decodeBillmTensors('p', (n) => tensors.find((t) => t.name === n));
    expect(back.residual.length).toBe(0);
    expect(back.signs).toEqual(w0.signs);
  });

  it('names the missing or malformed tensor', () => {
    const tensors = encodeBillmTensors('p', w);
    const without = (name: string) => (n: string) => (n === name ? undefined : tensors.find((t) => t.name === n));
    expect(() => decodeBillmTensors('p', without('p.billm_scalars'))).toThrow(/'p.billm_scalars' is missing/);
    const badDims = tensors.map((t) => (t.name === 'p.billm_groups' ? { ...t, dims: [t.dims[0]!, 4] } : t));
    expect(() => decodeBillmTensors('p', (n) => badDims.find((t) => t.name === n))).toThrow(/'p.billm_groups': dims/);
    const badType = tensors.map((t) => (t.name === 'p.billm_scalars' ? { ...t, type: 0 } : t));
    expect(() => decodeBillmTensors('p', (n) => badType.find((t) => t.name === n))).toThrow(/expected F16/);
  });

  it.each([['NaN', 0x7e00], ['Infinity', 0x7c00], ['-Infinity', 0xfc00]] as const)('names a %s scalar: tensor, row, block and which scalar', (what, h) => {
    const bad = { ...w, scalars: w.scalars.slice() };
    const per = (w.K / BILLM_BLOCK) * BILLM_SCALARS;
    bad.scalars[3 * per + 2 * BILLM_SCALARS + 6] = h; // row 3, block 2, aB
    expect(() => validateBillmMatrix(bad)).toThrow(new RegExp(`scalar ${3 * per + 2 * BILLM_SCALARS + 6} \\(row 3, block 2, aB\\) is ${what}, not a finite number`));
    const tensors = encodeBillmTensors('blk.0.attn_q', w).map((t) => (t.name.endsWith('.billm_scalars') ? { ...t, data: new Uint8Array(bad.scalars.buffer.slice(0)) } : t));
    expect(() => decodeBillmTensors('blk.0.attn_q', (n) => tensors.find((t) => t.name === n))).toThrow(
      new RegExp(`tensor 'blk\\.0\\.attn_q\\.billm_scalars': scalar \\d+ \\(row 3, block 2, aB\\) is ${what}`));
    // Largest finite fp16 values and subnormals are fine.
    const edge = { ...w, scalars: w.scalars.map((v, i) => [0x7bff, 0xfbff, 0x0001, 0x8000][i % 4]!) };
    expect(() => validateBillmMatrix(edge)).not.toThrow();
  });

  it('validation rejects group bits at salient columns', () => {
    const bad = { ...w, groups: w.groups.slice() };
    const k = Array.from({ length: w.K }, (_, i) => i).find((i) => (w.salient[i >> 3]! >> (i & 7)) & 1)!;
    bad.groups[k >> 3] |= 1 << (k & 7);
    expect(() => validateBillmMatrix(bad)).toThrow(/group bits set at salient columns/);
    // The last salient column of the last row, found word-wise (aligned planes) and byte-wise (unaligned).
    const last = Array.from({ length: w.K }, (_, i) => i).filter((i) => (w.salient[i >> 3]! >> (i & 7)) & 1).pop()!;
    const row = w.M - 1, byte = last >> 3;
    const bad2 = { ...w, groups: w.groups.slice() };
    bad2.groups[row * (w.K / 8) + byte] |= 1 << (last & 7);
    const msg = new RegExp(`row ${row} has group bits set at salient columns \\(byte ${byte}\\)`);
    expect(() => validateBillmMatrix(bad2)).toThrow(msg);
    const shifted = new Uint8Array(bad2.groups.length + 1);
    shifted.set(bad2.groups, 1);
    expect(() => validateBillmMatrix({ ...bad2, groups: shifted.subarray(1) })).toThrow(msg);
    expect(() => validateBillmMatrix({ ...w, groups: (() => { const u = new Uint8Array(w.groups.length + 1); u.set(w.groups, 1); return u.subarray(1); })() })).not.toThrow();
    // From a file, the error names the plane's tensor.
    const tensors = encodeBillmTensors('blk.2.attn_k', w).map((t) => (t.name.endsWith('.billm_groups') ? { ...t, data: bad2.groups } : t));
    expect(() => decodeBillmTensors('blk.2.attn_k', (n) => tensors.find((t) => t.name === n))).toThrow(
      new RegExp(`tensor 'blk\\.2\\.attn_k\\.billm_groups': row ${row} has group bits set at salient columns \\(byte ${byte}\\)`));
  });
});

// ---------------------------------------------------------------- BR16 packing

describe('packBillmTiles (native) against refPackBillmTiles', () => {
  const ctx2 = new KernelContext({ threads: 2 });
  const shapes: Array<[number, number]> = [[1, 128], [15, 256], [16, 128], [17, 384], [33, 1024], [200, 512]];
  for (const [M, K] of shapes)
    it(`writes the same bytes, M = ${M}, K = ${K}`, () => {
      const w = randomBillm(rng(M * 7 + K), M, K);
      expect(Buffer.from(packBillmTiles(ctx2, w).data).equals(Buffer.from(refPackBillmTiles(w).data))).toBe(true);
    });

  it('covers every salient count 0..128 of a block, all-ones and all-zero rows', () => {
    const counts = Array.from({ length: 129 }, (_, c) => c);
    const r = rng(129);
    const w = randomBillm(r, 37, 128 * 12, counts);
    w.signs.fill(0xff, 0, w.K / 8); // row 0: every bit set
    w.signs.fill(0, w.K / 8, w.K / 4); // row 1: none
    w.scalars.fill(0xffff, 0, (w.K / 128) * BILLM_SCALARS); // row 0: every scalar bit (a NaN pattern) is copied as is
    const native = packBillmTiles(ctx2, w), ref = refPackBillmTiles(w);
    expect(native.tileBytes).toBe(ref.tileBytes);
    expect(Buffer.from(native.data).equals(Buffer.from(ref.data))).toBe(true);
  });

  it('ignores the group bits at salient columns and the residual bits past a block\'s count, as the reference', () => {
    const r = rng(5);
    const w = randomBillm(r, 21, 640, [3, 5, 9, 13]); // counts that leave padding bits in the residual bytes
    const dirty = { ...w, groups: w.groups.map((v, i) => v | w.salient[i % (w.K / 8)]!), residual: w.residual.map(() => 0xff) };
    const native = packBillmTiles(ctx2, dirty);
    expect(Buffer.from(native.data).equals(Buffer.from(refPackBillmTiles(dirty).data))).toBe(true);
    // and the GEMM on it is still the contract's on the planes as the packer reads them
    const a = activations(r, 2, w.K, 'extreme');
    expectSameBits(billmGemm(ctx2, native, a), billmGemm(ctx2, refPackBillmTiles(dirty), a), 'dirty planes');
  });

  it('overwrites whatever the buffer held', () => {
    const w = randomBillm(rng(8), 19, 256);
    const ref = refPackBillmTiles(w);
    const native = packBillmTiles(ctx2, w, (n) => new Uint8Array(n).fill(0xa5));
    expect(Buffer.from(native.data).equals(Buffer.from(ref.data))).toBe(true);
  });

  it('validates its arguments, naming the plane', () => {
    const w = randomBillm(rng(3), 4, 256);
    expect(() => packBillmTiles(ctx2, { ...w, signs: w.signs.subarray(1) })).toThrow(/signs/);
    expect(() => packBillmTiles(ctx2, { ...w, groups: w.groups.subarray(1) })).toThrow(/groups/);
    expect(() => packBillmTiles(ctx2, { ...w, residual: new Uint8Array(w.residual.length + 1) })).toThrow(/residual/);
    expect(() => packBillmTiles(ctx2, { ...w, scalars: w.scalars.subarray(8) })).toThrow(/scalars/);
    expect(() => packBillmTiles(ctx2, { ...w, scalars: new Int16Array(w.scalars.length) as unknown as Uint16Array })).toThrow(TypeError);
    expect(() => packBillmTiles(ctx2, { ...w, salient: w.salient.subarray(1) })).toThrow(/salient/);
    expect(() => packBillmTiles(ctx2, { ...w, K: 200 })).toThrow(/multiple of 128/);
    expect(() => packBillmTiles(ctx2, w, (n) => new Uint8Array(n - 1))).toThrow(/alloc returned/);
  });
});

// ---------------------------------------------------------------- kernel

describe.each(contexts)('billmGemm on %s', (isa, ctx) => {
  it('reports its variant', () => {
    expect(ctx.info().kernels.billm).toMatch(new RegExp(`^${isa}`)); // neon or neon-dotprod
  });

  const shapes: Array<[number, number, number]> = [[1, 128, 1], [17, 384, 1], [33, 1024, 3], [5, 1280, 2], [64, 256, 7], [2, 128, 9]];
  for (const [M, K, B] of shapes)
    it(`is bit-exact with the reference, M = ${M}, K = ${K}, B = ${B}`, () => {
      const r = rng(M * 1000 + K + B);
      const w = withZeroRows(randomBillm(r, M, K), M > 2 ? [0, M - 1] : []);
      const tiles = packBillmTiles(ctx, w);
      for (const kind of ['normal', 'extreme', 'zero'] as const) {
        const a = activations(r, B, K, kind);
        expectSameBits(billmGemm(ctx, tiles, a), refBillmGemm(w, a), `${isa} ${kind}`);
      }
    });

  it('is bit-exact over long tile ranges on one thread (M = 200, B = 1 and 3)', () => {
    const one = new KernelContext({ isa, threads: 1 });
    const r = rng(200);
    const w = randomBillm(r, 200, 512);
    const tiles = packBillmTiles(ctx, w);
    for (const B of [1, 3]) {
      const a = activations(r, B, 512, 'normal');
      expectSameBits(billmGemm(one, tiles, a), refBillmGemm(w, a), `${isa} 1 thread B = ${B}`);
    }
  });

  it('computes W·x of the dequantized weights (quantizer output, within float rounding)', () => {
    const r = rng(9);
    const M = 19, K = 256;
    const { H } = calibration(r, 300, K);
    const w = billmQuantize(randomNormal(r, M * K, 0.03), M, K, H);
    const B = 2;
    const a = activations(r, B, K, 'normal');
    const y = billmGemm(ctx, packBillmTiles(ctx, w), a);
    expectSameBits(y, refBillmGemm(w, a), isa);
    const d = billmDequantize(w);
    for (let b = 0; b < B; b++)
      for (let m = 0; m < M; m++) {
        let s = 0, mag = 0;
        for (let k = 0; k < K; k++) {
          s += d[m * K + k]! * a.q[b * K + k]!;
          mag += Math.abs(d[m * K + k]! * a.q[b * K + k]!);
        }
        expect(Math.abs(y[b * M + m]! - s / a.scale[b]!)).toBeLessThan((1e-5 * mag) / a.scale[b]!);
      }
  });

  it('validates its arguments', () => {
    const w = packBillmTiles(ctx, randomBillm(rng(1), 4, 256));
    const a = activations(rng(2), 1, 256, 'normal');
    expect(() => billmGemm(ctx, { ...w, data: w.data.subarray(1) }, a)).toThrow(RangeError);
    const otherSalient = w.salient.slice();
    const full = otherSalient.subarray(0, 16).every((v) => v === 0xff);
    otherSalient.fill(full ? 0 : 0xff, 0, 16); // another salient count of block 0 changes the tile size
    expect(() => billmGemm(ctx, { ...w, salient: otherSalient }, a)).toThrow(/data/);
    expect(() => billmGemm(ctx, { ...w, K: 200 }, { ...a, K: 200 })).toThrow(/multiple of 128/);
    expect(() => billmGemm(ctx, { ...w, data: new Int8Array(w.data.length) as unknown as Uint8Array }, a)).toThrow(TypeError);
    expect(() => billmGemm(ctx, w, { ...a, scale: new Float32Array(0) })).toThrow(RangeError);
  });
});
