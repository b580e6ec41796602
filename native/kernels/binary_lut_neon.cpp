// NEON (ARMv8.0) table build and lookup GEMM on B1L64, bit-exact to binary_lut_scalar.cpp.
//
// A group's 16-float table is 64 bytes, i.e. one `vqtbl4q_u8` table. For 4 rows (one q register of
// B1L64 dwords) the byte indices of entry n are 4n + {0, 1, 2, 3}: ((lanes >> (4j - 2)) & 0x3C) gives
// 4n per dword, and one multiply-add by 0x01010101 onto 0x03020100 spreads it over the 4 bytes. So per
// 4 rows x 4 columns: shift, and, mla, tbl4, fadd. A pass covers one 16-row quarter (4 index
// registers, 8 accumulators: the contract's even / odd chains, 4 table registers); tokens run one
// after another. Tables are built with plain float adds in the contract's order.
#include <arm_neon.h>

#include <algorithm>
#include <cstring>

#include "kernels.h"

namespace bitllm {

namespace {

void binary_lut_build_neon(const float* u, int64_t ldu, int64_t B, int64_t K, float* tables, int64_t ldt,
                           int64_t g0, int64_t g1) {
  (void)K;
  // Entries j = 4h + l: σ0, σ1 follow l (the lanes), σ2 = bit 0 of h, σ3 = bit 1 of h.
  static const float kS0[4] = {-1.0f, 1.0f, -1.0f, 1.0f};
  static const float kS1[4] = {-1.0f, -1.0f, 1.0f, 1.0f};
  const float32x4_t s0 = vld1q_f32(kS0), s1 = vld1q_f32(kS1);
  for (int64_t b = 0; b < B; ++b) {
    const float* x = u + b * ldu;  // [K]
    float* tb = tables + b * ldt;  // [K/4, 16]
    for (int64_t g = g0; g < g1; ++g) {
      const float* xg = x + kB1lGroupK * g;  // [4]
      // σ·u is exact, so mul-then-add rounds once, like the contract's σ0·u0 + σ1·u1.
      const float32x4_t p = vaddq_f32(vmulq_f32(vdupq_n_f32(xg[0]), s0), vmulq_f32(vdupq_n_f32(xg[1]), s1));
      const float32x4_t u2 = vdupq_n_f32(xg[2]), u3 = vdupq_n_f32(xg[3]);
      const float32x4_t lo = vsubq_f32(p, u2), hi = vaddq_f32(p, u2);
      float* t = tb + kB1lTableFloats * g;  // [16]
      vst1q_f32(t, vsubq_f32(lo, u3));
      vst1q_f32(t + 4, vsubq_f32(hi, u3));
      vst1q_f32(t + 8, vaddq_f32(lo, u3));
      vst1q_f32(t + 12, vaddq_f32(hi, u3));
    }
  }
}

// out[r] = acc of row 16q + r of one block for one token.
void quarter_sums(const uint8_t* blk,  // [K/32, 256]
                  int64_t kchunks, int q,
                  const float* tab,  // [K/4, 16]
                  float* out) {      // [16]
  const uint32x4_t nib4 = vdupq_n_u32(0x3C), spread = vdupq_n_u32(0x01010101), offs = vdupq_n_u32(0x03020100);
  float32x4_t e[4], o[4];
  for (int i = 0; i < 4; ++i) e[i] = o[i] = vdupq_n_f32(0.0f);
  for (int64_t kc = 0; kc < kchunks; ++kc) {
    const uint8_t* c = blk + kc * kB1lChunkBytes + 64 * q;  // [4, 16]
    uint32x4_t v[4];
    for (int i = 0; i < 4; ++i) v[i] = vld1q_u32(reinterpret_cast<const uint32_t*>(c + 16 * i));
    const uint8_t* tc = reinterpret_cast<const uint8_t*>(tab + kc * 8 * kB1lTableFloats);  // [8, 64]
#define BITLLM_B1L_GROUP(j, chain, shifted)                                                     \
  {                                                                                           \
    uint8x16x4_t t;                                                                           \
    t.val[0] = vld1q_u8(tc + 64 * (j));                                                       \
    t.val[1] = vld1q_u8(tc + 64 * (j) + 16);                                                  \
    t.val[2] = vld1q_u8(tc + 64 * (j) + 32);                                                  \
    t.val[3] = vld1q_u8(tc + 64 * (j) + 48);                                                  \
    for (int i = 0; i < 4; ++i) {                                                             \
      const uint32x4_t idx = vmlaq_u32(offs, vandq_u32(shifted, nib4), spread);               \
      const uint8x16_t val = vqtbl4q_u8(t, vreinterpretq_u8_u32(idx));                        \
      chain[i] = vaddq_f32(chain[i], vreinterpretq_f32_u8(val));                              \
    }                                                                                         \
  }
    BITLLM_B1L_GROUP(0, e, vshlq_n_u32(v[i], 2))
    BITLLM_B1L_GROUP(1, o, vshrq_n_u32(v[i], 2))
    BITLLM_B1L_GROUP(2, e, vshrq_n_u32(v[i], 6))
    BITLLM_B1L_GROUP(3, o, vshrq_n_u32(v[i], 10))
    BITLLM_B1L_GROUP(4, e, vshrq_n_u32(v[i], 14))
    BITLLM_B1L_GROUP(5, o, vshrq_n_u32(v[i], 18))
    BITLLM_B1L_GROUP(6, e, vshrq_n_u32(v[i], 22))
    BITLLM_B1L_GROUP(7, o, vshrq_n_u32(v[i], 26))
#undef BITLLM_B1L_GROUP
  }
  for (int i = 0; i < 4; ++i) vst1q_f32(out + 4 * i, vaddq_f32(e[i], o[i]));
}

void binary_lut_gemm_neon(const BinaryLutMat& w, const float* tables, int64_t ldt, int64_t B,
                          const float* row_scale, const float* tok_bias, float* y, int64_t ldy, int64_t blk0,
                          int64_t blk1) {
  const int64_t kchunks = w.K / kB1lKStep;
  for (int64_t t = blk0; t < blk1; ++t) {
    const uint8_t* blk = w.bits + t * kchunks * kB1lChunkBytes;  // [K/32, 256]
    for (int q = 0; q < kB1lRows / 16; ++q) {
      const int64_t m0 = t * kB1lRows + 16 * q;
      if (m0 >= w.M) break;
      const int rows = static_cast<int>(std::min<int64_t>(16, w.M - m0));
      for (int64_t b = 0; b < B; ++b) {
        float acc[16];
        quarter_sums(blk, kchunks, q, tables + b * ldt, acc);
        float* yr = y + b * ldy + m0;  // [rows]
        for (int r = 0; r < rows; ++r) {
          float v = acc[r];
          if (row_scale) v = v * row_scale[m0 + r];
          if (tok_bias) v = v + tok_bias[b];
          yr[r] = v;
        }
      }
    }
  }
}

}  // namespace

void fill_binary_lut_neon(KernelTable& t, const CpuFeatures&) {
  t.binary_lut_build = binary_lut_build_neon;
  t.binary_lut_gemm = binary_lut_gemm_neon;
  t.v_binary_lut = "neon";
}

}  // namespace bitllm
