// AVX-512 (F/BW/VL/VNNI) binary GEMM on B1R16 and column-side prep, bit-exact to binary_scalar.cpp.
//
// The 8 bytes of a row in a B1R16 chunk are that row's 64 sign bits for 64 consecutive k, bit i <->
// k = 64kc + i: exactly an AVX-512 k-mask for one 64-byte activation vector. So per row, token and
// chunk: vmovdqu8 {k}{z} (keep the activations whose weight bit is 1) and vpdpbusd against a vector
// of ones (u8 1 x s8 q, 4 bytes per int32 lane) gives pos = Σ_{bit=1} q in 16 int32 lanes: two
// instructions per 64 weights. Each mask is loaded once per chunk and used for NB tokens; each
// activation vector is loaded once per chunk and used for R rows (R x NB = 16 accumulators).
// For B >= kExpandMinTokens the bits of 4 rows x a K-block are first expanded to 0/1 bytes (one
// vmovdqu8 {k}{z} of ones each) and reused by every token: one vpdpbusd per 64 weights.
// With AVX512_VPOPCNTDQ and B <= kBitSerialMaxTokens a bit-serial path is faster still: q in
// two's-complement bit planes P_p (built once per token), pos = Σ_p c_p popcnt(W & P_p) with
// c_p = 2^p, c_7 = -128, i.e. vpandq (broadcast plane) + vpopcntq + vpaddq per plane and 8 rows.
// Measured on one Zen 4 core, 2560 x 2560: B = 1 bit-serial 48 us vs k-masks 63 us; B = 2 about 8%
// faster; B = 3 no gain. B >= 16, expanded vs k-masks: 0.33 vs 0.42 ns per (row, token, 64 weights).

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

// Reduces 16 int32x16 vectors: lane j of the result = Σ of all lanes of v[j].
inline __m512i reduce16(const __m512i (&v)[16]) {
  __m512i s[8], u[4];
  for (int i = 0; i < 8; ++i)  // per 128-bit lane: [v2i, v2i+1, v2i, v2i+1]
    s[i] = _mm512_add_epi32(_mm512_unpacklo_epi32(v[2 * i], v[2 * i + 1]),
                            _mm512_unpackhi_epi32(v[2 * i], v[2 * i + 1]));
  for (int i = 0; i < 4; ++i)  // per 128-bit lane: [v4i .. v4i+3]
    u[i] = _mm512_add_epi32(_mm512_unpacklo_epi64(s[2 * i], s[2 * i + 1]),
                            _mm512_unpackhi_epi64(s[2 * i], s[2 * i + 1]));
  // 4x4 transpose of 128-bit blocks with adds: block L of the result = Σ over the 4 blocks of u[L].
  const __m512i w01 = _mm512_add_epi32(_mm512_shuffle_i32x4(u[0], u[1], 0x44), _mm512_shuffle_i32x4(u[0], u[1], 0xEE));
  const __m512i w23 = _mm512_add_epi32(_mm512_shuffle_i32x4(u[2], u[3], 0x44), _mm512_shuffle_i32x4(u[2], u[3], 0xEE));
  return _mm512_add_epi32(_mm512_shuffle_i32x4(w01, w23, 0x88), _mm512_shuffle_i32x4(w01, w23, 0xDD));
}

constexpr int kTokenBlock = 64;       // tokens per pos[] block (expanded path)
constexpr int kExpandChunks = 64;     // K-block of the expanded path: 4096 k, 16 KB of 0/1 bytes
constexpr int64_t kExpandMinTokens = 16;  // B from which expanding the bits pays off (measured)
constexpr int64_t kBitSerialMaxTokens = 2;  // B up to which the bit-serial path wins (measured)
constexpr int64_t kPlanesMaxK = 16384;      // planes live on the stack: K bytes per token
// Software prefetch of the weight stream at B = 2 (the first token's pass reads it from memory; the second
// finds it in L1). Measured on Zen 5 (bench-prebuild, 4 rounds, 2560x2560 / 6912x2560 / 2560x6912, from
// DRAM): B = 2 1.10-1.31x at 4 KB into L1, 1.11-1.25x at 8 KB into L2; at B = 1 it lost in the 2B-4T
// 1-bit decode (53-57 -> 44-54 tok/s at 4 KB, 49-51 at 8 KB, 5 alternated rounds), so B = 1 has none.
constexpr int64_t kBitSerialPrefetchBytes = 4096;

