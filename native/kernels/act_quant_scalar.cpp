// Scalar activation quantizers: the C++ reference every SIMD variant is tested against.
#include <cmath>
#include <cstring>

#include "kernels.h"

namespace bitllm {

namespace {

void act_quant_i8_scalar(const float* x, int64_t ldx, int64_t B, int64_t K, int8_t* q, int64_t ldq,
                         float* scale, int32_t* sum) {
  for (int64_t b = 0; b < B; ++b) {
    const float* xr = x + b * ldx;  // [K]
    int8_t* qr = q + b * ldq;       // [K]
    float amax = 0.0f;
    for (int64_t k = 0; k < K; ++k) amax = std::fmax(amax, std::fabs(xr[k]));
    const float s = 127.0f / std::fmax(amax, 1e-5f);
    int32_t acc = 0;
    for (int64_t k = 0; k < K; ++k) {
      const float v = std::nearbyint(xr[k] * s);  // default rounding mode: half to even
      const int32_t c = v > 127.0f ? 127 : (v < -128.0f ? -128 : static_cast<int32_t>(v));
      qr[k] = static_cast<int8_t>(c);
      acc += c;
    }
    scale[b] = s;
    sum[b] = acc;
  }
}

void act_quant_i4_scalar(const float* x, int64_t ldx, int64_t B, int64_t K, int8_t* q, int64_t ldq,
                         float* scale, int32_t* sum) {
  const float sqrt7 = 2.6457513110645906f;
  for (int64_t b = 0; b < B; ++b) {
    const float* xr = x + b * ldx;  // [K]
    int8_t* qr = q + b * ldq;       // [K]
    float asum = 0.0f;
    for (int64_t k = 0; k < K; ++k) asum += std::fabs(xr[k]);
    const float beta = asum / static_cast<float>(K);
    const float s = sqrt7 / (beta + 1e-5f);
    int32_t acc = 0;
    for (int64_t k = 0; k < K; ++k) {
      const float v = std::nearbyint(xr[k] * s);
      const int32_t c = v > 7.0f ? 7 : (v < -8.0f ? -8 : static_cast<int32_t>(v));
      qr[k] = static_cast<int8_t>(c);
      acc += c;
    }
    scale[b] = s;
    sum[b] = acc;
  }
}

// Bit pattern of |v|: for finite floats, the order of these integers is the order of |v|.
uint32_t abs_bits(float v) {
  uint32_t u;
  std::memcpy(&u, &v, 4);
  return u & 0x7fffffffu;
}

// Radix select over the 31 magnitude bits, 8 bits per pass from the top: returns T, the keep-th largest
// |x| (as bits), and sets *ties to how many elements equal to T are kept (keep minus the count above T).
uint32_t topk_threshold(const float* x,  // [K]
                        int64_t K, int64_t keep, int64_t* ties) {
  uint32_t prefix = 0, mask = 0;
  int64_t rank = keep;  // 1-based rank of T among the elements that match `prefix` so far
  for (int shift = 24; shift >= 0; shift -= 8) {
    int64_t hist[256] = {};
    for (int64_t k = 0; k < K; ++k) {
      const uint32_t u = abs_bits(x[k]);
      if ((u & mask) == prefix) ++hist[(u >> shift) & 255u];
    }
    int d = 255;
    while (hist[d] < rank) rank -= hist[d--];
    prefix |= static_cast<uint32_t>(d) << shift;
    mask |= 255u << shift;
  }
  *ties = rank;
  return prefix;
}

void act_quant_topk_i8_scalar(const float* x, int64_t ldx, int64_t B, int64_t K, int64_t keep, int8_t* q,
                              int64_t ldq, float* scale, int32_t* sum) {
  for (int64_t b = 0; b < B; ++b) {
    const float* xr = x + b * ldx;  // [K]
    int8_t* qr = q + b * ldq;       // [K]
    int64_t ties = 0;
    const uint32_t thr = keep > 0 ? topk_threshold(xr, K, keep, &ties) : 0;
    float amax = 0.0f;
    if (keep > 0)
      for (int64_t k = 0; k < K; ++k) amax = std::fmax(amax, std::fabs(xr[k]));
    const float s = 127.0f / std::fmax(amax, 1e-5f);
    int32_t acc = 0;
    for (int64_t k = 0; k < K; ++k) {
      const uint32_t u = abs_bits(xr[k]);
      bool kept = false;
      if (keep > 0 && u > thr) {
        kept = true;
      } else if (keep > 0 && u == thr && ties > 0) {
        kept = true;
        --ties;
      }
      if (!kept) {
        qr[k] = 0;
        continue;
      }
      const float v = std::nearbyint(xr[k] * s);
      const int32_t c = v > 127.0f ? 127 : (v < -128.0f ? -128 : static_cast<int32_t>(v));
      qr[k] = static_cast<int8_t>(c);
      acc += c;
    }
    scale[b] = s;
    sum[b] = acc;
  }
}

void act_block_sums_scalar(const int8_t* q, int64_t ldq, int64_t B, int64_t K, int32_t* bsum) {
  const int64_t nb = K / kScaleBlockK;
  for (int64_t b = 0; b < B; ++b) {
    for (int64_t j = 0; j < nb; ++j) {
      const int8_t* p = q + b * ldq + j * kScaleBlockK;
      int32_t s = 0;
      for (int i = 0; i < kScaleBlockK; ++i) s += p[i];
      bsum[b * nb + j] = s;
    }
  }
}

}  // namespace

void fill_act_quant_scalar(KernelTable& t, const CpuFeatures&) {
  t.act_quant_i8 = act_quant_i8_scalar;
  t.act_quant_i4 = act_quant_i4_scalar;
  t.act_block_sums = act_block_sums_scalar;
  t.act_quant_topk_i8 = act_quant_topk_i8_scalar;
  t.v_act_quant = "scalar";
}

}  // namespace bitllm
