// Runs a column-sparse (TS256) ternary GEMM over a thread pool: builds each token's list of non-zero
// activation columns, then multiplies only those columns (kernels/ternary_sparse.h). Shared by the
// ternarySparseGemm binding and the linear-layer driver, so both split the work the same way.
#pragma once
#include <cstdint>
#include <vector>

#include "../kernels/kernels.h"
#include "thread_pool.h"

namespace bitllm {

// Column lists of B tokens, grown on demand and reused.
struct SparseLists {
  std::vector<int32_t> cols;    // [B, ldc]
  std::vector<int8_t> vals;     // [B, ldc]
  std::vector<int32_t> groups;  // [B]
};

// y [B, ldy] (rows < w.M) = W · Aᵀ for the int8 activations a (codes [B, a.ldq], a.K == w.K).
void run_ternary_sparse_gemm(const KernelTable& t, ThreadPool& pool, const TernarySparseMat& w, const QActs& a, float* y,
                             int64_t ldy, SparseLists& lists);

}  // namespace bitllm
