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
  std::vector<float> part;      // [threads, M] a single token's partial dots (column split)
  std::vector<int32_t> raw;     // [round_up(M, 256)] their sum
};

// y [B, ldy] (rows < w.M) = W · Aᵀ for the int8 activations a (codes [B, a.ldq], a.K == w.K).
// A single token on several threads is split by columns: each thread multiplies a contiguous share of
// the token's non-zero columns over every row (whole column runs: one burst of ts_col_bytes per column,
// where a split by rows gives each thread every other half-run), into exact integer partial dots that
// are summed, then the epilogue; the result is the same bits as one call over the whole list.
void run_ternary_sparse_gemm(const KernelTable& t, ThreadPool& pool, const TernarySparseMat& w, const QActs& a, float* y,
                             int64_t ldy, SparseLists& lists);

}  // namespace bitllm
