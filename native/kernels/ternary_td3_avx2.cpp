// TD3 GEMM, AVX2 variant (bit-exact to ternary_td3_scalar.cpp and ternary_gemm). A quad's 64 nibble
// bytes are two ymm halves (rows 0..7, 8..15). Per half: vpshufb(kTd3Decode, nibble) gives the packed
// byte c0 | c1 << 2 | c2 << 4; the sign bit of the slot (S[p] bit i, moved to bit 7 by a 16-bit left
// shift) selects 42 - byte with vpblendvb; the three fields, shifted down and masked to codes 0..2,
// feed vpmaddubsw against 4 activation bytes repeated over the lane, like the T2R16 AVX2 kernel.
// int16 accumulators take 64 maddubs results per 256-column block (10 units x 6 + a tail of 4), each a
// sum of 2 products in [-512, 508]: [-32768, 32512] fits exactly; they are widened (vpmaddwd by 1) at
// every block end, so dots are exact and the float epilogue repeats the contract's ops one by one.
#include <immintrin.h>

#include <cstring>
#include <type_traits>
#include <utility>

#include "kernels.h"

namespace bitllm {

namespace {

constexpr int kHalfRows = 8;
constexpr int kBlockGroups = kScaleBlockK / 4;  // 4-column groups per block

// Per token: the block's activations as 64 ymm of one 4-byte group repeated 8 times (vpmaddubsw reads
// its signed operand from memory, no broadcast per use).
struct BlockActs {
  alignas(32) int8_t x[kBlockGroups][32];
};

inline void expand_block(const int8_t* q,  // [cols] the token's activations of one block
                         int64_t cols, BlockActs& out) {
  for (int64_t g = 0; g < cols / 4; ++g) {
    int32_t v;
    std::memcpy(&v, q + 4 * g, 4);
    _mm256_store_si256(reinterpret_cast<__m256i*>(out.x[g]), _mm256_set1_epi32(v));
  }
}

inline const __m256i* xg(const BlockActs& xb, int64_t col) {  // the group starting at block column col
  return reinterpret_cast<const __m256i*>(xb.x[col / 4]);
}

template <int... Qs, typename F>
inline void for_quads(std::integer_sequence<int, Qs...>, F&& f) {
  (f(std::integral_constant<int, Qs>()), ...);
}
template <typename F>
inline void each_quad(F&& f) {
  for_quads(std::make_integer_sequence<int, kTd3Quads>(), f);
}

// Empty asm that "modifies" v in a register: keeps GCC from reassociating accumulator adds into trees
// that need more than 16 ymm registers (as in the T2R16 AVX2 kernel).
inline void pin(__m256i& v) { __asm__("" : "+x"(v)); }

// Sign-corrected packed bytes of one half of a quad: low (H = 0) or high (H = 1) nibbles of w, sign
// bit `bit` of the sign plane half s.
template <int Q, int H>
inline __m256i decode(__m256i w, __m256i s, __m256i table, __m256i c42) {
  constexpr int bit = td3_sign_bit(Q, H);
  const __m256i m0f = _mm256_set1_epi8(0x0f);
  const __m256i nib = _mm256_and_si256(H ? _mm256_srli_epi16(w, 4) : w, m0f);
  const __m256i r = _mm256_shuffle_epi8(table, nib);
  const __m256i neg = bit == 7 ? s : _mm256_slli_epi16(s, 7 - bit);
  return _mm256_blendv_epi8(r, _mm256_sub_epi8(c42, r), neg);
}

// Code D (0..2) of packed bytes r (3 fields) or T2R16 bytes (4 fields).
template <int D>
inline __m256i field(__m256i r) {
  const __m256i m3 = _mm256_set1_epi8(3);
  return _mm256_and_si256(D ? _mm256_srli_epi16(r, 2 * D) : r, m3);
}

// acc += Σ_d maddubs(code d of r, activations of group x[d]).
template <int NF>
inline __m256i fields_dot(__m256i r, const __m256i* x, __m256i acc) {
  acc = _mm256_add_epi16(acc, _mm256_maddubs_epi16(field<0>(r), _mm256_load_si256(x)));
  acc = _mm256_add_epi16(acc, _mm256_maddubs_epi16(field<1>(r), _mm256_load_si256(x + 1)));
  acc = _mm256_add_epi16(acc, _mm256_maddubs_epi16(field<2>(r), _mm256_load_si256(x + 2)));
  if constexpr (NF == 4) acc = _mm256_add_epi16(acc, _mm256_maddubs_epi16(field<3>(r), _mm256_load_si256(x + 3)));
  return acc;
}

inline __m256 rows_mask_load(const float* p, int64_t rows) {  // rows 0..8 valid
  const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  return _mm256_maskload_ps(p, _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int32_t>(rows)), lane));
}

