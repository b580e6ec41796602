// Load-time packing of ternary weights into the TD3 layout (kernels/ternary_td3.h). Each function
// handles 64-row tiles [tile0, tile1) so callers can split tiles across threads. Sizes are checked by
// the caller (addon / loader); these functions trust them.
#pragma once
#include <cstdint>

#include "../kernels/ternary_td3.h"

namespace bitllm {

// T2R16 codes (kernels/ternary_i2.h; K % 16 == 0) -> TD3 tiles. Every file format that repacks to
// T2R16 (I2_S, TQ2_0, TQ1_0, F32, trits) reaches TD3 through this, with the same scales array.
// Code 3 (never written by the T2R16 packers) is read as a zero trit.
void pack_td3_from_t2(const uint8_t* codes,  // [Mp16/16, K/16, 64]
                      int64_t M, int64_t K,
                      uint8_t* data,  // [td3_weight_bytes(M, K)]
                      int64_t tile0, int64_t tile1);

// TD3 -> trits[m, k] for m < M (the inverse, for tests and dequantization).
void unpack_td3_to_trits(const uint8_t* data,  // [td3_weight_bytes(M, K)]
                         int64_t M, int64_t K,
                         int8_t* trits,  // [M, ldt]
                         int64_t ldt);

}  // namespace bitllm
