// Float kernels of the Mamba-2 mixer (Bi-Mamba's block): the causal depthwise conv with its state, the SSD
// recurrence (decode, and the token-by-token form of prefill), the SSD chunked scan (the prefill path) and
// the gated RMSNorm. The float64 oracle is lib/reference/mamba2.ts (refMamba2Conv, refSsdRecurrent,
// refSsdChunked, refGatedRmsNorm); each function here has that function's contract in float32.
// Variants: mamba2_scalar.cpp (the C++ reference), mamba2_avx2.cpp, mamba2_avx512.cpp, mamba2_neon.cpp; the
// code is one template (mamba2_impl.inc) over a vector type, so the variants differ only in the summation
// order of their dot products / GEMM tiles and in the exp (scalar: std::exp; SIMD: the vector exp of ops.h,
// <= 3 ulp on [-87, 88], 0 below, +Inf above).
//
// Shared numerics (identical bits in every variant): per token t and head h,
//   v = double(dt) + double(dtBias);  dth = v > 20 ? v : log1p(exp(v))   (torch's softplus, threshold 20)
//   dA = exp(-exp(double(ALog)) * dth)                                  (both in double, rounded once)
// The chunked scan's decays are products of those float dA's: Dk[t][s] = dA[s+1] ... dA[t] (in order),
// P[t] = dA[0] ... dA[t] (the decay of the state entering the chunk up to row t).
//
// Bounds (u = 2^-24; checked by native/tests/test_mamba2.cpp against a double evaluation and by
// test/kernels-mamba2.test.ts against lib/reference/mamba2.ts, whose mamba2ConvBound, ssdRecurrentBound,
// ssdChunkedBound and gatedRmsNormBound compute them per element; the constants are first-order rounding
// counts with slack for second-order terms):
//   conv       |y - y_ex| <= 1.1 (K + 2) u S + 8 u |y_ex| + 1e-36 S + 2^-149,   S = |bias| + Σ_k |w_k h_k|
//              (K + 1 rounded terms in the pre-activation, |silu'| <= 1.1, silu itself 8 u as glu_silu).
//   recurrent  per state element (h, i, n), magnitude M and error E carried across tokens and calls:
//                M_t = dA M_{t-1} + |dth x B|,    M_0 = |state_0|
//                E_t = dA (1 + 3u) E_{t-1} + 5 u M_t + 2^-140,    E_0 = 0
//              |state - state_ex| <= E_T, and per output
//                |y - y_ex| <= Σ_n |C_n| (E_n + (N + 2) u (M_n + E_n)) + 3 u |D x| + 2^-140
//              (v = dA s + (dth x) B: 3u on the decayed term, 4u on the input term; y: an N-term dot,
//              then + D x). The bound grows with the number of steps through E.
//   chunked    per chunk of L rows (entering error E, magnitude M), c = (N + 3 L + 8) u:
//                |y_t - y_ex| <= c [Σ_{s<=t} Dk dth_s |x_s| (|C_t|.|B_s|) + P_t Σ_n |C_t,n| (M_n + E_n)]
//                               + P_t Σ_n |C_t,n| E_n + 3 u |D x_t| + 2^-120 L Z_t + 2^-130 L (1 + Σ_{s<=t} dth_s |x_s|) + 2^-149
//                M' = P_L M + Σ_s Dk_{L,s} dth_s |x_s B_s|
//                E' = P_L E + (3 L + 8) u (M' + P_L E) + 2^-120 L (M + E + Σ_s dth_s |x_s B_s|)
//                     + 2^-130 L (1 + Σ_s dth_s |x_s|)
//              where |C_t|.|B_s| = Σ_n |C_t,n B_s,n|, Dk and P the exact decays (P_L = P_{L-1}), Z_t the same
//              sums without the decays, and the 2^-120 / 2^-130 terms cover decay products and scaled inputs that
//              underflow. (C.B: N-term dots; Dk and P: up to L rounded products; the diagonal, off-diagonal and
//              state sums: <= L or N terms each.)
//   gated_rmsnorm  |o - o_ex| <= 24 u |o_ex| + (1e-36 |y z| + 2^-149) s |w| + 2^-149,   s = the exact
//              1 / sqrt(mean(t^2) + eps): t = y silu(z) (silu 8u, product u), Σ t^2 in double, the scale
//              rounded once, then (t s) w.
// The chunked scan and the recurrence compute the same function: both are checked against the reference
// (which checks refSsdChunked = refSsdRecurrent) rather than bit for bit against each other.
#pragma once
#include <cmath>
#include <cstdint>

// The prebuilt binaries must load on glibc 2.28 (docs/shipping.md): glibc 2.29 added a new default version of
// exp (the same results; only the SVID error-handling wrapper went away), so bind the version every glibc has,
// as ops.h does for pow. Every translation unit that calls std::exp(double) includes this header.
#if defined(__GLIBC__) && defined(__x86_64__)
__asm__(".symver exp,exp@GLIBC_2.2.5");
#elif defined(__GLIBC__) && defined(__aarch64__)
__asm__(".symver exp,exp@GLIBC_2.17");
#endif

