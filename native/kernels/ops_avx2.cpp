// ops AVX2 variant (AVX2 + FMA + F16C).
//   rmsnorm:   Σ x^2 in double (vcvtps2pd + FMA, exact products), y = (x s) w: bit-exact to scalar
//              unless the double sums round the scale apart.
//   rope_neox: shared angles (ops.h), rotation with separate mul/sub: bit-exact to scalar.
//   kv_store:  vcvtps2ph round to nearest even: bit-exact to scalar for finite inputs. kv_store_q8: the
//              scalar block quantization in vector float ops (vcvtps2dq rounds half even): bit-exact.
//              kv_store_q3: the same with vdivps (a division per value, as ops.h asks), codes packed
//              by per-lane shifts and a horizontal add.
//   attention: f16, q8 and q3 rows share the code through a row loader (q8: int8 -> float times the
//              block scale, exact; q3: 8 codes from one broadcast 32-bit word, vpsrlvd per lane, vpermps
//              from the block's 8 values (c - 4) d, exact);
//             K/V rows converted with vcvtph2ps in registers, register-blocked over the query heads
//              sharing the kv head: scores as tiles of GB heads x PB positions (GB PB = 8 FMA chains of
//              head_dim/8 each, reduced by a hadd tree), softmax through the vector exp of ops.h,
//              Σ p v as tiles of GB heads x DC 8-dim chunks (chains <= kAttnBlock) added into the output
//              row per block. Each accumulator belongs to one (head, position) or (head, dim), so the
//              blocking (and the caller's head split) never changes a result.
//   glu:       relu2 bit-exact to scalar; silu through the vector exp.
#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <type_traits>

#include "kernels.h"
#include "vexp_avx2.h"

