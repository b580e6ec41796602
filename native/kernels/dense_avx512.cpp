// AVX-512 dense kernels (F/BW/VL + VNNI + F16C).
//   f16 GEMM: vcvtph2ps + FMA. B = 1: one row at a time, 4 accumulators of 16 lanes; B > 1: 6 rows
//             (8 at B = 2) x 2-4 tokens register-blocked, one accumulator per (row, token). Chains of
//             ceil(K/16U) plus masked tail steps, then a tree of depth <= 6: within the dense.h
//             bound. Tokens go in super-blocks whose activations stay in L2 while the thread's rows
//             stream once per super-block.
//   f16t GEMM: F16T32 tiles; per k step two vcvtph2ps (32 rows) and one broadcast FMA pair per token, up to 8
//             tokens a group (16 chunk accumulators + 16 running totals), the tile's stream prefetched 4 KB
//             ahead by its first group; B = 1 walks 4 tiles side by side, 1 KB ahead.
//   q8 GEMM:  vpdpbusd, bit-exact to dense_scalar.cpp. The unsigned operand is the activation code
//             plus 128 (q ^ 0x80, 4 bytes broadcast to the 16 row lanes), the signed one a 64-byte
//             Q8R16 group (16 rows x 4 codes). Σ (q+128) w - 128 Σ w = Σ q w, where 128 Σ w comes
//             from a second vpdpbusd of the group against 0x80 bytes, once per group for all tokens.
//             Every term is exact in int32 (|Σ| <= 32 * 255 * 128), then the float epilogue of
//             dense.h op by op.
// GCC 12's AVX-512 headers build "undefined" vectors by self-initialization, which -Wuninitialized
// reports at the header line once inlined (GCC bug 105593): silence it for the header only.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
#include <immintrin.h>
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif

#include <algorithm>
#include <cstring>

#include "kernels.h"

namespace bitllm {

namespace {

// ---------------------------------------------------------------------------------------------
// f16

// Y for rows m .. m+R-1 and tokens b .. b+T-1: U 16-lane accumulators per (row, token), k in steps
// of 16U; the tail continues with whole 16-vectors and one masked vector, each into the next
// accumulator, so no accumulator takes more than ceil(K/16U) + 1 terms.
// A block reads its R rows side by side: R streams that the hardware prefetcher does not keep ahead of
// (measured on Zen 5, 128256 x 2560 from DRAM, one thread: 4 rows x 3 tokens at ~0.5 FMA per cycle). With
// NPF > 0, the k steps of a block's token groups walk the next block's rows (one contiguous range) in order,
// NPF lines a step, so that the next block is in cache when its first group starts (NPF is a constant, the
// line index clamped instead of tested).
// NPF = kF16RowPrefetch instead: each k step prefetches the same columns of the next R rows (the B = 2 blocks).
constexpr int kF16RowPrefetch = -1;

struct F16Prefetch {
  const char* next;  // the next block's first byte (or any mapped line when there is none)
  int64_t last;      // its last 64-byte line (lines past it prefetch this one again)
  int64_t l0;        // the first line this group prefetches
};

template <int R, int T, int U, int NPF = 0, bool L1 = false>
void f16_block(const uint16_t* w,  // [M, ldw]
               int64_t ldw, int64_t K,
               const float* x,  // [B, ldx]
               int64_t ldx,
               float* y,  // [B, ldy]
               int64_t ldy, int64_t m, int64_t b, const F16Prefetch& pf = {}) {
  __m512 acc[R][T][U];
  for (int r = 0; r < R; ++r)
    for (int i = 0; i < T; ++i)
      for (int u = 0; u < U; ++u) acc[r][i][u] = _mm512_setzero_ps();
  const uint16_t* wr[R];
  for (int r = 0; r < R; ++r) wr[r] = w + (m + r) * ldw;
  const float* xb[T];
  for (int i = 0; i < T; ++i) xb[i] = x + (b + i) * ldx;
  int64_t l = pf.l0;
  int64_t k = 0;
  for (; k + 16 * U <= K; k += 16 * U) {
    if constexpr (NPF == kF16RowPrefetch) {
      // The same columns of the next R rows, into L2 (the B = 2 blocks). Kept as an "m" operand: GCC then
      // stores the accumulators every step (the char lvalue may alias them), and this form measured faster at
      // B = 2 than the register-operand one without the stores (Zen 5, bench-prebuild: 1.08-1.22x).
      for (int r = 0; r < R; ++r) asm volatile("prefetcht1 %0" : : "m"(*(wr[r] + R * ldw + k)));
    }
    if constexpr (NPF > 0) {
      // asm: GCC 12 -O3 drops _mm_prefetch here (as in billm_avx512.cpp); the address goes in a register, since
      // a char "m" operand may alias the accumulators and GCC then stores them to the stack every step.
      for (int i = 0; i < NPF; ++i) {
        const char* p = pf.next + 64 * std::min(l + i, pf.last);
        if constexpr (L1) asm volatile("prefetcht0 (%0)" : : "r"(p));
        else asm volatile("prefetcht1 (%0)" : : "r"(p));
      }
      l += NPF;
    }
    for (int u = 0; u < U; ++u) {
      __m512 wv[R];
      for (int r = 0; r < R; ++r)
        wv[r] = _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(wr[r] + k + 16 * u)));
      for (int i = 0; i < T; ++i) {
        const __m512 xv = _mm512_loadu_ps(xb[i] + k + 16 * u);
        for (int r = 0; r < R; ++r) acc[r][i][u] = _mm512_fmadd_ps(wv[r], xv, acc[r][i][u]);
      }
    }
  }
  // u < U: fewer than 16U elements remain. u is a compile-time index after unrolling (a runtime index
  // would make the accumulators addressable, i.e. spilled to the stack for the whole block).
  for (int u = 0; u < U; ++u, k += 16) {
    if (k >= K) break;
    const __mmask16 mk = K - k >= 16 ? static_cast<__mmask16>(0xffff) : static_cast<__mmask16>((1u << (K - k)) - 1);
    __m512 wv[R];
    for (int r = 0; r < R; ++r) wv[r] = _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(mk, wr[r] + k));
    for (int i = 0; i < T; ++i) {
      const __m512 xv = _mm512_maskz_loadu_ps(mk, xb[i] + k);
      for (int r = 0; r < R; ++r) acc[r][i][u] = _mm512_fmadd_ps(wv[r], xv, acc[r][i][u]);
    }
  }
  for (int i = 0; i < T; ++i)
    for (int r = 0; r < R; ++r) {
      __m512 s = acc[r][i][0];
      if constexpr (U == 2) s = _mm512_add_ps(s, acc[r][i][1]);
      if constexpr (U == 4)
        s = _mm512_add_ps(_mm512_add_ps(s, acc[r][i][1]), _mm512_add_ps(acc[r][i][2], acc[r][i][3]));
      y[(b + i) * ldy + m + r] = _mm512_reduce_add_ps(s);
    }
}

