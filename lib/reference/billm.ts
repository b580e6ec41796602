// Reference BiLLM GEMM: the contract of native/kernels/billm.h in TypeScript (bit-exact with every
// native variant), on the packed matrix of lib/quantize/billm.ts.
import { type BillmMatrix, BILLM_BLOCK, BILLM_SCALARS, billmResidualLayout } from '../quantize/billm.js';
import type { QuantizedActivations } from './act_quant.js';
import { f32, halfToFloat } from './numeric.js';

const bitAt = (plane: Uint8Array, base: number, k: number): number => (plane[base + (k >> 3)]! >> (k & 7)) & 1;

/**
 * Y [B, M] for packed BiLLM weights and int8 activations (billm.h): per row and block the integer
 * masked sums, the 8 products n[l]·f[l] folded 8 → 4 → 2 → 1, accumulated over blocks in order in
 * float32, divided by the token's scale.
 */
export function refBillmGemm(w: BillmMatrix, a: QuantizedActivations): Float32Array {
  const { M, K } = w;
  if (a.K !== K) throw new RangeError(`refBillmGemm: activations have K = ${a.K}, weights K = ${K}`);
  const layout = billmResidualLayout(w.salient, K);
  const nb = K / BILLM_BLOCK;
  const rowBytes = K / 8;
  const y = new Float32Array(a.B * M);
  // Per token and block: compacted salient codes, Σ over S, Σ over the block.
  const qs = new Int8Array(a.B * K);
  const ssum = new Int32Array(a.B * nb);
  const bsum = new Int32Array(a.B * nb);
  for (let b = 0; b < a.B; b++)
    for (let j = 0; j < nb; j++) {
      let n = 0;
      for (let c = 0; c < BILLM_BLOCK; c++) {
        const k = j * BILLM_BLOCK + c;
        const v = a.q[b * K + k]!;
        bsum[b * nb + j] += v;
        if (bitAt(w.salient, 0, k)) {
          qs[(b * nb + j) * BILLM_BLOCK + n++] = v;
          ssum[b * nb + j] += v;
        }
      }
    }
  const nv = new Int32Array(BILLM_SCALARS);
  const p = new Float64Array(BILLM_SCALARS);
  for (let m = 0; m < M; m++) {
    const rb = m * rowBytes;
    for (let b = 0; b < a.B; b++) {
      let acc = 0;
      for (let j = 0; j < nb; j++) {
        let ps = 0, pb = 0, gb = 0, t = 0, pr = 0;
        for (let c = 0; c < BILLM_BLOCK; c++) {
          const k = j * BILLM_BLOCK + c;
          const q = a.q[b * K + k]!;
          const s = bitAt(w.signs, rb, k), g = bitAt(w.groups, rb, k);
          if (s) {
            t += q;
            if (bitAt(w.salient, 0, k)) ps += q;
            if (g) pb += q;
          }
          if (g) gb += q;
        }
        const rbase = m * layout.stride + layout.offsets[j]!;
        const rbits = 8 * (layout.offsets[j + 1]! - layout.offsets[j]!);
        for (let i = 0; i < rbits; i++) if (bitAt(w.residual, rbase, i)) pr += qs[(b * nb + j) * BILLM_BLOCK + i]!;
        const ss = ssum[b * nb + j]!, qsum = bsum[b * nb + j]!;
        const pa = t - ps - pb, na = qsum - ss - gb;
        nv.set([2 * ps - ss, 2 * pr - ss, ss, ss, 2 * pa - na, na, 2 * pb - gb, gb]);
        for (let l = 0; l < BILLM_SCALARS; l++) p[l] = f32(nv[l]! * halfToFloat(w.scalars[(m * nb + j) * BILLM_SCALARS + l]!));
        for (let l = 0; l < 4; l++) p[l] = f32(p[l]! + p[l + 4]!);
        for (let l = 0; l < 2; l++) p[l] = f32(p[l]! + p[l + 2]!);
        acc = f32(acc + f32(p[0]! + p[1]!));
      }
      y[b * M + m] = f32(acc / a.scale[b]!);
    }
  }
  return y;
}
