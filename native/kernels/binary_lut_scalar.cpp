// Scalar table build and lookup GEMM on B1L64 (binary_lut.h): the C++ reference every SIMD variant
// is compared with bit for bit.
#include <cstring>

#include "kernels.h"

namespace bitllm {

namespace {

void binary_lut_build_scalar(const float* u, int64_t ldu, int64_t B, int64_t K, float* tables, int64_t ldt,
                             int64_t g0, int64_t g1) {
  (void)K;
  for (int64_t b = 0; b < B; ++b)
    for (int64_t g = g0; g < g1; ++g) {
      const float* x = u + b * ldu + kB1lGroupK * g;           // [4]
      float* t = tables + b * ldt + kB1lTableFloats * g;       // [16]
      for (int j = 0; j < kB1lTableFloats; ++j) {
        const float a0 = (j & 1) ? x[0] : -x[0], a1 = (j & 2) ? x[1] : -x[1];
        const float a2 = (j & 4) ? x[2] : -x[2], a3 = (j & 8) ? x[3] : -x[3];
        t[j] = ((a0 + a1) + a2) + a3;
      }
    }
}

void binary_lut_gemm_scalar(const BinaryLutMat& w, const float* tables, int64_t ldt, int64_t B,
                            const float* row_scale, const float* tok_bias, float* y, int64_t ldy, int64_t blk0,
                            int64_t blk1) {
  const int64_t kchunks = w.K / kB1lKStep;
  for (int64_t t = blk0; t < blk1; ++t) {
    const uint8_t* blk = w.bits + t * kchunks * kB1lChunkBytes;  // [K/32, 256]
    for (int r = 0; r < kB1lRows; ++r) {
      const int64_t m = t * kB1lRows + r;
      if (m >= w.M) break;
      for (int64_t b = 0; b < B; ++b) {
        const float* tb = tables + b * ldt;  // [K/4, 16]
        float e = 0.0f, o = 0.0f;
        for (int64_t kc = 0; kc < kchunks; ++kc) {
          uint32_t v;
          std::memcpy(&v, blk + kc * kB1lChunkBytes + 4 * r, 4);
          const float* tc = tb + kc * 8 * kB1lTableFloats;  // [8, 16]: groups 8kc .. 8kc+7
          for (int j = 0; j < 8; j += 2) {
            e = e + tc[kB1lTableFloats * j + ((v >> (4 * j)) & 15)];
            o = o + tc[kB1lTableFloats * (j + 1) + ((v >> (4 * j + 4)) & 15)];
          }
        }
        float acc = e + o;
        if (row_scale) acc = acc * row_scale[m];
        if (tok_bias) acc = acc + tok_bias[b];
        y[b * ldy + m] = acc;
      }
    }
  }
}

}  // namespace

void fill_binary_lut_scalar(KernelTable& t, const CpuFeatures&) {
  t.binary_lut_build = binary_lut_build_scalar;
  t.binary_lut_gemm = binary_lut_gemm_scalar;
  t.v_binary_lut = "scalar";
}

}  // namespace bitllm
