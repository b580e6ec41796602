// TL3 lookup-table GEMM, AVX2 variant (bit-exact to ternary_lut_scalar.cpp and ternary_gemm).
// Tables are byte planes. Per group and token, vpshufb on the broadcast 16-byte low/high table planes
// looks up 32 rows per register and unpacklo/hi rebuild int16. The int16 lanes come out in a fixed
// permuted row order ("lane order", kLaneRow): the sign bits of those rows are expanded to a lane
// mask m (one 32-bit broadcast + and + cmpeq per 16 lanes) and applied as (v ^ m) - m; the int32 dots
// are put back in row order once per record. int16 accumulators are widened to int32 every
// kLutFlushGroups groups and at the end of each block.
#include <immintrin.h>

#include <cstring>

#include "kernels.h"

namespace bitllm {

namespace {

// Byte-plane tables. Per group: T[m] = sign(x0, d0[m]) + sign(x1, d1[m]) + sign(x2, d2[m]) for the 16
// table rows in one register of int16, N = -T, then the low and high bytes are gathered into planes.
void lut_build_avx2(const QActs& a, int64_t b0, int64_t b1,
                    uint8_t* tables) {  // [B, lut_table_bytes(K)]
  const __m256i d0 = _mm256_setr_epi16(0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0);
  const __m256i d1 = _mm256_setr_epi16(0, 0, 1, 1, 1, -1, -1, -1, 0, 0, 0, 1, 1, 1, 0, 0);
  const __m256i d2 = _mm256_setr_epi16(0, 1, -1, 0, 1, -1, 0, 1, -1, 0, 1, -1, 0, 1, 0, 0);
  // Per 128-bit lane: low bytes of the 8 int16 to bytes 0..7, high bytes to 8..15.
  const __m256i split = _mm256_setr_epi8(0, 2, 4, 6, 8, 10, 12, 14, 1, 3, 5, 7, 9, 11, 13, 15,  //
                                         0, 2, 4, 6, 8, 10, 12, 14, 1, 3, 5, 7, 9, 11, 13, 15);
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
        const __m256i tp = _mm256_add_epi16(
            _mm256_add_epi16(_mm256_sign_epi16(_mm256_set1_epi16(x0), d0), _mm256_sign_epi16(_mm256_set1_epi16(x1), d1)),
            _mm256_sign_epi16(_mm256_set1_epi16(x2), d2));
        const __m256i tn = _mm256_sub_epi16(_mm256_setzero_si256(), tp);
        // [lo(T) 16 | hi(T) 16] and the same for N.
        const __m256i sp = _mm256_permute4x64_epi64(_mm256_shuffle_epi8(tp, split), 0xd8);
        const __m256i sn = _mm256_permute4x64_epi64(_mm256_shuffle_epi8(tn, split), 0xd8);
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(e), _mm256_permute2x128_si256(sp, sn, 0x20));
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(e + 32), _mm256_permute2x128_si256(sp, sn, 0x31));
      }
    }
  }
}

constexpr int kMaxTokens = 2;         // tokens per pass over a record (int16 accumulators in registers)
constexpr int kPrefetchBytes = 8192;  // software prefetch distance (into L2) in the weight stream

// Lane order: int16 lane j of accumulator v (16v + j) holds the row of nibble byte
// 32*(v/2) + 16*(j/8) + 8*(v%2) + j%8 (unpacklo/hi of the two 32-byte halves of a pair).
struct LaneRows {
  uint8_t row[kLutRows];
  constexpr LaneRows() : row() {
    for (int v = 0; v < 4; ++v)
      for (int j = 0; j < 16; ++j) {
        const int p = 32 * (v / 2) + 16 * (j / 8) + 8 * (v % 2) + j % 8;
        row[16 * v + j] = static_cast<uint8_t>((p >> 1) + 32 * (p & 1));
      }
  }
};
constexpr LaneRows kLaneRow;

// Sign-bit patterns for the two accumulator parities h = v % 2: lane j tests bit
// 8*(j/8) + 4*h + (j/2)%4 of its 16-bit half (see sign_masks).
struct SignPatterns {
  int16_t bit[2][16];
  constexpr SignPatterns() : bit() {
    for (int h = 0; h < 2; ++h)
      for (int j = 0; j < 16; ++j) bit[h][j] = static_cast<int16_t>(1u << (8 * (j / 8) + 4 * h + (j / 2) % 4));
  }
};
alignas(32) constexpr SignPatterns kSignPat;

template <int NB>
inline void flush(__m256i (&acc)[NB][4], int32_t (*dot)[kLutRows]) {
  for (int i = 0; i < NB; ++i) {
    for (int v = 0; v < 4; ++v) {
      int32_t* d = dot[i] + 16 * v;
      const __m256i lo = _mm256_cvtepi16_epi32(_mm256_castsi256_si128(acc[i][v]));
      const __m256i hi = _mm256_cvtepi16_epi32(_mm256_extracti128_si256(acc[i][v], 1));
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(d),
                          _mm256_add_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(d)), lo));
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(d + 8),
                          _mm256_add_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(d + 8)), hi));
      acc[i][v] = _mm256_setzero_si256();
    }
  }
}

