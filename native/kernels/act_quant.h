// Activation quantizers: float tokens -> int8 codes + per-token scale and code sum.
#pragma once
#include <cstdint>
#include <cmath>
#include <cstring>

namespace bitllm {

// A batch of B quantized tokens, each K codes. The integer dot of a token with a weight row,
// divided by `scale[b]`, is the float dot (y = dot / scale).
struct QActs {
  const int8_t* q;      // [B, ldq] codes
  const float* scale;   // [B] s such that x ≈ q / s
  const int32_t* sum;   // [B] Σ_k q[b, k]
  const int32_t* bsum;  // [B, K/256] Σ of each 256-block of q; only for block-scaled weights, else nullptr
  int64_t B;
  int64_t K;
  int64_t ldq;
};

// act_quant_i8 (BitNet b1.58 A8, bitnet.cpp quantize_row_i8_s):
//   amax = max_k |x[b,k]|;  s = 127.0f / max(amax, 1e-5f)
//   q = clamp(round_half_even(x * s), -128, 127)   (x * s is one float multiply, never fused)
//   scale[b] = s, sum[b] = Σ q
// act_quant_i4 (BitNet a4.8 A4 absmean, see DESIGN.md §3.1):
//   beta = (Σ_k |x[b,k]|) / K  (float sum in k order, then one divide);  s = sqrt(7) / (beta + 1e-5f)
//   q = clamp(round_half_even(x * s), -8, 7) stored one code per int8; scale[b] = s, sum[b] = Σ q
// Inputs are finite floats. Rows are processed independently (callers split B across threads).
using act_quant_fn = void (*)(const float* x,  // [B, ldx]
                              int64_t ldx, int64_t B, int64_t K,
                              int8_t* q,  // [B, ldq]
                              int64_t ldq,
                              float* scale,   // [B]
                              int32_t* sum);  // [B]

// act_quant_topk_i8 (BitNet a4.8 o_proj input: TopK sparsification, then A8), per token b, with
// `keep` in [0, K] (the caller's k = floor(K * ratio)):
//   a_k = |x[b,k]| (so -0 == +0); T = the keep-th largest a_k (keep >= 1)
//   kept = { k : a_k > T } plus the lowest indices k with a_k == T, until `keep` are kept (ties at the
//          threshold go to the lower index first, deterministically)
//   x'_k = x[b,k] if k is kept, else 0; then exactly act_quant_i8 on x' (so amax = max_k |x[b,k]| when
//   keep >= 1, and amax = 0, s = 127 / 1e-5, every q = 0 when keep == 0); codes of dropped k are 0.
// Matches the trainer's topk_half (keep = K/2) followed by quant_i8 up to its unspecified tie order.
using act_quant_topk_fn = void (*)(const float* x,  // [B, ldx]
                                   int64_t ldx, int64_t B, int64_t K, int64_t keep,
                                   int8_t* q,  // [B, ldq]
                                   int64_t ldq,
                                   float* scale,   // [B]
                                   int32_t* sum);  // [B]

// The bits of |v| (sign cleared): for finite floats their unsigned order is the order of |v|, and -0 == +0.
// `static`: each ISA's translation unit keeps its own copy (no cross-ISA inline merging at link time).
static inline uint32_t abs_bits(float v) {
  uint32_t u;
  std::memcpy(&u, &v, 4);
  return u & 0x7fffffffu;
}
static inline float abs_bits_to_float(uint32_t u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

// The selection step of act_quant_topk_i8 for one token x [K], 1 <= keep <= K (act_quant_scalar.cpp, built
// for the baseline ISA and shared by every variant): returns T = abs_bits of the keep-th largest |x|, sets
// *ties to how many elements with abs_bits == T are kept (the lowest indices first) and *umax to the largest
// abs_bits (so max|x| = abs_bits_to_float(*umax)).
uint32_t topk_select(const float* x, int64_t K, int64_t keep, int64_t* ties, uint32_t* umax);

// One token's top-k state: the threshold bits, the ties still to keep, the int8 scale (act_quant_i8's, from
// max|x| when keep >= 1, else 127 / 1e-5 with nothing kept).
struct TopkRow {
  uint32_t thr = 0;
  int64_t ties = 0;
  bool any = false;  // keep >= 1
  float s = 0.0f;
};
static inline TopkRow topk_row(const float* x, int64_t K, int64_t keep) {
  TopkRow r;
  uint32_t umax = 0;
  r.any = keep > 0;
  if (r.any) r.thr = topk_select(x, K, keep, &r.ties, &umax);
  const float amax = r.any ? abs_bits_to_float(umax) : 0.0f;
  r.s = 127.0f / (amax > 1e-5f ? amax : 1e-5f);
  return r;
}

// The contract element by element for x[k0, K): kept elements are quantized as act_quant_i8, the others get
// code 0; consumes r.ties. Returns the sum of the codes written.
static inline int32_t topk_quant_tail(const float* x, int64_t k0, int64_t K, TopkRow& r, int8_t* q) {
  int32_t acc = 0;
  for (int64_t k = k0; k < K; ++k) {
    const uint32_t u = abs_bits(x[k]);
    bool kept = r.any && u > r.thr;
    if (!kept && r.any && u == r.thr && r.ties > 0) {
      kept = true;
      --r.ties;
    }
    if (!kept) {
      q[k] = 0;
      continue;
    }
    const float v = std::nearbyint(x[k] * r.s);
    const int32_t c = v > 127.0f ? 127 : (v < -128.0f ? -128 : static_cast<int32_t>(v));
    q[k] = static_cast<int8_t>(c);
    acc += c;
  }
  return acc;
}

// Per-256-block sums of already quantized codes: bsum[b, j] = Σ_{k in block j} q[b, k]. K % 256 == 0.
using act_block_sums_fn = void (*)(const int8_t* q,  // [B, ldq]
                                   int64_t ldq, int64_t B, int64_t K,
                                   int32_t* bsum);  // [B, K/256]

}  // namespace bitllm
