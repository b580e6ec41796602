// Column-sparse ternary GEMM "TS256": a ternary layout (2 bits/weight) stored column-major, so that the
// weights of one activation column are one contiguous run of round_up(M, 256) / 4 bytes and a GEMV reads
// only the runs of its non-zero activations (BitNet a4.8: o_proj input TopK 50 %, down_proj input >80 %
// zeros after ReLU²-GLU). Bit-exact with T2R16 (ternary_i2.h) for the same trits, scales and int8
// activations.
#pragma once
#include <cstdint>

#include "act_quant.h"
#include "ternary_i2.h"  // ScaleMode, TernaryMat scale layout

namespace bitllm {

// Layout. Column k is the run at k * ts_col_bytes(M) (rows >= M are code 1, a zero trit); the run is cut
// into 256-row blocks of one 64-byte line each: block r of column k is the line at k * ts_col_bytes(M) + r * 64:
//   byte p = 16L + 4u + d (L, u, d in 0..3), bits 2l+1:2l (l in 0..3) = code(row 256r + 64u + 16l + 4L + d, k)
//   code = trit + 1 in {0, 1, 2}.
// Why: with the lines a, b, c, d of four non-zero columns, punpcklbw/punpckhbw(a, b) and (c, d) then
// punpcklwd/punpckhwd give, per 128-bit lane L, four vectors z_u whose dword d holds byte 16L + 4u + d of
// the four columns, one column per byte: (z_u & (3 << 2l)) is the unsigned operand of vpdpbusd against
// the four activations broadcast as one dword, for the 16 rows 256r + 64u + 16l + (4L + d), so each
// accumulator covers 16 consecutive rows (the code is scaled by 4^l, undone exactly by >> 2l; this needs
// K <= kTsMaxK). AVX2 (maddubs + madd), NEON (zip1/zip2; sdot or vmull) use the same interleave. A thread
// owning blocks [r0, r1) reads (r1 - r0) consecutive lines of each non-zero column: one burst per column.
constexpr int kTsRows = 256;       // rows per block
constexpr int kTsLineBytes = 64;   // bytes per (block, column)
constexpr int64_t kTsMaxK = 65536;  // 4^3 * K * 2 * 128 < 2^31: the scaled int32 dots cannot overflow

static inline int64_t ts_blocks(int64_t M) { return (M + kTsRows - 1) / kTsRows; }
static inline int64_t ts_col_bytes(int64_t M) { return ts_blocks(M) * kTsLineBytes; }
static inline int64_t ts_weight_bytes(int64_t M, int64_t K) { return K * ts_col_bytes(M); }
// Row of (byte p, bit pair l) inside its block.
static inline int ts_row(int p, int l) { return 64 * ((p >> 2) & 3) + 16 * l + 4 * (p >> 4) + (p & 3); }

struct TernarySparseMat {
  const uint8_t* data;  // [K, ts_blocks(M), 64]
  const float* scales;  // T2R16 scale layout: kScaleTensor [1], kScaleRow [>= round_up(M, 16)]
  int64_t M;
  int64_t K;            // 1 <= K <= kTsMaxK
  int32_t scale_mode;   // kScaleTensor or kScaleRow (block scales are not supported by this layout)
};

// The non-zero columns of each token, in groups of four (ternary_sparse_prep fills it):
//   cols[b, 0 .. 4 * groups[b]) ascending column indices of the non-zero q[b, k]; the last group is padded
//   with copies of its last index and activation 0. vals[b, i] = q[b, cols[b, i]] (0 for padding).
struct SparseActs {
  const int32_t* cols;    // [B, ldc]
  const int8_t* vals;     // [B, ldc]
  const int32_t* groups;  // [B]
  const float* scale;     // [B] s of act_quant (y = dot / s)
  const int32_t* sum;     // [B] Σ_k q[b, k]
  int64_t B;
  int64_t K;
  int64_t ldc;            // >= ts_list_ld(K)
};

// Row stride of the cols / vals lists: room for the padding and a 16-wide SIMD store past the end.
static inline int64_t ts_list_ld(int64_t K) { return (K + 3) / 4 * 4 + 16; }

// Builds the lists of tokens [b0, b1) of `a` (codes q [B, ldq]) into cols / vals / groups (row b at
// b * ldc). Activation scale and sum are not touched (SparseActs points at QActs' arrays).
using ternary_sparse_prep_fn = void (*)(const int8_t* q,  // [B, ldq]
                                        int64_t ldq, int64_t K, int64_t b0, int64_t b1,
                                        int32_t* cols,    // [B, ldc]
                                        int8_t* vals,     // [B, ldc]
                                        int64_t ldc,
                                        int32_t* groups);  // [B]

// Y[b, m] for rows m < M of 256-row blocks [blk0, blk1), b < a.B:
//   dot = Σ_{i < 4 groups[b]} code[m, cols[b,i]] * vals[b,i]   (int32, exact; = T2R16's Σ_k code * q,
//                                                               since only columns with q == 0 are skipped)
//   y = ((float)(dot - a.sum[b]) * ws) / a.scale[b],  ws = scales[0] (tensor) or scales[m] (row)
// Every float op is a separate IEEE op, so all variants are bit-exact with each other and with T2R16.
// B == 1 accumulates panels of up to 16 blocks in L1, reading each column's lines of the panel in a row;
// B > 1 runs each token's list over one block at a time while that block's lines are in L2 (no union
// of the tokens' lists).
using ternary_sparse_gemm_fn = void (*)(const TernarySparseMat& w, const SparseActs& a,
                                        float* y,  // [B, ldy]
                                        int64_t ldy, int64_t blk0, int64_t blk1);

#if defined(__aarch64__)
// Defined in ternary_sparse_neondot.cpp; call only when CpuFeatures::dotprod is set.
void ternary_sparse_gemm_neondot(const TernarySparseMat& w, const SparseActs& a,
                                 float* y,  // [B, ldy]
                                 int64_t ldy, int64_t blk0, int64_t blk1);
#endif

// The epilogue of one block for one token: raw[j] is the dot of row 256 blk + j.
static inline void ts_store_block(const TernarySparseMat& w, const SparseActs& a, int64_t b, int64_t blk,
                                  const int32_t* raw,  // [256]
                                  float* y, int64_t ldy) {
  const int64_t m0 = blk * kTsRows;
  const int64_t n = w.M - m0 < kTsRows ? w.M - m0 : kTsRows;
  const float s = a.scale[b];
  const int32_t sum = a.sum[b];
  float* yr = y + b * ldy + m0;  // [n]
  for (int64_t j = 0; j < n; ++j) {
    const float ws = w.scale_mode == kScaleRow ? w.scales[m0 + j] : w.scales[0];
    yr[j] = (static_cast<float>(raw[j] - sum) * ws) / s;
  }
}

// Scalar list builder, shared by the variants that have no faster one.
static inline void ts_prep_rows(const int8_t* q, int64_t ldq, int64_t K, int64_t b0, int64_t b1, int32_t* cols,
                                int8_t* vals, int64_t ldc, int32_t* groups) {
  for (int64_t b = b0; b < b1; ++b) {
    const int8_t* qr = q + b * ldq;  // [K]
    int32_t* c = cols + b * ldc;     // [ldc]
    int8_t* v = vals + b * ldc;      // [ldc]
    int64_t n = 0;
    for (int64_t k = 0; k < K; ++k) {
      c[n] = static_cast<int32_t>(k);
      v[n] = qr[k];
      n += qr[k] != 0;
    }
    const int32_t last = n > 0 ? c[n - 1] : 0;
    while (n % 4) {
      c[n] = last;
      v[n++] = 0;
    }
    groups[b] = static_cast<int32_t>(n / 4);
  }
}

}  // namespace bitllm
