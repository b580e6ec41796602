// NEON ternary GEMM on T2R16 with the ARMv8.2 dot product (sdot), bit-exact to
// ternary_i2_scalar.cpp. Compiled with -march=armv8.2-a+dotprod; reached only through
// fill_ternary_i2_neon when CpuFeatures::dotprod is set.
#include "ternary_i2_neon.h"

namespace bitllm {

namespace {

// sdot core. (chunk vector v >> 2l) & 3 holds in 32-bit lane j the 4 codes (0..2, as int8) of row
// 4v+j at k = 16kc+4l .. +3; vdotq_laneq_s32 with lane l of the token's 16 activation bytes of the
// chunk (bytes 4l..4l+3, broadcast) adds their dot to that row's int32 lane.
struct CoreDot {
  static constexpr int kMaxTokens = 4;

  // NB >= 2: each chunk's codes are unpacked once and used for NB tokens (4 NB accumulators).
  template <int L, int NB>
  static inline void step(const uint8x16_t (&wv)[4], const int8x16_t (&x)[NB], int32x4_t (&acc)[NB][4]) {
    for (int v = 0; v < 4; ++v) {
      const int8x16_t c = t2_unpack<L>(wv[v]);
      for (int i = 0; i < NB; ++i) acc[i][v] = vdotq_laneq_s32(acc[i][v], c, x[i], L);
    }
  }

  template <int NB>
  static void dots_multi(const uint8_t* c,  // [n, 64]
                         int64_t n,
                         const int8_t* const* q,  // NB x [16 n]
                         int32x4_t (&out)[NB][4]) {
    int32x4_t acc[NB][4];
    for (int i = 0; i < NB; ++i)
      for (int v = 0; v < 4; ++v) acc[i][v] = vdupq_n_s32(0);
    for (int64_t kc = 0; kc < n; ++kc) {
      const uint8_t* p = c + kc * kT2ChunkBytes;  // [64]
      const uint8x16_t wv[4] = {vld1q_u8(p), vld1q_u8(p + 16), vld1q_u8(p + 32), vld1q_u8(p + 48)};
      int8x16_t x[NB];
      for (int i = 0; i < NB; ++i) x[i] = vld1q_s8(q[i] + kc * kT2KStep);
      step<0, NB>(wv, x, acc);
      step<1, NB>(wv, x, acc);
      step<2, NB>(wv, x, acc);
      step<3, NB>(wv, x, acc);
    }
    for (int i = 0; i < NB; ++i)
      for (int v = 0; v < 4; ++v) out[i][v] = acc[i][v];
  }

  // NB == 1 (decode): unpacking dominates, so bit pairs 0-2 are only masked, not shifted:
  // v & (3 << 2l) = code * 4^l (<= 32, still int8). Their dots go to separate accumulators, exact
  // multiples of 4^l, shifted back (exactly) when combined; bit pair 3 is v >> 6, scale 1 like pair
  // 0. (16 accumulators, one per pair, would need the masks rematerialized every chunk.)
  // Segments of kSeg chunks bound the scaled sums: |16 * dot| <= 16 * 256 * 4 kSeg = 2^26.
  static constexpr int64_t kSeg = 4096;

  static void dots_one(const uint8_t* c,  // [n, 64]
                       int64_t n,
                       const int8_t* q,  // [16 n]
                       int32x4_t (&out)[4]) {
    const uint8x16_t m0 = vdupq_n_u8(0x03), m1 = vdupq_n_u8(0x0c), m2 = vdupq_n_u8(0x30);
    int32x4_t total[4];
    for (int v = 0; v < 4; ++v) total[v] = vdupq_n_s32(0);
    for (int64_t s0 = 0; s0 < n; s0 += kSeg) {
      const int64_t s1 = std::min(n, s0 + kSeg);
      int32x4_t a1[4], a4[4], a16[4];  // scale 1 (bit pairs 0 and 3), 4 (pair 1), 16 (pair 2)
      for (int v = 0; v < 4; ++v) a1[v] = a4[v] = a16[v] = vdupq_n_s32(0);
      for (int64_t kc = s0; kc < s1; ++kc) {
        const uint8_t* p = c + kc * kT2ChunkBytes;  // [64]
        const int8x16_t x = vld1q_s8(q + kc * kT2KStep);
        for (int v = 0; v < 4; ++v) {
          const uint8x16_t w = vld1q_u8(p + 16 * v);
          a1[v] = vdotq_laneq_s32(a1[v], vreinterpretq_s8_u8(vandq_u8(w, m0)), x, 0);
          a4[v] = vdotq_laneq_s32(a4[v], vreinterpretq_s8_u8(vandq_u8(w, m1)), x, 1);
          a16[v] = vdotq_laneq_s32(a16[v], vreinterpretq_s8_u8(vandq_u8(w, m2)), x, 2);
          a1[v] = vdotq_laneq_s32(a1[v], vreinterpretq_s8_u8(vshrq_n_u8(w, 6)), x, 3);
        }
      }
      for (int v = 0; v < 4; ++v) {
        const int32x4_t s = vaddq_s32(a1[v], vaddq_s32(vshrq_n_s32(a4[v], 2), vshrq_n_s32(a16[v], 4)));
        total[v] = vaddq_s32(total[v], s);
      }
    }
    for (int v = 0; v < 4; ++v) out[v] = total[v];
  }

  template <int NB>
  static void dots(const uint8_t* c,  // [n, 64]
                   int64_t n,
                   const int8_t* const* q,  // NB x [16 n]
                   int32x4_t (&out)[NB][4]) {
    if constexpr (NB == 1) {
      dots_one(c, n, q[0], out[0]);
    } else {
      dots_multi<NB>(c, n, q, out);
    }
  }
};

}  // namespace

void ternary_gemm_neondot(const TernaryMat& w, const QActs& a, float* y, int64_t ldy, int64_t tile0,
                          int64_t tile1) {
  t2_gemm<CoreDot>(w, a, y, ldy, tile0, tile1);
}

}  // namespace bitllm
