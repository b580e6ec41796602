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
// B = 1: two tiles go together, sharing each broadcast (two independent vpdpbusd chains). B > 1: one
// tile and up to 4 tokens per pass, sharing each group's mask words and sign bytes.

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

inline __mmask64 load_mask(const uint8_t* p) {  // p: [8]
  uint64_t v;
  std::memcpy(&v, p, 8);
  return _cvtu64_mask64(v);
}

// Software prefetch kPrefetch bytes ahead of each tile's stream: a B = 1 pass reads NT tiles of a few KB
// to a few tens of KB each, too short for the hardware prefetcher to ramp up (measured: 1.42 -> 1.12 ns
// per 16 x 4 group, 2560 x 6912 from DRAM, one thread). The g loop prefetches 16 lines spread over the
// block's record, so that block j + 1 of the stream is ahead by the same distance.
constexpr int kPrefetch = 2048;

inline void prefetch_step(const uint8_t* rec, int g, int step) {  // every other group g of a block record
  // asm: GCC 12 -O3 deletes these _mm_prefetch calls (it keeps them at -O1).
  if ((g & 1) == 0) asm volatile("prefetcht0 %0" : : "m"(*(rec + kPrefetch + (g >> 1) * step)));
}

inline int prefetch_stride(int ng) { return static_cast<int>((billm_block_bytes(ng) + 15) / 16); }

// acc + a (u8) · b (s8) in each int32 lane, as inline asm: with _mm512_dpbusd_epi32, GCC 12 copies the
// accumulators of the unrolled chains to fresh registers and back on every iteration, and the prefetches
// gain nothing (measured: 2560 x 6912 from DRAM, one thread, 0.43 ms either way, 0.33 ms with both).
inline __m512i dpbusd(__m512i acc, __m512i a, __m512i b) {
  asm("vpdpbusd %[b], %[a], %[acc]" : [acc] "+v"(acc) : [a] "v"(a), [b] "v"(b));
  return acc;
}

inline __m512i bcast4(const int8_t* p) {  // p: [4]
  int32_t v;
  std::memcpy(&v, p, 4);
  return _mm512_set1_epi32(v);
}

// The contract's float epilogue for the 16 rows of a tile (lanes = rows): 8 products n[l]·f[l], folded
// 8 -> 4 -> 2 -> 1 (the block's term t, added to acc by the caller). The sums arrive pre-offset, so that
// the integer part is three subtractions: the accumulators of T, PS and PR start at SS - Q, -SS and -SS,
// T, PB, PS and PR count each column twice (byte weight 2), GB once:
//   t2 = 2T + SS - Q,  pb2 = 2PB,  gb = GB,  n0 = 2PS - SS,  n1 = 2PR - SS
//   n6 = pb2 - gb = 2PB - GB,  n4 = t2 - n6 = 2(T - PB) - (Q - SS - GB) = 2PA - NA,  n5 = NA = (Q - SS) - gb
// (every intermediate within ±2^17: exact, and equal to the contract's n[]).
inline __m512 epilogue(const uint8_t* sc,  // [8][16] fp16 scalars of the block record
                       __m512i t2, __m512i gb, __m512i pb2, __m512i n0, __m512i n1, __m512 fss, __m512i q_ss) {
  auto f = [sc](int l) { return _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(sc + 32 * l))); };
  const __m512i n6 = _mm512_sub_epi32(pb2, gb);
  const __m512i n4 = _mm512_sub_epi32(t2, n6);
  const __m512i n5 = _mm512_sub_epi32(q_ss, gb);
  __m512 p0 = _mm512_mul_ps(_mm512_cvtepi32_ps(n0), f(0));
  __m512 p1 = _mm512_mul_ps(_mm512_cvtepi32_ps(n1), f(1));
  __m512 p2 = _mm512_mul_ps(fss, f(2));
  __m512 p3 = _mm512_mul_ps(fss, f(3));
  const __m512 p4 = _mm512_mul_ps(_mm512_cvtepi32_ps(n4), f(4));
  const __m512 p5 = _mm512_mul_ps(_mm512_cvtepi32_ps(n5), f(5));
  const __m512 p6 = _mm512_mul_ps(_mm512_cvtepi32_ps(n6), f(6));
  const __m512 p7 = _mm512_mul_ps(_mm512_cvtepi32_ps(gb), f(7));
  p0 = _mm512_add_ps(p0, p4);
  p1 = _mm512_add_ps(p1, p5);
  p2 = _mm512_add_ps(p2, p6);
  p3 = _mm512_add_ps(p3, p7);
  p0 = _mm512_add_ps(p0, p2);
  p1 = _mm512_add_ps(p1, p3);
  return _mm512_add_ps(p0, p1);
}

