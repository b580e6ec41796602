// NEON dense kernels (ARMv8.0). The q8 GEMM has a second integer core using sdot in
// dense_neondot.cpp (ARMv8.2 + dotprod), chosen by fill_dense_neon when the CPU has it.
//   f16 GEMM: FCVTL (vcvt_f32_f16) + FMA, R rows x T tokens x U 4-lane accumulators per (row, token)
//             with 4U >= 8 (chains <= ceil(K/8)), a zero-padded tail step and a tree of depth <= 4:
//             within the dense.h bound.
//   q8 GEMM:  vmull_s8 (int8 x int8 -> int16, |product| <= 16384, exact) + vpadalq_s16 into int32
//             after every product, so no int16 sum ever overflows; bit-exact to dense_scalar.cpp.
//   f16t GEMM: F16T32 tiles, 4 FCVTL pairs per k step (32 rows) and a broadcast FMA per token and 4 rows, 2 tokens a
//             group; the dense.h chunked sums, so batch-invariant.
#include <arm_neon.h>

#include <algorithm>
#include <cstring>

#include "kernels.h"

namespace bitllm {

// Defined in dense_neondot.cpp; call only when CpuFeatures::dotprod is set.
void q8_gemm_neondot(const Q8Mat& w, const QActs& a,
                     float* y,  // [B, ldy]
                     int64_t ldy, int64_t tile0, int64_t tile1);

namespace {

// ---------------------------------------------------------------------------------------------
// f16

// Y for rows m .. m+R-1 and tokens b .. b+T-1, k in steps of 4U (U even).
template <int R, int T, int U>
void f16_block(const uint16_t* w,  // [M, ldw]
               int64_t ldw, int64_t K,
               const float* x,  // [B, ldx]
               int64_t ldx,
               float* y,  // [B, ldy]
               int64_t ldy, int64_t m, int64_t b) {
  static_assert(U % 2 == 0, "U counts 4-lane vectors, loaded 8 halves at a time");
  float32x4_t acc[R][T][U];
  for (int r = 0; r < R; ++r)
    for (int i = 0; i < T; ++i)
      for (int u = 0; u < U; ++u) acc[r][i][u] = vdupq_n_f32(0.0f);
  const uint16_t* wr[R];
  for (int r = 0; r < R; ++r) wr[r] = w + (m + r) * ldw;
  const float* xb[T];
  for (int i = 0; i < T; ++i) xb[i] = x + (b + i) * ldx;
  auto step = [&](const uint16_t* const* wp, const float* const* xp, int64_t k) {
    float32x4_t wv[R][U];
    for (int r = 0; r < R; ++r)
      for (int u = 0; u < U; u += 2) {
        const uint16x8_t h = vld1q_u16(wp[r] + k + 4 * u);
        wv[r][u] = vcvt_f32_f16(vreinterpret_f16_u16(vget_low_u16(h)));
        wv[r][u + 1] = vcvt_high_f32_f16(vreinterpretq_f16_u16(h));
      }
    for (int i = 0; i < T; ++i)
      for (int u = 0; u < U; ++u) {
        const float32x4_t xv = vld1q_f32(xp[i] + k + 4 * u);
        for (int r = 0; r < R; ++r) acc[r][i][u] = vfmaq_f32(acc[r][i][u], wv[r][u], xv);
      }
  };
  constexpr int64_t kStep = 4 * U;
  int64_t k = 0;
  for (; k + kStep <= K; k += kStep) step(wr, xb, k);
  if (k < K) {  // zero-padded copies of the tail (zero products add exactly nothing)
    const int64_t n = K - k;
    alignas(16) uint16_t tw[R][kStep] = {};
    alignas(16) float tx[T][kStep] = {};
    const uint16_t* twp[R];
    const float* txp[T];
    for (int r = 0; r < R; ++r) {
      std::memcpy(tw[r], wr[r] + k, static_cast<size_t>(n) * 2);
      twp[r] = tw[r];
    }
    for (int i = 0; i < T; ++i) {
      std::memcpy(tx[i], xb[i] + k, static_cast<size_t>(n) * 4);
      txp[i] = tx[i];
    }
    step(twp, txp, 0);
  }
  for (int i = 0; i < T; ++i)
    for (int r = 0; r < R; ++r) {
      float32x4_t s = vaddq_f32(acc[r][i][0], acc[r][i][1]);
      if constexpr (U == 4) s = vaddq_f32(s, vaddq_f32(acc[r][i][2], acc[r][i][3]));
      y[(b + i) * ldy + m + r] = vaddvq_f32(s);
    }
}

template <int R, int T, int U>
void f16_block_n(int rb, int tb, const uint16_t* w, int64_t ldw, int64_t K, const float* x, int64_t ldx, float* y,
                 int64_t ldy, int64_t m, int64_t b) {
  if constexpr (R > 1) {
    if (rb < R) return f16_block_n<R - 1, T, U>(rb, tb, w, ldw, K, x, ldx, y, ldy, m, b);
  }
  if constexpr (T > 1) {
    if (tb < T) return f16_block_n<R, T - 1, U>(rb, tb, w, ldw, K, x, ldx, y, ldy, m, b);
  }
  f16_block<R, T, U>(w, ldw, K, x, ldx, y, ldy, m, b);
}

// GEMV: one row at a time with 4 accumulators (one sequential weight stream per thread).
constexpr int kF16GemvU = 4;
// Batch invariance (DESIGN.md §4): the batched blocks use the GEMV's 4 accumulators per (row, token),
// so a token's outputs have one summation order whatever B or the row range (2 x 2 x 4 = 16
// accumulators + 8 weight vectors fit the 32 q registers).
constexpr int kF16Rows = 2, kF16Tokens = 2, kF16U = kF16GemvU;
constexpr int64_t kF16ActBytes = 256 * 1024;  // activation bytes per token super-block (L2)

void f16_gemm_neon(const uint16_t* w, int64_t ldw, int64_t /*M*/, int64_t K, const float* x, int64_t ldx, int64_t B,
                   float* y, int64_t ldy, int64_t m0, int64_t m1) {
  if (B == 1) {
    for (int64_t m = m0; m < m1; ++m) f16_block<1, 1, kF16GemvU>(w, ldw, K, x, ldx, y, ldy, m, 0);
    return;
  }
  const int64_t per = std::max<int64_t>(1, kF16ActBytes / (4 * K) / kF16Tokens) * kF16Tokens;
  for (int64_t s0 = 0; s0 < B; s0 += per) {
    const int64_t s1 = std::min(B, s0 + per);
    for (int64_t m = m0; m < m1; m += kF16Rows) {
      const int rb = static_cast<int>(std::min<int64_t>(kF16Rows, m1 - m));
      for (int64_t b = s0; b < s1; b += kF16Tokens)
        f16_block_n<kF16Rows, kF16Tokens, kF16U>(rb, static_cast<int>(std::min<int64_t>(kF16Tokens, s1 - b)), w, ldw,
                                                 K, x, ldx, y, ldy, m, b);
    }
  }
}

// F16T32 (dense.h): T tokens of one tile, chunks of kF16TChunk columns; per k step 4 x 8 halves -> 8 q registers.
template <int T>
void f16t_block(const uint16_t* wt, int64_t K, const float* x, int64_t ldx, float* y, int64_t ldy, int rows) {
  float32x4_t tot[T][8], a[T][8];
  for (int i = 0; i < T; ++i)
    for (int v = 0; v < 8; ++v) tot[i][v] = vdupq_n_f32(0.0f);
  for (int64_t k0 = 0; k0 < K; k0 += kF16TChunk) {
    const int64_t k1 = std::min<int64_t>(K, k0 + kF16TChunk);
    for (int i = 0; i < T; ++i)
      for (int v = 0; v < 8; ++v) a[i][v] = vdupq_n_f32(0.0f);
    for (int64_t k = k0; k < k1; ++k) {
      const uint16_t* p = wt + k * kF16TRows;
      float32x4_t wv[8];
      for (int h = 0; h < 4; ++h) {
        const uint16x8_t q = vld1q_u16(p + 8 * h);
        wv[2 * h] = vcvt_f32_f16(vreinterpret_f16_u16(vget_low_u16(q)));
        wv[2 * h + 1] = vcvt_high_f32_f16(vreinterpretq_f16_u16(q));
      }
      for (int i = 0; i < T; ++i) {
        const float32x4_t xv = vdupq_n_f32(x[i * ldx + k]);
        for (int v = 0; v < 8; ++v) a[i][v] = vfmaq_f32(a[i][v], wv[v], xv);
      }
    }
    for (int i = 0; i < T; ++i)
      for (int v = 0; v < 8; ++v) tot[i][v] = vaddq_f32(tot[i][v], a[i][v]);
  }
  for (int i = 0; i < T; ++i) {
    float* yo = y + i * ldy;
    if (rows == kF16TRows) {
      for (int v = 0; v < 8; ++v) vst1q_f32(yo + 4 * v, tot[i][v]);
    } else {
      float buf[kF16TRows];
      for (int v = 0; v < 8; ++v) vst1q_f32(buf + 4 * v, tot[i][v]);
      std::memcpy(yo, buf, sizeof(float) * rows);
    }
  }
}

void f16t_gemm_neon(const uint16_t* w, int64_t M, int64_t K, const float* x, int64_t ldx, int64_t B, float* y,
                    int64_t ldy, int64_t tile0, int64_t tile1) {
  for (int64_t t = tile0; t < tile1; ++t) {
    const uint16_t* wt = w + t * K * kF16TRows;
    const int rows = static_cast<int>(std::min<int64_t>(kF16TRows, M - t * kF16TRows));
    int64_t b = 0;
    for (; b + 2 <= B; b += 2) f16t_block<2>(wt, K, x + b * ldx, ldx, y + b * ldy + t * kF16TRows, ldy, rows);
    if (b < B) f16t_block<1>(wt, K, x + b * ldx, ldx, y + b * ldy + t * kF16TRows, ldy, rows);
  }
}

void f16_get_rows_neon(const uint16_t* w, int64_t ldw, int64_t K, const int32_t* rows, int64_t n, float* out,
                       int64_t ldo) {
  for (int64_t i = 0; i < n; ++i) {
    const uint16_t* wr = w + static_cast<int64_t>(rows[i]) * ldw;  // [K]
    float* o = out + i * ldo;                                      // [K]
    int64_t k = 0;
    for (; k + 8 <= K; k += 8) {
      const uint16x8_t h = vld1q_u16(wr + k);
      vst1q_f32(o + k, vcvt_f32_f16(vreinterpret_f16_u16(vget_low_u16(h))));
      vst1q_f32(o + k + 4, vcvt_high_f32_f16(vreinterpretq_f16_u16(h)));
    }
    for (; k < K; ++k) o[k] = half_to_f32(wr[k]);
  }
}

// ---------------------------------------------------------------------------------------------
// q8

inline int32_t load_i32(const int8_t* p) {
  int32_t v;
  std::memcpy(&v, p, 4);
  return v;
}

// Y for NB tokens on one Q8R16 tile; yp[i] points at the tile's first output row of token i.
template <int NB>
void q8_tile(const uint8_t* tile,  // [q8_tile_bytes(K)]
             int64_t nb,
             const int8_t* const* q,  // NB x [K]
             const float* scale,      // [NB]
             float* const* yp, int rows) {
  float32x4_t facc[NB][4];
  for (int i = 0; i < NB; ++i)
    for (int v = 0; v < 4; ++v) facc[i][v] = vdupq_n_f32(0.0f);
  for (int64_t j = 0; j < nb; ++j) {
    const int8_t* blk = reinterpret_cast<const int8_t*>(tile + j * kQ8BlockBytes);  // [8, 64]
    // acc[i][2v] lanes: row 4v (k 0+1, k 2+3), row 4v+1 (same); acc[i][2v+1]: rows 4v+2, 4v+3.
    int32x4_t acc[NB][8];
    for (int i = 0; i < NB; ++i)
      for (int h = 0; h < 8; ++h) acc[i][h] = vdupq_n_s32(0);
    for (int g = 0; g < 8; ++g) {
      int8x16_t wv[4];
      for (int v = 0; v < 4; ++v) wv[v] = vld1q_s8(blk + g * kQ8GroupBytes + 16 * v);
      for (int i = 0; i < NB; ++i) {
        const int8x16_t xd = vreinterpretq_s8_s32(vdupq_n_s32(load_i32(q[i] + j * kQ8Block + 4 * g)));
        for (int v = 0; v < 4; ++v) {
          acc[i][2 * v] = vpadalq_s16(acc[i][2 * v], vmull_s8(vget_low_s8(wv[v]), vget_low_s8(xd)));
          acc[i][2 * v + 1] = vpadalq_s16(acc[i][2 * v + 1], vmull_high_s8(wv[v], xd));
        }
      }
    }
    const uint16x8_t h0 = vreinterpretq_u16_u8(vld1q_u8(tile + j * kQ8BlockBytes + kQ8BlockQsBytes));
    const uint16x8_t h1 = vreinterpretq_u16_u8(vld1q_u8(tile + j * kQ8BlockBytes + kQ8BlockQsBytes + 16));
    const float32x4_t d[4] = {vcvt_f32_f16(vreinterpret_f16_u16(vget_low_u16(h0))),
                              vcvt_high_f32_f16(vreinterpretq_f16_u16(h0)),
                              vcvt_f32_f16(vreinterpret_f16_u16(vget_low_u16(h1))),
                              vcvt_high_f32_f16(vreinterpretq_f16_u16(h1))};
    for (int i = 0; i < NB; ++i)
      for (int v = 0; v < 4; ++v) {
        const int32x4_t dot = vpaddq_s32(acc[i][2 * v], acc[i][2 * v + 1]);
        facc[i][v] = vaddq_f32(facc[i][v], vmulq_f32(vcvtq_f32_s32(dot), d[v]));
      }
  }
  for (int i = 0; i < NB; ++i) {
    const float32x4_t s = vdupq_n_f32(scale[i]);
    float out[kQ8Rows];
    for (int v = 0; v < 4; ++v) vst1q_f32(out + 4 * v, vdivq_f32(facc[i][v], s));
    std::memcpy(yp[i], out, static_cast<size_t>(rows) * 4);
  }
}

template <int NB>
void q8_tile_n(int nt, const uint8_t* tile, int64_t nb, const int8_t* const* q, const float* scale,
               float* const* yp, int rows) {
  if constexpr (NB > 1) {
    if (nt < NB) return q8_tile_n<NB - 1>(nt, tile, nb, q, scale, yp, rows);
  }
  q8_tile<NB>(tile, nb, q, scale, yp, rows);
}

constexpr int kQ8Tokens = 2;
constexpr int64_t kQ8ActBytes = 256 * 1024;  // activation bytes per token super-block (L2)

void q8_gemm_neon(const Q8Mat& w, const QActs& a, float* y, int64_t ldy, int64_t tile0, int64_t tile1) {
  const int64_t nb = w.K / kQ8Block, tb = q8_tile_bytes(w.K);
  const int64_t per = std::max<int64_t>(1, kQ8ActBytes / w.K / kQ8Tokens) * kQ8Tokens;
  for (int64_t s0 = 0; s0 < a.B; s0 += per) {
    const int64_t s1 = std::min(a.B, s0 + per);
    for (int64_t t = tile0; t < tile1; ++t) {
      const int64_t m0 = t * kQ8Rows;
      const int rows = static_cast<int>(std::min<int64_t>(kQ8Rows, w.M - m0));
      for (int64_t b0 = s0; b0 < s1; b0 += kQ8Tokens) {
        const int nt = static_cast<int>(std::min<int64_t>(kQ8Tokens, s1 - b0));
        const int8_t* q[kQ8Tokens];
        float* yp[kQ8Tokens];
        for (int i = 0; i < nt; ++i) {
          q[i] = a.q + (b0 + i) * a.ldq;
          yp[i] = y + (b0 + i) * ldy + m0;
        }
        q8_tile_n<kQ8Tokens>(nt, w.data + t * tb, nb, q, a.scale + b0, yp, rows);
      }
    }
  }
}

void q8_get_rows_neon(const Q8Mat& w, const int32_t* rows, int64_t n, float* out, int64_t ldo) {
  const int64_t nb = w.K / kQ8Block, tb = q8_tile_bytes(w.K);
  for (int64_t i = 0; i < n; ++i) {
    const int64_t m = rows[i], r = m % kQ8Rows;
    const uint8_t* tile = w.data + (m / kQ8Rows) * tb;
    float* o = out + i * ldo;                         // [K]
    for (int64_t j = 0; j < nb; ++j) {
      const int8_t* blk = reinterpret_cast<const int8_t*>(tile + j * kQ8BlockBytes + 4 * r);
      uint16_t hbits;
      std::memcpy(&hbits, tile + j * kQ8BlockBytes + kQ8BlockQsBytes + 2 * r, 2);
      const float32x4_t d = vdupq_n_f32(half_to_f32(hbits));
      for (int g = 0; g < 8; ++g) {
        const int16x8_t c16 = vmovl_s8(vreinterpret_s8_s32(vdup_n_s32(load_i32(blk + g * kQ8GroupBytes))));
        vst1q_f32(o + j * kQ8Block + 4 * g, vmulq_f32(d, vcvtq_f32_s32(vmovl_s16(vget_low_s16(c16)))));
      }
    }
  }
}

}  // namespace

void fill_dense_neon(KernelTable& t, const CpuFeatures& f) {
  t.f16_gemm = f16_gemm_neon;
  t.f16_get_rows = f16_get_rows_neon;
  t.f16t_gemm = f16t_gemm_neon;
  t.f16t_get_rows = f16t_get_rows_any;
  t.q8_get_rows = q8_get_rows_neon;
  t.v_f16 = "neon";
  if (f.dotprod) {
    t.q8_gemm = q8_gemm_neondot;
    t.v_q8 = "neon-dotprod";
  } else {
    t.q8_gemm = q8_gemm_neon;
    t.v_q8 = "neon";
  }
  fill_dense_q4_neon(t, f);
}

}  // namespace bitllm
