// Mamba-2 kernels, AVX-512 (F) variant: mamba2_impl.inc over 16 float lanes, the vector exp of ops.h,
// GEMM register tiles of 4 rows x 4 zmm (16 accumulators of the 32 registers).
//
// GCC 12's AVX-512 headers build "undefined" vectors by self-initialization, which
// -W(maybe-)uninitialized reports once inlined (GCC bug 105593): silenced for the header only.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
#include <immintrin.h>
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif

#include <algorithm>
#include <cmath>
#include <cstring>

#include "kernels.h"
#include "vexp_avx512.h"

namespace bitllm {

namespace {

struct Vec {
  static constexpr int W = 16;
  static constexpr int RB = 6;
  static constexpr int NB = 4;
  using T = __m512;
  static T load(const float* p) { return _mm512_loadu_ps(p); }
  static void store(float* p, T v) { _mm512_storeu_ps(p, v); }
  static T set1(float v) { return _mm512_set1_ps(v); }
  static T zero() { return _mm512_setzero_ps(); }
  static T add(T a, T b) { return _mm512_add_ps(a, b); }
  static T mul(T a, T b) { return _mm512_mul_ps(a, b); }
  static T div(T a, T b) { return _mm512_div_ps(a, b); }
  static T fma(T a, T b, T c) { return _mm512_fmadd_ps(a, b, c); }
  static T exp(T v) { return exp16(v); }
  static float hsum(T v) { return _mm512_reduce_add_ps(v); }
};

#include "mamba2_impl.inc"

}  // namespace

void fill_mamba2_avx512(KernelTable& t, const CpuFeatures&) { fill_table(t, "avx512"); }

}  // namespace bitllm