// The block's term for the 16 rows of NT consecutive tiles and one token (lanes = rows), added to acc[]:
// the broadcast activations are shared by the tiles.
template <int NT>
inline void block_terms(const uint8_t* rec,  // [NT tiles at stride tile_bytes] BR16 block records
                        int64_t tile_bytes, int ng, const int8_t* q,  // [128] the block's activations
                        const int8_t* qs,                             // [128] its compacted salient codes
                        int32_t ssum, int32_t bsum, __m512 (&acc)[NT]) {
  const __m512i ones = _mm512_set1_epi8(1), twos = _mm512_set1_epi8(2);
  const __m512i mss = _mm512_set1_epi32(-ssum), ss_q = _mm512_set1_epi32(ssum - bsum);
  __m512i t[NT], gb[NT], pb[NT], ps[NT], pr[NT];
  for (int u = 0; u < NT; ++u) {
    t[u] = ss_q;
    gb[u] = pb[u] = _mm512_setzero_si512();
    ps[u] = pr[u] = mss;
  }
  const int step = prefetch_stride(ng);
  for (int g = 0; g < kBillmGroups; ++g) {
    const __m512i x = bcast4(q + 4 * g);
    for (int u = 0; u < NT; ++u) {
      const uint8_t* r = rec + u * tile_bytes;
      prefetch_step(r, g, step);
      const __m512i e = _mm512_maskz_mov_epi8(load_mask(r + 8 * g), twos);
      const __m512i xg = _mm512_maskz_mov_epi8(load_mask(r + 256 + 8 * g), x);  // q at G = 1
      t[u] = dpbusd(t[u], e, x);
      pb[u] = dpbusd(pb[u], e, xg);
      gb[u] = dpbusd(gb[u], ones, xg);
    }
  }
  for (int g = 0; g < ng; ++g) {
    const __m512i x = bcast4(qs + 4 * g);
    for (int u = 0; u < NT; ++u) {
      const uint8_t* r = rec + u * tile_bytes;
      ps[u] = dpbusd(ps[u], _mm512_maskz_mov_epi8(load_mask(r + 512 + 8 * g), twos), x);
      pr[u] = dpbusd(pr[u], _mm512_maskz_mov_epi8(load_mask(r + 512 + 8 * (ng + g)), twos), x);
    }
  }
  for (int u = 0; u < NT; ++u)
    acc[u] = _mm512_add_ps(acc[u], epilogue(rec + u * tile_bytes + 512 + 16 * ng, t[u], gb[u], pb[u], ps[u], pr[u],
                                            _mm512_set1_ps(static_cast<float>(ssum)), _mm512_set1_epi32(bsum - ssum)));
}

// Tiles [t, t + NT) for every token.
template <int NT>
void gemm_tiles(const BillmMat& w, const BillmActs& a, float* y, int64_t ldy, int64_t t) {
  const int64_t nb = w.K / kBillmBlock, tile_bytes = w.boff[nb];
  const uint8_t* tile = w.data + t * tile_bytes;  // [NT, tile_bytes]
  for (int64_t b = 0; b < a.B; ++b) {
    __m512 acc[NT];
    for (int u = 0; u < NT; ++u) acc[u] = _mm512_setzero_ps();
    for (int64_t j = 0; j < nb; ++j)
      block_terms<NT>(tile + w.boff[j], tile_bytes, w.ngroups[j], a.q + b * a.ldq + j * kBillmBlock,
                      a.qs + (b * nb + j) * kBillmBlock, a.ssum[b * nb + j], a.bsum[b * nb + j], acc);
    const __m512 s = _mm512_set1_ps(a.scale[b]);
    for (int u = 0; u < NT; ++u) {
      const int64_t rows = std::min<int64_t>(kBillmRows, w.M - (t + u) * kBillmRows);
      _mm512_mask_storeu_ps(y + b * ldy + (t + u) * kBillmRows, static_cast<__mmask16>((1u << rows) - 1u), _mm512_div_ps(acc[u], s));
    }
  }
}

