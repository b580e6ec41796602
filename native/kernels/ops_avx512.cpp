// ops AVX-512 variant (F + BW + VL on top of AVX2/FMA/F16C). Only glu_silu is overridden: the vector
// exp of ops.h on 16 lanes with a masked tail measured 1.6x faster than AVX2 on Zen 4. Everything else
// keeps the AVX2 kernels: rmsnorm, rope, kv_store and relu2 are bound by loads and stores, and a
// 16-lane attention (the AVX2 tiling with zmm, 8 or 16 accumulators) measured 10-40 % slower than
// the AVX2 one on Zen 4, whose 512-bit units are double-pumped 256-bit ones. The q3 KV cache
// (kv_store_q3 / attention_q3) keeps the AVX2 kernels too: its store is bound by the 32 float divisions
// per block that ops.h requires, and vdivps has the same per-element throughput at 512 bits as at
// 256 (Zen 4: double-pumped; Intel: half the zmm rate), and its attention is the AVX2 template above.
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

#include <cmath>

#include "kernels.h"
#include "vexp_avx512.h"

namespace bitllm {

namespace {

inline __mmask16 tail_mask(int64_t n) { return static_cast<__mmask16>((1u << n) - 1u); }  // n < 16

inline __m512 silu_mul(__m512 g, __m512 u) {
  const __m512 e = exp16(_mm512_castsi512_ps(_mm512_xor_si512(_mm512_castps_si512(g), _mm512_set1_epi32(INT32_MIN))));
  return _mm512_mul_ps(_mm512_div_ps(g, _mm512_add_ps(_mm512_set1_ps(1.0f), e)), u);
}

void glu_silu_avx512(const float* gate_up, float* out, int64_t B, int64_t n, int64_t ld_in, int64_t ld_out) {
  for (int64_t b = 0; b < B; ++b) {
    const float* g = gate_up + b * ld_in;  // [n]
    const float* u = g + n;                // [n]
    float* o = out + b * ld_out;           // [n]
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) _mm512_storeu_ps(o + i, silu_mul(_mm512_loadu_ps(g + i), _mm512_loadu_ps(u + i)));
    if (i < n) {
      const __mmask16 m = tail_mask(n - i);
      _mm512_mask_storeu_ps(o + i, m, silu_mul(_mm512_maskz_loadu_ps(m, g + i), _mm512_maskz_loadu_ps(m, u + i)));
    }
  }
}

}  // namespace

void fill_ops_avx512(KernelTable& t, const CpuFeatures&) {
  t.glu_silu = glu_silu_avx512;
  t.v_ops = "avx512";
}

}  // namespace bitllm
