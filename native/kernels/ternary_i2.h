// Ternary 2-bit multiply-add GEMM on the internal T2R16 layout (DESIGN.md §3.2).
#pragma once
#include <cstdint>

#include "act_quant.h"

namespace bitllm {

// T2R16: 16 output rows x 16 k per 64-byte chunk.
//   chunk (tile t, kc) at byte offset (t * (K/16) + kc) * 64
//   byte p = 4*r + i (r = row within tile 0..15, i = 0..3), bit pair l (bits 2l+1:2l, l = 0..3)
//   holds code(row 16t + r, k = 16kc + 4l + i), code = trit + 1 in {0, 1, 2}.
// So `(chunk >> 2l) & 3` is, per 32-bit lane r, the 4 codes of row r at k = 16kc+4l .. +3: the operand
// shape of vpdpbusd / sdot with a broadcast of 4 activation bytes. Rows past M are padded with code 1.
constexpr int kT2Rows = 16;
constexpr int kT2KStep = 16;
constexpr int kT2ChunkBytes = 64;
constexpr int kScaleBlockK = 256;  // K granularity of block scales (TQ1_0 / TQ2_0 super-block)

enum ScaleMode : int32_t {
  kScaleTensor = 0,  // scales[0]
  kScaleRow = 1,     // scales[m], m < Mp
  kScaleBlock = 2,   // scales[(t * (K/256) + j) * 16 + r] for row 16t+r, k-block j
};

struct TernaryMat {
  const uint8_t* codes;  // [Mp/16, K/16, 64] T2R16, Mp = round_up(M, 16)
  const float* scales;   // see ScaleMode
  int64_t M;             // output rows
  int64_t K;             // K % 16 == 0; kScaleBlock needs K % 256 == 0
  int32_t scale_mode;
};

// Y[b, m] for m in row tiles [tile0, tile1) (rows >= M are not written), b < a.B:
//   dot_j = Σ_{k in block j} code[m,k] * q[b,k]             (int32, exact)
//   tensor/row scale (one block spanning K): y = ((float)(dot - a.sum[b]) * ws) / a.scale[b]
//   block scale: acc = 0.0f; for j in order: acc = acc + (float)(dot_j - a.bsum[b,j]) * scales[..j..];
//                y = acc / a.scale[b]
// Every float op is a separate IEEE op (no FMA contraction), so all variants are bit-exact.
using ternary_gemm_fn = void (*)(const TernaryMat& w, const QActs& a,
                                 float* y,  // [B, ldy]
                                 int64_t ldy, int64_t tile0, int64_t tile1);

}  // namespace bitllm
