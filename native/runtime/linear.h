// One driver for every linear kind (docs/DESIGN.md §8): y = epilogue(W · quant(pre(x))).
//   pre       binary_prep: xs = x ⊙ col_scale (FBI-LLM α, OneBit g), tok_bias[b] = Σ col_bias ⊙ x (FBI-LLM β)
//   quant     act_quant_i8 | act_quant_i4 | act_quant_topk_i8 | none (float activations)
//   weights   T2R16 | TD3 (ternary) | TS256 (ternary, column-sparse: reads only the columns of non-zero
//             activations; a4.8's sparse inputs) | B1R16 (signs; int8 activations) | B1L64 (signs; float
//             activations, lookup tables) | F16 (dense) | BR16 (BiLLM planes; int8 activations)
//   epilogue  × row_scale (float sign path; the int8 path folds it into the B1R16 scales), + tok_bias,
//             then OneBit's non-affine LayerNorm over the M outputs when ln_eps > 0
// The forward (model_exec.cpp) and the bindings run every projection through run_linear, so what the
// tests check per kernel is what the model computes. A family is data: a LinearPlan per projection.
#pragma once
#include <cstdint>
#include <vector>

#include "../kernels/kernels.h"
#include "billm_run.h"
#include "lut_run.h"
#include "sparse_run.h"
#include "thread_pool.h"

namespace bitllm {

struct LinearPlan {
  enum Weights : int32_t { kT2R16 = 0, kTd3 = 1, kB1R16 = 2, kF16 = 3, kTs256 = 4, kB1L64 = 5, kBillm = 6 };
  enum Quant : int32_t { kQuantI8 = 0, kQuantI4 = 1, kQuantTopkI8 = 2, kQuantNone = 3 };
  int32_t weights = kT2R16;
  int32_t quant = kQuantI8;
  TernaryMat t2{};
  TernaryTd3Mat td3{};
  TernarySparseMat ts{};
  BinaryMat b1{};
  BinaryLutMat b1l{};
  const uint8_t* billm_data = nullptr;      // [Mp/16, tile bytes] BR16
  const uint8_t* billm_salient = nullptr;  // [K/8]
  std::vector<int32_t> billm_geometry;     // boff [nb + 1] | ngroups [nb] (billm_geometry of the salient mask)
  const uint16_t* f16 = nullptr;  // [M, K] half
  const float* col_scale = nullptr;  // [K] or nullptr
  const float* col_bias = nullptr;   // [K] or nullptr
  const float* row_scale = nullptr;  // [M] or nullptr (float sign path only)
  float topk_ratio = 1.f;            // kQuantTopkI8: each token keeps floor(K · ratio) values
  float ln_eps = 0.f;                // > 0: LayerNorm (no affine) over the M outputs
  int64_t M = 0, K = 0;
};

// Scratch one linear call needs, grown on demand and reused (no allocation per call once warm).
struct LinearScratch {
  std::vector<int8_t> q;        // [B, K] codes
  std::vector<float> scale;     // [B]
  std::vector<int32_t> sum;     // [B]
  std::vector<int32_t> bsum;    // [B, K/256 + 1]
  std::vector<float> xs;        // [B, K] pre-scaled input
  std::vector<float> tok_bias;  // [B]
  SparseLists sparse;           // TS256 column lists
  std::vector<uint8_t> lut;     // B1L64 lookup tables
  BillmScratch billm;           // BiLLM activation prep
  void ensure(int64_t B, int64_t K);
};

// y [B, ldy] (columns [0, w.M)) = the linear w of x [B, ldx] (columns [0, w.K)). prof_quant (or nullptr)
// accumulates the nanoseconds of the pre-step and quantizer, prof_gemm those of the GEMM and epilogue.
void run_linear(const KernelTable& t, ThreadPool& pool, const LinearPlan& w, const float* x, int64_t ldx, int64_t B,
                float* y, int64_t ldy, LinearScratch& s, double* prof_quant, double* prof_gemm);

// Non-affine LayerNorm of each row (OneBit's output norm), bit-exact with lib/reference/linear.ts:
//   mean = (Σ_i x_i) / n and var = (Σ_i (x_i − mean)²) / n, summed in double in index order;
//   inv = 1 / sqrt(var + eps) in double; y_i = float((x_i − mean) · inv) (double ops, one rounding).
// y may alias x exactly. n >= 1, eps >= 0.
void layer_norm_rows(const float* x,  // [B, ld]
                     float* y,        // [B, ld]
                     int64_t B, int64_t n, int64_t ld, float eps);

}  // namespace bitllm
