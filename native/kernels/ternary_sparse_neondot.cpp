// NEON + dotprod (ARMv8.2) column-sparse ternary GEMM on TS256: one sdot per 4 rows x 4 columns.
#include "ternary_sparse_neon.h"

namespace bitllm {

namespace {

struct DotSdot {
  static inline int32x4_t dot(int32x4_t acc, int8x16_t codes, int8x16_t q) { return vdotq_s32(acc, codes, q); }
};

}  // namespace

void ternary_sparse_gemm_neondot(const TernarySparseMat& w, const SparseActs& a, float* y, int64_t ldy, int64_t blk0,
                                 int64_t blk1) {
  ts_gemm_neon<DotSdot>(w, a, y, ldy, blk0, blk1);
}

}  // namespace bitllm
