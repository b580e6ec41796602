// TL3 lookup-table GEMM, NEON variant (ARMv8.0; bit-exact to ternary_lut_scalar.cpp and ternary_gemm).
// Per group and token the signed index |v| + 16*sign of 16 rows is looked up with vqtbl2q in the
// 32-byte {+T, -T} low-byte and high-byte planes of the table, so the sign costs no arithmetic after
// the lookup; vzip1q/vzip2q rebuild int16. Nibble register l (bytes 16l..16l+15) covers rows 8l..8l+7
// (even bytes) and 32+8l..32+8l+7 (odd bytes), whose sign bits are in sign bytes l and 4+l, expanded
// to byte masks with one tbl + one tst. The int16 lanes are in that interleaved "lane order"; the int32
// dots are put back in row order once per record. int16 accumulators are widened to int32 every
// kLutFlushGroups groups and at the end of each block.
#include <arm_neon.h>

#include <cstring>

#include "kernels.h"

namespace bitllm {

namespace {

constexpr int kMaxTokens = 2;  // tokens per pass over a record (int16 accumulators in registers)

// A group's 8 sign bytes -> bytes of the 4 nibble registers: byte b of register l is row
// 8l + b/2 + 32*(b%2), i.e. bit b/2 of sign byte l (even b) or 4+l (odd b).
alignas(16) constexpr uint8_t kSignRep[4][16] = {
    {0, 4, 0, 4, 0, 4, 0, 4, 0, 4, 0, 4, 0, 4, 0, 4},
    {1, 5, 1, 5, 1, 5, 1, 5, 1, 5, 1, 5, 1, 5, 1, 5},
    {2, 6, 2, 6, 2, 6, 2, 6, 2, 6, 2, 6, 2, 6, 2, 6},
    {3, 7, 3, 7, 3, 7, 3, 7, 3, 7, 3, 7, 3, 7, 3, 7},
};
alignas(16) constexpr uint8_t kBitPat[16] = {1, 1, 2, 2, 4, 4, 8, 8, 16, 16, 32, 32, 64, 64, 128, 128};

// Lane order: int16 lane j of accumulator v (8v + j) holds the row of nibble byte 16v + j (v < 4,
// vzip1q) or 16(v-4) + 8 + j (v >= 4, vzip2q).
struct LaneRows {
  uint8_t row[kLutRows];
  constexpr LaneRows() : row() {
    for (int v = 0; v < 8; ++v)
      for (int j = 0; j < 8; ++j) {
        const int p = v < 4 ? 16 * v + j : 16 * (v - 4) + 8 + j;
        row[8 * v + j] = static_cast<uint8_t>((p >> 1) + 32 * (p & 1));
      }
  }
};
constexpr LaneRows kLaneRow;

// The NEON table builder: the 16 table rows of one group as two int16x8 vectors.
void lut_build_neon(const QActs& a, int64_t b0, int64_t b1,
                    uint8_t* tables) {  // [B, lut_table_bytes(K)]
  alignas(16) static constexpr int16_t kD[3][16] = {
      {0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0},
      {0, 0, 1, 1, 1, -1, -1, -1, 0, 0, 0, 1, 1, 1, 0, 0},
      {0, 1, -1, 0, 1, -1, 0, 1, -1, 0, 1, -1, 0, 1, 0, 0},
  };
  int16x8_t d[3][2];
  for (int i = 0; i < 3; ++i) {
    d[i][0] = vld1q_s16(kD[i]);
    d[i][1] = vld1q_s16(kD[i] + 8);
  }
  const int64_t tb = lut_table_bytes(a.K), nb = lut_blocks(a.K);
  for (int64_t b = b0; b < b1; ++b) {
    const int8_t* q = a.q + b * a.ldq;  // [K]
    for (int64_t j = 0; j < nb; ++j) {
      const int ng = lut_block_groups(a.K, j);
      const int64_t k0 = j * kScaleBlockK;
      const int64_t kend = a.K < k0 + kScaleBlockK ? a.K : k0 + kScaleBlockK;
      uint8_t* e = tables + b * tb + lut_block_group0(j) * kLutTableBytes;  // [ng, 64]
      for (int g = 0; g < ng; ++g, e += kLutTableBytes) {
        const int64_t k = k0 + int64_t{kLutGroupK} * g;
        const int16x8_t x0 = vdupq_n_s16(k < kend ? q[k] : 0);
        const int16x8_t x1 = vdupq_n_s16(k + 1 < kend ? q[k + 1] : 0);
        const int16x8_t x2 = vdupq_n_s16(k + 2 < kend ? q[k + 2] : 0);
        int16x8_t tp[2], tn[2];
        for (int h = 0; h < 2; ++h) {
          tp[h] = vmlaq_s16(vmlaq_s16(vmulq_s16(x0, d[0][h]), x1, d[1][h]), x2, d[2][h]);
          tn[h] = vnegq_s16(tp[h]);
        }
        // Low bytes are the even bytes, high bytes the odd bytes of the little-endian int16.
        const uint8x16_t p0 = vreinterpretq_u8_s16(tp[0]), p1 = vreinterpretq_u8_s16(tp[1]);
        const uint8x16_t n0 = vreinterpretq_u8_s16(tn[0]), n1 = vreinterpretq_u8_s16(tn[1]);
        vst1q_u8(e, vuzp1q_u8(p0, p1));
        vst1q_u8(e + 16, vuzp1q_u8(n0, n1));
        vst1q_u8(e + 32, vuzp2q_u8(p0, p1));
        vst1q_u8(e + 48, vuzp2q_u8(n0, n1));
      }
    }
  }
}

// acc[i][v] -> lane[i][8v .. 8v+7] (lane order).
template <int NB>
inline void flush(int16x8_t (&acc)[NB][8], int32_t (*lane)[kLutRows]) {
  for (int i = 0; i < NB; ++i) {
    for (int v = 0; v < 8; ++v) {
      int32_t* d = lane[i] + 8 * v;
      vst1q_s32(d, vaddw_s16(vld1q_s32(d), vget_low_s16(acc[i][v])));
      vst1q_s32(d + 4, vaddw_high_s16(vld1q_s32(d + 4), acc[i][v]));
      acc[i][v] = vdupq_n_s16(0);
    }
  }
}

// One group: nib[l] = nibble register l (magnitudes already in bits 0..3), sign = 8 sign bytes.
template <int NB>
inline void step(const uint8x16_t (&mag)[4], uint8x16_t sign, const uint8_t* const* tab, int g,
                 int16x8_t (&acc)[NB][8]) {
  const uint8x16_t bitpat = vld1q_u8(kBitPat), k16 = vdupq_n_u8(16);
  uint8x16_t idx[4];
  for (int l = 0; l < 4; ++l) {
    const uint8x16_t m = vtstq_u8(vqtbl1q_u8(sign, vld1q_u8(kSignRep[l])), bitpat);
    idx[l] = vorrq_u8(mag[l], vandq_u8(m, k16));
  }
  for (int i = 0; i < NB; ++i) {
    const uint8_t* e = tab[i] + g * kLutTableBytes;  // [64]
    const uint8x16x2_t tlo = {{vld1q_u8(e), vld1q_u8(e + 16)}};
    const uint8x16x2_t thi = {{vld1q_u8(e + 32), vld1q_u8(e + 48)}};
    for (int l = 0; l < 4; ++l) {
      const uint8x16_t lo = vqtbl2q_u8(tlo, idx[l]);
      const uint8x16_t hi = vqtbl2q_u8(thi, idx[l]);
      acc[i][l] = vaddq_s16(acc[i][l], vreinterpretq_s16_u8(vzip1q_u8(lo, hi)));
      acc[i][4 + l] = vaddq_s16(acc[i][4 + l], vreinterpretq_s16_u8(vzip2q_u8(lo, hi)));
    }
  }
}

template <int NB>
void record_dots(const uint8_t* rec,         // [lut_record_bytes(ng)]
                 int ng,
                 const uint8_t* const* tab,  // [NB] -> [ng, 64]
                 int32_t (*dot)[kLutRows]) {  // [NB][64] in row order
  const uint8x16_t m0f = vdupq_n_u8(0x0f);
  int32_t lane[NB][kLutRows];
  int16x8_t acc[NB][8];
  for (int i = 0; i < NB; ++i) {
    std::memset(lane[i], 0, sizeof(lane[i]));
    for (int v = 0; v < 8; ++v) acc[i][v] = vdupq_n_s16(0);
  }
  for (int g0 = 0; g0 < ng; g0 += kLutUnitGroups) {
    const uint8_t* unit = rec + (g0 / kLutUnitGroups) * kLutUnitBytes;  // [320]
    const int gu = ng - g0 < kLutUnitGroups ? ng - g0 : kLutUnitGroups;
    for (int p = 0; p < gu; p += 2) {
      const uint8x16x4_t v = vld1q_u8_x4(unit + 64 + 32 * p);
      const uint8x16_t s = vld1q_u8(unit + 8 * p);  // signs of groups g0+p (bytes 0..7) and g0+p+1 (8..15)
      const uint8x16_t mlo[4] = {vandq_u8(v.val[0], m0f), vandq_u8(v.val[1], m0f), vandq_u8(v.val[2], m0f),
                                 vandq_u8(v.val[3], m0f)};
      const uint8x16_t mhi[4] = {vshrq_n_u8(v.val[0], 4), vshrq_n_u8(v.val[1], 4), vshrq_n_u8(v.val[2], 4),
                                 vshrq_n_u8(v.val[3], 4)};
      step<NB>(mlo, s, tab, g0 + p, acc);
      step<NB>(mhi, vextq_u8(s, s, 8), tab, g0 + p + 1, acc);
    }
    if (g0 + gu == kLutFlushGroups) flush<NB>(acc, lane);
  }
  flush<NB>(acc, lane);
  for (int i = 0; i < NB; ++i)
    for (int l = 0; l < kLutRows; ++l) dot[i][kLaneRow.row[l]] = lane[i][l];
}

// Folds block j's dots of tile t, token b into y (partials kept in y between blocks: int32 bits for
// tensor/row scales, the float sum for block scales) and applies the epilogue after the last block.
void combine(const TernaryLutMat& w, const QActs& a, int64_t j, int64_t t, int64_t b,
             const int32_t* dot,  // [64]
             float* y,            // [B, ldy]
             int64_t ldy) {
  const int64_t nb = lut_blocks(w.K), nsb = w.K / kScaleBlockK;
  const bool last = j == nb - 1;
  float* yr = y + b * ldy + t * kLutRows;  // [64]
  const int64_t rows = w.M - t * kLutRows < kLutRows ? w.M - t * kLutRows : kLutRows;
  const float s = a.scale[b];
  if (rows < kLutRows) {  // the partial last tile: row by row
    for (int64_t r = 0; r < rows; ++r) {
      const int64_t m = t * kLutRows + r;
      if (w.scale_mode == kScaleBlock) {
        const float prev = j == 0 ? 0.0f : yr[r];
        const float acc = prev + static_cast<float>(dot[r]) * w.scales[((m / kT2Rows) * nsb + j) * kT2Rows + m % kT2Rows];
        yr[r] = last ? acc / s : acc;
      } else {
        int32_t d = dot[r];
        if (j > 0) {
          int32_t prev;
          std::memcpy(&prev, yr + r, 4);
          d += prev;
        }
        if (last) {
          const float ws = w.scale_mode == kScaleRow ? w.scales[m] : w.scales[0];
          yr[r] = (static_cast<float>(d) * ws) / s;
        } else {
          std::memcpy(yr + r, &d, 4);
        }
      }
    }
    return;
  }
  const float32x4_t sv = vdupq_n_f32(s);
  for (int r = 0; r < kLutRows; r += 4) {
    int32x4_t d = vld1q_s32(dot + r);
    if (w.scale_mode == kScaleBlock) {
      const int64_t m = t * kLutRows + r;
      const float* sc = w.scales + ((m / kT2Rows) * nsb + j) * kT2Rows + m % kT2Rows;  // [4]
      const float32x4_t prev = j == 0 ? vdupq_n_f32(0.0f) : vld1q_f32(yr + r);
      float32x4_t acc = vaddq_f32(prev, vmulq_f32(vcvtq_f32_s32(d), vld1q_f32(sc)));
      if (last) acc = vdivq_f32(acc, sv);
      vst1q_f32(yr + r, acc);
    } else {
      if (j > 0) d = vaddq_s32(d, vreinterpretq_s32_f32(vld1q_f32(yr + r)));
      if (last) {
        const float32x4_t ws = w.scale_mode == kScaleRow ? vld1q_f32(w.scales + t * kLutRows + r) : vdupq_n_f32(w.scales[0]);
        vst1q_f32(yr + r, vdivq_f32(vmulq_f32(vcvtq_f32_s32(d), ws), sv));
      } else {
        vst1q_f32(yr + r, vreinterpretq_f32_s32(d));
      }
    }
  }
}

template <int NB>
void tokens_pass(const TernaryLutMat& w, const QActs& a,
                 const uint8_t* tables,  // [B, lut_table_bytes(K)]
                 int64_t j, int64_t t, int64_t b0,
                 float* y,  // [B, ldy]
                 int64_t ldy) {
  const int64_t tb = lut_table_bytes(w.K);
  const uint8_t* tab[NB];
  for (int i = 0; i < NB; ++i) tab[i] = tables + (b0 + i) * tb + lut_block_group0(j) * kLutTableBytes;
  alignas(16) int32_t dot[NB][kLutRows];
  record_dots<NB>(w.data + lut_record_offset(w.M, w.K, j, t), lut_block_groups(w.K, j), tab, dot);
  for (int i = 0; i < NB; ++i) combine(w, a, j, t, b0 + i, dot[i], y, ldy);
}

void lut_gemm_neon(const TernaryLutMat& w, const QActs& a,
                   const uint8_t* tables,  // [B, lut_table_bytes(K)]
                   float* y,  // [B, ldy]
                   int64_t ldy,
                   int64_t tile0, int64_t tile1) {
  const int64_t nb = lut_blocks(w.K);
  for (int64_t j = 0; j < nb; ++j) {
    for (int64_t t = tile0; t < tile1; ++t) {
      for (int64_t b0 = 0; b0 < a.B; b0 += kMaxTokens) {
        if (a.B - b0 >= 2) {
          tokens_pass<2>(w, a, tables, j, t, b0, y, ldy);
        } else {
          tokens_pass<1>(w, a, tables, j, t, b0, y, ldy);
        }
      }
    }
  }
}

}  // namespace

void fill_ternary_lut_neon(KernelTable& t, const CpuFeatures&) {
  t.ternary_lut_build = lut_build_neon;
  t.ternary_lut_gemm = lut_gemm_neon;
  t.v_ternary_lut = "neon";
}

}  // namespace bitllm
