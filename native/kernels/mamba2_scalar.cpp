// Mamba-2 kernels, scalar variant (the C++ reference of mamba2.h): mamba2_impl.inc over one float lane,
// std::exp, register tiles of 4 x 4 floats.
#include <algorithm>
#include <cmath>
#include <cstring>

#include "kernels.h"

namespace bitllm {

namespace {

struct Vec {
  static constexpr int W = 1;
  static constexpr int RB = 4;
  static constexpr int NB = 4;
  using T = float;
  static T load(const float* p) { return *p; }
  static void store(float* p, T v) { *p = v; }
  static T set1(float v) { return v; }
  static T zero() { return 0.0f; }
  static T add(T a, T b) { return a + b; }
  static T mul(T a, T b) { return a * b; }
  static T div(T a, T b) { return a / b; }
  static T fma(T a, T b, T c) { return a * b + c; }  // two roundings (-ffp-contract=off)
  static T exp(T v) { return std::exp(v); }
  static float hsum(T v) { return v; }
};

#include "mamba2_impl.inc"

}  // namespace

void fill_mamba2_scalar(KernelTable& t, const CpuFeatures&) { fill_table(t, "scalar"); }

}  // namespace bitllm
