// ops NEON variant (ARMv8.0: FCVTL/FCVTN half conversions, FMA).
//   rmsnorm:   Σ x^2 in double (vcvt_f64_f32 + FMA, exact products), y = (x s) w: bit-exact to scalar
//              unless the double sums round the scale apart.
//   rope_neox: shared angles (ops.h), rotation with separate mul/sub: bit-exact to scalar.
//   kv_store:  vcvt_f16_f32 (round to nearest even under the default FPCR): bit-exact to scalar.
//              kv_store_q8 keeps the scalar kernel. kv_store_q3: the scalar block quantization 4 lanes at
//              a time (vdivq_f32, FCVTNS), codes packed by per-lane shifts and an across-lanes add.
//   attention: f16, q8 and q3 caches share the code through a row loader (f16: vcvt_f32_f16; q8: int8
//              widened and converted, times the block's half scale; q3: a 32-bit word per 8 codes,
//              duplicated, shifted per lane, minus 4, times the scale: exact, the scalar values). K/V
//              rows are converted in registers, register-blocked over the query
//              heads sharing the kv head: scores as tiles of GB heads x PB positions (GB PB = 16 FMA
//              chains of head_dim/4, reduced by pairwise adds), softmax through the vector exp of
//              ops.h, Σ p v as tiles of GB heads x DC 4-dim chunks (GB DC = 16, chains <= kAttnBlock)
//              added into the output row per block. Each accumulator belongs to one (head, position)
//              or (head, dim), so the blocking (and the caller's head split) never changes a result.
//   glu:       relu2 bit-exact to scalar; silu through the vector exp.
#include <arm_neon.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <type_traits>

#include "kernels.h"
#include "vexp_neon.h"

namespace bitllm {

namespace {

inline float32x4_t load_h4(const uint16_t* p) { return vcvt_f32_f16(vreinterpret_f16_u16(vld1_u16(p))); }

inline uint16_t f2h(float f) { return vget_lane_u16(vreinterpret_u16_f16(vcvt_f16_f32(vdupq_n_f32(f))), 0); }

void rmsnorm_neon(const float* x, const float* w, float* y, int64_t B, int64_t n, int64_t ld, float eps) {
  for (int64_t b = 0; b < B; ++b) {
    const float* xb = x + b * ld;  // [n]
    float* yb = y + b * ld;        // [n]
    float64x2_t a0 = vdupq_n_f64(0.0), a1 = a0, a2 = a0, a3 = a0;
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
      const float32x4_t v0 = vld1q_f32(xb + i), v1 = vld1q_f32(xb + i + 4);
      const float64x2_t d0 = vcvt_f64_f32(vget_low_f32(v0)), d1 = vcvt_high_f64_f32(v0);
      const float64x2_t d2 = vcvt_f64_f32(vget_low_f32(v1)), d3 = vcvt_high_f64_f32(v1);
      a0 = vfmaq_f64(a0, d0, d0);
      a1 = vfmaq_f64(a1, d1, d1);
      a2 = vfmaq_f64(a2, d2, d2);
      a3 = vfmaq_f64(a3, d3, d3);
    }
    double sum = vaddvq_f64(vaddq_f64(vaddq_f64(a0, a1), vaddq_f64(a2, a3)));
    for (; i < n; ++i) sum += static_cast<double>(xb[i]) * static_cast<double>(xb[i]);
    const float s = static_cast<float>(1.0 / std::sqrt(sum / static_cast<double>(n) + static_cast<double>(eps)));
    const float32x4_t sv = vdupq_n_f32(s);
    i = 0;
    if (w) {
      for (; i + 4 <= n; i += 4) vst1q_f32(yb + i, vmulq_f32(vmulq_f32(vld1q_f32(xb + i), sv), vld1q_f32(w + i)));
      for (; i < n; ++i) yb[i] = (xb[i] * s) * w[i];
    } else {
      for (; i + 4 <= n; i += 4) vst1q_f32(yb + i, vmulq_f32(vld1q_f32(xb + i), sv));
      for (; i < n; ++i) yb[i] = xb[i] * s;
    }
  }
}

void rope_neox_neon(float* x, const int32_t* pos, int64_t B, int64_t n_heads, int64_t head_dim, int64_t ld,
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
        int64_t i = 0;
        for (; i + 4 <= ni; i += 4) {
          const float32x4_t a = vld1q_f32(lo + i), d = vld1q_f32(hi + i);
          const float32x4_t cv = vld1q_f32(c + i), sv = vld1q_f32(s + i);
          vst1q_f32(lo + i, vsubq_f32(vmulq_f32(a, cv), vmulq_f32(d, sv)));
          vst1q_f32(hi + i, vaddq_f32(vmulq_f32(a, sv), vmulq_f32(d, cv)));
        }
        for (; i < ni; ++i) {
          const float a = lo[i], d = hi[i];
          lo[i] = a * c[i] - d * s[i];
          hi[i] = a * s[i] + d * c[i];
        }
      }
    }
  }
}

