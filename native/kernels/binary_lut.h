// Binary (+-1) weight GEMM on float activations by 16-entry lookup tables: the exact float ("W1A16")
// path of FBI-LLM and OneBit (formats.md §5), T-MAC style. The activations are never rounded to
// integers: the input is u = x ⊙ col_scale (binary_prep's xs: FBI-LLM's α, OneBit's g) as floats.
#pragma once
#include <cstdint>

namespace bitllm {

// B1L64: 64-row blocks x 32 k per 256-byte chunk, 1 bit per weight.
//   chunk (block t, kc) at byte offset (t * (K/32) + kc) * 256
//   dword r (bytes [4r, 4r+4), little-endian) = row 64t + r: bit i <-> column k = 32kc + i;
//   bit 1 = +1, bit 0 = -1 (B1R16 / Q1_0 polarity). Rows past M are zero bits and never written.
// So the chunk is four 16-row quarters (bytes [64q, 64q+64) = rows 16q..16q+15), each a 512-bit
// vector whose dword lane r holds row 16q+r's 32 signs. Nibble j of a dword (bits 4j..4j+3) is the
// 4-column group g = 8kc + j (columns 4g..4g+3, bit i of the nibble <-> column 4g + i):
//   (lane >> 4j) is a `vpermps` / `_mm512_permutexvar_ps` index (it reads bits 3:0 only), so one
//   shift + one lookup in group g's 16-float table gives 16 rows' partial sums over 4 columns.
// Each quarter is exactly a B1R16 chunk's 16 rows, one 32-bit half of each row's uint64, so B1R16
// converts with a dword shuffle (runtime/repack_binary_lut.h). K % 32 == 0; M is padded to 64 so
// AVX-512 runs four quarters (64 rows) per pass and loads each table vector once per 64 rows.
constexpr int kB1lRows = 64;
constexpr int kB1lKStep = 32;
constexpr int kB1lChunkBytes = 256;
constexpr int kB1lGroupK = 4;         // columns per lookup table
constexpr int kB1lTableFloats = 16;   // entries per table

static inline int64_t b1l_blocks(int64_t M) { return (M + kB1lRows - 1) / kB1lRows; }
static inline int64_t b1l_bytes(int64_t M, int64_t K) { return b1l_blocks(M) * kB1lRows * K / 8; }
static inline int64_t b1l_groups(int64_t K) { return K / kB1lGroupK; }
// Floats of one token's tables: K/4 groups x 16 entries (64 bytes per group, 16 KB per 1024 columns).
static inline int64_t b1l_table_floats(int64_t K) { return b1l_groups(K) * kB1lTableFloats; }

struct BinaryLutMat {
  const uint8_t* bits;  // [Mp/64, K/32, 256] B1L64, Mp = round_up(M, 64)
  int64_t M;
  int64_t K;  // K % 32 == 0
};

// Tables, built once per token and call, for groups [g0, g1) of every token b < B:
//   tables[b * ldt + 16 g + j] = T_g[j] = ((σ0·u0 + σ1·u1) + σ2·u2) + σ3·u3
// with u_i = u[b * ldu + 4g + i], σ_i = (bit i of j) ? +1 : -1, each + one IEEE float add in exactly
// this association (σ·u is exact: a sign flip). All variants produce bit-identical tables (a variant
// may compute σ·u + a as fma(σ, u, a), which rounds once, like the add). Exact symmetry:
// T_g[j ^ 15] = -T_g[j] (round-to-nearest is odd; tested), so a kernel may look up half a table.
using binary_lut_build_fn = void (*)(const float* u,  // [B, ldu]
                                     int64_t ldu, int64_t B, int64_t K,
                                     float* tables,  // [B, ldt], ldt >= b1l_table_floats(K)
                                     int64_t ldt, int64_t g0, int64_t g1);

// y[b, m] for blocks [blk0, blk1) and tokens b < B, rows m < M (rows >= M are not written), with
// nib(m, g) = bits 4g..4g+3 of row m (bit i <-> column 4g + i):
//   e = 0.0f;  for g = 0, 2, 4, ... < K/4:  e = e + T_g[nib(m, g)]      (two chains of K/8 float
//   o = 0.0f;  for g = 1, 3, 5, ... < K/4:  o = o + T_g[nib(m, g)]       adds, in ascending g)
//   acc = e + o
//   y = acc;  if (row_scale) y = y * row_scale[m];  if (tok_bias) y = y + tok_bias[b]
// Separate IEEE ops: every variant and the TypeScript reference are bit-exact (the SIMD kernels keep
// the rows in the lanes, so each (row, token) sums in exactly this order). A chain add o + p may be
// issued as fma(p, 1.0f, o): p·1 is exact, so it rounds once, exactly like the add (the x86 kernels
// do so for the odd chain to use the FMA pipes); the epilogue has no FMA.
// Bound (finite inputs, no overflow; exact = Σ_k s(m,k)·u[b,k] in real arithmetic, rs = row_scale[m]
// or 1, tb = tok_bias[b] or 0, γ(n) = n·2⁻²⁴ / (1 − n·2⁻²⁴)): each u_k passes through at most 3
// adds in its table entry and K/8 rounding adds after it (the first add of a chain is exact), and
// float sums of subnormals are exact, so
//   |acc − exact| ≤ γ(K/8 + 3)·Σ_k |u[b,k]|
//   |y − (exact·rs + tb)| ≤ γ(K/8 + 4)·|rs|·Σ_k |u[b,k]| + 2⁻²⁴·(2·|exact·rs| + |tb|) + 2⁻¹⁴⁹
// (the second line adds the product's rounding, subnormal results included, and the bias add).
// test/binary-lut.test.ts checks it against a float64 evaluation, next to the bit-exact comparisons.
// For FBI-LLM: u = α ⊙ x, tok_bias = Σβx (binary_prep), row_scale null; for OneBit: u = g ⊙ x,
// row_scale = h, then the LayerNorm.
using binary_lut_gemm_fn = void (*)(const BinaryLutMat& w,
                                    const float* tables,  // [B, ldt] from binary_lut_build
                                    int64_t ldt, int64_t B,
                                    const float* row_scale,  // [M] or nullptr
                                    const float* tok_bias,   // [B] or nullptr
                                    float* y,                // [B, ldy]
                                    int64_t ldy, int64_t blk0, int64_t blk1);

}  // namespace bitllm
