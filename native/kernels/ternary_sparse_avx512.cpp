// AVX-512 (F/BW/VL/VNNI) column-sparse ternary GEMM on TS256 (ternary_sparse.h). Per group of four
// non-zero columns and 256-row block: four 64-byte line loads, eight unpacks that put the four columns
// into the bytes of each dword, then 16 x (vpandd, vpdpbusd) into 16 accumulators of 16 rows each.
// The next lines are software-prefetched from the column list (they are not a stride the hardware finds).
#include <immintrin.h>

#include <cstring>

#include "kernels.h"

namespace bitllm {

namespace {

// Groups of four columns prefetched ahead (64 lines in flight covers DRAM latency at full bandwidth).
constexpr int64_t kPrefetchGroups = 16;

void ternary_sparse_prep_avx512(const int8_t* q, int64_t ldq, int64_t K, int64_t b0, int64_t b1, int32_t* cols,
                                int8_t* vals, int64_t ldc, int32_t* groups) {
  const __m512i iota = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
  for (int64_t b = b0; b < b1; ++b) {
    const int8_t* qr = q + b * ldq;  // [K]
    int32_t* c = cols + b * ldc;     // [ldc]
    int8_t* v = vals + b * ldc;      // [ldc]
    int64_t n = 0, k = 0;
    for (; k + 16 <= K; k += 16) {
      const __m128i q16 = _mm_loadu_si128(reinterpret_cast<const __m128i*>(qr + k));
      const __mmask16 m = _mm_test_epi8_mask(q16, q16);
      if (m == 0) continue;
      const __m512i idx = _mm512_add_epi32(iota, _mm512_set1_epi32(static_cast<int32_t>(k)));
      // Register-destination compress then a plain store (the memory form is microcoded on Zen 4).
      _mm512_storeu_si512(c + n, _mm512_maskz_compress_epi32(m, idx));
      const __m512i qd = _mm512_maskz_compress_epi32(m, _mm512_cvtepi8_epi32(q16));
      _mm_storeu_si128(reinterpret_cast<__m128i*>(v + n), _mm512_cvtepi32_epi8(qd));
      n += __builtin_popcount(m);
    }
    for (; k < K; ++k) {
      c[n] = static_cast<int32_t>(k);
      v[n] = qr[k];
      n += qr[k] != 0;
    }
    const int32_t last = n > 0 ? c[n - 1] : 0;
    while (n % 4) {
      c[n] = last;
      v[n++] = 0;
    }
    groups[b] = static_cast<int32_t>(n / 4);
  }
}

inline void prefetch_group(const uint8_t* base, const int32_t* c) {
  for (int i = 0; i < 4; ++i)
    _mm_prefetch(reinterpret_cast<const char*>(base + int64_t{c[i]} * kTsLineBytes), _MM_HINT_T0);
}

void ternary_sparse_gemm_avx512(const TernarySparseMat& w, const SparseActs& a, float* y, int64_t ldy,
                                int64_t blk0, int64_t blk1) {
  alignas(64) int32_t raw[kTsRows];
  const __m512i mask[4] = {_mm512_set1_epi8(0x03), _mm512_set1_epi8(0x0c), _mm512_set1_epi8(0x30),
                           _mm512_set1_epi8(static_cast<char>(0xc0))};
  const int64_t block_bytes = w.K * kTsLineBytes;
  for (int64_t blk = blk0; blk < blk1; ++blk) {
    const uint8_t* base = w.data + blk * block_bytes;  // [K, 64]
    for (int64_t b = 0; b < a.B; ++b) {
      const int32_t* cols = a.cols + b * a.ldc;  // [4 ng]
      const int8_t* vals = a.vals + b * a.ldc;   // [4 ng]
      const int64_t ng = a.groups[b];
      // Where the list continues: the next token on this block, else the first token on the next block
      // (also past blk1: a thread's next chunk of blocks is usually the following one).
      const bool more = b + 1 < a.B || blk + 1 < ts_blocks(w.M);
      const uint8_t* next_base = b + 1 < a.B ? base : base + block_bytes;
      const int64_t nb = b + 1 < a.B ? b + 1 : 0;
      const int32_t* next_cols = a.cols + nb * a.ldc;
      const int64_t next_ng = a.groups[nb];
      __m512i acc[16];
      for (auto& v : acc) v = _mm512_setzero_si512();
      for (int64_t g = 0; g < ng; ++g) {
        const int32_t* c = cols + 4 * g;
        const int64_t pg = g + kPrefetchGroups;
        if (pg < ng)
          prefetch_group(base, cols + 4 * pg);
        else if (more && pg - ng < next_ng)
          prefetch_group(next_base, next_cols + 4 * (pg - ng));
        const __m512i la = _mm512_loadu_si512(base + int64_t{c[0]} * kTsLineBytes);
        const __m512i lb = _mm512_loadu_si512(base + int64_t{c[1]} * kTsLineBytes);
        const __m512i lc = _mm512_loadu_si512(base + int64_t{c[2]} * kTsLineBytes);
        const __m512i ld = _mm512_loadu_si512(base + int64_t{c[3]} * kTsLineBytes);
        int32_t qd;
        std::memcpy(&qd, vals + 4 * g, 4);
        const __m512i qv = _mm512_set1_epi32(qd);
        const __m512i ab_lo = _mm512_unpacklo_epi8(la, lb), ab_hi = _mm512_unpackhi_epi8(la, lb);
        const __m512i cd_lo = _mm512_unpacklo_epi8(lc, ld), cd_hi = _mm512_unpackhi_epi8(lc, ld);
        const __m512i z[4] = {_mm512_unpacklo_epi16(ab_lo, cd_lo), _mm512_unpackhi_epi16(ab_lo, cd_lo),
                              _mm512_unpacklo_epi16(ab_hi, cd_hi), _mm512_unpackhi_epi16(ab_hi, cd_hi)};
        for (int u = 0; u < 4; ++u)
          for (int l = 0; l < 4; ++l)
            acc[4 * u + l] = _mm512_dpbusd_epi32(acc[4 * u + l], _mm512_and_si512(z[u], mask[l]), qv);
      }
      // acc[4u + l] = 4^l x the dots of rows 64u + 16l + 0..15.
      for (int u = 0; u < 4; ++u) {
        _mm512_store_si512(raw + 16 * (4 * u + 0), acc[4 * u + 0]);
        _mm512_store_si512(raw + 16 * (4 * u + 1), _mm512_srai_epi32(acc[4 * u + 1], 2));
        _mm512_store_si512(raw + 16 * (4 * u + 2), _mm512_srai_epi32(acc[4 * u + 2], 4));
        _mm512_store_si512(raw + 16 * (4 * u + 3), _mm512_srai_epi32(acc[4 * u + 3], 6));
      }
      ts_store_block(w, a, b, blk, raw, y, ldy);
    }
  }
}

}  // namespace

void fill_ternary_sparse_avx512(KernelTable& t, const CpuFeatures&) {
  t.ternary_sparse_prep = ternary_sparse_prep_avx512;
  t.ternary_sparse_gemm = ternary_sparse_gemm_avx512;
  t.v_ternary_sparse = "avx512";
}

}  // namespace bitllm