// Sign masks of the 4 accumulators for one group: lane 2i / 2i+1 of accumulator v holds rows r and
// 32 + r with r = 16*(v/2) + 8*(i/4) + 4*(v%2) + i%4, so a 32-bit word carrying sign bits
// [16*(v/2), +16) and [32 + 16*(v/2), +16) in its halves, tested against one bit per lane, gives them.
inline void sign_masks(uint64_t sign, const __m256i (&pat)[2], __m256i (&m)[4]) {
  const uint32_t d01 = static_cast<uint32_t>((sign & 0xffff) | ((sign >> 16) & 0xffff0000u));
  const uint32_t d23 = static_cast<uint32_t>(((sign >> 16) & 0xffff) | ((sign >> 32) & 0xffff0000u));
  const __m256i x01 = _mm256_set1_epi32(static_cast<int32_t>(d01)), x23 = _mm256_set1_epi32(static_cast<int32_t>(d23));
  m[0] = _mm256_cmpeq_epi16(_mm256_and_si256(x01, pat[0]), pat[0]);
  m[1] = _mm256_cmpeq_epi16(_mm256_and_si256(x01, pat[1]), pat[1]);
  m[2] = _mm256_cmpeq_epi16(_mm256_and_si256(x23, pat[0]), pat[0]);
  m[3] = _mm256_cmpeq_epi16(_mm256_and_si256(x23, pat[1]), pat[1]);
}

// One group: idx0/idx1 = magnitudes of nibble bytes 0..31 / 32..63, sign = bit r for row r.
template <int NB>
inline void step(__m256i idx0, __m256i idx1, uint64_t sign, const uint8_t* const* tab, int g,
                 const __m256i (&pat)[2], __m256i (&acc)[NB][4]) {
  __m256i m[4];
  sign_masks(sign, pat, m);
  for (int i = 0; i < NB; ++i) {
    const uint8_t* e = tab[i] + g * kLutTableBytes;  // [64]
    const __m256i tlo = _mm256_broadcastsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(e)));
    const __m256i thi = _mm256_broadcastsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(e + 32)));
    const __m256i l0 = _mm256_shuffle_epi8(tlo, idx0), h0 = _mm256_shuffle_epi8(thi, idx0);
    const __m256i l1 = _mm256_shuffle_epi8(tlo, idx1), h1 = _mm256_shuffle_epi8(thi, idx1);
    const __m256i w[4] = {_mm256_unpacklo_epi8(l0, h0), _mm256_unpackhi_epi8(l0, h0),
                          _mm256_unpacklo_epi8(l1, h1), _mm256_unpackhi_epi8(l1, h1)};
    for (int v = 0; v < 4; ++v)
      acc[i][v] = _mm256_add_epi16(acc[i][v], _mm256_sub_epi16(_mm256_xor_si256(w[v], m[v]), m[v]));
  }
}

template <int NB>
void record_dots(const uint8_t* rec,         // [lut_record_bytes(ng)]
                 int ng,
                 const uint8_t* const* tab,  // [NB] -> [ng, 64]
                 int32_t (*dot)[kLutRows]) {  // [NB][64] in row order
  const __m256i m0f = _mm256_set1_epi8(0x0f);
  const __m256i pat[2] = {_mm256_load_si256(reinterpret_cast<const __m256i*>(kSignPat.bit[0])),
                          _mm256_load_si256(reinterpret_cast<const __m256i*>(kSignPat.bit[1]))};
  alignas(32) int32_t lane[NB][kLutRows];
  __m256i acc[NB][4];
  for (int i = 0; i < NB; ++i) {
    std::memset(lane[i], 0, sizeof(lane[i]));
    for (int v = 0; v < 4; ++v) acc[i][v] = _mm256_setzero_si256();
  }
  for (int g0 = 0; g0 < ng; g0 += kLutUnitGroups) {
    const uint8_t* unit = rec + (g0 / kLutUnitGroups) * kLutUnitBytes;  // [320]
    for (int l = 0; l < kLutUnitBytes; l += 64) _mm_prefetch(reinterpret_cast<const char*>(unit + kPrefetchBytes + l), _MM_HINT_T1);
    const int gu = ng - g0 < kLutUnitGroups ? ng - g0 : kLutUnitGroups;
    for (int p = 0; p < gu; p += 2) {
      const __m256i v0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(unit + 64 + 32 * p));
      const __m256i v1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(unit + 64 + 32 * p + 32));
      uint64_t s0, s1;
      std::memcpy(&s0, unit + 8 * p, 8);
      std::memcpy(&s1, unit + 8 * p + 8, 8);
      step<NB>(_mm256_and_si256(v0, m0f), _mm256_and_si256(v1, m0f), s0, tab, g0 + p, pat, acc);
      step<NB>(_mm256_and_si256(_mm256_srli_epi16(v0, 4), m0f), _mm256_and_si256(_mm256_srli_epi16(v1, 4), m0f), s1,
               tab, g0 + p + 1, pat, acc);
    }
    if (g0 + gu == kLutFlushGroups) flush<NB>(acc, lane);
  }
  flush<NB>(acc, lane);
  for (int i = 0; i < NB; ++i)
    for (int l = 0; l < kLutRows; ++l) dot[i][kLaneRow.row[l]] = lane[i][l];
}