inline void store_rows(float* y, int64_t rows, __m256 v) {
  if (rows >= kHalfRows) {
    _mm256_storeu_ps(y, v);
  } else if (rows > 0) {
    const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    _mm256_maskstore_ps(y, _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int32_t>(rows)), lane), v);
  }
}

// Per-row state of one tile and token between blocks, and the contract's epilogue.
struct RowState {
  alignas(32) int32_t dot[kTd3Rows];
  alignas(32) float facc[kTd3Rows];
};

// Folds block j's int16 accumulator of (quad q, half h2) into the state.
inline void fold(const TernaryTd3Mat& w, const QActs& a, int64_t t, int64_t b, int64_t j, int q, int h2,
                 __m256i acc16, RowState& st) {
  const __m256i d = _mm256_madd_epi16(acc16, _mm256_set1_epi16(1));
  const int r0 = q * kTd3QuadRows + h2 * kHalfRows;
  if (w.scale_mode == kScaleBlock) {
    // acc = acc + (float)(dot_j - bsum_j) * d_j
    const int64_t nsb = w.K / kScaleBlockK, m0 = t * kTd3Rows + r0;
    if (m0 >= w.M) return;  // scales exist only for quads with rows below M
    const __m256 ws = _mm256_loadu_ps(w.scales + ((t * kTd3Quads + q) * nsb + j) * kT2Rows + h2 * kHalfRows);
    const __m256i bs = _mm256_set1_epi32(a.bsum[b * nsb + j]);
    const __m256 f = _mm256_load_ps(st.facc + r0);
    _mm256_store_ps(st.facc + r0, _mm256_add_ps(f, _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_sub_epi32(d, bs)), ws)));
  } else {
    __m256i* p = reinterpret_cast<__m256i*>(st.dot + r0);
    _mm256_store_si256(p, _mm256_add_epi32(_mm256_load_si256(p), d));
  }
}

inline void finish(const TernaryTd3Mat& w, const QActs& a, int64_t t, int64_t b, const RowState& st, float* y) {
  const __m256 s = _mm256_set1_ps(a.scale[b]);
  for (int r0 = 0; r0 < kTd3Rows; r0 += kHalfRows) {
    const int64_t m0 = t * kTd3Rows + r0, rows = w.M - m0;
    if (rows <= 0) break;
    __m256 v;
    if (w.scale_mode == kScaleBlock) {
      v = _mm256_div_ps(_mm256_load_ps(st.facc + r0), s);
    } else {
      // y = ((float)(dot - sum) * ws) / s; row scales exist for rows < Mp16
      const __m256 ws = w.scale_mode == kScaleRow ? _mm256_loadu_ps(w.scales + m0) : _mm256_set1_ps(w.scales[0]);
      const __m256i d = _mm256_sub_epi32(_mm256_load_si256(reinterpret_cast<const __m256i*>(st.dot + r0)),
                                         _mm256_set1_epi32(a.sum[b]));
      v = _mm256_div_ps(_mm256_mul_ps(_mm256_cvtepi32_ps(d), ws), s);
    }
    store_rows(y + m0, rows, v);
  }
}

constexpr int64_t kPrefetchBytes = 8192;

