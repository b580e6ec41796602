// Scalar dense kernels: the C++ reference every SIMD variant is tested against.
//   f16 GEMM: 8 strided float partial sums per output (chains of ceil(K/8)), combined as a tree; a
//             product is rounded before it is added (no FMA: the build uses -ffp-contract=off).
//   f16t GEMM: the F16T32 chunked sums of dense.h as written, one tile and token at a time.
//   q8 GEMM:  the dense.h contract as written, on the Q8R16 layout.
#include <cstring>

#include "kernels.h"

namespace bitllm {

namespace {

// Q8R16 data may sit at any byte offset (a Uint8Array view), so fp16 scales are read bytewise.
inline float q8_scale(const uint8_t* d, int64_t idx) {  // d: [16] fp16 scales of one record
  uint16_t h;
  std::memcpy(&h, d + 2 * idx, 2);
  return half_to_f32(h);
}

void f16_gemm_scalar(const uint16_t* w, int64_t ldw, int64_t /*M*/, int64_t K, const float* x, int64_t ldx,
                     int64_t B, float* y, int64_t ldy, int64_t m0, int64_t m1) {
  float row[256];  // one K chunk of the weight row, converted once for all tokens
  for (int64_t m = m0; m < m1; ++m) {
    const uint16_t* wr = w + m * ldw;  // [K]
    for (int64_t b = 0; b < B; ++b) {
      const float* xb = x + b * ldx;  // [K]
      float s[8] = {0, 0, 0, 0, 0, 0, 0, 0};
      for (int64_t k0 = 0; k0 < K; k0 += 256) {
        const int64_t n = K - k0 < 256 ? K - k0 : 256;
        for (int64_t i = 0; i < n; ++i) row[i] = half_to_f32(wr[k0 + i]);
        for (int64_t i = 0; i < n; ++i) s[i & 7] = s[i & 7] + row[i] * xb[k0 + i];
      }
      y[b * ldy + m] = ((s[0] + s[1]) + (s[2] + s[3])) + ((s[4] + s[5]) + (s[6] + s[7]));
    }
  }
}

void f16_get_rows_scalar(const uint16_t* w, int64_t ldw, int64_t K, const int32_t* rows, int64_t n, float* out,
                         int64_t ldo) {
  for (int64_t i = 0; i < n; ++i) {
    const uint16_t* wr = w + static_cast<int64_t>(rows[i]) * ldw;  // [K]
    for (int64_t k = 0; k < K; ++k) out[i * ldo + k] = half_to_f32(wr[k]);
  }
}

void f16t_gemm_scalar(const uint16_t* w, int64_t M, int64_t K, const float* x, int64_t ldx, int64_t B, float* y,
                      int64_t ldy, int64_t tile0, int64_t tile1) {
  float wf[kF16TChunk][kF16TRows];  // one chunk of the tile, converted once for all tokens
  for (int64_t t = tile0; t < tile1; ++t) {
    const uint16_t* wt = w + t * K * kF16TRows;  // [K, 32]
    const int rows = static_cast<int>(M - t * kF16TRows < kF16TRows ? M - t * kF16TRows : kF16TRows);
    for (int64_t b = 0; b < B; ++b) {
      const float* xb = x + b * ldx;  // [K]
      float tot[kF16TRows] = {};
      for (int64_t k0 = 0; k0 < K; k0 += kF16TChunk) {
        const int64_t n = K - k0 < kF16TChunk ? K - k0 : kF16TChunk;
        for (int64_t i = 0; i < n; ++i)
          for (int r = 0; r < kF16TRows; ++r) wf[i][r] = half_to_f32(wt[(k0 + i) * kF16TRows + r]);
        float s[kF16TRows] = {};
        for (int64_t i = 0; i < n; ++i)
          for (int r = 0; r < kF16TRows; ++r) s[r] = s[r] + wf[i][r] * xb[k0 + i];
        for (int r = 0; r < kF16TRows; ++r) tot[r] = tot[r] + s[r];
      }
      for (int r = 0; r < rows; ++r) y[b * ldy + t * kF16TRows + r] = tot[r];
    }
  }
}

void q8_gemm_scalar(const Q8Mat& w, const QActs& a, float* y, int64_t ldy, int64_t tile0, int64_t tile1) {
  const int64_t nb = w.K / kQ8Block, tb = q8_tile_bytes(w.K);
  for (int64_t t = tile0; t < tile1; ++t) {
    const uint8_t* tile = w.data + t * tb;                                             // [tb]
    for (int r = 0; r < kQ8Rows; ++r) {
      const int64_t m = t * kQ8Rows + r;
      if (m >= w.M) break;
      for (int64_t b = 0; b < a.B; ++b) {
        const int8_t* q = a.q + b * a.ldq;  // [K]
        float acc = 0.0f;
        for (int64_t j = 0; j < nb; ++j) {
          const int8_t* blk = reinterpret_cast<const int8_t*>(tile + j * kQ8BlockBytes);  // [8, 64]
          int32_t dot = 0;
          for (int g = 0; g < 8; ++g)
            for (int i = 0; i < 4; ++i) dot += blk[g * kQ8GroupBytes + 4 * r + i] * q[j * kQ8Block + 4 * g + i];
          acc = acc + static_cast<float>(dot) * q8_scale(tile + j * kQ8BlockBytes + kQ8BlockQsBytes, r);
        }
        y[b * ldy + m] = acc / a.scale[b];
      }
    }
  }
}

void q8_get_rows_scalar(const Q8Mat& w, const int32_t* rows, int64_t n, float* out, int64_t ldo) {
  const int64_t nb = w.K / kQ8Block, tb = q8_tile_bytes(w.K);
  for (int64_t i = 0; i < n; ++i) {
    const int64_t m = rows[i], r = m % kQ8Rows;
    const uint8_t* tile = w.data + (m / kQ8Rows) * tb;
    for (int64_t j = 0; j < nb; ++j) {
      const int8_t* blk = reinterpret_cast<const int8_t*>(tile + j * kQ8BlockBytes);  // [8, 64]
      const float dj = q8_scale(tile + j * kQ8BlockBytes + kQ8BlockQsBytes, r);
      for (int g = 0; g < 8; ++g)
        for (int c = 0; c < 4; ++c)
          out[i * ldo + j * kQ8Block + 4 * g + c] = dj * static_cast<float>(blk[g * kQ8GroupBytes + 4 * r + c]);
    }
  }
}

}  // namespace

void fill_dense_scalar(KernelTable& t, const CpuFeatures& f) {
  t.f16_gemm = f16_gemm_scalar;
  t.f16_get_rows = f16_get_rows_scalar;
  t.f16t_gemm = f16t_gemm_scalar;
  t.f16t_get_rows = f16t_get_rows_any;
  t.q8_gemm = q8_gemm_scalar;
  t.q8_get_rows = q8_get_rows_scalar;
  t.v_f16 = "scalar";
  t.v_q8 = "scalar";
  fill_dense_q4_scalar(t, f);
}

}  // namespace bitllm
