// Scalar BiLLM GEMM on BR16 and the activation prep: the C++ reference every SIMD variant is tested
// against (billm.h has the layout and the contract).
#include <cstring>

#include "kernels.h"

namespace bitllm {

namespace {

inline uint64_t load_u64(const uint8_t* p) {  // p: [8]
  uint64_t v;
  std::memcpy(&v, p, 8);
  return v;
}

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
        if ((salient[k >> 3] >> (k & 7)) & 1) {
          out[n++] = qb[k];
          ss += qb[k];
        }
      }
      ssum[b * nb + j] = ss;
      bsum[b * nb + j] = bs;
    }
  }
}

void billm_gemm_scalar(const BillmMat& w, const BillmActs& a, float* y, int64_t ldy, int64_t tile0, int64_t tile1) {
  const int64_t nb = w.K / kBillmBlock, tile_bytes = w.boff[nb];
  for (int64_t t = tile0; t < tile1; ++t) {
    const uint8_t* tile = w.data + t * tile_bytes;  // [tile_bytes]
    for (int r = 0; r < kBillmRows; ++r) {
      const int64_t m = t * kBillmRows + r;
      if (m >= w.M) break;
      for (int64_t b = 0; b < a.B; ++b) {
        const int8_t* q = a.q + b * a.ldq;             // [K]
        const int8_t* qs = a.qs + b * nb * kBillmBlock;  // [nb, 128]
        float acc = 0.0f;
        for (int64_t j = 0; j < nb; ++j) {
          const uint8_t* rec = tile + w.boff[j];  // [768 + 16 ng]
          const int ng = w.ngroups[j];
          int32_t ps = 0, pb = 0, gb = 0, tt = 0, pr = 0;
          for (int g = 0; g < kBillmGroups; ++g) {
            const uint64_t sw = load_u64(rec + 8 * g), gw = load_u64(rec + 256 + 8 * g);
            for (int i = 0; i < 4; ++i) {
              const int64_t k = j * kBillmBlock + 4 * g + i;
              const int s = (sw >> (4 * r + i)) & 1, gr = (gw >> (4 * r + i)) & 1;
              if (s) tt += q[k];
              if (gr) gb += q[k];
              if (s && gr) pb += q[k];
            }
          }
          for (int g = 0; g < ng; ++g) {
            const uint64_t s1 = load_u64(rec + 512 + 8 * g), s2 = load_u64(rec + 512 + 8 * (ng + g));
            for (int i = 0; i < 4; ++i) {
              if ((s1 >> (4 * r + i)) & 1) ps += qs[j * kBillmBlock + 4 * g + i];
              if ((s2 >> (4 * r + i)) & 1) pr += qs[j * kBillmBlock + 4 * g + i];
            }
          }
          const uint8_t* sc = rec + 512 + 16 * ng;  // [8][16] fp16
          const int32_t ss = a.ssum[b * nb + j], qsum = a.bsum[b * nb + j];
          const int32_t pa = tt - pb, na = qsum - ss - gb;
          const int32_t n[kBillmScalars] = {2 * ps - ss, 2 * pr - ss, ss, ss, 2 * pa - na, na, 2 * pb - gb, gb};
          float p[kBillmScalars];
          for (int l = 0; l < kBillmScalars; ++l) {
            uint16_t h;
            std::memcpy(&h, sc + 2 * (l * kBillmRows + r), 2);
            p[l] = static_cast<float>(n[l]) * half_to_f32(h);
          }
          for (int l = 0; l < 4; ++l) p[l] = p[l] + p[l + 4];
          for (int l = 0; l < 2; ++l) p[l] = p[l] + p[l + 2];
          acc = acc + (p[0] + p[1]);
        }
        y[b * ldy + m] = acc / a.scale[b];
      }
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
