// AVX2 dense kernels (AVX2 + FMA + F16C).
//   f16 GEMM: vcvtph2ps + FMA, R rows x T tokens x U k-vectors register-blocked: each (row, token)
//             sums through U = 4 8-lane accumulators for every B (batch-invariant) (chains <= ceil(K/8)), a zero-padded tail step and
//             a tree of depth <= 4: within the dense.h bound.
//   f16t GEMM: F16T32 tiles, 4 vcvtph2ps per k step (32 rows) and a broadcast FMA per token and 8 rows, 2 tokens a
//             group, the tile prefetched 4 KB ahead by its first group; B = 1 walks 2 tiles side by side. The dense.h
//             chunked sums, so batch-invariant.
//   q8 GEMM:  bit-exact to dense_scalar.cpp through the sign trick, which is exact here:
//               vpmaddubsw(|w|, sign(q, w)) = |w0| * (q0 * sgn w0) + |w1| * (q1 * sgn w1) = q0 w0 + q1 w1
//             |w| <= 128 read as unsigned is exact for every int8 w (|-128| = 0x80 = 128), and for
//             q in [-127, 127] sign(q, w) cannot overflow and each int16 pair sum is at most
//             2 * 128 * 127 = 32512 < 32767, so vpmaddubsw never saturates. A token holding the code
//             -128 (act_quant_i8 allows it) breaks both, so such tokens take an exact generic path.
//             vpmaddwd(pairs, 1) widens to the int32 per-row group sums in the Q8R16 lane order.
#include <immintrin.h>

#include <algorithm>
#include <cstring>

#include "kernels.h"

namespace bitllm {

namespace {

// ---------------------------------------------------------------------------------------------
// f16

inline float hsum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

// Y for rows m .. m+R-1 and tokens b .. b+T-1, k in steps of 8U.
template <int R, int T, int U>
void f16_block(const uint16_t* w,  // [M, ldw]
               int64_t ldw, int64_t K,
               const float* x,  // [B, ldx]
               int64_t ldx,
               float* y,  // [B, ldy]
               int64_t ldy, int64_t m, int64_t b) {
  __m256 acc[R][T][U];
  for (int r = 0; r < R; ++r)
    for (int i = 0; i < T; ++i)
      for (int u = 0; u < U; ++u) acc[r][i][u] = _mm256_setzero_ps();
  const uint16_t* wr[R];
  for (int r = 0; r < R; ++r) wr[r] = w + (m + r) * ldw;
  const float* xb[T];
  for (int i = 0; i < T; ++i) xb[i] = x + (b + i) * ldx;
  auto step = [&](const uint16_t* const* wp, const float* const* xp, int64_t k) {
    __m256 wv[R][U];
    for (int r = 0; r < R; ++r)
      for (int u = 0; u < U; ++u)
        wv[r][u] = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(wp[r] + k + 8 * u)));
    for (int i = 0; i < T; ++i)
      for (int u = 0; u < U; ++u) {
        const __m256 xv = _mm256_loadu_ps(xp[i] + k + 8 * u);
        for (int r = 0; r < R; ++r) acc[r][i][u] = _mm256_fmadd_ps(wv[r][u], xv, acc[r][i][u]);
      }
  };
  constexpr int64_t kStep = 8 * U;
  int64_t k = 0;
  for (; k + kStep <= K; k += kStep) step(wr, xb, k);
  if (k < K) {  // zero-padded copies of the tail (zero products add exactly nothing)
    const int64_t n = K - k;
    alignas(32) uint16_t tw[R][kStep] = {};
    alignas(32) float tx[T][kStep] = {};
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
      __m256 s = acc[r][i][0];
      if constexpr (U == 2) s = _mm256_add_ps(s, acc[r][i][1]);
      if constexpr (U == 4)
        s = _mm256_add_ps(_mm256_add_ps(s, acc[r][i][1]), _mm256_add_ps(acc[r][i][2], acc[r][i][3]));
      y[(b + i) * ldy + m + r] = hsum(s);
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

// GEMV: one row at a time with 4 accumulators (32 lanes): one sequential weight stream per thread.
// Measured on Zen 4: in cache U = 1 / 2 / 4 / 8 ran at 17 / 34 / 41 / 41 GB/s (FMA latency bound
// below 4), out of cache U = 4 reached the plain read bandwidth; several rows side by side were
// slower (see dense_avx512.cpp).
constexpr int kF16GemvU = 4;
// Batch invariance (DESIGN.md §4): the batched blocks use the GEMV's U = 4 accumulators per (row, token),
// so every token's outputs have one summation order whatever B or the row range (1 row x 3 tokens x
// 4 = 12 accumulators + 4 weight vectors = 16 ymm). Measured (6912 x 2560, 1 thread, Zen 4 shared
// host): B = 8 runs at ~65-75 % of the former 3 x 4 x 1 blocks; U = 2 everywhere (2 x 3 x 2 blocks)
// got ~75 % at B = 8 but cost the GEMV ~10 %, and decode speed comes first.
constexpr int kF16Rows = 1, kF16Tokens = 3;
constexpr int64_t kF16ActBytes = 384 * 1024;  // activation bytes per token super-block (L2)

void f16_gemm_avx2(const uint16_t* w, int64_t ldw, int64_t /*M*/, int64_t K, const float* x, int64_t ldx, int64_t B,
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
        f16_block_n<kF16Rows, kF16Tokens, kF16GemvU>(rb, static_cast<int>(std::min<int64_t>(kF16Tokens, s1 - b)), w, ldw, K,
                                             x, ldx, y, ldy, m, b);
    }
  }
}

