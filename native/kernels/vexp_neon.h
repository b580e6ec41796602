// The vector exp of the NEON kernels (ops_neon.cpp, mamba2_neon.cpp): exp(x) per ops.h, Cody-Waite
// reduction, degree-7 Taylor polynomial, 0 below -87, +Inf above 88. Include after the intrinsics header, in
// translation units compiled for this ISA only; static, so each keeps its own copy (the linker can never pick a
// copy built with other ISA flags).
#pragma once

#include <cmath>

namespace bitllm {

static inline float32x4_t exp4(float32x4_t x) {
  const float32x4_t lo = vdupq_n_f32(-87.0f), hi = vdupq_n_f32(88.0f);
  const float32x4_t xc = vminq_f32(vmaxq_f32(x, lo), hi);
  const int32x4_t ni = vcvtnq_s32_f32(vmulq_f32(xc, vdupq_n_f32(1.44269504088896341f)));
  const float32x4_t n = vcvtq_f32_s32(ni);
  float32x4_t r = vfmsq_f32(xc, n, vdupq_n_f32(0.693359375f));
  r = vfmsq_f32(r, n, vdupq_n_f32(-2.12194440e-4f));
  float32x4_t p = vdupq_n_f32(1.0f / 5040.0f);
  p = vfmaq_f32(vdupq_n_f32(1.0f / 720.0f), p, r);
  p = vfmaq_f32(vdupq_n_f32(1.0f / 120.0f), p, r);
  p = vfmaq_f32(vdupq_n_f32(1.0f / 24.0f), p, r);
  p = vfmaq_f32(vdupq_n_f32(1.0f / 6.0f), p, r);
  p = vfmaq_f32(vdupq_n_f32(0.5f), p, r);
  p = vfmaq_f32(vdupq_n_f32(1.0f), p, r);
  p = vfmaq_f32(vdupq_n_f32(1.0f), p, r);
  const int32x4_t e = vshlq_n_s32(vaddq_s32(ni, vdupq_n_s32(127)), 23);
  float32x4_t y = vmulq_f32(p, vreinterpretq_f32_s32(e));
  y = vreinterpretq_f32_u32(vbicq_u32(vreinterpretq_u32_f32(y), vcltq_f32(x, lo)));
  return vbslq_f32(vcgtq_f32(x, hi), vdupq_n_f32(INFINITY), y);
}

}  // namespace bitllm
