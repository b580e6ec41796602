// AVX-512 (F) table build and lookup GEMM on B1L64, bit-exact to binary_lut_scalar.cpp.
//
// A B1L64 chunk is four 512-bit vectors (16-row quarters); dword lane r of quarter q is row 16q+r's
// 32 signs, nibble j = the 4-column group 8kc+j. `vpermps` reads bits 3:0 of each index lane, so
// `_mm512_permutexvar_ps(v >> 4j, T_g)` is 16 rows' lookups of group g: per 16 rows x 4 columns one
// shift, one permute and one add. A pass covers a whole 64-row block (4 quarters) so each table vector
// is loaded once per 64 rows (a token's tables are 16 KB per 1024 columns: L2, not L1, at K = 6912),
// and per quarter two accumulators (even / odd groups, the contract's order) give 8 add chains for
// B = 1. For B >= 2 two tokens share the shifted indices (two quarters per pass, 16 accumulators);
// tokens are taken in chunks whose tables fit in L2, every block of the range running over each chunk.
//
// What made it fast (2560 x 6912, one Zen 4 core, weights from DRAM; measured in a standalone harness,
// medians of interleaved calls): the chains add with fma(p, 1, acc) (rounds exactly like acc + p, but
// on the FMA pipes; the add and shuffle pipes are the bottleneck): 46 -> 29 us cache-hot at 2560 x 2560
// for the odd chains together with the next point, all chains 76 -> 70 us at 2560 x 6912; index vectors loaded once per chunk into registers (GCC otherwise folds
// each shift's load, 7 loads per vector) and a software prefetch 4 KB ahead in the weight stream: from
// DRAM ~230 -> ~130 us. Tried and dropped: unaligned loads at byte offsets 1..3 instead of the shifts
// (faster cache-hot, but the cache-line-splitting loads halved the DRAM rate), prefetch 1 KB ahead or
// into L2, K-slabs with L1-resident tables, 4 chains or a per-chunk add tree (no gain from DRAM).
//
// The tables: T = ((σ0·u0 + σ1·u1) + σ2·u2) + σ3·u3 as mul(u0, σ0) then fma(u_i, σ_i, T): σ·u is
// exact, so the fma rounds exactly like the add the contract specifies (bit-identical tables).

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

#include "kernels.h"

