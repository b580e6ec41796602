// Scalar activation quantizers: the C++ reference every SIMD variant is tested against.
#include <cmath>
#include <algorithm>
#include <cstring>
#include <functional>
#include <vector>

#include "kernels.h"

namespace bitllm {

// Two passes instead of a radix select's four: a 4096-bin histogram of the top 12 bits of |x| (sign off:
// for finite floats the integer order of these bits is the order of |x|) finds the bin that holds the
// keep-th largest; an exact selection among that bin's elements (typically a few percent of K) finds T.
uint32_t topk_select(const float* x, int64_t K, int64_t keep, int64_t* ties, uint32_t* umax) {
  constexpr int kShift = 19;  // 31 magnitude bits -> 12-bit bins
  uint32_t hist[1u << 12];
  std::memset(hist, 0, sizeof(hist));
  uint32_t top = 0;
  for (int64_t k = 0; k < K; ++k) {
    const uint32_t u = abs_bits(x[k]);
    top = u > top ? u : top;
    ++hist[u >> kShift];
  }
  *umax = top;
  int64_t rank = keep;  // 1-based rank of T among the elements of bins <= d
  uint32_t d = top >> kShift;
  while (static_cast<int64_t>(hist[d]) < rank) rank -= hist[d--];
  thread_local std::vector<uint32_t> cand;
  cand.clear();
  cand.reserve(hist[d]);
  for (int64_t k = 0; k < K; ++k) {
    const uint32_t u = abs_bits(x[k]);
    if ((u >> kShift) == d) cand.push_back(u);
  }
  std::nth_element(cand.begin(), cand.begin() + (rank - 1), cand.end(), std::greater<uint32_t>());
  const uint32_t thr = cand[static_cast<size_t>(rank - 1)];
  int64_t above = 0;
  for (uint32_t u : cand) above += u > thr;
  *ties = rank - above;
  return thr;
}

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

void act_quant_topk_i8_scalar(const float* x, int64_t ldx, int64_t B, int64_t K, int64_t keep, int8_t* q,
                              int64_t ldq, float* scale, int32_t* sum) {
  for (int64_t b = 0; b < B; ++b) {
    TopkRow r = topk_row(x + b * ldx, K, keep);
    sum[b] = topk_quant_tail(x + b * ldx, 0, K, r, q + b * ldq);
    scale[b] = r.s;
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
