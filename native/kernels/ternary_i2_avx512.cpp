// Ternary T2R16 GEMM, AVX-512 VNNI variant. One 64-byte chunk is 16 rows x 16 k: per 32-bit lane r it
// holds 4 bytes of row r, and bit pair l of those bytes is the 4 codes of k = 16kc+4l..+3, so
// vpdpbusd(acc, (chunk >> 2l) & 3, broadcast of 4 activation bytes) adds 4 products to each of the
// 16 row lanes. vpdpbusd accumulates in int32 without saturation: dots are exact, as in the scalar
// reference, and the float epilogue below repeats the contract's ops one by one (no FMA).
#include <immintrin.h>

#include <algorithm>
#include <array>
#include <cstring>
#include <utility>

#include "kernels.h"

// GCC 12 reports its own _mm512_undefined_*() (the pass-through of unmasked intrinsics) as
// maybe-uninitialized once they are inlined into deep templates; the warning is spurious.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif

namespace bitllm {

namespace {

constexpr int64_t kBlockChunks = kScaleBlockK / kT2KStep;  // 16 chunks per 256-k scale block

inline __m512i bcast4(const int8_t* p) {
  int32_t v;
  std::memcpy(&v, p, 4);
  return _mm512_set1_epi32(v);
}

// Rows of tile t that exist (< M), as a store mask.
inline __mmask16 row_mask(const TernaryMat& w, int64_t t) {
  const int64_t rows = std::min<int64_t>(kT2Rows, w.M - t * kT2Rows);
  return static_cast<__mmask16>((1u << rows) - 1u);
}

// Tensor/row epilogue for one tile and token: y = ((float)(dot - sum) * ws) / s.
inline void store_scaled(const TernaryMat& w, const QActs& a, int64_t t, int64_t b, __m512i dot,
                         float* y,  // [B, ldy]
                         int64_t ldy) {
  const __m512 ws = w.scale_mode == kScaleRow ? _mm512_loadu_ps(w.scales + t * kT2Rows) : _mm512_set1_ps(w.scales[0]);
  const __m512 d = _mm512_cvtepi32_ps(_mm512_sub_epi32(dot, _mm512_set1_epi32(a.sum[b])));
  const __m512 v = _mm512_div_ps(_mm512_mul_ps(d, ws), _mm512_set1_ps(a.scale[b]));
  _mm512_mask_storeu_ps(y + b * ldy + t * kT2Rows, row_mask(w, t), v);
}

// Block-scale step for one tile, token and 256-k block j: acc = acc + (float)(dot_j - bsum) * scale.
inline __m512 block_step(const TernaryMat& w, const QActs& a, int64_t t, int64_t b, int64_t j, __m512i dot,
                         __m512 acc) {
  const int64_t nb = w.K / kScaleBlockK;
  const __m512 ws = _mm512_loadu_ps(w.scales + (t * nb + j) * kT2Rows);
  const __m512 d = _mm512_cvtepi32_ps(_mm512_sub_epi32(dot, _mm512_set1_epi32(a.bsum[b * nb + j])));
  return _mm512_add_ps(acc, _mm512_mul_ps(d, ws));
}

// ---- GEMM: T tiles x N tokens of int32 accumulators, each unpacked code register feeds N vpdpbusd. ----

// acc[i][n] += codes of tile (first + i) . q of token n over chunks [kc0, kc1).
template <int T, int N>
inline void dot_block(const uint8_t* tile0,  // [T, K/16, 64] (tile stride `tstride` bytes)
                      int64_t tstride,
                      const int8_t* q,  // [N, ldq]
                      int64_t ldq, int64_t kc0, int64_t kc1, __m512i (&out)[T][N]) {
  const __m512i m3 = _mm512_set1_epi8(3);
  __m512i acc[T][N];  // a local array, fully unrolled below, that GCC keeps in registers
  for (int i = 0; i < T; ++i)
    for (int n = 0; n < N; ++n) acc[i][n] = out[i][n];
  for (int64_t kc = kc0; kc < kc1; ++kc) {
    __m512i v[T];
#pragma GCC unroll 4
    for (int i = 0; i < T; ++i) v[i] = _mm512_loadu_si512(tile0 + i * tstride + kc * kT2ChunkBytes);
    const int8_t* qk = q + kc * kT2KStep;
#pragma GCC unroll 4
    for (int l = 0; l < 4; ++l) {
      __m512i c[T];
#pragma GCC unroll 4
      for (int i = 0; i < T; ++i) c[i] = _mm512_and_si512(l ? _mm512_srli_epi32(v[i], 2 * l) : v[i], m3);
#pragma GCC unroll 16
      for (int n = 0; n < N; ++n) {
        const __m512i x = bcast4(qk + n * ldq + 4 * l);
#pragma GCC unroll 4
        for (int i = 0; i < T; ++i) acc[i][n] = _mm512_dpbusd_epi32(acc[i][n], c[i], x);
      }
    }
  }
  for (int i = 0; i < T; ++i)
    for (int n = 0; n < N; ++n) out[i][n] = acc[i][n];
}

// Y for tiles [t, t+T) and tokens [b, b+N).
template <int T, int N>
void gemm_block(const TernaryMat& w, const QActs& a,
                float* y,  // [B, ldy]
                int64_t ldy, int64_t t, int64_t b) {
  const int64_t kchunks = w.K / kT2KStep;
  const int64_t tstride = kchunks * kT2ChunkBytes;
  const uint8_t* tile0 = w.codes + t * tstride;
  const int8_t* q = a.q + b * a.ldq;
  if (w.scale_mode == kScaleBlock) {
    // Float accumulators are touched once per 16 chunks, so they may live on the stack.
    __m512 facc[T][N];
    for (int i = 0; i < T; ++i)
      for (int n = 0; n < N; ++n) facc[i][n] = _mm512_setzero_ps();
    const int64_t nb = w.K / kScaleBlockK;
    for (int64_t j = 0; j < nb; ++j) {
      __m512i acc[T][N];
      for (int i = 0; i < T; ++i)
        for (int n = 0; n < N; ++n) acc[i][n] = _mm512_setzero_si512();
      dot_block<T, N>(tile0, tstride, q, a.ldq, j * kBlockChunks, (j + 1) * kBlockChunks, acc);
      for (int i = 0; i < T; ++i)
        for (int n = 0; n < N; ++n) facc[i][n] = block_step(w, a, t + i, b + n, j, acc[i][n], facc[i][n]);
    }
    for (int i = 0; i < T; ++i) {
      const __mmask16 mask = row_mask(w, t + i);
      for (int n = 0; n < N; ++n)
        _mm512_mask_storeu_ps(y + (b + n) * ldy + (t + i) * kT2Rows, mask,
                              _mm512_div_ps(facc[i][n], _mm512_set1_ps(a.scale[b + n])));
    }
    return;
  }
  __m512i acc[T][N];
  for (int i = 0; i < T; ++i)
    for (int n = 0; n < N; ++n) acc[i][n] = _mm512_setzero_si512();
  dot_block<T, N>(tile0, tstride, q, a.ldq, 0, kchunks, acc);
  for (int i = 0; i < T; ++i)
    for (int n = 0; n < N; ++n) store_scaled(w, a, t + i, b + n, acc[i][n], y, ldy);
}

// Register block: 4 tiles x 4 tokens = 16 accumulators + 4 code registers + broadcasts fit 32 zmm.
// 2x8, 3x4 and 4x4 measured within noise of each other at B = 128 (~85% of the vpdpbusd peak);
// 4x4 was best at B = 8.
constexpr int kGemmTiles = 4;
constexpr int kGemmTokens = 4;

using block_fn = void (*)(const TernaryMat&, const QActs&, float*, int64_t, int64_t, int64_t);

template <int T, int... Ns>
constexpr std::array<block_fn, sizeof...(Ns)> row_of(std::integer_sequence<int, Ns...>) {
  return {gemm_block<T, Ns + 1>...};
}

// ---- GEMV (B = 1): memory-bound, so the unpack must be as cheap as possible. ----
// Masking without shifting, (chunk & (3 << 2l)), gives 4^l * code: vpdpbusd accumulates each bit pair
// into its own register and the four are combined with exact arithmetic shifts. The 64*code lane
// grows 64x faster, so combine at least every kGemvSegChunks chunks: |acc3| <= 64*2*128*4*seg < 2^31.
// Tiles are walked one at a time: a single sequential stream (several concurrent tile streams measured
// 20-45% slower from DRAM), with a software prefetch into L2 8 KiB ahead (measured +3-15% from DRAM).
constexpr int64_t kGemvSegChunks = 1024;
constexpr int64_t kGemvPrefetchBytes = 8192;

// dot += codes of one tile . q over chunks [kc0, kc1), kc1 - kc0 <= kGemvSegChunks.
inline __m512i gemv_dot(const uint8_t* tile,  // [K/16, 64]
                        const int8_t* q,      // [K]
                        int64_t kc0, int64_t kc1, __m512i dot) {
  const __m512i m0 = _mm512_set1_epi8(0x03), m1 = _mm512_set1_epi8(0x0c);
  const __m512i m2 = _mm512_set1_epi8(0x30), m3 = _mm512_set1_epi8(static_cast<char>(0xc0));
  __m512i acc0 = _mm512_setzero_si512(), acc1 = acc0, acc2 = acc0, acc3 = acc0;
  for (int64_t kc = kc0; kc < kc1; ++kc) {
    const uint8_t* c = tile + kc * kT2ChunkBytes;
    _mm_prefetch(reinterpret_cast<const char*>(c + kGemvPrefetchBytes), _MM_HINT_T1);
    const __m512i v = _mm512_loadu_si512(c);
    const int8_t* qk = q + kc * kT2KStep;
    acc0 = _mm512_dpbusd_epi32(acc0, _mm512_and_si512(v, m0), bcast4(qk));
    acc1 = _mm512_dpbusd_epi32(acc1, _mm512_and_si512(v, m1), bcast4(qk + 4));
    acc2 = _mm512_dpbusd_epi32(acc2, _mm512_and_si512(v, m2), bcast4(qk + 8));
    acc3 = _mm512_dpbusd_epi32(acc3, _mm512_and_si512(v, m3), bcast4(qk + 12));
  }
  const __m512i s01 = _mm512_add_epi32(acc0, _mm512_srai_epi32(acc1, 2));
  const __m512i s23 = _mm512_add_epi32(_mm512_srai_epi32(acc2, 4), _mm512_srai_epi32(acc3, 6));
  return _mm512_add_epi32(dot, _mm512_add_epi32(s01, s23));
}

void gemv_tile(const TernaryMat& w, const QActs& a,
               float* y,  // [M]
               int64_t t) {
  const int64_t kchunks = w.K / kT2KStep;
  const uint8_t* tile = w.codes + t * kchunks * kT2ChunkBytes;
  if (w.scale_mode == kScaleBlock) {
    const int64_t nb = w.K / kScaleBlockK;
    __m512 acc = _mm512_setzero_ps();
    for (int64_t j = 0; j < nb; ++j) {
      const __m512i dot = gemv_dot(tile, a.q, j * kBlockChunks, (j + 1) * kBlockChunks, _mm512_setzero_si512());
      acc = block_step(w, a, t, 0, j, dot, acc);
    }
    _mm512_mask_storeu_ps(y + t * kT2Rows, row_mask(w, t), _mm512_div_ps(acc, _mm512_set1_ps(a.scale[0])));
    return;
  }
  __m512i dot = _mm512_setzero_si512();
  for (int64_t kc = 0; kc < kchunks; kc += kGemvSegChunks)
    dot = gemv_dot(tile, a.q, kc, std::min(kchunks, kc + kGemvSegChunks), dot);
  store_scaled(w, a, t, 0, dot, y, 0);
}

void ternary_gemm_avx512(const TernaryMat& w, const QActs& a, float* y, int64_t ldy, int64_t tile0, int64_t tile1) {
  if (a.B == 1) {
    for (int64_t t = tile0; t < tile1; ++t) gemv_tile(w, a, y, t);
    return;
  }
  static constexpr std::array<block_fn, kGemmTokens> whole = row_of<kGemmTiles>(std::make_integer_sequence<int, kGemmTokens>());
  static constexpr std::array<block_fn, kGemmTokens> single = row_of<1>(std::make_integer_sequence<int, kGemmTokens>());
  for (int64_t t = tile0; t < tile1;) {
    // Full register blocks of kGemmTiles tiles, then the leftover tiles one by one.
    const bool full = t + kGemmTiles <= tile1;
    const auto& fns = full ? whole : single;
    for (int64_t b = 0; b < a.B; b += kGemmTokens) fns[std::min<int64_t>(kGemmTokens, a.B - b) - 1](w, a, y, ldy, t, b);
    t += full ? kGemmTiles : 1;
  }
}

}  // namespace

void fill_ternary_i2_avx512(KernelTable& t, const CpuFeatures&) {
  t.ternary_gemm = ternary_gemm_avx512;
  t.v_ternary = "avx512";
}

}  // namespace bitllm
