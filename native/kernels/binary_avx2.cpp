// AVX2 binary GEMM on B1R16 and column-side prep, bit-exact to binary_scalar.cpp.
//
// AVX2 has neither k-masks nor a vector popcount. Two ways to get pos = Σ_{bit=1} q were measured
// (2560 x 2560, B = 1, one Zen 4 core): expanding each row's 64 bits to 0/1 bytes (vpbroadcastq,
// vpshufb of the byte holding each bit, vpand with the bit, vpminub with 1) and vpmaddubsw against
// the activations: 116 us; bit-serial over the 8 two's-complement planes of q with a vpshufb
// nibble-LUT popcount: 189 us (without building the planes). This file uses the expansion.
// vpmaddubsw(u8 0/1, s8 q) gives int16 pair sums in [-256, 254]; two per chunk go into int16
// accumulators that are widened to int32 (vpmaddwd with 1) every kFlush chunks: |acc| <= 16384.
// Small B (direct path): each row's expansion is reused for NB tokens. B >= kExpandMinTokens
// (expanded path): 4 rows x a K-block are expanded once into a stack buffer and reused for all the
// tokens of a block, leaving 2 vpmaddubsw + 2 vpaddw per row, token and 64 weights.
#include <immintrin.h>

#include <algorithm>
#include <cstring>

#include "kernels.h"

namespace bitllm {

namespace {

constexpr int64_t kFlush = 32;            // chunks between int16 -> int32 widenings
constexpr int kTokenBlock = 64;           // tokens per pos[] block (expanded path)
constexpr int kExpandChunks = 64;         // K-block of the expanded path: 4096 k, 16 KB of 0/1 bytes
constexpr int64_t kExpandMinTokens = 32;  // B from which expanding once pays off (measured: ~10%)

// Lane j of the result = Σ of the 8 int32 lanes of v[j].
inline __m256i reduce8(const __m256i (&v)[8]) {
  const __m256i h0 = _mm256_hadd_epi32(_mm256_hadd_epi32(v[0], v[1]), _mm256_hadd_epi32(v[2], v[3]));
  const __m256i h1 = _mm256_hadd_epi32(_mm256_hadd_epi32(v[4], v[5]), _mm256_hadd_epi32(v[6], v[7]));
  return _mm256_add_epi32(_mm256_permute2x128_si256(h0, h1, 0x20), _mm256_permute2x128_si256(h0, h1, 0x31));
}

// The 64 bits of one row of one chunk as 0/1 bytes: w[0] = k 0..31, w[1] = k 32..63.
struct Expander {
  __m256i idx0 = _mm256_setr_epi8(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3,
                                  3, 3, 3, 3);
  __m256i idx1 = _mm256_setr_epi8(4, 4, 4, 4, 4, 4, 4, 4, 5, 5, 5, 5, 5, 5, 5, 5, 6, 6, 6, 6, 6, 6, 6, 6, 7, 7, 7, 7,
                                  7, 7, 7, 7);
  __m256i bitsel = _mm256_set1_epi64x(static_cast<int64_t>(0x8040201008040201ull));
  __m256i one8 = _mm256_set1_epi8(1);

  inline void operator()(const uint8_t* row,  // [8]
                         __m256i& w0, __m256i& w1) const {
    int64_t m;
    std::memcpy(&m, row, 8);
    const __m256i b = _mm256_set1_epi64x(m);
    w0 = _mm256_min_epu8(_mm256_and_si256(_mm256_shuffle_epi8(b, idx0), bitsel), one8);
    w1 = _mm256_min_epu8(_mm256_and_si256(_mm256_shuffle_epi8(b, idx1), bitsel), one8);
  }
};

inline __m256i load32(const int8_t* p) { return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)); }

