// AVX-512 q4 kernels (F/BW/VL + VNNI + F16C), bit-exact to dense_q4_scalar.cpp.
//   GEMM: a record's 4 chunks unpack into its 8 groups (low nibbles: AND 0x0f; high: 16-bit shift
//         by 4, AND 0x0f), each 16 rows x 4 unsigned codes u in [0, 15]: the unsigned operand of
//         vpdpbusd against 4 activation bytes broadcast to the 16 row lanes. Σ u q - 8 Σ q = Σ (u-8) q,
//         with 8 Σ q from bsum32 (the accumulator starts at -8 bsum32); every term is exact in int32
//         (|Σ u q| <= 32 * 15 * 128). Two accumulators per token (low / high groups) halve the
//         vpdpbusd latency chain. Then the float epilogue of dense_q4.h op by op. The unpacked groups
//         serve every token of a register block (up to kQ4Tokens), and tokens go in super-blocks
//         whose activations stay in L2 while a thread's tiles stream once per super-block.
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

inline int32_t load_i32(const int8_t* p) {
  int32_t v;
  std::memcpy(&v, p, 4);
  return v;
}

// Y for NB tokens (activation rows q[i], block sums bs[i], outputs yp[i] = the tile's first row) of
// one Q4R16 tile.
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
             const float* scale,        // [NB]
             float* const* yp, int rows, bool prefetch) {
  const __m512i m4 = _mm512_set1_epi8(0x0f);
  __m512 facc[NB];
  for (int i = 0; i < NB; ++i) facc[i] = _mm512_setzero_ps();
  for (int64_t j = 0; j < nb; ++j) {
    const uint8_t* rec = tile + j * kQ4BlockBytes;
    if (prefetch)
      for (int l = 0; l < kQ4BlockBytes; l += 64)
        _mm_prefetch(reinterpret_cast<const char*>(rec + kQ4PrefetchBytes + l), _MM_HINT_T1);
    __m512i lo[4], hi[4];
    for (int c = 0; c < 4; ++c) {
      const __m512i v = _mm512_loadu_si512(rec + c * kQ4ChunkBytes);
      lo[c] = _mm512_and_si512(v, m4);
      hi[c] = _mm512_and_si512(_mm512_srli_epi16(v, 4), m4);
    }
    const __m512 d = _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(rec + kQ4BlockQsBytes)));
    for (int i = 0; i < NB; ++i) {
      const int8_t* qj = q[i] + j * kQ4Block;
      __m512i a0 = _mm512_set1_epi32(-8 * bs[i][j]), a1 = _mm512_setzero_si512();
      for (int c = 0; c < 4; ++c) {
        a0 = _mm512_dpbusd_epi32(a0, lo[c], _mm512_set1_epi32(load_i32(qj + 4 * c)));
        a1 = _mm512_dpbusd_epi32(a1, hi[c], _mm512_set1_epi32(load_i32(qj + 16 + 4 * c)));
      }
      facc[i] = _mm512_add_ps(facc[i], _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_add_epi32(a0, a1)), d));
    }
  }
  const __mmask16 mk = static_cast<__mmask16>((1u << rows) - 1);
  for (int i = 0; i < NB; ++i) _mm512_mask_storeu_ps(yp[i], mk, _mm512_div_ps(facc[i], _mm512_set1_ps(scale[i])));
}

template <int NB>
void q4_tile_n(int nt, const uint8_t* tile, int64_t nb, const int8_t* const* q, const int32_t* const* bs,
               const float* scale, float* const* yp, int rows, bool prefetch) {
  if constexpr (NB > 1) {
    if (nt < NB) return q4_tile_n<NB - 1>(nt, tile, nb, q, bs, scale, yp, rows, prefetch);
  }
  q4_tile<NB>(tile, nb, q, bs, scale, yp, rows, prefetch);
}

constexpr int kQ4Tokens = 6;
constexpr int64_t kQ4ActBytes = 512 * 1024;  // activation bytes per token super-block (L2)

void q4_gemm_avx512(const Q4Mat& w, const QActs& a, const int32_t* bsum32, float* y, int64_t ldy, int64_t tile0,
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
        q4_tile_n<kQ4Tokens>(nt, w.data + t * tb, nb, q, bs, a.scale + b0, yp, rows, b0 == s0);
      }
    }
  }
}

void q4_get_rows_avx512(const Q4Mat& w, const int32_t* rows, int64_t n, float* out, int64_t ldo) {
  const int64_t nb = w.K / kQ4Block, tb = q4_tile_bytes(w.K);
  const __m128i m4 = _mm_set1_epi8(0x0f), k8 = _mm_set1_epi8(8);
  for (int64_t i = 0; i < n; ++i) {
    const int64_t m = rows[i], r = m % kQ4Rows;
    const uint8_t* tile = w.data + (m / kQ4Rows) * tb;
    float* o = out + i * ldo;  // [K]
    for (int64_t j = 0; j < nb; ++j) {
      // Row r's 16 bytes of block j (dword r of each chunk): low nibbles k 0..15, high k 16..31.
      const int8_t* rec = reinterpret_cast<const int8_t*>(tile + j * kQ4BlockBytes + 4 * r);
      const __m128i b = _mm_setr_epi32(load_i32(rec), load_i32(rec + 64), load_i32(rec + 128), load_i32(rec + 192));
      const __m128i lo = _mm_sub_epi8(_mm_and_si128(b, m4), k8);
      const __m128i hi = _mm_sub_epi8(_mm_and_si128(_mm_srli_epi16(b, 4), m4), k8);
      uint16_t hbits;
      std::memcpy(&hbits, tile + j * kQ4BlockBytes + kQ4BlockQsBytes + 2 * r, 2);
      const __m512 d = _mm512_set1_ps(half_to_f32(hbits));
      _mm512_storeu_ps(o + j * kQ4Block, _mm512_mul_ps(d, _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(lo))));
      _mm512_storeu_ps(o + j * kQ4Block + 16, _mm512_mul_ps(d, _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(hi))));
    }
  }
}

}  // namespace

void fill_dense_q4_avx512(KernelTable& t, const CpuFeatures&) {
  t.q4_gemm = q4_gemm_avx512;
  t.q4_get_rows = q4_get_rows_avx512;
  t.v_q4 = "avx512";
}

}  // namespace bitllm
