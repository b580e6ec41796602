// Scalar q4 kernels: the dense_q4.h contract as written, on the Q4R16 layout (the C++ reference every
// SIMD variant is tested against). It reads the signed codes directly and ignores bsum32.
#include <cstring>

#include "kernels.h"

namespace bitllm {

namespace {

// Offset code u of row r, k = 32j + kk (kk < 32) in a record.
inline int q4_code(const uint8_t* rec, int r, int kk) {
  const uint8_t b = rec[(kk & 15) / 4 * kQ4ChunkBytes + 4 * r + (kk & 3)];
  return kk < 16 ? (b & 15) : (b >> 4);
}

inline float q4_scale(const uint8_t* rec, int r) {
  uint16_t h;
  std::memcpy(&h, rec + kQ4BlockQsBytes + 2 * r, 2);
  return half_to_f32(h);
}

void q4_gemm_scalar(const Q4Mat& w, const QActs& a, const int32_t* /*bsum32*/, float* y, int64_t ldy,
                    int64_t tile0, int64_t tile1) {
  const int64_t nb = w.K / kQ4Block, tb = q4_tile_bytes(w.K);
  for (int64_t t = tile0; t < tile1; ++t) {
    const uint8_t* tile = w.data + t * tb;  // [nb, 288]
    for (int r = 0; r < kQ4Rows; ++r) {
      const int64_t m = t * kQ4Rows + r;
      if (m >= w.M) break;
      for (int64_t b = 0; b < a.B; ++b) {
        const int8_t* q = a.q + b * a.ldq;  // [K]
        float acc = 0.0f;
        for (int64_t j = 0; j < nb; ++j) {
          const uint8_t* rec = tile + j * kQ4BlockBytes;
          int32_t dot = 0;
          for (int kk = 0; kk < kQ4Block; ++kk) dot += (q4_code(rec, r, kk) - 8) * q[j * kQ4Block + kk];
          acc = acc + static_cast<float>(dot) * q4_scale(rec, r);
        }
        y[b * ldy + m] = acc / a.scale[b];
      }
    }
  }
}

void q4_get_rows_scalar(const Q4Mat& w, const int32_t* rows, int64_t n, float* out, int64_t ldo) {
  const int64_t nb = w.K / kQ4Block, tb = q4_tile_bytes(w.K);
  for (int64_t i = 0; i < n; ++i) {
    const int64_t m = rows[i];
    const int r = static_cast<int>(m % kQ4Rows);
    const uint8_t* tile = w.data + (m / kQ4Rows) * tb;
    for (int64_t j = 0; j < nb; ++j) {
      const uint8_t* rec = tile + j * kQ4BlockBytes;
      const float d = q4_scale(rec, r);
      for (int kk = 0; kk < kQ4Block; ++kk)
        out[i * ldo + j * kQ4Block + kk] = d * static_cast<float>(q4_code(rec, r, kk) - 8);
    }
  }
}

}  // namespace

void fill_dense_q4_scalar(KernelTable& t, const CpuFeatures&) {
  t.q4_gemm = q4_gemm_scalar;
  t.q4_get_rows = q4_get_rows_scalar;
  t.v_q4 = "scalar";
}

}  // namespace bitllm
