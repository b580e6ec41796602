// Private to ternary_sparse_neon.cpp (ARMv8.0) and ternary_sparse_neondot.cpp (ARMv8.2 + dotprod): the
// TS256 GEMM loop with the dot product as a policy. Everything here has internal linkage, so each
// translation unit (built with its own -march) gets its own copy.
#pragma once
#include <arm_neon.h>

#include <cstring>

#include "kernels.h"

namespace bitllm {
namespace {

constexpr int64_t kTsNeonPrefetchGroups = 16;

// One 16-byte quarter L of the lines per pass (four passes per block), 16 accumulators of 4 rows:
// acc[4u + l] lane d = the dot of row 64u + 16l + 4L + d, times 4^l for l = 1, 2 (l = 3 is shifted down
// to the code, so every operand byte is <= 32 and fits the signed int8 of vmull_s8 / sdot).
template <class Dot>
void ts_gemm_neon(const TernarySparseMat& w, const SparseActs& a, float* y, int64_t ldy, int64_t blk0, int64_t blk1) {
  alignas(16) int32_t raw[kTsRows];
  const int64_t cs = ts_col_bytes(w.M);
  const uint8x16_t m0 = vdupq_n_u8(0x03), m1 = vdupq_n_u8(0x0c), m2 = vdupq_n_u8(0x30);
  for (int64_t blk = blk0; blk < blk1; ++blk) {
    const uint8_t* base = w.data + blk * kTsLineBytes;  // column k's line at k * cs
    for (int64_t b = 0; b < a.B; ++b) {
      const int32_t* cols = a.cols + b * a.ldc;  // [4 ng]
      const int8_t* vals = a.vals + b * a.ldc;   // [4 ng]
      const int64_t ng = a.groups[b];
      for (int L = 0; L < 4; ++L) {
        int32x4_t acc[16];
        for (auto& v : acc) v = vdupq_n_s32(0);
        for (int64_t g = 0; g < ng; ++g) {
          const int32_t* c = cols + 4 * g;
          if (L == 0 && g + kTsNeonPrefetchGroups < ng)
            for (int i = 0; i < 4; ++i)
              __builtin_prefetch(base + int64_t{c[4 * kTsNeonPrefetchGroups + i]} * cs);
          const uint8_t* p = base + 16 * L;
          const uint8x16_t la = vld1q_u8(p + int64_t{c[0]} * cs);
          const uint8x16_t lb = vld1q_u8(p + int64_t{c[1]} * cs);
          const uint8x16_t lc = vld1q_u8(p + int64_t{c[2]} * cs);
          const uint8x16_t ld = vld1q_u8(p + int64_t{c[3]} * cs);
          int32_t qd;
          std::memcpy(&qd, vals + 4 * g, 4);
          const int8x16_t qv = vreinterpretq_s8_s32(vdupq_n_s32(qd));
          const uint16x8_t ab_lo = vreinterpretq_u16_u8(vzip1q_u8(la, lb)), ab_hi = vreinterpretq_u16_u8(vzip2q_u8(la, lb));
          const uint16x8_t cd_lo = vreinterpretq_u16_u8(vzip1q_u8(lc, ld)), cd_hi = vreinterpretq_u16_u8(vzip2q_u8(lc, ld));
          const uint8x16_t z[4] = {vreinterpretq_u8_u16(vzip1q_u16(ab_lo, cd_lo)), vreinterpretq_u8_u16(vzip2q_u16(ab_lo, cd_lo)),
                                   vreinterpretq_u8_u16(vzip1q_u16(ab_hi, cd_hi)), vreinterpretq_u8_u16(vzip2q_u16(ab_hi, cd_hi))};
          for (int u = 0; u < 4; ++u) {
            acc[4 * u + 0] = Dot::dot(acc[4 * u + 0], vreinterpretq_s8_u8(vandq_u8(z[u], m0)), qv);
            acc[4 * u + 1] = Dot::dot(acc[4 * u + 1], vreinterpretq_s8_u8(vandq_u8(z[u], m1)), qv);
            acc[4 * u + 2] = Dot::dot(acc[4 * u + 2], vreinterpretq_s8_u8(vandq_u8(z[u], m2)), qv);
            acc[4 * u + 3] = Dot::dot(acc[4 * u + 3], vreinterpretq_s8_u8(vshrq_n_u8(z[u], 6)), qv);
          }
        }
        for (int u = 0; u < 4; ++u) {
          int32_t* dst = raw + 64 * u + 4 * L;
          vst1q_s32(dst + 0, acc[4 * u + 0]);
          vst1q_s32(dst + 16, vshrq_n_s32(acc[4 * u + 1], 2));
          vst1q_s32(dst + 32, vshrq_n_s32(acc[4 * u + 2], 4));
          vst1q_s32(dst + 48, acc[4 * u + 3]);
        }
      }
      ts_store_block(w, a, b, blk, raw, y, ldy);
    }
  }
}

}  // namespace
}  // namespace bitllm
