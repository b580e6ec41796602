// Private to billm_neon.cpp (ARMv8.0) and billm_neondot.cpp (ARMv8.2 + dotprod): the shared float
// epilogue of a 4-row quad and the dotprod entry point. Everything here except billm_gemm_neondot has
// internal linkage, so each translation unit keeps its own copy compiled with its own flags.
#pragma once
#include <arm_neon.h>

#include <cstring>

#include "kernels.h"

namespace bitllm {

// Defined in billm_neondot.cpp; call only when CpuFeatures::dotprod is set.
void billm_gemm_neondot(const BillmMat& w, const BillmActs& a,
                        float* y,  // [B, ldy]
                        int64_t ldy, int64_t tile0, int64_t tile1);

namespace {

inline int8x16_t billm_bcast4(const int8_t* p) {  // p: [4]
  int32_t v;
  std::memcpy(&v, p, 4);
  return vreinterpretq_s8_s32(vdupq_n_s32(v));
}

inline float32x4_t billm_half4(const uint8_t* p) {  // p: [4] fp16
  uint16_t h[4];
  std::memcpy(h, p, 8);
  return vcvt_f32_f16(vreinterpret_f16_u16(vld1_u16(h)));
}

// The contract's epilogue for rows 4k .. 4k+3 of a tile (billm.h): 8 products n[l]·f[l] folded
// 8 -> 4 -> 2 -> 1; the caller adds the result to its accumulator.
inline float32x4_t billm_epilogue(const uint8_t* sc,  // [8][16] fp16 scalars of the block record
                                  int k, int32x4_t tt, int32x4_t gb, int32x4_t pb, int32x4_t ps, int32x4_t pr,
                                  int32_t ssum, int32_t bsum) {
  const int32x4_t ss = vdupq_n_s32(ssum), qq = vdupq_n_s32(bsum);
  const int32x4_t pa = vsubq_s32(tt, pb), na = vsubq_s32(vsubq_s32(qq, ss), gb);
  const float32x4_t fss = vcvtq_f32_s32(ss);
  const uint8_t* sk = sc + 8 * k;
  float32x4_t p0 = vmulq_f32(vcvtq_f32_s32(vsubq_s32(vaddq_s32(ps, ps), ss)), billm_half4(sk));
  float32x4_t p1 = vmulq_f32(vcvtq_f32_s32(vsubq_s32(vaddq_s32(pr, pr), ss)), billm_half4(sk + 32));
  float32x4_t p2 = vmulq_f32(fss, billm_half4(sk + 64));
  float32x4_t p3 = vmulq_f32(fss, billm_half4(sk + 96));
  const float32x4_t p4 = vmulq_f32(vcvtq_f32_s32(vsubq_s32(vaddq_s32(pa, pa), na)), billm_half4(sk + 128));
  const float32x4_t p5 = vmulq_f32(vcvtq_f32_s32(na), billm_half4(sk + 160));
  const float32x4_t p6 = vmulq_f32(vcvtq_f32_s32(vsubq_s32(vaddq_s32(pb, pb), gb)), billm_half4(sk + 192));
  const float32x4_t p7 = vmulq_f32(vcvtq_f32_s32(gb), billm_half4(sk + 224));
  p0 = vaddq_f32(p0, p4);
  p1 = vaddq_f32(p1, p5);
  p2 = vaddq_f32(p2, p6);
  p3 = vaddq_f32(p3, p7);
  p0 = vaddq_f32(p0, p2);
  p1 = vaddq_f32(p1, p3);
  return vaddq_f32(p0, p1);
}

// 16 mask bits (p[0], p[1], LSB first) -> 16 bytes 0xFF (-1) where the bit is 1.
inline int8x16_t billm_expand16(const uint8_t* p, uint8x16_t bitsel) {  // p: [2]
  const uint8x16_t spread = vcombine_u8(vdup_n_u8(p[0]), vdup_n_u8(p[1]));
  return vreinterpretq_s8_u8(vtstq_u8(spread, bitsel));
}

}  // namespace

}  // namespace bitllm
