// Scalar ternary GEMM on T2R16: the C++ reference every SIMD variant is tested against.
#include "kernels.h"

namespace bitllm {

namespace {

void ternary_gemm_scalar(const TernaryMat& w, const QActs& a, float* y, int64_t ldy, int64_t tile0,
                         int64_t tile1) {
  const int64_t kchunks = w.K / kT2KStep;
  const int64_t nb = w.K / kScaleBlockK;
  const int64_t chunks_per_block = kScaleBlockK / kT2KStep;
  for (int64_t t = tile0; t < tile1; ++t) {
    const uint8_t* tile = w.codes + t * kchunks * kT2ChunkBytes;  // [K/16, 64]
    for (int r = 0; r < kT2Rows; ++r) {
      const int64_t m = t * kT2Rows + r;
      if (m >= w.M) break;
      for (int64_t b = 0; b < a.B; ++b) {
        const int8_t* q = a.q + b * a.ldq;  // [K]
        if (w.scale_mode == kScaleBlock) {
          float acc = 0.0f;
          for (int64_t j = 0; j < nb; ++j) {
            int32_t dot = 0;
            for (int64_t kc = j * chunks_per_block; kc < (j + 1) * chunks_per_block; ++kc) {
              const uint8_t* c = tile + kc * kT2ChunkBytes + 4 * r;
              for (int l = 0; l < 4; ++l)
                for (int i = 0; i < 4; ++i) dot += ((c[i] >> (2 * l)) & 3) * q[kc * 16 + 4 * l + i];
            }
            const float d = w.scales[(t * nb + j) * kT2Rows + r];
            acc = acc + static_cast<float>(dot - a.bsum[b * nb + j]) * d;
          }
          y[b * ldy + m] = acc / a.scale[b];
        } else {
          int32_t dot = 0;
          for (int64_t kc = 0; kc < kchunks; ++kc) {
            const uint8_t* c = tile + kc * kT2ChunkBytes + 4 * r;
            for (int l = 0; l < 4; ++l)
              for (int i = 0; i < 4; ++i) dot += ((c[i] >> (2 * l)) & 3) * q[kc * 16 + 4 * l + i];
          }
          const float ws = w.scale_mode == kScaleRow ? w.scales[m] : w.scales[0];
          y[b * ldy + m] = (static_cast<float>(dot - a.sum[b]) * ws) / a.scale[b];
        }
      }
    }
  }
}

}  // namespace

void fill_ternary_i2_scalar(KernelTable& t, const CpuFeatures&) {
  t.ternary_gemm = ternary_gemm_scalar;
  t.v_ternary = "scalar";
}

}  // namespace bitllm