// f16_block for exactly rb <= R rows and tb <= T tokens.
template <int R, int T, int U, int NPF, bool L1>
void f16_block_n(int rb, int tb, const uint16_t* w, int64_t ldw, int64_t K, const float* x, int64_t ldx, float* y,
                 int64_t ldy, int64_t m, int64_t b, const F16Prefetch& pf) {
  if constexpr (R > 1) {
    if (rb < R) return f16_block_n<R - 1, T, U, NPF, L1>(rb, tb, w, ldw, K, x, ldx, y, ldy, m, b, pf);
  }
  if constexpr (T > 1) {
    if (tb < T) return f16_block_n<R, T - 1, U, NPF, L1>(rb, tb, w, ldw, K, x, ldx, y, ldy, m, b, pf);
  }
  f16_block<R, T, U, NPF, L1>(w, ldw, K, x, ldx, y, ldy, m, b, pf);
}

// GEMV: one row at a time with 2 accumulators (4 before batch invariance; see below). Measured on Zen 4 (128256 x 2560, best of 10): one
// sequential weight stream per thread reaches the bandwidth of a plain read loop (U = 2..8 all do;
// in cache the loop runs at ~12 B/cycle, bound by vcvtph2ps; U = 4 leaves FMA-latency headroom for
// cores with two 512-bit FMA pipes), software prefetch did not help, and 2-8 rows side by side (2-8
// streams) ran at 50-70 % of it.
constexpr int kF16GemvU = 2;
constexpr int64_t kF16ActBytes = 384 * 1024;  // activation bytes per token super-block (L2)

