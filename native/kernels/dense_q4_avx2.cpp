// AVX2 q4 kernels (AVX2 + FMA + F16C), bit-exact to dense_q4_scalar.cpp.
//   GEMM: a 64-byte chunk is two ymm (rows 0-7, rows 8-15); AND 0x0f / shift + AND give the unsigned
//         codes u in [0, 15] of groups c and c + 4, 8 rows x 4 codes per ymm. vpmaddubsw(u, q) needs
//         no sign trick: u is the unsigned operand, every activation byte (-128 included) the signed
//         one, and a pair sum is within [-3840, 3810], so it never saturates. The 8 groups of a block
//         add up in int16 (|Σ| <= 8 * 3840 = 30720 < 32768, exact), one vpmaddwd(., 1) per 8 rows
//         widens to the rows' int32 Σ u q, and -8 Σ q (bsum32) makes dot_j. Then the float epilogue
//         of dense_q4.h op by op.
#include <immintrin.h>

#include <algorithm>
#include <cstring>

#include "kernels.h"

namespace bitllm {

namespace {

inline int32_t load_i32(const int8_t* p) {
  int32_t v;
  std::memcpy(&v, p, 4);
  return v;
}

// Software prefetch into L2 this far ahead in the weight stream, on the first token group of a super-block
// (the later groups find the tile in cache). Measured on Zen 4 (128256 x 2560, one thread, alternating
// in one process): 8 KiB matched the plain read loop, without it the GEMV ran 10-40 % below it; 4 KiB
// was no better than none.
constexpr int64_t kQ4PrefetchBytes = 8192;

template <int NB>
void q4_tile(const uint8_t* tile,  // [q4_tile_bytes(K)]
             int64_t nb,
             const int8_t* const* q,    // NB x [K]
             const int32_t* const* bs,  // NB x [nb]
             const float* const* scale,  // NB pointers to the token scales
             float* const* yp, int rows, bool prefetch) {
  const __m256i m4 = _mm256_set1_epi8(0x0f), ones = _mm256_set1_epi16(1);
  __m256 facc[NB][2];
  for (int i = 0; i < NB; ++i) facc[i][0] = facc[i][1] = _mm256_setzero_ps();
  for (int64_t j = 0; j < nb; ++j) {
    const uint8_t* rec = tile + j * kQ4BlockBytes;
    if (prefetch)
      for (int l = 0; l < kQ4BlockBytes; l += 64)
        _mm_prefetch(reinterpret_cast<const char*>(rec + kQ4PrefetchBytes + l), _MM_HINT_T1);
    __m256i s[NB][2];
    for (int i = 0; i < NB; ++i) s[i][0] = s[i][1] = _mm256_setzero_si256();
    for (int c = 0; c < 4; ++c) {
      const __m256i v0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(rec + c * kQ4ChunkBytes));
      const __m256i v1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(rec + c * kQ4ChunkBytes + 32));
      const __m256i lo0 = _mm256_and_si256(v0, m4), lo1 = _mm256_and_si256(v1, m4);
      const __m256i hi0 = _mm256_and_si256(_mm256_srli_epi16(v0, 4), m4);
      const __m256i hi1 = _mm256_and_si256(_mm256_srli_epi16(v1, 4), m4);
      for (int i = 0; i < NB; ++i) {
        const int8_t* qj = q[i] + j * kQ4Block;
        const __m256i xl = _mm256_set1_epi32(load_i32(qj + 4 * c));
        const __m256i xh = _mm256_set1_epi32(load_i32(qj + 16 + 4 * c));
        const __m256i p0 = _mm256_add_epi16(_mm256_maddubs_epi16(lo0, xl), _mm256_maddubs_epi16(hi0, xh));
        const __m256i p1 = _mm256_add_epi16(_mm256_maddubs_epi16(lo1, xl), _mm256_maddubs_epi16(hi1, xh));
        s[i][0] = _mm256_add_epi16(s[i][0], p0);
        s[i][1] = _mm256_add_epi16(s[i][1], p1);
      }
    }
    const __m256 d0 = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(rec + kQ4BlockQsBytes)));
    const __m256 d1 = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(rec + kQ4BlockQsBytes + 16)));
    for (int i = 0; i < NB; ++i) {
      const __m256i corr = _mm256_set1_epi32(-8 * bs[i][j]);
      const __m256i dot0 = _mm256_add_epi32(_mm256_madd_epi16(s[i][0], ones), corr);
      const __m256i dot1 = _mm256_add_epi32(_mm256_madd_epi16(s[i][1], ones), corr);
      facc[i][0] = _mm256_add_ps(facc[i][0], _mm256_mul_ps(_mm256_cvtepi32_ps(dot0), d0));
      facc[i][1] = _mm256_add_ps(facc[i][1], _mm256_mul_ps(_mm256_cvtepi32_ps(dot1), d1));
    }
  }
  for (int i = 0; i < NB; ++i) {
    const __m256 sc = _mm256_set1_ps(*scale[i]);
    alignas(32) float out[kQ4Rows];
    _mm256_store_ps(out, _mm256_div_ps(facc[i][0], sc));
    _mm256_store_ps(out + 8, _mm256_div_ps(facc[i][1], sc));
    std::memcpy(yp[i], out, static_cast<size_t>(rows) * 4);
  }
}

