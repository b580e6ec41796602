// AVX2 BiLLM GEMM, bit-exact to billm_scalar.cpp (contract in billm.h).
//
// AVX2 has no byte masks, so each 32 bits of a row's sign / group plane (and of the salient mask)
// are expanded to 32 bytes of 0x00 / 0xFF (broadcast, vpshufb byte i <- mask byte i/8, AND with the
// bit of i, compare). A masked sum is then AND + vpmaddubsw(ones, q) into int16 pairs, four 32-byte
// vectors per block (|pair sum| <= 4 * 256), widened once per block with vpmaddwd. The residual bits
// mask the compacted salient codes qs, 32 at a time for ceil(nS/32) vectors. The epilogue is the
// contract's order in one ymm (8 products, fold 8 -> 4 -> 2 -> 1, acc + t).
#include <immintrin.h>

#include <cstring>

#include "kernels.h"

namespace bitllm {

namespace {

// 32 mask bits (LSB first, bytes p[0..3]) -> 32 bytes 0xFF where the bit is 1.
inline __m256i expand32(const uint8_t* p) {  // p: [4]
  int32_t v;
  std::memcpy(&v, p, 4);
  const __m256i spread = _mm256_shuffle_epi8(
      _mm256_set1_epi32(v), _mm256_setr_epi64x(0x0000000000000000, 0x0101010101010101, 0x0202020202020202,
                                               0x0303030303030303));
  const __m256i bitsel = _mm256_set1_epi64x(static_cast<int64_t>(0x8040201008040201ull));
  return _mm256_cmpeq_epi8(_mm256_and_si256(spread, bitsel), bitsel);
}

inline int32_t hsum8(__m256i v) {
  __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
  s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0x4E));
  s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0xB1));
  return _mm_cvtsi128_si32(s);
}

// Σ of the 8 lanes of each of a, b, c, d -> [Σa, Σb, Σc, Σd].
inline __m128i reduce4(__m256i a, __m256i b, __m256i c, __m256i d) {
  const __m256i ab = _mm256_hadd_epi32(a, b);    // a01 a23 b01 b23 | a45 a67 b45 b67
  const __m256i cd = _mm256_hadd_epi32(c, d);
  const __m256i abcd = _mm256_hadd_epi32(ab, cd);  // a b c d (low half) | a b c d (high half)
  return _mm_add_epi32(_mm256_castsi256_si128(abcd), _mm256_extracti128_si256(abcd, 1));
}

void billm_gemm_avx2(const BillmMat& w, const BillmActs& a, float* y, int64_t ldy, int64_t row0, int64_t row1) {
  const int64_t nb = w.K / kBillmBlock, row_bytes = w.K / 8;
  const __m256i ones8 = _mm256_set1_epi8(1), ones16 = _mm256_set1_epi16(1);
  for (int64_t m = row0; m < row1; ++m) {
    const uint8_t* sg = w.signs + m * row_bytes;              // [K/8]
    const uint8_t* gr = w.groups + m * row_bytes;             // [K/8]
    const uint8_t* rs = w.residual + m * w.rstride;           // [rstride]
    const uint16_t* sc = w.scalars + m * nb * kBillmScalars;  // [nb, 8]
    for (int64_t b = 0; b < a.B; ++b) {
      const int8_t* q = a.q + b * a.ldq;               // [K]
      const int8_t* qs = a.qs + b * nb * kBillmBlock;  // [nb, 128]
      const int32_t* ssum = a.ssum + b * nb;           // [nb]
      const int32_t* bsum = a.bsum + b * nb;           // [nb]
      __m128 acc = _mm_setzero_ps();
      for (int64_t j = 0; j < nb; ++j) {
        __m256i ps = _mm256_setzero_si256(), gb = ps, pb = ps, t = ps;
        for (int v = 0; v < 4; ++v) {
          const int64_t o = 16 * j + 4 * v;
          const __m256i qv = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(q + 8 * o));
          const __m256i es = expand32(sg + o), eg = expand32(gr + o), ev = expand32(w.salient + o);
          const __m256i qsig = _mm256_and_si256(es, qv);
          ps = _mm256_add_epi16(ps, _mm256_maddubs_epi16(ones8, _mm256_and_si256(ev, qsig)));
          gb = _mm256_add_epi16(gb, _mm256_maddubs_epi16(ones8, _mm256_and_si256(eg, qv)));
          pb = _mm256_add_epi16(pb, _mm256_maddubs_epi16(ones8, _mm256_and_si256(eg, qsig)));
          t = _mm256_add_epi16(t, _mm256_maddubs_epi16(ones8, qsig));
        }
        const __m128i sums = reduce4(_mm256_madd_epi16(ps, ones16), _mm256_madd_epi16(gb, ones16),
                                     _mm256_madd_epi16(pb, ones16), _mm256_madd_epi16(t, ones16));
        // Residual: bytes [roff[j], roff[j+1]) of the row, 4 at a time (bits past nS meet qs = 0).
        const int nres = w.roff[j + 1] - w.roff[j];
        int32_t pr = 0;
        if (nres > 0) {
          uint8_t rbits[16] = {};
          std::memcpy(rbits, rs + w.roff[j], static_cast<size_t>(nres));
          __m256i r = _mm256_setzero_si256();
          for (int v = 0; 4 * v < nres; ++v) {
            const __m256i qv = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(qs + j * kBillmBlock + 32 * v));
            r = _mm256_add_epi16(r, _mm256_maddubs_epi16(ones8, _mm256_and_si256(expand32(rbits + 4 * v), qv)));
          }
          pr = hsum8(_mm256_madd_epi16(r, ones16));
        }
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

void fill_billm_avx2(KernelTable& t, const CpuFeatures&) {
  t.billm_gemm = billm_gemm_avx2;
  t.v_billm = "avx2";
}

}  // namespace bitllm
