// Float ops of the transformer block around the quantized GEMMs: norms, RoPE, attention over an f16
// KV cache, gated activations. Float results: variants agree within a documented bound, not bit-exactly
// (except where noted). Variants: ops_scalar.cpp (the C++ reference), ops_avx2.cpp (AVX2 + FMA + F16C),
// ops_avx512.cpp, ops_neon.cpp (ARMv8.0). Every kernel touches only the rows it is given, so results
// do not depend on how the caller splits work over threads.
//
// Shared numerics:
//   exp: scalar uses std::exp (float, < 1 ulp); SIMD variants use the same vector exp: Cody-Waite
//        reduction x = n ln2 + r, |r| <= ln2/2, degree-7 Taylor polynomial in r (truncation < 1e-8
//        relative), times 2^n; <= 3 ulp on [-87, 88]. Outside it the vector exp returns 0 (x < -87) or
//        +Inf (x > 88): in softmax (arguments <= 0) a dropped term is < 1.7e-38 of the largest term; in
//        silu the change is < 1e-36 |up|.
// Bounds (checked by native/tests/test_ops.cpp against a double evaluation, and by test/ops.test.ts
// against lib/reference/ops.ts, u = 2^-24):
//   rmsnorm       |y - y_exact| <= 4u |y_exact| + 2^-149           (while 1/rms is a normal float: rms < 8e37)
//   rope_neox     |y - y_exact| <= 8u (|x_i| + |x_j|)             (y_exact: exact rotation by the float angle)
//   kv_store_f16  bit-exact (IEEE round to nearest even)
//   kv_store_q8   bit-exact across variants (the Q8_0-like quantization defined below)
//   attention_q8  attention_f16's bound over the dequantized cache values (below)
//   kv_store_q3   bit-exact across variants (BitNet a4.8's 3-bit quantization defined below)
//   attention_q3  attention_f16's bound over the dequantized cache values (below)
//   glu_relu2     |y - y_exact| <= 2u |y_exact| + 1e-36 |up| + 2^-149   (while gate^2 is finite)
//   glu_silu      |y - y_exact| <= 8u |y_exact| + 1e-36 |up| + 2^-149   (exp(-g) overflows below g = -88)
//   attention_f16 |o - o_exact| <= max|v| u (4 S (hd + 8) + L / 2 + 128),  L = pos + 1 attended rows,
//                 S = max_t |scale| Σ_d |q_d k_td|, max|v| over the attended V rows of that kv head.
//                 First-order worst case: a score carries <= (hd + 8) u S of rounding, which moves the
//                 normalized weights by <= 4x that (1-norm); the Σ p and Σ p v chains are <= L/8 + 24
//                 long; exp, half->float (exact) and the final scaling add a few u.
#pragma once
#include <cmath>
#include <cstdint>
#include <cstring>