template <int NB>
void q4_tile_n(int nt, const uint8_t* tile, int64_t nb, const int8_t* const* q, const int32_t* const* bs,
               const float* const* scale, float* const* yp, int rows, bool prefetch) {
  if constexpr (NB > 1) {
    if (nt < NB) return q4_tile_n<NB - 1>(nt, tile, nb, q, bs, scale, yp, rows, prefetch);
  }
  q4_tile<NB>(tile, nb, q, bs, scale, yp, rows, prefetch);
}

constexpr int kQ4Tokens = 2;
constexpr int64_t kQ4ActBytes = 512 * 1024;  // activation bytes per token super-block (L2)

void q4_gemm_avx2(const Q4Mat& w, const QActs& a, const int32_t* bsum32, float* y, int64_t ldy, int64_t tile0,
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
        const float* sc[kQ4Tokens];
        float* yp[kQ4Tokens];
        for (int i = 0; i < nt; ++i) {
          q[i] = a.q + (b0 + i) * a.ldq;
          bs[i] = bsum32 + (b0 + i) * nb;
          sc[i] = a.scale + b0 + i;
          yp[i] = y + (b0 + i) * ldy + m0;
        }
        q4_tile_n<kQ4Tokens>(nt, w.data + t * tb, nb, q, bs, sc, yp, rows, b0 == s0);
      }
    }
  }
}

void q4_get_rows_avx2(const Q4Mat& w, const int32_t* rows, int64_t n, float* out, int64_t ldo) {
  const int64_t nb = w.K / kQ4Block, tb = q4_tile_bytes(w.K);
  const __m128i m4 = _mm_set1_epi8(0x0f), k8 = _mm_set1_epi8(8);
  for (int64_t i = 0; i < n; ++i) {
    const int64_t m = rows[i], r = m % kQ4Rows;
    const uint8_t* tile = w.data + (m / kQ4Rows) * tb;
    float* o = out + i * ldo;  // [K]
    for (int64_t j = 0; j < nb; ++j) {
      const int8_t* rec = reinterpret_cast<const int8_t*>(tile + j * kQ4BlockBytes + 4 * r);
      const __m128i b = _mm_setr_epi32(load_i32(rec), load_i32(rec + 64), load_i32(rec + 128), load_i32(rec + 192));
      const __m128i lo = _mm_sub_epi8(_mm_and_si128(b, m4), k8);                      // k 0..15
      const __m128i hi = _mm_sub_epi8(_mm_and_si128(_mm_srli_epi16(b, 4), m4), k8);  // k 16..31
      uint16_t hbits;
      std::memcpy(&hbits, tile + j * kQ4BlockBytes + kQ4BlockQsBytes + 2 * r, 2);
      const __m256 d = _mm256_set1_ps(half_to_f32(hbits));
      float* oj = o + j * kQ4Block;
      _mm256_storeu_ps(oj, _mm256_mul_ps(d, _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(lo))));
      _mm256_storeu_ps(oj + 8, _mm256_mul_ps(d, _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(lo, 8)))));
      _mm256_storeu_ps(oj + 16, _mm256_mul_ps(d, _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(hi))));
      _mm256_storeu_ps(oj + 24, _mm256_mul_ps(d, _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(hi, 8)))));
    }
  }
}

}  // namespace

void fill_dense_q4_avx2(KernelTable& t, const CpuFeatures&) {
  t.q4_gemm = q4_gemm_avx2;
  t.q4_get_rows = q4_get_rows_avx2;
  t.v_q4 = "avx2";
}

}  // namespace bitllm
