// BiLLM (arXiv 2402.04291) binarized weights with int8 activations: the GEMM on the BR16 tile layout
// and the per-token preparation of the activations (families.md §6). lib/quantize/billm.ts holds the
// packed planes (BillmMatrix); lib/kernels/billm.ts packs them into BR16 (packBillmTiles).
#pragma once
#include <cstdint>

#include "act_quant.h"

namespace bitllm {

constexpr int kBillmBlock = 128;  // columns per block (the quantizer's block: one salient set, 8 scalars)
constexpr int kBillmScalars = 8;  // fp16 per row per block
constexpr int kBillmRows = 16;    // rows per tile
constexpr int kBillmGroups = kBillmBlock / 4;  // 4-column groups per block

// BR16: rows in tiles of 16 (Mp = round_up(M, 16); rows past M have zero bits and zero scalars).
// S_j = the salient columns of block j (nS_j of them, ascending), ng_j = ceil(nS_j / 4).
// Tile t occupies bytes [t * tile_bytes, (t+1) * tile_bytes); block j of a tile starts at boff[j]:
//   sig[32]  u64  word g, bit 4r + i = sign of (row r, column 128j + 4g + i) of a non-salient column:
//                 1 = +1, 0 = -1; 0 at salient columns
//   grp[32]  u64  word g, bit 4r + i = group of (row r, column 128j + 4g + i): 1 = B (sparse), 0 = A;
//                 0 at salient columns
//   s1[ng]   u64  word g, bit 4r + i = first-order sign s1 of row r at the (4g + i)-th salient column
//   res[ng]  u64  word g, bit 4r + i = second-order sign s2 of row r at the (4g + i)-th salient column
//                 (s1 / res bits past nS_j are 0; 1 = +1)
//   sc[8][16] fp16  sc[l][r] = scalar l of row r: (a1, a2, mu1, mu2, aA, muA, aB, muB)
// boff[0] = 0, boff[j+1] = boff[j] + 768 + 16 * ng_j, tile_bytes = boff[nb]. Every record is 8-byte
// aligned relative to the tile start. A 64-bit word read as a k-mask selects, in one 64-byte vector of
// 16 int32 lanes x 4 bytes, exactly the bytes (row r, column 4g + i): the vpdpbusd operand layout of
// T2R16 (DESIGN.md §3.2), so each lane accumulates one row.
struct BillmMat {
  const uint8_t* data;     // [Mp/16, tile_bytes] BR16
  const int32_t* boff;     // [nb + 1] block offsets inside a tile, boff[nb] = tile_bytes
  const int32_t* ngroups;  // [nb] ng_j
  int64_t M;
  int64_t K;               // K % 128 == 0
};

// Prepared activations of B tokens (billm_prep from the int8 codes q and the salient mask):
//   qs[b, j, i]     = q[b, c_i] for the i-th salient column c_i of block j (i < nS_j), 0 for i >= nS_j
//   ssum[b, j]      = Σ_{k in S_j} q[b, k];   bsum[b, j] = Σ_{k in block j} q[b, k]
struct BillmActs {
  const int8_t* q;      // [B, ldq]
  const float* scale;   // [B]
  const int8_t* qs;     // [B, nb, 128]
  const int32_t* ssum;  // [B, nb]
  const int32_t* bsum;  // [B, nb]
  int64_t B;
  int64_t ldq;
};

using billm_prep_fn = void (*)(const uint8_t* salient,  // [K/8] bit k (LSB first) = column k salient
                               int64_t K, const int8_t* q,  // [B, ldq]
                               int64_t ldq, int64_t B,
                               int8_t* qs,      // [B, K/128, 128]
                               int32_t* ssum,   // [B, K/128]
                               int32_t* bsum);  // [B, K/128]

// billm_gemm: Y[b, m] for the rows of tiles [tile0, tile1) (rows >= M not written), tokens b < a.B.
// Per row m and block j, with q = a.q[b, k] over the columns k of block j, σ / G = the row's sig / grp
// bits, s1 / s2 = its s1 / res bits, qs = a.qs[b, j, :] (int32, exact: every |sum| <= 128 * 128):
//   T = Σ_{σ=1} q        PB = Σ_{G=1, σ=1} q        GB = Σ_{G=1} q
//   PS = Σ_{i: s1 bit i = 1} qs[i]        PR = Σ_{i: s2 bit i = 1} qs[i]
//   SS = ssum[b, j], Q = bsum[b, j];  PA = T - PB;  NA = Q - SS - GB
//   n[0..7] = { 2PS - SS, 2PR - SS, SS, SS, 2PA - NA, NA, 2PB - GB, GB }     (int32)
//   f[0..7] = fp16 -> float of the row's scalars of block j
//   p[l] = (float)n[l] * f[l]                                  (l = 0..7, one multiply each)
//   p[l] = p[l] + p[l + 4] (l < 4);  p[l] = p[l] + p[l + 2] (l < 2);  t = p[0] + p[1]
//   acc = acc + t                       (acc = 0.0f before block 0, blocks j = 0, 1, ... in order)
// and y[b * ldy + m] = acc / a.scale[b]. So y = (Σ_k w(m,k)·q[b,k]) / s[b] with w the BiLLM value
// (salient a1·s1 + a2·s2 + mu1 + mu2, group A aA·s + muA, group B aB·s + muB) when sig / grp are 0 at
// salient columns (packBillmTiles). Separate IEEE ops, no FMA: every variant and the TypeScript
// reference (lib/reference/billm.ts refBillmGemm, on the unpacked planes) are bit-exact for any bits
// and finite scalars.
using billm_gemm_fn = void (*)(const BillmMat& w, const BillmActs& a,
                               float* y,  // [B, ldy]
                               int64_t ldy, int64_t tile0, int64_t tile1);

constexpr int64_t billm_block_bytes(int32_t ngroups) { return 768 + 16 * static_cast<int64_t>(ngroups); }

// nS_j: the salient columns of block j in the mask (bit k of byte k >> 3, LSB first).
inline int billm_block_salient(const uint8_t* salient, int64_t j) {
  int c = 0;
  for (int i = 0; i < kBillmBlock / 8; ++i) c += __builtin_popcount(salient[(kBillmBlock / 8) * j + i]);
  return c;
}

}  // namespace bitllm
