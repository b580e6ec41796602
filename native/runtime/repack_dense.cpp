#include "repack_dense.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "repack_ternary.h"  // fp16_to_f32, f32_to_fp16

namespace bitllm {

namespace {

constexpr int64_t kQ8_0BlockBytes = 34;

// Stores one row-block (16-bit scale bits + 32 codes) of row 16t + r, block j, into its tile.
inline void put_block(uint8_t* tile, int r, int64_t j, uint16_t d, const int8_t* qs) {
  uint8_t* blk = tile + j * kQ8BlockBytes;
  for (int g = 0; g < 8; ++g) std::memcpy(blk + g * kQ8GroupBytes + 4 * r, qs + 4 * g, 4);
  std::memcpy(tile + j * kQ8BlockBytes + kQ8BlockQsBytes + 2 * r, &d, 2);
}

inline bool half_finite(uint16_t h) { return (h & 0x7c00) != 0x7c00; }

// Exact half -> float written as selects (no branches) so the row loop vectorizes with baseline
// flags: normal halves rebias the exponent; zero / subnormal halves become 1.m * 2^-14 - 2^-14 =
// m * 2^-24 (exact); Inf / NaN get the float's all-ones exponent.
inline float half_bits_to_f32(uint16_t h) {
  const uint32_t e = h & 0x7c00u;
  uint32_t o = ((h & 0x7fffu) << 13) + 0x38000000u;  // exponent + (127 - 15)
  o = e == 0x7c00u ? o + 0x38000000u : o;
  const uint32_t os = o + 0x00800000u;
  float fs;
  std::memcpy(&fs, &os, 4);
  fs -= 6.103515625e-05f;  // 2^-14
  uint32_t sub;
  std::memcpy(&sub, &fs, 4);
  const uint32_t bits = (e == 0 ? sub : o) | (static_cast<uint32_t>(h & 0x8000u) << 16);
  float out;
  std::memcpy(&out, &bits, 4);
  return out;
}

// Quantizes 32 finite floats; returns false (and zeros) when the scale overflows fp16.
// Round half to even of v = x / d uses the 1.5 * 2^23 trick (exact for |v| < 2^22; here |v| <= 127 * 1.5
// even when dh was rounded down into the fp16 subnormals), so the loops vectorize without SSE4.1.
bool quantize_block(const float* x, uint16_t* dh_out, int8_t* qs) {
  // max |x| on the bit patterns: for finite floats, |x| orders like its bits as an int32.
  int32_t abits = 0;
  for (int i = 0; i < kQ8Block; ++i) {
    int32_t b;
    std::memcpy(&b, &x[i], 4);
    b &= 0x7fffffff;
    abits = b > abits ? b : abits;
  }
  float amax;
  std::memcpy(&amax, &abits, 4);
  const uint16_t dh = f32_to_fp16(amax / 127.0f);
  *dh_out = 0;
  std::memset(qs, 0, kQ8Block);
  if (!half_finite(dh)) return false;
  *dh_out = dh;
  const float d = fp16_to_f32(dh);
  if (d == 0.0f) return true;
  constexpr float kRound = 12582912.0f;  // 1.5 * 2^23
  for (int i = 0; i < kQ8Block; ++i) {
    float v = (x[i] / d + kRound) - kRound;
    v = v > 127.0f ? 127.0f : (v < -127.0f ? -127.0f : v);
    qs[i] = static_cast<int8_t>(static_cast<int32_t>(v));
  }
  return true;
}

// Float-source repack over tiles; `load` fills 32 floats of row m, block j and returns whether
// they are all finite.
template <typename Load>
int64_t repack_float(int64_t M, int64_t K, uint8_t* data, int64_t tile0, int64_t tile1, Load load) {
  const int64_t nb = K / kQ8Block, tb = q8_tile_bytes(K);
  int64_t invalid = 0;
  float x[kQ8Block];
  int8_t qs[kQ8Block];
  for (int64_t t = tile0; t < tile1; ++t) {
    uint8_t* tile = data + t * tb;
    std::memset(tile, 0, static_cast<size_t>(tb));
    for (int r = 0; r < kQ8Rows; ++r) {
      const int64_t m = t * kQ8Rows + r;
      if (m >= M) break;
      for (int64_t j = 0; j < nb; ++j) {
        uint16_t dh = 0;
        if (!load(m, j, x) || !quantize_block(x, &dh, qs)) {
          ++invalid;
          continue;  // the tile is already zero
        }
        put_block(tile, r, j, dh, qs);
      }
    }
  }
  return invalid;
}

}  // namespace

int64_t repack_q8_from_q8_0(const uint8_t* src, int64_t M, int64_t K, uint8_t* data, int64_t tile0,
                            int64_t tile1) {
  const int64_t nb = K / kQ8Block, tb = q8_tile_bytes(K);
  int64_t invalid = 0;
  for (int64_t t = tile0; t < tile1; ++t) {
    uint8_t* tile = data + t * tb;
    std::memset(tile, 0, static_cast<size_t>(tb));
    for (int r = 0; r < kQ8Rows; ++r) {
      const int64_t m = t * kQ8Rows + r;
      if (m >= M) break;
      for (int64_t j = 0; j < nb; ++j) {
        const uint8_t* blk = src + (m * nb + j) * kQ8_0BlockBytes;  // {d, qs[32]}
        uint16_t d;
        std::memcpy(&d, blk, 2);
        if (!half_finite(d)) {
          ++invalid;
          continue;
        }
        put_block(tile, r, j, d, reinterpret_cast<const int8_t*>(blk + 2));
      }
    }
  }
  return invalid;
}

int64_t repack_q8_from_f16(const uint16_t* src, int64_t lds, int64_t M, int64_t K, uint8_t* data, int64_t tile0,
                           int64_t tile1) {
  return repack_float(M, K, data, tile0, tile1, [&](int64_t m, int64_t j, float* x) {
    const uint16_t* s = src + m * lds + j * kQ8Block;
    int bad = 0;
    for (int i = 0; i < kQ8Block; ++i) {
      bad |= (s[i] & 0x7c00) == 0x7c00;
      x[i] = half_bits_to_f32(s[i]);
    }
    return bad == 0;
  });
}

int64_t repack_q8_from_f32(const float* src, int64_t lds, int64_t M, int64_t K, uint8_t* data, int64_t tile0,
                           int64_t tile1) {
  return repack_float(M, K, data, tile0, tile1, [&](int64_t m, int64_t j, float* x) {
    const float* s = src + m * lds + j * kQ8Block;
    int bad = 0;
    for (int i = 0; i < kQ8Block; ++i) {
      bad |= !std::isfinite(s[i]);
      x[i] = s[i];
    }
    return bad == 0;
  });
}

// ---------------------------------------------------------------------------------------------
// Q4R16

namespace {

constexpr int64_t kQ4_0BlockBytes = 18;

// A tile of zero weights: every code u = 8, every scale +0.
void clear_q4_tile(uint8_t* tile, int64_t nb) {
  for (int64_t j = 0; j < nb; ++j) {
    std::memset(tile + j * kQ4BlockBytes, 0x88, kQ4BlockQsBytes);
    std::memset(tile + j * kQ4BlockBytes + kQ4BlockQsBytes, 0, kQ4BlockBytes - kQ4BlockQsBytes);
  }
}

// Stores row r of block j: scale bits and 16 Q4_0-ordered bytes (low nibble k i, high nibble k i+16).
inline void put_q4_block(uint8_t* tile, int r, int64_t j, uint16_t d, const uint8_t* qs) {
  uint8_t* rec = tile + j * kQ4BlockBytes;
  for (int c = 0; c < 4; ++c) std::memcpy(rec + c * kQ4ChunkBytes + 4 * r, qs + 4 * c, 4);
  std::memcpy(rec + kQ4BlockQsBytes + 2 * r, &d, 2);
}

// Quantizes 32 finite floats into Q4_0-ordered bytes; returns false when the scale overflows fp16.
bool quantize_q4_block(const float* x, uint16_t* dh_out, uint8_t* qs) {
  // The first x of largest |x|: for finite floats |x| orders like its bits as an int32.
  int32_t abits = -1;
  int at = 0;
  for (int i = 0; i < kQ4Block; ++i) {
    int32_t b;
    std::memcpy(&b, &x[i], 4);
    b &= 0x7fffffff;
    if (b > abits) {
      abits = b;
      at = i;
    }
  }
  const uint16_t dh = f32_to_fp16(x[at] / -8.0f);
  *dh_out = 0;
  std::memset(qs, 0x88, 16);
  if (!half_finite(dh)) return false;
  const float d = fp16_to_f32(dh);
  if (d == 0.0f) return true;
  *dh_out = dh;
  constexpr float kRound = 12582912.0f;  // 1.5 * 2^23: round half to even for |v| < 2^22 (here <= 12)
  uint8_t u[kQ4Block];
  for (int i = 0; i < kQ4Block; ++i) {
    float v = (x[i] / d + kRound) - kRound;
    v = v > 7.0f ? 7.0f : (v < -8.0f ? -8.0f : v);
    u[i] = static_cast<uint8_t>(static_cast<int32_t>(v) + 8);
  }
  for (int i = 0; i < 16; ++i) qs[i] = static_cast<uint8_t>(u[i] | (u[i + 16] << 4));
  return true;
}

// Float-source Q4 repack over tiles; `load` fills 32 floats of row m, block j and returns whether the
// block is valid (finite).
template <typename Load>
int64_t repack_float_q4(int64_t M, int64_t K, uint8_t* data, int64_t tile0, int64_t tile1, Load load) {
  const int64_t nb = K / kQ4Block, tb = q4_tile_bytes(K);
  int64_t invalid = 0;
  float x[kQ4Block];
  uint8_t qs[16];
  for (int64_t t = tile0; t < tile1; ++t) {
    uint8_t* tile = data + t * tb;
    clear_q4_tile(tile, nb);
    for (int r = 0; r < kQ4Rows; ++r) {
      const int64_t m = t * kQ4Rows + r;
      if (m >= M) break;
      for (int64_t j = 0; j < nb; ++j) {
        uint16_t dh = 0;
        if (!load(m, j, x) || !quantize_q4_block(x, &dh, qs)) {
          ++invalid;
          continue;  // the tile is already zero
        }
        put_q4_block(tile, r, j, dh, qs);
      }
    }
  }
  return invalid;
}

}  // namespace

int64_t repack_q4_from_q4_0(const uint8_t* src, int64_t M, int64_t K, uint8_t* data, int64_t tile0,
                            int64_t tile1) {
  const int64_t nb = K / kQ4Block, tb = q4_tile_bytes(K);
  int64_t invalid = 0;
  for (int64_t t = tile0; t < tile1; ++t) {
    uint8_t* tile = data + t * tb;
    clear_q4_tile(tile, nb);
    for (int r = 0; r < kQ4Rows; ++r) {
      const int64_t m = t * kQ4Rows + r;
      if (m >= M) break;
      for (int64_t j = 0; j < nb; ++j) {
        const uint8_t* blk = src + (m * nb + j) * kQ4_0BlockBytes;  // {d, qs[16]}
        uint16_t d;
        std::memcpy(&d, blk, 2);
        if (!half_finite(d)) {
          ++invalid;
          continue;
        }
        put_q4_block(tile, r, j, d, blk + 2);
      }
    }
  }
  return invalid;
}

int64_t repack_q4_from_f16(const uint16_t* src, int64_t lds, int64_t M, int64_t K, uint8_t* data, int64_t tile0,
                           int64_t tile1) {
  return repack_float_q4(M, K, data, tile0, tile1, [&](int64_t m, int64_t j, float* x) {
    const uint16_t* s = src + m * lds + j * kQ4Block;
    int bad = 0;
    for (int i = 0; i < kQ4Block; ++i) {
      bad |= (s[i] & 0x7c00) == 0x7c00;
      x[i] = half_bits_to_f32(s[i]);
    }
    return bad == 0;
  });
}

int64_t repack_q4_from_bf16(const uint16_t* src, int64_t lds, int64_t M, int64_t K, uint8_t* data, int64_t tile0,
                            int64_t tile1) {
  return repack_float_q4(M, K, data, tile0, tile1, [&](int64_t m, int64_t j, float* x) {
    const uint16_t* s = src + m * lds + j * kQ4Block;
    int bad = 0;
    for (int i = 0; i < kQ4Block; ++i) {
      bad |= (s[i] & 0x7f80) == 0x7f80;
      const uint32_t bits = static_cast<uint32_t>(s[i]) << 16;
      std::memcpy(&x[i], &bits, 4);
    }
    return bad == 0;
  });
}

int64_t repack_q4_from_f32(const float* src, int64_t lds, int64_t M, int64_t K, uint8_t* data, int64_t tile0,
                           int64_t tile1) {
  return repack_float_q4(M, K, data, tile0, tile1, [&](int64_t m, int64_t j, float* x) {
    const float* s = src + m * lds + j * kQ4Block;
    int bad = 0;
    for (int i = 0; i < kQ4Block; ++i) {
      bad |= !std::isfinite(s[i]);
      x[i] = s[i];
    }
    return bad == 0;
  });
}

int64_t repack_q4_from_q8_0(const uint8_t* src, int64_t M, int64_t K, uint8_t* data, int64_t tile0,
                            int64_t tile1) {
  const int64_t nb = K / kQ4Block;
  return repack_float_q4(M, K, data, tile0, tile1, [&](int64_t m, int64_t j, float* x) {
    const uint8_t* blk = src + (m * nb + j) * kQ8_0BlockBytes;  // {d, qs[32]}
    uint16_t dh;
    std::memcpy(&dh, blk, 2);
    if (!half_finite(dh)) return false;
    const float d = half_bits_to_f32(dh);
    for (int i = 0; i < kQ4Block; ++i) x[i] = d * static_cast<float>(static_cast<int8_t>(blk[2 + i]));
    return true;
  });
}

void unpack_q4_to_q4_0(const uint8_t* data, int64_t M, int64_t K, uint8_t* dst) {
  const int64_t nb = K / kQ4Block, tb = q4_tile_bytes(K);
  for (int64_t m = 0; m < M; ++m) {
    const int64_t r = m % kQ4Rows;
    const uint8_t* tile = data + (m / kQ4Rows) * tb;
    for (int64_t j = 0; j < nb; ++j) {
      uint8_t* out = dst + (m * nb + j) * kQ4_0BlockBytes;
      const uint8_t* rec = tile + j * kQ4BlockBytes;
      std::memcpy(out, rec + kQ4BlockQsBytes + 2 * r, 2);
      for (int c = 0; c < 4; ++c) std::memcpy(out + 2 + 4 * c, rec + c * kQ4ChunkBytes + 4 * r, 4);
    }
  }
}

void unpack_q8_to_q8_0(const uint8_t* data, int64_t M, int64_t K, uint8_t* dst) {
  const int64_t nb = K / kQ8Block, tb = q8_tile_bytes(K);
  for (int64_t m = 0; m < M; ++m) {
    const int64_t r = m % kQ8Rows;
    const uint8_t* tile = data + (m / kQ8Rows) * tb;
    for (int64_t j = 0; j < nb; ++j) {
      uint8_t* out = dst + (m * nb + j) * kQ8_0BlockBytes;
      std::memcpy(out, tile + j * kQ8BlockBytes + kQ8BlockQsBytes + 2 * r, 2);
      for (int g = 0; g < 8; ++g) std::memcpy(out + 2 + 4 * g, tile + j * kQ8BlockBytes + g * kQ8GroupBytes + 4 * r, 4);
    }
  }
}

int64_t repack_f16t(const uint16_t* src, int64_t M, int64_t K, uint16_t* dst, int64_t tile0, int64_t tile1) {
  int64_t bad = 0;
  // 32 rows x 64 columns at a time: 32 row segments of 128 bytes read, 64 lines of 64 bytes written.
  constexpr int64_t kCols = 64;
  for (int64_t t = tile0; t < tile1; ++t) {
    uint16_t* dt = dst + t * K * kF16TRows;  // [K, 32]
    const int64_t m0 = t * kF16TRows;
    const int rows = static_cast<int>(std::min<int64_t>(kF16TRows, M - m0));
    for (int64_t k0 = 0; k0 < K; k0 += kCols) {
      const int64_t k1 = std::min(K, k0 + kCols);
      for (int r = 0; r < kF16TRows; ++r) {
        if (r >= rows) {
          for (int64_t k = k0; k < k1; ++k) dt[k * kF16TRows + r] = 0;
          continue;
        }
        const uint16_t* sr = src + (m0 + r) * K;
        for (int64_t k = k0; k < k1; ++k) {
          const uint16_t h = sr[k];
          bad += (h & 0x7c00u) == 0x7c00u;
          dt[k * kF16TRows + r] = h;
        }
      }
    }
  }
  return bad;
}

}  // namespace bitllm