namespace bitllm {

namespace {

constexpr int kQuarters = kB1lRows / 16;
constexpr int64_t kTableChunkBytes = 512 * 1024;  // tables of one token chunk: about half of L2
constexpr int64_t kPrefetchBytes = 4096;  // software prefetch distance (into L1) in the weight stream

// σ_i of entry j: +1 where bit i of j is set, else -1.
inline __m512 sign_vector(int i) {
  alignas(64) float s[16];
  for (int j = 0; j < 16; ++j) s[j] = ((j >> i) & 1) ? 1.0f : -1.0f;
  return _mm512_load_ps(s);
}

void binary_lut_build_avx512(const float* u, int64_t ldu, int64_t B, int64_t K, float* tables, int64_t ldt,
                             int64_t g0, int64_t g1) {
  (void)K;
  const __m512 s0 = sign_vector(0), s1 = sign_vector(1), s2 = sign_vector(2), s3 = sign_vector(3);
  for (int64_t b = 0; b < B; ++b) {
    const float* x = u + b * ldu;   // [K]
    float* tb = tables + b * ldt;   // [K/4, 16]
    for (int64_t g = g0; g < g1; ++g) {
      const float* xg = x + kB1lGroupK * g;  // [4]
      __m512 t = _mm512_mul_ps(_mm512_set1_ps(xg[0]), s0);
      t = _mm512_fmadd_ps(_mm512_set1_ps(xg[1]), s1, t);
      t = _mm512_fmadd_ps(_mm512_set1_ps(xg[2]), s2, t);
      t = _mm512_fmadd_ps(_mm512_set1_ps(xg[3]), s3, t);
      _mm512_storeu_ps(tb + kB1lTableFloats * g, t);
    }
  }
}

// acc[i][q] (= e + o) of quarters [q0, q0 + NQ) of one block (16 rows each) for NB tokens whose
// tables start at tab[i]. Per chunk the quarters are loaded once (kept in registers: folding them into
// the shifts as memory operands would issue 7 loads per vector) and lane >> 4j is group j's index.
// The chains add with fma(p, 1, acc), which rounds exactly like acc + p but issues on the FMA pipes
// instead of the add pipes (which Zen 4 shares with the permutes).
template <int NB, int NQ>
inline void block_sums(const uint8_t* blk,  // [K/32, 256]
                       int64_t kchunks, int q0,
                       const float* const* tab,  // NB x [K/4, 16]
                       __m512 (&acc)[NB][NQ]) {
  const __m512 one = _mm512_set1_ps(1.0f);
  __m512 e[NB][NQ], o[NB][NQ];
  for (int i = 0; i < NB; ++i)
    for (int q = 0; q < NQ; ++q) e[i][q] = o[i][q] = _mm512_setzero_ps();
  for (int64_t kc = 0; kc < kchunks; ++kc) {
    const uint8_t* c = blk + kc * kB1lChunkBytes;  // [256]
    for (int l = 0; l < kB1lChunkBytes; l += 64) _mm_prefetch(reinterpret_cast<const char*>(c + kPrefetchBytes + l), _MM_HINT_T0);
    __m512i v[NQ];
#pragma GCC unroll 4
    for (int q = 0; q < NQ; ++q) {
      v[q] = _mm512_loadu_si512(c + 64 * (q0 + q));
      asm("" : "+v"(v[q]));  // keep it in a register
    }
    const int64_t tofs = kc * 8 * kB1lTableFloats;
#pragma GCC unroll 8
    for (int j = 0; j < 8; ++j) {
      __m512 tv[NB];
      for (int i = 0; i < NB; ++i) tv[i] = _mm512_loadu_ps(tab[i] + tofs + j * kB1lTableFloats);
#pragma GCC unroll 4
      for (int q = 0; q < NQ; ++q) {
        const __m512i idx = j == 0 ? v[q] : _mm512_srli_epi32(v[q], 4 * j);
        for (int i = 0; i < NB; ++i) {
          const __m512 p = _mm512_permutexvar_ps(idx, tv[i]);
          if (j % 2 == 0) {
            e[i][q] = _mm512_fmadd_ps(p, one, e[i][q]);
          } else {
            o[i][q] = _mm512_fmadd_ps(p, one, o[i][q]);
          }
        }
      }
    }
  }
  for (int i = 0; i < NB; ++i)
    for (int q = 0; q < NQ; ++q) acc[i][q] = _mm512_add_ps(e[i][q], o[i][q]);
}

// The epilogue of quarters [q0, q0 + NQ) of block t for token b (masked to rows < M).
template <int NQ>
inline void store_quarters(const BinaryLutMat& w, int64_t t, int q0, int64_t b, const __m512 (&acc)[NQ],
                           const float* row_scale,  // [M] or nullptr
                           const float* tok_bias,   // [B] or nullptr
                           float* y,                // [B, ldy]
                           int64_t ldy) {
  for (int q = 0; q < NQ; ++q) {
    const int64_t m0 = t * kB1lRows + 16 * (q0 + q);
    if (m0 >= w.M) break;
    const int rows = static_cast<int>(std::min<int64_t>(16, w.M - m0));
    const __mmask16 live = static_cast<__mmask16>((1u << rows) - 1);
    __m512 v = acc[q];
    if (row_scale) v = _mm512_mul_ps(v, _mm512_maskz_loadu_ps(live, row_scale + m0));
    if (tok_bias) v = _mm512_add_ps(v, _mm512_set1_ps(tok_bias[b]));
    _mm512_mask_storeu_ps(y + b * ldy + m0, live, v);
  }
}

void binary_lut_gemm_avx512(const BinaryLutMat& w, const float* tables, int64_t ldt, int64_t B,
                            const float* row_scale, const float* tok_bias, float* y, int64_t ldy, int64_t blk0,
                            int64_t blk1) {
  const int64_t kchunks = w.K / kB1lKStep;
  const int64_t blk_bytes = kchunks * kB1lChunkBytes;
  if (B == 1) {
    for (int64_t t = blk0; t < blk1; ++t) {
      __m512 acc[1][kQuarters];
      block_sums<1, kQuarters>(w.bits + t * blk_bytes, kchunks, 0, &tables, acc);
      store_quarters(w, t, 0, 0, acc[0], row_scale, tok_bias, y, ldy);
    }
    return;
  }
  const int64_t chunk = std::max<int64_t>(2, kTableChunkBytes / (ldt * 4)) & ~int64_t{1};
  for (int64_t c0 = 0; c0 < B; c0 += chunk) {
    const int64_t c1 = std::min(B, c0 + chunk);
    for (int64_t t = blk0; t < blk1; ++t) {
      const uint8_t* blk = w.bits + t * blk_bytes;  // [K/32, 256]
      int64_t b = c0;
      for (; b + 2 <= c1; b += 2) {
        const float* tab[2] = {tables + b * ldt, tables + (b + 1) * ldt};
        // Four quarters x two tokens: the 16 chains stay in registers (with the 4 weight vectors, 2 table
        // vectors and the constant: 23 of 32), each table vector feeds 4 lookups and each weight chunk is
        // read once per token pair.
        __m512 acc[2][kQuarters];
        block_sums<2, kQuarters>(blk, kchunks, 0, tab, acc);
        store_quarters(w, t, 0, b, acc[0], row_scale, tok_bias, y, ldy);
        store_quarters(w, t, 0, b + 1, acc[1], row_scale, tok_bias, y, ldy);
      }
      if (b < c1) {
        const float* tab[1] = {tables + b * ldt};
        __m512 acc[1][kQuarters];
        block_sums<1, kQuarters>(blk, kchunks, 0, tab, acc);
        store_quarters(w, t, 0, b, acc[0], row_scale, tok_bias, y, ldy);
      }
    }
  }
}

}  // namespace

void fill_binary_lut_avx512(KernelTable& t, const CpuFeatures&) {
  t.binary_lut_build = binary_lut_build_avx512;
  t.binary_lut_gemm = binary_lut_gemm_avx512;
  t.v_binary_lut = "avx512";
}

}  // namespace bitllm
