// Private to ternary_td3_neon.cpp (ARMv8.0) and ternary_td3_neondot.cpp (ARMv8.2 + dotprod): the TD3
// driver (blocks, scale modes, float epilogue) and the nibble decoder, around an integer "core".
// Everything here except ternary_td3_gemm_neondot has internal linkage, so each translation unit
// (built with its own -march) keeps its own copy.
#pragma once
#include <arm_neon.h>

#include <algorithm>

#include "kernels.h"

namespace bitllm {

// Defined in ternary_td3_neondot.cpp; call only when CpuFeatures::dotprod is set.
void ternary_td3_gemm_neondot(const TernaryTd3Mat& w, const QActs& a,
                              float* y,  // [B, ldy]
                              int64_t ldy, int64_t tile0, int64_t tile1);

namespace {

// Sign-corrected packed bytes c0 | c1 << 2 | c2 << 4 of 16 nibble bytes (rows 4v..4v+3 of a quad):
// vtbl of the low (H = 0) or high nibbles, 42 - byte where the slot's sign bit `bit` is set in s.
template <int H>
inline uint8x16_t td3_decode(uint8x16_t w, uint8x16_t s, int bit, uint8x16_t table) {
  const uint8x16_t nib = H ? vshrq_n_u8(w, 4) : vandq_u8(w, vdupq_n_u8(0x0f));
  const uint8x16_t r = vqtbl1q_u8(table, nib);
  const uint8x16_t neg = vtstq_u8(s, vdupq_n_u8(static_cast<uint8_t>(1u << bit)));
  return vbslq_u8(neg, vsubq_u8(vdupq_n_u8(kTd3Negate), r), r);
}

// Code D (0..2) of packed bytes or T2R16 bytes, as int8.
template <int D>
inline int8x16_t td3_field(uint8x16_t r) {
  if constexpr (D == 0) return vreinterpretq_s8_u8(vandq_u8(r, vdupq_n_u8(3)));
  else if constexpr (D == 3) return vreinterpretq_s8_u8(vshrq_n_u8(r, 6));
  else return vreinterpretq_s8_u8(vandq_u8(vshrq_n_u8(r, 2 * D), vdupq_n_u8(3)));
}

// A Core provides
//   static constexpr int kMaxTokens;
//   template <int NB> static void block_dots(const uint8_t* blk, int units, int tails, int q, int v,
//                                            const int8_t* const* x,  // NB x [block columns]
//                                            int32x4_t (&out)[NB]);
// out[i] lane j = Σ code(row 16q + 4v + j, k) * x[i][k] over block j's columns (exact int32).

// Per-row state of one tile and token between blocks.
struct Td3RowState {
  int32_t dot[kTd3Rows];
  float facc[kTd3Rows];
};

template <class Core, int NB>
void td3_token_block(const TernaryTd3Mat& w, const QActs& a, float* y, int64_t ldy, int64_t t, int64_t b0) {
  const int64_t nb = td3_blocks(w.K), nsb = w.K / kScaleBlockK;
  const uint8_t* tile = w.data + t * td3_tile_bytes(w.K);
  Td3RowState st[NB];
  for (int i = 0; i < NB; ++i)
    for (int r = 0; r < kTd3Rows; ++r) {
      st[i].dot[r] = 0;
      st[i].facc[r] = 0.0f;
    }
  for (int64_t j = 0; j < nb; ++j) {
    const uint8_t* blk = tile + td3_block_offset(j);
    const int units = td3_block_units(w.K, j), tails = td3_block_tails(w.K, j);
    const int8_t* x[NB];
    for (int i = 0; i < NB; ++i) x[i] = a.q + (b0 + i) * a.ldq + j * kScaleBlockK;
    for (int q = 0; q < kTd3Quads; ++q) {
      const int64_t m0 = t * kTd3Rows + q * kTd3QuadRows;
      if (m0 >= w.M) break;  // rows (and scales) of this quad do not exist
      for (int v = 0; v < 4; ++v) {
        int32x4_t d[NB];
        Core::template block_dots<NB>(blk, units, tails, q, v, x, d);
        const int r = q * kTd3QuadRows + 4 * v;
        for (int i = 0; i < NB; ++i) {
          if (w.scale_mode == kScaleBlock) {
            // acc = acc + (float)(dot_j - bsum_j) * d_j
            const float32x4_t ws = vld1q_f32(w.scales + ((t * kTd3Quads + q) * nsb + j) * kT2Rows + 4 * v);
            const int32x4_t dj = vsubq_s32(d[i], vdupq_n_s32(a.bsum[(b0 + i) * nsb + j]));
            vst1q_f32(st[i].facc + r, vaddq_f32(vld1q_f32(st[i].facc + r), vmulq_f32(vcvtq_f32_s32(dj), ws)));
          } else {
            vst1q_s32(st[i].dot + r, vaddq_s32(vld1q_s32(st[i].dot + r), d[i]));
          }
        }
      }
    }
  }
  for (int i = 0; i < NB; ++i) {
    const float32x4_t s = vdupq_n_f32(a.scale[b0 + i]);
    const int32x4_t sm = vdupq_n_s32(a.sum[b0 + i]);
    float* yr = y + (b0 + i) * ldy;
    for (int r = 0; r < kTd3Rows; r += 4) {
      const int64_t m = t * kTd3Rows + r, rows = std::min<int64_t>(4, w.M - m);
      if (rows <= 0) break;
      float32x4_t v;
      if (w.scale_mode == kScaleBlock) {
        v = vdivq_f32(vld1q_f32(st[i].facc + r), s);
      } else {
        // y = ((float)(dot - sum) * ws) / s
        const float32x4_t ws = w.scale_mode == kScaleRow ? vld1q_f32(w.scales + m) : vdupq_n_f32(w.scales[0]);
        v = vdivq_f32(vmulq_f32(vcvtq_f32_s32(vsubq_s32(vld1q_s32(st[i].dot + r), sm)), ws), s);
      }
      if (rows == 4) {
        vst1q_f32(yr + m, v);
      } else {
        float tmp[4];
        vst1q_f32(tmp, v);
        for (int64_t k = 0; k < rows; ++k) yr[m + k] = tmp[k];
      }
    }
  }
}

template <class Core, int NB>
void td3_token_block_n(const TernaryTd3Mat& w, const QActs& a, float* y, int64_t ldy, int64_t t, int64_t b0,
                       int64_t nt) {
  if constexpr (NB > 1) {
    if (nt < NB) {
      td3_token_block_n<Core, NB - 1>(w, a, y, ldy, t, b0, nt);
      return;
    }
  }
  td3_token_block<Core, NB>(w, a, y, ldy, t, b0);
}

template <class Core>
void td3_gemm_neon_driver(const TernaryTd3Mat& w, const QActs& a, float* y, int64_t ldy, int64_t tile0,
                          int64_t tile1) {
  for (int64_t t = tile0; t < tile1; ++t)
    for (int64_t b0 = 0; b0 < a.B; b0 += Core::kMaxTokens)
      td3_token_block_n<Core, Core::kMaxTokens>(w, a, y, ldy, t, b0, std::min<int64_t>(Core::kMaxTokens, a.B - b0));
}

}  // namespace

}  // namespace bitllm
