// TD3 GEMM, NEON (ARMv8.0) core: bit-exact to ternary_td3_scalar.cpp. The shared driver and nibble
// decoder are in ternary_td3_neon.h; with dotprod the sdot core of ternary_td3_neondot.cpp is used.
// Codes (0..2) times the 4 activation bytes of their column group, broadcast to every 32-bit lane,
// by vmull_s8 / vmlal_high_s8: int16 lanes [row r slots 0..3 | row r+1 slots 0..3], products in
// [-256, 254]. A lane takes 64 products per 256-column block (10 units x 6 + a tail of 4): |sum| <=
// 16384; widened (vpadalq_s16) at the block end.
#include <cstring>

#include "ternary_td3_neon.h"

namespace bitllm {

namespace {

struct CoreV80 {
  static constexpr int kMaxTokens = 2;

  template <int NB>
  static inline void mla(int8x16_t c, const int8_t* const* x, int64_t col, int16x8_t (&acc)[NB][2]) {
    for (int i = 0; i < NB; ++i) {
      int32_t x4;
      std::memcpy(&x4, x[i] + col, 4);
      const int8x16_t xd = vreinterpretq_s8_s32(vdupq_n_s32(x4));
      acc[i][0] = vmlal_s8(acc[i][0], vget_low_s8(c), vget_low_s8(xd));
      acc[i][1] = vmlal_high_s8(acc[i][1], c, xd);
    }
  }

  template <int NB>
  static void block_dots(const uint8_t* blk, int units, int tails, int q, int v, const int8_t* const* x,
                         int32x4_t (&out)[NB]) {
    const uint8x16_t table = vld1q_u8(kTd3Decode);
    int16x8_t acc[NB][2];
    for (int i = 0; i < NB; ++i) acc[i][0] = acc[i][1] = vdupq_n_s16(0);
    const int blo = td3_sign_bit(q, 0), bhi = td3_sign_bit(q, 1);
    for (int u = 0; u < units; ++u) {
      const uint8_t* unit = blk + int64_t{u} * kTd3UnitBytes;
      const uint8x16_t s = vld1q_u8(unit + 16 * v);
      const uint8x16_t wv = vld1q_u8(unit + 64 + 64 * q + 16 * v);
      const int64_t col = int64_t{u} * kTd3UnitK;
      const uint8x16_t lo = td3_decode<0>(wv, s, blo, table);
      mla<NB>(td3_field<0>(lo), x, col, acc);
      mla<NB>(td3_field<1>(lo), x, col + 4, acc);
      mla<NB>(td3_field<2>(lo), x, col + 8, acc);
      const uint8x16_t hi = td3_decode<1>(wv, s, bhi, table);
      mla<NB>(td3_field<0>(hi), x, col + 12, acc);
      mla<NB>(td3_field<1>(hi), x, col + 16, acc);
      mla<NB>(td3_field<2>(hi), x, col + 20, acc);
    }
    for (int c = 0; c < tails; ++c) {
      const uint8x16_t tv = vld1q_u8(blk + int64_t{units} * kTd3UnitBytes + int64_t{c} * kTd3TailBytes + 64 * q + 16 * v);
      const int64_t col = int64_t{units} * kTd3UnitK + int64_t{c} * kTd3TailK;
      mla<NB>(td3_field<0>(tv), x, col, acc);
      mla<NB>(td3_field<1>(tv), x, col + 4, acc);
      mla<NB>(td3_field<2>(tv), x, col + 8, acc);
      mla<NB>(td3_field<3>(tv), x, col + 12, acc);
    }
    for (int i = 0; i < NB; ++i) {
      // [r i01, r i23, r+1 i01, r+1 i23] and the same for rows r+2, r+3
      const int32x4_t p0 = vpaddlq_s16(acc[i][0]), p1 = vpaddlq_s16(acc[i][1]);
      out[i] = vpaddq_s32(p0, p1);
    }
  }
};

// Decode of one tile to T2R16 (ternary_td3_to_t2_fn), for the batched GEMM.
void td3_to_t2_neon(const uint8_t* td3, int64_t K, int quads, uint8_t* codes) {
  const int64_t nb = td3_blocks(K), kchunks = K / kT2KStep;
  const uint8x16_t table = vld1q_u8(kTd3Decode);
  for (int64_t j = 0; j < nb; ++j) {
    const uint8_t* blk = td3 + td3_block_offset(j);
    const int units = td3_block_units(K, j), tails = td3_block_tails(K, j);
    const int64_t c0 = j * (kScaleBlockK / kT2KStep);
    for (int u = 0; u < units; u += 2) {
      const uint8_t* u0 = blk + int64_t{u} * kTd3UnitBytes;
      const uint8_t* u1 = u0 + kTd3UnitBytes;
      const int64_t kc = c0 + 3 * (u / 2);
      for (int q = 0; q < quads; ++q) {
        const int blo = td3_sign_bit(q, 0), bhi = td3_sign_bit(q, 1);
        uint8_t* out = codes + (q * kchunks + kc) * kT2ChunkBytes;
        for (int v = 0; v < 4; ++v) {
          const uint8x16_t s0 = vld1q_u8(u0 + 16 * v), s1 = vld1q_u8(u1 + 16 * v);
          const uint8x16_t w0 = vld1q_u8(u0 + 64 + 64 * q + 16 * v), w1 = vld1q_u8(u1 + 64 + 64 * q + 16 * v);
          const uint8x16_t lo = td3_decode<0>(w0, s0, blo, table), hi = td3_decode<1>(w0, s0, bhi, table);
          const uint8x16_t lo1 = td3_decode<0>(w1, s1, blo, table), hi1 = td3_decode<1>(w1, s1, bhi, table);
          vst1q_u8(out + 16 * v, vsliq_n_u8(lo, hi, 6));                          // lo | hi << 6
          vst1q_u8(out + 64 + 16 * v, vsliq_n_u8(vshrq_n_u8(hi, 2), lo1, 4));      // hi >> 2 | lo1 << 4
          vst1q_u8(out + 128 + 16 * v, vsliq_n_u8(vshrq_n_u8(lo1, 4), hi1, 2));    // lo1 >> 4 | hi1 << 2
        }
      }
    }
    for (int c = 0; c < tails; ++c) {
      const uint8_t* tail = blk + int64_t{units} * kTd3UnitBytes + int64_t{c} * kTd3TailBytes;
      const int64_t kc = c0 + 3 * (units / 2) + c;
      for (int q = 0; q < quads; ++q) std::memcpy(codes + (q * kchunks + kc) * kT2ChunkBytes, tail + 64 * q, kT2ChunkBytes);
    }
  }
}

void td3_gemm_neon(const TernaryTd3Mat& w, const QActs& a, float* y, int64_t ldy, int64_t tile0, int64_t tile1) {
  td3_gemm_neon_driver<CoreV80>(w, a, y, ldy, tile0, tile1);
}

}  // namespace

void fill_ternary_td3_neon(KernelTable& t, const CpuFeatures& f) {
  t.ternary_td3_to_t2 = td3_to_t2_neon;
  if (f.dotprod) {
    t.ternary_td3_gemm = ternary_td3_gemm_neondot;
    t.v_ternary_td3 = "neon-dotprod";
  } else {
    t.ternary_td3_gemm = td3_gemm_neon;
    t.v_ternary_td3 = "neon";
  }
}

}  // namespace bitllm
