// NEON (ARMv8.0) BiLLM GEMM, bit-exact to billm_scalar.cpp (contract in billm.h).
//
// Each 16 bits of a row's sign / group plane (and of the salient mask) become 16 byte masks (two
// vdup + vtst against the bit of each byte); a masked sum is vand + vpadal (pairwise add-long into
// int16: |lane| <= 8 * 2 * 128 per block), widened once per block by vaddlv. The residual bits mask
// the compacted salient codes qs 16 at a time. The epilogue is the contract's order: 8 products in two
// float32x4, fold 8 -> 4 -> 2 -> 1, acc + t (separate vmul / vadd, built with -ffp-contract=off).
#include <arm_neon.h>

#include <cstring>

#include "kernels.h"

namespace bitllm {

namespace {

inline int8x16_t expand16(const uint8_t* p, uint8x16_t bitsel) {  // p: [2]
  const uint8x16_t spread = vcombine_u8(vdup_n_u8(p[0]), vdup_n_u8(p[1]));
  return vreinterpretq_s8_u8(vtstq_u8(spread, bitsel));
}

void billm_gemm_neon(const BillmMat& w, const BillmActs& a, float* y, int64_t ldy, int64_t row0, int64_t row1) {
  const int64_t nb = w.K / kBillmBlock, row_bytes = w.K / 8;
  static const uint8_t kBits[16] = {1, 2, 4, 8, 16, 32, 64, 128, 1, 2, 4, 8, 16, 32, 64, 128};
  const uint8x16_t bitsel = vld1q_u8(kBits);
  for (int64_t m = row0; m < row1; ++m) {
    const uint8_t* sg = w.signs + m * row_bytes;              // [K/8]
    const uint8_t* gr = w.groups + m * row_bytes;             // [K/8]
    const uint8_t* rs = w.residual + m * w.rstride;           // [rstride]
    const uint16_t* sc = w.scalars + m * nb * kBillmScalars;  // [nb, 8]
    for (int64_t b = 0; b < a.B; ++b) {
      const int8_t* q = a.q + b * a.ldq;               // [K]
      const int8_t* qs = a.qs + b * nb * kBillmBlock;  // [nb, 128]
      const int32_t* ssum = a.ssum + b * nb;           // [nb]
      const int32_t* bsum = a.bsum + b * nb;           // [nb]
      float acc = 0.0f;
      for (int64_t j = 0; j < nb; ++j) {
        int16x8_t ps = vdupq_n_s16(0), gb = ps, pb = ps, t = ps;
        for (int v = 0; v < 8; ++v) {
          const int64_t o = 16 * j + 2 * v;
          const int8x16_t qv = vld1q_s8(q + 8 * o);
          const int8x16_t es = expand16(sg + o, bitsel), eg = expand16(gr + o, bitsel);
          const int8x16_t ev = expand16(w.salient + o, bitsel);
          const int8x16_t qsig = vandq_s8(es, qv);
          ps = vpadalq_s8(ps, vandq_s8(ev, qsig));
          gb = vpadalq_s8(gb, vandq_s8(eg, qv));
          pb = vpadalq_s8(pb, vandq_s8(eg, qsig));
          t = vpadalq_s8(t, qsig);
        }
        const int32_t nres = w.roff[j + 1] - w.roff[j];
        int32_t pr = 0;
        if (nres > 0) {
          int16x8_t r = vdupq_n_s16(0);
          for (int32_t v = 0; 2 * v < nres; ++v) {
            uint8_t two[2] = {rs[w.roff[j] + 2 * v], 0};
            if (2 * v + 1 < nres) two[1] = rs[w.roff[j] + 2 * v + 1];
            r = vpadalq_s8(r, vandq_s8(expand16(two, bitsel), vld1q_s8(qs + j * kBillmBlock + 16 * v)));
          }
          pr = vaddlvq_s16(r);
        }
        const int32_t vps = vaddlvq_s16(ps), vgb = vaddlvq_s16(gb), vpb = vaddlvq_s16(pb), vt = vaddlvq_s16(t);
        const int32_t ss = ssum[j], qsum = bsum[j];
        const int32_t pa = vt - vps - vpb, na = qsum - ss - vgb;
        const int32_t n[8] = {2 * vps - ss, 2 * pr - ss, ss, ss, 2 * pa - na, na, 2 * vpb - vgb, vgb};
        const uint16x8_t h = vld1q_u16(sc + j * kBillmScalars);
        const float32x4_t f_lo = vcvt_f32_f16(vreinterpret_f16_u16(vget_low_u16(h)));
        const float32x4_t f_hi = vcvt_f32_f16(vreinterpret_f16_u16(vget_high_u16(h)));
        const float32x4_t p_lo = vmulq_f32(vcvtq_f32_s32(vld1q_s32(n)), f_lo);
        const float32x4_t p_hi = vmulq_f32(vcvtq_f32_s32(vld1q_s32(n + 4)), f_hi);
        const float32x4_t p4 = vaddq_f32(p_lo, p_hi);                           // p[l] + p[l+4]
        const float32x2_t p2 = vadd_f32(vget_low_f32(p4), vget_high_f32(p4));  // p[l] + p[l+2]
        acc = acc + (vget_lane_f32(p2, 0) + vget_lane_f32(p2, 1));
      }
      y[b * ldy + m] = acc / a.scale[b];
    }
  }
}

}  // namespace

void fill_billm_neon(KernelTable& t, const CpuFeatures&) {
  t.billm_gemm = billm_gemm_neon;
  t.v_billm = "neon";
}

}  // namespace bitllm
