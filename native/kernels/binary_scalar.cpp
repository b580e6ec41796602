// Scalar binary GEMM on B1R16 and the column-side prep: the C++ reference every SIMD variant is
// tested against.
#include "kernels.h"

namespace bitllm {

namespace {

void binary_gemm_scalar(const BinaryMat& w, const QActs& a, const float* tok_bias, float* y, int64_t ldy,
                        int64_t tile0, int64_t tile1) {
  const int64_t kchunks = w.K / kB1KStep;
  for (int64_t t = tile0; t < tile1; ++t) {
    const uint8_t* tile = w.bits + t * kchunks * kB1ChunkBytes;  // [K/64, 128]
    for (int r = 0; r < kB1Rows; ++r) {
      const int64_t m = t * kB1Rows + r;
      if (m >= w.M) break;
      const float ws = w.scale_mode == kScaleRow ? w.scales[m] : w.scales[0];
      for (int64_t b = 0; b < a.B; ++b) {
        const int8_t* q = a.q + b * a.ldq;  // [K]
        int32_t pos = 0;
        for (int64_t kc = 0; kc < kchunks; ++kc) {
          const uint8_t* row = tile + kc * kB1ChunkBytes + 8 * r;  // [8]
          for (int j = 0; j < 8; ++j)
            for (int i = 0; i < 8; ++i)
              if ((row[j] >> i) & 1) pos += q[kc * kB1KStep + 8 * j + i];
        }
        // Wrapping int32 arithmetic (a.sum is caller data): unsigned, then back.
        const int32_t dot = static_cast<int32_t>(2u * static_cast<uint32_t>(pos) - static_cast<uint32_t>(a.sum[b]));
        float v = (static_cast<float>(dot) * ws) / a.scale[b];
        if (tok_bias) v = v + tok_bias[b];
        y[b * ldy + m] = v;
      }
    }
  }
}

void binary_prep_scalar(const float* x, int64_t ldx, int64_t B, int64_t K, const float* col_scale,
                        const float* col_bias, float* xs, int64_t ldxs, float* tok_bias) {
  for (int64_t b = 0; b < B; ++b) {
    const float* xr = x + b * ldx;  // [K]
    float* xo = xs + b * ldxs;      // [K]
    if (col_scale) {
      for (int64_t k = 0; k < K; ++k) xo[k] = xr[k] * col_scale[k];
    } else {
      for (int64_t k = 0; k < K; ++k) xo[k] = xr[k];
    }
    if (col_bias) {
      float p[16] = {};
      for (int64_t k = 0; k < K; ++k) {
        const float prod = col_bias[k] * xr[k];
        p[k % 16] = p[k % 16] + prod;
      }
      for (int h = 8; h >= 2; h /= 2)
        for (int l = 0; l < h; ++l) p[l] = p[l] + p[l + h];
      tok_bias[b] = p[0] + p[1];
    }
  }
}

}  // namespace

void fill_binary_scalar(KernelTable& t, const CpuFeatures&) {
  t.binary_gemm = binary_gemm_scalar;
  t.binary_prep = binary_prep_scalar;
  t.v_binary = "scalar";
}

}  // namespace bitllm
