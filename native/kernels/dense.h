// Dense f16 and q8_0 GEMM for embeddings and the lm_head.
#pragma once
#include <cstdint>

#include "act_quant.h"

namespace bitllm {

// ---- f16: weights in the GGUF layout, row-major [M, K] IEEE half, float activations ----
// Y[b, m] = Σ_k f32(w[m,k]) * x[b,k] for m in [m0, m1). Float accumulation; the summation order is
// the variant's own, so variants agree to a relative bound (DESIGN.md §3.1), not bit-exactly.
using f16_gemm_fn = void (*)(const uint16_t* w,  // [M, ldw] half
                             int64_t ldw, int64_t M, int64_t K,
                             const float* x,  // [B, ldx]
                             int64_t ldx, int64_t B,
                             float* y,  // [B, ldy]
                             int64_t ldy, int64_t m0, int64_t m1);

// Row lookup (embeddings): out[i, :] = f32(w[rows[i], :]).  rows are validated by the caller.
using f16_get_rows_fn = void (*)(const uint16_t* w,  // [M, ldw]
                                 int64_t ldw, int64_t K,
                                 const int32_t* rows,  // [n]
                                 int64_t n,
                                 float* out,  // [n, ldo]
                                 int64_t ldo);

// ---- q8: Q8R16 internal layout, repacked from GGUF Q8_0 (blocks of 32: fp16 d, int8 qs[32]) ----
// Per (tile t, block j) a 640-byte record at offset (t * (K/32) + j) * 640:
//   float  d[16]       scale of row 16t+r for block j (fp16 widened)
//   int32  wsum[16]    Σ of row r's 32 codes (for the unsigned-activation trick of vpdpbusd)
//   int8   qs[8][64]   group g = k 4g..4g+3: byte 4r + i = code(row 16t+r, k = 32j + 4g + i)
// Rows past M are zero. Activations are per-token int8 (QActs from act_quant_i8).
constexpr int kQ8Rows = 16;
constexpr int kQ8Block = 32;
constexpr int kQ8RecordBytes = 640;

struct Q8Mat {
  const uint8_t* data;  // [Mp/16, K/32, 640]
  int64_t M;
  int64_t K;  // K % 32 == 0
};

// Y[b, m], m in tiles [tile0, tile1), rows >= M not written:
//   acc = 0.0f; for j in order: acc = acc + (float)dot_j * d[m, j];   y = acc / a.scale[b]
// Separate IEEE ops, no FMA: bit-exact across variants.
using q8_gemm_fn = void (*)(const Q8Mat& w, const QActs& a,
                            float* y,  // [B, ldy]
                            int64_t ldy, int64_t tile0, int64_t tile1);

using q8_get_rows_fn = void (*)(const Q8Mat& w,
                                const int32_t* rows,  // [n]
                                int64_t n,
                                float* out,  // [n, ldo]
                                int64_t ldo);

}  // namespace bitllm
