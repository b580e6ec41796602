// Load-time packing of ternary weights into the TL3 lookup-table layout (kernels/ternary_lut.h).
// Each function handles output row tiles [tile0, tile1) of kLutRows rows so callers can split tiles
// across threads. Sizes are checked by the caller (addon / loader); these functions trust them.
#pragma once
#include <cstdint>

#include "../kernels/ternary_lut.h"

namespace bitllm {

// trits[m, k] (row stride ldt) -> TL3 records. Values > 0 count as +1, < 0 as -1.
void pack_lut_from_trits(const int8_t* trits,  // [M, ldt]
                         int64_t ldt, int64_t M, int64_t K,
                         uint8_t* data,  // [lut_weight_bytes(M, K)]
                         int64_t tile0, int64_t tile1);

// T2R16 codes (kernels/ternary_i2.h, K % 16 == 0) -> TL3 records, so every file format that repacks
// to T2R16 (I2_S, TQ2_0, TQ1_0, F32) also reaches TL3, with the same scales array.
void pack_lut_from_t2(const uint8_t* codes,  // [Mp16/16, K/16, 64]
                      int64_t M, int64_t K,
                      uint8_t* data,  // [lut_weight_bytes(M, K)]
                      int64_t tile0, int64_t tile1);

// TL3 records -> trits[m, k] for m < M (the inverse, for tests and dequantization).
void unpack_lut_to_trits(const uint8_t* data,  // [lut_weight_bytes(M, K)]
                         int64_t M, int64_t K,
                         int8_t* trits,  // [M, ldt]
                         int64_t ldt);

}  // namespace bitllm
