// Load-time repacking of dense weights into Q8R16 (kernels/dense.h) and back.
// Each repack handles output row tiles [tile0, tile1) so callers can split tiles across threads.
// Sources are bounds-checked by the caller (addon / loader); these functions trust their sizes.
#pragma once
#include <cstdint>

#include "../kernels/dense.h"

namespace bitllm {

// GGUF Q8_0 rows: [M, K/32] blocks of 34 bytes {fp16 d, int8 qs[32]}, rows contiguous. Codes and
// scale bits are copied as they are (any int8 code, -128 included). A block whose d is Inf or NaN is
// stored as zeros and counted: the return value is the number of such blocks (the caller rejects the
// tensor when it is not 0).
int64_t repack_q8_from_q8_0(const uint8_t* src,  // [M, K/32, 34]
                            int64_t M, int64_t K, uint8_t* data, int64_t tile0, int64_t tile1);

// Float rows quantized per 32-block, in float arithmetic (each step one IEEE op):
//   amax = max |x|;  dh = fp16_rne(amax / 127);  d = f32(dh)
//   q = d == 0 ? 0 : clamp(round_half_even(x / d), -127, 127)
// The codes are computed against the stored (rounded) scale, so |x - d q| <= d/2 still holds when
// dh is rounded or subnormal (the clamp only bites there). A block holding Inf or NaN, or whose
// amax / 127 overflows fp16 (F32 only), is stored as zeros and counted in the return value.
int64_t repack_q8_from_f16(const uint16_t* src,  // [M, lds] IEEE half
                           int64_t lds, int64_t M, int64_t K, uint8_t* data, int64_t tile0, int64_t tile1);
int64_t repack_q8_from_f32(const float* src,  // [M, lds]
                           int64_t lds, int64_t M, int64_t K, uint8_t* data, int64_t tile0, int64_t tile1);

// Q8R16 -> GGUF Q8_0 rows (the exact inverse of repack_q8_from_q8_0 for finite scales).
void unpack_q8_to_q8_0(const uint8_t* data, int64_t M, int64_t K,
                       uint8_t* dst);  // [M, K/32, 34]

}  // namespace bitllm