// acc + vpdpbusd(u8 a, s8 b). GCC 12 compiles the intrinsic on arrays of accumulators into a register
// copy per call plus spills (it does not keep the tied operand in place); the asm form keeps each
// accumulator in its register across the loop (measured on Zen 4: 3% faster at B = 1, 10% at B = 4,
// 16% at B = 128).
inline __m512i dpbusd(__m512i acc, __m512i a, __m512i b) {
#if defined(__GNUC__)
  asm("vpdpbusd %2, %1, %0" : "+v"(acc) : "v"(a), "v"(b));
  return acc;
#else
  return _mm512_dpbusd_epi32(acc, a, b);
#endif
}

inline __mmask64 load_mask(const uint8_t* p) {
  uint64_t m;
  std::memcpy(&m, p, 8);
  return _cvtu64_mask64(m);
}

// Direct path: pos[i][r0 + r] = Σ_{bit(r0+r, k)=1} q[i][k] for R rows from r0 of one tile and NB
// tokens, selecting the activations with each row's k-mask.
template <int R, int NB>
void pos_direct(const uint8_t* tile,  // [K/64, 128]
                int64_t kchunks, int r0,
                const int8_t* const* q,  // NB x [K]
                int32_t (*pos)[kB1Rows]) {  // [NB, 16]
  static_assert(R * NB <= 16, "16 accumulators");
  const __m512i ones = _mm512_set1_epi8(1);
  __m512i acc[16];
  for (int j = 0; j < 16; ++j) acc[j] = _mm512_setzero_si512();
  for (int64_t kc = 0; kc < kchunks; ++kc) {
    const uint8_t* c = tile + kc * kB1ChunkBytes + 8 * r0;  // [R, 8]
    __m512i x[NB];
    for (int i = 0; i < NB; ++i) x[i] = _mm512_loadu_si512(q[i] + kc * kB1KStep);
    for (int r = 0; r < R; ++r) {
      const __mmask64 k = load_mask(c + 8 * r);
      for (int i = 0; i < NB; ++i)
        acc[r * NB + i] = dpbusd(acc[r * NB + i], ones, _mm512_maskz_mov_epi8(k, x[i]));
    }
  }
  alignas(64) int32_t out[16];
  _mm512_store_si512(out, reduce16(acc));
  for (int r = 0; r < R; ++r)
    for (int i = 0; i < NB; ++i) pos[i][r0 + r] = out[r * NB + i];
}

// Expanded path: pos[i][r0 + r] += Σ_k w01[c][r][k] * q[i][k] over n chunks of 4 rows whose bits were
// expanded to 0/1 bytes (u8) once for every token of the block: one vpdpbusd per 64 weights.
template <int NB>
void pos_expanded(const uint8_t (*w01)[4][64],  // [n, 4, 64]
                  int64_t n, int r0, int i0,
                  const int8_t* const* q,  // NB x [n * 64], already offset to the K-block
                  int32_t (*pos)[kB1Rows]) {  // [i0 + NB, 16]
  __m512i acc[16];
  for (int j = 0; j < 16; ++j) acc[j] = _mm512_setzero_si512();
  for (int64_t c = 0; c < n; ++c) {
    __m512i x[NB];
    for (int i = 0; i < NB; ++i) x[i] = _mm512_loadu_si512(q[i] + c * kB1KStep);
    for (int r = 0; r < 4; ++r) {
      const __m512i wv = _mm512_load_si512(w01[c][r]);
      for (int i = 0; i < NB; ++i) acc[r * NB + i] = dpbusd(acc[r * NB + i], wv, x[i]);
    }
  }
  alignas(64) int32_t out[16];
  _mm512_store_si512(out, reduce16(acc));
  for (int r = 0; r < 4; ++r)
    for (int i = 0; i < NB; ++i) pos[i0 + i][r0 + r] += out[r * NB + i];
}

