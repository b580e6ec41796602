// Activation quantizers, AVX-512 variant. Bit-exact with act_quant_scalar.cpp:
// - max|x| and the integer sums are order-independent, so they are vectorized freely;
// - x * s is one vmulps, clamped to the code range first (round and clamp commute because the bounds
//   are integers; clamping first also keeps vcvtps2dq in range), then rounded by vcvtps2dq in the
//   default MXCSR mode, round-half-even, as std::nearbyint;
// - the i4 absmean sum Σ|x| is a float sum whose result depends on order: it stays a sequential
//   scalar sum in k order (four rows interleaved to hide the add latency), exactly as the reference.
#include <immintrin.h>

#include <cmath>

#include "kernels.h"

// GCC 12 reports its own _mm512_undefined_*() (the pass-through of unmasked intrinsics) as
// maybe-uninitialized once inlined; the warning is spurious.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif

namespace bitllm {

namespace {

inline __mmask16 tail_mask(int64_t n) { return static_cast<__mmask16>((1u << n) - 1u); }

float abs_max(const float* x,  // [K]
              int64_t K) {
  __m512 m0 = _mm512_setzero_ps(), m1 = m0;
  int64_t k = 0;
  for (; k + 32 <= K; k += 32) {
    m0 = _mm512_max_ps(m0, _mm512_abs_ps(_mm512_loadu_ps(x + k)));
    m1 = _mm512_max_ps(m1, _mm512_abs_ps(_mm512_loadu_ps(x + k + 16)));
  }
  for (; k < K; k += 16) {
    const __mmask16 m = K - k >= 16 ? static_cast<__mmask16>(0xffff) : tail_mask(K - k);
    m0 = _mm512_max_ps(m0, _mm512_abs_ps(_mm512_maskz_loadu_ps(m, x + k)));  // masked-off lanes are 0
  }
  alignas(64) float lanes[16];
  _mm512_store_ps(lanes, _mm512_max_ps(m0, m1));
  float amax = 0.0f;
  for (float v : lanes) amax = std::fmax(amax, v);
  return amax;
}

// q[k] = clamp(round_half_even(x[k] * s), lo, hi); returns Σ q.
int32_t quantize_row(const float* x,  // [K]
                     int64_t K, float s, float lo, float hi,
                     int8_t* q) {  // [K]
  const __m512 vs = _mm512_set1_ps(s), vlo = _mm512_set1_ps(lo), vhi = _mm512_set1_ps(hi);
  __m512i acc = _mm512_setzero_si512();
  for (int64_t k = 0; k < K; k += 16) {
    const __mmask16 m = K - k >= 16 ? static_cast<__mmask16>(0xffff) : tail_mask(K - k);
    const __m512 v = _mm512_mul_ps(_mm512_maskz_loadu_ps(m, x + k), vs);
    const __m512i c = _mm512_cvtps_epi32(_mm512_min_ps(_mm512_max_ps(v, vlo), vhi));
    acc = _mm512_add_epi32(acc, c);  // masked-off lanes are round(0 * s) = 0
    _mm512_mask_cvtepi32_storeu_epi8(q + k, m, c);
  }
  alignas(64) int32_t lanes[16];
  _mm512_store_si512(lanes, acc);
  int32_t sum = 0;
  for (int32_t v : lanes) sum += v;
  return sum;
}

void act_quant_i8_avx512(const float* x, int64_t ldx, int64_t B, int64_t K, int8_t* q, int64_t ldq, float* scale,
                         int32_t* sum) {
  for (int64_t b = 0; b < B; ++b) {
    const float s = 127.0f / std::fmax(abs_max(x + b * ldx, K), 1e-5f);
    scale[b] = s;
    sum[b] = quantize_row(x + b * ldx, K, s, -128.0f, 127.0f, q + b * ldq);
  }
}

void act_quant_i4_avx512(const float* x, int64_t ldx, int64_t B, int64_t K, int8_t* q, int64_t ldq, float* scale,
                         int32_t* sum) {
  const float sqrt7 = 2.6457513110645906f;
  int64_t b = 0;
  for (; b < B; b += 4) {
    // Σ|x| in k order per row; four independent rows per pass so the adds pipeline.
    const int64_t nr = B - b < 4 ? B - b : 4;
    float asum[4] = {0.0f, 0.0f, 0.0f, 0.0f};
    if (nr == 4) {
      const float *x0 = x + b * ldx, *x1 = x0 + ldx, *x2 = x1 + ldx, *x3 = x2 + ldx;
      for (int64_t k = 0; k < K; ++k) {
        asum[0] += std::fabs(x0[k]);
        asum[1] += std::fabs(x1[k]);
        asum[2] += std::fabs(x2[k]);
        asum[3] += std::fabs(x3[k]);
      }
    } else {
      for (int64_t r = 0; r < nr; ++r)
        for (int64_t k = 0; k < K; ++k) asum[r] += std::fabs(x[(b + r) * ldx + k]);
    }
    for (int64_t r = 0; r < nr; ++r) {
      const float beta = asum[r] / static_cast<float>(K);
      const float s = sqrt7 / (beta + 1e-5f);
      scale[b + r] = s;
      sum[b + r] = quantize_row(x + (b + r) * ldx, K, s, -8.0f, 7.0f, q + (b + r) * ldq);
    }
  }
}

// act_quant_topk_i8: the threshold from topk_select, then one vector pass: lanes with |x| bits above T are
// kept, lanes equal to T are kept lowest index first while ties remain (rare: a scalar walk over the mask),
// and kept lanes are quantized exactly as act_quant_i8 (dropped lanes give code 0).
void act_quant_topk_i8_avx512(const float* x, int64_t ldx, int64_t B, int64_t K, int64_t keep, int8_t* q,
                              int64_t ldq, float* scale, int32_t* sum) {
  const __m512i absmask = _mm512_set1_epi32(0x7fffffff);
  for (int64_t b = 0; b < B; ++b) {
    const float* xr = x + b * ldx;  // [K]
    int8_t* qr = q + b * ldq;       // [K]
    TopkRow r = topk_row(xr, K, keep);
    const __m512 vs = _mm512_set1_ps(r.s), vlo = _mm512_set1_ps(-128.0f), vhi = _mm512_set1_ps(127.0f);
    const __m512i vt = _mm512_set1_epi32(static_cast<int32_t>(r.thr));
    __m512i acc = _mm512_setzero_si512();
    for (int64_t k = 0; k < K; k += 16) {
      const __mmask16 m = K - k >= 16 ? static_cast<__mmask16>(0xffff) : tail_mask(K - k);
      const __m512 xv = _mm512_maskz_loadu_ps(m, xr + k);
      const __m512i u = _mm512_and_si512(_mm512_castps_si512(xv), absmask);
      __mmask16 kept = 0;
      if (r.any) {
        kept = _mm512_mask_cmpgt_epu32_mask(m, u, vt);
        uint32_t eq = _mm512_mask_cmpeq_epu32_mask(m, u, vt);
        while (eq != 0 && r.ties > 0) {
          kept = static_cast<__mmask16>(kept | (eq & (0u - eq)));  // lowest tied lane
          eq &= eq - 1;
          --r.ties;
        }
      }
      const __m512 v = _mm512_mul_ps(xv, vs);
      const __m512i c = _mm512_maskz_mov_epi32(kept, _mm512_cvtps_epi32(_mm512_min_ps(_mm512_max_ps(v, vlo), vhi)));
      acc = _mm512_add_epi32(acc, c);
      _mm512_mask_cvtepi32_storeu_epi8(qr + k, m, c);
    }
    scale[b] = r.s;
    sum[b] = _mm512_reduce_add_epi32(acc);
  }
}

void act_block_sums_avx512(const int8_t* q, int64_t ldq, int64_t B, int64_t K, int32_t* bsum) {
  // Σ q = Σ (q ^ 0x80 as u8) - 128 * 256 per block; vpsadbw sums unsigned bytes exactly.
  const int64_t nb = K / kScaleBlockK;
  const __m512i bias = _mm512_set1_epi8(static_cast<char>(0x80)), zero = _mm512_setzero_si512();
  for (int64_t b = 0; b < B; ++b) {
    for (int64_t j = 0; j < nb; ++j) {
      const int8_t* p = q + b * ldq + j * kScaleBlockK;  // [256]
      __m512i acc = zero;
      for (int i = 0; i < kScaleBlockK; i += 64)
        acc = _mm512_add_epi64(acc, _mm512_sad_epu8(_mm512_xor_si512(_mm512_loadu_si512(p + i), bias), zero));
      alignas(64) int64_t lanes[8];
      _mm512_store_si512(lanes, acc);
      int64_t s = 0;
      for (int64_t v : lanes) s += v;
      bsum[b * nb + j] = static_cast<int32_t>(s - 128 * kScaleBlockK);
    }
  }
}

}  // namespace

void fill_act_quant_avx512(KernelTable& t, const CpuFeatures&) {
  t.act_quant_i8 = act_quant_i8_avx512;
  t.act_quant_i4 = act_quant_i4_avx512;
  t.act_block_sums = act_block_sums_avx512;
  t.act_quant_topk_i8 = act_quant_topk_i8_avx512;
  t.v_act_quant = "avx512";
}

}  // namespace bitllm
