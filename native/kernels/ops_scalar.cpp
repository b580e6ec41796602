// ops scalar variant: the C++ reference for ops.h (plain float code; the build uses
// -ffp-contract=off, so every product is rounded before it is added).
//   rmsnorm:   Σ x^2 in double (4 strided partial sums), scale in double rounded once, y = (x s) w.
//   rope_neox: the shared float angles and cos/sin of ops.h, rotation without FMA.
//   kv_store_q8: the ops.h block quantization (std::nearbyint: round half even in the default mode).
//   kv_store_q3: the same for the 3-bit blocks (a float division per value), codes packed into two
//              48-bit words then written byte by byte.
//   attention: (f16, q8 and q3 rows, converted to float blocks the same way) per group of query heads sharing a kv head: K rows converted kAttnBlock at a time,
//              dots through 8 strided partial sums (a 3-level tree), softmax with the max subtracted,
//              Σ p through 8 strided partial sums, Σ p v per block of kAttnBlock positions added into
//              the output row, which is scaled by 1 / Σ p at the end: the summation chains of the
//              SIMD variants, so all share one bound (ops.h).
#include <algorithm>
#include <cmath>

#include "kernels.h"
#include "runtime/repack_ternary.h"  // f32_to_fp16

namespace bitllm {

namespace {

void rmsnorm_scalar(const float* x, const float* w, float* y, int64_t B, int64_t n, int64_t ld, float eps) {
  for (int64_t b = 0; b < B; ++b) {
    const float* xb = x + b * ld;  // [n]
    float* yb = y + b * ld;        // [n]
    double ss[4] = {0.0, 0.0, 0.0, 0.0};
    for (int64_t i = 0; i < n; ++i) ss[i & 3] += static_cast<double>(xb[i]) * static_cast<double>(xb[i]);
    const double sum = (ss[0] + ss[1]) + (ss[2] + ss[3]);
    const float s = static_cast<float>(1.0 / std::sqrt(sum / static_cast<double>(n) + static_cast<double>(eps)));
    if (w) {
      for (int64_t i = 0; i < n; ++i) yb[i] = (xb[i] * s) * w[i];
    } else {
      for (int64_t i = 0; i < n; ++i) yb[i] = xb[i] * s;
    }
  }
}

void rope_neox_scalar(float* x, const int32_t* pos, int64_t B, int64_t n_heads, int64_t head_dim, int64_t ld,
                      int64_t n_rot, float theta_base) {
  const int64_t half = n_rot / 2;
  float c[kRopeChunk], s[kRopeChunk];
  for (int64_t i0 = 0; i0 < half; i0 += kRopeChunk) {
    const int64_t ni = std::min(kRopeChunk, half - i0);
    for (int64_t b = 0; b < B; ++b) {
      rope_angles(theta_base, n_rot, i0, ni, pos[b], c, s);
      for (int64_t h = 0; h < n_heads; ++h) {
        float* lo = x + b * ld + h * head_dim + i0;  // [ni]
        float* hi = lo + half;                        // [ni]
        for (int64_t i = 0; i < ni; ++i) {
          const float a = lo[i], d = hi[i];
          lo[i] = a * c[i] - d * s[i];
          hi[i] = a * s[i] + d * c[i];
        }
      }
    }
  }
}

void kv_store_f16_scalar(const float* x, const int32_t* pos, uint16_t* cache, int64_t B, int64_t n_kv_heads,
                         int64_t head_dim, int64_t ld, int64_t capacity) {
  for (int64_t b = 0; b < B; ++b)
    for (int64_t h = 0; h < n_kv_heads; ++h) {
      const float* src = x + b * ld + h * head_dim;                    // [head_dim]
      uint16_t* dst = cache + (h * capacity + pos[b]) * head_dim;      // [head_dim]
      for (int64_t i = 0; i < head_dim; ++i) dst[i] = f32_to_fp16(src[i]);
    }
}

// One q8 block (ops.h): x [32] -> {half d, int8 qs[32]} at dst [34 bytes].
void quantize_q8_block_scalar(const float* x, uint8_t* dst) {
  float amax = 0.0f;
  for (int64_t i = 0; i < kKvQ8Block; ++i) amax = std::max(amax, std::fabs(x[i]));
  const uint16_t dh = f32_to_fp16(amax / 127.0f);
  const float df = half_to_f32(dh);
  const float id = df != 0.0f ? 1.0f / df : 0.0f;
  dst[0] = static_cast<uint8_t>(dh & 0xFF);
  dst[1] = static_cast<uint8_t>(dh >> 8);
  for (int64_t i = 0; i < kKvQ8Block; ++i) {
    const float r = std::min(std::max(std::nearbyint(x[i] * id), -127.0f), 127.0f);
    dst[2 + i] = static_cast<uint8_t>(static_cast<int8_t>(r));
  }
}

void kv_store_q8_scalar(const float* x, const int32_t* pos, uint8_t* cache, int64_t B, int64_t n_kv_heads,
                        int64_t head_dim, int64_t ld, int64_t capacity) {
  const int64_t rb = q8_row_bytes(head_dim);
  for (int64_t b = 0; b < B; ++b)
    for (int64_t h = 0; h < n_kv_heads; ++h) {
      const float* src = x + b * ld + h * head_dim;        // [head_dim]
      uint8_t* dst = cache + (h * capacity + pos[b]) * rb;  // [rb]
      for (int64_t k = 0; k < head_dim / kKvQ8Block; ++k)
        quantize_q8_block_scalar(src + k * kKvQ8Block, dst + k * kKvQ8BlockBytes);
    }
}

// One q3 block (ops.h): x [32] -> {half d, 12 bytes of 3-bit codes} at dst [14 bytes].
void quantize_q3_block_scalar(const float* x, uint8_t* dst) {
  float amax = 0.0f;
  for (int64_t i = 0; i < kKvQ3Block; ++i) amax = std::max(amax, std::fabs(x[i]));
  const uint16_t dh = f32_to_fp16(amax / 3.0f);
  const float df = half_to_f32(dh);
  dst[0] = static_cast<uint8_t>(dh & 0xFF);
  dst[1] = static_cast<uint8_t>(dh >> 8);
  uint64_t bits[2] = {0, 0};  // codes 0..15 in bits[0] (48 bits), 16..31 in bits[1]
  for (int64_t i = 0; i < kKvQ3Block; ++i) {
    const float q = df != 0.0f ? std::min(std::max(std::nearbyint(x[i] / df), -4.0f), 3.0f) : 0.0f;
    bits[i / 16] |= static_cast<uint64_t>(static_cast<int>(q) + 4) << (3 * (i % 16));
  }
  for (int64_t k = 0; k < 12; ++k) dst[2 + k] = static_cast<uint8_t>(bits[k / 6] >> (8 * (k % 6)));
}

void kv_store_q3_scalar(const float* x, const int32_t* pos, uint8_t* cache, int64_t B, int64_t n_kv_heads,
                        int64_t head_dim, int64_t ld, int64_t capacity) {
  const int64_t rb = q3_row_bytes(head_dim);
  for (int64_t b = 0; b < B; ++b)
    for (int64_t h = 0; h < n_kv_heads; ++h) {
      const float* src = x + b * ld + h * head_dim;        // [head_dim]
      uint8_t* dst = cache + (h * capacity + pos[b]) * rb;  // [rb]
      for (int64_t k = 0; k < head_dim / kKvQ3Block; ++k)
        quantize_q3_block_scalar(src + k * kKvQ3Block, dst + k * kKvQ3BlockBytes);
    }
}

// Row formats of the attention: rows(base, t0, nt, head_dim, buf) converts cache rows [t0, t0 + nt)
// of one kv head to floats buf [nt, head_dim].
struct RowsF16 {
  using T = uint16_t;
  static int64_t stride(int64_t head_dim) { return head_dim; }
  static void rows(const T* base, int64_t t0, int64_t nt, int64_t head_dim, float* buf) {
    for (int64_t i = 0; i < nt * head_dim; ++i) buf[i] = half_to_f32(base[t0 * head_dim + i]);
  }
};
struct RowsQ8 {
  using T = uint8_t;
  static int64_t stride(int64_t head_dim) { return q8_row_bytes(head_dim); }
  static void rows(const T* base, int64_t t0, int64_t nt, int64_t head_dim, float* buf) {
    const int64_t rb = q8_row_bytes(head_dim);
    for (int64_t p = 0; p < nt; ++p)
      for (int64_t k = 0; k < head_dim / kKvQ8Block; ++k) {
        const uint8_t* blk = base + (t0 + p) * rb + k * kKvQ8BlockBytes;
        const float d = half_to_f32(static_cast<uint16_t>(blk[0] | (blk[1] << 8)));
        float* o = buf + p * head_dim + k * kKvQ8Block;
        for (int64_t i = 0; i < kKvQ8Block; ++i) o[i] = static_cast<float>(static_cast<int8_t>(blk[2 + i])) * d;
      }
  }
};

struct RowsQ3 {
  using T = uint8_t;
  static int64_t stride(int64_t head_dim) { return q3_row_bytes(head_dim); }
  static void rows(const T* base, int64_t t0, int64_t nt, int64_t head_dim, float* buf) {
    const int64_t rb = q3_row_bytes(head_dim);
    for (int64_t p = 0; p < nt; ++p)
      for (int64_t k = 0; k < head_dim / kKvQ3Block; ++k) {
        const uint8_t* blk = base + (t0 + p) * rb + k * kKvQ3BlockBytes;
        const float d = half_to_f32(static_cast<uint16_t>(blk[0] | (blk[1] << 8)));
        float* o = buf + p * head_dim + k * kKvQ3Block;
        for (int64_t s = 0; s < kKvQ3Block / 8; ++s) {
          // Codes 8s .. 8s + 7: the 24 bits of code bytes [3s, 3s + 3), little-endian.
          const uint8_t* g = blk + 2 + 3 * s;
          const uint32_t w = static_cast<uint32_t>(g[0]) | (static_cast<uint32_t>(g[1]) << 8) |
                             (static_cast<uint32_t>(g[2]) << 16);
          for (int64_t j = 0; j < 8; ++j)
            o[8 * s + j] = static_cast<float>(static_cast<int>((w >> (3 * j)) & 7u) - 4) * d;
        }
      }
  }
};

// Rows already converted to floats (kv_rows_f32).
struct RowsF32 {
  using T = float;
  static int64_t stride(int64_t head_dim) { return head_dim; }
  static void rows(const T* base, int64_t t0, int64_t nt, int64_t head_dim, float* buf) {
    std::copy(base + t0 * head_dim, base + (t0 + nt) * head_dim, buf);
  }
};

void kv_rows_f32_scalar(int kind, const void* rows, int64_t n, int64_t head_dim, float* out) {
  if (kind == 1)
    RowsQ8::rows(static_cast<const uint8_t*>(rows), 0, n, head_dim, out);
  else if (kind == 2)
    RowsQ3::rows(static_cast<const uint8_t*>(rows), 0, n, head_dim, out);
  else
    RowsF16::rows(static_cast<const uint16_t*>(rows), 0, n, head_dim, out);
}

// Softmax of s[0, L) in place (max subtracted); returns 1 / Σ p.
float softmax_scalar(float* s, int64_t L) {  // s: [L]
  float m = s[0];
  for (int64_t t = 1; t < L; ++t) m = std::max(m, s[t]);
  float part[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  for (int64_t t = 0; t < L; ++t) {
    s[t] = std::exp(s[t] - m);
    part[t & 7] = part[t & 7] + s[t];
  }
  const float sum = ((part[0] + part[1]) + (part[2] + part[3])) + ((part[4] + part[5]) + (part[6] + part[7]));
  return 1.0f / sum;
}

// G query heads q [G, head_dim] sharing one kv head; L attended rows of K/V [L, head_dim].
template <typename R>
void attend_group_scalar(const float* q, int64_t G, const KvPlane<typename R::T>& K, const KvPlane<typename R::T>& V, int64_t L,
                         int64_t head_dim, float scale, float* out,  // out: [G, head_dim]
                         float* buf,                                 // [kAttnBlock, head_dim]
                         float* acc,                                 // [head_dim]
                         float* sc) {                                // [G, L]
  for (int64_t t0 = 0; t0 < L; t0 += kAttnBlock) {
    const int64_t nt = std::min(kAttnBlock, L - t0);
    R::rows(K.row(t0), 0, nt, head_dim, buf);
    for (int64_t j = 0; j < G; ++j)
      for (int64_t p = 0; p < nt; ++p) {
        const float* qj = q + j * head_dim;
        const float* kr = buf + p * head_dim;
        float part[8] = {0, 0, 0, 0, 0, 0, 0, 0};  // part[l] sums the dims d with d % 8 == l, in order
        int64_t d = 0;
        for (; d + 8 <= head_dim; d += 8)
          for (int l = 0; l < 8; ++l) part[l] = part[l] + qj[d + l] * kr[d + l];
        for (; d < head_dim; ++d) part[d & 7] = part[d & 7] + qj[d] * kr[d];
        const float dot = ((part[0] + part[1]) + (part[2] + part[3])) + ((part[4] + part[5]) + (part[6] + part[7]));
        sc[j * L + t0 + p] = scale * dot;
      }
  }
  float inv[kAttnMaxGroup];
  for (int64_t j = 0; j < G; ++j) {
    inv[j] = softmax_scalar(sc + j * L, L);
    std::fill(out + j * head_dim, out + (j + 1) * head_dim, 0.0f);
  }
  for (int64_t t0 = 0; t0 < L; t0 += kAttnBlock) {
    const int64_t nt = std::min(kAttnBlock, L - t0);
    R::rows(V.row(t0), 0, nt, head_dim, buf);
    for (int64_t j = 0; j < G; ++j) {
      const float* pj = sc + j * L + t0;
      float* oj = out + j * head_dim;
      // acc[d] = Σ_p pj[p] v[p, d] in order p = 0..nt-1 (the block sum), then added into the output.
      std::fill(acc, acc + head_dim, 0.0f);
      for (int64_t p = 0; p < nt; ++p)
        for (int64_t d = 0; d < head_dim; ++d) acc[d] = acc[d] + pj[p] * buf[p * head_dim + d];
      for (int64_t d = 0; d < head_dim; ++d) oj[d] = oj[d] + acc[d];
    }
  }
  for (int64_t j = 0; j < G; ++j)
    for (int64_t d = 0; d < head_dim; ++d) out[j * head_dim + d] = out[j * head_dim + d] * inv[j];
}

template <typename R>
void attention_paged_scalar(const float* q, const KvPages& kv, const int32_t* pos, float* out, int64_t B,
                            int64_t n_heads, int64_t n_kv_heads, int64_t head_dim, int64_t ldq, int64_t ldo,
                            float scale, int64_t h0, int64_t h1, float* scratch) {
  const int64_t r = n_heads / n_kv_heads;
  float* buf = scratch;                                // [kAttnBlock, head_dim]
  float* acc = scratch + kAttnBlock * head_dim;        // [head_dim]
  float* sc = scratch + (kAttnBlock + 1) * head_dim;  // [G, L]
  const int64_t rs = R::stride(head_dim);
  for (int64_t h = h0; h < h1;) {
    const int64_t g = h / r, he = std::min({h1, (g + 1) * r, h + kAttnMaxGroup});
    const KvPlane<typename R::T> K{kv.k_pages, kv.k_off, kv.page_tokens, g, rs};
    const KvPlane<typename R::T> V{kv.v_pages, kv.v_off, kv.page_tokens, g, rs};
    for (int64_t b = 0; b < B; ++b)
      attend_group_scalar<R>(q + b * ldq + h * head_dim, he - h, K, V, static_cast<int64_t>(pos[b]) + 1, head_dim,
                          scale, out + b * ldo + h * head_dim, buf, acc, sc);
    h = he;
  }
}

// The flat kernels: one page of `capacity` positions.
template <typename R>
void attention_scalar(const float* q, const typename R::T* k_cache, const typename R::T* v_cache, const int32_t* pos,
                          float* out, int64_t B, int64_t n_heads, int64_t n_kv_heads, int64_t head_dim,
                          int64_t capacity, int64_t ldq, int64_t ldo, float scale, int64_t h0, int64_t h1,
                          float* scratch) {
  const void* kp = k_cache;
  const void* vp = v_cache;
  const KvPages kv{&kp, &vp, 0, 0, capacity};
  attention_paged_scalar<R>(q, kv, pos, out, B, n_heads, n_kv_heads, head_dim, ldq, ldo, scale, h0, h1, scratch);
}

template <bool kSilu>
void glu_scalar(const float* gate_up, float* out, int64_t B, int64_t n, int64_t ld_in, int64_t ld_out) {
  for (int64_t b = 0; b < B; ++b) {
    const float* g = gate_up + b * ld_in;  // [n]
    const float* u = g + n;                // [n]
    float* o = out + b * ld_out;           // [n]
    for (int64_t i = 0; i < n; ++i) {
      if (kSilu) {
        o[i] = (g[i] / (1.0f + std::exp(-g[i]))) * u[i];
      } else {
        const float r = g[i] > 0.0f ? g[i] : 0.0f;
        o[i] = (r * r) * u[i];
      }
    }
  }
}

}  // namespace

void fill_ops_scalar(KernelTable& t, const CpuFeatures&) {
  t.rmsnorm = rmsnorm_scalar;
  t.rope_neox = rope_neox_scalar;
  t.kv_store_f16 = kv_store_f16_scalar;
  t.attention_f16 = attention_scalar<RowsF16>;
  t.kv_store_q8 = kv_store_q8_scalar;
  t.attention_q8 = attention_scalar<RowsQ8>;
  t.kv_store_q3 = kv_store_q3_scalar;
  t.attention_q3 = attention_scalar<RowsQ3>;
  t.attention_paged_f16 = attention_paged_scalar<RowsF16>;
  t.attention_paged_q8 = attention_paged_scalar<RowsQ8>;
  t.attention_paged_q3 = attention_paged_scalar<RowsQ3>;
  t.attention_paged_f32 = attention_paged_scalar<RowsF32>;
  t.kv_rows_f32 = kv_rows_f32_scalar;
  t.glu_relu2 = glu_scalar<false>;
  t.glu_silu = glu_scalar<true>;
  t.v_ops = "scalar";
}

}  // namespace bitllm