// y for token b of tile t from its 16 row sums (binary.h epilogue, 16 rows at once).
inline void epilogue(const BinaryMat& w, const QActs& a, const float* tok_bias, float* y, int64_t ldy, int64_t t,
                     int64_t b, const int32_t* pos) {  // [16]
  const int64_t m0 = t * kB1Rows;
  const int rows = static_cast<int>(std::min<int64_t>(kB1Rows, w.M - m0));
  const __mmask16 live = static_cast<__mmask16>((1u << rows) - 1);
  const __m512 ws = w.scale_mode == kScaleRow ? _mm512_maskz_loadu_ps(live, w.scales + m0) : _mm512_set1_ps(w.scales[0]);
  const __m512i p = _mm512_loadu_si512(pos);
  const __m512i dot = _mm512_sub_epi32(_mm512_add_epi32(p, p), _mm512_set1_epi32(a.sum[b]));
  __m512 v = _mm512_div_ps(_mm512_mul_ps(_mm512_cvtepi32_ps(dot), ws), _mm512_set1_ps(a.scale[b]));
  if (tok_bias) v = _mm512_add_ps(v, _mm512_set1_ps(tok_bias[b]));
  _mm512_mask_storeu_ps(y + b * ldy + m0, live, v);
}

// Tile t for NB (<= 4) tokens from b0 on the direct path.
template <int NB>
void tile_direct(const BinaryMat& w, const QActs& a, const float* tok_bias, float* y, int64_t ldy, int64_t t,
                 int64_t b0) {
  constexpr int R = NB == 1 ? 16 : (NB == 2 ? 8 : 4);
  const int64_t kchunks = w.K / kB1KStep;
  const uint8_t* tile = w.bits + t * kchunks * kB1ChunkBytes;  // [K/64, 128]
  const int rows = static_cast<int>(std::min<int64_t>(kB1Rows, w.M - t * kB1Rows));
  const int8_t* q[NB];
  for (int i = 0; i < NB; ++i) q[i] = a.q + (b0 + i) * a.ldq;
  alignas(64) int32_t pos[NB][kB1Rows] = {};  // rows past M stay 0
  for (int r0 = 0; r0 < rows; r0 += R) pos_direct<R, NB>(tile, kchunks, r0, q, pos);
  for (int i = 0; i < NB; ++i) epilogue(w, a, tok_bias, y, ldy, t, b0 + i, pos[i]);
}

// Tile t for nt <= kTokenBlock tokens from b0 on the expanded path: per 4 rows and K-block, the bits
// become 0/1 bytes once, then every 4 tokens run 16 vpdpbusd accumulators over them.
void tile_expanded(const BinaryMat& w, const QActs& a, const float* tok_bias, float* y, int64_t ldy, int64_t t,
                   int64_t b0, int64_t nt) {
  const int64_t kchunks = w.K / kB1KStep;
  const uint8_t* tile = w.bits + t * kchunks * kB1ChunkBytes;  // [K/64, 128]
  const int rows = static_cast<int>(std::min<int64_t>(kB1Rows, w.M - t * kB1Rows));
  const __m512i ones = _mm512_set1_epi8(1);
  alignas(64) uint8_t w01[kExpandChunks][4][64];
  alignas(64) int32_t pos[kTokenBlock][kB1Rows] = {};
  for (int r0 = 0; r0 < rows; r0 += 4) {
    for (int64_t kb = 0; kb < kchunks; kb += kExpandChunks) {
      const int64_t n = std::min<int64_t>(kExpandChunks, kchunks - kb);
      for (int64_t c = 0; c < n; ++c)
        for (int r = 0; r < 4; ++r)
          _mm512_store_si512(w01[c][r], _mm512_maskz_mov_epi8(load_mask(tile + (kb + c) * kB1ChunkBytes + 8 * (r0 + r)), ones));
      for (int64_t i0 = 0; i0 < nt; i0 += 4) {
        const int8_t* q[4];
        const int nb = static_cast<int>(std::min<int64_t>(4, nt - i0));
        for (int i = 0; i < nb; ++i) q[i] = a.q + (b0 + i0 + i) * a.ldq + kb * kB1KStep;
        const int ii = static_cast<int>(i0);
        switch (nb) {
          case 4: pos_expanded<4>(w01, n, r0, ii, q, pos); break;
          case 3: pos_expanded<3>(w01, n, r0, ii, q, pos); break;
          case 2: pos_expanded<2>(w01, n, r0, ii, q, pos); break;
          default: pos_expanded<1>(w01, n, r0, ii, q, pos); break;
        }
      }
    }
  }
  for (int64_t i = 0; i < nt; ++i) epilogue(w, a, tok_bias, y, ldy, t, b0 + i, pos[i]);
}

