// Mamba-2 kernels, NEON (ARMv8.0) variant: mamba2_impl.inc over 4 float lanes, the vector exp of ops.h,
// GEMM register tiles of 4 rows x 4 q-registers (16 accumulators of the 32).
#include <arm_neon.h>

#include <algorithm>
#include <cmath>
#include <cstring>

#include "kernels.h"
#include "vexp_neon.h"

namespace bitllm {

namespace {

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
