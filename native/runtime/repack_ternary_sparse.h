// Load-time packing of ternary weights into the column-sparse TS256 layout (kernels/ternary_sparse.h).
// Packing handles 256-row blocks [blk0, blk1) so callers can split blocks across threads. Sizes are
// checked by the caller (addon / loader); these functions trust them.
#pragma once
#include <cstdint>

#include "../kernels/ternary_sparse.h"

namespace bitllm {

// T2R16 codes (kernels/ternary_i2.h; K % 16 == 0) -> TS256 blocks. Every file format that repacks to
// T2R16 (I2_S, TQ2_0, TQ1_0, F32, trits) reaches TS256 through this, with the same tensor / row scales.
// Code 3 (never written by the T2R16 packers) is read as a zero trit.
void pack_sparse_from_t2(const uint8_t* codes,  // [Mp16/16, K/16, 64]
                         int64_t M, int64_t K,
                         uint8_t* data,  // [ts_weight_bytes(M, K)]
                         int64_t blk0, int64_t blk1);

// TS256 -> trits[m, k] for m < M (the inverse, for tests and dequantization).
void unpack_sparse_to_trits(const uint8_t* data,  // [ts_weight_bytes(M, K)]
                            int64_t M, int64_t K,
                            int8_t* trits,  // [M, ldt]
                            int64_t ldt);

}  // namespace bitllm
