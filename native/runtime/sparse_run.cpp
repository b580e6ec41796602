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
  const int64_t nthreads = pool.size();
  if (B == 1 && nthreads > 1 && int64_t{groups[0]} >= 8 * nthreads) {
    // Column split. Each share runs through the kernel with unit scales (ws = 1, s = 1, sum = 0): its
    // output is (float)dot, exact (|dot| <= 2 * 128 * K <= 2^24 for K <= kTsMaxK), so the partials convert back to the
    // integer dots without loss.
    const int64_t M = w.M, ng = groups[0];
    if (lists.part.size() < static_cast<size_t>(nthreads * M)) lists.part.resize(static_cast<size_t>(nthreads * M));
    if (lists.raw.size() < static_cast<size_t>(blocks * kTsRows)) lists.raw.resize(static_cast<size_t>(blocks * kTsRows));
    static const float kOne = 1.0f;
    static const int32_t kZero = 0;
    const TernarySparseMat unit{w.data, &kOne, M, K, kScaleTensor};
    float* part = lists.part.data();
    pool.parallel_for(nthreads, [&](int64_t i0, int64_t i1) {
      for (int64_t i = i0; i < i1; ++i) {
        const int64_t g0 = ng * i / nthreads, g1 = ng * (i + 1) / nthreads;
        const int32_t n = static_cast<int32_t>(g1 - g0);
        const SparseActs share{cols + 4 * g0, vals + 4 * g0, &n, &kOne, &kZero, 1, K, ldc};
        t.ternary_sparse_gemm(unit, share, part + i * M, M, 0, blocks);
      }
    });
    int32_t* raw = lists.raw.data();
    for (int64_t m = 0; m < M; ++m) {
      int32_t d = 0;
      for (int64_t i = 0; i < nthreads; ++i) d += static_cast<int32_t>(part[i * M + m]);
      raw[m] = d;
    }
    for (int64_t blk = 0; blk < blocks; ++blk) ts_store_block(w, acts, 0, blk, raw + blk * kTsRows, y, ldy);
    return;
  }
  // B == 1: one contiguous range of blocks per thread (the kernel walks it in panels); B > 1: blocks
  // handed out one at a time (each is a full pass over every token's list).
  if (B == 1)
    pool.parallel_for(blocks, [&](int64_t b0, int64_t b1) { t.ternary_sparse_gemm(w, acts, y, ldy, b0, b1); });
  else
    pool.parallel_for_dynamic(blocks, 1, [&](int64_t b0, int64_t b1) { t.ternary_sparse_gemm(w, acts, y, ldy, b0, b1); });
}

}  // namespace bitllm
