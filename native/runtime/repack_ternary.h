// Load-time repacking of ternary weights from file layouts into T2R16 (kernels/ternary_i2.h).
// Each function handles output row tiles [tile0, tile1) so callers can split tiles across threads.
// Sources are bounds-checked by the caller (addon / loader); these functions trust their sizes.
// The file-format repacks return how many codes were invalid (TQ2_0 code 3, TQ1_0 digit > 2): such
// codes are stored as 0 and the caller must reject the tensor.
#pragma once
#include <cstdint>

#include "../kernels/ternary_i2.h"

namespace bitllm {

static inline int64_t t2_tiles(int64_t M) { return (M + kT2Rows - 1) / kT2Rows; }
static inline int64_t t2_code_bytes(int64_t M, int64_t K) { return t2_tiles(M) * kT2Rows * K / 4; }

// trits[m, k] in {-1, 0, 1} (row stride ldt) -> codes. Values outside {-1,0,1} are clamped.
void pack_t2_from_trits(const int8_t* trits, int64_t ldt, int64_t M, int64_t K, uint8_t* codes,
                        int64_t tile0, int64_t tile1);

// codes -> trits[m, k] for m < M (the inverse, for tests and dequantization).
void unpack_t2_to_trits(const uint8_t* codes, int64_t M, int64_t K, int8_t* trits, int64_t ldt);

// I2_S (bitnet.cpp, x86/official layout): 128 elements of the flattened [M, K] tensor per 32 bytes,
// byte j: element j in bits 7:6, j+32 in 5:4, j+64 in 3:2, j+96 in 1:0; code 3 decodes to 0
// (as bitnet.cpp's dequantizer does), so I2_S never reports invalid codes.
// K % 128 == 0 is not required here (the flattening is over the whole tensor), M*K % 128 == 0 is.
int64_t repack_t2_from_i2s(const uint8_t* src, int64_t M, int64_t K, uint8_t* codes, int64_t tile0,
                        int64_t tile1);

// TQ2_0: blocks of 256 along each row, 66 bytes {qs[64], fp16 d}; per 32-byte half, byte m holds
// element m in bits 1:0, m+32 in 3:2, m+64 in 5:4, m+96 in 7:6. K % 256 == 0.
// Writes codes and block scales ([Mp/16, K/256, 16], padded rows 0).
int64_t repack_t2_from_tq2(const uint8_t* src, int64_t M, int64_t K, uint8_t* codes, float* block_scales,
                        int64_t tile0, int64_t tile1);

// TQ1_0: blocks of 256, 54 bytes {qs[48], qh[4], fp16 d} (formats.md §3.2). K % 256 == 0.
int64_t repack_t2_from_tq1(const uint8_t* src, int64_t M, int64_t K, uint8_t* codes, float* block_scales,
                        int64_t tile0, int64_t tile1);

// Float weights [M, K] (row stride ldw) ternarized with a given per-tensor scale gamma:
// trit = clamp(round_half_even(w / gamma), -1, 1). gamma is usually mean|W| (absmean, BitNet b1.58).
void repack_t2_from_f32(const float* w, int64_t ldw, int64_t M, int64_t K, float gamma, uint8_t* codes,
                        int64_t tile0, int64_t tile1);

// If every block scale of a block-scaled tensor is equal (blocks whose codes are all 1 ignored),
// returns true and that scale: the tensor can then run in kScaleTensor mode with identical results.
bool t2_uniform_block_scale(const uint8_t* codes, const float* block_scales, int64_t M, int64_t K,
                            float* scale);

float fp16_to_f32(uint16_t h);
uint16_t f32_to_fp16(float f);

}  // namespace bitllm
