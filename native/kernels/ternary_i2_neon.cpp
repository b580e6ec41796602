// NEON ternary GEMM on T2R16, bit-exact to ternary_i2_scalar.cpp. Two integer cores share one driver
// (ternary_i2_neon.h): this file's ARMv8.0 core (widening multiply-accumulate) and, when the CPU has
// dotprod, the sdot core in ternary_i2_neondot.cpp.
#include <cstring>

#include "ternary_i2_neon.h"

namespace bitllm {

namespace {

// ARMv8.0 core. A 64-byte chunk is 4 vectors (rows 0-3, 4-7, 8-11, 12-15); (vector v >> 2l) & 3 holds
// in 32-bit lane j the 4 codes of row 4v+j at k = 16kc+4l .. +3. Multiplying by the 4 activation
// bytes of that k group broadcast to every lane (vmull_s8 / vmull_high_s8) gives int16 products,
// a row pair per half: [r i0..i3 | r+1 i0..i3]. Products are in [-256, 254]; each int16 lane takes 4
// per chunk and is widened (vpadalq_s16) every 16 chunks: |sum| <= 64 * 256 = 16384.
// Rows are done in two passes (vectors 0-1, then 2-3) so that NB tokens' int16 accumulators, the
// unpacked codes and the broadcast activations fit the 32 vector registers without spills; each
// weight vector is still loaded and unpacked once per chunk for all NB tokens.
struct CoreV80 {
  static constexpr int kMaxTokens = 3;
  static constexpr int64_t kWiden = 16;  // chunks between int16 -> int32 widenings

  template <int L, int NB>
  static inline void step(const uint8x16_t (&wv)[2], const int8_t* const* q, int64_t kc,
                          int16x8_t (&acc)[NB][4]) {
    const int8x16_t c0 = t2_unpack<L>(wv[0]);
    const int8x16_t c1 = t2_unpack<L>(wv[1]);
    for (int i = 0; i < NB; ++i) {
      // The 4 activation bytes q[i][16kc + 4L .. +3], broadcast (memcpy: no aliasing/alignment UB; ld1r).
      int32_t x4;
      std::memcpy(&x4, q[i] + kc * kT2KStep + 4 * L, 4);
      const int8x16_t xd = vreinterpretq_s8_s32(vdupq_n_s32(x4));
      acc[i][0] = vmlal_s8(acc[i][0], vget_low_s8(c0), vget_low_s8(xd));
      acc[i][1] = vmlal_high_s8(acc[i][1], c0, xd);
      acc[i][2] = vmlal_s8(acc[i][2], vget_low_s8(c1), vget_low_s8(xd));
      acc[i][3] = vmlal_high_s8(acc[i][3], c1, xd);
    }
  }

  template <int NB>
  static void dots(const uint8_t* c,  // [n, 64]
                   int64_t n,
                   const int8_t* const* q,  // NB x [16 n]
                   int32x4_t (&out)[NB][4]) {
    for (int vp = 0; vp < 4; vp += 2) {
      int32x4_t acc32[NB][4];
      for (int i = 0; i < NB; ++i)
        for (int h = 0; h < 4; ++h) acc32[i][h] = vdupq_n_s32(0);
      for (int64_t kc0 = 0; kc0 < n; kc0 += kWiden) {
        const int64_t kc1 = std::min(n, kc0 + kWiden);
        int16x8_t acc[NB][4];
        for (int i = 0; i < NB; ++i)
          for (int h = 0; h < 4; ++h) acc[i][h] = vdupq_n_s16(0);
        for (int64_t kc = kc0; kc < kc1; ++kc) {
          const uint8_t* p = c + kc * kT2ChunkBytes + 16 * vp;  // [32]
          const uint8x16_t wv[2] = {vld1q_u8(p), vld1q_u8(p + 16)};
          step<0, NB>(wv, q, kc, acc);
          step<1, NB>(wv, q, kc, acc);
          step<2, NB>(wv, q, kc, acc);
          step<3, NB>(wv, q, kc, acc);
        }
        for (int i = 0; i < NB; ++i)
          for (int h = 0; h < 4; ++h) acc32[i][h] = vpadalq_s16(acc32[i][h], acc[i][h]);
      }
      // acc32[i][2u] = [r i01, r i23, r+1 i01, r+1 i23] for r = 4(vp+u), acc32[i][2u+1] rows r+2, r+3.
      for (int i = 0; i < NB; ++i) {
        out[i][vp] = vpaddq_s32(acc32[i][0], acc32[i][1]);
        out[i][vp + 1] = vpaddq_s32(acc32[i][2], acc32[i][3]);
      }
    }
  }
};

void ternary_gemm_neon(const TernaryMat& w, const QActs& a, float* y, int64_t ldy, int64_t tile0,
                       int64_t tile1) {
  t2_gemm<CoreV80>(w, a, y, ldy, tile0, tile1);
}

}  // namespace

void fill_ternary_i2_neon(KernelTable& t, const CpuFeatures& f) {
  if (f.dotprod) {
    t.ternary_gemm = ternary_gemm_neondot;
    t.v_ternary = "neon-dotprod";
  } else {
    t.ternary_gemm = ternary_gemm_neon;
    t.v_ternary = "neon";
  }
}

}  // namespace bitllm
