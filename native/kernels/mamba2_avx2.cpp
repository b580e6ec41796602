// Mamba-2 kernels, AVX2 + FMA variant: mamba2_impl.inc over 8 float lanes, the vector exp of ops.h,
// GEMM register tiles of 4 rows x 2 ymm (8 accumulators: the 16 ymm registers hold tile, row and broadcast).
#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <cstring>

#include "kernels.h"
#include "vexp_avx2.h"

namespace bitllm {

namespace {

struct Vec {
  static constexpr int W = 8;
  static constexpr int RB = 4;
  static constexpr int NB = 2;
  using T = __m256;
  static T load(const float* p) { return _mm256_loadu_ps(p); }
  static void store(float* p, T v) { _mm256_storeu_ps(p, v); }
  static T set1(float v) { return _mm256_set1_ps(v); }
  static T zero() { return _mm256_setzero_ps(); }
  static T add(T a, T b) { return _mm256_add_ps(a, b); }
  static T mul(T a, T b) { return _mm256_mul_ps(a, b); }
  static T div(T a, T b) { return _mm256_div_ps(a, b); }
  static T fma(T a, T b, T c) { return _mm256_fmadd_ps(a, b, c); }
  static T exp(T v) { return exp8(v); }
  static float hsum(T v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
  }
};

#include "mamba2_impl.inc"

}  // namespace

void fill_mamba2_avx2(KernelTable& t, const CpuFeatures&) { fill_table(t, "avx2"); }

}  // namespace bitllm
