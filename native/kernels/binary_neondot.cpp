// NEON binary GEMM on B1R16 with the ARMv8.2 dot product (sdot), bit-exact to binary_scalar.cpp.
// Compiled with -march=armv8.2-a+dotprod; reached only through fill_binary_neon when
// CpuFeatures::dotprod is set.
#include "binary_neon.h"

namespace bitllm {

namespace {

// sdot core. Each row's 64 bits become 4 byte masks (-1 / 0, B1Expander) reused for NB tokens;
// vdotq_s32(acc, mask, x) adds -Σ of the selected activations, 4 bytes per int32 lane (exact).
// Rows go in pairs: 8 masks + NB x 2 accumulators + one token's 4 activation vectors in registers.
struct CoreDot {
  static constexpr int kMaxTokens = 4;

  template <int NB>
  static void neg_pos(const uint8_t* tile,  // [K/64, 128]
                      int64_t kchunks, int r0,
                      const int8_t* const* q,  // NB x [K]
                      int32x4_t (&out)[NB]) {
    const B1Expander expand;
    int32x4_t acc[4][NB];
    for (int r = 0; r < 4; ++r)
      for (int i = 0; i < NB; ++i) acc[r][i] = vdupq_n_s32(0);
    for (int rp = 0; rp < 4; rp += 2) {
      for (int64_t kc = 0; kc < kchunks; ++kc) {
        const uint8_t* c = tile + kc * kB1ChunkBytes + 8 * (r0 + rp);  // [2, 8]
        int8x16_t m[2][4];
        expand(c, m[0]);
        expand(c + 8, m[1]);
        for (int i = 0; i < NB; ++i) {
          const int8_t* xp = q[i] + kc * kB1KStep;  // [64]
          for (int v = 0; v < 4; ++v) {
            const int8x16_t x = vld1q_s8(xp + 16 * v);
            acc[rp][i] = vdotq_s32(acc[rp][i], m[0][v], x);
            acc[rp + 1][i] = vdotq_s32(acc[rp + 1][i], m[1][v], x);
          }
        }
      }
    }
    for (int i = 0; i < NB; ++i)
      out[i] = vpaddq_s32(vpaddq_s32(acc[0][i], acc[1][i]), vpaddq_s32(acc[2][i], acc[3][i]));
  }
};

}  // namespace

void binary_gemm_neondot(const BinaryMat& w, const QActs& a, const float* tok_bias, float* y, int64_t ldy,
                         int64_t tile0, int64_t tile1) {
  b1_gemm<CoreDot>(w, a, tok_bias, y, ldy, tile0, tile1);
}

}  // namespace bitllm