namespace bitllm {

namespace {

inline float hsum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

inline float hmax(__m256 v) {
  __m128 s = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_max_ps(s, _mm_movehl_ps(s, s));
  s = _mm_max_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

// Lanes i < n set (0 <= n <= 8).
inline __m256i lane_mask(int64_t n) {
  return _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(n)), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

void rmsnorm_avx2(const float* x, const float* w, float* y, int64_t B, int64_t n, int64_t ld, float eps) {
  for (int64_t b = 0; b < B; ++b) {
    const float* xb = x + b * ld;  // [n]
    float* yb = y + b * ld;        // [n]
    __m256d a0 = _mm256_setzero_pd(), a1 = _mm256_setzero_pd(), a2 = _mm256_setzero_pd(), a3 = _mm256_setzero_pd();
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
      const __m256 v0 = _mm256_loadu_ps(xb + i), v1 = _mm256_loadu_ps(xb + i + 8);
      const __m256d d0 = _mm256_cvtps_pd(_mm256_castps256_ps128(v0)), d1 = _mm256_cvtps_pd(_mm256_extractf128_ps(v0, 1));
      const __m256d d2 = _mm256_cvtps_pd(_mm256_castps256_ps128(v1)), d3 = _mm256_cvtps_pd(_mm256_extractf128_ps(v1, 1));
      a0 = _mm256_fmadd_pd(d0, d0, a0);
      a1 = _mm256_fmadd_pd(d1, d1, a1);
      a2 = _mm256_fmadd_pd(d2, d2, a2);
      a3 = _mm256_fmadd_pd(d3, d3, a3);
    }
    for (; i + 4 <= n; i += 4) {
      const __m256d d = _mm256_cvtps_pd(_mm_loadu_ps(xb + i));
      a0 = _mm256_fmadd_pd(d, d, a0);
    }
    const __m256d a = _mm256_add_pd(_mm256_add_pd(a0, a1), _mm256_add_pd(a2, a3));
    __m128d s2 = _mm_add_pd(_mm256_castpd256_pd128(a), _mm256_extractf128_pd(a, 1));
    double sum = _mm_cvtsd_f64(_mm_add_sd(s2, _mm_unpackhi_pd(s2, s2)));
    for (; i < n; ++i) sum += static_cast<double>(xb[i]) * static_cast<double>(xb[i]);
    const float s = static_cast<float>(1.0 / std::sqrt(sum / static_cast<double>(n) + static_cast<double>(eps)));
    const __m256 sv = _mm256_set1_ps(s);
    i = 0;
    if (w) {
      for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(yb + i, _mm256_mul_ps(_mm256_mul_ps(_mm256_loadu_ps(xb + i), sv), _mm256_loadu_ps(w + i)));
      for (; i < n; ++i) yb[i] = (xb[i] * s) * w[i];
    } else {
      for (; i + 8 <= n; i += 8) _mm256_storeu_ps(yb + i, _mm256_mul_ps(_mm256_loadu_ps(xb + i), sv));
      for (; i < n; ++i) yb[i] = xb[i] * s;
    }
  }
}

void rope_neox_avx2(float* x, const int32_t* pos, int64_t B, int64_t n_heads, int64_t head_dim, int64_t ld,
                    int64_t n_rot, float theta_base) {
  const int64_t half = n_rot / 2;
  float c[kRopeChunk], s[kRopeChunk];
  for (int64_t i0 = 0; i0 < half; i0 += kRopeChunk) {
    const int64_t ni = std::min(kRopeChunk, half - i0);
    for (int64_t b = 0; b < B; ++b) {
      rope_angles(theta_base, n_rot, i0, ni, pos[b], c, s);
      for (int64_t h = 0; h < n_heads; ++h) {
        float* lo = x + b * ld + h * head_dim + i0;  // [ni]
        float* hi = lo + half;                        // [ni]
        int64_t i = 0;
        for (; i + 8 <= ni; i += 8) {
          const __m256 a = _mm256_loadu_ps(lo + i), d = _mm256_loadu_ps(hi + i);
          const __m256 cv = _mm256_loadu_ps(c + i), sv = _mm256_loadu_ps(s + i);
          _mm256_storeu_ps(lo + i, _mm256_sub_ps(_mm256_mul_ps(a, cv), _mm256_mul_ps(d, sv)));
          _mm256_storeu_ps(hi + i, _mm256_add_ps(_mm256_mul_ps(a, sv), _mm256_mul_ps(d, cv)));
        }
        for (; i < ni; ++i) {
          const float a = lo[i], d = hi[i];
          lo[i] = a * c[i] - d * s[i];
          hi[i] = a * s[i] + d * c[i];
        }
      }
    }
  }
}

// dst[0, n) = f16(src[0, n)).
inline void to_f16(const float* src, uint16_t* dst, int64_t n) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    _mm_storeu_si128(reinterpret_cast<__m128i*>(dst + i), _mm256_cvtps_ph(_mm256_loadu_ps(src + i), _MM_FROUND_TO_NEAREST_INT));
  for (; i < n; ++i) dst[i] = _cvtss_sh(src[i], _MM_FROUND_TO_NEAREST_INT);
}

void kv_store_f16_avx2(const float* x, const int32_t* pos, uint16_t* cache, int64_t B, int64_t n_kv_heads,
                       int64_t head_dim, int64_t ld, int64_t capacity) {
  for (int64_t b = 0; b < B; ++b)
    for (int64_t h = 0; h < n_kv_heads; ++h)
      to_f16(x + b * ld + h * head_dim, cache + (h * capacity + pos[b]) * head_dim, head_dim);
}

// One q8 block (ops.h) x [32] -> dst [34 bytes]: the scalar float ops, 8 lanes at a time (max is
// exact, the products and vcvtps2dq (round to nearest even) are the same single roundings).
inline void quantize_q8_block_avx2(const float* x, uint8_t* dst) {
  const __m256 sign = _mm256_set1_ps(-0.0f);
  __m256 v[4];
  for (int i = 0; i < 4; ++i) v[i] = _mm256_loadu_ps(x + 8 * i);
  const __m256 a = _mm256_max_ps(_mm256_max_ps(_mm256_andnot_ps(sign, v[0]), _mm256_andnot_ps(sign, v[1])),
                                 _mm256_max_ps(_mm256_andnot_ps(sign, v[2]), _mm256_andnot_ps(sign, v[3])));
  const float amax = hmax(a);
  const uint16_t dh = static_cast<uint16_t>(_cvtss_sh(amax / 127.0f, _MM_FROUND_TO_NEAREST_INT));
  const float df = _cvtsh_ss(dh);
  const float id = df != 0.0f ? 1.0f / df : 0.0f;
  std::memcpy(dst, &dh, 2);
  const __m256 iv = _mm256_set1_ps(id), lo = _mm256_set1_ps(-127.0f), hi = _mm256_set1_ps(127.0f);
  __m256i qi[4];
  for (int i = 0; i < 4; ++i)
    qi[i] = _mm256_cvtps_epi32(_mm256_min_ps(_mm256_max_ps(_mm256_mul_ps(v[i], iv), lo), hi));
  const __m256i p16 = _mm256_packs_epi16(_mm256_packs_epi32(qi[0], qi[1]), _mm256_packs_epi32(qi[2], qi[3]));
  const __m256i q8 = _mm256_permutevar8x32_epi32(p16, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(dst + 2), q8);
}

void kv_store_q8_avx2(const float* x, const int32_t* pos, uint8_t* cache, int64_t B, int64_t n_kv_heads,
                      int64_t head_dim, int64_t ld, int64_t capacity) {
  const int64_t rb = q8_row_bytes(head_dim);
  for (int64_t b = 0; b < B; ++b)
    for (int64_t h = 0; h < n_kv_heads; ++h) {
      const float* src = x + b * ld + h * head_dim;        // [head_dim]
      uint8_t* dst = cache + (h * capacity + pos[b]) * rb;  // [rb]
      for (int64_t k = 0; k < head_dim / kKvQ8Block; ++k) quantize_q8_block_avx2(src + k * kKvQ8Block, dst + k * kKvQ8BlockBytes);
    }
}

// One q3 block (ops.h) x [32] -> dst [14 bytes]: the scalar float ops 8 lanes at a time (vdivps is
// the correctly rounded division, vcvtps2dq rounds half even after the clamp). Each group of 8 codes
// is shifted to bits 3j of its lane and the lanes are summed (disjoint fields: the sum is the OR).
inline void quantize_q3_block_avx2(const float* x, uint8_t* dst) {
  const __m256 sign = _mm256_set1_ps(-0.0f);
  __m256 v[4];
  for (int i = 0; i < 4; ++i) v[i] = _mm256_loadu_ps(x + 8 * i);
  const __m256 a = _mm256_max_ps(_mm256_max_ps(_mm256_andnot_ps(sign, v[0]), _mm256_andnot_ps(sign, v[1])),
                                 _mm256_max_ps(_mm256_andnot_ps(sign, v[2]), _mm256_andnot_ps(sign, v[3])));
  const float amax = hmax(a);
  const uint16_t dh = static_cast<uint16_t>(_cvtss_sh(amax / 3.0f, _MM_FROUND_TO_NEAREST_INT));
  const float df = _cvtsh_ss(dh);
  std::memcpy(dst, &dh, 2);
  // d == 0: every q is 0 (the quotients 0 / 0 are NaN; max(NaN, -4) = -4 is masked off below).
  const __m256 keep = df != 0.0f ? _mm256_castsi256_ps(_mm256_set1_epi32(-1)) : _mm256_setzero_ps();
  const __m256 dv = _mm256_set1_ps(df), lo = _mm256_set1_ps(-4.0f), hi = _mm256_set1_ps(3.0f);
  const __m256i four = _mm256_set1_epi32(4), sh = _mm256_setr_epi32(0, 3, 6, 9, 12, 15, 18, 21);
  __m256i f[4];
  for (int i = 0; i < 4; ++i) {
    const __m256 qf = _mm256_and_ps(_mm256_min_ps(_mm256_max_ps(_mm256_div_ps(v[i], dv), lo), hi), keep);
    f[i] = _mm256_sllv_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(qf), four), sh);
  }
  // Per 128-bit half: [Σ f0, Σ f1, Σ f2, Σ f3] of its 4 lanes; then the two halves added.
  const __m256i u = _mm256_hadd_epi32(_mm256_hadd_epi32(f[0], f[1]), _mm256_hadd_epi32(f[2], f[3]));
  alignas(16) uint32_t w[4];
  _mm_store_si128(reinterpret_cast<__m128i*>(w),
                  _mm_add_epi32(_mm256_castsi256_si128(u), _mm256_extracti128_si256(u, 1)));
  const uint64_t lo64 = w[0] | (static_cast<uint64_t>(w[1]) << 24) | (static_cast<uint64_t>(w[2]) << 48);
  const uint32_t hi32 = (w[2] >> 16) | (w[3] << 8);
  std::memcpy(dst + 2, &lo64, 8);
  std::memcpy(dst + 10, &hi32, 4);
}

