// Ternary lookup-table GEMM (T-MAC / TL style) on the internal TL layout (DESIGN.md §3.2).
#pragma once
#include <cstdint>

#include "act_quant.h"
#include "ternary_i2.h"  // ScaleMode, kScaleBlock

namespace bitllm {

// Layout, tile height (kLutRows), K granularity (kLutKStep) and table format: see DESIGN.md §3.2 "TL3".
constexpr int kLutRows = 16;   // output rows per tile
constexpr int kLutKStep = 48;  // K granularity of the layout

struct TernaryLutMat {
  const uint8_t* data;  // packed weight indices, layout TL3
  const float* scales;  // as TernaryMat (kScaleTensor / kScaleRow / kScaleBlock)
  int64_t M;
  int64_t K;
  int32_t scale_mode;
};

// Bytes of lookup tables per token for a given K.
int64_t lut_table_bytes(int64_t K);
// Bytes of the packed weights for M x K.
int64_t lut_weight_bytes(int64_t M, int64_t K);

// Builds the activation tables of tokens [b0, b1) into tables[b * lut_table_bytes(K)].
using ternary_lut_build_fn = void (*)(const QActs& a, int64_t b0, int64_t b1, uint8_t* tables);

// Same result contract as ternary_gemm_fn (bit-exact to it for the same trits and scales).
using ternary_lut_gemm_fn = void (*)(const TernaryLutMat& w, const QActs& a, const uint8_t* tables,
                                     float* y,  // [B, ldy]
                                     int64_t ldy, int64_t tile0, int64_t tile1);

}  // namespace bitllm