// Direct path: pos[i][r0 + r] = Σ_{bit(r0+r, k)=1} q[i][k] for R rows from r0 of one tile, NB tokens.
template <int R, int NB>
void pos_direct(const uint8_t* tile,  // [K/64, 128]
                int64_t kchunks, int r0,
                const int8_t* const* q,  // NB x [K]
                int32_t (*pos)[kB1Rows]) {  // [NB, 16]
  static_assert(R * NB <= 8, "8 accumulators");
  const Expander expand;
  const __m256i one16 = _mm256_set1_epi16(1);
  __m256i acc32[8];
  for (int j = 0; j < 8; ++j) acc32[j] = _mm256_setzero_si256();
  for (int64_t kc0 = 0; kc0 < kchunks; kc0 += kFlush) {
    const int64_t kc1 = std::min(kchunks, kc0 + kFlush);
    __m256i acc[R * NB];
    for (int j = 0; j < R * NB; ++j) acc[j] = _mm256_setzero_si256();
    for (int64_t kc = kc0; kc < kc1; ++kc) {
      const uint8_t* c = tile + kc * kB1ChunkBytes + 8 * r0;  // [R, 8]
      for (int r = 0; r < R; ++r) {
        __m256i w0, w1;
        expand(c + 8 * r, w0, w1);
        for (int i = 0; i < NB; ++i) {
          const int8_t* x = q[i] + kc * kB1KStep;  // [64]
          const __m256i s = _mm256_add_epi16(_mm256_maddubs_epi16(w0, load32(x)), _mm256_maddubs_epi16(w1, load32(x + 32)));
          acc[r * NB + i] = _mm256_add_epi16(acc[r * NB + i], s);
        }
      }
    }
    for (int j = 0; j < R * NB; ++j) acc32[j] = _mm256_add_epi32(acc32[j], _mm256_madd_epi16(acc[j], one16));
  }
  alignas(32) int32_t out[8];
  _mm256_store_si256(reinterpret_cast<__m256i*>(out), reduce8(acc32));
  for (int r = 0; r < R; ++r)
    for (int i = 0; i < NB; ++i) pos[i][r0 + r] = out[r * NB + i];
}

// Expanded path: pos[i0 + i][r0 + r] += Σ_k w01[c][r][k] * q[i][k] over n chunks of 4 rows already
// expanded to 0/1 bytes. 4 rows x NB (<= 2) tokens, n <= kExpandChunks (int16-safe per kFlush).
template <int NB>
void pos_expanded(const uint8_t (*w01)[4][64],  // [n, 4, 64]
                  int64_t n, int r0, int i0,
                  const int8_t* const* q,  // NB x [n * 64], already offset to the K-block
                  int32_t (*pos)[kB1Rows]) {  // [i0 + NB, 16]
  const __m256i one16 = _mm256_set1_epi16(1);
  __m256i acc32[8];
  for (int j = 0; j < 8; ++j) acc32[j] = _mm256_setzero_si256();
  for (int64_t c0 = 0; c0 < n; c0 += kFlush) {
    const int64_t c1 = std::min(n, c0 + kFlush);
    __m256i acc[4 * NB];
    for (int j = 0; j < 4 * NB; ++j) acc[j] = _mm256_setzero_si256();
    for (int64_t c = c0; c < c1; ++c) {
      __m256i x[NB][2];
      for (int i = 0; i < NB; ++i) {
        x[i][0] = load32(q[i] + c * kB1KStep);
        x[i][1] = load32(q[i] + c * kB1KStep + 32);
      }
      for (int r = 0; r < 4; ++r) {
        const __m256i w0 = _mm256_load_si256(reinterpret_cast<const __m256i*>(w01[c][r]));
        const __m256i w1 = _mm256_load_si256(reinterpret_cast<const __m256i*>(w01[c][r] + 32));
        for (int i = 0; i < NB; ++i) {
          const __m256i s = _mm256_add_epi16(_mm256_maddubs_epi16(w0, x[i][0]), _mm256_maddubs_epi16(w1, x[i][1]));
          acc[r * NB + i] = _mm256_add_epi16(acc[r * NB + i], s);
        }
      }
    }
    for (int j = 0; j < 4 * NB; ++j) acc32[j] = _mm256_add_epi32(acc32[j], _mm256_madd_epi16(acc[j], one16));
  }
  alignas(32) int32_t out[8];
  _mm256_store_si256(reinterpret_cast<__m256i*>(out), reduce8(acc32));
  for (int r = 0; r < 4; ++r)
    for (int i = 0; i < NB; ++i) pos[i0 + i][r0 + r] += out[r * NB + i];
}