// Folds block j's dots of tile t, token b into y (partials kept in y between blocks: int32 bits for
// tensor/row scales, the float sum for block scales) and applies the epilogue after the last block.
void combine(const TernaryLutMat& w, const QActs& a, int64_t j, int64_t t, int64_t b,
             const int32_t* dot,  // [64]
             float* y,            // [B, ldy]
             int64_t ldy) {
  const int64_t nb = lut_blocks(w.K), nsb = w.K / kScaleBlockK;
  const bool last = j == nb - 1;
  float* yr = y + b * ldy + t * kLutRows;  // [64]
  const int64_t rows = w.M - t * kLutRows < kLutRows ? w.M - t * kLutRows : kLutRows;
  const float s = a.scale[b];
  if (rows < kLutRows) {  // the partial last tile: row by row
    for (int64_t r = 0; r < rows; ++r) {
      const int64_t m = t * kLutRows + r;
      if (w.scale_mode == kScaleBlock) {
        const float prev = j == 0 ? 0.0f : yr[r];
        float acc = prev + static_cast<float>(dot[r]) * w.scales[((m / kT2Rows) * nsb + j) * kT2Rows + m % kT2Rows];
        yr[r] = last ? acc / s : acc;
      } else {
        int32_t d = dot[r];
        if (j > 0) {
          int32_t prev;
          std::memcpy(&prev, yr + r, 4);
          d += prev;
        }
        if (last) {
          const float ws = w.scale_mode == kScaleRow ? w.scales[m] : w.scales[0];
          yr[r] = (static_cast<float>(d) * ws) / s;
        } else {
          std::memcpy(yr + r, &d, 4);
        }
      }
    }
    return;
  }
  const __m256 sv = _mm256_set1_ps(s);
  for (int r = 0; r < kLutRows; r += 8) {
    __m256i d = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(dot + r));
    if (w.scale_mode == kScaleBlock) {
      const int64_t m = t * kLutRows + r;
      const float* sc = w.scales + ((m / kT2Rows) * nsb + j) * kT2Rows + m % kT2Rows;  // [8]
      const __m256 prev = j == 0 ? _mm256_setzero_ps() : _mm256_loadu_ps(yr + r);
      __m256 acc = _mm256_add_ps(prev, _mm256_mul_ps(_mm256_cvtepi32_ps(d), _mm256_loadu_ps(sc)));
      if (last) acc = _mm256_div_ps(acc, sv);
      _mm256_storeu_ps(yr + r, acc);
    } else {
      if (j > 0) d = _mm256_add_epi32(d, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(yr + r)));
      if (last) {
        const __m256 ws = w.scale_mode == kScaleRow ? _mm256_loadu_ps(w.scales + t * kLutRows + r) : _mm256_set1_ps(w.scales[0]);
        _mm256_storeu_ps(yr + r, _mm256_div_ps(_mm256_mul_ps(_mm256_cvtepi32_ps(d), ws), sv));
      } else {
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(yr + r), d);
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
  alignas(32) int32_t dot[NB][kLutRows];
  record_dots<NB>(w.data + lut_record_offset(w.M, w.K, j, t), lut_block_groups(w.K, j), tab, dot);
  for (int i = 0; i < NB; ++i) combine(w, a, j, t, b0 + i, dot[i], y, ldy);
}

void lut_gemm_avx2(const TernaryLutMat& w, const QActs& a,
                   const uint8_t* tables,  // [B, lut_table_bytes(K)]
                   float* y,  // [B, ldy]
                   int64_t ldy,
                   int64_t tile0, int64_t tile1) {
  const int64_t nb = lut_blocks(w.K);
  for (int64_t j = 0; j < nb; ++j) {
    for (int64_t t = tile0; t < tile1; ++t) {
      for (int64_t b0 = 0; b0 < a.B; b0 += kMaxTokens) {
        if (a.B - b0 >= 2) {
          tokens_pass<2>(w, a, tables, j, t, b0, y, ldy);
        } else {
          tokens_pass<1>(w, a, tables, j, t, b0, y, ldy);
        }
      }
    }
  }
}

}  // namespace

void fill_ternary_lut_avx2(KernelTable& t, const CpuFeatures&) {
  t.ternary_lut_build = lut_build_avx2;
  t.ternary_lut_gemm = lut_gemm_avx2;
  t.v_ternary_lut = "avx2";
}

}  // namespace bitllm
