#include "repack_ternary.h"

#include <cmath>
#include <cstring>
#include <vector>

namespace bitllm {

float fp16_to_f32(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000) << 16;
  uint32_t exp = (h >> 10) & 0x1f, mant = h & 0x3ff, bits;
  if (exp == 0) {
    if (mant == 0) {
      bits = sign;
    } else {  // subnormal: normalize
      exp = 127 - 15 + 1;
      while ((mant & 0x400) == 0) {
        mant <<= 1;
        --exp;
      }
      bits = sign | (exp << 23) | ((mant & 0x3ff) << 13);
    }
  } else if (exp == 0x1f) {
    bits = sign | 0x7f800000u | (mant << 13);
  } else {
    bits = sign | ((exp + 127 - 15) << 23) | (mant << 13);
  }
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

uint16_t f32_to_fp16(float f) {
  uint32_t x;
  std::memcpy(&x, &f, 4);
  const uint32_t sign = (x >> 16) & 0x8000;
  const uint32_t exp = (x >> 23) & 0xff;
  uint32_t mant = x & 0x7fffff;
  if (exp == 0xff) return static_cast<uint16_t>(sign | 0x7c00 | (mant ? 0x200 : 0));
  int32_t e = static_cast<int32_t>(exp) - 127 + 15;
  if (e >= 0x1f) return static_cast<uint16_t>(sign | 0x7c00);
  if (e <= 0) {  // subnormal or zero, round half to even
    if (e < -10) return static_cast<uint16_t>(sign);
    mant |= 0x800000;
    const uint32_t shift = static_cast<uint32_t>(14 - e);
    uint32_t h = mant >> shift;
    const uint32_t rem = mant & ((1u << shift) - 1), half = 1u << (shift - 1);
    if (rem > half || (rem == half && (h & 1))) ++h;
    return static_cast<uint16_t>(sign | h);
  }
  uint32_t h = (static_cast<uint32_t>(e) << 10) | (mant >> 13);
  const uint32_t rem = mant & 0x1fff;
  if (rem > 0x1000 || (rem == 0x1000 && (h & 1))) ++h;  // may carry into the exponent: correct
  return static_cast<uint16_t>(sign | h);
}

namespace {

// Packs one 16-row tile from rows decoded into codes (0..2, one byte each). `decode(m, out)` fills
// out[0..K) for row m < M; rows past M are code 1 (zero weight).
template <typename DecodeRow>
void pack_tile(int64_t t, int64_t M, int64_t K, uint8_t* codes, uint8_t* rows /* [16, K] scratch */,
               DecodeRow decode) {
  for (int r = 0; r < kT2Rows; ++r) {
    const int64_t m = t * kT2Rows + r;
    if (m < M)
      decode(m, rows + r * K);
    else
      std::memset(rows + r * K, 1, static_cast<size_t>(K));
  }
  const int64_t kchunks = K / kT2KStep;
  uint8_t* tile = codes + t * kchunks * kT2ChunkBytes;  // [K/16, 64]
  for (int64_t kc = 0; kc < kchunks; ++kc) {
    uint8_t* c = tile + kc * kT2ChunkBytes;
    for (int r = 0; r < kT2Rows; ++r) {
      const uint8_t* src = rows + r * K + kc * kT2KStep;  // [16] codes of row r
      for (int i = 0; i < 4; ++i)
        c[4 * r + i] = static_cast<uint8_t>(src[i] | (src[4 + i] << 2) | (src[8 + i] << 4) | (src[12 + i] << 6));
    }
  }
}

// Runs pack_tile over [tile0, tile1) with one scratch buffer.
template <typename DecodeRow>
void pack_tiles(int64_t tile0, int64_t tile1, int64_t M, int64_t K, uint8_t* codes, DecodeRow decode) {
  std::vector<uint8_t> rows(static_cast<size_t>(kT2Rows * K));
  for (int64_t t = tile0; t < tile1; ++t) pack_tile(t, M, K, codes, rows.data(), decode);
}

}  // namespace

void pack_t2_from_trits(const int8_t* trits, int64_t ldt, int64_t M, int64_t K, uint8_t* codes,
                        int64_t tile0, int64_t tile1) {
  pack_tiles(tile0, tile1, M, K, codes, [&](int64_t m, uint8_t* out) {
    const int8_t* row = trits + m * ldt;
    for (int64_t k = 0; k < K; ++k) out[k] = static_cast<uint8_t>((row[k] > 0 ? 1 : (row[k] < 0 ? -1 : 0)) + 1);
  });
}

void unpack_t2_to_trits(const uint8_t* codes, int64_t M, int64_t K, int8_t* trits, int64_t ldt) {
  const int64_t kchunks = K / kT2KStep;
  for (int64_t m = 0; m < M; ++m) {
    const int64_t t = m / kT2Rows, r = m % kT2Rows;
    for (int64_t k = 0; k < K; ++k) {
      const int64_t kc = k / kT2KStep, l = (k % kT2KStep) / 4, i = k % 4;
      const uint8_t byte = codes[(t * kchunks + kc) * kT2ChunkBytes + 4 * r + i];
      trits[m * ldt + k] = static_cast<int8_t>(((byte >> (2 * l)) & 3) - 1);
    }
  }
}

int64_t repack_t2_from_i2s(const uint8_t* src, int64_t M, int64_t K, uint8_t* codes, int64_t tile0,
                           int64_t tile1) {
  pack_tiles(tile0, tile1, M, K, codes, [&](int64_t m, uint8_t* out) {
    int64_t e = m * K, k = 0;
    // Element by element up to a 128-block boundary (rows need not start on one), then whole blocks.
    auto one = [&](int64_t idx) {
      const int64_t j = idx % 128;
      const uint32_t v = (src[(idx / 128) * 32 + j % 32] >> (6 - 2 * (j / 32))) & 3;
      return static_cast<uint8_t>(v == 3 ? 1 : v);
    };
    for (; k < K && (e + k) % 128 != 0; ++k) out[k] = one(e + k);
    for (; k + 128 <= K; k += 128) {
      const uint8_t* blk = src + ((e + k) / 128) * 32;  // [32]
      for (int l = 0; l < 4; ++l)
        for (int j = 0; j < 32; ++j) {
          const uint8_t v = (blk[j] >> (6 - 2 * l)) & 3;
          out[k + 32 * l + j] = v == 3 ? 1 : v;
        }
    }
    for (; k < K; ++k) out[k] = one(e + k);
  });
  return 0;
}

int64_t repack_t2_from_tq2(const uint8_t* src, int64_t M, int64_t K, uint8_t* codes, float* block_scales,
                           int64_t tile0, int64_t tile1) {
  const int64_t nb = K / 256, row_bytes = nb * 66;
  int64_t invalid = 0;
  pack_tiles(tile0, tile1, M, K, codes, [&](int64_t m, uint8_t* out) {
    for (int64_t b = 0; b < nb; ++b) {
      const uint8_t* blk = src + m * row_bytes + b * 66;  // {qs[64], d}
      for (int half = 0; half < 2; ++half)
        for (int l = 0; l < 4; ++l)
          for (int j = 0; j < 32; ++j) {
            uint8_t v = (blk[half * 32 + j] >> (2 * l)) & 3;
            if (v == 3) {
              ++invalid;
              v = 1;
            }
            out[b * 256 + half * 128 + 32 * l + j] = v;
          }
    }
  });
  for (int64_t t = tile0; t < tile1; ++t)
    for (int64_t j = 0; j < nb; ++j)
      for (int r = 0; r < kT2Rows; ++r) {
        const int64_t m = t * kT2Rows + r;
        uint16_t d = 0;
        if (m < M) std::memcpy(&d, src + m * row_bytes + j * 66 + 64, 2);
        block_scales[(t * nb + j) * kT2Rows + r] = m < M ? fp16_to_f32(d) : 0.0f;
      }
  return invalid;
}

int64_t repack_t2_from_tq1(const uint8_t* src, int64_t M, int64_t K, uint8_t* codes, float* block_scales,
                           int64_t tile0, int64_t tile1) {
  static const uint8_t pow3[5] = {1, 3, 9, 27, 81};
  const int64_t nb = K / 256, row_bytes = nb * 54;
  int64_t invalid = 0;
  // Digit n of a byte: (uint8)(byte * 3^n) * 3 >> 8 (the stored byte is ceil(q * 256 / 243)).
  auto digit = [&](uint8_t byte, int n) {
    const uint32_t v = (static_cast<uint32_t>(static_cast<uint8_t>(byte * pow3[n])) * 3) >> 8;
    if (v > 2) {
      ++invalid;
      return static_cast<uint8_t>(1);
    }
    return static_cast<uint8_t>(v);
  };
  pack_tiles(tile0, tile1, M, K, codes, [&](int64_t m, uint8_t* out) {
    for (int64_t b = 0; b < nb; ++b) {
      const uint8_t* blk = src + m * row_bytes + b * 54;  // {qs[48], qh[4], d}
      uint8_t* o = out + b * 256;
      for (int n = 0; n < 5; ++n)
        for (int j = 0; j < 32; ++j) o[32 * n + j] = digit(blk[j], n);
      for (int n = 0; n < 5; ++n)
        for (int j = 0; j < 16; ++j) o[160 + 16 * n + j] = digit(blk[32 + j], n);
      for (int n = 0; n < 4; ++n)
        for (int j = 0; j < 4; ++j) o[240 + 4 * n + j] = digit(blk[48 + j], n);
    }
  });
  for (int64_t t = tile0; t < tile1; ++t)
    for (int64_t j = 0; j < nb; ++j)
      for (int r = 0; r < kT2Rows; ++r) {
        const int64_t m = t * kT2Rows + r;
        uint16_t d = 0;
        if (m < M) std::memcpy(&d, src + m * row_bytes + j * 54 + 52, 2);
        block_scales[(t * nb + j) * kT2Rows + r] = m < M ? fp16_to_f32(d) : 0.0f;
      }
  return invalid;
}

void repack_t2_from_f32(const float* w, int64_t ldw, int64_t M, int64_t K, float gamma, uint8_t* codes,
                        int64_t tile0, int64_t tile1) {
  const float inv = 1.0f / gamma;
  pack_tiles(tile0, tile1, M, K, codes, [&](int64_t m, uint8_t* out) {
    const float* row = w + m * ldw;
    for (int64_t k = 0; k < K; ++k) {
      const float v = std::nearbyint(row[k] * inv);
      out[k] = v >= 1.0f ? 2 : (v <= -1.0f ? 0 : 1);
    }
  });
}

bool t2_uniform_block_scale(const uint8_t* codes, const float* block_scales, int64_t M, int64_t K,
                            float* scale) {
  const int64_t nb = K / kScaleBlockK, kchunks = K / kT2KStep, cpb = kScaleBlockK / kT2KStep;
  bool have = false;
  float s = 0.0f;
  for (int64_t m = 0; m < M; ++m) {
    const int64_t t = m / kT2Rows, r = m % kT2Rows;
    for (int64_t j = 0; j < nb; ++j) {
      bool nonzero = false;
      for (int64_t kc = j * cpb; kc < (j + 1) * cpb && !nonzero; ++kc)
        for (int i = 0; i < 4; ++i)
          if (codes[(t * kchunks + kc) * kT2ChunkBytes + 4 * r + i] != 0x55) nonzero = true;
      if (!nonzero) continue;
      const float d = block_scales[(t * nb + j) * kT2Rows + r];
      if (!have) {
        s = d;
        have = true;
      } else if (!(d == s)) {
        return false;
      }
    }
  }
  *scale = have ? s : 0.0f;
  return true;
}

}  // namespace bitllm