void kv_store_q3_avx2(const float* x, const int32_t* pos, uint8_t* cache, int64_t B, int64_t n_kv_heads,
                      int64_t head_dim, int64_t ld, int64_t capacity) {
  const int64_t rb = q3_row_bytes(head_dim);
  for (int64_t b = 0; b < B; ++b)
    for (int64_t h = 0; h < n_kv_heads; ++h) {
      const float* src = x + b * ld + h * head_dim;        // [head_dim]
      uint8_t* dst = cache + (h * capacity + pos[b]) * rb;  // [rb]
      for (int64_t k = 0; k < head_dim / kKvQ3Block; ++k)
        quantize_q3_block_avx2(src + k * kKvQ3Block, dst + k * kKvQ3BlockBytes);
    }
}

// Lane p = Σ lanes of a[p].
inline __m256 reduce8(const __m256* a) {
  const __m256 t0 = _mm256_hadd_ps(a[0], a[1]), t1 = _mm256_hadd_ps(a[2], a[3]);
  const __m256 t2 = _mm256_hadd_ps(a[4], a[5]), t3 = _mm256_hadd_ps(a[6], a[7]);
  const __m256 u0 = _mm256_hadd_ps(t0, t1), u1 = _mm256_hadd_ps(t2, t3);
  return _mm256_add_ps(_mm256_permute2f128_ps(u0, u1, 0x20), _mm256_permute2f128_ps(u0, u1, 0x31));
}

// 8 halves from p[0, n) (n < 8), zero past n, as floats.
inline __m256 load_h8_tail(const uint16_t* p, int64_t n) {
  alignas(16) uint16_t t[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  std::memcpy(t, p, static_cast<size_t>(n) * sizeof(uint16_t));
  return _mm256_cvtph_ps(_mm_load_si128(reinterpret_cast<const __m128i*>(t)));
}

// Row formats of the attention: load8(row, d) = floats row[d, d + 8) (d % 8 == 0, d + 8 <= head_dim);
// tail(row, d, n) = row[d, d + n) then zeros (n < 8).
struct RowsF16 {
  using T = uint16_t;
  static int64_t stride(int64_t head_dim) { return head_dim; }
  static __m256 load8(const T* row, int64_t d) {
    return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(row + d)));
  }
  static __m256 tail(const T* row, int64_t d, int64_t n) { return load_h8_tail(row + d, n); }
};
// q8 (ops.h): float(qs) * float(d), exact, the same values as the scalar dequantization.
struct RowsQ8 {
  using T = uint8_t;
  static int64_t stride(int64_t head_dim) { return q8_row_bytes(head_dim); }
  static __m256 load8(const T* row, int64_t d) {
    const uint8_t* blk = row + (d / kKvQ8Block) * kKvQ8BlockBytes;
    uint16_t dh;
    std::memcpy(&dh, blk, 2);
    const __m256 sc = _mm256_cvtph_ps(_mm_set1_epi16(static_cast<short>(dh)));
    const __m128i qs = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(blk + 2 + d % kKvQ8Block));
    return _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(qs)), sc);
  }
  // Unused while head_dim % 32 == 0 (the bindings require it); kept correct for any n < 8.
  static __m256 tail(const T* row, int64_t d, int64_t n) {
    alignas(32) float t[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    for (int64_t i = 0; i < n; ++i) {
      const uint8_t* blk = row + ((d + i) / kKvQ8Block) * kKvQ8BlockBytes;
      uint16_t dh;
      std::memcpy(&dh, blk, 2);
      t[i] = static_cast<float>(static_cast<int8_t>(blk[2 + (d + i) % kKvQ8Block])) * _cvtsh_ss(dh);
    }
    return _mm256_load_ps(t);
  }
};

