// Load-time repacking of binary (+-1) weights from file layouts into B1R16 (kernels/binary.h).
// Each pack/repack function handles output row tiles [tile0, tile1) so callers can split tiles
// across threads; it writes the whole tile, padding rows >= M with zero bits. Sources are
// bounds-checked by the caller (addon / loader); these functions trust their sizes.
#pragma once
#include <cstdint>

#include "../kernels/binary.h"

namespace bitllm {

static inline int64_t b1_tiles(int64_t M) { return (M + kB1Rows - 1) / kB1Rows; }
static inline int64_t b1_bits_bytes(int64_t M, int64_t K) { return b1_tiles(M) * kB1Rows * K / 8; }

constexpr int kQ1BlockK = 128;     // upstream Q1_0: QK1_0 weights per block
constexpr int kQ1BlockBytes = 18;  // {fp16 d; uint8 qs[16]}

// signs[m, k] (row stride lds): v >= 0 -> +1 (bit 1), v < 0 -> -1 (bit 0). K % 64 == 0.
void pack_b1_from_signs(const int8_t* signs, int64_t lds, int64_t M, int64_t K, uint8_t* bits, int64_t tile0,
                        int64_t tile1);

// bits -> signs[m, k] in {-1, +1} for m < M (the inverse, for tests and dequantization).
void unpack_b1_to_signs(const uint8_t* bits, int64_t M, int64_t K, int8_t* signs, int64_t lds);

// Float weights [M, K] (row stride ldw) -> sign bits, sign(0) := +1: bit = !(w < 0), so -0.0 and
// NaN are +1 too (FBI-LLM / OneBit checkpoints keep the latent float weights).
void repack_b1_from_f32(const float* w, int64_t ldw, int64_t M, int64_t K, uint8_t* bits, int64_t tile0,
                        int64_t tile1);

// OneBit packing: int8 [M, K/8] row-major, bit i (LSB first) of byte j = column 8j + i, bit 1 = -1,
// bit 0 = +1 (formats.md §5.4): the opposite polarity, so every byte is inverted. K % 64 == 0.
void repack_b1_from_onebit(const uint8_t* src, int64_t M, int64_t K, uint8_t* bits, int64_t tile0,
                           int64_t tile1);

// Upstream Q1_0 (ggml type 41): each row is K/128 blocks of 18 bytes {fp16 d; qs[16]}, element e of
// a block is bit e%8 of qs[e/8], bit 1 = +d, bit 0 = -d. K % 128 == 0.
// B1R16 carries one scale per row, so a row is representable only when all its blocks share |d|:
// row_scales[m] = |d of block 0|, and a block with d = -|d| is stored with its bits inverted (the
// same weights). Returns the number of rows that are not representable (some block's |d| differs,
// or the scale is not finite); such rows are packed with block 0's scale and the caller must reject
// the tensor. row_scales is [Mp] (padded rows get 0).
int64_t repack_b1_from_q1_0(const uint8_t* src, int64_t M, int64_t K, uint8_t* bits, float* row_scales,
                            int64_t tile0, int64_t tile1);

}  // namespace bitllm
