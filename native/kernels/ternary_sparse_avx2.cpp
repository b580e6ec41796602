// AVX2 column-sparse ternary GEMM on TS256 (ternary_sparse.h). The same interleave as AVX-512 on 32-byte
// halves of the lines; products by maddubs (codes scaled by 4^l <= 128 times int8: |pair| <= 32768, exact)
// then madd by ones into int32. Eight accumulators fit the 16 ymm registers, so each block is done in four
// passes over the column list (half h of the line x columns' bytes 0-7 or 8-15 of each lane); the first pass
// prefetches the lines, the other three read them from L1/L2.
#include <immintrin.h>

#include <cstring>

#include "kernels.h"

namespace bitllm {

namespace {

constexpr int64_t kPrefetchGroups = 16;

void ternary_sparse_gemm_avx2(const TernarySparseMat& w, const SparseActs& a, float* y, int64_t ldy,
                              int64_t blk0, int64_t blk1) {
  alignas(32) int32_t raw[kTsRows];
  const __m256i mask[4] = {_mm256_set1_epi8(0x03), _mm256_set1_epi8(0x0c), _mm256_set1_epi8(0x30),
                           _mm256_set1_epi8(static_cast<char>(0xc0))};
  const __m256i ones = _mm256_set1_epi16(1);
  const int64_t cs = ts_col_bytes(w.M);
  for (int64_t blk = blk0; blk < blk1; ++blk) {
    const uint8_t* base = w.data + blk * kTsLineBytes;  // column k's line at k * cs
    for (int64_t b = 0; b < a.B; ++b) {
      const int32_t* cols = a.cols + b * a.ldc;  // [4 ng]
      const int8_t* vals = a.vals + b * a.ldc;   // [4 ng]
      const int64_t ng = a.groups[b];
      for (int h = 0; h < 2; ++h) {
        for (int up = 0; up < 2; ++up) {
          const bool first = h == 0 && up == 0;
          __m256i acc[8];
          for (auto& v : acc) v = _mm256_setzero_si256();
          for (int64_t g = 0; g < ng; ++g) {
            const int32_t* c = cols + 4 * g;
            if (first && g + kPrefetchGroups < ng)
              for (int i = 0; i < 4; ++i)
                _mm_prefetch(reinterpret_cast<const char*>(base + int64_t{c[4 * kPrefetchGroups + i]} * cs),
                             _MM_HINT_T0);
            const uint8_t* p = base + 32 * h;
            const __m256i la = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + int64_t{c[0]} * cs));
            const __m256i lb = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + int64_t{c[1]} * cs));
            const __m256i lc = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + int64_t{c[2]} * cs));
            const __m256i ld = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + int64_t{c[3]} * cs));
            int32_t qd;
            std::memcpy(&qd, vals + 4 * g, 4);
            const __m256i qv = _mm256_set1_epi32(qd);
            const __m256i ab = up ? _mm256_unpackhi_epi8(la, lb) : _mm256_unpacklo_epi8(la, lb);
            const __m256i cd = up ? _mm256_unpackhi_epi8(lc, ld) : _mm256_unpacklo_epi8(lc, ld);
            const __m256i z[2] = {_mm256_unpacklo_epi16(ab, cd), _mm256_unpackhi_epi16(ab, cd)};
            for (int i = 0; i < 2; ++i)
              for (int l = 0; l < 4; ++l) {
                const __m256i prod = _mm256_maddubs_epi16(_mm256_and_si256(z[i], mask[l]), qv);
                acc[4 * i + l] = _mm256_add_epi32(acc[4 * i + l], _mm256_madd_epi16(prod, ones));
              }
          }
          // acc[4i + l] = 4^l x the dots of rows 64u + 16l + 8h + 0..7, u = 2 up + i.
          for (int i = 0; i < 2; ++i)
            for (int l = 0; l < 4; ++l) {
              int32_t* dst = raw + 64 * (2 * up + i) + 16 * l + 8 * h;
              __m256i v = acc[4 * i + l];
              if (l == 1) v = _mm256_srai_epi32(v, 2);
              if (l == 2) v = _mm256_srai_epi32(v, 4);
              if (l == 3) v = _mm256_srai_epi32(v, 6);
              _mm256_store_si256(reinterpret_cast<__m256i*>(dst), v);
            }
        }
      }
      ts_store_block(w, a, b, blk, raw, y, ldy);
    }
  }
}

}  // namespace

void fill_ternary_sparse_avx2(KernelTable& t, const CpuFeatures&) {
  t.ternary_sparse_gemm = ternary_sparse_gemm_avx2;
  t.v_ternary_sparse = "avx2";
}

}  // namespace bitllm
