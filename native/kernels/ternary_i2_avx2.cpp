// Ternary T2R16 GEMM, AVX2 variant. A 64-byte chunk is two halves of 8 rows (bytes 0..31 = rows 0..7,
// 32..63 = rows 8..15); per 32-bit lane r, bit pair l holds the 4 codes of row r at k = 16kc+4l..+3.
// vpmaddubsw(u8 codes (v >> 2l) & 3, s8 broadcast of 4 activation bytes) gives two int16 per row lane,
// each a sum of 2 products in [-512, 508]. The int16 accumulators take 4 such adds per chunk, so 16
// chunks (one 256-k block) reach at most 64 * 512 = 32768 in magnitude: [-32768, 32512] fits exactly.
// Every 16 chunks they are widened with vpmaddwd(., 1) into int32, so dots are exact like the scalar
// reference, and the float epilogue repeats the contract's ops one by one (no FMA).
#include <immintrin.h>

#include <algorithm>
#include <array>
#include <cstring>
#include <utility>

#include "kernels.h"

namespace bitllm {

namespace {

constexpr int64_t kBlockChunks = kScaleBlockK / kT2KStep;  // 16 chunks: the int16 accumulator budget
constexpr int kHalfRows = 8;

inline __m256i bcast4(const int8_t* p) {
  int32_t v;
  std::memcpy(&v, p, 4);
  return _mm256_set1_epi32(v);
}

// Empty asm that "modifies" v in a register: stops GCC from reassociating the accumulator adds into
// trees of maddubs results, which needs more than 16 ymm registers and spills in the inner loop.
inline void pin(__m256i& v) { __asm__("" : "+x"(v)); }

// Rows of half h of tile t that exist (< M): 0..8.
inline int64_t half_rows(const TernaryMat& w, int64_t t, int h) {
  return std::clamp<int64_t>(w.M - t * kT2Rows - h * kHalfRows, 0, kHalfRows);
}

inline void store_rows(float* y,  // [rows]
                       int64_t rows, __m256 v) {
  if (rows == kHalfRows) {
    _mm256_storeu_ps(y, v);
  } else if (rows > 0) {
    const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    _mm256_maskstore_ps(y, _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int32_t>(rows)), lane), v);
  }
}

// dot[h][n] += codes of tile half h . q of token n over chunks [kc0, kc1), kc1 - kc0 <= 16: int16
// accumulation within the segment, then one widening to int32.
template <int N>
inline void dot_segment(const uint8_t* tile,  // [K/16, 64]
                        const int8_t* q,      // [N, ldq]
                        int64_t ldq, int64_t kc0, int64_t kc1, __m256i (&dot)[2][N]) {
  const __m256i m3 = _mm256_set1_epi8(3);
  __m256i acc[2][N];  // fully unrolled below, so GCC keeps it in registers
  for (int h = 0; h < 2; ++h)
    for (int n = 0; n < N; ++n) acc[h][n] = _mm256_setzero_si256();
  for (int64_t kc = kc0; kc < kc1; ++kc) {
    const uint8_t* c = tile + kc * kT2ChunkBytes;
    const __m256i v0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(c));
    const __m256i v1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(c + 32));
    const int8_t* qk = q + kc * kT2KStep;
#pragma GCC unroll 4
    for (int l = 0; l < 4; ++l) {
      const __m256i c0 = _mm256_and_si256(_mm256_srli_epi16(v0, 2 * l), m3);
      const __m256i c1 = _mm256_and_si256(_mm256_srli_epi16(v1, 2 * l), m3);
#pragma GCC unroll 8
      for (int n = 0; n < N; ++n) {
        const __m256i x = bcast4(qk + n * ldq + 4 * l);
        acc[0][n] = _mm256_add_epi16(acc[0][n], _mm256_maddubs_epi16(c0, x));
        acc[1][n] = _mm256_add_epi16(acc[1][n], _mm256_maddubs_epi16(c1, x));
        pin(acc[0][n]);
        pin(acc[1][n]);
      }
    }
  }
  const __m256i ones = _mm256_set1_epi16(1);
  for (int h = 0; h < 2; ++h)
    for (int n = 0; n < N; ++n) dot[h][n] = _mm256_add_epi32(dot[h][n], _mm256_madd_epi16(acc[h][n], ones));
}

