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
// So the 8 bytes of row r, read as a little-endian uint64, are the row's 64 signs of the chunk with
// bit i <-> k = 64kc + i: directly an AVX-512 k-mask for a 64-byte activation vector.
// Rows past M are padded with zero bits and never written.
constexpr int kB1Rows = 16;
constexpr int kB1KStep = 64;
constexpr int kB1ChunkBytes = 128;

struct BinaryMat {
  const uint8_t* bits;   // [Mp/16, K/64, 128] B1R16, Mp = round_up(M, 16)
  const float* scales;   // kScaleTensor: [1], kScaleRow: [Mp] (OneBit h, Q1_0 row d, ...)
  int64_t M;
  int64_t K;             // K % 64 == 0
  int32_t scale_mode;    // kScaleTensor or kScaleRow (kScaleBlock is not supported)
};

// Y[b, m], m in row tiles [tile0, tile1), rows >= M not written, b < a.B:
//   pos = Σ_{k: bit(m,k)=1} q[b,k]                       (int32, exact: |pos| <= 128 K)
//   dot = 2 * pos - a.sum[b]                              (int32, wrapping; = Σ_k sign(m,k) * q[b,k]
//                                                          whenever a.sum[b] = Σ_k q[b,k])
//   ws  = scale_mode == kScaleRow ? scales[m] : scales[0]
//   y = ((float)dot * ws) / a.scale[b];  if (tok_bias) y = y + tok_bias[b]
// Every variant uses a.sum (never recomputes it) and separate IEEE ops (no FMA): bit-exact across
// variants for any inputs.
using binary_gemm_fn = void (*)(const BinaryMat& w, const QActs& a,
                                const float* tok_bias,  // [B] or nullptr (FBI-LLM Σ β_j x_j)
                                float* y,               // [B, ldy]
                                int64_t ldy, int64_t tile0, int64_t tile1);

// Column-side preparation for binary layers with float activations:
//   xs[b,k] = x[b,k] * col_scale[k]      (FBI-LLM alpha, OneBit g; col_scale == nullptr: copy)
//   tok_bias[b] = Σ_k col_bias[k] * x[b,k] (FBI-LLM beta; only when col_bias != nullptr)
// xs is then quantized with act_quant_i8. The bias sum has a fixed association, the same in every
// variant (so they are bit-exact): 16 lane partials
//   p[l] = 0.0f;  for k = 0 .. K-1 in order:  p[k % 16] = p[k % 16] + (col_bias[k] * x[b,k])
// (one float multiply, then one float add), then a halving fold
//   p[l] = p[l] + p[l + 8] (l < 8);  p[l] = p[l] + p[l + 4] (l < 4);  p[l] = p[l] + p[l + 2] (l < 2);
//   tok_bias[b] = p[0] + p[1].
// Rows are independent (callers split B across threads). Any K >= 1.
using binary_prep_fn = void (*)(const float* x,  // [B, ldx]
                                int64_t ldx, int64_t B, int64_t K,
                                const float* col_scale,  // [K] or nullptr
                                const float* col_bias,   // [K] or nullptr
                                float* xs,               // [B, ldxs]
                                int64_t ldxs,
                                float* tok_bias);  // [B], written only when col_bias != nullptr

}  // namespace bitllm
