// Activation quantizers, AVX2 variant. Bit-exact with act_quant_scalar.cpp:
// - max|x| and the integer sums are order-independent, so they are vectorized freely;
// - x * s is one vmulps, clamped to the code range first (round and clamp commute because the bounds
//   are integers; clamping first also keeps vcvtps2dq in range), then rounded by vcvtps2dq in the
//   default MXCSR mode, round-half-even, as std::nearbyint; tails use the reference's scalar ops;
// - the i4 absmean sum Σ|x| is a float sum whose result depends on order: it stays a sequential
//   scalar sum in k order (four rows interleaved to hide the add latency), exactly as the reference.
#include <immintrin.h>

#include <cmath>

#include "kernels.h"

namespace bitllm {

namespace {

float abs_max(const float* x,  // [K]
              int64_t K) {
  const __m256 sign = _mm256_set1_ps(-0.0f);
  __m256 m0 = _mm256_setzero_ps(), m1 = m0;
  int64_t k = 0;
  for (; k + 16 <= K; k += 16) {
    m0 = _mm256_max_ps(m0, _mm256_andnot_ps(sign, _mm256_loadu_ps(x + k)));
    m1 = _mm256_max_ps(m1, _mm256_andnot_ps(sign, _mm256_loadu_ps(x + k + 8)));
  }
  alignas(32) float lanes[8];
  _mm256_store_ps(lanes, _mm256_max_ps(m0, m1));
  float amax = 0.0f;
  for (float v : lanes) amax = std::fmax(amax, v);
  for (; k < K; ++k) amax = std::fmax(amax, std::fabs(x[k]));
  return amax;
}

// q[k] = clamp(round_half_even(x[k] * s), lo, hi); returns Σ q.
int32_t quantize_row(const float* x,  // [K]
                     int64_t K, float s, float lo, float hi,
                     int8_t* q) {  // [K]
  const __m256 vs = _mm256_set1_ps(s), vlo = _mm256_set1_ps(lo), vhi = _mm256_set1_ps(hi);
  // vpackssdw / vpacksswb interleave 128-bit lanes; this restores k order.
  const __m256i order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
  __m256i acc = _mm256_setzero_si256();
  int64_t k = 0;
  for (; k + 32 <= K; k += 32) {
    __m256i c[4];
    for (int i = 0; i < 4; ++i) {
      const __m256 v = _mm256_mul_ps(_mm256_loadu_ps(x + k + 8 * i), vs);
      c[i] = _mm256_cvtps_epi32(_mm256_min_ps(_mm256_max_ps(v, vlo), vhi));
      acc = _mm256_add_epi32(acc, c[i]);
    }
    const __m256i p = _mm256_packs_epi16(_mm256_packs_epi32(c[0], c[1]), _mm256_packs_epi32(c[2], c[3]));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(q + k), _mm256_permutevar8x32_epi32(p, order));
  }
  alignas(32) int32_t lanes[8];
  _mm256_store_si256(reinterpret_cast<__m256i*>(lanes), acc);
  int32_t sum = 0;
  for (int32_t v : lanes) sum += v;
  for (; k < K; ++k) {
    const float v = std::nearbyint(x[k] * s);
    const int32_t c = v > hi ? static_cast<int32_t>(hi) : (v < lo ? static_cast<int32_t>(lo) : static_cast<int32_t>(v));
    q[k] = static_cast<int8_t>(c);
    sum += c;
  }
  return sum;
}

void act_quant_i8_avx2(const float* x, int64_t ldx, int64_t B, int64_t K, int8_t* q, int64_t ldq, float* scale,
                       int32_t* sum) {
  for (int64_t b = 0; b < B; ++b) {
    const float s = 127.0f / std::fmax(abs_max(x + b * ldx, K), 1e-5f);
    scale[b] = s;
    sum[b] = quantize_row(x + b * ldx, K, s, -128.0f, 127.0f, q + b * ldq);
  }
}

void act_quant_i4_avx2(const float* x, int64_t ldx, int64_t B, int64_t K, int8_t* q, int64_t ldq, float* scale,
                       int32_t* sum) {
  const float sqrt7 = 2.6457513110645906f;
  for (int64_t b = 0; b < B; b += 4) {
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
// kept (the bits are < 2^31, so a signed compare orders them), lanes equal to T are kept lowest index first
// while ties remain (rare: a scalar walk over the mask), kept lanes are quantized exactly as act_quant_i8.
void act_quant_topk_i8_avx2(const float* x, int64_t ldx, int64_t B, int64_t K, int64_t keep, int8_t* q,
                            int64_t ldq, float* scale, int32_t* sum) {
  const __m256i absmask = _mm256_set1_epi32(0x7fffffff);
  for (int64_t b = 0; b < B; ++b) {
    const float* xr = x + b * ldx;  // [K]
    int8_t* qr = q + b * ldq;       // [K]
    TopkRow r = topk_row(xr, K, keep);
    const __m256 vs = _mm256_set1_ps(r.s), vlo = _mm256_set1_ps(-128.0f), vhi = _mm256_set1_ps(127.0f);
    const __m256i vt = _mm256_set1_epi32(static_cast<int32_t>(r.thr));
    __m256i acc = _mm256_setzero_si256();
    int64_t k = 0;
    alignas(32) int32_t codes[8];
    for (; k + 8 <= K; k += 8) {
      const __m256 xv = _mm256_loadu_ps(xr + k);
      const __m256i u = _mm256_and_si256(_mm256_castps_si256(xv), absmask);
      __m256i kept = _mm256_setzero_si256();
      if (r.any) {
        kept = _mm256_cmpgt_epi32(u, vt);
        uint32_t eq = static_cast<uint32_t>(_mm256_movemask_ps(_mm256_castsi256_ps(_mm256_cmpeq_epi32(u, vt))));
        if (eq != 0 && r.ties > 0) {
          uint32_t take = 0;
          while (eq != 0 && r.ties > 0) {
            take |= eq & (0u - eq);
            eq &= eq - 1;
            --r.ties;
          }
          const __m256i bits = _mm256_setr_epi32(1, 2, 4, 8, 16, 32, 64, 128);
          const __m256i sel = _mm256_cmpeq_epi32(_mm256_and_si256(_mm256_set1_epi32(static_cast<int32_t>(take)), bits), bits);
          kept = _mm256_or_si256(kept, sel);
        }
      }
      const __m256 v = _mm256_mul_ps(xv, vs);
      const __m256i c = _mm256_and_si256(kept, _mm256_cvtps_epi32(_mm256_min_ps(_mm256_max_ps(v, vlo), vhi)));
      acc = _mm256_add_epi32(acc, c);
      _mm256_store_si256(reinterpret_cast<__m256i*>(codes), c);
      for (int j = 0; j < 8; ++j) qr[k + j] = static_cast<int8_t>(codes[j]);
    }
    alignas(32) int32_t lanes[8];
    _mm256_store_si256(reinterpret_cast<__m256i*>(lanes), acc);
    int32_t total = 0;
    for (int32_t v : lanes) total += v;
    total += topk_quant_tail(xr, k, K, r, qr);  // tail: the scalar rule
    scale[b] = r.s;
    sum[b] = total;
  }
}

void act_block_sums_avx2(const int8_t* q, int64_t ldq, int64_t B, int64_t K, int32_t* bsum) {
  // Σ q = Σ (q ^ 0x80 as u8) - 128 * 256 per block; vpsadbw sums unsigned bytes exactly.
  const int64_t nb = K / kScaleBlockK;
  const __m256i bias = _mm256_set1_epi8(static_cast<char>(0x80)), zero = _mm256_setzero_si256();
  for (int64_t b = 0; b < B; ++b) {
    for (int64_t j = 0; j < nb; ++j) {
      const int8_t* p = q + b * ldq + j * kScaleBlockK;  // [256]
      __m256i acc = zero;
      for (int i = 0; i < kScaleBlockK; i += 32) {
        const __m256i v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + i));
        acc = _mm256_add_epi64(acc, _mm256_sad_epu8(_mm256_xor_si256(v, bias), zero));
      }
      alignas(32) int64_t lanes[4];
      _mm256_store_si256(reinterpret_cast<__m256i*>(lanes), acc);
      bsum[b * nb + j] = static_cast<int32_t>(lanes[0] + lanes[1] + lanes[2] + lanes[3] - 128 * kScaleBlockK);
    }
  }
}

}  // namespace

void fill_act_quant_avx2(KernelTable& t, const CpuFeatures&) {
  t.act_quant_i8 = act_quant_i8_avx2;
  t.act_quant_i4 = act_quant_i4_avx2;
  t.act_block_sums = act_block_sums_avx2;
  t.act_quant_topk_i8 = act_quant_topk_i8_avx2;
  t.v_act_quant = "avx2";
}

}  // namespace bitllm