// One tile, TB tokens per pass (B > 1): the sign bytes and the mask words of a group are loaded and
// expanded once for the TB tokens (per token and group: one broadcast, one G-masked move, 3 vpdpbusd).
template <int TB>
void tile_tokens(const BillmMat& w, const BillmActs& a, float* y, int64_t ldy, int64_t t, int64_t b0) {
  const int64_t nb = w.K / kBillmBlock, tile_bytes = w.boff[nb];
  const uint8_t* tile = w.data + t * tile_bytes;  // [tile_bytes]
  const __m512i ones = _mm512_set1_epi8(1), twos = _mm512_set1_epi8(2);
  __m512 acc[TB];
  for (int u = 0; u < TB; ++u) acc[u] = _mm512_setzero_ps();
  for (int64_t j = 0; j < nb; ++j) {
    const uint8_t* rec = tile + w.boff[j];  // [768 + 16 ng]
    const int ng = w.ngroups[j];
    const int8_t* q[TB];
    const int8_t* qs[TB];
    for (int u = 0; u < TB; ++u) {
      q[u] = a.q + (b0 + u) * a.ldq + j * kBillmBlock;
      qs[u] = a.qs + ((b0 + u) * nb + j) * kBillmBlock;
    }
    __m512i tt[TB], gb[TB], pb[TB], ps[TB], pr[TB];  // pre-offset as in epilogue()
    for (int u = 0; u < TB; ++u) {
      const int32_t ss = a.ssum[(b0 + u) * nb + j], qq = a.bsum[(b0 + u) * nb + j];
      tt[u] = _mm512_set1_epi32(ss - qq);
      gb[u] = pb[u] = _mm512_setzero_si512();
      ps[u] = pr[u] = _mm512_set1_epi32(-ss);
    }
    const int step = prefetch_stride(ng);
    for (int g = 0; g < kBillmGroups; ++g) {
      prefetch_step(rec, g, step);
      const __m512i e = _mm512_maskz_mov_epi8(load_mask(rec + 8 * g), twos);
      const __mmask64 kg = load_mask(rec + 256 + 8 * g);
      for (int u = 0; u < TB; ++u) {
        const __m512i x = bcast4(q[u] + 4 * g);
        const __m512i xg = _mm512_maskz_mov_epi8(kg, x);  // q at G = 1
        tt[u] = dpbusd(tt[u], e, x);
        pb[u] = dpbusd(pb[u], e, xg);
        gb[u] = dpbusd(gb[u], ones, xg);
      }
    }
    for (int g = 0; g < ng; ++g) {
      const __m512i e1 = _mm512_maskz_mov_epi8(load_mask(rec + 512 + 8 * g), twos);
      const __m512i e2 = _mm512_maskz_mov_epi8(load_mask(rec + 512 + 8 * (ng + g)), twos);
      for (int u = 0; u < TB; ++u) {
        const __m512i x = bcast4(qs[u] + 4 * g);
        ps[u] = dpbusd(ps[u], e1, x);
        pr[u] = dpbusd(pr[u], e2, x);
      }
    }
    const uint8_t* sc = rec + 512 + 16 * ng;  // [8][16] fp16
    for (int u = 0; u < TB; ++u)
      acc[u] = _mm512_add_ps(acc[u], epilogue(sc, tt[u], gb[u], pb[u], ps[u], pr[u], _mm512_set1_ps(static_cast<float>(a.ssum[(b0 + u) * nb + j])),
                                              _mm512_set1_epi32(a.bsum[(b0 + u) * nb + j] - a.ssum[(b0 + u) * nb + j])));
  }
  const int64_t rows = std::min<int64_t>(kBillmRows, w.M - t * kBillmRows);
  for (int u = 0; u < TB; ++u)
    _mm512_mask_storeu_ps(y + (b0 + u) * ldy + t * kBillmRows, static_cast<__mmask16>((1u << rows) - 1u),
                          _mm512_div_ps(acc[u], _mm512_set1_ps(a.scale[b0 + u])));
}

void billm_gemm_avx512(const BillmMat& w, const BillmActs& a, float* y, int64_t ldy, int64_t tile0, int64_t tile1) {
  if (a.B == 1) {
    int64_t t = tile0;
    for (; t + 4 <= tile1; t += 4) gemm_tiles<4>(w, a, y, ldy, t);
    for (; t + 2 <= tile1; t += 2) gemm_tiles<2>(w, a, y, ldy, t);
    if (t < tile1) gemm_tiles<1>(w, a, y, ldy, t);
    return;
  }
  for (int64_t t = tile0; t < tile1; ++t) {
    int64_t b = 0;
    for (; b + 4 <= a.B; b += 4) tile_tokens<4>(w, a, y, ldy, t, b);
    switch (a.B - b) {
      case 3: tile_tokens<3>(w, a, y, ldy, t, b); break;
      case 2: tile_tokens<2>(w, a, y, ldy, t, b); break;
      case 1: tile_tokens<1>(w, a, y, ldy, t, b); break;
      default: break;
    }
  }
}

}  // namespace

void fill_billm_avx512(KernelTable& t, const CpuFeatures&) {
  t.billm_gemm = billm_gemm_avx512;
  t.v_billm = "avx512";
}

}  // namespace bitllm
