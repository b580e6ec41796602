// Binary (+-1) weight GEMM with int8 activations: BitNet (binary), FBI-LLM, OneBit (formats.md §5).
#pragma once
#include <cstdint>

#include "act_quant.h"
#include "ternary_i2.h"  // ScaleMode

namespace bitllm {

// B1R16: 16 output rows x 64 k per 128-byte chunk.
//   chunk (tile t, kc) at byte offset (t * (K/64) + kc) * 128
//   row r of the tile owns bytes [8r, 8r+8): bit i of byte j is column k = 64kc + 8j + i (LSB first);
//   bit 1 = +1, bit 0 = -1 (upstream Q1_0 / T-MAC polarity; OneBit files are flipped at repack).
// Rows past M are padded with zero bits and never written.
constexpr int kB1Rows = 16;
constexpr int kB1KStep = 64;
constexpr int kB1ChunkBytes = 128;

struct BinaryMat {
  const uint8_t* bits;   // [Mp/16, K/64, 128] B1R16
  const float* scales;   // kScaleTensor: [1], kScaleRow: [Mp] (OneBit h, BitNet beta, ...)
  int64_t M;
  int64_t K;             // K % 64 == 0
  int32_t scale_mode;    // kScaleTensor or kScaleRow
};

// Y[b, m], m in row tiles [tile0, tile1), rows >= M not written:
//   dot = Σ_k sign(m,k) * q[b,k]                (int32, exact; = 2 * Σ_{bit=1} q - a.sum[b])
//   y = ((float)dot * ws) / a.scale[b];  if (tok_bias) y = y + tok_bias[b]
// Separate IEEE ops, no FMA: bit-exact across variants.
using binary_gemm_fn = void (*)(const BinaryMat& w, const QActs& a,
                                const float* tok_bias,  // [B] or nullptr (FBI-LLM Σ β_j x_j)
                                float* y,               // [B, ldy]
                                int64_t ldy, int64_t tile0, int64_t tile1);

// Column-side preparation for binary layers with float activations:
//   xs[b,k] = x[b,k] * col_scale[k]      (FBI-LLM alpha, OneBit g; col_scale == nullptr: copy)
//   tok_bias[b] = Σ_k col_bias[k] * x[b,k] (FBI-LLM beta; only when col_bias != nullptr)
// xs is then quantized with act_quant_i8. The bias sum is float; variants may differ by rounding
// (bound in DESIGN.md §3.1).
using binary_prep_fn = void (*)(const float* x,  // [B, ldx]
                                int64_t ldx, int64_t B, int64_t K,
                                const float* col_scale,  // [K] or nullptr
                                const float* col_bias,   // [K] or nullptr
                                float* xs,               // [B, ldxs]
                                int64_t ldxs,
                                float* tok_bias);  // [B], written only when col_bias != nullptr

}  // namespace bitllm
