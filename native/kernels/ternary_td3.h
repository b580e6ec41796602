// Ternary "TD3" GEMM: 3-trit groups (a 4-bit magnitude + a sign bit, 1.6875 bits/weight) decoded by a
// 16-entry byte table into 2-bit codes and multiplied-added like T2R16 (docs/kernels-lut.md §6).
#pragma once
#include <cstdint>

#include "act_quant.h"
#include "ternary_i2.h"  // ScaleMode, kScaleBlockK, kT2* (the tail chunks are T2R16 chunks)

namespace bitllm {

// Layout. Rows are cut into 64-row tiles (4 "quads" of 16 rows); rows >= M are zero trits. Tiles are
// stored one after another (tile t at t * td3_tile_bytes(K)), so one thread streams one contiguous
// range, and matrices with M % 64 == 0 and equal K fuse by concatenation. Inside a tile, K is cut into
// 256-column blocks (the block-scale granularity), each block into 24-column units then 16-column tails:
//   block of r columns (256, or fewer for the last block; r % 16 == 0):
//     units = 2 * floor(r / 48)  (10 for a full block),  tails = (r - 24 * units) / 16  (1 for a full block)
//   full block = 10 * 320 + 256 = 3456 bytes per 64 rows x 256 columns: 1.6875 bits per weight.
//
// Unit (64 rows x 24 columns, 320 bytes = 5 cache lines, 8 groups of 3 trits per row):
//   +0       S[64]       sign bits: bit 4 + q of S[p] = sign of (quad q, byte p, low nibble),
//                        bit q = sign of (quad q, byte p, high nibble); 1 = negative group
//   +64+64q  N_q[64]     nibbles of quad q (rows 16q..16q+15): byte p = 4r + i is row 16q + r,
//                        low nibble = |v| of slot i, high nibble = |v| of slot 4 + i
//   slot s (0..7) of row m holds the trits t0, t1, t2 at k = k_unit + 12 * (s >> 2) + 4 * d + (s & 3)
//   for d = 0, 1, 2, as v = 9 t0 + 3 t1 + t2 in [-13, 13]: |v| in the nibble, v < 0 in the sign bit.
// So for the low slots, byte i of a 32-bit row lane holds the group whose digit d sits at
// k = k_unit + 4d + i: decoding a nibble to the byte  c0 | c1 << 2 | c2 << 4  (c_d = t_d + 1) makes
// (byte & (3 << 2d)) the vpdpbusd / maddubs / sdot operand against activations q[k_unit + 4d .. +3]
// exactly as in T2R16 (high slots: + 12). kTd3Decode is that byte for a positive group; a negative
// group's byte is 42 - byte (each code c -> 2 - c).
// Tail (64 rows x 16 columns, 256 bytes): per quad q at +64q one T2R16 chunk (ternary_i2.h) of that
// quad's 16 rows: byte 4r + i, bits 2l+1:2l = code of (row 16q + r, k_tail + 4l + i).
// The sign plane S is shared by the quads so that every ISA finds the sign of nibble byte p at S[p]:
// AVX-512 VBMI merges it into the table index (quads 0, 1 as stored, quads 2, 3 after S >> 2: the
// low-slot signs land on index bits 4, 5 and the high-slot signs on bits 0, 1), AVX-512 BW takes it
// as a k-mask (vptestmb), AVX2 shifts the bit into bit 7 for vpblendvb, NEON uses vtst.
constexpr int kTd3Rows = 64;        // rows per tile
constexpr int kTd3QuadRows = 16;    // rows per quad
constexpr int kTd3Quads = 4;        // quads per tile
constexpr int kTd3KStep = 16;       // K must be a multiple of 16
constexpr int kTd3UnitK = 24;       // columns per unit
constexpr int kTd3UnitBytes = 320;  // 64 sign bytes + 4 quads x 64 nibble bytes
constexpr int kTd3TailK = 16;       // columns per tail
constexpr int kTd3TailBytes = 256;  // 4 quads x 64 bytes (T2R16 chunks)
constexpr int kTd3BlockBytes = 10 * kTd3UnitBytes + kTd3TailBytes;  // 3456: a full 256-column block

// Decoded byte c0 | c1 << 2 | c2 << 4 of a positive group with |v| = m (m = 9 d0 + 3 d1 + d2 in
// balanced ternary, c_d = d_d + 1). Entries 14 and 15 never occur in packed data; they decode as zeros.
inline constexpr uint8_t kTd3Decode[16] = {21, 37, 9, 25, 41, 2, 18, 34, 6, 22, 38, 10, 26, 42, 21, 21};
constexpr int kTd3Negate = 42;  // a negative group's byte: 42 - kTd3Decode[|v|]
// Sign-plane bit of quad q's low-nibble (h = 0) or high-nibble (h = 1) slot.
static inline constexpr int td3_sign_bit(int q, int h) { return h ? q : 4 + q; }

static inline int64_t td3_tiles(int64_t M) { return (M + kTd3Rows - 1) / kTd3Rows; }
static inline int64_t td3_blocks(int64_t K) { return (K + kScaleBlockK - 1) / kScaleBlockK; }
static inline int64_t td3_block_cols(int64_t K, int64_t j) {
  const int64_t r = K - j * kScaleBlockK;
  return r < kScaleBlockK ? r : kScaleBlockK;
}
static inline int td3_block_units(int64_t K, int64_t j) { return static_cast<int>(2 * (td3_block_cols(K, j) / 48)); }
static inline int td3_block_tails(int64_t K, int64_t j) {
  return static_cast<int>((td3_block_cols(K, j) - int64_t{kTd3UnitK} * td3_block_units(K, j)) / kTd3TailK);
}
static inline int64_t td3_block_bytes(int64_t K, int64_t j) {
  return int64_t{kTd3UnitBytes} * td3_block_units(K, j) + int64_t{kTd3TailBytes} * td3_block_tails(K, j);
}
// Byte offset of block j inside a tile (every block before the last is full).
static inline int64_t td3_block_offset(int64_t j) { return j * kTd3BlockBytes; }
static inline int64_t td3_tile_bytes(int64_t K) {
  const int64_t nb = td3_blocks(K);
  return nb == 0 ? 0 : td3_block_offset(nb - 1) + td3_block_bytes(K, nb - 1);
}
static inline int64_t td3_weight_bytes(int64_t M, int64_t K) { return td3_tiles(M) * td3_tile_bytes(K); }

struct TernaryTd3Mat {
  const uint8_t* data;  // [td3_weight_bytes(M, K)]
  const float* scales;  // T2R16 scale layout: kScaleTensor [1], kScaleRow [>= Mp16], kScaleBlock [Mp16/16, K/256, 16]
  int64_t M;
  int64_t K;            // K % 16 == 0; kScaleBlock needs K % 256 == 0
  int32_t scale_mode;
};

// Same contract as ternary_gemm_fn (ternary_i2.h), bit-exact to it for the same trits and scales:
//   dot_j = Σ_{k in block j} code[m,k] * q[b,k]  (code = trit + 1; int32, exact)
//   tensor/row: y = ((float)(dot - a.sum[b]) * ws) / a.scale[b]
//   block:      acc = 0.0f; acc = acc + (float)(dot_j - a.bsum[b,j]) * d_j (j in order); y = acc / a.scale[b]
// for rows < M of 64-row tiles [tile0, tile1); rows >= M are not written.
using ternary_td3_gemm_fn = void (*)(const TernaryTd3Mat& w, const QActs& a,
                                     float* y,  // [B, ldy]
                                     int64_t ldy, int64_t tile0, int64_t tile1);

// Decodes one 64-row tile (td3 = data + tile * td3_tile_bytes(K)) into `quads` (1..4) T2R16 row tiles
// (codes [quads, K/16, 64], ternary_i2.h), the quads' rows in order: T2R16 chunk 3p, 3p+1, 3p+2 of a
// block come from units 2p, 2p+1 (decoded bytes lo/hi of unit u and lo1/hi1 of unit u+1):
//   chunk 3p = lo | (hi & 3) << 6,  3p+1 = hi >> 2 | (lo1 & 15) << 4,  3p+2 = lo1 >> 4 | hi1 << 2
// and the tail chunks are copied. The GEMM binding uses it for large batches (addon/ternary_td3.cpp):
// each tile is decoded once and the T2R16 kernel runs on it for all tokens.
using ternary_td3_to_t2_fn = void (*)(const uint8_t* td3, int64_t K, int quads,
                                      uint8_t* codes);  // [quads, K/16, 64]

#if defined(__x86_64__) || defined(_M_X64)
// The AVX-512 kernels without (vpshufb) or with (vpermb) AVX512-VBMI; the VBMI pair is null when this
// CPU lacks VBMI. fill_ternary_td3_avx512 installs the best; tests call both.
struct Td3Avx512Kernels {
  ternary_td3_gemm_fn gemm;
  ternary_td3_to_t2_fn to_t2;
};
Td3Avx512Kernels ternary_td3_avx512_kernels(bool vbmi);
#endif

}  // namespace bitllm