// ---- GEMV (B = 1): per block, quads 0-1 then 2-3 (4 int16 accumulators in registers per pass). ----
void gemv_tile(const TernaryTd3Mat& w, const QActs& a, float* y, int64_t t, const uint8_t* end) {
  const int64_t nb = td3_blocks(w.K);
  const uint8_t* tile = w.data + t * td3_tile_bytes(w.K);
  const __m256i table = _mm256_broadcastsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(kTd3Decode)));
  const __m256i c42 = _mm256_set1_epi8(kTd3Negate);
  RowState st;
  std::memset(&st, 0, sizeof st);
  BlockActs xb;
  for (int64_t j = 0; j < nb; ++j) {
    const uint8_t* blk = tile + td3_block_offset(j);
    expand_block(a.q + j * kScaleBlockK, td3_block_cols(w.K, j), xb);
    const int units = td3_block_units(w.K, j), tails = td3_block_tails(w.K, j);
    // The whole block 8 KB ahead (tails included: a line missed there stalls the stream).
    {
      const int64_t bytes = td3_block_bytes(w.K, j);
      if (blk + kPrefetchBytes + bytes <= end)
        for (int64_t l = 0; l < bytes; l += 64) _mm_prefetch(reinterpret_cast<const char*>(blk + kPrefetchBytes + l), _MM_HINT_T1);
    }
    // Two passes over the block (its 3.4 KB stay in L1): quads 0, 1 then 2, 3, so the 4 int16
    // accumulators of a pass stay in registers.
    const auto pass = [&](auto pc) {
      constexpr int P = decltype(pc)::value;
      __m256i acc[2][2];
      for (int i = 0; i < 2; ++i) acc[i][0] = acc[i][1] = _mm256_setzero_si256();
      for (int u = 0; u < units; ++u) {
        const uint8_t* unit = blk + int64_t{u} * kTd3UnitBytes;
        const int64_t col = int64_t{u} * kTd3UnitK;
#pragma GCC unroll 2
        for (int h2 = 0; h2 < 2; ++h2) {
          const __m256i s = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(unit + 32 * h2));
          const auto quad = [&](auto qc) {
            constexpr int Q = 2 * P + decltype(qc)::value, i = decltype(qc)::value;
            const __m256i wv = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(unit + 64 + 64 * Q + 32 * h2));
            acc[i][h2] = fields_dot<3>(decode<Q, 0>(wv, s, table, c42), xg(xb, col), acc[i][h2]);
            acc[i][h2] = fields_dot<3>(decode<Q, 1>(wv, s, table, c42), xg(xb, col + 12), acc[i][h2]);
            pin(acc[i][h2]);
          };
          quad(std::integral_constant<int, 0>());
          quad(std::integral_constant<int, 1>());
        }
      }
      for (int c = 0; c < tails; ++c) {
        const uint8_t* tail = blk + int64_t{units} * kTd3UnitBytes + int64_t{c} * kTd3TailBytes;
        const int64_t col = int64_t{units} * kTd3UnitK + int64_t{c} * kTd3TailK;
        for (int i = 0; i < 2; ++i)
          for (int h2 = 0; h2 < 2; ++h2) {
            const __m256i v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(tail + 64 * (2 * P + i) + 32 * h2));
            acc[i][h2] = fields_dot<4>(v, xg(xb, col), acc[i][h2]);
          }
      }
      for (int i = 0; i < 2; ++i)
        for (int h2 = 0; h2 < 2; ++h2) fold(w, a, t, 0, j, 2 * P + i, h2, acc[i][h2], st);
    };
    pass(std::integral_constant<int, 0>());
    pass(std::integral_constant<int, 1>());
  }
  finish(w, a, t, 0, st, y);
}