// F16T32 (dense.h): T tokens of NT tiles (NT = 1 for T > 1), chunks of kF16TChunk columns; PF > 0 prefetches each
// tile's stream PF halves ahead.
template <int NT, int T, int PF>
void f16t_block(const uint16_t* wt, int64_t K, const float* x, int64_t ldx, float* y, int64_t ldy, int64_t M,
                int64_t t0) {
  __m256 tot[NT][T][4], a[NT][T][4];
  for (int t = 0; t < NT; ++t)
    for (int i = 0; i < T; ++i)
      for (int v = 0; v < 4; ++v) tot[t][i][v] = _mm256_setzero_ps();
  for (int64_t k0 = 0; k0 < K; k0 += kF16TChunk) {
    const int64_t k1 = std::min<int64_t>(K, k0 + kF16TChunk);
    for (int t = 0; t < NT; ++t)
      for (int i = 0; i < T; ++i)
        for (int v = 0; v < 4; ++v) a[t][i][v] = _mm256_setzero_ps();
    for (int64_t k = k0; k < k1; ++k) {
      for (int t = 0; t < NT; ++t) {
        const uint16_t* p = wt + t * K * kF16TRows + k * kF16TRows;
        if constexpr (PF > 0) asm volatile("prefetcht0 (%0)" : : "r"(p + PF));
        __m256 wv[4];
        for (int v = 0; v < 4; ++v) wv[v] = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p + 8 * v)));
        for (int i = 0; i < T; ++i) {
          const __m256 xv = _mm256_set1_ps(x[i * ldx + k]);
          for (int v = 0; v < 4; ++v) a[t][i][v] = _mm256_fmadd_ps(wv[v], xv, a[t][i][v]);
        }
      }
    }
    for (int t = 0; t < NT; ++t)
      for (int i = 0; i < T; ++i)
        for (int v = 0; v < 4; ++v) tot[t][i][v] = _mm256_add_ps(tot[t][i][v], a[t][i][v]);
  }
  for (int t = 0; t < NT; ++t) {
    const int64_t m = (t0 + t) * kF16TRows;
    const int rows = static_cast<int>(std::min<int64_t>(kF16TRows, M - m));
    for (int i = 0; i < T; ++i) {
      float* yo = y + i * ldy + m;
      if (rows == kF16TRows) {
        for (int v = 0; v < 4; ++v) _mm256_storeu_ps(yo + 8 * v, tot[t][i][v]);
      } else {
        alignas(32) float buf[kF16TRows];
        for (int v = 0; v < 4; ++v) _mm256_store_ps(buf + 8 * v, tot[t][i][v]);
        std::memcpy(yo, buf, sizeof(float) * rows);
      }
    }
  }
}

void f16t_gemm_avx2(const uint16_t* w, int64_t M, int64_t K, const float* x, int64_t ldx, int64_t B, float* y,
                    int64_t ldy, int64_t tile0, int64_t tile1) {
  // Prefetch in halves: the first token group of a tile 4 KB ahead (bench-prebuild, 4 rounds each way, 2 threads:
  // B = 2 and 8 1.04-1.35x); none in the GEMV (1 KB ahead measured 0.72-0.93x).
  constexpr int kGemv = 0, kGemm = 2048;
  if (B == 1) {
    int64_t t = tile0;
    for (; t + 2 <= tile1; t += 2) f16t_block<2, 1, kGemv>(w + t * K * kF16TRows, K, x, ldx, y, ldy, M, t);
    for (; t < tile1; ++t) f16t_block<1, 1, kGemv>(w + t * K * kF16TRows, K, x, ldx, y, ldy, M, t);
    return;
  }
  for (int64_t t = tile0; t < tile1; ++t) {
    const uint16_t* wt = w + t * K * kF16TRows;
    f16t_block<1, 2, kGemm>(wt, K, x, ldx, y, ldy, M, t);  // B >= 2 here
    int64_t b = 2;
    for (; b + 2 <= B; b += 2) f16t_block<1, 2, 0>(wt, K, x + b * ldx, ldx, y + b * ldy, ldy, M, t);
    if (b < B) f16t_block<1, 1, 0>(wt, K, x + b * ldx, ldx, y + b * ldy, ldy, M, t);
  }
}