// Batch invariance (DESIGN.md §4): every block, GEMV included, sums a (row, token) through the same
// U = kF16GemvU = 2 accumulators with the same tail and tree, so a token's outputs are bit-identical for
// every B, token grouping and row range; the blocks below are R x T x 2 accumulators (4 x 3 or 6 x 2 =
// 24 zmm). U = 2 rather than 4: the GEMV streams at the same rate (above: U = 2..8 all reach the read
// bandwidth; measured again on the 6912 x 2560 bench row, B = 1, within noise of U = 4), while
// 4 accumulators per output left room for only 6 outputs per block, whose activation loads bound the
// batched GEMM at ~55 % of the U = 1 blocks (U = 2 with 12 outputs: ~85 %). The history below
// measured U = 1 blocks:
// Register blocks for B > 1: R rows x T <= 4 tokens (R T <= 24 accumulators + R weight vectors + one
// activation vector <= 32 zmm). A super-block's tokens split into groups of 2-4 as even as possible
// (B = 5 -> 3 + 2, 7 -> 4 + 3), never a lone token. Measured on Zen 4 in cache (best of many short
// calls, GFLOP/s per core, ~110 = one zmm FMA per cycle): R6 x T4 112, R6 x T3 110, R6 x T2 95,
// R8 x T2 102; the former 4 rows x 6 tokens reached 107-113 when B divided into sixes but 90 at B = 2
// (4 x 2) and 100 at B = 7 (6 + 1); from DRAM (6912 x 2560, B = 8, 2 threads) 128 vs 96.
// Tokens [s0, s0 + n) in `groups` groups over rows [m0, m1), NPF prefetched lines per k step: into L1 when
// several groups follow (measured on Zen 5: B = 6 and 9 gain most so), else into L2 (B = 2 and 3).
template <int R, int T, int NPF, bool L1>
void f16_rows(const uint16_t* w, int64_t ldw, int64_t K, const float* x, int64_t ldx, float* y, int64_t ldy,
              int64_t m0, int64_t m1, int64_t s0, int64_t n, int64_t groups, int64_t steps) {
  for (int64_t m = m0; m < m1; m += R) {
    const int rb = static_cast<int>(std::min<int64_t>(R, m1 - m));
    // The next block of this thread's rows: [m + R, min(m + 2R, m1)), contiguous in w.
    const int64_t next_rows = std::min(m + 2 * R, m1) - (m + R);
    F16Prefetch pf{reinterpret_cast<const char*>(w + (m + R) * ldw), (next_rows * ldw * 2 + 63) / 64 - 1, 0};
    if (next_rows <= 0) pf = {reinterpret_cast<const char*>(w + m * ldw), 0, 0};  // nothing next: a line in cache
    for (int64_t g = 0; g < groups; ++g) {
      const int64_t b = s0 + n * g / groups;
      const int tb = static_cast<int>(s0 + n * (g + 1) / groups - b);
      pf.l0 = g * steps * NPF;
      f16_block_n<R, T, kF16GemvU, NPF, L1>(rb, tb, w, ldw, K, x, ldx, y, ldy, m, b, pf);
    }
  }
}

template <int R, int T, bool kRowPrefetch = false>
void f16_gemm_blocked(const uint16_t* w, int64_t ldw, int64_t K, const float* x, int64_t ldx, int64_t B, float* y,
                      int64_t ldy, int64_t m0, int64_t m1) {
  const int64_t per = std::max<int64_t>(T, kF16ActBytes / (4 * K) / T * T);
  const int64_t steps = std::max<int64_t>(1, K / (16 * kF16GemvU));
  for (int64_t s0 = 0; s0 < B; s0 += per) {
    const int64_t s1 = std::min(B, s0 + per), n = s1 - s0;
    const int64_t groups = (n + T - 1) / T;  // group g: tokens [s0 + n g / groups, s0 + n (g+1) / groups)
    // Lines per k step so that the groups of a block cover the next block (R rows) once.
    const int64_t need = (R * ldw * 2 / 64 + steps * groups - 1) / (steps * groups);
    if (kRowPrefetch) {
      f16_rows<R, T, kF16RowPrefetch, false>(w, ldw, K, x, ldx, y, ldy, m0, m1, s0, n, groups, steps);
    } else if (groups == 1) {
      if (need <= 4) f16_rows<R, T, 4, false>(w, ldw, K, x, ldx, y, ldy, m0, m1, s0, n, groups, steps);
      else f16_rows<R, T, 8, false>(w, ldw, K, x, ldx, y, ldy, m0, m1, s0, n, groups, steps);
    } else if (need <= 1) {
      f16_rows<R, T, 1, true>(w, ldw, K, x, ldx, y, ldy, m0, m1, s0, n, groups, steps);
    } else if (need <= 2) {
      f16_rows<R, T, 2, true>(w, ldw, K, x, ldx, y, ldy, m0, m1, s0, n, groups, steps);
    } else {
      f16_rows<R, T, 4, true>(w, ldw, K, x, ldx, y, ldy, m0, m1, s0, n, groups, steps);
    }
  }
}

