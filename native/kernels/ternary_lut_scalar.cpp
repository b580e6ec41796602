// Scalar TL3 lookup-table GEMM: the C++ reference every SIMD variant is tested against. It reads the
// same packed records and tables as the SIMD kernels (so it checks the layout, not just the math) and
// accumulates in int32 directly.
#include <cstring>

#include "kernels.h"

namespace bitllm {

namespace {

// The 3 activations of group g of block j (0 past the block or past K).
inline void group_acts(const int8_t* q,  // [K]
                       int64_t K, int64_t j, int g, int x[3]) {
  const int64_t kend = K < (j + 1) * kScaleBlockK ? K : (j + 1) * kScaleBlockK;
  for (int d = 0; d < kLutGroupK; ++d) {
    const int64_t k = j * kScaleBlockK + int64_t{kLutGroupK} * g + d;
    x[d] = k < kend ? q[k] : 0;
  }
}

void lut_build_scalar(const QActs& a, int64_t b0, int64_t b1,
                      uint8_t* tables) {  // [B, lut_table_bytes(K)]
  const int64_t tb = lut_table_bytes(a.K), nb = lut_blocks(a.K);
  for (int64_t b = b0; b < b1; ++b) {
    const int8_t* q = a.q + b * a.ldq;  // [K]
    for (int64_t j = 0; j < nb; ++j) {
      const int ng = lut_block_groups(a.K, j);
      for (int g = 0; g < ng; ++g) {
        int x[3];
        group_acts(q, a.K, j, g, x);
        uint8_t* e = tables + b * tb + (lut_block_group0(j) + g) * kLutTableBytes;  // [64]
        for (int m = 0; m < 16; ++m) {
          const int v = kLutDigits[m][0] * x[0] + kLutDigits[m][1] * x[1] + kLutDigits[m][2] * x[2];
          const uint16_t p = static_cast<uint16_t>(v), n = static_cast<uint16_t>(-v);
          e[m] = static_cast<uint8_t>(p & 0xff);
          e[16 + m] = static_cast<uint8_t>(n & 0xff);
          e[32 + m] = static_cast<uint8_t>(p >> 8);
          e[48 + m] = static_cast<uint8_t>(n >> 8);
        }
      }
    }
  }
}

// dot[r] = Σ over the record's groups of ±T[mag] for rows r = 0..63 of one tile, one token.
void record_dots(const uint8_t* rec,  // [lut_record_bytes(ng)]
                 int ng,
                 const uint8_t* tab,  // [ng, 64] this token's tables for the block
                 int32_t* dot) {      // [64]
  for (int r = 0; r < kLutRows; ++r) dot[r] = 0;
  for (int g = 0; g < ng; ++g) {
    uint64_t sign;
    std::memcpy(&sign, rec + lut_sign_offset(g), 8);
    const uint8_t* nib = rec + lut_nibble_offset(g & ~1);  // [64]
    const uint8_t* e = tab + g * kLutTableBytes;           // [64]
    for (int r = 0; r < kLutRows; ++r) {
      const int mag = (nib[lut_row_byte(r)] >> (4 * (g & 1))) & 15;
      const int v = static_cast<int16_t>(static_cast<uint16_t>(e[mag] | (e[32 + mag] << 8)));
      dot[r] += (sign >> r) & 1 ? -v : v;
    }
  }
}

void lut_gemm_scalar(const TernaryLutMat& w, const QActs& a,
                     const uint8_t* tables,  // [B, lut_table_bytes(K)]
                     float* y,  // [B, ldy]
                     int64_t ldy,
                     int64_t tile0, int64_t tile1) {
  const int64_t nb = lut_blocks(w.K), tb = lut_table_bytes(w.K), nsb = w.K / kScaleBlockK;
  int32_t dot[kLutRows];
  int32_t total[kLutRows];
  float acc[kLutRows];
  for (int64_t t = tile0; t < tile1; ++t) {
    const int rows = static_cast<int>(w.M - t * kLutRows < kLutRows ? w.M - t * kLutRows : kLutRows);
    for (int64_t b = 0; b < a.B; ++b) {
      for (int r = 0; r < kLutRows; ++r) {
        total[r] = 0;
        acc[r] = 0.0f;
      }
      for (int64_t j = 0; j < nb; ++j) {
        const int ng = lut_block_groups(w.K, j);
        record_dots(w.data + lut_record_offset(w.M, w.K, j, t), ng,
                    tables + b * tb + lut_block_group0(j) * kLutTableBytes, dot);
        for (int r = 0; r < rows; ++r) {
          if (w.scale_mode == kScaleBlock) {
            const int64_t m = t * kLutRows + r;
            const float d = w.scales[((m / kT2Rows) * nsb + j) * kT2Rows + m % kT2Rows];
            acc[r] = acc[r] + static_cast<float>(dot[r]) * d;
          } else {
            total[r] += dot[r];
          }
        }
      }
      for (int r = 0; r < rows; ++r) {
        const int64_t m = t * kLutRows + r;
        if (w.scale_mode == kScaleBlock) {
          y[b * ldy + m] = acc[r] / a.scale[b];
        } else {
          const float ws = w.scale_mode == kScaleRow ? w.scales[m] : w.scales[0];
          y[b * ldy + m] = (static_cast<float>(total[r]) * ws) / a.scale[b];
        }
      }
    }
  }
}

}  // namespace

void fill_ternary_lut_scalar(KernelTable& t, const CpuFeatures&) {
  t.ternary_lut_build = lut_build_scalar;
  t.ternary_lut_gemm = lut_gemm_scalar;
  t.v_ternary_lut = "scalar";
}

}  // namespace bitllm
