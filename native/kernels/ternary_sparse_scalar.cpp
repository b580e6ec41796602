// Scalar column-sparse ternary GEMM on TS256: the C++ reference every SIMD variant is tested against.
#include "kernels.h"

namespace bitllm {

namespace {

void ternary_sparse_prep_scalar(const int8_t* q, int64_t ldq, int64_t K, int64_t b0, int64_t b1, int32_t* cols,
                                int8_t* vals, int64_t ldc, int32_t* groups) {
  ts_prep_rows(q, ldq, K, b0, b1, cols, vals, ldc, groups);
}

void ternary_sparse_gemm_scalar(const TernarySparseMat& w, const SparseActs& a, float* y, int64_t ldy,
                                int64_t blk0, int64_t blk1) {
  int32_t raw[kTsRows];
  for (int64_t blk = blk0; blk < blk1; ++blk) {
    const uint8_t* base = w.data + blk * kTsLineBytes;  // column k's line at k * ts_col_bytes(M)
    for (int64_t b = 0; b < a.B; ++b) {
      const int32_t* cols = a.cols + b * a.ldc;  // [4 groups]
      const int8_t* vals = a.vals + b * a.ldc;   // [4 groups]
      for (int j = 0; j < kTsRows; ++j) raw[j] = 0;
      for (int64_t i = 0; i < 4 * int64_t{a.groups[b]}; ++i) {
        const uint8_t* line = base + int64_t{cols[i]} * ts_col_bytes(w.M);  // [64]
        const int32_t v = vals[i];
        for (int p = 0; p < kTsLineBytes; ++p)
          for (int l = 0; l < 4; ++l) raw[ts_row(p, l)] += ((line[p] >> (2 * l)) & 3) * v;
      }
      ts_store_block(w, a, b, blk, raw, y, ldy);
    }
  }
}

}  // namespace

void fill_ternary_sparse_scalar(KernelTable& t, const CpuFeatures&) {
  t.ternary_sparse_prep = ternary_sparse_prep_scalar;
  t.ternary_sparse_gemm = ternary_sparse_gemm_scalar;
  t.v_ternary_sparse = "scalar";
}

}  // namespace bitllm