void f16_gemm_avx512(const uint16_t* w, int64_t ldw, int64_t /*M*/, int64_t K, const float* x, int64_t ldx,
                     int64_t B, float* y, int64_t ldy, int64_t m0, int64_t m1) {
  if (B == 1) {
    for (int64_t m = m0; m < m1; ++m) f16_block<1, 1, kF16GemvU>(w, ldw, K, x, ldx, y, ldy, m, 0);
  } else if (B == 2) {
    f16_gemm_blocked<6, 2, true>(w, ldw, K, x, ldx, B, y, ldy, m0, m1);
  } else {
    f16_gemm_blocked<4, 3>(w, ldw, K, x, ldx, B, y, ldy, m0, m1);
  }
}

void f16_get_rows_avx512(const uint16_t* w, int64_t ldw, int64_t K, const int32_t* rows, int64_t n, float* out,
                         int64_t ldo) {
  for (int64_t i = 0; i < n; ++i) {
    const uint16_t* wr = w + static_cast<int64_t>(rows[i]) * ldw;  // [K]
    float* o = out + i * ldo;                                      // [K]
    int64_t k = 0;
    for (; k + 16 <= K; k += 16)
      _mm512_storeu_ps(o + k, _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(wr + k))));
    if (k < K) {
      const __mmask16 mk = static_cast<__mmask16>((1u << (K - k)) - 1);
      _mm512_mask_storeu_ps(o + k, mk, _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(mk, wr + k)));
    }
  }
}

// ---------------------------------------------------------------------------------------------
// f16t (dense.h: chunks of kF16TChunk columns summed from zero, then added to the running total)

// Prefetch distances in halves (measured on Zen 5, 128256 x 2560 from DRAM, 2 threads: none 31-33 ms at
// B = 8, 512 halves 20-22, 2048 16-17, 8192 16-17; at B = 1 512 halves 10.6-11.2 ms against 12.6-12.9 none).
constexpr int kF16TPrefetchGemm = 2048;
constexpr int kF16TPrefetchGemv = 512;

inline void f16t_store(float* y, __m512 lo, __m512 hi, int rows) {
  if (rows >= kF16TRows) {
    _mm512_storeu_ps(y, lo);
    _mm512_storeu_ps(y + 16, hi);
  } else {
    const uint32_t bits = (1u << rows) - 1;  // rows < 32
    _mm512_mask_storeu_ps(y, static_cast<__mmask16>(bits & 0xffff), lo);
    _mm512_mask_storeu_ps(y + 16, static_cast<__mmask16>(bits >> 16), hi);
  }
}

// T tokens of NT consecutive tiles (T = 1 for NT > 1: the GEMV walks tiles side by side, 2 NT independent chains;
// NT = 1 for T > 1: the tokens share each converted line). PF > 0: prefetch each tile's stream PF halves ahead.
template <int NT, int T, int PF>
void f16t_block(const uint16_t* wt, int64_t K, const float* x, int64_t ldx, float* y, int64_t ldy, int64_t M,
                int64_t t0) {
  __m512 tot[NT][T][2];
  for (int t = 0; t < NT; ++t)
    for (int i = 0; i < T; ++i) tot[t][i][0] = tot[t][i][1] = _mm512_setzero_ps();
  for (int64_t k0 = 0; k0 < K; k0 += kF16TChunk) {
    const int64_t k1 = std::min<int64_t>(K, k0 + kF16TChunk);
    __m512 a[NT][T][2];
    for (int t = 0; t < NT; ++t)
      for (int i = 0; i < T; ++i) a[t][i][0] = a[t][i][1] = _mm512_setzero_ps();
    for (int64_t k = k0; k < k1; ++k) {
      for (int t = 0; t < NT; ++t) {
        const uint16_t* p = wt + t * K * kF16TRows + k * kF16TRows;
        if constexpr (PF > 0) asm volatile("prefetcht0 (%0)" : : "r"(p + PF));
        const __m512 w0 = _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
        const __m512 w1 = _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + 16)));
        for (int i = 0; i < T; ++i) {
          const __m512 xv = _mm512_set1_ps(x[i * ldx + k]);
          a[t][i][0] = _mm512_fmadd_ps(w0, xv, a[t][i][0]);
          a[t][i][1] = _mm512_fmadd_ps(w1, xv, a[t][i][1]);
        }
      }
    }
    for (int t = 0; t < NT; ++t)
      for (int i = 0; i < T; ++i) {
        tot[t][i][0] = _mm512_add_ps(tot[t][i][0], a[t][i][0]);
        tot[t][i][1] = _mm512_add_ps(tot[t][i][1], a[t][i][1]);
      }
  }
  for (int t = 0; t < NT; ++t) {
    const int64_t m = (t0 + t) * kF16TRows;
    const int rows = static_cast<int>(std::min<int64_t>(kF16TRows, M - m));
    for (int i = 0; i < T; ++i) f16t_store(y + i * ldy + m, tot[t][i][0], tot[t][i][1], rows);
  }
}

