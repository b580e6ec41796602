// Mamba-2 kernels, NEON (ARMv8.0) variant: mamba2_impl.inc over 4 float lanes, the vector exp of ops.h,
// GEMM register tiles of 4 rows x 4 q-registers (16 accumulators of the 32).
#include <arm_neon.h>

#include <algorithm>
#include <cmath>
#include <cstring>

#include "kernels.h"

namespace bitllm {

namespace {

// exp(x) per ops.h: Cody-Waite reduction, degree-7 Taylor polynomial, 0 below -87, +Inf above 88.
inline float32x4_t exp4(float32x4_t x) {
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

struct Vec {
  static constexpr int W = 4;
  static constexpr int RB = 4;
  static constexpr int NB = 4;
  using T = float32x4_t;
  static T load(const float* p) { return vld1q_f32(p); }
  static void store(float* p, T v) { vst1q_f32(p, v); }
  static T set1(float v) { return vdupq_n_f32(v); }
  static T zero() { return vdupq_n_f32(0.0f); }
  static T add(T a, T b) { return vaddq_f32(a, b); }
  static T mul(T a, T b) { return vmulq_f32(a, b); }
  static T div(T a, T b) { return vdivq_f32(a, b); }
  static T fma(T a, T b, T c) { return vfmaq_f32(c, a, b); }
  static T exp(T v) { return exp4(v); }
  static float hsum(T v) { return vaddvq_f32(v); }
};

#include "mamba2_impl.inc"

}  // namespace

void fill_mamba2_neon(KernelTable& t, const CpuFeatures&) { fill_table(t, "neon"); }

}  // namespace bitllm