void f16_get_rows_avx2(const uint16_t* w, int64_t ldw, int64_t K, const int32_t* rows, int64_t n, float* out,
                       int64_t ldo) {
  for (int64_t i = 0; i < n; ++i) {
    const uint16_t* wr = w + static_cast<int64_t>(rows[i]) * ldw;  // [K]
    float* o = out + i * ldo;                                      // [K]
    int64_t k = 0;
    for (; k + 8 <= K; k += 8)
      _mm256_storeu_ps(o + k, _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(wr + k))));
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

inline float load_half(const uint8_t* p) {
  uint16_t h;
  std::memcpy(&h, p, 2);
  return half_to_f32(h);
}

// Y for NB tokens free of the code -128 on one Q8R16 tile; yp[i] points at the tile's first row.
template <int NB>
void q8_tile(const uint8_t* tile,  // [q8_tile_bytes(K)]
             int64_t nb,
             const int8_t* const* q,  // NB x [K]
             const float* const* scale,  // NB pointers to the token scales
             float* const* yp, int rows) {
  const __m256i ones = _mm256_set1_epi16(1);
  __m256 facc[NB][2];
  for (int i = 0; i < NB; ++i) facc[i][0] = facc[i][1] = _mm256_setzero_ps();
  for (int64_t j = 0; j < nb; ++j) {
    const uint8_t* blk = tile + j * kQ8BlockBytes;  // [8, 64]
    __m256i acc[NB][2];
    for (int i = 0; i < NB; ++i) acc[i][0] = acc[i][1] = _mm256_setzero_si256();
    for (int g = 0; g < 8; ++g) {
      const __m256i w0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(blk + g * kQ8GroupBytes));
      const __m256i w1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(blk + g * kQ8GroupBytes + 32));
      const __m256i a0 = _mm256_abs_epi8(w0), a1 = _mm256_abs_epi8(w1);
      for (int i = 0; i < NB; ++i) {
        const __m256i qb = _mm256_set1_epi32(load_i32(q[i] + j * kQ8Block + 4 * g));
        const __m256i p0 = _mm256_maddubs_epi16(a0, _mm256_sign_epi8(qb, w0));
        const __m256i p1 = _mm256_maddubs_epi16(a1, _mm256_sign_epi8(qb, w1));
        acc[i][0] = _mm256_add_epi32(acc[i][0], _mm256_madd_epi16(p0, ones));
        acc[i][1] = _mm256_add_epi32(acc[i][1], _mm256_madd_epi16(p1, ones));
      }
    }
    const __m256 d0 = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(blk + kQ8BlockQsBytes)));
    const __m256 d1 = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(blk + kQ8BlockQsBytes + 16)));
    for (int i = 0; i < NB; ++i) {
      facc[i][0] = _mm256_add_ps(facc[i][0], _mm256_mul_ps(_mm256_cvtepi32_ps(acc[i][0]), d0));
      facc[i][1] = _mm256_add_ps(facc[i][1], _mm256_mul_ps(_mm256_cvtepi32_ps(acc[i][1]), d1));
    }
  }
  for (int i = 0; i < NB; ++i) {
    const __m256 s = _mm256_set1_ps(*scale[i]);
    alignas(32) float out[kQ8Rows];
    _mm256_store_ps(out, _mm256_div_ps(facc[i][0], s));
    _mm256_store_ps(out + 8, _mm256_div_ps(facc[i][1], s));
    std::memcpy(yp[i], out, static_cast<size_t>(rows) * 4);
  }
}

template <int NB>
void q8_tile_n(int nt, const uint8_t* tile, int64_t nb, const int8_t* const* q, const float* const* scale,
               float* const* yp, int rows) {
  if constexpr (NB > 1) {
    if (nt < NB) return q8_tile_n<NB - 1>(nt, tile, nb, q, scale, yp, rows);
  }
  q8_tile<NB>(tile, nb, q, scale, yp, rows);
}

// The contract in plain integer code, for tokens holding -128.
void q8_tile_generic(const uint8_t* tile, int64_t nb, const int8_t* q, float scale, float* yp, int rows) {
  for (int r = 0; r < rows; ++r) {
    float acc = 0.0f;
    for (int64_t j = 0; j < nb; ++j) {
      const int8_t* blk = reinterpret_cast<const int8_t*>(tile + j * kQ8BlockBytes);
      int32_t dot = 0;
      for (int g = 0; g < 8; ++g)
        for (int c = 0; c < 4; ++c) dot += blk[g * kQ8GroupBytes + 4 * r + c] * q[j * kQ8Block + 4 * g + c];
      acc = acc + static_cast<float>(dot) * load_half(tile + j * kQ8BlockBytes + kQ8BlockQsBytes + 2 * r);
    }
    yp[r] = acc / scale;
  }
}

