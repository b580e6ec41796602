// Ternary lookup-table GEMM ("TL3", T-MAC / TL2 style) on the internal TL3 layout (docs/kernels-lut.md).
#pragma once
#include <cstdint>

#include "act_quant.h"
#include "ternary_i2.h"  // ScaleMode, kScaleBlockK

namespace bitllm {

// TL3 packs 3 trits (t0, t1, t2) at k, k+1, k+2 as one "group": v = 9*t0 + 3*t1 + t2 in [-13, 13],
// stored as a 4-bit magnitude |v| (0..13) plus a sign bit (v < 0): 5 bits per 3 weights.
//
// K is cut into 256-wide blocks (the block-scale granularity). A full block holds 86 groups: groups
// 0..84 cover k = 256j + 3g .. +2, group 85 covers only k = 256j + 255 (its other two trits are 0).
// A last partial block of r < 256 columns holds ceil(r/3) groups rounded up to even. Missing trits
// (past the block or past K) are 0 and the tables give them activation 0.
//
// Rows are cut into tiles of 64 (kLutRows); rows >= M are all-zero trits. Weight bytes are ordered
// block-major: record (block j, tile t) at lut_record_offset(M, K, j, t), so that one block's
// activation tables (86 * 64 bytes) stay in L1 while a thread streams the records of its tiles.
// A record is a sequence of 8-group units, each 320 bytes (5 cache lines, read strictly in order):
//   [64 B signs: 8 groups x 8 bytes; bit r of the group's uint64 = sign of row r]
//   [4 x 64 B nibbles: pair p holds groups 2p (low nibbles) and 2p+1 (high nibbles)]
// A block's last unit may hold fewer groups (a full block: 86 = 10*8 + 6): its sign area holds that
// many uint64s, zero-padded to 64 bytes, followed by one 64-byte nibble pair per 2 groups.
// Nibble byte p of a pair belongs to row (p >> 1) + 32 * (p & 1): 16-bit word i holds rows i and 32+i.
// So on AVX-512 the word itself, >> 8, >> 4 and >> 12 are the vpermw indices of (group 2p, rows 0..31),
// (2p, rows 32..63), (2p+1, rows 0..31) and (2p+1, rows 32..63), each row set in order (vpermw reads
// bits 0..4 only; bit 4 is the neighbouring nibble's bit 0, made harmless by a table duplicated at +16).
// A full block record is 10*320 + 64 + 3*64 = 3456 bytes per 64 rows: 1.6875 bits per weight.
constexpr int kLutRows = 64;                // output rows per tile
constexpr int kLutKStep = 1;                // the layout accepts any K >= 1 (tails are zero-padded)
constexpr int kLutGroupK = 3;               // trits per group
constexpr int kLutBlockGroups = 86;         // groups per full 256-column block
constexpr int kLutUnitGroups = 8;           // groups per unit
constexpr int kLutUnitBytes = 320;          // 64 sign bytes + 4 nibble pairs
constexpr int kLutTableBytes = 64;          // table bytes per group and token
constexpr int kLutFlushGroups = 40;         // int16 accumulators are widened after 40 groups and at block end

// Activation tables, per token and group g (global group index, block-major: 86 per full block),
// kLutTableBytes = 64 bytes at tables[b * lut_table_bytes(K) + g * 64]. Entries are
// T[m] = d0(m)*q0 + d1(m)*q1 + d2(m)*q2 (int16) for m = 0..13 with (d0, d1, d2) the balanced ternary
// digits of m (m = 9*d0 + 3*d1 + d2), and T[14] = T[15] = 0. |T| <= 384, so int16 is exact, and a
// segment of at most 85 groups (the kernels flush every 40) cannot overflow an int16 lane.
// The byte format is private to each variant's build/gemm pair (the same KernelTable fills both):
//   byte planes (scalar, AVX2, NEON): [0..15] low bytes of +T[m], [16..31] low bytes of -T[m],
//     [32..47] high bytes of +T[m], [48..63] high bytes of -T[m]. AVX2 reads +T and applies the
//     sign after the lookup; NEON looks up the signed index m + 16*sign in the {+T, -T} planes.
//   int16 (AVX-512): T[0..15] as int16, then the same 16 int16 again (see the vpermw note above).

// Balanced ternary digits (d0, d1, d2) of table index m = 9*d0 + 3*d1 + d2, m = 0..13; rows 14, 15 are 0.
inline constexpr int8_t kLutDigits[16][3] = {{0, 0, 0},  {0, 0, 1},   {0, 1, -1}, {0, 1, 0}, {0, 1, 1}, {1, -1, -1},
                                             {1, -1, 0}, {1, -1, 1},  {1, 0, -1}, {1, 0, 0}, {1, 0, 1}, {1, 1, -1},
                                             {1, 1, 0},  {1, 1, 1},   {0, 0, 0},  {0, 0, 0}};

static inline int64_t lut_tiles(int64_t M) { return (M + kLutRows - 1) / kLutRows; }
static inline int64_t lut_blocks(int64_t K) { return (K + kScaleBlockK - 1) / kScaleBlockK; }
// Groups of block j (86 for a full block, even for the tail).
static inline int lut_block_groups(int64_t K, int64_t j) {
  const int64_t r = K - j * kScaleBlockK;
  if (r >= kScaleBlockK) return kLutBlockGroups;
  const int g = static_cast<int>((r + kLutGroupK - 1) / kLutGroupK);
  return (g + 1) & ~1;
}
// Bytes of one record holding ng groups.
static inline int64_t lut_record_bytes(int ng) {
  const int rem = ng % kLutUnitGroups;
  return int64_t{ng / kLutUnitGroups} * kLutUnitBytes + (rem ? 64 + rem / 2 * 64 : 0);
}
// Offsets of group g's signs (uint64) and nibble pair (64 bytes, for g even) inside a record.
static inline int64_t lut_sign_offset(int g) { return int64_t{g / kLutUnitGroups} * kLutUnitBytes + (g % kLutUnitGroups) * 8; }
static inline int64_t lut_nibble_offset(int g) {
  return int64_t{g / kLutUnitGroups} * kLutUnitBytes + 64 + (g % kLutUnitGroups) / 2 * 64;
}
// Byte offset of record (block j, tile t) in the packed weights.
static inline int64_t lut_record_offset(int64_t M, int64_t K, int64_t j, int64_t t) {
  const int64_t full = lut_record_bytes(kLutBlockGroups);
  return j * lut_tiles(M) * full + t * lut_record_bytes(lut_block_groups(K, j));
}
// Index of block j's first group in the tables.
static inline int64_t lut_block_group0(int64_t j) { return j * kLutBlockGroups; }
// Row held by nibble byte p (0..63) of a pair, and the inverse.
static inline int lut_byte_row(int p) { return (p >> 1) + 32 * (p & 1); }
static inline int lut_row_byte(int r) { return 2 * (r & 31) + (r >> 5); }

// Total groups of a K-wide row, bytes of lookup tables per token, bytes of packed weights.
int64_t lut_groups(int64_t K);
int64_t lut_table_bytes(int64_t K);
int64_t lut_weight_bytes(int64_t M, int64_t K);

struct TernaryLutMat {
  const uint8_t* data;  // [lut_weight_bytes(M, K)] TL3 records, see above
  const float* scales;  // as TernaryMat (kScaleTensor: [1], kScaleRow: [>= M], kScaleBlock: [Mp16/16, K/256, 16])
  int64_t M;
  int64_t K;            // any K >= 1; kScaleBlock needs K % 256 == 0
  int32_t scale_mode;
};

// Builds the activation tables of tokens [b0, b1) into tables[b * lut_table_bytes(a.K)].
// A table depends only on its own block's activations, so a caller may build a range of whole
// blocks by passing a QActs view (q + 256*j0, K' = columns of those blocks) and tables + 64*86*j0.
using ternary_lut_build_fn = void (*)(const QActs& a, int64_t b0, int64_t b1,
                                      uint8_t* tables);  // [B, lut_table_bytes(K)]

// Same result contract as ternary_gemm_fn (bit-exact to it for the same trits and scales):
//   dot_j = Σ_{k in block j} trit[m,k] * q[b,k] (int32, exact; equal to ternary_gemm's dot_j - bsum[b,j])
//   tensor/row: y = ((float)dot * ws) / a.scale[b];  block: acc = 0.0f; acc = acc + (float)dot_j * d_j; y = acc / a.scale[b]
// for the rows of tiles [tile0, tile1) below M. a.sum and a.bsum are not read. y rows of those tiles
// are also used as scratch between blocks (int32 bits or float partial sums); rows >= M are untouched.
using ternary_lut_gemm_fn = void (*)(const TernaryLutMat& w, const QActs& a,
                                     const uint8_t* tables,  // [a.B, lut_table_bytes(K)]
                                     float* y,               // [B, ldy]
                                     int64_t ldy, int64_t tile0, int64_t tile1);

}  // namespace bitllm