// One tile, nt <= T tokens.
template <int T, int PF>
void f16t_tokens(int nt, const uint16_t* wt, int64_t K, const float* x, int64_t ldx, float* y, int64_t ldy, int64_t M,
                 int64_t t0) {
  if constexpr (T > 1) {
    if (nt < T) return f16t_tokens<T - 1, PF>(nt, wt, K, x, ldx, y, ldy, M, t0);
  }
  f16t_block<1, T, PF>(wt, K, x, ldx, y, ldy, M, t0);
}

constexpr int kF16TTokens = 8;

void f16t_gemm_avx512(const uint16_t* w, int64_t M, int64_t K, const float* x, int64_t ldx, int64_t B, float* y,
                      int64_t ldy, int64_t tile0, int64_t tile1) {
  if (B == 1) {
    int64_t t = tile0;
    for (; t + 4 <= tile1; t += 4) f16t_block<4, 1, kF16TPrefetchGemv>(w + t * K * kF16TRows, K, x, ldx, y, ldy, M, t);
    for (; t < tile1; ++t) f16t_block<1, 1, kF16TPrefetchGemv>(w + t * K * kF16TRows, K, x, ldx, y, ldy, M, t);
    return;
  }
  for (int64_t t = tile0; t < tile1; ++t) {
    const uint16_t* wt = w + t * K * kF16TRows;
    for (int64_t b = 0; b < B; b += kF16TTokens) {  // the tile's first token group reads it from memory: prefetch
      const int nt = static_cast<int>(std::min<int64_t>(kF16TTokens, B - b));
      if (b == 0) f16t_tokens<kF16TTokens, kF16TPrefetchGemm>(nt, wt, K, x, ldx, y, ldy, M, t);
      else f16t_tokens<kF16TTokens, 0>(nt, wt, K, x + b * ldx, ldx, y + b * ldy, ldy, M, t);
    }
  }
}

// ---------------------------------------------------------------------------------------------
// q8

inline int32_t load_i32(const int8_t* p) {
  int32_t v;
  std::memcpy(&v, p, 4);
  return v;
}

constexpr int64_t kQ8Prefetch = 8192;  // software prefetch distance (into L2) in the weight stream

// Y for NB tokens (activation rows q[i], outputs yp[i] + m0 .. + rows-1) of one Q8R16 tile; pf: prefetch the
// weight stream kQ8Prefetch bytes ahead (B > 1, a tile's first token group: measured on Zen 5, 1.21-1.51x at
// B = 8; at B = 1 it cost up to 0.78x on one thread, so the GEMV path has none).
template <int NB>
void q8_tile(const uint8_t* tile,  // [q8_tile_bytes(K)]
             int64_t nb,
             const int8_t* const* q,  // NB x [K]
             const float* scale,      // [NB]
             float* const* yp,        // NB output rows (already offset to the tile's first row)
             int rows, bool pf) {
  const __m512i k80 = _mm512_set1_epi8(static_cast<char>(0x80));
  __m512 facc[NB];
  for (int i = 0; i < NB; ++i) facc[i] = _mm512_setzero_ps();
  for (int64_t j = 0; j < nb; ++j) {
    const uint8_t* blk = tile + j * kQ8BlockBytes;  // [8, 64]
    if (pf)  // the tile's first token group reads it from memory: prefetch the stream as the GEMVs do
      for (int64_t l = 0; l < kQ8BlockBytes; l += 64)
        _mm_prefetch(reinterpret_cast<const char*>(blk + kQ8Prefetch + l), _MM_HINT_T1);
    __m512i corr = _mm512_setzero_si512();
    __m512i acc[NB];
    for (int i = 0; i < NB; ++i) acc[i] = _mm512_setzero_si512();
    for (int g = 0; g < 8; ++g) {
      const __m512i wv = _mm512_loadu_si512(blk + g * kQ8GroupBytes);
      corr = _mm512_dpbusd_epi32(corr, k80, wv);
      for (int i = 0; i < NB; ++i) {
        const __m512i u = _mm512_xor_si512(_mm512_set1_epi32(load_i32(q[i] + j * kQ8Block + 4 * g)), k80);
        acc[i] = _mm512_dpbusd_epi32(acc[i], u, wv);
      }
    }
    const __m512 d = _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(blk + kQ8BlockQsBytes)));
    for (int i = 0; i < NB; ++i)
      facc[i] = _mm512_add_ps(facc[i], _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_sub_epi32(acc[i], corr)), d));
  }
  const __mmask16 mk = static_cast<__mmask16>((1u << rows) - 1);
  for (int i = 0; i < NB; ++i)
    _mm512_mask_storeu_ps(yp[i], mk, _mm512_div_ps(facc[i], _mm512_set1_ps(scale[i])));
}

