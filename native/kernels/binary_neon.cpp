// NEON binary GEMM on B1R16 and column-side prep, bit-exact to binary_scalar.cpp. Two integer cores
// share one driver (binary_neon.h): this file's ARMv8.0 core (byte masks x activations with widening
// multiply-accumulate) and, when the CPU has dotprod, the sdot core in binary_neondot.cpp.
#include "binary_neon.h"

namespace bitllm {

namespace {

// ARMv8.0 core. Each row's 64 bits become 4 byte masks (-1 / 0, B1Expander: tbl + tst), reused for NB
// tokens; vmlal_s8 / vmlal_high_s8 of mask x activations add -q for every 1 bit into int16 lanes. Per
// chunk a lane takes 8 products of magnitude <= 128, so int16 holds kWiden = 16 chunks (<= 16384)
// before vpadalq_s16 widens to int32. Rows go in pairs so that masks, accumulators and one token's
// activations fit the 32 vector registers.
struct CoreV80 {
  static constexpr int kMaxTokens = 4;
  static constexpr int64_t kWiden = 16;

  template <int NB>
  static void neg_pos(const uint8_t* tile,  // [K/64, 128]
                      int64_t kchunks, int r0,
                      const int8_t* const* q,  // NB x [K]
                      int32x4_t (&out)[NB]) {
    const B1Expander expand;
    int32x4_t acc32[4][NB];
    for (int r = 0; r < 4; ++r)
      for (int i = 0; i < NB; ++i) acc32[r][i] = vdupq_n_s32(0);
    for (int rp = 0; rp < 4; rp += 2) {
      for (int64_t kc0 = 0; kc0 < kchunks; kc0 += kWiden) {
        const int64_t kc1 = std::min(kchunks, kc0 + kWiden);
        int16x8_t acc[2][NB];
        for (int r = 0; r < 2; ++r)
          for (int i = 0; i < NB; ++i) acc[r][i] = vdupq_n_s16(0);
        for (int64_t kc = kc0; kc < kc1; ++kc) {
          const uint8_t* c = tile + kc * kB1ChunkBytes + 8 * (r0 + rp);  // [2, 8]
          int8x16_t m[2][4];
          expand(c, m[0]);
          expand(c + 8, m[1]);
          for (int i = 0; i < NB; ++i) {
            const int8_t* xp = q[i] + kc * kB1KStep;  // [64]
            for (int v = 0; v < 4; ++v) {
              const int8x16_t x = vld1q_s8(xp + 16 * v);
              for (int r = 0; r < 2; ++r) {
                acc[r][i] = vmlal_s8(acc[r][i], vget_low_s8(m[r][v]), vget_low_s8(x));
                acc[r][i] = vmlal_high_s8(acc[r][i], m[r][v], x);
              }
            }
          }
        }
        for (int r = 0; r < 2; ++r)
          for (int i = 0; i < NB; ++i) acc32[rp + r][i] = vpadalq_s16(acc32[rp + r][i], acc[r][i]);
      }
    }
    for (int i = 0; i < NB; ++i)
      out[i] = vpaddq_s32(vpaddq_s32(acc32[0][i], acc32[1][i]), vpaddq_s32(acc32[2][i], acc32[3][i]));
  }
};

void binary_gemm_neon(const BinaryMat& w, const QActs& a, const float* tok_bias, float* y, int64_t ldy,
                      int64_t tile0, int64_t tile1) {
  b1_gemm<CoreV80>(w, a, tok_bias, y, ldy, tile0, tile1);
}

// 16 lane partials p[k % 16] as four float32x4 (lanes 0-3, 4-7, 8-11, 12-15), folded as binary.h says.
void binary_prep_neon(const float* x, int64_t ldx, int64_t B, int64_t K, const float* col_scale,
                      const float* col_bias, float* xs, int64_t ldxs, float* tok_bias) {
  const int64_t k16 = K & ~int64_t{15};
  for (int64_t b = 0; b < B; ++b) {
    const float* xr = x + b * ldx;  // [K]
    float* xo = xs + b * ldxs;      // [K]
    float32x4_t p[4];
    for (int v = 0; v < 4; ++v) p[v] = vdupq_n_f32(0.0f);
    for (int64_t k = 0; k < k16; k += 16) {
      for (int v = 0; v < 4; ++v) {
        const float32x4_t xv = vld1q_f32(xr + k + 4 * v);
        vst1q_f32(xo + k + 4 * v, col_scale ? vmulq_f32(xv, vld1q_f32(col_scale + k + 4 * v)) : xv);
        if (col_bias) p[v] = vaddq_f32(p[v], vmulq_f32(vld1q_f32(col_bias + k + 4 * v), xv));
      }
    }
    if (k16 < K) {
      // The tail through a zero-padded copy: padded lanes add +0 * +0 = +0 (p is never -0).
      float xt[16] = {}, bt[16] = {};
      for (int64_t i = 0; i < K - k16; ++i) {
        xt[i] = xr[k16 + i];
        xo[k16 + i] = col_scale ? xr[k16 + i] * col_scale[k16 + i] : xr[k16 + i];
        if (col_bias) bt[i] = col_bias[k16 + i];
      }
      if (col_bias)
        for (int v = 0; v < 4; ++v) p[v] = vaddq_f32(p[v], vmulq_f32(vld1q_f32(bt + 4 * v), vld1q_f32(xt + 4 * v)));
    }
    if (col_bias) {
      const float32x4_t h4 = vaddq_f32(vaddq_f32(p[0], p[2]), vaddq_f32(p[1], p[3]));
      const float32x2_t h2 = vadd_f32(vget_low_f32(h4), vget_high_f32(h4));
      tok_bias[b] = vget_lane_f32(h2, 0) + vget_lane_f32(h2, 1);
    }
  }
}

}  // namespace

void fill_binary_neon(KernelTable& t, const CpuFeatures& f) {
  t.binary_gemm = f.dotprod ? binary_gemm_neondot : binary_gemm_neon;
  t.binary_prep = binary_prep_neon;
  t.v_binary = f.dotprod ? "neon-dotprod" : "neon";
}

}  // namespace bitllm