namespace bitllm {

// y[b,:n] = x[b,:n] * s_b * w   (w == nullptr: no weight), s_b = 1 / sqrt(mean(x[b,:n]^2) + eps).
// Σ x^2 is accumulated in double (a float square overflows past |x| = 1.8e19 and a long float sum
// drops low bits); s_b = float(1 / sqrt(ss / n + eps)) is evaluated in double and rounded once; then
// y = (x * s_b) * w in float, so every variant is bit-exact unless the double sums round s_b apart.
// y may alias x exactly (in place); no partial overlap. eps >= 0.
using rmsnorm_fn = void (*)(const float* x,  // [B, ld]
                            const float* w,  // [n] or nullptr
                            float* y,        // [B, ld]
                            int64_t B, int64_t n, int64_t ld, float eps);

// NEOX rotary embedding in place on x[b, h, :] for heads h < n_heads, rotating pairs (i, i + n_rot/2)
// for i < n_rot/2 (n_rot even, <= head_dim) by theta = float(pos[b]) * inv_freq[i], in float, with
// inv_freq[i] = float(pow(double(theta_base), -2i / n_rot)) (powf as one rounding of the double pow,
// computed once per call; llama.cpp's running product theta_scale^i differs from it by a few ulp). cos/sin(theta) are evaluated in double and rounded to float (same values in every
// variant); then x_i' = x_i c - x_j s, x_j' = x_i s + x_j c in float without FMA: bit-exact across
// variants. Dims past n_rot are unchanged. pos[b] >= 0 and < 2^24 (exact as a float).
using rope_neox_fn = void (*)(float* x,            // [B, n_heads, head_dim] (row stride ld per token)
                              const int32_t* pos,  // [B]
                              int64_t B, int64_t n_heads, int64_t head_dim, int64_t ld, int64_t n_rot,
                              float theta_base);

// The prebuilt binaries must load on glibc 2.28 (docs/shipping.md): glibc 2.29 added a new default
// version of pow (the same results; only the SVID error-handling wrapper went away), so bind the
// version every glibc has. Every translation unit that calls std::pow includes this header.
#if defined(__GLIBC__) && defined(__x86_64__)
__asm__(".symver pow,pow@GLIBC_2.2.5");
#elif defined(__GLIBC__) && defined(__aarch64__)
__asm__(".symver pow,pow@GLIBC_2.17");
#endif

// The RoPE angle inputs every variant shares (static: each ISA translation unit keeps its own copy,
// so no out-of-line copy built with wider ISA flags can be picked by the linker for another).
// inv_freq[i] for pair indices i0 .. i0+n-1.
static inline void rope_inv_freq(float theta_base, int64_t n_rot, int64_t i0, int64_t n,
                                 float* inv_freq) {  // [n]
  for (int64_t i = 0; i < n; ++i)
    inv_freq[i] = static_cast<float>(
        std::pow(static_cast<double>(theta_base), -2.0 * static_cast<double>(i0 + i) / static_cast<double>(n_rot)));
}
// cos/sin of the float angles float(pos) * inv_freq[i], rounded to float.
static inline void rope_cos_sin(int32_t pos, const float* inv_freq,  // [n]
                                int64_t n, float* c, float* s) {     // [n], [n]
  const float p = static_cast<float>(pos);
  for (int64_t i = 0; i < n; ++i) {
    const double theta = static_cast<double>(p * inv_freq[i]);
    c[i] = static_cast<float>(std::cos(theta));
    s[i] = static_cast<float>(std::sin(theta));
  }
}
// Pairs handled per chunk (stack buffers of this many floats).
constexpr int64_t kRopeChunk = 64;

// rope_inv_freq + rope_cos_sin for one position, memoized per thread (static: one memo per ISA translation
// unit). A forward's layers, and each layer's q and k calls, rotate the same positions, and the double
// pow/cos/sin cost ~3 us per call: 60 calls per decoded token at the 2B-4T shape, 0.13 ms of a token.
// A hit returns the floats the same computation returned, so results are unchanged. kRopeMemo slots, by
// position: a decode step's streams and a prefill chunk's 64 consecutive positions stay resident.
constexpr int kRopeMemo = 64;
struct RopeMemoSlot {
  uint32_t theta_bits;
  int32_t pos;
  int64_t n_rot, i0, n;  // n == 0: empty
  float c[kRopeChunk], s[kRopeChunk];
};
static inline void rope_angles(float theta_base, int64_t n_rot, int64_t i0, int64_t n, int32_t pos,
                               float* c, float* s) {  // [n], [n]
  static thread_local RopeMemoSlot memo[kRopeMemo];
  uint32_t tb;
  std::memcpy(&tb, &theta_base, sizeof tb);
  RopeMemoSlot& e = memo[static_cast<uint32_t>(pos) % kRopeMemo];
  if (e.n != n || e.pos != pos || e.theta_bits != tb || e.n_rot != n_rot || e.i0 != i0) {
    float inv_freq[kRopeChunk];
    rope_inv_freq(theta_base, n_rot, i0, n, inv_freq);
    rope_cos_sin(pos, inv_freq, n, e.c, e.s);
    e.theta_bits = tb;
    e.pos = pos;
    e.n_rot = n_rot;
    e.i0 = i0;
    e.n = n;
  }
  std::memcpy(c, e.c, static_cast<size_t>(n) * sizeof(float));
  std::memcpy(s, e.s, static_cast<size_t>(n) * sizeof(float));
}

// Stores tokens' K or V rows as IEEE half (round to nearest even; |x| >= 65520 becomes ±Inf) into a
// cache laid out [n_kv_heads, capacity, head_dim]: cache[h, pos[b], :] = f16(x[b, h, :]).
// 0 <= pos[b] < capacity. Tokens are stored in order b = 0..B-1 (a repeated position keeps the last).
using kv_store_f16_fn = void (*)(const float* x,      // [B, n_kv_heads * head_dim] (row stride ld)
                                 const int32_t* pos,  // [B]
                                 uint16_t* cache,     // [n_kv_heads, capacity, head_dim]
                                 int64_t B, int64_t n_kv_heads, int64_t head_dim, int64_t ld, int64_t capacity);

// Attention work layout: the query heads of one kv head are processed together (up to
// kAttnMaxGroup at a time), so each K/V row is converted from half once per query token for all of
// them; V is accumulated per block of kAttnBlock positions before it is added into the output row
// (keeps the summation chains short). The scratch holds the scores [group, n_ctx] and, for the
// scalar variant, a converted block of rows and one row accumulator.
constexpr int64_t kAttnMaxGroup = 8;
constexpr int64_t kAttnBlock = 16;

// Query rows a variant may attend together in one pass over the cache (the x86 variants: each K/V tile is
// read once from memory for up to this many of a call's rows, which all attend the same cache; a row's
// arithmetic is the same as alone).
constexpr int64_t kAttnRows = 4;

// Scratch floats one attention call needs: group = n_heads / n_kv_heads, n_ctx = max_b pos[b] + 1.
constexpr int64_t attention_scratch_floats(int64_t group, int64_t head_dim, int64_t n_ctx) {
  return kAttnRows * (group < kAttnMaxGroup ? group : kAttnMaxGroup) * n_ctx + (kAttnBlock + 1) * head_dim + 16;
}

// Causal GQA attention for query heads [h0, h1) of B query tokens against an f16 cache:
//   query b at position pos[b] attends to cache positions 0..pos[b] (inclusive), 0 <= pos[b] < capacity;
//   kv head of query head h = h / (n_heads / n_kv_heads)  (n_heads % n_kv_heads == 0);
//   s_t = scale * (q[b,h,:] · k[t,:]) in float; p_t = exp(s_t - max_t s_t); out[b,h,:] = Σ_t p_t v[t,:] / Σ_t p_t.
// The cached rows must be finite. out must not overlap q or the caches.
// scratch: attention_scratch_floats(n_heads / n_kv_heads, head_dim, max_b pos[b] + 1) floats, owned by
// this call (one per concurrent call / thread).
using attention_f16_fn = void (*)(const float* q,         // [B, n_heads, head_dim] (row stride ldq)
                                  const uint16_t* k_cache,  // [n_kv_heads, capacity, head_dim]
                                  const uint16_t* v_cache,  // [n_kv_heads, capacity, head_dim]
                                  const int32_t* pos,       // [B]
                                  float* out,               // [B, n_heads, head_dim] (row stride ldo)
                                  int64_t B, int64_t n_heads, int64_t n_kv_heads, int64_t head_dim, int64_t capacity,
                                  int64_t ldq, int64_t ldo, float scale, int64_t h0, int64_t h1, float* scratch);

// q8 KV cache (GGUF Q8_0-like rows): a cache row of head_dim values (head_dim % 32 == 0) is
// head_dim / 32 blocks of kKvQ8BlockBytes bytes: {uint16 d (IEEE half bits, little-endian), int8 qs[32]}.
// Value i of a block is float(qs[i]) * float(d) (exact in float: 8 x 11 significant bits).
// Quantization of a block x[0, 32) (bit-exact across variants, for finite x):
//   amax = max_i |x_i|;  d = f16(amax / 127.0f) (float division, then round to nearest even half);
//   id = (float(d) != 0 ? 1.0f / float(d) : 0);  qs_i = clamp(rne(x_i * id), -127, 127)   (float ops).
// Round trip: |x - dequant(x)| <= 0.51 float(d) + 127 * 2^-25 (half a grid step, plus what the clamp
// cuts when f16(d) rounded down; the 2^-25 term only matters for subnormal d, amax < 7.8e-3).
// Rows with amax >= 65520 * 127 (d overflows the half range) store d = +Inf and qs = 0: the caller
// must keep |x| < 8.3e6 (the attention needs finite cached rows).
constexpr int64_t kKvQ8Block = 32;
constexpr int64_t kKvQ8BlockBytes = 34;
constexpr int64_t q8_row_bytes(int64_t head_dim) { return head_dim / kKvQ8Block * kKvQ8BlockBytes; }

// Stores tokens' K or V rows quantized (above) into cache[h, pos[b], :] (rows of q8_row_bytes bytes),
// cache laid out [n_kv_heads, capacity, q8_row_bytes(head_dim)]. Same contract as kv_store_f16
// otherwise (0 <= pos[b] < capacity; repeated position keeps the last). Bit-exact across variants.
using kv_store_q8_fn = void (*)(const float* x,      // [B, n_kv_heads * head_dim] (row stride ld)
                                const int32_t* pos,  // [B]
                                uint8_t* cache,      // [n_kv_heads, capacity, q8_row_bytes(head_dim)]
                                int64_t B, int64_t n_kv_heads, int64_t head_dim, int64_t ld, int64_t capacity);

// attention_f16 over q8 caches (head_dim % 32 == 0): the K/V rows are dequantized on the fly (exactly,
// see above) and everything else is attention_f16's computation. Bound: attention_f16's bound with
// k, v the dequantized values, i.e. against exact attention over the dequantized cache:
//   |o - o_exact(dequant K, dequant V)| <= max|v| u (4 S (hd + 8) + L / 2 + 128).
// (Against the unquantized float K/V the quantization error adds on top; test/ops.test.ts states the
// observed q8-vs-f16 difference.) Same scratch as attention_f16.
using attention_q8_fn = void (*)(const float* q,          // [B, n_heads, head_dim] (row stride ldq)
                                 const uint8_t* k_cache,  // [n_kv_heads, capacity, q8_row_bytes(head_dim)]
                                 const uint8_t* v_cache,  // [n_kv_heads, capacity, q8_row_bytes(head_dim)]
                                 const int32_t* pos,      // [B]
                                 float* out,              // [B, n_heads, head_dim] (row stride ldo)
                                 int64_t B, int64_t n_heads, int64_t n_kv_heads, int64_t head_dim, int64_t capacity,
                                 int64_t ldq, int64_t ldo, float scale, int64_t h0, int64_t h1, float* scratch);

// q3 KV cache (BitNet a4.8's 3-bit K/V; the numerics of train/evaluate.py kv_q3, which the trained
// models' perplexities were measured with): a cache row of head_dim values (head_dim % 32 == 0) is
// head_dim / 32 blocks of kKvQ3BlockBytes = 14 bytes: {uint16 d (IEEE half bits, little-endian),
// uint8 codes[12]}. codes holds 32 3-bit codes c_i = q_i + 4 in [0, 8) as one little-endian 96-bit
// string: c_i is bits [3i, 3i + 3) (byte 3i / 8, across a byte boundary for some i), so the 8 codes of
// values 8s .. 8s + 7 are the 24 bits [24s, 24s + 24). SIMD loads read them as one little-endian
// 32-bit word at code byte w_s = min(3s, 8) (never past the block): c_{8s+j} = (word >> (24s - 8 w_s + 3j)) & 7.
// Value i of a block is q_i * float(d) (exact in float: 3 x 11 significant bits).
// Quantization of a block x[0, 32) (bit-exact across variants and lib/reference, for finite x):
//   amax = max_i |x_i|;  d = f16(amax / 3.0f) (float division, then round to nearest even half);
//   q_i = (float(d) != 0 ? clamp(rne(x_i / float(d)), -4, 3) : 0)   (a float DIVISION per value, as the
//   trainer computes it, not a product with a reciprocal).
// Round trip: |x - dequant(x)| <= 0.5 float(d) + 2^-20 float(d) + 2^-23: half a grid step, plus the
// rounding of x / d, plus what the +3 / -4 clamps cut when f16 rounded d down (<= 3 * 2^-25 for a
// subnormal-half d, amax < 1.8e-4; below 2^-11 float(d) otherwise, inside the half step), or |x| itself
// when d = 0 (f32(amax / 3) <= 2^-25, so |x| <= 3 * 2^-25 (1 + 2^-24)). Blocks with
// f32(amax / 3) <= 2^-25 (all zeros among them) store d = 0 and codes 4 (value 0).
// Rows with f32(amax / 3) >= 65520 (amax >= 196560: d overflows the half range) store d = +Inf and codes 4
// (q = 0, since x / Inf = 0; the trainer's torch formula gives NaN there); their dequantized value
// 0 * Inf is NaN, so the caller must keep |x| < 196560 (the attention needs finite cached rows).
constexpr int64_t kKvQ3Block = 32;
constexpr int64_t kKvQ3BlockBytes = 14;
constexpr int64_t q3_row_bytes(int64_t head_dim) { return head_dim / kKvQ3Block * kKvQ3BlockBytes; }

// Stores tokens' K or V rows quantized (above) into cache[h, pos[b], :] (rows of q3_row_bytes bytes),
// cache laid out [n_kv_heads, capacity, q3_row_bytes(head_dim)]. Same contract as kv_store_f16
// otherwise (0 <= pos[b] < capacity; repeated position keeps the last). Bit-exact across variants.
using kv_store_q3_fn = void (*)(const float* x,      // [B, n_kv_heads * head_dim] (row stride ld)
                                const int32_t* pos,  // [B]
                                uint8_t* cache,      // [n_kv_heads, capacity, q3_row_bytes(head_dim)]
                                int64_t B, int64_t n_kv_heads, int64_t head_dim, int64_t ld, int64_t capacity);

// attention_f16 over q3 caches (head_dim % 32 == 0): the K/V rows are dequantized on the fly (exactly,
// q_i * float(d), see above) and everything else is attention_f16's computation. Bound: attention_f16's
// bound with k, v the dequantized values, i.e. against exact attention over the dequantized cache:
//   |o - o_exact(dequant K, dequant V)| <= max|v| u (4 S (hd + 8) + L / 2 + 128).
// Same scratch as attention_f16.
using attention_q3_fn = void (*)(const float* q,          // [B, n_heads, head_dim] (row stride ldq)
                                 const uint8_t* k_cache,  // [n_kv_heads, capacity, q3_row_bytes(head_dim)]
                                 const uint8_t* v_cache,  // [n_kv_heads, capacity, q3_row_bytes(head_dim)]
                                 const int32_t* pos,      // [B]
                                 float* out,              // [B, n_heads, head_dim] (row stride ldo)
                                 int64_t B, int64_t n_heads, int64_t n_kv_heads, int64_t head_dim, int64_t capacity,
                                 int64_t ldq, int64_t ldo, float scale, int64_t h0, int64_t h1, float* scratch);

// Paged K/V (the sequence-state pool, runtime/kv_pool.h): the cached rows of one layer live in pages
// of page_tokens positions. Page j of the K planes is the bytes at k_pages[j] + k_off laid out
// [n_kv_heads, page_tokens, row] (row = head_dim halves, q8_row_bytes or q3_row_bytes bytes), and
// likewise for V; position t is row t % page_tokens of page t / page_tokens. A flat cache
// [n_kv_heads, capacity, row] is the one-page case (page_tokens = capacity). The attention kernels
// read rows in aligned tiles of at most kAttnBlock positions, so page_tokens must be a multiple of
// kAttnBlock unless every attended position lies in page 0; then a tile never straddles two pages
// and the paged call computes exactly what the flat call computes on the same rows (same order, same
// operations: bit-identical).
struct KvPages {
  const void* const* k_pages;  // [pages]
  const void* const* v_pages;  // [pages]
  int64_t k_off, v_off;        // bytes added to every page pointer
  int64_t page_tokens;
};

// The rows of kv head g seen through a page table; row(t0) is valid for the tile t0 .. t0 + n - 1
// (rows contiguous) when the tile does not straddle a page.
template <typename T>
struct KvPlane {
  const void* const* pages;
  int64_t off, page_tokens, g, stride;  // stride: T elements per row
  const T* row(int64_t t) const {
    const int64_t j = t / page_tokens;
    return reinterpret_cast<const T*>(static_cast<const uint8_t*>(pages[j]) + off) +
           (g * page_tokens + (t - j * page_tokens)) * stride;
  }
};

// attention_f16 / _q8 / _q3 over paged caches (kind picks the row format: 0 f16, 1 q8, 2 q3): the
// same computation, bound and scratch as the flat kernels above (each flat kernel is this one with
// one page).
using attention_paged_fn = void (*)(const float* q,        // [B, n_heads, head_dim] (row stride ldq)
                                    const KvPages& kv,     // pages covering positions 0 .. max_b pos[b]
                                    const int32_t* pos,    // [B]
                                    float* out,            // [B, n_heads, head_dim] (row stride ldo)
                                    int64_t B, int64_t n_heads, int64_t n_kv_heads, int64_t head_dim,
                                    int64_t ldq, int64_t ldo, float scale, int64_t h0, int64_t h1, float* scratch);

// The same kernels over rows already converted to float (row = head_dim floats): given the float rows
// that kv_rows_f32 makes of f16, q8 or q3 rows, attention_paged_f32 gives the bits of
// attention_paged_f16 / _q8 / _q3 on the cache rows (each variant's row formats convert exactly,
// and the loop order does not depend on the format). A prefill chunk converts its sequence's rows
// once per layer instead of once per query row.
// kv_rows_f32: out[i, :] = the values of the n contiguous cache rows at `rows` (kind: 0 f16, 1 q8,
// 2 q3), exact (half -> float; q8 and q3 values are exact products in float).
using kv_rows_f32_fn = void (*)(int kind, const void* rows, int64_t n, int64_t head_dim,
                                float* out);  // [n, head_dim]

// The shared frame of the variants' kv_rows_f32: picks the variant's row format for `kind` (F16, Q8, Q3:
// types with T and stride(head_dim)) and walks the rows, W values per step(row, d, dst) and the last
// head_dim % W through tail(row, d, count, dst) (the variant's vector loads and stores).
template <typename F16, typename Q8, typename Q3, int W, typename Step, typename Tail>
inline void kv_rows_to_f32(int kind, const void* rows, int64_t n, int64_t head_dim, float* out, Step&& step,
                           Tail&& tail) {
  auto walk = [&](auto fmt) {
    using R = decltype(fmt);
    const typename R::T* r = static_cast<const typename R::T*>(rows);
    const int64_t rs = R::stride(head_dim), hw = head_dim - head_dim % W;
    for (int64_t i = 0; i < n; ++i) {
      for (int64_t d = 0; d < hw; d += W) step(fmt, r + i * rs, d, out + i * head_dim + d);
      if (hw < head_dim) tail(fmt, r + i * rs, hw, head_dim - hw, out + i * head_dim + hw);
    }
  };
  if (kind == 1)
    walk(Q8{});
  else if (kind == 2)
    walk(Q3{});
  else
    walk(F16{});
}

// Gated activations: out[b, i] = act(gate[b, i]) * up[b, i], in float:
//   relu2: (g > 0 ? g * g : 0) * up       (bit-exact across variants)
//   silu:  (g / (1 + exp(-g))) * up
// gate and up are the two halves of a fused gate|up output row: gate = row[0:n], up = row[n:2n].
// out must not overlap gate_up.
using glu_fn = void (*)(const float* gate_up,  // [B, ld_in], gate at [0, n), up at [n, 2n)
                        float* out,            // [B, ld_out]
                        int64_t B, int64_t n, int64_t ld_in, int64_t ld_out);

}  // namespace bitllm
