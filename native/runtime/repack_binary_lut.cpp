#include "repack_binary_lut.h"

#include <cstring>

#include "../kernels/binary.h"

namespace bitllm {

namespace {

// Writes the dword of every row of blocks [blk0, blk1) from row_dword(m, kc) for m < M, 0 past M.
template <typename RowDword>
void pack_blocks(int64_t M, int64_t K, uint8_t* bits, int64_t blk0, int64_t blk1, RowDword row_dword) {
  const int64_t kchunks = K / kB1lKStep;
  for (int64_t t = blk0; t < blk1; ++t)
    for (int64_t kc = 0; kc < kchunks; ++kc) {
      uint8_t* chunk = bits + (t * kchunks + kc) * kB1lChunkBytes;  // [256]
      for (int r = 0; r < kB1lRows; ++r) {
        const int64_t m = t * kB1lRows + r;
        const uint32_t v = m < M ? row_dword(m, kc) : 0u;
        std::memcpy(chunk + 4 * r, &v, 4);
      }
    }
}

}  // namespace

void pack_b1l_from_signs(const int8_t* signs, int64_t lds, int64_t M, int64_t K, uint8_t* bits, int64_t blk0,
                         int64_t blk1) {
  pack_blocks(M, K, bits, blk0, blk1, [&](int64_t m, int64_t kc) {
    const int8_t* s = signs + m * lds + kc * kB1lKStep;  // [32]
    uint32_t v = 0;
    for (int i = 0; i < kB1lKStep; ++i) v |= static_cast<uint32_t>(s[i] >= 0) << i;
    return v;
  });
}

void pack_b1l_from_b1r16(const uint8_t* b1r16, int64_t M, int64_t K, uint8_t* bits, int64_t blk0, int64_t blk1) {
  const int64_t r16_chunks = K / kB1KStep;
  pack_blocks(M, K, bits, blk0, blk1, [&](int64_t m, int64_t kc) {
    const int64_t tile = m / kB1Rows, r = m % kB1Rows;
    // Row r's uint64 in B1R16 chunk kc/2; its dword kc%2 (little-endian: bits 0..31, then 32..63).
    const uint8_t* p = b1r16 + (tile * r16_chunks + kc / 2) * kB1ChunkBytes + 8 * r + 4 * (kc % 2);  // [4]
    uint32_t v;
    std::memcpy(&v, p, 4);
    return v;
  });
}

void unpack_b1l_to_signs(const uint8_t* bits, int64_t M, int64_t K, int8_t* signs, int64_t lds) {
  const int64_t kchunks = K / kB1lKStep;
  for (int64_t m = 0; m < M; ++m) {
    const int64_t t = m / kB1lRows, r = m % kB1lRows;
    for (int64_t kc = 0; kc < kchunks; ++kc) {
      uint32_t v;
      std::memcpy(&v, bits + (t * kchunks + kc) * kB1lChunkBytes + 4 * r, 4);
      int8_t* s = signs + m * lds + kc * kB1lKStep;  // [32]
      for (int i = 0; i < kB1lKStep; ++i) s[i] = ((v >> i) & 1) ? 1 : -1;
    }
  }
}

}  // namespace bitllm