namespace bitllm {

// Largest conv kernel (dConv; Mamba-2 uses 4) and chunk length the kernels accept.
constexpr int64_t kMamba2MaxConv = 16;
constexpr int64_t kSsdMaxChunk = 256;

// Causal depthwise conv + SiLU over channels [c0, c1):
//   out[t, c] = silu(bias[c] + Σ_k w[c, k] h[t + k, c]),  h = the K - 1 state rows then the T input rows
// (tap K - 1 multiplies the current row); the sum runs bias first, then k = 0 .. K-1. Then the state
// [K - 1, C] becomes the last K - 1 rows of h (oldest first) for those channels. 1 <= K <= kMamba2MaxConv.
// out must not overlap xbc, w, bias or state; state must not overlap the inputs.
using mamba2_conv_fn = void (*)(const float* xbc,  // [T, C] (row stride ldx)
                                const float* w,    // [C, K]
                                const float* bias,  // [C]
                                float* state,      // [K - 1, C]
                                float* out,        // [T, C] (row stride ldo)
                                int64_t T, int64_t C, int64_t K, int64_t ldx, int64_t ldo, int64_t c0, int64_t c1);

// Inputs of the SSM over T rows of one sequence. Head h (of nHeads, headDim P each) reads group
// g = h / (nHeads / nGroups) of B and C. state is [nHeads, P, N] and is advanced in place.
struct SsdArgs {
  const float* x;       // [T, nHeads * P] (row stride ldx)
  const float* B;       // [T, nGroups * N] (row stride ldbc)
  const float* C;       // [T, nGroups * N] (row stride ldbc)
  const float* dt;      // [T, nHeads] raw (row stride lddt)
  const float* dt_bias;  // [nHeads]
  const float* a_log;   // [nHeads]: A = -exp(ALog)
  const float* d;       // [nHeads]
  float* state;         // [nHeads, P, N]
  float* y;             // [T, nHeads * P] (row stride ldy): Σ_n state C + D x
  int64_t T, n_heads, head_dim, n_groups, d_state;
  int64_t ldx, ldbc, lddt, ldy;
};

// The per-(token, head) scalars every variant shares (see the header comment); neg_a = ssd_neg_a(ALog[h]).
static inline double ssd_neg_a(float a_log) { return -std::exp(static_cast<double>(a_log)); }
static inline void ssd_step_scalars(float dt, float dt_bias, double neg_a, float* dth_out, float* da_out) {
  const double v = static_cast<double>(dt) + static_cast<double>(dt_bias);
  const double dth = v > 20.0 ? v : std::log1p(std::exp(v));
  *dth_out = static_cast<float>(dth);
  *da_out = static_cast<float>(std::exp(neg_a * dth));
}

// The recurrence for heads [h0, h1), token by token: per (h, i, n)
//   s = dA s + (dth x_i) B_n   (float: a = dth * x, then dA * s + a * B; SIMD: one FMA);
//   y_i = Σ_n s C_n + D x_i   (the N-term dot, then + D * x).
// Heads are independent: any split of [0, nHeads) over threads gives the same bits.
using ssd_recurrent_fn = void (*)(const SsdArgs& a, int64_t h0, int64_t h1);

// The per-group products the chunked scan shares between a group's heads, for units [u0, u1) of
// u = g * n_chunks + chunk index (n_chunks = ceil(T / chunk)): C_t . B_s for every t, s < L of the chunk at
// cb + u * chunk * chunk + t * chunk + s (rows and columns past a short last chunk are not written), and
// B transposed, B[t0 + s, g, n] at cb + n_groups * n_chunks * chunk * chunk + (g * N + n) * T + t0 + s.
// cb holds ssd_cb_floats(T, chunk, n_groups, d_state) floats.
constexpr int64_t ssd_cb_floats(int64_t T, int64_t chunk, int64_t n_groups, int64_t d_state) {
  return n_groups * ((T + chunk - 1) / chunk) * chunk * chunk + n_groups * d_state * T;
}
using ssd_chunk_cb_fn = void (*)(const SsdArgs& a, int64_t chunk, float* cb, int64_t u0, int64_t u1);

// Floats of scratch one ssd_chunked call needs (one per concurrent call / thread).
constexpr int64_t ssd_chunked_scratch_floats(int64_t chunk, int64_t d_state, int64_t head_dim) {
  return d_state * head_dim + chunk * head_dim + chunk * chunk + 4 * chunk + 64;
}

// The SSD chunked scan for heads [h0, h1) (cb from ssd_chunk_cb over every unit), per chunk of L rows:
//   W[t][s] = (cb[t][s] Dk[t][s]) dth_s (s < t), W[t][t] = cb[t][t] dth_t + D, 0 above;
//   Y = P_t (C_t . H) + W X  (the tile sums: C . H first, scaled by P_t, then W X added in s order);
//   H = P_{L-1} H + Σ_s B_s ⊗ (x_s (Dk[L-1][s] dth_s))
// with the state held transposed ([N, P]) in the scratch while the head runs. Heads are independent.
using ssd_chunked_fn = void (*)(const SsdArgs& a, int64_t chunk, const float* cb, float* scratch, int64_t h0, int64_t h1);

// Gated RMSNorm (norm_before_gate = False) over rows [r0, r1) of [T, n_groups * gs]:
//   t = y * (z / (1 + exp(-z)));  per group of gs channels s = float(1 / sqrt(Σ t^2 / gs + eps)) (Σ t^2 in
//   double, four interleaved partial sums combined in a fixed order: the same in every variant);
//   out = (t * s) * w.  out must not overlap y, z or w.
using gated_rmsnorm_fn = void (*)(const float* y,  // [T, n_groups * gs]
                                  const float* z,  // [T, n_groups * gs]
                                  const float* w,  // [n_groups * gs]
                                  float* out,      // [T, n_groups * gs]
                                  int64_t n_groups, int64_t gs, float eps, int64_t r0, int64_t r1);

}  // namespace bitllm