void binary_gemm_avx512(const BinaryMat& w, const QActs& a, const float* tok_bias, float* y, int64_t ldy,
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

// Bit planes of one token: planes[kc * 8 + p] bit i = bit p of q[64 kc + i].
void build_planes(const int8_t* q,  // [K]
                  int64_t kchunks,
                  uint64_t* planes) {  // [K/64, 8]
  for (int64_t kc = 0; kc < kchunks; ++kc) {
    const __m512i x = _mm512_loadu_si512(q + kc * kB1KStep);
    for (int p = 0; p < 8; ++p)
      planes[kc * 8 + p] = _cvtmask64_u64(_mm512_test_epi8_mask(x, _mm512_set1_epi8(static_cast<char>(1u << p))));
  }
}

// pos of the 16 rows of tile t for one token from its planes: 2 row groups x 8 planes of int64
// popcount accumulators (|count| <= K), combined with the plane weights at the end.
// pf_end: prefetch the weight stream kBitSerialPrefetchBytes ahead (into L1), up to pf_end; null: none.
__attribute__((target("avx512vpopcntdq"))) void pos_bitserial(const uint8_t* tile,  // [K/64, 128]
                                                              int64_t kchunks,
                                                              const uint64_t* planes,  // [K/64, 8]
                                                              int32_t* pos,            // [16]
                                                              const uint8_t* pf_end) {
  __m512i acc[2][8];
  for (int g = 0; g < 2; ++g)
    for (int p = 0; p < 8; ++p) acc[g][p] = _mm512_setzero_si512();
  for (int64_t kc = 0; kc < kchunks; ++kc) {
    if (pf_end) {
      const uint8_t* pf = tile + kc * kB1ChunkBytes + kBitSerialPrefetchBytes;
      if (pf + kB1ChunkBytes <= pf_end) {
        _mm_prefetch(reinterpret_cast<const char*>(pf), _MM_HINT_T0);
        _mm_prefetch(reinterpret_cast<const char*>(pf + 64), _MM_HINT_T0);
      }
    }
    const __m512i w0 = _mm512_loadu_si512(tile + kc * kB1ChunkBytes);       // rows 0-7, one qword each
    const __m512i w1 = _mm512_loadu_si512(tile + kc * kB1ChunkBytes + 64);  // rows 8-15
    for (int p = 0; p < 8; ++p) {
      const __m512i pl = _mm512_set1_epi64(static_cast<int64_t>(planes[kc * 8 + p]));
      acc[0][p] = _mm512_add_epi64(acc[0][p], _mm512_popcnt_epi64(_mm512_and_si512(w0, pl)));
      acc[1][p] = _mm512_add_epi64(acc[1][p], _mm512_popcnt_epi64(_mm512_and_si512(w1, pl)));
    }
  }
  for (int g = 0; g < 2; ++g) {
    __m512i s = _mm512_sub_epi64(_mm512_setzero_si512(), _mm512_slli_epi64(acc[g][7], 7));
    for (int p = 0; p < 7; ++p) s = _mm512_add_epi64(s, _mm512_slli_epi64(acc[g][p], p));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(pos + 8 * g), _mm512_cvtepi64_epi32(s));
  }
}

