// NEON (ARMv8.0) column-sparse ternary GEMM on TS256 (ternary_sparse.h): the dword dot of four code
// bytes with four activations by vmull_s8 + pairwise adds. With dotprod the fill installs the sdot
// variant (ternary_sparse_neondot.cpp).
#include "ternary_sparse_neon.h"

namespace bitllm {

namespace {

struct DotMull {
  static inline int32x4_t dot(int32x4_t acc, int8x16_t codes, int8x16_t q) {
    const int16x8_t lo = vmull_s8(vget_low_s8(codes), vget_low_s8(q));
    const int16x8_t hi = vmull_high_s8(codes, q);
    return vpadalq_s16(acc, vpaddq_s16(lo, hi));  // |product| <= 32 * 128, |pair| <= 8192: int16 exact
  }
};

void ternary_sparse_gemm_neon(const TernarySparseMat& w, const SparseActs& a, float* y, int64_t ldy, int64_t blk0,
                              int64_t blk1) {
  ts_gemm_neon<DotMull>(w, a, y, ldy, blk0, blk1);
}

}  // namespace

void fill_ternary_sparse_neon(KernelTable& t, const CpuFeatures& f) {
  if (f.dotprod) {
    t.ternary_sparse_gemm = ternary_sparse_gemm_neondot;
    t.v_ternary_sparse = "neon-dotprod";
  } else {
    t.ternary_sparse_gemm = ternary_sparse_gemm_neon;
    t.v_ternary_sparse = "neon";
  }
}

}  // namespace bitllm
