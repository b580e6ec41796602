#include "repack_binary.h"

#include <cmath>
#include <cstring>

#include "repack_ternary.h"  // fp16_to_f32

namespace bitllm {

namespace {

// Packs one 16-row tile from a per-row getter: row_bytes(m, kc, out8) writes the 8 B1R16 bytes of row
// m < M for chunk kc. Padded rows are zero.
template <typename RowBytes>
void pack_tile(int64_t t, int64_t M, int64_t K, uint8_t* bits, RowBytes row_bytes) {
  const int64_t kchunks = K / kB1KStep;
  uint8_t* tile = bits + t * kchunks * kB1ChunkBytes;  // [K/64, 128]
  for (int64_t kc = 0; kc < kchunks; ++kc) {
    uint8_t* chunk = tile + kc * kB1ChunkBytes;  // [128]
    for (int r = 0; r < kB1Rows; ++r) {
      const int64_t m = t * kB1Rows + r;
      if (m < M) {
        row_bytes(m, kc, chunk + 8 * r);
      } else {
        std::memset(chunk + 8 * r, 0, 8);
      }
    }
  }
}

}  // namespace

void pack_b1_from_signs(const int8_t* signs, int64_t lds, int64_t M, int64_t K, uint8_t* bits, int64_t tile0,
                        int64_t tile1) {
  for (int64_t t = tile0; t < tile1; ++t)
    pack_tile(t, M, K, bits, [&](int64_t m, int64_t kc, uint8_t* out) {
      const int8_t* s = signs + m * lds + kc * kB1KStep;  // [64]
      for (int j = 0; j < 8; ++j) {
        uint32_t v = 0;
        for (int i = 0; i < 8; ++i) v |= static_cast<uint32_t>(s[8 * j + i] >= 0) << i;
        out[j] = static_cast<uint8_t>(v);
      }
    });
}

void unpack_b1_to_signs(const uint8_t* bits, int64_t M, int64_t K, int8_t* signs, int64_t lds) {
  const int64_t kchunks = K / kB1KStep;
  for (int64_t m = 0; m < M; ++m) {
    const int64_t t = m / kB1Rows, r = m % kB1Rows;
    for (int64_t kc = 0; kc < kchunks; ++kc) {
      const uint8_t* row = bits + (t * kchunks + kc) * kB1ChunkBytes + 8 * r;  // [8]
      int8_t* s = signs + m * lds + kc * kB1KStep;                             // [64]
      for (int j = 0; j < 8; ++j)
        for (int i = 0; i < 8; ++i) s[8 * j + i] = ((row[j] >> i) & 1) ? 1 : -1;
    }
  }
}

void repack_b1_from_f32(const float* w, int64_t ldw, int64_t M, int64_t K, uint8_t* bits, int64_t tile0,
                        int64_t tile1) {
  for (int64_t t = tile0; t < tile1; ++t)
    pack_tile(t, M, K, bits, [&](int64_t m, int64_t kc, uint8_t* out) {
      const float* s = w + m * ldw + kc * kB1KStep;  // [64]
      for (int j = 0; j < 8; ++j) {
        uint32_t v = 0;
        for (int i = 0; i < 8; ++i) v |= static_cast<uint32_t>(!(s[8 * j + i] < 0.0f)) << i;
        out[j] = static_cast<uint8_t>(v);
      }
    });
}

void repack_b1_from_onebit(const uint8_t* src, int64_t M, int64_t K, uint8_t* bits, int64_t tile0,
                           int64_t tile1) {
  const int64_t row_bytes = K / 8;
  for (int64_t t = tile0; t < tile1; ++t)
    pack_tile(t, M, K, bits, [&](int64_t m, int64_t kc, uint8_t* out) {
      const uint8_t* s = src + m * row_bytes + kc * 8;  // [8]
      for (int j = 0; j < 8; ++j) out[j] = static_cast<uint8_t>(~s[j]);
    });
}

int64_t repack_b1_from_q1_0(const uint8_t* src, int64_t M, int64_t K, uint8_t* bits, float* row_scales,
                            int64_t tile0, int64_t tile1) {
  const int64_t nblocks = K / kQ1BlockK, row_bytes = nblocks * kQ1BlockBytes;
  int64_t bad_rows = 0;
  for (int64_t t = tile0; t < tile1; ++t) {
    for (int r = 0; r < kB1Rows; ++r) {
      const int64_t m = t * kB1Rows + r;
      if (m >= M) {
        row_scales[m] = 0.0f;
        continue;
      }
      const uint8_t* row = src + m * row_bytes;  // [K/128, 18]
      uint16_t h;
      std::memcpy(&h, row, 2);
      const float s = std::fabs(fp16_to_f32(h));
      bool ok = std::isfinite(s);
      for (int64_t j = 0; j < nblocks && ok; ++j) {
        std::memcpy(&h, row + j * kQ1BlockBytes, 2);
        ok = std::fabs(fp16_to_f32(h)) == s;
      }
      row_scales[m] = s;
      bad_rows += ok ? 0 : 1;
    }
    pack_tile(t, M, K, bits, [&](int64_t m, int64_t kc, uint8_t* out) {
      // A 64-k chunk is one half of a 128-element block.
      const uint8_t* blk = src + m * row_bytes + (kc / 2) * kQ1BlockBytes;  // [18]
      uint16_t h;
      std::memcpy(&h, blk, 2);
      const uint8_t flip = std::signbit(fp16_to_f32(h)) ? 0xff : 0x00;
      const uint8_t* qs = blk + 2 + (kc % 2) * 8;  // [8]
      for (int j = 0; j < 8; ++j) out[j] = static_cast<uint8_t>(qs[j] ^ flip);
    });
  }
  return bad_rows;
}

}  // namespace bitllm
