// Dense f16 and q8 GEMM for embeddings and the lm_head.
#pragma once
#include <cstdint>
#include <cstring>

#include "act_quant.h"
#include "dense_q4.h"  // the q4 (Q4R16) family

namespace bitllm {

// ---- f16: weights in the GGUF layout, row-major [M, K] IEEE half, float activations ----
// Y[b, m] = Σ_k f32(w[m,k]) * x[b,k] for m in [m0, m1), b < B. Float accumulation (FMA allowed); the
// summation order is the variant's own, so variants agree to a bound, not bit-exactly. In every
// variant a product passes through at most f16_chain_slack(K) = ceil(K/8) + 24 roundings on its way
// to y (scalar: 8 strided partial sums, then a 3-level tree; SIMD: per-(row, token) accumulators of
// >= 8 lanes in total, a masked or zero-padded tail step, then a horizontal tree), which gives the
// documented bound, with a factor 2 of margin over the first-order recursive-summation bound:
//   |y - Σ_k w x (exact)| <= f16_chain_slack(K) * 2^-23 * Σ_k |w x| + K * 2^-149
// (the last term covers products that underflow to subnormals). ctest and the TypeScript tests
// check every variant against a float64 evaluation with this bound (lib/reference/dense.ts).
// Inputs are finite; K >= 1 has no alignment requirement; x and y do not alias w.
using f16_gemm_fn = void (*)(const uint16_t* w,  // [M, ldw] half
                             int64_t ldw, int64_t M, int64_t K,
                             const float* x,  // [B, ldx]
                             int64_t ldx, int64_t B,
                             float* y,  // [B, ldy]
                             int64_t ldy, int64_t m0, int64_t m1);

// The helpers below have internal linkage (static): this header is compiled into translation units
// with different ISA flags, and a shared out-of-line copy could carry AVX-512 code into scalar callers.

// Roundings a product may pass through in the f16 GEMM (see above).
static constexpr int64_t f16_chain_slack(int64_t K) { return (K + 7) / 8 + 24; }

// Exact IEEE half -> float (subnormal halves become normal floats; Inf and NaN keep their payload).
static inline float half_to_f32(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  const uint32_t exp = (h >> 10) & 0x1fu, mant = h & 0x3ffu;
  float f;
  if (exp == 0) {
    f = static_cast<float>(mant) * 5.9604644775390625e-8f;  // mant * 2^-24, exact
    return sign ? -f : f;
  }
  const uint32_t bits = sign | (exp == 0x1f ? 0x7f800000u | (mant << 13) : ((exp + 112) << 23) | (mant << 13));
  std::memcpy(&f, &bits, 4);
  return f;
}

// Row lookup (embeddings): out[i, :] = f32(w[rows[i], :]). rows are validated by the caller.
// Half -> float is exact, so every variant is bit-exact for non-NaN halves (a NaN stays a NaN, but
// F16C / FCVTL quieten signalling NaNs where the scalar conversion keeps the payload as is).
using f16_get_rows_fn = void (*)(const uint16_t* w,  // [M, ldw]
                                 int64_t ldw, int64_t K,
                                 const int32_t* rows,  // [n]
                                 int64_t n,
                                 float* out,  // [n, ldo]
                                 int64_t ldo);

// ---- f16t: the F16 lm_head in F16T32 tiles (k-major), repacked from the GGUF rows at load ----
// 32 output rows per tile; tile t holds w[32t + r, k] at element t * K * 32 + k * 32 + r (rows past M are
// zero). Each k step reads one 64-byte line of 32 rows, so every token of a batch multiplies the same
// converted weights (one broadcast activation per k and token) and the outputs of a tile are stored as
// vectors. Measured on Zen 5 (DESIGN.md §3.4), 128256 x 2560 from DRAM, 2 threads: B = 8 in 16 ms against
// 26-31 ms for the row-major GEMM, B = 1 at the same read bandwidth.
// Summation, the same in every variant and for every B, token grouping and tile range (so a token's
// outputs are bit-identical however it is batched):
//   for each chunk c of kF16TChunk columns (the last one shorter): s = 0; for k in c, in order: s += w x
//   (FMA allowed); then tot = tot + s (tot starts at 0); y = tot.
// A product passes through <= kF16TChunk + ceil(K / kF16TChunk) <= f16_chain_slack(K) roundings, so the
// f16 bound above holds as it is. Inputs are finite; K >= 1; x and y do not alias w.
constexpr int kF16TRows = 32;
constexpr int kF16TChunk = 16;
static inline int64_t f16t_tiles(int64_t M) { return (M + kF16TRows - 1) / kF16TRows; }
static inline int64_t f16t_elems(int64_t M, int64_t K) { return f16t_tiles(M) * K * kF16TRows; }

// Y[b, m] for m in the rows of tiles [tile0, tile1) below M (rows >= M are not written), b < B.
using f16t_gemm_fn = void (*)(const uint16_t* w,  // [tiles, K, 32] half
                              int64_t M, int64_t K,
                              const float* x,  // [B, ldx]
                              int64_t ldx, int64_t B,
                              float* y,  // [B, ldy]
                              int64_t ldy, int64_t tile0, int64_t tile1);
// Row lookup: out[i, :] = f32(w[rows[i], :]) (exact, as f16_get_rows). rows are validated by the caller.
using f16t_get_rows_fn = void (*)(const uint16_t* w, int64_t K, const int32_t* rows, int64_t n, float* out, int64_t ldo);

// Scalar row lookup shared by the variants (a gather of one half per 64-byte line; embedding lookups are
// a few rows a step).
static inline void f16t_get_rows_any(const uint16_t* w, int64_t K, const int32_t* rows, int64_t n, float* out,
                                     int64_t ldo) {
  for (int64_t i = 0; i < n; ++i) {
    const int64_t m = rows[i];
    const uint16_t* p = w + (m / kF16TRows) * K * kF16TRows + m % kF16TRows;
    float* o = out + i * ldo;
    for (int64_t k = 0; k < K; ++k) o[k] = half_to_f32(p[k * kF16TRows]);
  }
}

// ---- q8: Q8R16 internal layout, repacked from GGUF Q8_0 (blocks of 32: fp16 d, int8 qs[32]) ----
// 16 output rows per tile, K % 32 == 0, nb = K/32 blocks per row. One 544-byte record per (tile t,
// block j), at byte offset (t * nb + j) * 544:
//   int8   qs[8][64]  at 0:    group g (k = 32j + 4g .. +3): byte 64g + 4r + i = code(row 16t + r, k = 32j + 4g + i)
//   uint16 d[16]      at 512:  fp16 scale of row 16t + r for block j
// A group is, per 32-bit lane r, the 4 codes of row r: the operand shape of vpdpbusd / sdot against 4
// activation bytes broadcast to every lane. Rows past M have codes 0 and d 0. Codes are any int8
// (-128 included, as Q8_0 files allow). Records are 32-byte aligned (not 64) when data is.
// Layout choices, measured on Zen 4 with the 128256 x 2560 head (DESIGN.md §3.4; the GEMV is bound
// by weight bytes): 544 bytes per 16 x 32 weights is exactly GGUF Q8_0's 34 per 32. The first draft
// (640-byte records: float d[16] + int32 Σcodes[16] + qs) was 18 % more bytes; the AVX-512 kernel
// instead recomputes 128 Σ codes with one vpdpbusd per group, shared by all tokens. Keeping each
// record's scales next to its codes (one sequential stream) ran at the plain read bandwidth, while
// all scales of a tile after all its codes (two streams) ran about 30 % slower single-threaded.
constexpr int kQ8Rows = 16;
constexpr int kQ8Block = 32;
constexpr int kQ8GroupBytes = 64;                    // 16 rows x 4 codes
constexpr int kQ8BlockQsBytes = 512;                 // 8 groups
constexpr int kQ8BlockBytes = kQ8BlockQsBytes + 32;  // + 16 fp16 scales = one record

static inline int64_t q8_tiles(int64_t M) { return (M + kQ8Rows - 1) / kQ8Rows; }
static inline int64_t q8_tile_bytes(int64_t K) { return (K / kQ8Block) * kQ8BlockBytes; }
static inline int64_t q8_bytes(int64_t M, int64_t K) { return q8_tiles(M) * q8_tile_bytes(K); }

struct Q8Mat {
  const uint8_t* data;  // [Mp/16, K/32, 544] Q8R16
  int64_t M;
  int64_t K;  // K % 32 == 0
};

// Y[b, m] for m in row tiles [tile0, tile1) (rows >= M are not written), b < a.B, with per-token int8
// activations (QActs from act_quant_i8; a.sum and a.bsum are not used):
//   dot_j = Σ_{k in block j} code[m,k] * q[b,k]                     (int32, exact)
//   acc = 0.0f; for j in order: acc = acc + (float)dot_j * d[m,j];   y = acc / a.scale[b]
// d[m,j] is the fp16 scale widened to float. Separate IEEE ops, no FMA: bit-exact across variants.
using q8_gemm_fn = void (*)(const Q8Mat& w, const QActs& a,
                            float* y,  // [B, ldy]
                            int64_t ldy, int64_t tile0, int64_t tile1);

// Dequantized rows: out[i, k] = d[rows[i], k/32] * (float)code[rows[i], k] (one multiply, exact: an
// fp16 times an int8 fits a float mantissa). rows are validated by the caller.
using q8_get_rows_fn = void (*)(const Q8Mat& w,
                                const int32_t* rows,  // [n]
                                int64_t n,
                                float* out,  // [n, ldo]
                                int64_t ldo);

}  // namespace bitllm
