// AVX-512 (F/BW/VL/VNNI) BiLLM GEMM, bit-exact to billm_scalar.cpp (contract in billm.h).
//
// A row's 128 sign / group bits of a block are two 64-bit k-masks over the block's two 64-byte
// activation vectors, like B1R16 (binary_avx512.cpp). Each masked sum is vmovdqu8 {k}{z} of a vector
// of ones + vpdpbusd (u8 0/1 x s8 q) into 16 int32 lanes: PS (σ & S), GB (G), PB (σ & G), T (σ) take
// two each per block; PR masks the compacted salient codes qs with the residual bits (one 64-byte
// vector while nS <= 64; the residual bytes are read with a fault-suppressing masked load). The four
// lane vectors are reduced together by an unpack/add transpose, PR by itself, and the epilogue runs
// in one ymm in exactly the contract's order: 8 products, fold 8 -> 4 -> 2 -> 1, acc + t.

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

#include <cstring>

#include "kernels.h"

namespace bitllm {

namespace {

inline uint64_t load_u64(const uint8_t* p) {  // p: [8]
  uint64_t v;
  std::memcpy(&v, p, 8);
  return v;
}

// Σ of the 16 lanes of each of a, b, c, d -> [Σa, Σb, Σc, Σd].
inline __m128i reduce4(__m512i a, __m512i b, __m512i c, __m512i d) {
  const __m512i ab = _mm512_add_epi32(_mm512_unpacklo_epi32(a, b), _mm512_unpackhi_epi32(a, b));  // a b a b
  const __m512i cd = _mm512_add_epi32(_mm512_unpacklo_epi32(c, d), _mm512_unpackhi_epi32(c, d));
  const __m512i abcd = _mm512_add_epi32(_mm512_unpacklo_epi64(ab, cd), _mm512_unpackhi_epi64(ab, cd));  // a b c d x4
  const __m256i h = _mm256_add_epi32(_mm512_castsi512_si256(abcd), _mm512_extracti64x4_epi64(abcd, 1));
  return _mm_add_epi32(_mm256_castsi256_si128(h), _mm256_extracti128_si256(h, 1));
}

void billm_gemm_avx512(const BillmMat& w, const BillmActs& a, float* y, int64_t ldy, int64_t row0, int64_t row1) {
  const int64_t nb = w.K / kBillmBlock, row_bytes = w.K / 8;
  const __m512i ones = _mm512_set1_epi8(1);
  for (int64_t m = row0; m < row1; ++m) {
    const uint8_t* sg = w.signs + m * row_bytes;              // [K/8]
    const uint8_t* gr = w.groups + m * row_bytes;             // [K/8]
    const uint8_t* rs = w.residual + m * w.rstride;           // [rstride]
    const uint16_t* sc = w.scalars + m * nb * kBillmScalars;  // [nb, 8]
    for (int64_t b = 0; b < a.B; ++b) {
      const int8_t* q = a.q + b * a.ldq;                  // [K]
      const int8_t* qs = a.qs + b * nb * kBillmBlock;     // [nb, 128]
      const int32_t* ssum = a.ssum + b * nb;              // [nb]
      const int32_t* bsum = a.bsum + b * nb;              // [nb]
      __m128 acc = _mm_setzero_ps();
      for (int64_t j = 0; j < nb; ++j) {
        const __m512i q0 = _mm512_loadu_si512(q + j * kBillmBlock);
        const __m512i q1 = _mm512_loadu_si512(q + j * kBillmBlock + 64);
        const uint64_t s0 = load_u64(sg + 16 * j), s1 = load_u64(sg + 16 * j + 8);
        const uint64_t g0 = load_u64(gr + 16 * j), g1 = load_u64(gr + 16 * j + 8);
        const uint64_t v0 = load_u64(w.salient + 16 * j), v1 = load_u64(w.salient + 16 * j + 8);
        const __m512i z = _mm512_setzero_si512();
        __m512i ps = _mm512_dpbusd_epi32(z, _mm512_maskz_mov_epi8(s0 & v0, ones), q0);
        ps = _mm512_dpbusd_epi32(ps, _mm512_maskz_mov_epi8(s1 & v1, ones), q1);
        __m512i gb = _mm512_dpbusd_epi32(z, _mm512_maskz_mov_epi8(g0, ones), q0);
        gb = _mm512_dpbusd_epi32(gb, _mm512_maskz_mov_epi8(g1, ones), q1);
        __m512i pb = _mm512_dpbusd_epi32(z, _mm512_maskz_mov_epi8(s0 & g0, ones), q0);
        pb = _mm512_dpbusd_epi32(pb, _mm512_maskz_mov_epi8(s1 & g1, ones), q1);
        __m512i t = _mm512_dpbusd_epi32(z, _mm512_maskz_mov_epi8(s0, ones), q0);
        t = _mm512_dpbusd_epi32(t, _mm512_maskz_mov_epi8(s1, ones), q1);
        // Residual bits: up to 16 bytes, read without touching bytes past the block's own.
        const int nres = w.roff[j + 1] - w.roff[j];
        int32_t pr = 0;
        if (nres > 0) {
          const __m128i rb = _mm_maskz_loadu_epi8(static_cast<__mmask16>((1u << nres) - 1u), rs + w.roff[j]);
          __m512i r = _mm512_dpbusd_epi32(z, _mm512_maskz_mov_epi8(static_cast<uint64_t>(_mm_cvtsi128_si64(rb)), ones),
                                          _mm512_loadu_si512(qs + j * kBillmBlock));
          if (nres > 8)
            r = _mm512_dpbusd_epi32(r, _mm512_maskz_mov_epi8(static_cast<uint64_t>(_mm_extract_epi64(rb, 1)), ones),
                                    _mm512_loadu_si512(qs + j * kBillmBlock + 64));
          pr = _mm512_reduce_add_epi32(r);
        }
        const __m128i sums = reduce4(ps, gb, pb, t);
        const int32_t vps = _mm_cvtsi128_si32(sums), vgb = _mm_extract_epi32(sums, 1);
        const int32_t vpb = _mm_extract_epi32(sums, 2), vt = _mm_extract_epi32(sums, 3);
        const int32_t ss = ssum[j], qsum = bsum[j];
        const int32_t pa = vt - vps - vpb, na = qsum - ss - vgb;
        const __m256i n = _mm256_setr_epi32(2 * vps - ss, 2 * pr - ss, ss, ss, 2 * pa - na, na, 2 * vpb - vgb, vgb);
        const __m256 f = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(sc + j * kBillmScalars)));
        const __m256 p = _mm256_mul_ps(_mm256_cvtepi32_ps(n), f);
        const __m128 p4 = _mm_add_ps(_mm256_castps256_ps128(p), _mm256_extractf128_ps(p, 1));  // p[l] + p[l+4]
        const __m128 p2 = _mm_add_ps(p4, _mm_movehl_ps(p4, p4));                               // p[l] + p[l+2]
        acc = _mm_add_ss(acc, _mm_add_ss(p2, _mm_shuffle_ps(p2, p2, 1)));                       // acc + (p0 + p1)
      }
      y[b * ldy + m] = _mm_cvtss_f32(acc) / a.scale[b];
    }
  }
}

}  // namespace

void fill_billm_avx512(KernelTable& t, const CpuFeatures&) {
  t.billm_gemm = billm_gemm_avx512;
  t.v_billm = "avx512";
}

}  // namespace bitllm
