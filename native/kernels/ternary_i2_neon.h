// Private to ternary_i2_neon.cpp (ARMv8.0) and ternary_i2_neondot.cpp (ARMv8.2 + dotprod): the
// shared T2R16 GEMM driver (token blocking, scale modes, float epilogue) around an integer "core".
// Everything here except ternary_gemm_neondot has internal linkage, so each translation unit (built
// with its own -march) keeps its own copy and the linker never mixes the two.
#pragma once
#include <arm_neon.h>

#include <algorithm>

#include "kernels.h"

namespace bitllm {

// Defined in ternary_i2_neondot.cpp; call only when CpuFeatures::dotprod is set.
void ternary_gemm_neondot(const TernaryMat& w, const QActs& a,
                          float* y,  // [B, ldy]
                          int64_t ldy, int64_t tile0, int64_t tile1);

namespace {

// Codes of bit pair L of a T2R16 chunk vector: (v >> 2L) & 3, as int8 (values 0..2).
template <int L>
inline int8x16_t t2_unpack(uint8x16_t v) {
  if constexpr (L == 0) {
    return vreinterpretq_s8_u8(vandq_u8(v, vdupq_n_u8(3)));
  } else if constexpr (L == 3) {
    return vreinterpretq_s8_u8(vshrq_n_u8(v, 6));
  } else {
    return vreinterpretq_s8_u8(vandq_u8(vshrq_n_u8(v, 2 * L), vdupq_n_u8(3)));
  }
}

// A Core provides
//   static constexpr int kMaxTokens;                 widest token block it register-blocks
//   template <int NB> static void dots(const uint8_t* c,  // [n, 64] T2R16 chunks of one tile
//                                      int64_t n,
//                                      const int8_t* const* q,  // NB pointers, each [16 n]
//                                      int32x4_t (&out)[NB][4]);
// out[i][v] lane j = Σ_k code(row 4v+j, k) * q[i][k] over the n chunks (exact int32).

// Y for NB tokens (b0 .. b0+NB) of row tile t.
template <class Core, int NB>
void t2_token_block(const TernaryMat& w, const QActs& a, float* y, int64_t ldy, int64_t t, int64_t b0) {
  const int64_t kchunks = w.K / kT2KStep;
  const uint8_t* tile = w.codes + t * kchunks * kT2ChunkBytes;  // [K/16, 64]
  const int8_t* q[NB];
  for (int i = 0; i < NB; ++i) q[i] = a.q + (b0 + i) * a.ldq;
  float32x4_t out[NB][4];
  if (w.scale_mode == kScaleBlock) {
    const int64_t nb = w.K / kScaleBlockK;
    constexpr int64_t cpb = kScaleBlockK / kT2KStep;  // chunks per block
    float32x4_t acc[NB][4];
    for (int i = 0; i < NB; ++i)
      for (int v = 0; v < 4; ++v) acc[i][v] = vdupq_n_f32(0.0f);
    for (int64_t j = 0; j < nb; ++j) {
      const int8_t* qj[NB];
      for (int i = 0; i < NB; ++i) qj[i] = q[i] + j * kScaleBlockK;
      int32x4_t d[NB][4];
      Core::template dots<NB>(tile + j * cpb * kT2ChunkBytes, cpb, qj, d);
      const float* sc = w.scales + (t * nb + j) * kT2Rows;  // [16]
      float32x4_t s[4];
      for (int v = 0; v < 4; ++v) s[v] = vld1q_f32(sc + 4 * v);
      for (int i = 0; i < NB; ++i) {
        const int32x4_t bs = vdupq_n_s32(a.bsum[(b0 + i) * nb + j]);
        for (int v = 0; v < 4; ++v)
          acc[i][v] = vaddq_f32(acc[i][v], vmulq_f32(vcvtq_f32_s32(vsubq_s32(d[i][v], bs)), s[v]));
      }
    }
    for (int i = 0; i < NB; ++i) {
      const float32x4_t as = vdupq_n_f32(a.scale[b0 + i]);
      for (int v = 0; v < 4; ++v) out[i][v] = vdivq_f32(acc[i][v], as);
    }
  } else {
    int32x4_t d[NB][4];
    Core::template dots<NB>(tile, kchunks, q, d);
    float32x4_t ws[4];
    for (int v = 0; v < 4; ++v)
      ws[v] = w.scale_mode == kScaleRow ? vld1q_f32(w.scales + t * kT2Rows + 4 * v) : vdupq_n_f32(w.scales[0]);
    for (int i = 0; i < NB; ++i) {
      const int32x4_t sm = vdupq_n_s32(a.sum[b0 + i]);
      const float32x4_t as = vdupq_n_f32(a.scale[b0 + i]);
      for (int v = 0; v < 4; ++v)
        out[i][v] = vdivq_f32(vmulq_f32(vcvtq_f32_s32(vsubq_s32(d[i][v], sm)), ws[v]), as);
    }
  }
  const int64_t m0 = t * kT2Rows;
  const int64_t rows = std::min<int64_t>(kT2Rows, w.M - m0);
  for (int i = 0; i < NB; ++i) {
    float* yr = y + (b0 + i) * ldy + m0;  // [rows]
    if (rows == kT2Rows) {
      for (int v = 0; v < 4; ++v) vst1q_f32(yr + 4 * v, out[i][v]);
    } else {
      float tmp[kT2Rows];
      for (int v = 0; v < 4; ++v) vst1q_f32(tmp + 4 * v, out[i][v]);
      for (int64_t r = 0; r < rows; ++r) yr[r] = tmp[r];
    }
  }
}

// Dispatches a block of nt <= NB tokens to the instantiation for exactly nt.
template <class Core, int NB>
void t2_token_block_n(const TernaryMat& w, const QActs& a, float* y, int64_t ldy, int64_t t, int64_t b0,
                      int64_t nt) {
  if constexpr (NB > 1) {
    if (nt < NB) {
      t2_token_block_n<Core, NB - 1>(w, a, y, ldy, t, b0, nt);
      return;
    }
  }
  t2_token_block<Core, NB>(w, a, y, ldy, t, b0);
}

// The ternary_gemm_fn contract (ternary_i2.h) on top of a Core. Each tile's codes (K/4 bytes) are
// reused from L1 across all token blocks; within a block the unpacked codes serve NB tokens.
template <class Core>
void t2_gemm(const TernaryMat& w, const QActs& a, float* y, int64_t ldy, int64_t tile0, int64_t tile1) {
  for (int64_t t = tile0; t < tile1; ++t) {
    for (int64_t b0 = 0; b0 < a.B; b0 += Core::kMaxTokens) {
      const int64_t nt = std::min<int64_t>(Core::kMaxTokens, a.B - b0);
      t2_token_block_n<Core, Core::kMaxTokens>(w, a, y, ldy, t, b0, nt);
    }
  }
}

}  // namespace

}  // namespace bitllm
