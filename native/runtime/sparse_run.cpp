// The TS256 GEMM driver; see sparse_run.h.
#include "sparse_run.h"

namespace bitllm {

void run_ternary_sparse_gemm(const KernelTable& t, ThreadPool& pool, const TernarySparseMat& w, const QActs& a, float* y,
                             int64_t ldy, SparseLists& lists) {
  const int64_t B = a.B, K = w.K;
  const int64_t ldc = ts_list_ld(K);
  if (lists.cols.size() < static_cast<size_t>(B * ldc)) {
    lists.cols.resize(B * ldc);
    lists.vals.resize(B * ldc);
  }
  if (lists.groups.size() < static_cast<size_t>(B)) lists.groups.resize(B);
  int32_t* cols = lists.cols.data();
  int8_t* vals = lists.vals.data();
  int32_t* groups = lists.groups.data();
  pool.parallel_for_work(B, K, [&](int64_t b0, int64_t b1) { t.ternary_sparse_prep(a.q, a.ldq, K, b0, b1, cols, vals, ldc, groups); });
  const SparseActs acts{cols, vals, groups, a.scale, a.sum, B, K, ldc};
  const int64_t blocks = ts_blocks(w.M);
  // B == 1: one contiguous range of blocks per thread (the kernel walks it in panels); B > 1: blocks
  // handed out one at a time (each is a full pass over every token's list).
  if (B == 1)
    pool.parallel_for(blocks, [&](int64_t b0, int64_t b1) { t.ternary_sparse_gemm(w, acts, y, ldy, b0, b1); });
  else
    pool.parallel_for_dynamic(blocks, 1, [&](int64_t b0, int64_t b1) { t.ternary_sparse_gemm(w, acts, y, ldy, b0, b1); });
}

}  // namespace bitllm
