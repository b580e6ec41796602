// Runs a TD3 GEMM over a thread pool (shared by the ternaryTd3Gemm binding and the one-call forward):
// at batch >= td3_decode_batch(isa) each 64-row tile is decoded once to T2R16 and multiplied by the
// T2R16 kernel for all tokens; below it the TD3 kernel streams the packed tiles. Tiles are handed out
// dynamically; every tile's result is the same whichever thread runs it.
#pragma once
#include <cstdint>

#include "../kernels/kernels.h"
#include "thread_pool.h"

namespace bitllm {

// The batch from which decoding tiles to T2R16 beats the TD3 kernel (measured: AVX-512 decodes cheaply
// enough in-register to stay ahead up to ~64 tokens; other ISAs switch at 4).
inline int64_t td3_decode_batch(Isa isa) { return isa == Isa::avx512 ? 64 : 4; }

// y [B, ldy] (rows < w.M) for the activations `a` (a.bsum set when w is block-scaled).
void run_td3_gemm(const KernelTable& t, ThreadPool& pool, const TernaryTd3Mat& w, const QActs& a, float* y, int64_t ldy);

}  // namespace bitllm
