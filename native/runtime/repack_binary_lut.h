// Load-time packing of binary (+-1) weights into the B1L64 lookup-table layout (kernels/binary_lut.h).
// Each function handles 64-row blocks [blk0, blk1) so callers can split blocks across threads; it
// writes whole blocks, rows >= M as zero bits. Sizes are checked by the caller (addon / loader).
#pragma once
#include <cstdint>

#include "../kernels/binary_lut.h"

namespace bitllm {

// signs[m, k] (row stride lds): v >= 0 -> +1 (bit 1), v < 0 -> -1 (bit 0), as pack_b1_from_signs.
// K % 32 == 0.
void pack_b1l_from_signs(const int8_t* signs,  // [M, lds]
                         int64_t lds, int64_t M, int64_t K,
                         uint8_t* bits,  // [b1l_bytes(M, K)]
                         int64_t blk0, int64_t blk1);

// B1R16 bits (kernels/binary.h, K % 64 == 0) -> B1L64: a loaded B1R16 matrix (Q1_0, OneBit, float
// repacks) converts at load. Row r of B1R16 chunk (tile, kc) is a uint64 whose low / high dword is
// B1L64 chunk 2kc / 2kc+1's dword for that row.
void pack_b1l_from_b1r16(const uint8_t* b1r16,  // [Mp16/16, K/64, 128]
                         int64_t M, int64_t K,
                         uint8_t* bits,  // [b1l_bytes(M, K)]
                         int64_t blk0, int64_t blk1);

// B1L64 bits -> signs[m, k] in {-1, +1} for m < M (the inverse, for tests and dequantization).
void unpack_b1l_to_signs(const uint8_t* bits,  // [b1l_bytes(M, K)]
                         int64_t M, int64_t K,
                         int8_t* signs,  // [M, lds]
                         int64_t lds);

}  // namespace bitllm
