// NEON (ARMv8.0) BiLLM GEMM on BR16, bit-exact to billm_scalar.cpp (layout and contract in billm.h).
//
// Lanes = rows: the 16 rows of a tile in four int32x4 (rows 4k .. 4k+3 = bytes 2k, 2k+1 of a plane
// word). Each 16 bits become 16 byte masks (two vdup + vtst against the bit of each byte); AND with the
// group's 4 activations (replicated per lane) keeps the selected codes (T: σ & q; qG = G & q gives GB,
// σ & qG gives PB; salient columns: compact s1 / res words against qs) and vpadal adds pairs into int16
// (|lane| <= 32 * 256 per block), widened once per block by vpaddl. The epilogue is the contract's
// order on 4 rows at a time (separate vmul / vadd, built with -ffp-contract=off).
#include <arm_neon.h>

#include <algorithm>
#include <cstring>

#include "kernels.h"

namespace bitllm {

namespace {

inline int8x16_t expand16(const uint8_t* p, uint8x16_t bitsel) {  // p: [2]
  const uint8x16_t spread = vcombine_u8(vdup_n_u8(p[0]), vdup_n_u8(p[1]));
  return vreinterpretq_s8_u8(vtstq_u8(spread, bitsel));
}

inline int8x16_t bcast4(const int8_t* p) {  // p: [4]
  int32_t v;
  std::memcpy(&v, p, 4);
  return vreinterpretq_s8_s32(vdupq_n_s32(v));
}

inline float32x4_t half4(const uint8_t* p) {  // p: [4] fp16
  uint16_t h[4];
  std::memcpy(h, p, 8);
  return vcvt_f32_f16(vreinterpret_f16_u16(vld1_u16(h)));
}

void billm_gemm_neon(const BillmMat& w, const BillmActs& a, float* y, int64_t ldy, int64_t tile0, int64_t tile1) {
  const int64_t nb = w.K / kBillmBlock, tile_bytes = w.boff[nb];
  static const uint8_t kBits[16] = {1, 2, 4, 8, 16, 32, 64, 128, 1, 2, 4, 8, 16, 32, 64, 128};
  const uint8x16_t bitsel = vld1q_u8(kBits);
  for (int64_t t = tile0; t < tile1; ++t) {
    const uint8_t* tile = w.data + t * tile_bytes;  // [tile_bytes]
    const int64_t rows = std::min<int64_t>(kBillmRows, w.M - t * kBillmRows);
    for (int64_t b = 0; b < a.B; ++b) {
      float32x4_t acc[4];
      for (int k = 0; k < 4; ++k) acc[k] = vdupq_n_f32(0.0f);
      for (int64_t j = 0; j < nb; ++j) {
        const uint8_t* rec = tile + w.boff[j];  // [768 + 16 ng]
        const int ng = w.ngroups[j];
        const int8_t* q = a.q + b * a.ldq + j * kBillmBlock;      // [128]
        const int8_t* qs = a.qs + (b * nb + j) * kBillmBlock;     // [128]
        const uint8_t* sc = rec + 512 + 16 * ng;                  // [8][16] fp16
        const int32x4_t ss = vdupq_n_s32(a.ssum[b * nb + j]), qq = vdupq_n_s32(a.bsum[b * nb + j]);
        for (int k = 0; k < 4; ++k) {
          int16x8_t t16 = vdupq_n_s16(0), ps16 = t16, gb16 = t16, pb16 = t16, pr16 = t16;
          for (int g = 0; g < kBillmGroups; ++g) {
            const int8x16_t es = expand16(rec + 8 * g + 2 * k, bitsel), eg = expand16(rec + 256 + 8 * g + 2 * k, bitsel);
            const int8x16_t xq = bcast4(q + 4 * g);
            const int8x16_t qg = vandq_s8(eg, xq);  // q at G = 1
            t16 = vpadalq_s8(t16, vandq_s8(es, xq));
            pb16 = vpadalq_s8(pb16, vandq_s8(es, qg));
            gb16 = vpadalq_s8(gb16, qg);
          }
          for (int g = 0; g < ng; ++g) {
            const int8x16_t x = bcast4(qs + 4 * g);
            ps16 = vpadalq_s8(ps16, vandq_s8(expand16(rec + 512 + 8 * g + 2 * k, bitsel), x));
            pr16 = vpadalq_s8(pr16, vandq_s8(expand16(rec + 512 + 8 * (ng + g) + 2 * k, bitsel), x));
          }
          const int32x4_t tt = vpaddlq_s16(t16), ps = vpaddlq_s16(ps16), gb = vpaddlq_s16(gb16);
          const int32x4_t pb = vpaddlq_s16(pb16), pr = vpaddlq_s16(pr16);
          const int32x4_t pa = vsubq_s32(tt, pb), na = vsubq_s32(vsubq_s32(qq, ss), gb);
          const float32x4_t fss = vcvtq_f32_s32(ss);
          const uint8_t* sk = sc + 8 * k;
          float32x4_t p0 = vmulq_f32(vcvtq_f32_s32(vsubq_s32(vaddq_s32(ps, ps), ss)), half4(sk));
          float32x4_t p1 = vmulq_f32(vcvtq_f32_s32(vsubq_s32(vaddq_s32(pr, pr), ss)), half4(sk + 32));
          float32x4_t p2 = vmulq_f32(fss, half4(sk + 64));
          float32x4_t p3 = vmulq_f32(fss, half4(sk + 96));
          const float32x4_t p4 = vmulq_f32(vcvtq_f32_s32(vsubq_s32(vaddq_s32(pa, pa), na)), half4(sk + 128));
          const float32x4_t p5 = vmulq_f32(vcvtq_f32_s32(na), half4(sk + 160));
          const float32x4_t p6 = vmulq_f32(vcvtq_f32_s32(vsubq_s32(vaddq_s32(pb, pb), gb)), half4(sk + 192));
          const float32x4_t p7 = vmulq_f32(vcvtq_f32_s32(gb), half4(sk + 224));
          p0 = vaddq_f32(p0, p4);
          p1 = vaddq_f32(p1, p5);
          p2 = vaddq_f32(p2, p6);
          p3 = vaddq_f32(p3, p7);
          p0 = vaddq_f32(p0, p2);
          p1 = vaddq_f32(p1, p3);
          acc[k] = vaddq_f32(acc[k], vaddq_f32(p0, p1));
        }
      }
      float out[kBillmRows];
      const float32x4_t s = vdupq_n_f32(a.scale[b]);
      for (int k = 0; k < 4; ++k) vst1q_f32(out + 4 * k, vdivq_f32(acc[k], s));
      std::memcpy(y + b * ldy + t * kBillmRows, out, static_cast<size_t>(rows) * sizeof(float));
    }
  }
}

}  // namespace

void fill_billm_neon(KernelTable& t, const CpuFeatures&) {
  t.billm_gemm = billm_gemm_neon;
  t.v_billm = "neon";
}

}  // namespace bitllm