bool has_min_code(const int8_t* q, int64_t K) {
  const __m256i m128 = _mm256_set1_epi8(static_cast<char>(-128));
  __m256i hit = _mm256_setzero_si256();
  int64_t k = 0;
  for (; k + 32 <= K; k += 32)
    hit = _mm256_or_si256(hit, _mm256_cmpeq_epi8(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(q + k)), m128));
  bool any = !_mm256_testz_si256(hit, hit);
  for (; k < K; ++k) any = any || q[k] == -128;
  return any;
}

constexpr int kQ8Tokens = 2;
constexpr int64_t kQ8Super = 256;             // tokens per super-block (bounded by the stack lists)
constexpr int64_t kQ8ActBytes = 512 * 1024;  // activation bytes per token super-block (L2)

void q8_gemm_avx2(const Q8Mat& w, const QActs& a, float* y, int64_t ldy, int64_t tile0, int64_t tile1) {
  const int64_t nb = w.K / kQ8Block, tb = q8_tile_bytes(w.K);
  const int64_t per = std::min<int64_t>(kQ8Super, std::max<int64_t>(kQ8Tokens, kQ8ActBytes / w.K));
  int64_t clean[kQ8Super], dirty[kQ8Super];
  for (int64_t s0 = 0; s0 < a.B; s0 += per) {
    const int64_t s1 = std::min(a.B, s0 + per);
    int64_t nc = 0, nd = 0;
    for (int64_t b = s0; b < s1; ++b) {
      if (has_min_code(a.q + b * a.ldq, w.K)) {
        dirty[nd++] = b;
      } else {
        clean[nc++] = b;
      }
    }
    for (int64_t t = tile0; t < tile1; ++t) {
      const int64_t m0 = t * kQ8Rows;
      const int rows = static_cast<int>(std::min<int64_t>(kQ8Rows, w.M - m0));
      const uint8_t* tile = w.data + t * tb;
      for (int64_t c0 = 0; c0 < nc; c0 += kQ8Tokens) {
        const int nt = static_cast<int>(std::min<int64_t>(kQ8Tokens, nc - c0));
        const int8_t* q[kQ8Tokens];
        const float* sc[kQ8Tokens];
        float* yp[kQ8Tokens];
        for (int i = 0; i < nt; ++i) {
          const int64_t b = clean[c0 + i];
          q[i] = a.q + b * a.ldq;
          sc[i] = a.scale + b;
          yp[i] = y + b * ldy + m0;
        }
        q8_tile_n<kQ8Tokens>(nt, tile, nb, q, sc, yp, rows);
      }
      for (int64_t i = 0; i < nd; ++i) {
        const int64_t b = dirty[i];
        q8_tile_generic(tile, nb, a.q + b * a.ldq, a.scale[b], y + b * ldy + m0, rows);
      }
    }
  }
}

void q8_get_rows_avx2(const Q8Mat& w, const int32_t* rows, int64_t n, float* out, int64_t ldo) {
  const int64_t nb = w.K / kQ8Block, tb = q8_tile_bytes(w.K);
  for (int64_t i = 0; i < n; ++i) {
    const int64_t m = rows[i], r = m % kQ8Rows;
    const uint8_t* tile = w.data + (m / kQ8Rows) * tb;
    float* o = out + i * ldo;                         // [K]
    for (int64_t j = 0; j < nb; ++j) {
      const int8_t* blk = reinterpret_cast<const int8_t*>(tile + j * kQ8BlockBytes + 4 * r);
      const __m256 d = _mm256_set1_ps(load_half(tile + j * kQ8BlockBytes + kQ8BlockQsBytes + 2 * r));
      for (int h = 0; h < 4; ++h) {  // 8 codes = groups 2h, 2h+1
        const __m128i c = _mm_setr_epi32(load_i32(blk + 128 * h), load_i32(blk + 128 * h + 64), 0, 0);
        _mm256_storeu_ps(o + j * kQ8Block + 8 * h, _mm256_mul_ps(d, _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(c))));
      }
    }
  }
}

}  // namespace

void fill_dense_avx2(KernelTable& t, const CpuFeatures& f) {
  t.f16_gemm = f16_gemm_avx2;
  t.f16_get_rows = f16_get_rows_avx2;
  t.f16t_gemm = f16t_gemm_avx2;
  t.f16t_get_rows = f16t_get_rows_any;
  t.q8_gemm = q8_gemm_avx2;
  t.q8_get_rows = q8_get_rows_avx2;
  t.v_f16 = "avx2";
  t.v_q8 = "avx2";
  fill_dense_q4_avx2(t, f);
}

}  // namespace bitllm