// The AVX512_VPOPCNTDQ entry: bit-serial for small B (planes of all B tokens built first, then each
// tile's weights stay in L1 across the tokens), the k-mask paths otherwise.
__attribute__((target("avx512vpopcntdq"))) void binary_gemm_avx512_vpopcnt(const BinaryMat& w, const QActs& a,
                                                                          const float* tok_bias, float* y,
                                                                          int64_t ldy, int64_t tile0, int64_t tile1) {
  if (a.B > kBitSerialMaxTokens || w.K > kPlanesMaxK) {
    binary_gemm_avx512(w, a, tok_bias, y, ldy, tile0, tile1);
    return;
  }
  const int64_t kchunks = w.K / kB1KStep;
  alignas(64) uint64_t planes[kBitSerialMaxTokens][kPlanesMaxK / kB1KStep * 8];
  for (int64_t b = 0; b < a.B; ++b) build_planes(a.q + b * a.ldq, kchunks, planes[b]);
  const uint8_t* end = w.bits + tile1 * kchunks * kB1ChunkBytes;  // prefetch stops at this thread's range
  for (int64_t t = tile0; t < tile1; ++t) {
    const uint8_t* tile = w.bits + t * kchunks * kB1ChunkBytes;  // [K/64, 128]
    for (int64_t b = 0; b < a.B; ++b) {
      alignas(64) int32_t pos[kB1Rows];
      pos_bitserial(tile, kchunks, planes[b], pos, a.B > 1 && b == 0 ? end : nullptr);
      epilogue(w, a, tok_bias, y, ldy, t, b, pos);
    }
  }
}

void binary_prep_avx512(const float* x, int64_t ldx, int64_t B, int64_t K, const float* col_scale,
                        const float* col_bias, float* xs, int64_t ldxs, float* tok_bias) {
  const int64_t k16 = K & ~int64_t{15};
  const __mmask16 tail = static_cast<__mmask16>((1u << (K - k16)) - 1);
  for (int64_t b = 0; b < B; ++b) {
    const float* xr = x + b * ldx;  // [K]
    float* xo = xs + b * ldxs;      // [K]
    __m512 p = _mm512_setzero_ps();  // lane l: Σ over k ≡ l (mod 16), in k order
    for (int64_t k = 0; k < k16; k += 16) {
      const __m512 xv = _mm512_loadu_ps(xr + k);
      _mm512_storeu_ps(xo + k, col_scale ? _mm512_mul_ps(xv, _mm512_loadu_ps(col_scale + k)) : xv);
      if (col_bias) p = _mm512_add_ps(p, _mm512_mul_ps(_mm512_loadu_ps(col_bias + k), xv));
    }
    if (tail) {
      // Masked-off lanes load +0: they add +0 * +0 = +0, which leaves p unchanged (p is never -0).
      const __m512 xv = _mm512_maskz_loadu_ps(tail, xr + k16);
      _mm512_mask_storeu_ps(xo + k16, tail, col_scale ? _mm512_mul_ps(xv, _mm512_maskz_loadu_ps(tail, col_scale + k16)) : xv);
      if (col_bias) p = _mm512_add_ps(p, _mm512_mul_ps(_mm512_maskz_loadu_ps(tail, col_bias + k16), xv));
    }
    if (col_bias) {
      const __m256 hi = _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(p), 1));
      __m256 h8 = _mm256_add_ps(_mm512_castps512_ps256(p), hi);
      __m128 h4 = _mm_add_ps(_mm256_castps256_ps128(h8), _mm256_extractf128_ps(h8, 1));
      __m128 h2 = _mm_add_ps(h4, _mm_movehl_ps(h4, h4));
      tok_bias[b] = _mm_cvtss_f32(_mm_add_ss(h2, _mm_shuffle_ps(h2, h2, 1)));
    }
  }
}

}  // namespace

void fill_binary_avx512(KernelTable& t, const CpuFeatures& f) {
  t.binary_gemm = f.avx512vpopcntdq ? binary_gemm_avx512_vpopcnt : binary_gemm_avx512;
  t.binary_prep = binary_prep_avx512;
  t.v_binary = "avx512";
}

}  // namespace bitllm