// q3 (ops.h): (c - 4) * float(d), exact, the same values as the scalar dequantization. The 8 codes of
// dims [d, d + 8) (group s of the block) come from one 32-bit word broadcast and shifted per lane, and
// index a table of the 8 values of the block.
struct RowsQ3 {
  using T = uint8_t;
  static int64_t stride(int64_t head_dim) { return q3_row_bytes(head_dim); }
  static __m256 load8(const T* row, int64_t d) {
    const uint8_t* blk = row + (d / kKvQ3Block) * kKvQ3BlockBytes;
    const int64_t s = (d % kKvQ3Block) / 8, w = s < 3 ? 3 * s : 8;  // word byte min(3s, 8)
    uint16_t dh;
    uint32_t word;
    std::memcpy(&dh, blk, 2);
    std::memcpy(&word, blk + 2 + w, 4);
    // The 8 values (c - 4) * d of the block (exact), looked up by code: vpermps reads the low 3 bits of
    // each lane's index, so the shifted word needs no mask.
    const __m256 lut = _mm256_mul_ps(_mm256_cvtph_ps(_mm_set1_epi16(static_cast<short>(dh))),
                                     _mm256_setr_ps(-4.0f, -3.0f, -2.0f, -1.0f, 0.0f, 1.0f, 2.0f, 3.0f));
    const __m256i sh = _mm256_add_epi32(_mm256_setr_epi32(0, 3, 6, 9, 12, 15, 18, 21),
                                        _mm256_set1_epi32(static_cast<int>(24 * s - 8 * w)));
    return _mm256_permutevar8x32_ps(lut, _mm256_srlv_epi32(_mm256_set1_epi32(static_cast<int>(word)), sh));
  }
  // Unused while head_dim % 32 == 0 (the bindings require it); kept correct for any n < 8.
  static __m256 tail(const T* row, int64_t d, int64_t n) {
    alignas(32) float t[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    for (int64_t i = 0; i < n; ++i) {
      const uint8_t* blk = row + ((d + i) / kKvQ3Block) * kKvQ3BlockBytes;
      const int64_t bit = 3 * ((d + i) % kKvQ3Block), byte = bit / 8;
      const unsigned two = blk[2 + byte] | (byte + 1 < 12 ? blk[3 + byte] << 8 : 0);
      uint16_t dh;
      std::memcpy(&dh, blk, 2);
      t[i] = static_cast<float>(static_cast<int>((two >> (bit % 8)) & 7u) - 4) * _cvtsh_ss(dh);
    }
    return _mm256_load_ps(t);
  }
};

// Rows already converted to floats (kv_rows_f32): the values the other formats' load8 gives.
struct RowsF32 {
  using T = float;
  static int64_t stride(int64_t head_dim) { return head_dim; }
  static __m256 load8(const T* row, int64_t d) { return _mm256_loadu_ps(row + d); }
  static __m256 tail(const T* row, int64_t d, int64_t n) { return _mm256_maskload_ps(row + d, lane_mask(n)); }
};

void kv_rows_f32_avx2(int kind, const void* rows, int64_t n, int64_t head_dim, float* out) {
  kv_rows_to_f32<RowsF16, RowsQ8, RowsQ3, 8>(
      kind, rows, n, head_dim, out,
      [](auto fmt, const auto* row, int64_t d, float* o) { _mm256_storeu_ps(o, decltype(fmt)::load8(row, d)); },
      [](auto fmt, const auto* row, int64_t d, int64_t c, float* o) {
        _mm256_maskstore_ps(o, lane_mask(c), decltype(fmt)::tail(row, d, c));
      });
}

// Scores of GB heads x PB positions (GB * PB == 8 accumulators, FMA chains of head_dim / 8):
// lane j * PB + p of the result = q_j · k_p. K rows are converted in registers, once per tile.
template <typename R, int GB, int PB>
inline __m256 score_tile(const float* q,                   // [GB, head_dim]
                         const typename R::T* const* k,  // PB cache rows
                         int64_t head_dim) {
  static_assert(GB * PB == 8, "8 accumulators");
  __m256 acc[8];
  for (int i = 0; i < 8; ++i) acc[i] = _mm256_setzero_ps();
  const int64_t hd8 = head_dim & ~int64_t{7};
  for (int64_t d = 0; d < hd8; d += 8) {
    __m256 kv[PB];
    for (int p = 0; p < PB; ++p) kv[p] = R::load8(k[p], d);
    for (int j = 0; j < GB; ++j) {
      const __m256 qv = _mm256_loadu_ps(q + j * head_dim + d);
      for (int p = 0; p < PB; ++p) acc[j * PB + p] = _mm256_fmadd_ps(qv, kv[p], acc[j * PB + p]);
    }
  }
  if (hd8 < head_dim) {
    const __m256i m = lane_mask(head_dim - hd8);
    __m256 kv[PB];
    for (int p = 0; p < PB; ++p) kv[p] = R::tail(k[p], hd8, head_dim - hd8);
    for (int j = 0; j < GB; ++j) {
      const __m256 qv = _mm256_maskload_ps(q + j * head_dim + hd8, m);
      for (int p = 0; p < PB; ++p) acc[j * PB + p] = _mm256_fmadd_ps(qv, kv[p], acc[j * PB + p]);
    }
  }
  return reduce8(acc);
}

// Software prefetch of the cache rows kAttnPrefetchBytes ahead of the row being read (rounded to whole
// kAttnBlock tiles). Each head reads its K rows, then its V rows, in tiles of a few KB that sit in separate
// pages (16-position KV blocks of the pool), so the hardware prefetchers restart every tile and a decode
// step's attention read its cache from DRAM at ~17 GB/s on two threads (1.3B shape, 808 positions). A
// prefetch changes no arithmetic.
constexpr int64_t kAttnPrefetchBytes = 4096;
template <typename R>
inline int64_t attn_prefetch_rows(int64_t head_dim) {
  const int64_t tile = kAttnBlock * R::stride(head_dim) * static_cast<int64_t>(sizeof(typename R::T));
  return kAttnBlock * std::max<int64_t>(1, (kAttnPrefetchBytes + tile - 1) / tile);
}
// Rows [t, min(t + kAttnBlock, L)) of P (t % kAttnBlock == 0: one page) into L1; nothing when t >= L.
template <typename R>
inline void prefetch_tile(const KvPlane<typename R::T>& P, int64_t t, int64_t L, int64_t head_dim) {
  if (t >= L) return;
  const char* p = reinterpret_cast<const char*>(P.row(t));
  const int64_t bytes = std::min(kAttnBlock, L - t) * R::stride(head_dim) * static_cast<int64_t>(sizeof(typename R::T));
  // asm: GCC 12 -O3 may drop _mm_prefetch in these loops (as in billm_avx512.cpp).
  for (int64_t i = 0; i < bytes; i += 64) asm volatile("prefetcht0 (%0)" : : "r"(p + i));
}

// s[j * ld + t] = sv * (q_j · K[t]) for heads j < GB and t in [t0, t1) (t0 % kAttnBlock == 0, t1 <= t0 +
// kAttnBlock: one page), in score tiles of PB positions.
template <typename R, int GB>
inline void scores_block(const float* q,  // [GB, head_dim]
                         const KvPlane<typename R::T>& K, int64_t t0, int64_t t1, int64_t head_dim, __m256 sv,
                         float* s, int64_t ld) {
  constexpr int PB = 8 / GB;
  static_assert(kAttnBlock % PB == 0, "score tiles stay inside a page");
  alignas(32) float r[8];
  for (int64_t u = t0; u < t1; u += PB) {
    const int64_t np = std::min<int64_t>(PB, t1 - u);
    const typename R::T* k[PB];
    const typename R::T* kt = K.row(u);
    for (int p = 0; p < PB; ++p) k[p] = kt + (p < np ? p : 0) * R::stride(head_dim);
    _mm256_store_ps(r, _mm256_mul_ps(score_tile<R, GB, PB>(q, k, head_dim), sv));
    for (int j = 0; j < GB; ++j)
      for (int64_t p = 0; p < np; ++p) s[j * ld + u + p] = r[j * PB + p];
  }
}

// sc[j * L + t] = scale * (q_j · K[t]) for heads j < GB, t < L.
template <typename R, int GB>
void scores_heads(const float* q,            // [GB, head_dim]
                  const KvPlane<typename R::T>& K,  // L rows
                  int64_t L, int64_t head_dim, float scale, float* sc) {  // sc: [GB, L] (row stride L)
  const __m256 sv = _mm256_set1_ps(scale);
  const int64_t ahead = attn_prefetch_rows<R>(head_dim);
  for (int64_t t = 0; t < std::min(ahead, L); t += kAttnBlock) prefetch_tile<R>(K, t, L, head_dim);
  for (int64_t t0 = 0; t0 < L; t0 += kAttnBlock) {
    prefetch_tile<R>(K, t0 + ahead, L, head_dim);
    scores_block<R, GB>(q, K, t0, std::min(t0 + kAttnBlock, L), head_dim, sv, sc, L);
  }
}

// o_j[d0, d0 + 8 DC) += Σ_{p < nt} pj[j][p] V[p, d0 + ...] for heads j < GB (GB * DC accumulators,
// chains of nt); V rows are converted in registers once per tile.
template <typename R, int GB, int DC>
inline void pv_tile(const float* const* pj,   // GB rows of [nt] probabilities
                    const typename R::T* V,  // [nt, row]
                    int64_t nt, int64_t head_dim, int64_t d0,
                    float* const* o) {  // GB rows of [head_dim]
  __m256 acc[GB][DC];
  for (int j = 0; j < GB; ++j)
    for (int c = 0; c < DC; ++c) acc[j][c] = _mm256_setzero_ps();
  for (int64_t p = 0; p < nt; ++p) {
    __m256 vv[DC];
    for (int c = 0; c < DC; ++c) vv[c] = R::load8(V + p * R::stride(head_dim), d0 + 8 * c);
    for (int j = 0; j < GB; ++j) {
      const __m256 pb = _mm256_broadcast_ss(pj[j] + p);
      for (int c = 0; c < DC; ++c) acc[j][c] = _mm256_fmadd_ps(pb, vv[c], acc[j][c]);
    }
  }
  for (int j = 0; j < GB; ++j)
    for (int c = 0; c < DC; ++c)
      _mm256_storeu_ps(o[j] + d0 + 8 * c, _mm256_add_ps(_mm256_loadu_ps(o[j] + d0 + 8 * c), acc[j][c]));
}

// The last head_dim % 8 dims of pv_tile (masked).
template <typename R, int GB>
inline void pv_tail(const float* const* pj, const typename R::T* V, int64_t nt, int64_t head_dim, int64_t d0,
                    float* const* o) {
  const __m256i m = lane_mask(head_dim - d0);
  __m256 acc[GB];
  for (int j = 0; j < GB; ++j) acc[j] = _mm256_setzero_ps();
  for (int64_t p = 0; p < nt; ++p) {
    const __m256 vv = R::tail(V + p * R::stride(head_dim), d0, head_dim - d0);
    for (int j = 0; j < GB; ++j) acc[j] = _mm256_fmadd_ps(_mm256_broadcast_ss(pj[j] + p), vv, acc[j]);
  }
  for (int j = 0; j < GB; ++j) _mm256_maskstore_ps(o[j] + d0, m, _mm256_add_ps(_mm256_maskload_ps(o[j] + d0, m), acc[j]));
}

// o_j += Σ_{p < nt} pj[j][p] V[p, :] for heads j < GB over one tile of nt positions (accumulated per 8-dim
// chunk over the tile, then added to o_j).
template <typename R, int GB>
inline void pv_block(const float* const* pj, const typename R::T* Vt, int64_t nt, int64_t head_dim, float* const* o) {
  constexpr int DC = 8 / GB;
  const int64_t hd8 = head_dim & ~int64_t{7};
  int64_t d0 = 0;
  for (; d0 + 8 * DC <= hd8; d0 += 8 * DC) pv_tile<R, GB, DC>(pj, Vt, nt, head_dim, d0, o);
  for (; d0 < hd8; d0 += 8) pv_tile<R, GB, 1>(pj, Vt, nt, head_dim, d0, o);
  if (hd8 < head_dim) pv_tail<R, GB>(pj, Vt, nt, head_dim, hd8, o);
}

// out_j += Σ_t p_j[t] V[t, :] for heads j < GB over t < L, in blocks of kAttnBlock positions.
template <typename R, int GB>
void pv_heads(const float* sc,            // [GB, L] probabilities (row stride L)
              const KvPlane<typename R::T>& V,  // L rows
              int64_t L, int64_t head_dim, float* out) {  // out: [GB, head_dim]
  float* o[GB];
  for (int j = 0; j < GB; ++j) o[j] = out + j * head_dim;
  const int64_t ahead = attn_prefetch_rows<R>(head_dim);
  for (int64_t t = 0; t < std::min(ahead, L); t += kAttnBlock) prefetch_tile<R>(V, t, L, head_dim);
  for (int64_t t0 = 0; t0 < L; t0 += kAttnBlock) {
    prefetch_tile<R>(V, t0 + ahead, L, head_dim);
    const int64_t nt = std::min(kAttnBlock, L - t0);
    const float* pj[GB];
    for (int j = 0; j < GB; ++j) pj[j] = sc + j * L + t0;
    pv_block<R, GB>(pj, V.row(t0), nt, head_dim, o);
  }
}

// Calls f.template operator()<GB> over head blocks of 4, 2, 1 covering [0, G).
template <typename F>
inline void for_head_blocks(int64_t G, F&& f) {
  int64_t j = 0;
  for (; j + 4 <= G; j += 4) f(std::integral_constant<int, 4>(), j);
  for (; j + 2 <= G; j += 2) f(std::integral_constant<int, 2>(), j);
  for (; j < G; ++j) f(std::integral_constant<int, 1>(), j);
}

// Softmax of s[0, L) in place (max subtracted); returns 1 / Σ p.
float softmax_avx2(float* s, int64_t L) {  // s: [L]
  const int64_t L8 = L & ~int64_t{7};
  const __m256i tmask = lane_mask(L - L8);
  __m256 mv = _mm256_set1_ps(-INFINITY);
  for (int64_t t = 0; t < L8; t += 8) mv = _mm256_max_ps(mv, _mm256_loadu_ps(s + t));
  float m = hmax(mv);
  for (int64_t t = L8; t < L; ++t) m = std::max(m, s[t]);
  const __m256 mm = _mm256_set1_ps(m);
  __m256 acc = _mm256_setzero_ps();
  for (int64_t t = 0; t < L8; t += 8) {
    const __m256 e = exp8(_mm256_sub_ps(_mm256_loadu_ps(s + t), mm));
    _mm256_storeu_ps(s + t, e);
    acc = _mm256_add_ps(acc, e);
  }
  if (L8 < L) {
    const __m256 e = _mm256_and_ps(exp8(_mm256_sub_ps(_mm256_maskload_ps(s + L8, tmask), mm)), _mm256_castsi256_ps(tmask));
    _mm256_maskstore_ps(s + L8, tmask, e);
    acc = _mm256_add_ps(acc, e);
  }
  return 1.0f / hsum(acc);
}

// G query heads q [G, head_dim] sharing one kv head; L attended rows of K/V [L, head_dim].
template <typename R>
void attend_group_avx2(const float* q, int64_t G, const KvPlane<typename R::T>& K, const KvPlane<typename R::T>& V,
                       int64_t L,
                       int64_t head_dim, float scale, float* out,  // out: [G, head_dim]
                       float* sc) {                                // [G, L]
  for_head_blocks(G, [&](auto gb, int64_t j) {
    scores_heads<R, decltype(gb)::value>(q + j * head_dim, K, L, head_dim, scale, sc + j * L);
  });
  float inv[kAttnMaxGroup];
  for (int64_t j = 0; j < G; ++j) {
    inv[j] = softmax_avx2(sc + j * L, L);
    std::fill(out + j * head_dim, out + (j + 1) * head_dim, 0.0f);
  }
  for_head_blocks(G, [&](auto gb, int64_t j) {
    pv_heads<R, decltype(gb)::value>(sc + j * L, V, L, head_dim, out + j * head_dim);
  });
  for (int64_t j = 0; j < G; ++j) {
    float* o = out + j * head_dim;
    const __m256 iv = _mm256_set1_ps(inv[j]);
    int64_t d = 0;
    for (; d + 8 <= head_dim; d += 8) _mm256_storeu_ps(o + d, _mm256_mul_ps(_mm256_loadu_ps(o + d), iv));
    for (; d < head_dim; ++d) o[d] = o[d] * inv[j];
  }
}

// attend_group_avx2 for n <= kAttnRows query rows against the same K/V, L[i] rows each: the same operations
// per (row, head) in the same order (each score alone; each head's output summed tile by tile in position
// order), with the loops turned tile-major, so that each K and V tile is read from memory once for the n rows
// and then from L1 (a prefill chunk's rows otherwise stream their whole cache from L3 or DRAM each).
template <typename R>
void attend_rows_avx2(const float* const* q, int64_t n, int64_t G, const KvPlane<typename R::T>& K,
                      const KvPlane<typename R::T>& V, const int64_t* L, int64_t head_dim, float scale,
                      float* const* out,  // n rows of [G, head_dim]
                      float* sc) {        // [Σ_i G L[i]]
  int64_t Lmax = 0;
  float* sci[kAttnRows];
  for (int64_t i = 0, off = 0; i < n; ++i) {
    Lmax = std::max(Lmax, L[i]);
    sci[i] = sc + off;
    off += G * L[i];
  }
  const int64_t ahead = attn_prefetch_rows<R>(head_dim);
  // Scores, tile by tile: row i's positions [t0, min(t0 + kAttnBlock, L[i])), each head block as
  // scores_heads does.
  const __m256 sv = _mm256_set1_ps(scale);
  for (int64_t t = 0; t < std::min(ahead, Lmax); t += kAttnBlock) prefetch_tile<R>(K, t, Lmax, head_dim);
  for (int64_t t0 = 0; t0 < Lmax; t0 += kAttnBlock) {
    prefetch_tile<R>(K, t0 + ahead, Lmax, head_dim);
    for (int64_t i = 0; i < n; ++i) {
      const int64_t t1 = std::min(t0 + kAttnBlock, L[i]);
      if (t1 <= t0) continue;
      for_head_blocks(G, [&](auto gb, int64_t j) {
        scores_block<R, decltype(gb)::value>(q[i] + j * head_dim, K, t0, t1, head_dim, sv, sci[i] + j * L[i], L[i]);
      });
    }
  }
  float inv[kAttnRows][kAttnMaxGroup];
  for (int64_t i = 0; i < n; ++i)
    for (int64_t j = 0; j < G; ++j) {
      inv[i][j] = softmax_avx2(sci[i] + j * L[i], L[i]);
      std::fill(out[i] + j * head_dim, out[i] + (j + 1) * head_dim, 0.0f);
    }
  // Outputs, tile by tile: each head of each row adds its tiles in position order, as pv_heads does.
  for (int64_t t = 0; t < std::min(ahead, Lmax); t += kAttnBlock) prefetch_tile<R>(V, t, Lmax, head_dim);
  for (int64_t t0 = 0; t0 < Lmax; t0 += kAttnBlock) {
    prefetch_tile<R>(V, t0 + ahead, Lmax, head_dim);
    const typename R::T* Vt = V.row(t0);
    for (int64_t i = 0; i < n; ++i) {
      if (t0 >= L[i]) continue;
      const int64_t nt = std::min(kAttnBlock, L[i] - t0);
      for_head_blocks(G, [&](auto gb, int64_t j) {
        constexpr int GB = decltype(gb)::value;
        const float* pj[GB];
        float* o[GB];
        for (int jj = 0; jj < GB; ++jj) {
          pj[jj] = sci[i] + (j + jj) * L[i] + t0;
          o[jj] = out[i] + (j + jj) * head_dim;
        }
        pv_block<R, GB>(pj, Vt, nt, head_dim, o);
      });
    }
  }
  for (int64_t i = 0; i < n; ++i)
    for (int64_t j = 0; j < G; ++j) {
      float* o = out[i] + j * head_dim;
      const __m256 iv = _mm256_set1_ps(inv[i][j]);
      int64_t d = 0;
      for (; d + 8 <= head_dim; d += 8) _mm256_storeu_ps(o + d, _mm256_mul_ps(_mm256_loadu_ps(o + d), iv));
      for (; d < head_dim; ++d) o[d] = o[d] * inv[i][j];
    }
}

template <typename R>
void attention_paged_avx2(const float* q, const KvPages& kv, const int32_t* pos, float* out, int64_t B,
                          int64_t n_heads, int64_t n_kv_heads, int64_t head_dim, int64_t ldq, int64_t ldo, float scale,
                          int64_t h0, int64_t h1, float* scratch) {
  const int64_t r = n_heads / n_kv_heads;
  float* sc = scratch;  // [kAttnRows, G, L] (the rest of the scratch is unused here)
  const int64_t rs = R::stride(head_dim);
  for (int64_t h = h0; h < h1;) {
    const int64_t g = h / r, he = std::min({h1, (g + 1) * r, h + kAttnMaxGroup});
    const KvPlane<typename R::T> K{kv.k_pages, kv.k_off, kv.page_tokens, g, rs};
    const KvPlane<typename R::T> V{kv.v_pages, kv.v_off, kv.page_tokens, g, rs};
    for (int64_t b = 0; b < B;) {
      const int64_t n = std::min(kAttnRows, B - b);
      if (n == 1) {
        attend_group_avx2<R>(q + b * ldq + h * head_dim, he - h, K, V, static_cast<int64_t>(pos[b]) + 1, head_dim,
                             scale, out + b * ldo + h * head_dim, sc);
      } else {
        const float* qi[kAttnRows];
        float* oi[kAttnRows];
        int64_t L[kAttnRows];
        for (int64_t i = 0; i < n; ++i) {
          qi[i] = q + (b + i) * ldq + h * head_dim;
          oi[i] = out + (b + i) * ldo + h * head_dim;
          L[i] = static_cast<int64_t>(pos[b + i]) + 1;
        }
        attend_rows_avx2<R>(qi, n, he - h, K, V, L, head_dim, scale, oi, sc);
      }
      b += n;
    }
    h = he;
  }
}

// attention_f16 (R = RowsF16), attention_q8 (R = RowsQ8) and attention_q3 (R = RowsQ3): one page of
// `capacity` positions.
template <typename R>
void attention_avx2(const float* q, const typename R::T* k_cache, const typename R::T* v_cache, const int32_t* pos,
                    float* out, int64_t B, int64_t n_heads, int64_t n_kv_heads, int64_t head_dim, int64_t capacity,
                    int64_t ldq, int64_t ldo, float scale, int64_t h0, int64_t h1, float* scratch) {
  const void* kp = k_cache;
  const void* vp = v_cache;
  const KvPages kv{&kp, &vp, 0, 0, capacity};
  attention_paged_avx2<R>(q, kv, pos, out, B, n_heads, n_kv_heads, head_dim, ldq, ldo, scale, h0, h1, scratch);
}

template <bool kSilu>
void glu_avx2(const float* gate_up, float* out, int64_t B, int64_t n, int64_t ld_in, int64_t ld_out) {
  const __m256 one = _mm256_set1_ps(1.0f), zero = _mm256_setzero_ps(), neg = _mm256_set1_ps(-0.0f);
  for (int64_t b = 0; b < B; ++b) {
    const float* g = gate_up + b * ld_in;  // [n]
    const float* u = g + n;                // [n]
    float* o = out + b * ld_out;           // [n]
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
      const __m256 gv = _mm256_loadu_ps(g + i), uv = _mm256_loadu_ps(u + i);
      __m256 a;
      if (kSilu) {
        a = _mm256_div_ps(gv, _mm256_add_ps(one, exp8(_mm256_xor_ps(gv, neg))));
      } else {
        const __m256 r = _mm256_max_ps(gv, zero);
        a = _mm256_mul_ps(r, r);
      }
      _mm256_storeu_ps(o + i, _mm256_mul_ps(a, uv));
    }
    if (i < n) {
      const __m256i m = lane_mask(n - i);
      const __m256 gv = _mm256_maskload_ps(g + i, m), uv = _mm256_maskload_ps(u + i, m);
      __m256 a;
      if (kSilu) {
        a = _mm256_div_ps(gv, _mm256_add_ps(one, exp8(_mm256_xor_ps(gv, neg))));
      } else {
        const __m256 r = _mm256_max_ps(gv, zero);
        a = _mm256_mul_ps(r, r);
      }
      _mm256_maskstore_ps(o + i, m, _mm256_mul_ps(a, uv));
    }
  }
}

}  // namespace

void fill_ops_avx2(KernelTable& t, const CpuFeatures&) {
  t.rmsnorm = rmsnorm_avx2;
  t.rope_neox = rope_neox_avx2;
  t.kv_store_f16 = kv_store_f16_avx2;
  t.attention_f16 = attention_avx2<RowsF16>;
  t.kv_store_q8 = kv_store_q8_avx2;
  t.attention_q8 = attention_avx2<RowsQ8>;
  t.kv_store_q3 = kv_store_q3_avx2;
  t.attention_q3 = attention_avx2<RowsQ3>;
  t.attention_paged_f16 = attention_paged_avx2<RowsF16>;
  t.attention_paged_q8 = attention_paged_avx2<RowsQ8>;
  t.attention_paged_q3 = attention_paged_avx2<RowsQ3>;
  t.attention_paged_f32 = attention_paged_avx2<RowsF32>;
  t.kv_rows_f32 = kv_rows_f32_avx2;
  t.glu_relu2 = glu_avx2<false>;
  t.glu_silu = glu_avx2<true>;
  t.v_ops = "avx2";
}

}  // namespace bitllm
