#include "repack_ternary_sparse.h"

namespace bitllm {

void pack_sparse_from_t2(const uint8_t* codes, int64_t M, int64_t K, uint8_t* data, int64_t blk0, int64_t blk1) {
  const int64_t tile_bytes = K / kT2KStep * kT2ChunkBytes;
  for (int64_t blk = blk0; blk < blk1; ++blk) {
    uint8_t* out = data + blk * kTsLineBytes;  // column k's line at k * ts_col_bytes(M)
    for (int64_t k = 0; k < K; ++k) {
      const int64_t chunk = (k / kT2KStep) * kT2ChunkBytes + (k % 4);
      const int shift = 2 * static_cast<int>((k % kT2KStep) / 4);
      uint8_t* line = out + k * ts_col_bytes(M);  // [64]
      for (int p = 0; p < kTsLineBytes; ++p) {
        uint8_t v = 0;
        for (int l = 0; l < 4; ++l) {
          const int64_t m = blk * kTsRows + ts_row(p, l);
          int c = 1;
          if (m < M) {
            c = (codes[(m / kT2Rows) * tile_bytes + chunk + 4 * (m % kT2Rows)] >> shift) & 3;
            if (c == 3) c = 1;
          }
          v = static_cast<uint8_t>(v | c << (2 * l));
        }
        line[p] = v;
      }
    }
  }
}

void unpack_sparse_to_trits(const uint8_t* data, int64_t M, int64_t K, int8_t* trits, int64_t ldt) {
  for (int64_t blk = 0; blk < ts_blocks(M); ++blk)
    for (int64_t k = 0; k < K; ++k) {
      const uint8_t* line = data + k * ts_col_bytes(M) + blk * kTsLineBytes;  // [64]
      for (int p = 0; p < kTsLineBytes; ++p)
        for (int l = 0; l < 4; ++l) {
          const int64_t m = blk * kTsRows + ts_row(p, l);
          if (m < M) trits[m * ldt + k] = static_cast<int8_t>(((line[p] >> (2 * l)) & 3) - 1);
        }
    }
}

}  // namespace bitllm