template <int NB>
void q8_tile_n(int nt, const uint8_t* tile, int64_t nb, const int8_t* const* q, const float* scale,
               float* const* yp, int rows, bool pf) {
  if constexpr (NB > 1) {
    if (nt < NB) return q8_tile_n<NB - 1>(nt, tile, nb, q, scale, yp, rows, pf);
  }
  q8_tile<NB>(tile, nb, q, scale, yp, rows, pf);
}

constexpr int kQ8Tokens = 6;
constexpr int64_t kQ8ActBytes = 512 * 1024;  // activation bytes per token super-block (L2)

void q8_gemm_avx512(const Q8Mat& w, const QActs& a, float* y, int64_t ldy, int64_t tile0, int64_t tile1) {
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
        q8_tile_n<kQ8Tokens>(nt, w.data + t * tb, nb, q, a.scale + b0, yp, rows, a.B > 1 && b0 == s0);
      }
    }
  }
}

void q8_get_rows_avx512(const Q8Mat& w, const int32_t* rows, int64_t n, float* out, int64_t ldo) {
  const int64_t nb = w.K / kQ8Block, tb = q8_tile_bytes(w.K);
  for (int64_t i = 0; i < n; ++i) {
    const int64_t m = rows[i], r = m % kQ8Rows;
    const uint8_t* tile = w.data + (m / kQ8Rows) * tb;
    float* o = out + i * ldo;                         // [K]
    for (int64_t j = 0; j < nb; ++j) {
      // Row r's 32 codes of block j: dword r of each of the 8 groups, in k order.
      const int8_t* blk = reinterpret_cast<const int8_t*>(tile + j * kQ8BlockBytes + 4 * r);
      const __m256i codes = _mm256_setr_epi32(load_i32(blk), load_i32(blk + 64), load_i32(blk + 128),
                                              load_i32(blk + 192), load_i32(blk + 256), load_i32(blk + 320),
                                              load_i32(blk + 384), load_i32(blk + 448));
      uint16_t hbits;
      std::memcpy(&hbits, tile + j * kQ8BlockBytes + kQ8BlockQsBytes + 2 * r, 2);
      const __m512 d = _mm512_set1_ps(half_to_f32(hbits));
      const __m512 lo = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm256_castsi256_si128(codes)));
      const __m512 hi = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm256_extracti128_si256(codes, 1)));
      _mm512_storeu_ps(o + j * kQ8Block, _mm512_mul_ps(d, lo));
      _mm512_storeu_ps(o + j * kQ8Block + 16, _mm512_mul_ps(d, hi));
    }
  }
}

}  // namespace

void fill_dense_avx512(KernelTable& t, const CpuFeatures& f) {
  t.f16_gemm = f16_gemm_avx512;
  t.f16_get_rows = f16_get_rows_avx512;
  t.f16t_gemm = f16t_gemm_avx512;
  t.f16t_get_rows = f16t_get_rows_any;
  t.q8_gemm = q8_gemm_avx512;
  t.q8_get_rows = q8_get_rows_avx512;
  t.v_f16 = "avx512";
  t.v_q8 = "avx512";
  fill_dense_q4_avx512(t, f);
}

}  // namespace bitllm