// y for token b of tile t from its 16 row sums (binary.h epilogue).
inline void epilogue(const BinaryMat& w, const QActs& a, const float* tok_bias, float* y, int64_t ldy, int64_t t,
                     int64_t b, const int32_t* pos) {  // [16]
  const int64_t m0 = t * kB1Rows;
  const int rows = static_cast<int>(std::min<int64_t>(kB1Rows, w.M - m0));
  const __m256i sum = _mm256_set1_epi32(a.sum[b]);
  const __m256 as = _mm256_set1_ps(a.scale[b]);
  alignas(32) float out[kB1Rows];
  for (int h = 0; h < 2; ++h) {
    const __m256i p = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(pos + 8 * h));
    const __m256i dot = _mm256_sub_epi32(_mm256_add_epi32(p, p), sum);
    // Row scales are [Mp], so the 8 lanes past M are readable padding.
    const __m256 ws = w.scale_mode == kScaleRow ? _mm256_loadu_ps(w.scales + m0 + 8 * h) : _mm256_set1_ps(w.scales[0]);
    __m256 v = _mm256_div_ps(_mm256_mul_ps(_mm256_cvtepi32_ps(dot), ws), as);
    if (tok_bias) v = _mm256_add_ps(v, _mm256_set1_ps(tok_bias[b]));
    _mm256_store_ps(out + 8 * h, v);
  }
  float* yr = y + b * ldy + m0;  // [rows]
  if (rows == kB1Rows) {
    std::memcpy(yr, out, sizeof(out));
  } else {
    for (int r = 0; r < rows; ++r) yr[r] = out[r];
  }
}

template <int NB>
void tile_direct(const BinaryMat& w, const QActs& a, const float* tok_bias, float* y, int64_t ldy, int64_t t,
                 int64_t b0) {
  constexpr int R = NB == 1 ? 8 : (NB == 2 ? 4 : 2);
  const int64_t kchunks = w.K / kB1KStep;
  const uint8_t* tile = w.bits + t * kchunks * kB1ChunkBytes;  // [K/64, 128]
  const int rows = static_cast<int>(std::min<int64_t>(kB1Rows, w.M - t * kB1Rows));
  const int8_t* q[NB];
  for (int i = 0; i < NB; ++i) q[i] = a.q + (b0 + i) * a.ldq;
  alignas(32) int32_t pos[NB][kB1Rows] = {};  // rows past M stay 0
  for (int r0 = 0; r0 < rows; r0 += R) pos_direct<R, NB>(tile, kchunks, r0, q, pos);
  for (int i = 0; i < NB; ++i) epilogue(w, a, tok_bias, y, ldy, t, b0 + i, pos[i]);
}

void tile_expanded(const BinaryMat& w, const QActs& a, const float* tok_bias, float* y, int64_t ldy, int64_t t,
                   int64_t b0, int64_t nt) {
  const int64_t kchunks = w.K / kB1KStep;
  const uint8_t* tile = w.bits + t * kchunks * kB1ChunkBytes;  // [K/64, 128]
  const int rows = static_cast<int>(std::min<int64_t>(kB1Rows, w.M - t * kB1Rows));
  const Expander expand;
  alignas(32) uint8_t w01[kExpandChunks][4][64];
  alignas(32) int32_t pos[kTokenBlock][kB1Rows] = {};
  for (int r0 = 0; r0 < rows; r0 += 4) {
    for (int64_t kb = 0; kb < kchunks; kb += kExpandChunks) {
      const int64_t n = std::min<int64_t>(kExpandChunks, kchunks - kb);
      for (int64_t c = 0; c < n; ++c)
        for (int r = 0; r < 4; ++r) {
          __m256i w0, w1;
          expand(tile + (kb + c) * kB1ChunkBytes + 8 * (r0 + r), w0, w1);
          _mm256_store_si256(reinterpret_cast<__m256i*>(w01[c][r]), w0);
          _mm256_store_si256(reinterpret_cast<__m256i*>(w01[c][r] + 32), w1);
        }
      for (int64_t i0 = 0; i0 < nt; i0 += 2) {
        const int8_t* q[2] = {a.q + (b0 + i0) * a.ldq + kb * kB1KStep, nullptr};
        if (i0 + 1 < nt) {
          q[1] = q[0] + a.ldq;
          pos_expanded<2>(w01, n, r0, static_cast<int>(i0), q, pos);
        } else {
          pos_expanded<1>(w01, n, r0, static_cast<int>(i0), q, pos);
        }
      }
    }
  }
  for (int64_t i = 0; i < nt; ++i) epilogue(w, a, tok_bias, y, ldy, t, b0 + i, pos[i]);
}

