// AVX-512 (F/BW/VL/VNNI) column-sparse ternary GEMM on TS256 (ternary_sparse.h). Per group of four
// non-zero columns and 256-row block: four 64-byte line loads, eight unpacks that put the four columns
// into the bytes of each dword, then 16 x (vpandd, vpdpbusd) into 16 accumulators of 16 rows each.
// The lines are software-prefetched from the column list (they are not a stride the hardware finds).
#include <immintrin.h>

#include <cstring>

#include "kernels.h"

namespace bitllm {

namespace {

// A panel is up to kPanelBlocks 256-row blocks of one thread's range, accumulated in L1 (16 KB of int32).
constexpr int64_t kPanelBlocks = 16;
constexpr int64_t kChunkGroups = 8;

void ternary_sparse_prep_avx512(const int8_t* q, int64_t ldq, int64_t K, int64_t b0, int64_t b1, int32_t* cols,
                                int8_t* vals, int64_t ldc, int32_t* groups) {
  const __m512i iota = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
  for (int64_t b = b0; b < b1; ++b) {
    const int8_t* qr = q + b * ldq;  // [K]
    int32_t* c = cols + b * ldc;     // [ldc]
    int8_t* v = vals + b * ldc;      // [ldc]
    int64_t n = 0, k = 0;
    for (; k + 16 <= K; k += 16) {
      const __m128i q16 = _mm_loadu_si128(reinterpret_cast<const __m128i*>(qr + k));
      const __mmask16 m = _mm_test_epi8_mask(q16, q16);
      if (m == 0) continue;
      const __m512i idx = _mm512_add_epi32(iota, _mm512_set1_epi32(static_cast<int32_t>(k)));
      // Register-destination compress then a plain store (the memory form is microcoded on Zen 4).
      _mm512_storeu_si512(c + n, _mm512_maskz_compress_epi32(m, idx));
      const __m512i qd = _mm512_maskz_compress_epi32(m, _mm512_maskz_cvtepi8_epi32(0xffff, q16));
      _mm_storeu_si128(reinterpret_cast<__m128i*>(v + n), _mm512_maskz_cvtepi32_epi8(0xffff, qd));
      n += __builtin_popcount(m);
    }
    for (; k < K; ++k) {
      c[n] = static_cast<int32_t>(k);
      v[n] = qr[k];
      n += qr[k] != 0;
    }
    const int32_t last = n > 0 ? c[n - 1] : 0;
    while (n % 4) {
      c[n] = last;
      v[n++] = 0;
    }
    groups[b] = static_cast<int32_t>(n / 4);
  }
}

// Walks the (column, line) pairs of a chunk's columns over the panel's lines, column-major, issuing
// `per_step` prefetches per call.
struct PrefetchCursor {
  const uint8_t* base = nullptr;  // line 0 of the panel in column 0
  const int32_t* cols = nullptr;  // next column index to prefetch
  int64_t cs = 0;
  int64_t ncols = 0;  // columns left
  int lines = 0, line = 0;

