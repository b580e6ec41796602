// BiLLM (arXiv 2402.04291) packed binarized weights with int8 activations: the GEMM and the
// per-token preparation of the activations (families.md §6; lib/quantize/billm.ts packs them).
#pragma once
#include <cstdint>

#include "act_quant.h"

namespace bitllm {

constexpr int kBillmBlock = 128;   // columns per block
constexpr int kBillmScalars = 8;   // fp16 per row per block

// A BiLLM matrix W [M, K], K % 128 == 0, nb = K/128. Bits LSB first: bit k of a row = bit (k & 7) of
// byte k >> 3. S_j = the salient columns of block j (nS_j of them), G = group bits, σ = sign bits.
struct BillmMat {
  const uint8_t* salient;   // [K/8] bit 1: column salient (all rows)
  const uint8_t* signs;     // [M, K/8] bit 1: +1, 0: -1 (s1 at salient columns, the group sign elsewhere)
  const uint8_t* groups;    // [M, K/8] bit 1: group B (sparse), 0: group A; 0 at salient columns
  const uint8_t* residual;  // [M, rstride] second-order signs of the salient columns: row m, block j
                            //   at m*rstride + roff[j], bit i = i-th salient column of block j
  const uint16_t* scalars;  // [M, nb, 8] fp16 (a1, a2, mu1, mu2, aA, muA, aB, muB)
  const int32_t* roff;      // [nb + 1] roff[0] = 0, roff[j+1] = roff[j] + ceil(nS_j / 8), roff[nb] = rstride
  int64_t M;
  int64_t K;
  int64_t rstride;
};

// Prepared activations, per token b and block j (billm_prep):
//   qs[b, j, i] = q[b, c_i] for the i-th salient column c_i of block j (i < nS_j), 0 for nS_j <= i < 128
//   ssum[b, j]  = Σ_{k in S_j} q[b, k]
//   bsum[b, j]  = Σ_{k in block j} q[b, k]
struct BillmActs {
  const int8_t* q;      // [B, ldq]
  const float* scale;   // [B]
  const int8_t* qs;     // [B, nb, 128]
  const int32_t* ssum;  // [B, nb]
  const int32_t* bsum;  // [B, nb]
  int64_t B;
  int64_t ldq;
};

// billm_prep: fills qs / ssum / bsum of tokens [0, a.B) from a.q (salient mask of the matrix, K).
using billm_prep_fn = void (*)(const uint8_t* salient,  // [K/8]
                               int64_t K, const int8_t* q,  // [B, ldq]
                               int64_t ldq, int64_t B,
                               int8_t* qs,      // [B, K/128, 128]
                               int32_t* ssum,   // [B, K/128]
                               int32_t* bsum);  // [B, K/128]

// billm_gemm: Y[b, m] for rows m in [row0, row1), tokens b < a.B. Per block j, with all sums over the
// columns k of block j and q = a.q[b, k] (int32, exact: every |sum| <= 128 * 128):
//   PS = Σ_{k in S_j, σ=1} q        PB = Σ_{G=1, σ=1} q        GB = Σ_{G=1} q        T = Σ_{σ=1} q
//   PR = Σ_{i < 128: residual bit i of (m, j) = 1} qs[b, j, i]     (bits past nS_j meet qs = 0)
//   SS = ssum[b, j], Q = bsum[b, j];  PA = T - PS - PB;  NA = Q - SS - GB
//   n[0..7] = { 2PS - SS, 2PR - SS, SS, SS, 2PA - NA, NA, 2PB - GB, GB }     (int32)
//   f[0..7] = fp16 -> float of scalars[m, j, 0..7]
//   p[l] = (float)n[l] * f[l]                                  (l = 0..7, one multiply each)
//   p[l] = p[l] + p[l + 4] (l < 4);  p[l] = p[l] + p[l + 2] (l < 2);  t = p[0] + p[1]
//   acc = acc + t                       (acc = 0.0f before block 0, blocks j = 0, 1, ... in order)
// and y[b * ldy + m] = acc / a.scale[b]. So y = (Σ_k w(m,k)·q[b,k]) / s[b] with w = the packed value
// (salient a1·s1 + a2·s2 + mu1 + mu2, group A aA·s + muA, group B aB·s + muB) when the matrix is
// well formed (G = 0 at salient columns). Separate IEEE ops, no FMA: every variant and the TypeScript
// reference (lib/reference/billm.ts) are bit-exact for any inputs.
using billm_gemm_fn = void (*)(const BillmMat& w, const BillmActs& a,
                               float* y,  // [B, ldy]
                               int64_t ldy, int64_t row0, int64_t row1);

}  // namespace bitllm