// ---- GEMM (B > 1): per block, one quad at a time (its bytes are in L1), 2 halves x N tokens. ----
// pf: prefetch each block 8 KB ahead as gemv_tile does (the tile's first token group reads it from memory,
// the later groups find it in L2).
template <int N>
void gemm_tile(const TernaryTd3Mat& w, const QActs& a, float* y, int64_t ldy, int64_t t, int64_t b0, const uint8_t* end,
               bool pf) {
  const int64_t nb = td3_blocks(w.K);
  const uint8_t* tile = w.data + t * td3_tile_bytes(w.K);
  const __m256i table = _mm256_broadcastsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(kTd3Decode)));
  const __m256i c42 = _mm256_set1_epi8(kTd3Negate);
  RowState st[N];
  std::memset(st, 0, sizeof st);
  BlockActs xb[N];
  for (int64_t j = 0; j < nb; ++j) {
    const uint8_t* blk = tile + td3_block_offset(j);
    for (int n = 0; n < N; ++n) expand_block(a.q + (b0 + n) * a.ldq + j * kScaleBlockK, td3_block_cols(w.K, j), xb[n]);
    const int units = td3_block_units(w.K, j), tails = td3_block_tails(w.K, j);
    if (pf) {
      const int64_t bytes = td3_block_bytes(w.K, j);
      if (blk + kPrefetchBytes + bytes <= end)
        for (int64_t l = 0; l < bytes; l += 64) _mm_prefetch(reinterpret_cast<const char*>(blk + kPrefetchBytes + l), _MM_HINT_T1);
    }
    each_quad([&](auto qc) {
      constexpr int Q = decltype(qc)::value;
      __m256i acc[2][N];
      for (int h2 = 0; h2 < 2; ++h2)
        for (int n = 0; n < N; ++n) acc[h2][n] = _mm256_setzero_si256();
      const auto feed = [&](int h2, __m256i r, int64_t col, auto nf) {
        constexpr int NF = decltype(nf)::value;
        __m256i c[NF];
        c[0] = field<0>(r);
        c[1] = field<1>(r);
        c[2] = field<2>(r);
        if constexpr (NF == 4) c[3] = field<3>(r);
#pragma GCC unroll 4
        for (int d = 0; d < NF; ++d)
#pragma GCC unroll 4
          for (int n = 0; n < N; ++n) {
            acc[h2][n] = _mm256_add_epi16(acc[h2][n], _mm256_maddubs_epi16(c[d], _mm256_load_si256(xg(xb[n], col) + d)));
            pin(acc[h2][n]);
          }
      };
      for (int u = 0; u < units; ++u) {
        const uint8_t* unit = blk + int64_t{u} * kTd3UnitBytes;
        const int64_t col = int64_t{u} * kTd3UnitK;
#pragma GCC unroll 2
        for (int h2 = 0; h2 < 2; ++h2) {
          const __m256i s = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(unit + 32 * h2));
          const __m256i wv = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(unit + 64 + 64 * Q + 32 * h2));
          feed(h2, decode<Q, 0>(wv, s, table, c42), col, std::integral_constant<int, 3>());
          feed(h2, decode<Q, 1>(wv, s, table, c42), col + 12, std::integral_constant<int, 3>());
        }
      }
      for (int c = 0; c < tails; ++c) {
        const uint8_t* tail = blk + int64_t{units} * kTd3UnitBytes + int64_t{c} * kTd3TailBytes;
        const int64_t col = int64_t{units} * kTd3UnitK + int64_t{c} * kTd3TailK;
        for (int h2 = 0; h2 < 2; ++h2)
          feed(h2, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(tail + 64 * Q + 32 * h2)), col,
               std::integral_constant<int, 4>());
      }
      for (int h2 = 0; h2 < 2; ++h2)
        for (int n = 0; n < N; ++n) fold(w, a, t, b0 + n, j, Q, h2, acc[h2][n], st[n]);
    });
  }
  for (int n = 0; n < N; ++n) finish(w, a, t, b0 + n, st[n], y + (b0 + n) * ldy);
}

