// AVX2 BiLLM GEMM on BR16, bit-exact to billm_scalar.cpp (layout and contract in billm.h).
//
// Lanes = rows as on AVX-512, in two ymm per quantity (rows 0-7, 8-15). AVX2 has no byte masks, so each
// 32 bits of a plane word (8 rows) are expanded to 32 bytes 0 / 1 (the word broadcast once, vpshufb
// byte i <- word byte i/8, AND with the bit of i, min with 1): the u8 operand of vpmaddubsw against
// the group's 4 activations broadcast to every lane (T: σ, GB: G, PB: σ & G), which adds pairs into
// int16 (|pair| <= 256, so 32 groups fit in int16 before one vpmaddwd per block widens them to the
// row's int32 lane). Salient columns: the compact s1 / res words against the compacted codes qs.
#include <immintrin.h>

#include <algorithm>
#include <cstring>

#include "kernels.h"

namespace bitllm {

namespace {

constexpr int kTokens = 4;

// Software prefetch kPrefetch bytes ahead in the tile's stream (tiles are a few KB to a few tens of KB,
// too short for the hardware prefetcher to ramp up): 16 lines spread over each block record.
constexpr int kPrefetch = 2048;

// One 64-bit plane word broadcast to every qword; spread(h) puts word byte 4h + i/8 in byte i, so that
// (spread & bitsel) min 1 is the 0/1 byte of bit 32h + i: rows 8h .. 8h+7 of the tile.
inline __m256i bcast8(const uint8_t* p) {  // p: [8]
  int64_t v;
  std::memcpy(&v, p, 8);
  return _mm256_set1_epi64x(v);
}
inline __m256i bits01(__m256i word, __m256i spread, __m256i bitsel, __m256i ones) {
  return _mm256_min_epu8(_mm256_and_si256(_mm256_shuffle_epi8(word, spread), bitsel), ones);
}

inline __m256i bcast4(const int8_t* p) {  // p: [4]
  int32_t v;
  std::memcpy(&v, p, 4);
  return _mm256_set1_epi32(v);
}

// acc + (0/1 bytes e) · (codes x), adjacent pairs summed into int16.
inline __m256i add_dot(__m256i acc, __m256i e, __m256i x) { return _mm256_add_epi16(acc, _mm256_maddubs_epi16(e, x)); }

// The 8 products of one block for 8 rows (h = 0: rows 0-7, 1: rows 8-15), folded as in the contract.
inline __m256 epilogue(const uint8_t* sc,  // [8][16] fp16
                       int h, __m256i ps, __m256i pr, __m256i gb, __m256i pb, __m256i t, int32_t ssum, int32_t bsum) {
  const __m256i ss = _mm256_set1_epi32(ssum), qq = _mm256_set1_epi32(bsum);
  const __m256i pa = _mm256_sub_epi32(t, pb);
  const __m256i na = _mm256_sub_epi32(_mm256_sub_epi32(qq, ss), gb);
  auto f = [sc, h](int l) { return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(sc + 32 * l + 16 * h))); };
  auto dbl = [](__m256i v) { return _mm256_add_epi32(v, v); };
  const __m256 fss = _mm256_cvtepi32_ps(ss);
  __m256 p0 = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_sub_epi32(dbl(ps), ss)), f(0));
  __m256 p1 = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_sub_epi32(dbl(pr), ss)), f(1));
  __m256 p2 = _mm256_mul_ps(fss, f(2));
  __m256 p3 = _mm256_mul_ps(fss, f(3));
  const __m256 p4 = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_sub_epi32(dbl(pa), na)), f(4));
  const __m256 p5 = _mm256_mul_ps(_mm256_cvtepi32_ps(na), f(5));
  const __m256 p6 = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_sub_epi32(dbl(pb), gb)), f(6));
  const __m256 p7 = _mm256_mul_ps(_mm256_cvtepi32_ps(gb), f(7));
  p0 = _mm256_add_ps(p0, p4);
  p1 = _mm256_add_ps(p1, p5);
  p2 = _mm256_add_ps(p2, p6);
  p3 = _mm256_add_ps(p3, p7);
  p0 = _mm256_add_ps(p0, p2);
  p1 = _mm256_add_ps(p1, p3);
  return _mm256_add_ps(p0, p1);
}