void binary_gemm_avx2(const BinaryMat& w, const QActs& a, const float* tok_bias, float* y, int64_t ldy,
                      int64_t tile0, int64_t tile1) {
  for (int64_t t = tile0; t < tile1; ++t) {
    int64_t b0 = 0;
    if (a.B >= kExpandMinTokens) {
      for (; b0 < a.B; b0 += kTokenBlock)
        tile_expanded(w, a, tok_bias, y, ldy, t, b0, std::min<int64_t>(kTokenBlock, a.B - b0));
      continue;
    }
    for (; b0 + 4 <= a.B; b0 += 4) tile_direct<4>(w, a, tok_bias, y, ldy, t, b0);
    switch (a.B - b0) {
      case 3: tile_direct<3>(w, a, tok_bias, y, ldy, t, b0); break;
      case 2: tile_direct<2>(w, a, tok_bias, y, ldy, t, b0); break;
      case 1: tile_direct<1>(w, a, tok_bias, y, ldy, t, b0); break;
      default: break;
    }
  }
}

void binary_prep_avx2(const float* x, int64_t ldx, int64_t B, int64_t K, const float* col_scale,
                      const float* col_bias, float* xs, int64_t ldxs, float* tok_bias) {
  const int64_t k16 = K & ~int64_t{15};
  for (int64_t b = 0; b < B; ++b) {
    const float* xr = x + b * ldx;  // [K]
    float* xo = xs + b * ldxs;      // [K]
    __m256 p0 = _mm256_setzero_ps(), p1 = _mm256_setzero_ps();  // lanes k % 16 = 0..7, 8..15
    for (int64_t k = 0; k < k16; k += 16) {
      const __m256 x0 = _mm256_loadu_ps(xr + k), x1 = _mm256_loadu_ps(xr + k + 8);
      if (col_scale) {
        _mm256_storeu_ps(xo + k, _mm256_mul_ps(x0, _mm256_loadu_ps(col_scale + k)));
        _mm256_storeu_ps(xo + k + 8, _mm256_mul_ps(x1, _mm256_loadu_ps(col_scale + k + 8)));
      } else {
        _mm256_storeu_ps(xo + k, x0);
        _mm256_storeu_ps(xo + k + 8, x1);
      }
      if (col_bias) {
        p0 = _mm256_add_ps(p0, _mm256_mul_ps(_mm256_loadu_ps(col_bias + k), x0));
        p1 = _mm256_add_ps(p1, _mm256_mul_ps(_mm256_loadu_ps(col_bias + k + 8), x1));
      }
    }
    if (k16 < K) {
      // The tail through a zero-padded copy: padded lanes add +0 * +0 = +0 (p is never -0).
      alignas(32) float xt[16] = {}, bt[16] = {};
      const int64_t n = K - k16;
      for (int64_t i = 0; i < n; ++i) {
        xt[i] = xr[k16 + i];
        xo[k16 + i] = col_scale ? xr[k16 + i] * col_scale[k16 + i] : xr[k16 + i];
        if (col_bias) bt[i] = col_bias[k16 + i];
      }
      if (col_bias) {
        p0 = _mm256_add_ps(p0, _mm256_mul_ps(_mm256_load_ps(bt), _mm256_load_ps(xt)));
        p1 = _mm256_add_ps(p1, _mm256_mul_ps(_mm256_load_ps(bt + 8), _mm256_load_ps(xt + 8)));
      }
    }
    if (col_bias) {
      const __m256 h8 = _mm256_add_ps(p0, p1);
      const __m128 h4 = _mm_add_ps(_mm256_castps256_ps128(h8), _mm256_extractf128_ps(h8, 1));
      const __m128 h2 = _mm_add_ps(h4, _mm_movehl_ps(h4, h4));
      tok_bias[b] = _mm_cvtss_f32(_mm_add_ss(h2, _mm_shuffle_ps(h2, h2, 1)));
    }
  }
}

}  // namespace

void fill_binary_avx2(KernelTable& t, const CpuFeatures&) {
  t.binary_gemm = binary_gemm_avx2;
  t.binary_prep = binary_prep_avx2;
  t.v_binary = "avx2";
}

}  // namespace bitllm
