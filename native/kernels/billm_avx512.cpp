// AVX-512 (F/BW/VL/VNNI) BiLLM GEMM on BR16, bit-exact to billm_scalar.cpp (layout and contract in
// billm.h).
//
// One int32 lane per row of a 16-row tile, as the T2R16 ternary GEMM: a 64-bit word of the sign or
// group plane is a k-mask over the 64 bytes (row r, column 4g + i); vmovdqu8 {k}{z} of ones turns it
// into the u8 operand of vpdpbusd against the 4 activations of group g broadcast to every lane. Per
// group: T = σ · q, and with qG = q masked by G (vmovdqu8 {G}{z} of the broadcast), PB = σ · qG and
// GB = 1 · qG: two byte-mask moves and three vpdpbusd per 16 rows x 4 columns. The salient columns
// take the compact s1 / res words against the compacted codes qs (ceil(nS/4) groups). The sums of all
// 16 rows come out in lanes with no horizontal reduction, and the
// epilogue runs once per tile and block on 16 rows at a time (vcvtph2ps of the 16 rows' scalar l).
// Two accumulator sets (even / odd groups) halve the vpdpbusd dependency chains.

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

constexpr int kTokens = 4;  // tokens sharing one pass over a tile's weights

inline __mmask64 load_mask(const uint8_t* p) {  // p: [8]
  uint64_t v;
  std::memcpy(&v, p, 8);
  return _cvtu64_mask64(v);
}

inline __m512i bcast4(const int8_t* p) {  // p: [4]
  int32_t v;
  std::memcpy(&v, p, 4);
  return _mm512_set1_epi32(v);
}

// acc + the block's term for the 16 rows of a tile and one token (lanes = rows).
inline __m512 block_term(const uint8_t* rec,  // [768 + 16 ng] one BR16 block record
                         int ng, const int8_t* q,  // [128] the block's activations
                         const int8_t* qs,         // [128] its compacted salient codes
                         int32_t ssum, int32_t bsum, __m512 acc) {
  const __m512i ones = _mm512_set1_epi8(1);
  __m512i t0 = _mm512_setzero_si512(), t1 = t0, gb0 = t0, gb1 = t0, pb0 = t0, pb1 = t0;
  for (int g = 0; g < kBillmGroups; g += 2) {
    const __m512i q0 = bcast4(q + 4 * g), q1 = bcast4(q + 4 * g + 4);
    const __m512i e0 = _mm512_maskz_mov_epi8(load_mask(rec + 8 * g), ones);
    const __m512i e1 = _mm512_maskz_mov_epi8(load_mask(rec + 8 * g + 8), ones);
    const __m512i qg0 = _mm512_maskz_mov_epi8(load_mask(rec + 256 + 8 * g), q0);  // q at G = 1
    const __m512i qg1 = _mm512_maskz_mov_epi8(load_mask(rec + 256 + 8 * g + 8), q1);
    t0 = _mm512_dpbusd_epi32(t0, e0, q0);
    t1 = _mm512_dpbusd_epi32(t1, e1, q1);
    pb0 = _mm512_dpbusd_epi32(pb0, e0, qg0);
    pb1 = _mm512_dpbusd_epi32(pb1, e1, qg1);
    gb0 = _mm512_dpbusd_epi32(gb0, ones, qg0);
    gb1 = _mm512_dpbusd_epi32(gb1, ones, qg1);
  }
  __m512i ps = _mm512_setzero_si512(), pr = ps;
  for (int g = 0; g < ng; ++g) {
    const __m512i x = bcast4(qs + 4 * g);
    ps = _mm512_dpbusd_epi32(ps, _mm512_maskz_mov_epi8(load_mask(rec + 512 + 8 * g), ones), x);
    pr = _mm512_dpbusd_epi32(pr, _mm512_maskz_mov_epi8(load_mask(rec + 512 + 8 * (ng + g)), ones), x);
  }
  const __m512i t = _mm512_add_epi32(t0, t1), gb = _mm512_add_epi32(gb0, gb1), pb = _mm512_add_epi32(pb0, pb1);
  const __m512i ss = _mm512_set1_epi32(ssum), qq = _mm512_set1_epi32(bsum);
  const __m512i pa = _mm512_sub_epi32(t, pb);
  const __m512i na = _mm512_sub_epi32(_mm512_sub_epi32(qq, ss), gb);
  const uint8_t* sc = rec + 512 + 16 * ng;  // [8][16] fp16
  auto f = [sc](int l) { return _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(sc + 32 * l))); };
  auto dbl = [](__m512i v) { return _mm512_add_epi32(v, v); };
  const __m512 fss = _mm512_cvtepi32_ps(ss);
  __m512 p0 = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_sub_epi32(dbl(ps), ss)), f(0));
  __m512 p1 = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_sub_epi32(dbl(pr), ss)), f(1));
  __m512 p2 = _mm512_mul_ps(fss, f(2));
  __m512 p3 = _mm512_mul_ps(fss, f(3));
  const __m512 p4 = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_sub_epi32(dbl(pa), na)), f(4));
  const __m512 p5 = _mm512_mul_ps(_mm512_cvtepi32_ps(na), f(5));
  const __m512 p6 = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_sub_epi32(dbl(pb), gb)), f(6));
  const __m512 p7 = _mm512_mul_ps(_mm512_cvtepi32_ps(gb), f(7));
  p0 = _mm512_add_ps(p0, p4);
  p1 = _mm512_add_ps(p1, p5);
  p2 = _mm512_add_ps(p2, p6);
  p3 = _mm512_add_ps(p3, p7);
  p0 = _mm512_add_ps(p0, p2);
  p1 = _mm512_add_ps(p1, p3);
  return _mm512_add_ps(acc, _mm512_add_ps(p0, p1));
}

void billm_gemm_avx512(const BillmMat& w, const BillmActs& a, float* y, int64_t ldy, int64_t tile0, int64_t tile1) {
  const int64_t nb = w.K / kBillmBlock, tile_bytes = w.boff[nb];
  for (int64_t t = tile0; t < tile1; ++t) {
    const uint8_t* tile = w.data + t * tile_bytes;  // [tile_bytes]
    const int64_t rows = std::min<int64_t>(kBillmRows, w.M - t * kBillmRows);
    const __mmask16 row_mask = static_cast<__mmask16>((1u << rows) - 1u);
    for (int64_t b0 = 0; b0 < a.B; b0 += kTokens) {
      const int nt = static_cast<int>(std::min<int64_t>(kTokens, a.B - b0));
      __m512 acc[kTokens];
      for (int i = 0; i < kTokens; ++i) acc[i] = _mm512_setzero_ps();
      for (int64_t j = 0; j < nb; ++j) {
        const uint8_t* rec = tile + w.boff[j];
        for (int i = 0; i < nt; ++i) {
          const int64_t b = b0 + i;
          acc[i] = block_term(rec, w.ngroups[j], a.q + b * a.ldq + j * kBillmBlock, a.qs + (b * nb + j) * kBillmBlock, a.ssum[b * nb + j], a.bsum[b * nb + j], acc[i]);
        }
      }
      for (int i = 0; i < nt; ++i) {
        const __m512 v = _mm512_div_ps(acc[i], _mm512_set1_ps(a.scale[b0 + i]));
        _mm512_mask_storeu_ps(y + (b0 + i) * ldy + t * kBillmRows, row_mask, v);
      }
    }
  }
}

}  // namespace

void fill_billm_avx512(KernelTable& t, const CpuFeatures&) {
  t.billm_gemm = billm_gemm_avx512;
  t.v_billm = "avx512";
}

}  // namespace bitllm
