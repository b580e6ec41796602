// The BiLLM GEMM driver; see billm_run.h.
#include "billm_run.h"

namespace bitllm {

void billm_geometry(const uint8_t* salient, int64_t K, int32_t* boff, int32_t* ngroups) {
  const int64_t nb = K / kBillmBlock;
  boff[0] = 0;
  for (int64_t j = 0; j < nb; ++j) {
    ngroups[j] = (billm_block_salient(salient, j) + 3) / 4;
    boff[j + 1] = boff[j] + static_cast<int32_t>(billm_block_bytes(ngroups[j]));
  }
}

void run_billm_gemm(const KernelTable& t, ThreadPool& pool, const BillmMat& w, const uint8_t* salient, const QActs& a,
                    float* y, int64_t ldy, BillmScratch& s) {
  const int64_t B = a.B, K = w.K, nb = K / kBillmBlock, tiles = (w.M + kBillmRows - 1) / kBillmRows;
  if (s.qs.size() < static_cast<size_t>(B * K)) s.qs.resize(B * K);
  if (s.sums.size() < static_cast<size_t>(2 * B * nb)) s.sums.resize(2 * B * nb);
  int8_t* qs = s.qs.data();
  int32_t* ssum = s.sums.data();
  int32_t* bsum = ssum + B * nb;
  pool.parallel_for_work(B, K, [&](int64_t b0, int64_t b1) {
    t.billm_prep(salient, K, a.q + b0 * a.ldq, a.ldq, b1 - b0, qs + b0 * K, ssum + b0 * nb, bsum + b0 * nb);
  });
  if (tiles >= pool.size() || B == 1) {
    const BillmActs acts{a.q, a.scale, qs, ssum, bsum, B, a.ldq};
    // Chunks of whole 4-tile passes: the B = 1 kernels share each activation broadcast across 4 tiles, a
    // 5-tile chunk would run its last tile alone.
    const int64_t grain = (pool.chunk_grain(tiles) + 3) / 4 * 4;
    pool.parallel_for_dynamic(tiles, grain, [&](int64_t t0, int64_t t1) { t.billm_gemm(w, acts, y, ldy, t0, t1); });
  } else {
    // Fewer row tiles than threads: split the tokens instead.
    pool.parallel_for(B, [&](int64_t b0, int64_t b1) {
      const BillmActs acts{a.q + b0 * a.ldq, a.scale + b0, qs + b0 * K, ssum + b0 * nb, bsum + b0 * nb, b1 - b0, a.ldq};
      t.billm_gemm(w, acts, y + b0 * ldy, ldy, 0, tiles);
    });
  }
}

}  // namespace bitllm