// ---- Decode of one tile to T2R16 (ternary_td3_to_t2_fn), for the batched GEMM. ----
void td3_to_t2_avx2(const uint8_t* td3, int64_t K, int quads, uint8_t* codes) {
  const int64_t nb = td3_blocks(K), kchunks = K / kT2KStep;
  const __m256i table = _mm256_broadcastsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(kTd3Decode)));
  const __m256i c42 = _mm256_set1_epi8(kTd3Negate);
  const __m256i mc0 = _mm256_set1_epi8(static_cast<char>(0xc0)), m0f = _mm256_set1_epi8(0x0f);
  const __m256i mf0 = _mm256_set1_epi8(static_cast<char>(0xf0)), m03 = _mm256_set1_epi8(0x03);
  for (int64_t j = 0; j < nb; ++j) {
    const uint8_t* blk = td3 + td3_block_offset(j);
    const int units = td3_block_units(K, j), tails = td3_block_tails(K, j);
    const int64_t c0 = j * (kScaleBlockK / kT2KStep);
    for (int u = 0; u < units; u += 2) {
      const uint8_t* u0 = blk + int64_t{u} * kTd3UnitBytes;
      const uint8_t* u1 = u0 + kTd3UnitBytes;
      const int64_t kc = c0 + 3 * (u / 2);
      for (int h2 = 0; h2 < 2; ++h2) {
        const __m256i s0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(u0 + 32 * h2));
        const __m256i s1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(u1 + 32 * h2));
        each_quad([&](auto qc) {
          constexpr int Q = decltype(qc)::value;
          if (Q >= quads) return;
          const __m256i w0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(u0 + 64 + 64 * Q + 32 * h2));
          const __m256i w1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(u1 + 64 + 64 * Q + 32 * h2));
          const __m256i lo = decode<Q, 0>(w0, s0, table, c42), hi = decode<Q, 1>(w0, s0, table, c42);
          const __m256i lo1 = decode<Q, 0>(w1, s1, table, c42), hi1 = decode<Q, 1>(w1, s1, table, c42);
          uint8_t* out = codes + (Q * kchunks + kc) * kT2ChunkBytes + 32 * h2;
          const auto st = [](uint8_t* p, __m256i v) { _mm256_storeu_si256(reinterpret_cast<__m256i*>(p), v); };
          st(out, _mm256_or_si256(lo, _mm256_and_si256(_mm256_slli_epi16(hi, 6), mc0)));
          st(out + 64, _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(hi, 2), m0f),
                                       _mm256_and_si256(_mm256_slli_epi16(lo1, 4), mf0)));
          st(out + 128, _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(lo1, 4), m03), _mm256_slli_epi16(hi1, 2)));
        });
      }
    }
    for (int c = 0; c < tails; ++c) {
      const uint8_t* tail = blk + int64_t{units} * kTd3UnitBytes + int64_t{c} * kTd3TailBytes;
      const int64_t kc = c0 + 3 * (units / 2) + c;
      for (int q = 0; q < quads; ++q) std::memcpy(codes + (q * kchunks + kc) * kT2ChunkBytes, tail + 64 * q, kT2ChunkBytes);
    }
  }
}

constexpr int kGemmTokens = 4;

void td3_gemm_avx2(const TernaryTd3Mat& w, const QActs& a, float* y, int64_t ldy, int64_t tile0, int64_t tile1) {
  const uint8_t* end = w.data + tile1 * td3_tile_bytes(w.K);  // prefetch stops at this thread's range
  if (a.B == 1) {
    for (int64_t t = tile0; t < tile1; ++t) gemv_tile(w, a, y, t, end);
    return;
  }
  for (int64_t t = tile0; t < tile1; ++t) {
    for (int64_t b = 0; b < a.B; b += kGemmTokens) {
      const bool pf = b == 0;
      switch (a.B - b < kGemmTokens ? a.B - b : kGemmTokens) {
        case 1: gemm_tile<1>(w, a, y, ldy, t, b, end, pf); break;
        case 2: gemm_tile<2>(w, a, y, ldy, t, b, end, pf); break;
        case 3: gemm_tile<3>(w, a, y, ldy, t, b, end, pf); break;
        default: gemm_tile<4>(w, a, y, ldy, t, b, end, pf); break;
      }
    }
  }
}

}  // namespace

void fill_ternary_td3_avx2(KernelTable& t, const CpuFeatures&) {
  t.ternary_td3_gemm = td3_gemm_avx2;
  t.ternary_td3_to_t2 = td3_to_t2_avx2;
  t.v_ternary_td3 = "avx2";
}

}  // namespace bitllm
