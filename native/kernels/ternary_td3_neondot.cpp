// TD3 GEMM, NEON core with the ARMv8.2 dot product (sdot): bit-exact to ternary_td3_scalar.cpp.
// Compiled with -march=armv8.2-a+dotprod; reached only through fill_ternary_td3_neon when
// CpuFeatures::dotprod is set. Each decoded field (codes 0..2 of rows 4v..4v+3, 4 slots per row lane)
// is dotted with lane d of the 16 activation bytes at the unit's column (low slots) or column + 8
// (high slots: lanes 1..3 = columns 12..23), so no broadcast is needed.
#include "ternary_td3_neon.h"

namespace bitllm {

namespace {

struct CoreDot {
  static constexpr int kMaxTokens = 4;

  template <int NB>
  static void block_dots(const uint8_t* blk, int units, int tails, int q, int v, const int8_t* const* x,
                         int32x4_t (&out)[NB]) {
    const uint8x16_t table = vld1q_u8(kTd3Decode);
    int32x4_t acc[NB];
    for (int i = 0; i < NB; ++i) acc[i] = vdupq_n_s32(0);
    const int blo = td3_sign_bit(q, 0), bhi = td3_sign_bit(q, 1);
    for (int u = 0; u < units; ++u) {
      const uint8_t* unit = blk + int64_t{u} * kTd3UnitBytes;
      const uint8x16_t s = vld1q_u8(unit + 16 * v);
      const uint8x16_t wv = vld1q_u8(unit + 64 + 64 * q + 16 * v);
      const int64_t col = int64_t{u} * kTd3UnitK;
      const uint8x16_t lo = td3_decode<0>(wv, s, blo, table), hi = td3_decode<1>(wv, s, bhi, table);
      const int8x16_t l0 = td3_field<0>(lo), l1 = td3_field<1>(lo), l2 = td3_field<2>(lo);
      const int8x16_t h0 = td3_field<0>(hi), h1 = td3_field<1>(hi), h2 = td3_field<2>(hi);
      for (int i = 0; i < NB; ++i) {
        const int8x16_t xa = vld1q_s8(x[i] + col), xb = vld1q_s8(x[i] + col + 8);  // columns col..+15, col+8..+23
        acc[i] = vdotq_laneq_s32(acc[i], l0, xa, 0);
        acc[i] = vdotq_laneq_s32(acc[i], l1, xa, 1);
        acc[i] = vdotq_laneq_s32(acc[i], l2, xa, 2);
        acc[i] = vdotq_laneq_s32(acc[i], h0, xb, 1);
        acc[i] = vdotq_laneq_s32(acc[i], h1, xb, 2);
        acc[i] = vdotq_laneq_s32(acc[i], h2, xb, 3);
      }
    }
    for (int c = 0; c < tails; ++c) {
      const uint8x16_t tv = vld1q_u8(blk + int64_t{units} * kTd3UnitBytes + int64_t{c} * kTd3TailBytes + 64 * q + 16 * v);
      const int64_t col = int64_t{units} * kTd3UnitK + int64_t{c} * kTd3TailK;
      const int8x16_t f0 = td3_field<0>(tv), f1 = td3_field<1>(tv), f2 = td3_field<2>(tv), f3 = td3_field<3>(tv);
      for (int i = 0; i < NB; ++i) {
        const int8x16_t xa = vld1q_s8(x[i] + col);
        acc[i] = vdotq_laneq_s32(acc[i], f0, xa, 0);
        acc[i] = vdotq_laneq_s32(acc[i], f1, xa, 1);
        acc[i] = vdotq_laneq_s32(acc[i], f2, xa, 2);
        acc[i] = vdotq_laneq_s32(acc[i], f3, xa, 3);
      }
    }
    for (int i = 0; i < NB; ++i) out[i] = acc[i];
  }
};

}  // namespace

void ternary_td3_gemm_neondot(const TernaryTd3Mat& w, const QActs& a, float* y, int64_t ldy, int64_t tile0,
                              int64_t tile1) {
  td3_gemm_neon_driver<CoreDot>(w, a, y, ldy, tile0, tile1);
}

}  // namespace bitllm
