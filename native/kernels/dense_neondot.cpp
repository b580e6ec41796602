// NEON q8 GEMM on Q8R16 with the ARMv8.2 dot product (sdot), bit-exact to dense_scalar.cpp.
// Compiled with -march=armv8.2-a+dotprod; reached only through fill_dense_neon when
// CpuFeatures::dotprod is set. A 64-byte Q8R16 group is 4 vectors (rows 0-3, 4-7, 8-11, 12-15), whose
// 32-bit lane i holds row 4v+i's 4 codes of the group; vdotq_laneq_s32 with lane l of the token's 16
// activation bytes (groups 4h .. 4h+3) adds their exact int32 dot to that row's lane.
#include <arm_neon.h>

#include <algorithm>
#include <cstring>

#include "kernels.h"

namespace bitllm {

namespace {

template <int L, int NB>
inline void q8_dot_group(const int8_t* grp,  // [64] one Q8R16 group
                         const int8x16_t (&x)[NB], int32x4_t (&acc)[NB][4]) {
  int8x16_t wv[4];
  for (int v = 0; v < 4; ++v) wv[v] = vld1q_s8(grp + 16 * v);
  for (int i = 0; i < NB; ++i)
    for (int v = 0; v < 4; ++v) acc[i][v] = vdotq_laneq_s32(acc[i][v], wv[v], x[i], L);
}

// Y for NB tokens on one Q8R16 tile; yp[i] points at the tile's first output row of token i.
template <int NB>
void q8_tile(const uint8_t* tile,  // [q8_tile_bytes(K)]
             int64_t nb,
             const int8_t* const* q,  // NB x [K]
             const float* scale,      // [NB]
             float* const* yp, int rows) {
  float32x4_t facc[NB][4];
  for (int i = 0; i < NB; ++i)
    for (int v = 0; v < 4; ++v) facc[i][v] = vdupq_n_f32(0.0f);
  for (int64_t j = 0; j < nb; ++j) {
    const int8_t* blk = reinterpret_cast<const int8_t*>(tile + j * kQ8BlockBytes);  // [8, 64]
    int32x4_t acc[NB][4];
    for (int i = 0; i < NB; ++i)
      for (int v = 0; v < 4; ++v) acc[i][v] = vdupq_n_s32(0);
    for (int h = 0; h < 2; ++h) {  // groups 4h .. 4h+3 = activation bytes 16h .. 16h+15 of the block
      int8x16_t x[NB];
      for (int i = 0; i < NB; ++i) x[i] = vld1q_s8(q[i] + j * kQ8Block + 16 * h);
      const int8_t* g0 = blk + 4 * h * kQ8GroupBytes;
      q8_dot_group<0, NB>(g0, x, acc);
      q8_dot_group<1, NB>(g0 + kQ8GroupBytes, x, acc);
      q8_dot_group<2, NB>(g0 + 2 * kQ8GroupBytes, x, acc);
      q8_dot_group<3, NB>(g0 + 3 * kQ8GroupBytes, x, acc);
    }
    const uint16x8_t h0 = vreinterpretq_u16_u8(vld1q_u8(tile + j * kQ8BlockBytes + kQ8BlockQsBytes));
    const uint16x8_t h1 = vreinterpretq_u16_u8(vld1q_u8(tile + j * kQ8BlockBytes + kQ8BlockQsBytes + 16));
    const float32x4_t d[4] = {vcvt_f32_f16(vreinterpret_f16_u16(vget_low_u16(h0))),
                              vcvt_high_f32_f16(vreinterpretq_f16_u16(h0)),
                              vcvt_f32_f16(vreinterpret_f16_u16(vget_low_u16(h1))),
                              vcvt_high_f32_f16(vreinterpretq_f16_u16(h1))};
    for (int i = 0; i < NB; ++i)
      for (int v = 0; v < 4; ++v) facc[i][v] = vaddq_f32(facc[i][v], vmulq_f32(vcvtq_f32_s32(acc[i][v]), d[v]));
  }
  for (int i = 0; i < NB; ++i) {
    const float32x4_t s = vdupq_n_f32(scale[i]);
    float out[kQ8Rows];
    for (int v = 0; v < 4; ++v) vst1q_f32(out + 4 * v, vdivq_f32(facc[i][v], s));
    std::memcpy(yp[i], out, static_cast<size_t>(rows) * 4);
  }
}

template <int NB>
void q8_tile_n(int nt, const uint8_t* tile, int64_t nb, const int8_t* const* q, const float* scale,
               float* const* yp, int rows) {
  if constexpr (NB > 1) {
    if (nt < NB) return q8_tile_n<NB - 1>(nt, tile, nb, q, scale, yp, rows);
  }
  q8_tile<NB>(tile, nb, q, scale, yp, rows);
}

constexpr int kQ8Tokens = 2;
constexpr int64_t kQ8ActBytes = 256 * 1024;  // activation bytes per token super-block (L2)

}  // namespace

void q8_gemm_neondot(const Q8Mat& w, const QActs& a, float* y, int64_t ldy, int64_t tile0, int64_t tile1) {
  const int64_t nb = w.K / kQ8Block, tb = q8_tile_bytes(w.K);
  const int64_t per = std::max<int64_t>(1, kQ8ActBytes / w.K / kQ8Tokens) * kQ8Tokens;
  for (int64_t s0 = 0; s0 < a.B; s0 += per) {
    const int64_t s1 = std::min(a.B, s0 + per);
    for (int64_t t = tile0; t < tile1; ++t) {
      const int64_t m0 = t * kQ8Rows;
      const int rows = static_cast<int>(std::min<int64_t>(kQ8Rows, w.M - m0));
      for (int64_t b0 = s0; b0 < s1; b0 += kQ8Tokens) {
        const int nt = static_cast<int>(std::min<int64_t>(kQ8Tokens, s1 - b0));
        const int8_t* q[kQ8Tokens];
        float* yp[kQ8Tokens];
        for (int i = 0; i < nt; ++i) {
          q[i] = a.q + (b0 + i) * a.ldq;
          yp[i] = y + (b0 + i) * ldy + m0;
        }
        q8_tile_n<kQ8Tokens>(nt, w.data + t * tb, nb, q, a.scale + b0, yp, rows);
      }
    }
  }
}

}  // namespace bitllm