void kv_store_f16_neon(const float* x, const int32_t* pos, uint16_t* cache, int64_t B, int64_t n_kv_heads,
                       int64_t head_dim, int64_t ld, int64_t capacity) {
  for (int64_t b = 0; b < B; ++b)
    for (int64_t h = 0; h < n_kv_heads; ++h) {
      const float* src = x + b * ld + h * head_dim;                // [head_dim]
      uint16_t* dst = cache + (h * capacity + pos[b]) * head_dim;  // [head_dim]
      int64_t i = 0;
      for (; i + 4 <= head_dim; i += 4) vst1_u16(dst + i, vreinterpret_u16_f16(vcvt_f16_f32(vld1q_f32(src + i))));
      for (; i < head_dim; ++i) dst[i] = f2h(src[i]);
    }
}

// One q3 block (ops.h) x [32] -> dst [14 bytes]: the scalar float ops 4 lanes at a time (vdivq_f32 is
// the correctly rounded division; FCVTNS rounds half even after the clamp). Each group of 8 codes is
// shifted to bits 3j of its lane and the lanes summed (disjoint fields: the sum is the OR).
inline void quantize_q3_block_neon(const float* x, uint8_t* dst) {
  float32x4_t v[8];
  for (int i = 0; i < 8; ++i) v[i] = vld1q_f32(x + 4 * i);
  float32x4_t a = vabsq_f32(v[0]);
  for (int i = 1; i < 8; ++i) a = vmaxq_f32(a, vabsq_f32(v[i]));
  const float amax = vmaxvq_f32(a);
  const uint16_t dh = f2h(amax / 3.0f);
  const float df = vgetq_lane_f32(vcvt_f32_f16(vreinterpret_f16_u16(vdup_n_u16(dh))), 0);
  std::memcpy(dst, &dh, 2);
  // d == 0: every q is 0 (the quotients 0 / 0 are NaN, masked off before the conversion).
  const uint32x4_t keep = vdupq_n_u32(df != 0.0f ? 0xFFFFFFFFu : 0u);
  const float32x4_t dv = vdupq_n_f32(df), lo = vdupq_n_f32(-4.0f), hi = vdupq_n_f32(3.0f);
  const int32x4_t four = vdupq_n_s32(4);
  static const int32_t kShift[8] = {0, 3, 6, 9, 12, 15, 18, 21};
  const int32x4_t sh0 = vld1q_s32(kShift), sh1 = vld1q_s32(kShift + 4);
  uint32_t w[4];
  for (int s = 0; s < 4; ++s) {
    uint32x4_t c[2];
    for (int k = 0; k < 2; ++k) {
      const float32x4_t qf = vminq_f32(vmaxq_f32(vdivq_f32(v[2 * s + k], dv), lo), hi);
      const uint32x4_t qm = vandq_u32(vreinterpretq_u32_f32(qf), keep);
      c[k] = vreinterpretq_u32_s32(vaddq_s32(vcvtnq_s32_f32(vreinterpretq_f32_u32(qm)), four));
    }
    w[s] = vaddvq_u32(vaddq_u32(vshlq_u32(c[0], sh0), vshlq_u32(c[1], sh1)));
  }
  const uint64_t lo64 = w[0] | (static_cast<uint64_t>(w[1]) << 24) | (static_cast<uint64_t>(w[2]) << 48);
  const uint32_t hi32 = (w[2] >> 16) | (w[3] << 8);
  std::memcpy(dst + 2, &lo64, 8);
  std::memcpy(dst + 10, &hi32, 4);
}

void kv_store_q3_neon(const float* x, const int32_t* pos, uint8_t* cache, int64_t B, int64_t n_kv_heads,
                      int64_t head_dim, int64_t ld, int64_t capacity) {
  const int64_t rb = q3_row_bytes(head_dim);
  for (int64_t b = 0; b < B; ++b)
    for (int64_t h = 0; h < n_kv_heads; ++h) {
      const float* src = x + b * ld + h * head_dim;        // [head_dim]
      uint8_t* dst = cache + (h * capacity + pos[b]) * rb;  // [rb]
      for (int64_t k = 0; k < head_dim / kKvQ3Block; ++k)
        quantize_q3_block_neon(src + k * kKvQ3Block, dst + k * kKvQ3BlockBytes);
    }
}

