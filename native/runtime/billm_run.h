// Runs a BiLLM GEMM (kernels/billm.h, BR16 tiles, int8 activations) over a thread pool: the per-token prep
// (compacted salient codes, block sums) then the row tiles. Shared by the billmGemm binding and the
// linear-layer driver.
#pragma once
#include <cstdint>
#include <vector>

#include "../kernels/kernels.h"
#include "thread_pool.h"

namespace bitllm {

// The tile geometry of a salient mask (billm.h): boff [nb + 1] (boff[nb] = tile bytes) and ngroups [nb].
void billm_geometry(const uint8_t* salient,  // [K/8]
                    int64_t K, int32_t* boff, int32_t* ngroups);

// Scratch of one call, grown on demand and reused.
struct BillmScratch {
  std::vector<int8_t> qs;     // [B, K]
  std::vector<int32_t> sums;  // ssum [B, nb] | bsum [B, nb]
};

// y [B, ldy] (rows < w.M) = W · Aᵀ for the int8 codes a.q [B, a.ldq] (a.K == w.K); salient: [K/8].
void run_billm_gemm(const KernelTable& t, ThreadPool& pool, const BillmMat& w, const uint8_t* salient, const QActs& a,
                    float* y, int64_t ldy, BillmScratch& s);

}  // namespace bitllm
