// Dense q4 family: 4-bit weights in the Q4R16 layout for embeddings and the lm_head (included by
// dense.h; the variants live in dense_q4_{scalar,avx2,avx512,neon,neondot}.cpp).
#pragma once
#include <cstdint>

#include "act_quant.h"

namespace bitllm {

struct KernelTable;
struct CpuFeatures;

// ---- Q4R16: 16 output rows per tile, K % 32 == 0, nb = K/32 blocks per row ----
// One 288-byte record per (tile t, block j), at byte offset (t * nb + j) * 288:
//   uint8  qs[4][64]  at 0:    chunk c, byte 64c + 4r + i (r = row 16t + r, i = 0..3):
//                                bits 3:0 = u(row, k = 32j + 4c + i)        (group c)
//                                bits 7:4 = u(row, k = 32j + 16 + 4c + i)   (group c + 4)
//   uint16 d[16]      at 256:  fp16 scale of row 16t + r for block j
// u in [0, 15] is the offset code: the weight is d * (u - 8). Per row and block this is exactly a
// GGUF Q4_0 block (same nibble order: low nibbles k 0..15, high nibbles k 16..31; same 18 bytes per
// 32 weights, 4.5 bits), regrouped so that a chunk's low (or high) nibbles are, per 32-bit lane r, the
// 4 codes of row r: the operand of vpdpbusd / pmaddubsw / sdot against 4 activation bytes broadcast to
// every lane, after one AND (low) or one shift + AND (high). Rows past M hold u = 8 and d = 0.
// Records are 32-byte aligned when data is (no alignment is required).
constexpr int kQ4Rows = 16;
constexpr int kQ4Block = 32;
constexpr int kQ4ChunkBytes = 64;                    // 16 rows x 4 bytes = 2 groups of codes
constexpr int kQ4BlockQsBytes = 256;                 // 4 chunks
constexpr int kQ4BlockBytes = kQ4BlockQsBytes + 32;  // + 16 fp16 scales = one record

static inline int64_t q4_tiles(int64_t M) { return (M + kQ4Rows - 1) / kQ4Rows; }
static inline int64_t q4_tile_bytes(int64_t K) { return (K / kQ4Block) * kQ4BlockBytes; }
static inline int64_t q4_bytes(int64_t M, int64_t K) { return q4_tiles(M) * q4_tile_bytes(K); }

struct Q4Mat {
  const uint8_t* data;  // [Mp/16, K/32, 288] Q4R16
  int64_t M;
  int64_t K;  // K % 32 == 0
};

// Y[b, m] for m in row tiles [tile0, tile1) (rows >= M are not written), b < a.B, with per-token int8
// activations (QActs from act_quant_i8; a.sum and a.bsum are not used):
//   dot_j = Σ_{k in block j} (u[m,k] - 8) * q[b,k]                  (int32, exact: |dot_j| <= 32768)
//   acc = 0.0f; for j in order: acc = acc + (float)dot_j * d[m,j];   y = acc / a.scale[b]
// d[m,j] is the fp16 scale widened to float. Separate IEEE ops, no FMA: bit-exact across variants.
// bsum32[b * nb + j] = Σ_{k in block j} q[b,k] (q4_act_block_sums): SIMD variants multiply the
// unsigned codes u and subtract 8 * bsum32 (exact in int32); the scalar variant does not read it.
using q4_gemm_fn = void (*)(const Q4Mat& w, const QActs& a,
                            const int32_t* bsum32,  // [a.B, K/32]
                            float* y,               // [B, ldy]
                            int64_t ldy, int64_t tile0, int64_t tile1);

// Dequantized rows: out[i, k] = d[rows[i], k/32] * (float)(u[rows[i], k] - 8) (one multiply, exact).
// rows are validated by the caller.
using q4_get_rows_fn = void (*)(const Q4Mat& w,
                                const int32_t* rows,  // [n]
                                int64_t n,
                                float* out,  // [n, ldo]
                                int64_t ldo);

// Per-32-block activation sums for the q4 GEMM: bsum32[b * K/32 + j] = Σ_{k in block j} q[b, k].
static inline void q4_act_block_sums(const int8_t* q,  // [B, ldq]
                                     int64_t ldq, int64_t B, int64_t K,
                                     int32_t* bsum32) {  // [B, K/32]
  const int64_t nb = K / kQ4Block;
  for (int64_t b = 0; b < B; ++b)
    for (int64_t j = 0; j < nb; ++j) {
      const int8_t* p = q + b * ldq + j * kQ4Block;
      int32_t s = 0;
      for (int i = 0; i < kQ4Block; ++i) s += p[i];
      bsum32[b * nb + j] = s;
    }
}

// Each ISA's q4 variant fills its entries; called from the matching fill_dense_* (dense_*.cpp).
void fill_dense_q4_scalar(KernelTable& t, const CpuFeatures& f);
void fill_dense_q4_avx2(KernelTable& t, const CpuFeatures& f);
void fill_dense_q4_avx512(KernelTable& t, const CpuFeatures& f);
void fill_dense_q4_neon(KernelTable& t, const CpuFeatures& f);

}  // namespace bitllm