void billm_gemm_avx2(const BillmMat& w, const BillmActs& a, float* y, int64_t ldy, int64_t tile0, int64_t tile1) {
  const int64_t nb = w.K / kBillmBlock, tile_bytes = w.boff[nb];
  const __m256i ones16 = _mm256_set1_epi16(1), ones8 = _mm256_set1_epi8(1);
  const __m256i bitsel = _mm256_set1_epi64x(static_cast<int64_t>(0x8040201008040201ull));
  const __m256i spread[2] = {
      _mm256_setr_epi64x(0x0000000000000000, 0x0101010101010101, 0x0202020202020202, 0x0303030303030303),
      _mm256_setr_epi64x(0x0404040404040404, 0x0505050505050505, 0x0606060606060606, 0x0707070707070707)};
  for (int64_t t = tile0; t < tile1; ++t) {
    const uint8_t* tile = w.data + t * tile_bytes;  // [tile_bytes]
    const int64_t rows = std::min<int64_t>(kBillmRows, w.M - t * kBillmRows);
    for (int64_t b0 = 0; b0 < a.B; b0 += kTokens) {
      const int nt = static_cast<int>(std::min<int64_t>(kTokens, a.B - b0));
      __m256 acc[kTokens][2];
      for (int i = 0; i < kTokens; ++i) acc[i][0] = acc[i][1] = _mm256_setzero_ps();
      for (int64_t j = 0; j < nb; ++j) {
        const uint8_t* rec = tile + w.boff[j];  // [768 + 16 ng]
        const int ng = w.ngroups[j];
        const int64_t step = (billm_block_bytes(ng) + 15) / 16;
        for (int l = 0; l < 16; ++l) _mm_prefetch(reinterpret_cast<const char*>(rec + kPrefetch + l * step), _MM_HINT_T0);
        for (int i = 0; i < nt; ++i) {
          const int64_t b = b0 + i;
          const int8_t* q = a.q + b * a.ldq + j * kBillmBlock;       // [128]
          const int8_t* qs = a.qs + (b * nb + j) * kBillmBlock;      // [128]
          __m256i t16[2], gb16[2], pb16[2], ps16[2], pr16[2];
          for (int h = 0; h < 2; ++h) t16[h] = gb16[h] = pb16[h] = ps16[h] = pr16[h] = _mm256_setzero_si256();
          for (int g = 0; g < kBillmGroups; ++g) {
            const __m256i sw = bcast8(rec + 8 * g), gw = bcast8(rec + 256 + 8 * g), xq = bcast4(q + 4 * g);
            for (int h = 0; h < 2; ++h) {
              const __m256i es = bits01(sw, spread[h], bitsel, ones8), eg = bits01(gw, spread[h], bitsel, ones8);
              t16[h] = add_dot(t16[h], es, xq);
              gb16[h] = add_dot(gb16[h], eg, xq);
              pb16[h] = add_dot(pb16[h], _mm256_and_si256(es, eg), xq);
            }
          }
          for (int g = 0; g < ng; ++g) {
            const __m256i s1 = bcast8(rec + 512 + 8 * g), s2 = bcast8(rec + 512 + 8 * (ng + g)), x = bcast4(qs + 4 * g);
            for (int h = 0; h < 2; ++h) {
              ps16[h] = add_dot(ps16[h], bits01(s1, spread[h], bitsel, ones8), x);
              pr16[h] = add_dot(pr16[h], bits01(s2, spread[h], bitsel, ones8), x);
            }
          }
          for (int h = 0; h < 2; ++h) {
            const __m256 v = epilogue(rec + 512 + 16 * ng, h, _mm256_madd_epi16(ps16[h], ones16), _mm256_madd_epi16(pr16[h], ones16),
                                      _mm256_madd_epi16(gb16[h], ones16), _mm256_madd_epi16(pb16[h], ones16),
                                      _mm256_madd_epi16(t16[h], ones16), a.ssum[b * nb + j], a.bsum[b * nb + j]);
            acc[i][h] = _mm256_add_ps(acc[i][h], v);
          }
        }
      }
      for (int i = 0; i < nt; ++i) {
        alignas(32) float out[kBillmRows];
        const __m256 s = _mm256_set1_ps(a.scale[b0 + i]);
        _mm256_store_ps(out, _mm256_div_ps(acc[i][0], s));
        _mm256_store_ps(out + 8, _mm256_div_ps(acc[i][1], s));
        std::memcpy(y + (b0 + i) * ldy + t * kBillmRows, out, static_cast<size_t>(rows) * sizeof(float));
      }
    }
  }
}

}  // namespace

void fill_billm_avx2(KernelTable& t, const CpuFeatures&) {
  t.billm_gemm = billm_gemm_avx2;
  t.v_billm = "avx2";
}

}  // namespace bitllm
