// NEON q4 GEMM on Q4R16 with the ARMv8.2 dot product (sdot), bit-exact to dense_q4_scalar.cpp.
// Compiled with -march=armv8.2-a+dotprod; reached only through fill_dense_q4_neon when
// CpuFeatures::dotprod is set. A 64-byte chunk c is 4 vectors (rows 4v .. 4v+3); its low nibbles
// (AND 0x0f) are group c, its high nibbles (shift by 4) group c + 4, 4 codes u in [0, 15] per 32-bit
// lane. vdotq_laneq_s32 with lane c of the token's activation bytes k 0..15 (low) or k 16..31 (high)
// adds the exact int32 Σ u q to the row's lane; the accumulator starts at -8 Σ q (bsum32).
#include <arm_neon.h>

#include <algorithm>
#include <cstring>

#include "kernels.h"

namespace bitllm {

namespace {

template <int C, int NB>
inline void q4_dot_chunk(const uint8_t* chunk,  // [64]
                         const int8x16_t (&x0)[NB], const int8x16_t (&x1)[NB], int32x4_t (&acc)[NB][4]) {
  const uint8x16_t m4 = vdupq_n_u8(0x0f);
  for (int v = 0; v < 4; ++v) {
    const uint8x16_t wv = vld1q_u8(chunk + 16 * v);
    const int8x16_t lo = vreinterpretq_s8_u8(vandq_u8(wv, m4));
    const int8x16_t hi = vreinterpretq_s8_u8(vshrq_n_u8(wv, 4));
    for (int i = 0; i < NB; ++i) {
      acc[i][v] = vdotq_laneq_s32(acc[i][v], lo, x0[i], C);
      acc[i][v] = vdotq_laneq_s32(acc[i][v], hi, x1[i], C);
    }
  }
}

template <int NB>
void q4_tile(const uint8_t* tile,  // [q4_tile_bytes(K)]
             int64_t nb,
             const int8_t* const* q,    // NB x [K]
             const int32_t* const* bs,  // NB x [nb]
             const float* scale,        // [NB]
             float* const* yp, int rows) {
  float32x4_t facc[NB][4];
  for (int i = 0; i < NB; ++i)
    for (int v = 0; v < 4; ++v) facc[i][v] = vdupq_n_f32(0.0f);
  for (int64_t j = 0; j < nb; ++j) {
    const uint8_t* rec = tile + j * kQ4BlockBytes;
    int8x16_t x0[NB], x1[NB];
    int32x4_t acc[NB][4];
    for (int i = 0; i < NB; ++i) {
      x0[i] = vld1q_s8(q[i] + j * kQ4Block);
      x1[i] = vld1q_s8(q[i] + j * kQ4Block + 16);
      for (int v = 0; v < 4; ++v) acc[i][v] = vdupq_n_s32(-8 * bs[i][j]);
    }
    q4_dot_chunk<0, NB>(rec, x0, x1, acc);
    q4_dot_chunk<1, NB>(rec + kQ4ChunkBytes, x0, x1, acc);
    q4_dot_chunk<2, NB>(rec + 2 * kQ4ChunkBytes, x0, x1, acc);
    q4_dot_chunk<3, NB>(rec + 3 * kQ4ChunkBytes, x0, x1, acc);
    const uint16x8_t h0 = vreinterpretq_u16_u8(vld1q_u8(rec + kQ4BlockQsBytes));
    const uint16x8_t h1 = vreinterpretq_u16_u8(vld1q_u8(rec + kQ4BlockQsBytes + 16));
    const float32x4_t d[4] = {vcvt_f32_f16(vreinterpret_f16_u16(vget_low_u16(h0))),
                              vcvt_high_f32_f16(vreinterpretq_f16_u16(h0)),
                              vcvt_f32_f16(vreinterpret_f16_u16(vget_low_u16(h1))),
                              vcvt_high_f32_f16(vreinterpretq_f16_u16(h1))};
    for (int i = 0; i < NB; ++i)
      for (int v = 0; v < 4; ++v) facc[i][v] = vaddq_f32(facc[i][v], vmulq_f32(vcvtq_f32_s32(acc[i][v]), d[v]));
  }
  for (int i = 0; i < NB; ++i) {
    const float32x4_t sc = vdupq_n_f32(scale[i]);
    float out[kQ4Rows];
    for (int v = 0; v < 4; ++v) vst1q_f32(out + 4 * v, vdivq_f32(facc[i][v], sc));
    std::memcpy(yp[i], out, static_cast<size_t>(rows) * 4);
  }
}

template <int NB>
void q4_tile_n(int nt, const uint8_t* tile, int64_t nb, const int8_t* const* q, const int32_t* const* bs,
               const float* scale, float* const* yp, int rows) {
  if constexpr (NB > 1) {
    if (nt < NB) return q4_tile_n<NB - 1>(nt, tile, nb, q, bs, scale, yp, rows);
  }
  q4_tile<NB>(tile, nb, q, bs, scale, yp, rows);
}

constexpr int kQ4Tokens = 2;
constexpr int64_t kQ4ActBytes = 256 * 1024;  // activation bytes per token super-block (L2)

}  // namespace

void q4_gemm_neondot(const Q4Mat& w, const QActs& a, const int32_t* bsum32, float* y, int64_t ldy, int64_t tile0,
                     int64_t tile1) {
  const int64_t nb = w.K / kQ4Block, tb = q4_tile_bytes(w.K);
  const int64_t per = std::max<int64_t>(1, kQ4ActBytes / w.K / kQ4Tokens) * kQ4Tokens;
  for (int64_t s0 = 0; s0 < a.B; s0 += per) {
    const int64_t s1 = std::min(a.B, s0 + per);
    for (int64_t t = tile0; t < tile1; ++t) {
      const int64_t m0 = t * kQ4Rows;
      const int rows = static_cast<int>(std::min<int64_t>(kQ4Rows, w.M - m0));
      for (int64_t b0 = s0; b0 < s1; b0 += kQ4Tokens) {
        const int nt = static_cast<int>(std::min<int64_t>(kQ4Tokens, s1 - b0));
        const int8_t* q[kQ4Tokens];
        const int32_t* bs[kQ4Tokens];
        float* yp[kQ4Tokens];
        for (int i = 0; i < nt; ++i) {
          q[i] = a.q + (b0 + i) * a.ldq;
          bs[i] = bsum32 + (b0 + i) * nb;
          yp[i] = y + (b0 + i) * ldy + m0;
        }
        q4_tile_n<kQ4Tokens>(nt, w.data + t * tb, nb, q, bs, a.scale + b0, yp, rows);
      }
    }
  }
}

}  // namespace bitllm
