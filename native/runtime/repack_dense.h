// Load-time repacking of dense weights into Q8R16 / F16T32 (kernels/dense.h) / Q4R16 (kernels/dense_q4.h) and back.
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

// ---- F16T32 (kernels/dense.h) ----
// GGUF F16 rows [M, K] -> F16T32 tiles [tile0, tile1): the half bits are moved as they are (rows past M
// are zeros). A half whose exponent is all ones (Inf or NaN) is counted in the return value (the caller
// rejects the tensor: the GEMM's inputs are finite).
int64_t repack_f16t(const uint16_t* src,  // [M, K]
                    int64_t M, int64_t K, uint16_t* dst, int64_t tile0, int64_t tile1);

// ---- Q4R16 (kernels/dense_q4.h) ----
// GGUF Q4_0 rows: [M, K/32] blocks of 18 bytes {fp16 d, uint8 qs[16]} (qs[i] low nibble = k i, high
// nibble = k i + 16, weight d * (nibble - 8)): nibbles and scale bits are copied as they are. A block
// whose d is Inf or NaN is stored as zeros (u = 8, d = 0) and counted in the return value.
int64_t repack_q4_from_q4_0(const uint8_t* src,  // [M, K/32, 18]
                            int64_t M, int64_t K, uint8_t* data, int64_t tile0, int64_t tile1);

// Float rows quantized per 32-block, in float arithmetic (each step one IEEE op):
//   mx = the x of largest |x| (the first in k order on ties);  dh = fp16_rne(mx / -8);  d = f32(dh)
//   d == 0: every u = 8 and dh = +0;  else u = clamp(round_half_even(x / d), -8, 7) + 8
// The extreme value lands on code -8 exactly (the 16th level a symmetric rule would waste) and
// |x - d (u - 8)| <= |d|/2 for every x of the block's sign-flipped range [-8|d|, 7.5|d|]; codes are
// computed against the stored (rounded) scale. Sources: F16 / BF16 halves (widened exactly), F32, and
// GGUF Q8_0 blocks (x = f32(d) * code, one exact multiply: requantized through the same rule). A block
// holding Inf or NaN, a Q8_0 block with a non-finite d, or a block whose mx / -8 overflows fp16 is
// stored as zeros and counted in the return value.
int64_t repack_q4_from_f16(const uint16_t* src,  // [M, lds] IEEE half
                           int64_t lds, int64_t M, int64_t K, uint8_t* data, int64_t tile0, int64_t tile1);
int64_t repack_q4_from_bf16(const uint16_t* src,  // [M, lds] bfloat16
                            int64_t lds, int64_t M, int64_t K, uint8_t* data, int64_t tile0, int64_t tile1);
int64_t repack_q4_from_f32(const float* src,  // [M, lds]
                           int64_t lds, int64_t M, int64_t K, uint8_t* data, int64_t tile0, int64_t tile1);
int64_t repack_q4_from_q8_0(const uint8_t* src,  // [M, K/32, 34]
                            int64_t M, int64_t K, uint8_t* data, int64_t tile0, int64_t tile1);

// Q4R16 -> GGUF Q4_0 rows (the exact inverse of repack_q4_from_q4_0 for finite scales).
void unpack_q4_to_q4_0(const uint8_t* data, int64_t M, int64_t K,
                       uint8_t* dst);  // [M, K/32, 18]

}  // namespace bitllm
