// Runs a B1L64 lookup-table GEMM (kernels/binary_lut.h: sign weights x float activations) over a thread
// pool, shared by the binaryLutGemm binding and the linear-layer driver: decode tokens build their tables
// per thread (no table crosses cores), batches build them once per chunk of tokens and split rows.
#pragma once
#include <cstdint>
#include <vector>

#include "../kernels/kernels.h"
#include "thread_pool.h"

namespace bitllm {

// y [B, ldy] (rows < w.M) = signs(W) · u[b]ᵀ (* row_scale[m]) (+ tok_bias[b]) for u [B, ldu] (columns [0, w.K)).
// scratch holds the tables (grown on demand, reused).
void run_binary_lut_gemm(const KernelTable& t, ThreadPool& pool, const BinaryLutMat& w, const float* u, int64_t ldu,
                         int64_t B, const float* row_scale, const float* tok_bias, float* y, int64_t ldy,
                         std::vector<uint8_t>& scratch);

// Tables of tokens [0, nb) of u (row stride ldu) into tables (row stride ldt), split over the pool in
// work items of a few KB of one token's tables (a decode token's are built by the calling thread).
void build_binary_lut_tables(const KernelTable& t, ThreadPool& pool, const float* u, int64_t ldu, int64_t nb, int64_t K,
                             float* tables, int64_t ldt);

}  // namespace bitllm
