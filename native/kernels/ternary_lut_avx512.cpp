// TL3 lookup-table GEMM, AVX-512 BW variant (bit-exact to ternary_lut_scalar.cpp and ternary_gemm).
// Tables are int16 (T[0..15] twice, one zmm per group and token). A 64-byte nibble pair is 32 words,
// word i = rows i and 32+i; the word, >> 8, >> 4 and >> 12 (done as vpmulhuw by 2^8 / 2^12 / 2^4, which
// runs on the multiply pipes and leaves the permute pipes to vpermw) index the table with vpermw and
// give int16 sums for rows 0..31 / 32..63 of both groups, in row order. A masked subtract applies the
// sign bits (one bit per row, used directly as a k-mask) and vpaddw accumulates. The int16
// accumulators are widened to int32 every kLutFlushGroups groups and at the end of each 256-column
// block (|sum| <= 46 * 384 < 32768).
#include <immintrin.h>

#include <cstring>

#include "kernels.h"

// GCC 12 reports its own _mm512_undefined_*() (the pass-through operand of unmasked intrinsics) as
// (maybe-)uninitialized once inlined into templates; the warning is spurious.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#endif

namespace bitllm {

namespace {

constexpr int kMaxTokens = 4;         // tokens per pass over a record (int16 accumulators in registers)
constexpr int kPrefetchBytes = 8192;  // software prefetch distance (into L2) in the weight stream

// Tables: per group the 16 int16 T[m] twice (vpermw reads index bits 0..4; bit 4 is don't-care).
void lut_build_avx512(const QActs& a, int64_t b0, int64_t b1,
                      uint8_t* tables) {  // [B, lut_table_bytes(K)]
  const __m256i d0 = _mm256_setr_epi16(0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0);
  const __m256i d1 = _mm256_setr_epi16(0, 0, 1, 1, 1, -1, -1, -1, 0, 0, 0, 1, 1, 1, 0, 0);
  const __m256i d2 = _mm256_setr_epi16(0, 1, -1, 0, 1, -1, 0, 1, -1, 0, 1, -1, 0, 1, 0, 0);
  const int64_t tb = lut_table_bytes(a.K), nb = lut_blocks(a.K);
  for (int64_t b = b0; b < b1; ++b) {
    const int8_t* q = a.q + b * a.ldq;  // [K]
    for (int64_t j = 0; j < nb; ++j) {
      const int ng = lut_block_groups(a.K, j);
      const int64_t k0 = j * kScaleBlockK;
      const int64_t kend = a.K < k0 + kScaleBlockK ? a.K : k0 + kScaleBlockK;
      uint8_t* e = tables + b * tb + lut_block_group0(j) * kLutTableBytes;  // [ng, 64]
      for (int g = 0; g < ng; ++g, e += kLutTableBytes) {
        const int64_t k = k0 + int64_t{kLutGroupK} * g;
        const int16_t x0 = k < kend ? q[k] : 0;
        const int16_t x1 = k + 1 < kend ? q[k + 1] : 0;
        const int16_t x2 = k + 2 < kend ? q[k + 2] : 0;
        const __m256i t = _mm256_add_epi16(
            _mm256_add_epi16(_mm256_sign_epi16(_mm256_set1_epi16(x0), d0), _mm256_sign_epi16(_mm256_set1_epi16(x1), d1)),
            _mm256_sign_epi16(_mm256_set1_epi16(x2), d2));
        _mm512_storeu_si512(e, _mm512_inserti64x4(_mm512_castsi256_si512(t), t, 1));
      }
    }
  }
}

template <int NB>
inline void flush(__m512i (&acc)[NB][2], int32_t (*dot)[kLutRows]) {
  for (int i = 0; i < NB; ++i) {
    for (int h = 0; h < 2; ++h) {
      int32_t* d = dot[i] + 32 * h;
      const __m512i lo = _mm512_cvtepi16_epi32(_mm512_castsi512_si256(acc[i][h]));
      const __m512i hi = _mm512_cvtepi16_epi32(_mm512_extracti64x4_epi64(acc[i][h], 1));
      _mm512_storeu_si512(d, _mm512_add_epi32(_mm512_loadu_si512(d), lo));
      _mm512_storeu_si512(d + 16, _mm512_add_epi32(_mm512_loadu_si512(d + 16), hi));
      acc[i][h] = _mm512_setzero_si512();
    }
  }
}

// acc += ±table[idx] with the sign bits k (rows in lane order).
inline __m512i add_signed(__m512i acc, __m512i idx, __m512i table, __mmask32 k) {
  const __m512i v = _mm512_permutexvar_epi16(idx, table);
  return _mm512_add_epi16(acc, _mm512_mask_sub_epi16(v, k, _mm512_setzero_si512(), v));
}

// dot[i][r] = Σ_g ±T_i[mag] over one record (64 rows x ng groups) for NB tokens.
template <int NB>
void record_dots(const uint8_t* rec,         // [lut_record_bytes(ng)]
                 int ng,
                 const uint8_t* const* tab,  // [NB] -> [ng, 64] each token's tables for this block
                 int32_t (*dot)[kLutRows]) {  // [NB][64]
  const __m512i sh8 = _mm512_set1_epi16(1 << 8), sh4 = _mm512_set1_epi16(1 << 12), sh12 = _mm512_set1_epi16(1 << 4);
  __m512i acc[NB][2];
  for (int i = 0; i < NB; ++i) {
    for (int r = 0; r < kLutRows; r += 16) _mm512_storeu_si512(dot[i] + r, _mm512_setzero_si512());
    acc[i][0] = acc[i][1] = _mm512_setzero_si512();
  }
  for (int g0 = 0; g0 < ng; g0 += kLutUnitGroups) {
    const uint8_t* unit = rec + (g0 / kLutUnitGroups) * kLutUnitBytes;  // [320]
    for (int l = 0; l < kLutUnitBytes; l += 64) _mm_prefetch(reinterpret_cast<const char*>(unit + kPrefetchBytes + l), _MM_HINT_T1);
    const int gu = ng - g0 < kLutUnitGroups ? ng - g0 : kLutUnitGroups;
    for (int p = 0; p < gu; p += 2) {
      const __m512i w = _mm512_loadu_si512(unit + 64 + 32 * p);
      const __m512i ia0 = w;                             // group g0+p,   rows 0..31
      const __m512i ia1 = _mm512_mulhi_epu16(w, sh8);    // group g0+p,   rows 32..63
      const __m512i ib0 = _mm512_mulhi_epu16(w, sh4);    // group g0+p+1, rows 0..31
      const __m512i ib1 = _mm512_mulhi_epu16(w, sh12);   // group g0+p+1, rows 32..63
      uint32_t s[4];
      std::memcpy(s, unit + 8 * p, 16);
      const __mmask32 ka0 = _cvtu32_mask32(s[0]), ka1 = _cvtu32_mask32(s[1]);
      const __mmask32 kb0 = _cvtu32_mask32(s[2]), kb1 = _cvtu32_mask32(s[3]);
      for (int i = 0; i < NB; ++i) {
        const uint8_t* e = tab[i] + (g0 + p) * kLutTableBytes;  // [2, 64]
        const __m512i ta = _mm512_loadu_si512(e), tb = _mm512_loadu_si512(e + kLutTableBytes);
        acc[i][0] = add_signed(acc[i][0], ia0, ta, ka0);
        acc[i][1] = add_signed(acc[i][1], ia1, ta, ka1);
        acc[i][0] = add_signed(acc[i][0], ib0, tb, kb0);
        acc[i][1] = add_signed(acc[i][1], ib1, tb, kb1);
      }
    }
    if (g0 + gu == kLutFlushGroups) flush<NB>(acc, dot);
  }
  flush<NB>(acc, dot);
}

// Folds block j's dots of tile t, token b into y (partials kept in y between blocks: int32 bits for
// tensor/row scales, the float sum for block scales) and applies the contract's epilogue after the
// last block. Only rows < M are read or written.
void combine(const TernaryLutMat& w, const QActs& a, int64_t j, int64_t t, int64_t b,
             const int32_t* dot,  // [64]
             float* y,            // [B, ldy]
             int64_t ldy) {
  const int64_t nb = lut_blocks(w.K), nsb = w.K / kScaleBlockK;
  const bool last = j == nb - 1;
  float* yr = y + b * ldy + t * kLutRows;  // [64]
  const int64_t rows = w.M - t * kLutRows;
  const __m512 s = _mm512_set1_ps(a.scale[b]);
  for (int q = 0; q < kLutRows / 16 && 16 * q < rows; ++q) {
    const int64_t n = rows - 16 * q;
    const __mmask16 km = n >= 16 ? static_cast<__mmask16>(0xffff) : static_cast<__mmask16>((1u << n) - 1u);
    __m512i d = _mm512_loadu_si512(dot + 16 * q);
    float* yq = yr + 16 * q;
    if (w.scale_mode == kScaleBlock) {
      const float* sc = w.scales + ((t * (kLutRows / kT2Rows) + q) * nsb + j) * kT2Rows;  // [16]
      const __m512 prev = j == 0 ? _mm512_setzero_ps() : _mm512_maskz_loadu_ps(km, yq);
      __m512 acc = _mm512_add_ps(prev, _mm512_mul_ps(_mm512_cvtepi32_ps(d), _mm512_maskz_loadu_ps(km, sc)));
      if (last) acc = _mm512_div_ps(acc, s);
      _mm512_mask_storeu_ps(yq, km, acc);
    } else {
      if (j > 0) d = _mm512_add_epi32(d, _mm512_maskz_loadu_epi32(km, yq));
      if (last) {
        const __m512 ws = w.scale_mode == kScaleRow ? _mm512_maskz_loadu_ps(km, w.scales + t * kLutRows + 16 * q)
                                                    : _mm512_set1_ps(w.scales[0]);
        _mm512_mask_storeu_ps(yq, km, _mm512_div_ps(_mm512_mul_ps(_mm512_cvtepi32_ps(d), ws), s));
      } else {
        _mm512_mask_storeu_epi32(yq, km, d);
      }
    }
  }
}

template <int NB>
void tokens_pass(const TernaryLutMat& w, const QActs& a,
                 const uint8_t* tables,  // [B, lut_table_bytes(K)]
                 int64_t j, int64_t t, int64_t b0,
                 float* y,  // [B, ldy]
                 int64_t ldy) {
  const int64_t tb = lut_table_bytes(w.K);
  const uint8_t* tab[NB];
  for (int i = 0; i < NB; ++i) tab[i] = tables + (b0 + i) * tb + lut_block_group0(j) * kLutTableBytes;
  alignas(64) int32_t dot[NB][kLutRows];
  record_dots<NB>(w.data + lut_record_offset(w.M, w.K, j, t), lut_block_groups(w.K, j), tab, dot);
  for (int i = 0; i < NB; ++i) combine(w, a, j, t, b0 + i, dot[i], y, ldy);
}

// Blocks outermost: one block's tables (86 x 64 bytes per token) stay in L1 while the thread streams
// its tiles' records of that block, which are contiguous in memory.
void lut_gemm_avx512(const TernaryLutMat& w, const QActs& a,
                     const uint8_t* tables,  // [B, lut_table_bytes(K)]
                     float* y,  // [B, ldy]
                     int64_t ldy,
                     int64_t tile0, int64_t tile1) {
  const int64_t nb = lut_blocks(w.K);
  for (int64_t j = 0; j < nb; ++j) {
    for (int64_t t = tile0; t < tile1; ++t) {
      for (int64_t b0 = 0; b0 < a.B; b0 += kMaxTokens) {
        switch (a.B - b0 < kMaxTokens ? a.B - b0 : kMaxTokens) {
          case 1: tokens_pass<1>(w, a, tables, j, t, b0, y, ldy); break;
          case 2: tokens_pass<2>(w, a, tables, j, t, b0, y, ldy); break;
          case 3: tokens_pass<3>(w, a, tables, j, t, b0, y, ldy); break;
          default: tokens_pass<4>(w, a, tables, j, t, b0, y, ldy); break;
        }
      }
    }
  }
}

}  // namespace

void fill_ternary_lut_avx512(KernelTable& t, const CpuFeatures&) {
  t.ternary_lut_build = lut_build_avx512;
  t.ternary_lut_gemm = lut_gemm_avx512;
  t.v_ternary_lut = "avx512";
}

}  // namespace bitllm