  void reset(const uint8_t* b, int64_t col_bytes, const int32_t* c, int64_t n, int panel_lines) {
    base = b, cs = col_bytes, cols = c, ncols = n, lines = panel_lines, line = 0;
  }
  inline void step(int per_step) {
    for (int i = 0; i < per_step && ncols > 0; ++i) {
      _mm_prefetch(reinterpret_cast<const char*>(base + int64_t{*cols} * cs + int64_t{line} * kTsLineBytes), _MM_HINT_T0);
      if (++line == lines) {
        line = 0;
        ++cols;
        --ncols;
      }
    }
  }
};

// acc[4u + l] += the products of one group of four columns with the block whose line of column k is at
// line0 + k * cs: 4^l x the dots of rows 64u + 16l + 0..15.
inline void group_step(const uint8_t* line0, int64_t cs, const int32_t* c, const int8_t* v, const __m512i (&mask)[4],
                       __m512i (&acc)[16]) {
  const __m512i la = _mm512_loadu_si512(line0 + int64_t{c[0]} * cs);
  const __m512i lb = _mm512_loadu_si512(line0 + int64_t{c[1]} * cs);
  const __m512i lc = _mm512_loadu_si512(line0 + int64_t{c[2]} * cs);
  const __m512i ld = _mm512_loadu_si512(line0 + int64_t{c[3]} * cs);
  int32_t qd;
  std::memcpy(&qd, v, 4);
  const __m512i qv = _mm512_set1_epi32(qd);
  const __m512i ab_lo = _mm512_unpacklo_epi8(la, lb), ab_hi = _mm512_unpackhi_epi8(la, lb);
  const __m512i cd_lo = _mm512_unpacklo_epi8(lc, ld), cd_hi = _mm512_unpackhi_epi8(lc, ld);
  const __m512i z[4] = {_mm512_unpacklo_epi16(ab_lo, cd_lo), _mm512_unpackhi_epi16(ab_lo, cd_lo),
                        _mm512_unpacklo_epi16(ab_hi, cd_hi), _mm512_unpackhi_epi16(ab_hi, cd_hi)};
  for (int u = 0; u < 4; ++u)
    for (int l = 0; l < 4; ++l) acc[4 * u + l] = _mm512_dpbusd_epi32(acc[4 * u + l], _mm512_and_si512(z[u], mask[l]), qv);
}

// raw[256 * j + row] = dots of a token's list with blocks blk_a + j, j < panel: the groups kChunkGroups
// at a time, every block of the panel in turn with the accumulators in registers, while the next chunk's
// lines are prefetched column by column. For B > 1 (panel = 1: one block stays in L2 across the tokens).
void token_panel(const TernarySparseMat& w, const int32_t* cols, const int8_t* vals, int64_t ng, int64_t blk_a,
                 int panel,
                 int32_t* raw) {  // [panel, 256]
  const __m512i mask[4] = {_mm512_set1_epi8(0x03), _mm512_set1_epi8(0x0c), _mm512_set1_epi8(0x30),
                           _mm512_set1_epi8(static_cast<char>(0xc0))};
  const int64_t cs = ts_col_bytes(w.M);
  const uint8_t* panel0 = w.data + blk_a * kTsLineBytes;
  for (int i = 0; i < panel * kTsRows; i += 16) _mm512_store_si512(raw + i, _mm512_setzero_si512());
  PrefetchCursor pf;
  pf.reset(panel0, cs, cols, 4 * (ng < kChunkGroups ? ng : kChunkGroups), panel);
  pf.step(1 << 30);  // the first chunk at once
  for (int64_t c0 = 0; c0 < ng; c0 += kChunkGroups) {
    const int64_t c1 = c0 + kChunkGroups < ng ? c0 + kChunkGroups : ng;
    const int64_t n1 = c1 + kChunkGroups < ng ? c1 + kChunkGroups : ng;
    pf.reset(panel0, cs, cols + 4 * c1, 4 * (n1 - c1), panel);
    for (int j = 0; j < panel; ++j) {
      const uint8_t* line0 = panel0 + int64_t{j} * kTsLineBytes;
      __m512i acc[16];
      for (auto& v : acc) v = _mm512_setzero_si512();
      for (int64_t g = c0; g < c1; ++g) {
        pf.step(4);
        group_step(line0, cs, cols + 4 * g, vals + 4 * g, mask, acc);
      }
      int32_t* dst = raw + j * kTsRows;
      for (int u = 0; u < 4; ++u)
        for (int l = 0; l < 4; ++l) {
          int32_t* d = dst + 16 * (4 * u + l);
          _mm512_store_si512(d, _mm512_add_epi32(_mm512_load_si512(d), acc[4 * u + l]));
        }
    }
  }
  // Row 64u + 16l + i was accumulated times 4^l (an exact multiple: the shift is exact).
  for (int i = 0; i < panel * kTsRows; ++i) raw[i] >>= 2 * ((i >> 4) & 3);
}

// B == 1: the token's groups are taken kPassGroups at a time; a pass walks every block of the panel in
// order, reloading that block's accumulators from L1 (raw, scaled by 4^l until the end), so each column's
// run is read front to back; the runs kPassAhead passes ahead are software-prefetched line by line (the
// L1 miss buffers, not DRAM bandwidth, bound one core's random reads here: ~13-15 GB/s vs 26-33 GB/s
// streamed on Zen 4). Measured on 2560x6912 at 80-90 % zeros, 1 thread: ~20 % faster than keeping the
// accumulators in registers and walking a chunk of 8 groups block by block (token_panel), which is ~2x
// faster on dense lists (fewer L1 round trips) and is used for them and for B > 1.
constexpr int64_t kPassGroups = 2;
constexpr int64_t kPassAhead = 4;  // passes between a run's prefetch and its use

void token_runs(const TernarySparseMat& w, const int32_t* cols, const int8_t* vals, int64_t ng, int64_t blk_a, int panel,
                int32_t* raw) {  // [panel, 256]
  const __m512i mask[4] = {_mm512_set1_epi8(0x03), _mm512_set1_epi8(0x0c), _mm512_set1_epi8(0x30),
                           _mm512_set1_epi8(static_cast<char>(0xc0))};
  const int64_t cs = ts_col_bytes(w.M);
  const uint8_t* panel0 = w.data + blk_a * kTsLineBytes;
  for (int i = 0; i < panel * kTsRows; i += 16) _mm512_store_si512(raw + i, _mm512_setzero_si512());
  for (int64_t g0 = 0; g0 < ng; g0 += kPassGroups) {
    const int64_t g1 = g0 + kPassGroups < ng ? g0 + kPassGroups : ng;
    const int64_t p0 = g0 + kPassAhead * kPassGroups, p1 = p0 + kPassGroups < ng ? p0 + kPassGroups : ng;
    for (int j = 0; j < panel; ++j) {
      const uint8_t* line0 = panel0 + int64_t{j} * kTsLineBytes;
      // Spread over the pass (a burst would stall on the L1 miss buffers and hold up the arithmetic).
      for (int64_t i = 4 * p0; i < 4 * p1; ++i)
        _mm_prefetch(reinterpret_cast<const char*>(line0 + int64_t{cols[i]} * cs), _MM_HINT_T0);
      int32_t* dst = raw + j * kTsRows;
      __m512i acc[16];
      for (int i = 0; i < 16; ++i) acc[i] = _mm512_load_si512(dst + 16 * i);
      for (int64_t g = g0; g < g1; ++g) group_step(line0, cs, cols + 4 * g, vals + 4 * g, mask, acc);
      for (int i = 0; i < 16; ++i) _mm512_store_si512(dst + 16 * i, acc[i]);
    }
  }
  for (int i = 0; i < panel * kTsRows; ++i) raw[i] >>= 2 * ((i >> 4) & 3);
}

void ternary_sparse_gemm_avx512(const TernarySparseMat& w, const SparseActs& a, float* y, int64_t ldy,
                                int64_t blk0, int64_t blk1) {
  alignas(64) int32_t raw[kPanelBlocks * kTsRows];
  if (a.B == 1) {
    // Equal panels (10 blocks: 5 + 5, not 8 + 2), so every column's run is read in long pieces.
    const int64_t npanels = (blk1 - blk0 + kPanelBlocks - 1) / kPanelBlocks;
    for (int64_t i = 0; i < npanels; ++i) {
      const int64_t p0 = blk0 + (blk1 - blk0) * i / npanels, p1 = blk0 + (blk1 - blk0) * (i + 1) / npanels;
      const int panel = static_cast<int>(p1 - p0);
      // Dense lists are compute-bound: the register walk (no accumulator reloads) wins above ~60 %
      // non-zeros; sparse lists are bound by the random reads, where reading runs in order wins.
      if (10 * 4 * int64_t{a.groups[0]} > 6 * w.K)
        token_panel(w, a.cols, a.vals, a.groups[0], p0, panel, raw);
      else
        token_runs(w, a.cols, a.vals, a.groups[0], p0, panel, raw);
      for (int j = 0; j < panel; ++j) ts_store_block(w, a, 0, p0 + j, raw + j * kTsRows, y, ldy);
    }
    return;
  }
  for (int64_t blk = blk0; blk < blk1; ++blk)
    for (int64_t b = 0; b < a.B; ++b) {
      token_panel(w, a.cols + b * a.ldc, a.vals + b * a.ldc, a.groups[b], blk, 1, raw);
      ts_store_block(w, a, b, blk, raw, y, ldy);
    }
}

}  // namespace

void fill_ternary_sparse_avx512(KernelTable& t, const CpuFeatures&) {
  t.ternary_sparse_prep = ternary_sparse_prep_avx512;
  t.ternary_sparse_gemm = ternary_sparse_gemm_avx512;
  t.v_ternary_sparse = "avx512";
}

}  // namespace bitllm