// Four lanes from p[0, n), zero past n (n <= 4).
inline float32x4_t load_tail(const float* p, int64_t n) {
  float t[4] = {0.0f, 0.0f, 0.0f, 0.0f};
  for (int64_t i = 0; i < n; ++i) t[i] = p[i];
  return vld1q_f32(t);
}

// Four halves from p[0, n) (n < 4), zero past n, as floats.
inline float32x4_t load_h4_tail(const uint16_t* p, int64_t n) {
  uint16_t t[4] = {0, 0, 0, 0};
  for (int64_t i = 0; i < n; ++i) t[i] = p[i];
  return load_h4(t);
}

// Row formats of the attention (a cache row holds head_dim values):
//   load16(row, d, o) o[0..3] = floats row[d, d + 16)     (d % 16 == 0, d + 16 <= head_dim)
//   load4(row, d)     floats row[d, d + 4)                (d % 4 == 0, d + 4 <= head_dim)
//   tail(row, d, n)   floats row[d, d + n), zero past n   (d % 4 == 0, n < 4)
//   kScoreStep        score_tile walks d in 4-dim steps (one load4 per row, each q load shared by the
//                     PB rows) or 16-dim steps (one load16 per row); the sums are the same
//   kScoreAcc         accumulators of a score tile (GB heads x kScoreAcc / GB positions)
struct RowsF16 {
  using T = uint16_t;
  static constexpr int kScoreStep = 4, kScoreAcc = 16;
  static int64_t stride(int64_t head_dim) { return head_dim; }
  static void load16(const T* row, int64_t d, float32x4_t* o) {
    const float16x8_t a = vreinterpretq_f16_u16(vld1q_u16(row + d));
    const float16x8_t b = vreinterpretq_f16_u16(vld1q_u16(row + d + 8));
    o[0] = vcvt_f32_f16(vget_low_f16(a));
    o[1] = vcvt_high_f32_f16(a);
    o[2] = vcvt_f32_f16(vget_low_f16(b));
    o[3] = vcvt_high_f32_f16(b);
  }
  static float32x4_t load4(const T* row, int64_t d) { return load_h4(row + d); }
  static float32x4_t tail(const T* row, int64_t d, int64_t n) { return load_h4_tail(row + d, n); }
};
// q8 (ops.h): value = float(qs) * float(d), exact (8 x 11 significant bits): the scalar dequantization's
// values. head_dim % 32 == 0, so a 16- or 4-dim group (d aligned to its size) lies in one block; the
// scale is converted once per group and the int8s are widened (sxtl) and converted (scvtf) in registers.
struct RowsQ8 {
  using T = uint8_t;
  // One scale and one 16-byte load per row per step; 8 accumulators (16 plus the 4 GB q vectors and the
  // conversion temporaries spill).
  static constexpr int kScoreStep = 16, kScoreAcc = 8;
  static int64_t stride(int64_t head_dim) { return q8_row_bytes(head_dim); }
  static const uint8_t* block(const T* row, int64_t d) { return row + (d / kKvQ8Block) * kKvQ8BlockBytes; }
  // float(d) of a block in all lanes (the half is little-endian in the row).
  static float32x4_t scale(const uint8_t* blk) {
    const uint16_t dh = static_cast<uint16_t>(blk[0] | (blk[1] << 8));
    return vcvt_f32_f16(vreinterpret_f16_u16(vdup_n_u16(dh)));
  }
  static float32x4_t lo4(int16x8_t w, float32x4_t s) { return vmulq_f32(vcvtq_f32_s32(vmovl_s16(vget_low_s16(w))), s); }
  static float32x4_t hi4(int16x8_t w, float32x4_t s) { return vmulq_f32(vcvtq_f32_s32(vmovl_high_s16(w)), s); }
  static void load16(const T* row, int64_t d, float32x4_t* o) {
    const uint8_t* blk = block(row, d);
    const float32x4_t s = scale(blk);
    const int8x16_t qs = vld1q_s8(reinterpret_cast<const int8_t*>(blk + 2 + d % kKvQ8Block));
    const int16x8_t lo = vmovl_s8(vget_low_s8(qs)), hi = vmovl_high_s8(qs);
    o[0] = lo4(lo, s);
    o[1] = hi4(lo, s);
    o[2] = lo4(hi, s);
    o[3] = hi4(hi, s);
  }
  static float32x4_t load4(const T* row, int64_t d) {
    const uint8_t* blk = block(row, d);
    int8_t t[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    std::memcpy(t, blk + 2 + d % kKvQ8Block, 4);
    return lo4(vmovl_s8(vld1_s8(t)), scale(blk));
  }
  // Unused while head_dim % 32 == 0 (ops.h requires it); kept correct for any n < 4.
  static float32x4_t tail(const T* row, int64_t d, int64_t n) {
    float t[4] = {0.0f, 0.0f, 0.0f, 0.0f};
    for (int64_t i = 0; i < n; ++i) {
      const uint8_t* blk = block(row, d + i);
      t[i] = static_cast<float>(static_cast<int8_t>(blk[2 + (d + i) % kKvQ8Block])) * vgetq_lane_f32(scale(blk), 0);
    }
    return vld1q_f32(t);
  }
};

// q3 (ops.h): value = (c - 4) * float(d), exact (3 x 11 significant bits): the scalar dequantization's
// values. The 8 codes of group s (dims [8s, 8s + 8) of a block) come from one little-endian 32-bit
// word at code byte min(3s, 8), duplicated and shifted right per lane (USHL by minus the bit offset).
struct RowsQ3 {
  using T = uint8_t;
  // As q8: one scale and two word loads per row per 16-dim step; 8 accumulators.
  static constexpr int kScoreStep = 16, kScoreAcc = 8;
  static int64_t stride(int64_t head_dim) { return q3_row_bytes(head_dim); }
  static const uint8_t* block(const T* row, int64_t d) { return row + (d / kKvQ3Block) * kKvQ3BlockBytes; }
  static float32x4_t scale(const uint8_t* blk) {
    const uint16_t dh = static_cast<uint16_t>(blk[0] | (blk[1] << 8));
    return vcvt_f32_f16(vreinterpret_f16_u16(vdup_n_u16(dh)));
  }
  // Lanes of dims [8s + 4 half, 8s + 4 half + 4) of a block: (c - 4) * scale.
  static float32x4_t four(const uint8_t* blk, int64_t s, int64_t half, float32x4_t sc) {
    const int64_t w = s < 3 ? 3 * s : 8;
    uint32_t word;
    std::memcpy(&word, blk + 2 + w, 4);
    const int32_t off = static_cast<int32_t>(24 * s - 8 * w + 12 * half);
    const int32x4_t sh = vnegq_s32(vaddq_s32(vdupq_n_s32(off), lane_shift()));
    const uint32x4_t c = vandq_u32(vshlq_u32(vdupq_n_u32(word), sh), vdupq_n_u32(7));
    return vmulq_f32(vcvtq_f32_s32(vsubq_s32(vreinterpretq_s32_u32(c), vdupq_n_s32(4))), sc);
  }
  static int32x4_t lane_shift() {
    static const int32_t k[4] = {0, 3, 6, 9};
    return vld1q_s32(k);
  }
  static void load16(const T* row, int64_t d, float32x4_t* o) {
    const uint8_t* blk = block(row, d);
    const float32x4_t sc = scale(blk);
    const int64_t s = (d % kKvQ3Block) / 8;  // d % 16 == 0: groups s, s + 1
    o[0] = four(blk, s, 0, sc);
    o[1] = four(blk, s, 1, sc);
    o[2] = four(blk, s + 1, 0, sc);
    o[3] = four(blk, s + 1, 1, sc);
  }
  static float32x4_t load4(const T* row, int64_t d) {
    const uint8_t* blk = block(row, d);
    return four(blk, (d % kKvQ3Block) / 8, (d % 8) / 4, scale(blk));
  }
  // Unused while head_dim % 32 == 0 (ops.h requires it); kept correct for any n < 4.
  static float32x4_t tail(const T* row, int64_t d, int64_t n) {
    float t[4] = {0.0f, 0.0f, 0.0f, 0.0f};
    for (int64_t i = 0; i < n; ++i) {
      const uint8_t* blk = block(row, d + i);
      const int64_t bit = 3 * ((d + i) % kKvQ3Block), byte = bit / 8;
      const unsigned two = blk[2 + byte] | (byte + 1 < 12 ? blk[3 + byte] << 8 : 0);
      t[i] = static_cast<float>(static_cast<int>((two >> (bit % 8)) & 7u) - 4) * vgetq_lane_f32(scale(blk), 0);
    }
    return vld1q_f32(t);
  }
};

// Rows already converted to floats (kv_rows_f32): the values the other formats' loads give.
struct RowsF32 {
  using T = float;
  static constexpr int kScoreStep = 4, kScoreAcc = 16;
  static int64_t stride(int64_t head_dim) { return head_dim; }
  static void load16(const T* row, int64_t d, float32x4_t* o) {
    for (int c = 0; c < 4; ++c) o[c] = vld1q_f32(row + d + 4 * c);
  }
  static float32x4_t load4(const T* row, int64_t d) { return vld1q_f32(row + d); }
  static float32x4_t tail(const T* row, int64_t d, int64_t n) { return load_tail(row + d, n); }
};

void kv_rows_f32_neon(int kind, const void* rows, int64_t n, int64_t head_dim, float* out) {
  kv_rows_to_f32<RowsF16, RowsQ8, RowsQ3, 4>(
      kind, rows, n, head_dim, out,
      [](auto fmt, const auto* row, int64_t d, float* o) { vst1q_f32(o, decltype(fmt)::load4(row, d)); },
      [](auto fmt, const auto* row, int64_t d, int64_t c, float* o) {
        float t[4];
        vst1q_f32(t, decltype(fmt)::tail(row, d, c));
        for (int64_t k = 0; k < c; ++k) o[k] = t[k];
      });
}

// Scores of GB heads x PB positions (GB * PB == R::kScoreAcc accumulators, FMA chains of head_dim / 4;
// lane l of accumulator (j, p) sums the dims d % 4 == l in increasing d, whatever the step):
// r[j * PB + p] = scale * (q_j · k_p). K rows are converted in registers, once per tile.
template <typename R, int GB, int PB>
inline void score_tile(const float* q,                  // [GB, head_dim]
                       const typename R::T* const* k,  // PB cache rows
                       int64_t head_dim, float scale, float* r) {  // r: [GB * PB]
  constexpr int NA = GB * PB;
  static_assert(NA == R::kScoreAcc && NA % 4 == 0, "tile of kScoreAcc accumulators");
  float32x4_t acc[NA];
  for (int i = 0; i < NA; ++i) acc[i] = vdupq_n_f32(0.0f);
  const int64_t hd4 = head_dim & ~int64_t{3};
  int64_t d = 0;
  if constexpr (R::kScoreStep == 16) {
    const int64_t hd16 = head_dim & ~int64_t{15};
    for (; d < hd16; d += 16)
      for (int p = 0; p < PB; ++p) {
        float32x4_t kv[4];
        R::load16(k[p], d, kv);
        for (int j = 0; j < GB; ++j) {
          const float* qj = q + j * head_dim + d;
          for (int c = 0; c < 4; ++c) acc[j * PB + p] = vfmaq_f32(acc[j * PB + p], vld1q_f32(qj + 4 * c), kv[c]);
        }
      }
  }
  for (; d < hd4; d += 4) {
    float32x4_t kv[PB];
    for (int p = 0; p < PB; ++p) kv[p] = R::load4(k[p], d);
    for (int j = 0; j < GB; ++j) {
      const float32x4_t qv = vld1q_f32(q + j * head_dim + d);
      for (int p = 0; p < PB; ++p) acc[j * PB + p] = vfmaq_f32(acc[j * PB + p], qv, kv[p]);
    }
  }
  if (hd4 < head_dim) {
    float32x4_t kv[PB];
    for (int p = 0; p < PB; ++p) kv[p] = R::tail(k[p], hd4, head_dim - hd4);
    for (int j = 0; j < GB; ++j) {
      const float32x4_t qv = load_tail(q + j * head_dim + hd4, head_dim - hd4);
      for (int p = 0; p < PB; ++p) acc[j * PB + p] = vfmaq_f32(acc[j * PB + p], qv, kv[p]);
    }
  }
  const float32x4_t sv = vdupq_n_f32(scale);
  for (int i = 0; i < NA; i += 4) {
    const float32x4_t s4 = vpaddq_f32(vpaddq_f32(acc[i], acc[i + 1]), vpaddq_f32(acc[i + 2], acc[i + 3]));
    vst1q_f32(r + i, vmulq_f32(s4, sv));
  }
}

// sc[j * L + t] = scale * (q_j · K[t]) for heads j < GB, t < L.
template <typename R, int GB>
void scores_heads(const float* q,            // [GB, head_dim]
                  const KvPlane<typename R::T>& K,  // L rows
                  int64_t L, int64_t head_dim, float scale, float* sc) {  // sc: [GB, L] (row stride L)
  constexpr int PB = R::kScoreAcc / GB;
  float r[R::kScoreAcc];
  for (int64_t t0 = 0; t0 < L; t0 += PB) {
    const int64_t np = std::min<int64_t>(PB, L - t0);
    const typename R::T* k[PB];
    static_assert(kAttnBlock % PB == 0, "score tiles stay inside a page");
    const typename R::T* kt = K.row(t0);  // a tile of PB | kAttnBlock rows never straddles a page
    for (int p = 0; p < PB; ++p) k[p] = kt + (p < np ? p : 0) * R::stride(head_dim);
    score_tile<R, GB, PB>(q, k, head_dim, scale, r);
    for (int j = 0; j < GB; ++j)
      for (int64_t p = 0; p < np; ++p) sc[j * L + t0 + p] = r[j * PB + p];
  }
}

// o_j[d0, d0 + 4 DC) += Σ_{p < nt} pj[j][p] V[p, d0 + ...] for heads j < GB (GB * DC accumulators,
// chains of nt); V rows are converted in registers once per tile (16 dims per load when DC % 4 == 0,
// then d0 % 16 == 0).
template <typename R, int GB, int DC>
inline void pv_tile(const float* const* pj,   // GB rows of [nt] probabilities
                    const typename R::T* V,  // [nt, row]
                    int64_t nt, int64_t head_dim, int64_t d0,
                    float* const* o) {  // GB rows of [head_dim]
  float32x4_t acc[GB][DC];
  for (int j = 0; j < GB; ++j)
    for (int c = 0; c < DC; ++c) acc[j][c] = vdupq_n_f32(0.0f);
  const int64_t rs = R::stride(head_dim);
  for (int64_t p = 0; p < nt; ++p) {
    float32x4_t pb[GB];
    for (int j = 0; j < GB; ++j) pb[j] = vdupq_n_f32(pj[j][p]);
    if constexpr (DC % 4 == 0) {
      for (int c = 0; c < DC; c += 4) {  // 4 chunks live at a time
        float32x4_t vv[4];
        R::load16(V + p * rs, d0 + 4 * c, vv);
        for (int j = 0; j < GB; ++j)
          for (int i = 0; i < 4; ++i) acc[j][c + i] = vfmaq_f32(acc[j][c + i], pb[j], vv[i]);
      }
    } else {
      float32x4_t vv[DC];
      for (int c = 0; c < DC; ++c) vv[c] = R::load4(V + p * rs, d0 + 4 * c);
      for (int j = 0; j < GB; ++j)
        for (int c = 0; c < DC; ++c) acc[j][c] = vfmaq_f32(acc[j][c], pb[j], vv[c]);
    }
  }
  for (int j = 0; j < GB; ++j)
    for (int c = 0; c < DC; ++c) vst1q_f32(o[j] + d0 + 4 * c, vaddq_f32(vld1q_f32(o[j] + d0 + 4 * c), acc[j][c]));
}

// The last head_dim % 4 dims of pv_tile.
template <typename R, int GB>
inline void pv_tail(const float* const* pj, const typename R::T* V, int64_t nt, int64_t head_dim, int64_t d0,
                    float* const* o) {
  const int64_t n = head_dim - d0;
  float32x4_t acc[GB];
  for (int j = 0; j < GB; ++j) acc[j] = vdupq_n_f32(0.0f);
  for (int64_t p = 0; p < nt; ++p) {
    const float32x4_t vv = R::tail(V + p * R::stride(head_dim), d0, n);
    for (int j = 0; j < GB; ++j) acc[j] = vfmaq_f32(acc[j], vdupq_n_f32(pj[j][p]), vv);
  }
  for (int j = 0; j < GB; ++j) {
    float t[4];
    vst1q_f32(t, vaddq_f32(load_tail(o[j] + d0, n), acc[j]));
    for (int64_t i = 0; i < n; ++i) o[j][d0 + i] = t[i];
  }
}

// out_j += Σ_t p_j[t] V[t, :] for heads j < GB over t < L, in blocks of kAttnBlock positions.
// Dims in tiles of 4 DC, then 16, then 4, then the tail (every tile start stays a multiple of 16
// until the 4-dim tiles).
template <typename R, int GB>
void pv_heads(const float* sc,            // [GB, L] probabilities (row stride L)
              const KvPlane<typename R::T>& V,  // L rows
              int64_t L, int64_t head_dim, float* out) {  // out: [GB, head_dim]
  constexpr int DC = 16 / GB;
  const int64_t hd4 = head_dim & ~int64_t{3};
  float* o[GB];
  for (int j = 0; j < GB; ++j) o[j] = out + j * head_dim;
  for (int64_t t0 = 0; t0 < L; t0 += kAttnBlock) {
    const int64_t nt = std::min(kAttnBlock, L - t0);
    const float* pj[GB];
    for (int j = 0; j < GB; ++j) pj[j] = sc + j * L + t0;
    const typename R::T* Vt = V.row(t0);
    int64_t d0 = 0;
    for (; d0 + 4 * DC <= hd4; d0 += 4 * DC) pv_tile<R, GB, DC>(pj, Vt, nt, head_dim, d0, o);
    if constexpr (DC > 4) {
      for (; d0 + 16 <= hd4; d0 += 16) pv_tile<R, GB, 4>(pj, Vt, nt, head_dim, d0, o);
    }
    for (; d0 < hd4; d0 += 4) pv_tile<R, GB, 1>(pj, Vt, nt, head_dim, d0, o);
    if (hd4 < head_dim) pv_tail<R, GB>(pj, Vt, nt, head_dim, hd4, o);
  }
}

// Calls f(integral_constant<GB>, j) over head blocks of 4, 2, 1 covering [0, G).
template <typename F>
inline void for_head_blocks(int64_t G, F&& f) {
  int64_t j = 0;
  for (; j + 4 <= G; j += 4) f(std::integral_constant<int, 4>(), j);
  for (; j + 2 <= G; j += 2) f(std::integral_constant<int, 2>(), j);
  for (; j < G; ++j) f(std::integral_constant<int, 1>(), j);
}

// Softmax of s[0, L) in place (max subtracted); returns 1 / Σ p.
float softmax_neon(float* s, int64_t L) {  // s: [L]
  const int64_t L4 = L & ~int64_t{3};
  float32x4_t mv = vdupq_n_f32(-INFINITY);
  for (int64_t t = 0; t < L4; t += 4) mv = vmaxq_f32(mv, vld1q_f32(s + t));
  float m = vmaxvq_f32(mv);
  for (int64_t t = L4; t < L; ++t) m = std::max(m, s[t]);
  const float32x4_t mm = vdupq_n_f32(m);
  float32x4_t a0 = vdupq_n_f32(0.0f), a1 = a0;
  int64_t t = 0;
  for (; t + 8 <= L4; t += 8) {
    const float32x4_t e0 = exp4(vsubq_f32(vld1q_f32(s + t), mm)), e1 = exp4(vsubq_f32(vld1q_f32(s + t + 4), mm));
    vst1q_f32(s + t, e0);
    vst1q_f32(s + t + 4, e1);
    a0 = vaddq_f32(a0, e0);
    a1 = vaddq_f32(a1, e1);
  }
  if (t < L4) {
    const float32x4_t e0 = exp4(vsubq_f32(vld1q_f32(s + t), mm));
    vst1q_f32(s + t, e0);
    a0 = vaddq_f32(a0, e0);
    t += 4;
  }
  if (t < L) {
    const int64_t nt = L - t;
    float tmp[4];
    vst1q_f32(tmp, exp4(vsubq_f32(load_tail(s + t, nt), mm)));
    for (int64_t i = nt; i < 4; ++i) tmp[i] = 0.0f;
    for (int64_t i = 0; i < nt; ++i) s[t + i] = tmp[i];
    a1 = vaddq_f32(a1, vld1q_f32(tmp));
  }
  return 1.0f / vaddvq_f32(vaddq_f32(a0, a1));
}

// G query heads q [G, head_dim] sharing one kv head; L attended rows of K/V [L, row].
template <typename R>
void attend_group_neon(const float* q, int64_t G, const KvPlane<typename R::T>& K, const KvPlane<typename R::T>& V,
                       int64_t L,
                       int64_t head_dim, float scale, float* out,  // out: [G, head_dim]
                       float* sc) {                                // [G, L]
  for_head_blocks(G, [&](auto gb, int64_t j) {
    scores_heads<R, decltype(gb)::value>(q + j * head_dim, K, L, head_dim, scale, sc + j * L);
  });
  float inv[kAttnMaxGroup];
  for (int64_t j = 0; j < G; ++j) {
    inv[j] = softmax_neon(sc + j * L, L);
    std::fill(out + j * head_dim, out + (j + 1) * head_dim, 0.0f);
  }
  for_head_blocks(G, [&](auto gb, int64_t j) {
    pv_heads<R, decltype(gb)::value>(sc + j * L, V, L, head_dim, out + j * head_dim);
  });
  for (int64_t j = 0; j < G; ++j) {
    float* o = out + j * head_dim;
    const float32x4_t iv = vdupq_n_f32(inv[j]);
    int64_t d = 0;
    for (; d + 4 <= head_dim; d += 4) vst1q_f32(o + d, vmulq_f32(vld1q_f32(o + d), iv));
    for (; d < head_dim; ++d) o[d] = o[d] * inv[j];
  }
}

// attention_f16 (R = RowsF16), attention_q8 (R = RowsQ8) and attention_q3 (R = RowsQ3).
template <typename R>
void attention_paged_neon(const float* q, const KvPages& kv, const int32_t* pos, float* out, int64_t B,
                          int64_t n_heads, int64_t n_kv_heads, int64_t head_dim, int64_t ldq, int64_t ldo, float scale,
                          int64_t h0, int64_t h1, float* scratch) {
  const int64_t r = n_heads / n_kv_heads;
  float* sc = scratch;  // [G, L] (the rest of the scratch is unused here)
  const int64_t rs = R::stride(head_dim);
  for (int64_t h = h0; h < h1;) {
    const int64_t g = h / r, he = std::min({h1, (g + 1) * r, h + kAttnMaxGroup});
    const KvPlane<typename R::T> K{kv.k_pages, kv.k_off, kv.page_tokens, g, rs};
    const KvPlane<typename R::T> V{kv.v_pages, kv.v_off, kv.page_tokens, g, rs};
    for (int64_t b = 0; b < B; ++b)
      attend_group_neon<R>(q + b * ldq + h * head_dim, he - h, K, V, static_cast<int64_t>(pos[b]) + 1, head_dim,
                           scale, out + b * ldo + h * head_dim, sc);
    h = he;
  }
}

// attention_f16 (R = RowsF16), attention_q8 (R = RowsQ8) and attention_q3 (R = RowsQ3): one page of
// `capacity` positions.
template <typename R>
void attention_neon(const float* q, const typename R::T* k_cache, const typename R::T* v_cache, const int32_t* pos,
                    float* out, int64_t B, int64_t n_heads, int64_t n_kv_heads, int64_t head_dim, int64_t capacity,
                    int64_t ldq, int64_t ldo, float scale, int64_t h0, int64_t h1, float* scratch) {
  const void* kp = k_cache;
  const void* vp = v_cache;
  const KvPages kv{&kp, &vp, 0, 0, capacity};
  attention_paged_neon<R>(q, kv, pos, out, B, n_heads, n_kv_heads, head_dim, ldq, ldo, scale, h0, h1, scratch);
}

template <bool kSilu>
inline float32x4_t glu4(float32x4_t g, float32x4_t u) {
  float32x4_t a;
  if (kSilu) {
    a = vdivq_f32(g, vaddq_f32(vdupq_n_f32(1.0f), exp4(vnegq_f32(g))));
  } else {
    // relu: g > 0 ? g : +0 (as the scalar select; NaN and -0 give +0).
    const float32x4_t r = vbslq_f32(vcgtq_f32(g, vdupq_n_f32(0.0f)), g, vdupq_n_f32(0.0f));
    a = vmulq_f32(r, r);
  }
  return vmulq_f32(a, u);
}

template <bool kSilu>
void glu_neon(const float* gate_up, float* out, int64_t B, int64_t n, int64_t ld_in, int64_t ld_out) {
  for (int64_t b = 0; b < B; ++b) {
    const float* g = gate_up + b * ld_in;  // [n]
    const float* u = g + n;                // [n]
    float* o = out + b * ld_out;           // [n]
    int64_t i = 0;
    for (; i + 4 <= n; i += 4) vst1q_f32(o + i, glu4<kSilu>(vld1q_f32(g + i), vld1q_f32(u + i)));
    if (i < n) {
      float t[4];
      vst1q_f32(t, glu4<kSilu>(load_tail(g + i, n - i), load_tail(u + i, n - i)));
      for (int64_t k = 0; k < n - i; ++k) o[i + k] = t[k];
    }
  }
}

}  // namespace

void fill_ops_neon(KernelTable& t, const CpuFeatures&) {
  t.rmsnorm = rmsnorm_neon;
  t.rope_neox = rope_neox_neon;
  t.kv_store_f16 = kv_store_f16_neon;
  t.attention_f16 = attention_neon<RowsF16>;
  t.attention_q8 = attention_neon<RowsQ8>;
  t.kv_store_q3 = kv_store_q3_neon;
  t.attention_q3 = attention_neon<RowsQ3>;
  t.attention_paged_f16 = attention_paged_neon<RowsF16>;
  t.attention_paged_q8 = attention_paged_neon<RowsQ8>;
  t.attention_paged_q3 = attention_paged_neon<RowsQ3>;
  t.attention_paged_f32 = attention_paged_neon<RowsF32>;
  t.kv_rows_f32 = kv_rows_f32_neon;
  t.glu_relu2 = glu_neon<false>;
  t.glu_silu = glu_neon<true>;
  t.v_ops = "neon";
}

}  // namespace bitllm
