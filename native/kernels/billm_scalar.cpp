// Scalar BiLLM GEMM and activation prep: the C++ reference every SIMD variant is tested against
// (billm.h has the contract).
#include <cstring>

#include "kernels.h"

namespace bitllm {

namespace {

inline int bit_at(const uint8_t* plane, int64_t k) { return (plane[k >> 3] >> (k & 7)) & 1; }

void billm_prep_scalar(const uint8_t* salient, int64_t K, const int8_t* q, int64_t ldq, int64_t B, int8_t* qs,
                       int32_t* ssum, int32_t* bsum) {
  const int64_t nb = K / kBillmBlock;
  for (int64_t b = 0; b < B; ++b) {
    const int8_t* qb = q + b * ldq;  // [K]
    for (int64_t j = 0; j < nb; ++j) {
      int8_t* out = qs + (b * nb + j) * kBillmBlock;  // [128]
      std::memset(out, 0, kBillmBlock);
      int32_t ss = 0, bs = 0;
      int n = 0;
      for (int c = 0; c < kBillmBlock; ++c) {
        const int64_t k = j * kBillmBlock + c;
        bs += qb[k];
        if (bit_at(salient, k)) {
          out[n++] = qb[k];
          ss += qb[k];
        }
      }
      ssum[b * nb + j] = ss;
      bsum[b * nb + j] = bs;
    }
  }
}

void billm_gemm_scalar(const BillmMat& w, const BillmActs& a, float* y, int64_t ldy, int64_t row0, int64_t row1) {
  const int64_t nb = w.K / kBillmBlock, row_bytes = w.K / 8;
  for (int64_t m = row0; m < row1; ++m) {
    const uint8_t* sg = w.signs + m * row_bytes;    // [K/8]
    const uint8_t* gr = w.groups + m * row_bytes;   // [K/8]
    const uint8_t* rs = w.residual + m * w.rstride;  // [rstride]
    const uint16_t* sc = w.scalars + m * nb * kBillmScalars;  // [nb, 8]
    for (int64_t b = 0; b < a.B; ++b) {
      const int8_t* q = a.q + b * a.ldq;  // [K]
      float acc = 0.0f;
      for (int64_t j = 0; j < nb; ++j) {
        int32_t ps = 0, pb = 0, gb = 0, t = 0, pr = 0;
        for (int c = 0; c < kBillmBlock; ++c) {
          const int64_t k = j * kBillmBlock + c;
          const int s = bit_at(sg, k), g = bit_at(gr, k);
          if (s) {
            t += q[k];
            if (bit_at(w.salient, k)) ps += q[k];
            if (g) pb += q[k];
          }
          if (g) gb += q[k];
        }
        const int8_t* qsj = a.qs + (b * nb + j) * kBillmBlock;  // [128]
        const int64_t rbits = 8 * (w.roff[j + 1] - w.roff[j]);
        for (int64_t i = 0; i < rbits; ++i)
          if (bit_at(rs + w.roff[j], i)) pr += qsj[i];
        const int32_t ss = a.ssum[b * nb + j], qsum = a.bsum[b * nb + j];
        const int32_t pa = t - ps - pb, na = qsum - ss - gb;
        const int32_t n[kBillmScalars] = {2 * ps - ss, 2 * pr - ss, ss, ss, 2 * pa - na, na, 2 * pb - gb, gb};
        float p[kBillmScalars];
        for (int l = 0; l < kBillmScalars; ++l) p[l] = static_cast<float>(n[l]) * half_to_f32(sc[j * kBillmScalars + l]);
        for (int l = 0; l < 4; ++l) p[l] = p[l] + p[l + 4];
        for (int l = 0; l < 2; ++l) p[l] = p[l] + p[l + 2];
        acc = acc + (p[0] + p[1]);
      }
      y[b * ldy + m] = acc / a.scale[b];
    }
  }
}

}  // namespace

void fill_billm_scalar(KernelTable& t, const CpuFeatures&) {
  t.billm_prep = billm_prep_scalar;
  t.billm_gemm = billm_gemm_scalar;
  t.v_billm = "scalar";
}

}  // namespace bitllm
