// NEON q4 kernels (ARMv8.0), bit-exact to dense_q4_scalar.cpp. With the ARMv8.2 dot product the GEMM
// runs the sdot core of dense_q4_neondot.cpp instead (chosen by fill_dense_q4_neon).
//   GEMM: a 64-byte chunk is 4 vectors (rows 4v .. 4v+3, 4 codes each); AND 0x0f / shift by 4 give the
//         codes u in [0, 15] of groups c and c + 4. vmlal_s8 multiplies them with the 4 activation
//         bytes of the group (duplicated per row) into int16 lanes: a lane sums the 8 groups' products
//         of one (row, k mod 4), |Σ| <= 8 * 15 * 128 = 15360, exact. Pairwise widening adds make the
//         rows' int32 Σ u q; -8 Σ q (bsum32) makes dot_j; then the float epilogue of dense_q4.h.
#include <arm_neon.h>

#include <algorithm>
#include <cstring>

#include "kernels.h"

namespace bitllm {

// Defined in dense_q4_neondot.cpp; call only when CpuFeatures::dotprod is set.
void q4_gemm_neondot(const Q4Mat& w, const QActs& a, const int32_t* bsum32,
                     float* y,  // [B, ldy]
                     int64_t ldy, int64_t tile0, int64_t tile1);

namespace {

inline int32_t load_i32(const int8_t* p) {
  int32_t v;
  std::memcpy(&v, p, 4);
  return v;
}

template <int NB>
void q4_tile(const uint8_t* tile,  // [q4_tile_bytes(K)]
             int64_t nb,
             const int8_t* const* q,    // NB x [K]
             const int32_t* const* bs,  // NB x [nb]
             const float* scale,        // [NB]
             float* const* yp, int rows) {
  const uint8x16_t m4 = vdupq_n_u8(0x0f);
  float32x4_t facc[NB][4];
  for (int i = 0; i < NB; ++i)
    for (int v = 0; v < 4; ++v) facc[i][v] = vdupq_n_f32(0.0f);
  for (int64_t j = 0; j < nb; ++j) {
    const uint8_t* rec = tile + j * kQ4BlockBytes;
    // s[i][2v]: rows 4v, 4v+1 (4 lanes each, one per k mod 4); s[i][2v+1]: rows 4v+2, 4v+3.
    int16x8_t s[NB][8];
    for (int i = 0; i < NB; ++i)
      for (int h = 0; h < 8; ++h) s[i][h] = vdupq_n_s16(0);
    for (int c = 0; c < 4; ++c) {
      int8x8_t xl[NB], xh[NB];
      for (int i = 0; i < NB; ++i) {
        const int8_t* qj = q[i] + j * kQ4Block;
        xl[i] = vreinterpret_s8_s32(vdup_n_s32(load_i32(qj + 4 * c)));
        xh[i] = vreinterpret_s8_s32(vdup_n_s32(load_i32(qj + 16 + 4 * c)));
      }
      for (int v = 0; v < 4; ++v) {
        const uint8x16_t wv = vld1q_u8(rec + c * kQ4ChunkBytes + 16 * v);
        const int8x16_t lo = vreinterpretq_s8_u8(vandq_u8(wv, m4));
        const int8x16_t hi = vreinterpretq_s8_u8(vshrq_n_u8(wv, 4));
        for (int i = 0; i < NB; ++i) {
          s[i][2 * v] = vmlal_s8(s[i][2 * v], vget_low_s8(lo), xl[i]);
          s[i][2 * v + 1] = vmlal_s8(s[i][2 * v + 1], vget_high_s8(lo), xl[i]);
          s[i][2 * v] = vmlal_s8(s[i][2 * v], vget_low_s8(hi), xh[i]);
          s[i][2 * v + 1] = vmlal_s8(s[i][2 * v + 1], vget_high_s8(hi), xh[i]);
        }
      }
    }
    const uint16x8_t h0 = vreinterpretq_u16_u8(vld1q_u8(rec + kQ4BlockQsBytes));
    const uint16x8_t h1 = vreinterpretq_u16_u8(vld1q_u8(rec + kQ4BlockQsBytes + 16));
    const float32x4_t d[4] = {vcvt_f32_f16(vreinterpret_f16_u16(vget_low_u16(h0))),
                              vcvt_high_f32_f16(vreinterpretq_f16_u16(h0)),
                              vcvt_f32_f16(vreinterpret_f16_u16(vget_low_u16(h1))),
                              vcvt_high_f32_f16(vreinterpretq_f16_u16(h1))};
    for (int i = 0; i < NB; ++i) {
      const int32x4_t corr = vdupq_n_s32(-8 * bs[i][j]);
      for (int v = 0; v < 4; ++v) {
        const int32x4_t dot = vaddq_s32(vpaddq_s32(vpaddlq_s16(s[i][2 * v]), vpaddlq_s16(s[i][2 * v + 1])), corr);
        facc[i][v] = vaddq_f32(facc[i][v], vmulq_f32(vcvtq_f32_s32(dot), d[v]));
      }
    }
  }
  for (int i = 0; i < NB; ++i) {
    const float32x4_t sc = vdupq_n_f32(scale[i]);
    float out[kQ4Rows];
    for (int v = 0; v < 4; ++v) vst1q_f32(out + 4 * v, vdivq_f32(facc[i][v], sc));
    std::memcpy(yp[i], out, static_cast<size_t>(rows) * 4);
  }
}

template <int NB>
void q4_tile_n(int nt, const uint8_t* tile, int64_t nb, const int8_t* const* q, const int32_t* const* bs,
               const float* scale, float* const* yp, int rows) {
  if constexpr (NB > 1) {
    if (nt < NB) return q4_tile_n<NB - 1>(nt, tile, nb, q, bs, scale, yp, rows);
  }
  q4_tile<NB>(tile, nb, q, bs, scale, yp, rows);
}

constexpr int kQ4Tokens = 2;
constexpr int64_t kQ4ActBytes = 256 * 1024;  // activation bytes per token super-block (L2)

void q4_gemm_neon(const Q4Mat& w, const QActs& a, const int32_t* bsum32, float* y, int64_t ldy, int64_t tile0,
                  int64_t tile1) {
  const int64_t nb = w.K / kQ4Block, tb = q4_tile_bytes(w.K);
  const int64_t per = std::max<int64_t>(1, kQ4ActBytes / w.K / kQ4Tokens) * kQ4Tokens;
  for (int64_t s0 = 0; s0 < a.B; s0 += per) {
    const int64_t s1 = std::min(a.B, s0 + per);
    for (int64_t t = tile0; t < tile1; ++t) {
      const int64_t m0 = t * kQ4Rows;
      const int rows = static_cast<int>(std::min<int64_t>(kQ4Rows, w.M - m0));
      for (int64_t b0 = s0; b0 < s1; b0 += kQ4Tokens) {
        const int nt = static_cast<int>(std::min<int64_t>(kQ4Tokens, s1 - b0));
        const int8_t* q[kQ4Tokens];
        const int32_t* bs[kQ4Tokens];
        float* yp[kQ4Tokens];
        for (int i = 0; i < nt; ++i) {
          q[i] = a.q + (b0 + i) * a.ldq;
          bs[i] = bsum32 + (b0 + i) * nb;
          yp[i] = y + (b0 + i) * ldy + m0;
        }
        q4_tile_n<kQ4Tokens>(nt, w.data + t * tb, nb, q, bs, a.scale + b0, yp, rows);
      }
    }
  }
}

void q4_get_rows_neon(const Q4Mat& w, const int32_t* rows, int64_t n, float* out, int64_t ldo) {
  const int64_t nb = w.K / kQ4Block, tb = q4_tile_bytes(w.K);
  const uint8x16_t m4 = vdupq_n_u8(0x0f);
  const int8x16_t k8 = vdupq_n_s8(8);
  for (int64_t i = 0; i < n; ++i) {
    const int64_t m = rows[i], r = m % kQ4Rows;
    const uint8_t* tile = w.data + (m / kQ4Rows) * tb;
    float* o = out + i * ldo;  // [K]
    for (int64_t j = 0; j < nb; ++j) {
      const int8_t* rec = reinterpret_cast<const int8_t*>(tile + j * kQ4BlockBytes + 4 * r);
      const int32_t words[4] = {load_i32(rec), load_i32(rec + 64), load_i32(rec + 128), load_i32(rec + 192)};
      const uint8x16_t b = vreinterpretq_u8_s32(vld1q_s32(words));
      const int8x16_t half[2] = {vsubq_s8(vreinterpretq_s8_u8(vandq_u8(b, m4)), k8),    // k 0..15
                                 vsubq_s8(vreinterpretq_s8_u8(vshrq_n_u8(b, 4)), k8)};  // k 16..31
      uint16_t hbits;
      std::memcpy(&hbits, tile + j * kQ4BlockBytes + kQ4BlockQsBytes + 2 * r, 2);
      const float32x4_t d = vdupq_n_f32(half_to_f32(hbits));
      for (int hh = 0; hh < 2; ++hh) {
        const int16x8_t c0 = vmovl_s8(vget_low_s8(half[hh])), c1 = vmovl_s8(vget_high_s8(half[hh]));
        float* oj = o + j * kQ4Block + 16 * hh;
        vst1q_f32(oj, vmulq_f32(d, vcvtq_f32_s32(vmovl_s16(vget_low_s16(c0)))));
        vst1q_f32(oj + 4, vmulq_f32(d, vcvtq_f32_s32(vmovl_high_s16(c0))));
        vst1q_f32(oj + 8, vmulq_f32(d, vcvtq_f32_s32(vmovl_s16(vget_low_s16(c1)))));
        vst1q_f32(oj + 12, vmulq_f32(d, vcvtq_f32_s32(vmovl_high_s16(c1))));
      }
    }
  }
}

}  // namespace

void fill_dense_q4_neon(KernelTable& t, const CpuFeatures& f) {
  t.q4_get_rows = q4_get_rows_neon;
  if (f.dotprod) {
    t.q4_gemm = q4_gemm_neondot;
    t.v_q4 = "neon-dotprod";
  } else {
    t.q4_gemm = q4_gemm_neon;
    t.v_q4 = "neon";
  }
}

}  // namespace bitllm