// Y for tile t and tokens [b, b+N).
template <int N>
void gemm_block(const TernaryMat& w, const QActs& a,
                float* y,  // [B, ldy]
                int64_t ldy, int64_t t, int64_t b) {
  const int64_t kchunks = w.K / kT2KStep;
  const uint8_t* tile = w.codes + t * kchunks * kT2ChunkBytes;
  const int8_t* q = a.q + b * a.ldq;
  const int64_t rows[2] = {half_rows(w, t, 0), half_rows(w, t, 1)};
  if (w.scale_mode == kScaleBlock) {
    const int64_t nb = w.K / kScaleBlockK;
    __m256 facc[2][N];
    for (int h = 0; h < 2; ++h)
      for (int n = 0; n < N; ++n) facc[h][n] = _mm256_setzero_ps();
    for (int64_t j = 0; j < nb; ++j) {
      __m256i dot[2][N];
      for (int h = 0; h < 2; ++h)
        for (int n = 0; n < N; ++n) dot[h][n] = _mm256_setzero_si256();
      dot_segment<N>(tile, q, a.ldq, j * kBlockChunks, (j + 1) * kBlockChunks, dot);
      // acc = acc + (float)(dot_j - bsum[b, j]) * scale[t, j, r]
      for (int h = 0; h < 2; ++h) {
        const __m256 ws = _mm256_loadu_ps(w.scales + (t * nb + j) * kT2Rows + h * kHalfRows);
        for (int n = 0; n < N; ++n) {
          const __m256i bs = _mm256_set1_epi32(a.bsum[(b + n) * nb + j]);
          const __m256 d = _mm256_cvtepi32_ps(_mm256_sub_epi32(dot[h][n], bs));
          facc[h][n] = _mm256_add_ps(facc[h][n], _mm256_mul_ps(d, ws));
        }
      }
    }
    for (int h = 0; h < 2; ++h)
      for (int n = 0; n < N; ++n)
        store_rows(y + (b + n) * ldy + t * kT2Rows + h * kHalfRows, rows[h],
                   _mm256_div_ps(facc[h][n], _mm256_set1_ps(a.scale[b + n])));
    return;
  }
  __m256i dot[2][N];
  for (int h = 0; h < 2; ++h)
    for (int n = 0; n < N; ++n) dot[h][n] = _mm256_setzero_si256();
  for (int64_t kc = 0; kc < kchunks; kc += kBlockChunks)
    dot_segment<N>(tile, q, a.ldq, kc, std::min(kchunks, kc + kBlockChunks), dot);
  // y = ((float)(dot - sum[b]) * ws) / scale[b]
  for (int h = 0; h < 2; ++h) {
    const __m256 ws = w.scale_mode == kScaleRow ? _mm256_loadu_ps(w.scales + t * kT2Rows + h * kHalfRows)
                                                : _mm256_set1_ps(w.scales[0]);
    for (int n = 0; n < N; ++n) {
      const __m256 d = _mm256_cvtepi32_ps(_mm256_sub_epi32(dot[h][n], _mm256_set1_epi32(a.sum[b + n])));
      store_rows(y + (b + n) * ldy + t * kT2Rows + h * kHalfRows, rows[h],
                 _mm256_div_ps(_mm256_mul_ps(d, ws), _mm256_set1_ps(a.scale[b + n])));
    }
  }
}

// 2 halves x 4 tokens = 8 int16 accumulators + codes + broadcast fit the 16 ymm registers
// (measured at B = 128: 4-5 tokens ~250 GOPS per core, 1-2 tokens ~190).
constexpr int kGemmTokens = 4;

using block_fn = void (*)(const TernaryMat&, const QActs&, float*, int64_t, int64_t, int64_t);

template <int... Ns>
constexpr std::array<block_fn, sizeof...(Ns)> blocks_of(std::integer_sequence<int, Ns...>) {
  return {gemm_block<Ns + 1>...};
}

void ternary_gemm_avx2(const TernaryMat& w, const QActs& a, float* y, int64_t ldy, int64_t tile0, int64_t tile1) {
  static constexpr std::array<block_fn, kGemmTokens> fns = blocks_of(std::make_integer_sequence<int, kGemmTokens>());
  for (int64_t t = tile0; t < tile1; ++t)
    for (int64_t b = 0; b < a.B; b += kGemmTokens) fns[std::min<int64_t>(kGemmTokens, a.B - b) - 1](w, a, y, ldy, t, b);
}

}  // namespace

void fill_ternary_i2_avx2(KernelTable& t, const CpuFeatures&) {
  t.ternary_gemm = ternary_gemm_avx2;
  t.v_ternary = "avx2";
}

}  // namespace bitllm
