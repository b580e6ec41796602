// NEON activation quantizers (ARMv8.0), bit-exact to act_quant_scalar.cpp: the same float ops per
// element (one x * s multiply, round half to even via vcvtnq_s32_f32, then clamp); the absmax is
// order independent and vectorized, the i4 absmean's float sum stays sequential like the scalar one.
#include <arm_neon.h>

#include <cmath>

#include "kernels.h"

namespace bitllm {

namespace {

// Quantizes xr[0..K) with scale s into codes clamped to [lo, hi]; returns Σ codes.
// Saturating narrows (int32 -> int16 -> int8) are exact after the clamp.
template <int32_t lo, int32_t hi>
int32_t quantize_row(const float* xr,  // [K]
                     int64_t K, float s,
                     int8_t* qr) {  // [K]
  const float32x4_t vs = vdupq_n_f32(s);
  const int32x4_t vlo = vdupq_n_s32(lo);
  const int32x4_t vhi = vdupq_n_s32(hi);
  int32x4_t vacc = vdupq_n_s32(0);
  int64_t k = 0;
  for (; k + 16 <= K; k += 16) {
    int32x4_t c[4];
    for (int j = 0; j < 4; ++j) {
      const float32x4_t v = vmulq_f32(vld1q_f32(xr + k + 4 * j), vs);
      c[j] = vminq_s32(vmaxq_s32(vcvtnq_s32_f32(v), vlo), vhi);  // saturates on overflow, then clamps
    }
    const int16x8_t h0 = vcombine_s16(vqmovn_s32(c[0]), vqmovn_s32(c[1]));
    const int16x8_t h1 = vcombine_s16(vqmovn_s32(c[2]), vqmovn_s32(c[3]));
    const int8x16_t b = vcombine_s8(vqmovn_s16(h0), vqmovn_s16(h1));
    vst1q_s8(qr + k, b);
    vacc = vpadalq_s16(vacc, vpaddlq_s8(b));
  }
  int32_t acc = vaddvq_s32(vacc);
  for (; k < K; ++k) {
    const float v = std::nearbyint(xr[k] * s);  // default rounding mode: half to even
    const int32_t c = v > static_cast<float>(hi) ? hi : (v < static_cast<float>(lo) ? lo : static_cast<int32_t>(v));
    qr[k] = static_cast<int8_t>(c);
    acc += c;
  }
  return acc;
}

void act_quant_i8_neon(const float* x, int64_t ldx, int64_t B, int64_t K, int8_t* q, int64_t ldq,
                       float* scale, int32_t* sum) {
  for (int64_t b = 0; b < B; ++b) {
    const float* xr = x + b * ldx;  // [K]
    int8_t* qr = q + b * ldq;       // [K]
    // max |x| is the same whatever the order (inputs are finite, |x| >= +0).
    float32x4_t vm0 = vdupq_n_f32(0.0f), vm1 = vm0, vm2 = vm0, vm3 = vm0;
    int64_t k = 0;
    for (; k + 16 <= K; k += 16) {
      vm0 = vmaxq_f32(vm0, vabsq_f32(vld1q_f32(xr + k)));
      vm1 = vmaxq_f32(vm1, vabsq_f32(vld1q_f32(xr + k + 4)));
      vm2 = vmaxq_f32(vm2, vabsq_f32(vld1q_f32(xr + k + 8)));
      vm3 = vmaxq_f32(vm3, vabsq_f32(vld1q_f32(xr + k + 12)));
    }
    float amax = vmaxvq_f32(vmaxq_f32(vmaxq_f32(vm0, vm1), vmaxq_f32(vm2, vm3)));
    for (; k < K; ++k) amax = std::fmax(amax, std::fabs(xr[k]));
    const float s = 127.0f / std::fmax(amax, 1e-5f);
    sum[b] = quantize_row<-128, 127>(xr, K, s, qr);
    scale[b] = s;
  }
}

void act_quant_i4_neon(const float* x, int64_t ldx, int64_t B, int64_t K, int8_t* q, int64_t ldq,
                       float* scale, int32_t* sum) {
  const float sqrt7 = 2.6457513110645906f;
  for (int64_t b = 0; b < B; ++b) {
    const float* xr = x + b * ldx;  // [K]
    int8_t* qr = q + b * ldq;       // [K]
    // Sequential float sum in k order (the rounding of each add depends on the order).
    float asum = 0.0f;
    int64_t k = 0;
    for (; k + 4 <= K; k += 4) {
      const float32x4_t a = vabsq_f32(vld1q_f32(xr + k));
      asum += vgetq_lane_f32(a, 0);
      asum += vgetq_lane_f32(a, 1);
      asum += vgetq_lane_f32(a, 2);
      asum += vgetq_lane_f32(a, 3);
    }
    for (; k < K; ++k) asum += std::fabs(xr[k]);
    const float beta = asum / static_cast<float>(K);
    const float s = sqrt7 / (beta + 1e-5f);
    sum[b] = quantize_row<-8, 7>(xr, K, s, qr);
    scale[b] = s;
  }
}

void act_block_sums_neon(const int8_t* q, int64_t ldq, int64_t B, int64_t K, int32_t* bsum) {
  const int64_t nb = K / kScaleBlockK;
  for (int64_t b = 0; b < B; ++b) {
    for (int64_t j = 0; j < nb; ++j) {
      const int8_t* p = q + b * ldq + j * kScaleBlockK;  // [256]
      // Each int16 lane takes 2 codes per step, 16 steps: |sum| <= 32 * 128 = 4096.
      int16x8_t s0 = vdupq_n_s16(0), s1 = s0;
      for (int i = 0; i < kScaleBlockK; i += 32) {
        s0 = vpadalq_s8(s0, vld1q_s8(p + i));
        s1 = vpadalq_s8(s1, vld1q_s8(p + i + 16));
      }
      bsum[b * nb + j] = vaddlvq_s16(s0) + vaddlvq_s16(s1);
    }
  }
}

}  // namespace

void fill_act_quant_neon(KernelTable& t, const CpuFeatures&) {
  t.act_quant_i8 = act_quant_i8_neon;
  t.act_quant_i4 = act_quant_i4_neon;
  t.act_block_sums = act_block_sums_neon;
  t.v_act_quant = "neon";
}

}  // namespace bitllm
