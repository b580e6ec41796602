// Private to binary_neon.cpp (ARMv8.0) and binary_neondot.cpp (ARMv8.2 + dotprod): the shared B1R16
// GEMM driver (token blocking, float epilogue) and the bit -> byte-mask expansion, around an integer
// "core". Everything here except binary_gemm_neondot has internal linkage, so each translation unit
// (built with its own -march) keeps its own copy and the linker never mixes the two.
#pragma once
#include <arm_neon.h>

#include <algorithm>
#include <cstring>

#include "kernels.h"

namespace bitllm {

// Defined in binary_neondot.cpp; call only when CpuFeatures::dotprod is set.
void binary_gemm_neondot(const BinaryMat& w, const QActs& a,
                         const float* tok_bias,  // [B] or nullptr
                         float* y,               // [B, ldy]
                         int64_t ldy, int64_t tile0, int64_t tile1);

namespace {

// One row's 64 sign bits of a chunk as 4 byte masks (0xFF where the bit is 1, i.e. -1 as int8):
// m[v] covers k = 16v .. 16v+15. tbl puts source byte j/8 in byte j, tst picks bit j%8.
struct B1Expander {
  uint8x16_t idx[4];
  uint8x16_t bitsel;

  B1Expander() {
    static const uint8_t kIdx[64] = {0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 2, 2, 2, 2,
                                     2, 2, 3, 3, 3, 3, 3, 3, 3, 3, 4, 4, 4, 4, 4, 4, 4, 4, 5, 5, 5, 5,
                                     5, 5, 5, 5, 6, 6, 6, 6, 6, 6, 6, 6, 7, 7, 7, 7, 7, 7, 7, 7};
    static const uint8_t kBit[16] = {1, 2, 4, 8, 16, 32, 64, 128, 1, 2, 4, 8, 16, 32, 64, 128};
    for (int v = 0; v < 4; ++v) idx[v] = vld1q_u8(kIdx + 16 * v);
    bitsel = vld1q_u8(kBit);
  }

  inline void operator()(const uint8_t* row,  // [8]
                         int8x16_t (&m)[4]) const {
    const uint8x16_t b = vcombine_u8(vld1_u8(row), vdup_n_u8(0));
    for (int v = 0; v < 4; ++v) m[v] = vreinterpretq_s8_u8(vtstq_u8(vqtbl1q_u8(b, idx[v]), bitsel));
  }
};

// A Core provides
//   static constexpr int kMaxTokens;
//   template <int NB> static void neg_pos(const uint8_t* tile,  // [K/64, 128]
//                                         int64_t kchunks, int r0,
//                                         const int8_t* const* q,  // NB x [K]
//                                         int32x4_t (&out)[NB]);
// out[i] lane r = -Σ_{bit(r0+r, k)=1} q[i][k] for the 4 rows r0 .. r0+3 (exact int32; negative
// because the byte masks are -1).

// Y for NB tokens (b0 .. b0+NB) of row tile t: binary.h epilogue, 4 rows per vector.
template <class Core, int NB>
void b1_token_block(const BinaryMat& w, const QActs& a, const float* tok_bias, float* y, int64_t ldy, int64_t t,
                    int64_t b0) {
  const int64_t kchunks = w.K / kB1KStep;
  const uint8_t* tile = w.bits + t * kchunks * kB1ChunkBytes;  // [K/64, 128]
  const int64_t m0 = t * kB1Rows;
  const int rows = static_cast<int>(std::min<int64_t>(kB1Rows, w.M - m0));
  const int8_t* q[NB];
  for (int i = 0; i < NB; ++i) q[i] = a.q + (b0 + i) * a.ldq;
  float out[NB][kB1Rows];
  for (int r0 = 0; r0 < rows; r0 += 4) {
    int32x4_t neg[NB];
    Core::template neg_pos<NB>(tile, kchunks, r0, q, neg);
    // Row scales are [Mp]: reading 4 from r0 < rows stays inside the padding.
    const float32x4_t ws = w.scale_mode == kScaleRow ? vld1q_f32(w.scales + m0 + r0) : vdupq_n_f32(w.scales[0]);
    for (int i = 0; i < NB; ++i) {
      const int64_t b = b0 + i;
      const int32x4_t pos = vnegq_s32(neg[i]);
      const int32x4_t dot = vsubq_s32(vaddq_s32(pos, pos), vdupq_n_s32(a.sum[b]));
      float32x4_t v = vdivq_f32(vmulq_f32(vcvtq_f32_s32(dot), ws), vdupq_n_f32(a.scale[b]));
      if (tok_bias) v = vaddq_f32(v, vdupq_n_f32(tok_bias[b]));
      vst1q_f32(out[i] + r0, v);
    }
  }
  for (int i = 0; i < NB; ++i) std::memcpy(y + (b0 + i) * ldy + m0, out[i], sizeof(float) * rows);
}

template <class Core, int NB>
void b1_token_block_n(const BinaryMat& w, const QActs& a, const float* tok_bias, float* y, int64_t ldy, int64_t t,
                      int64_t b0, int64_t nt) {
  if constexpr (NB > 1) {
    if (nt < NB) {
      b1_token_block_n<Core, NB - 1>(w, a, tok_bias, y, ldy, t, b0, nt);
      return;
    }
  }
  b1_token_block<Core, NB>(w, a, tok_bias, y, ldy, t, b0);
}

// The binary_gemm_fn contract (binary.h) on top of a Core. A tile's bits (K/8 bytes per row) stay in
// L1 across the token blocks; each row's expanded masks serve NB tokens.
template <class Core>
void b1_gemm(const BinaryMat& w, const QActs& a, const float* tok_bias, float* y, int64_t ldy, int64_t tile0,
             int64_t tile1) {
  for (int64_t t = tile0; t < tile1; ++t)
    for (int64_t b0 = 0; b0 < a.B; b0 += Core::kMaxTokens) {
      const int64_t nt = std::min<int64_t>(Core::kMaxTokens, a.B - b0);
      b1_token_block_n<Core, Core::kMaxTokens>(w, a, tok_bias, y, ldy, t, b0, nt);
    }
}

}  // namespace

}  // namespace bitllm
