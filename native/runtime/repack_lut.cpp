#include "repack_lut.h"

#include <cstring>

namespace bitllm {

int64_t lut_groups(int64_t K) {
  const int64_t nb = lut_blocks(K);
  return nb == 0 ? 0 : (nb - 1) * kLutBlockGroups + lut_block_groups(K, nb - 1);
}

int64_t lut_table_bytes(int64_t K) { return lut_groups(K) * kLutTableBytes; }

int64_t lut_weight_bytes(int64_t M, int64_t K) {
  const int64_t nb = lut_blocks(K);
  if (nb == 0) return 0;
  return lut_record_offset(M, K, nb - 1, 0) + lut_tiles(M) * lut_record_bytes(lut_block_groups(K, nb - 1));
}

namespace {

// Packs tiles [tile0, tile1) from a trit getter: trit(m, k) in {-1, 0, 1} for m < M, k < K.
template <typename Trit>
void pack_tiles(int64_t M, int64_t K, uint8_t* data, int64_t tile0, int64_t tile1, Trit trit) {
  const int64_t nb = lut_blocks(K);
  for (int64_t t = tile0; t < tile1; ++t) {
    for (int64_t j = 0; j < nb; ++j) {
      const int ng = lut_block_groups(K, j);
      uint8_t* rec = data + lut_record_offset(M, K, j, t);  // [lut_record_bytes(ng)]
      std::memset(rec, 0, static_cast<size_t>(lut_record_bytes(ng)));
      const int64_t kend = K < (j + 1) * kScaleBlockK ? K : (j + 1) * kScaleBlockK;
      for (int g = 0; g < ng; ++g) {
        const int64_t k0 = j * kScaleBlockK + int64_t{kLutGroupK} * g;
        uint64_t sign = 0;
        uint8_t* nib = rec + lut_nibble_offset(g & ~1);  // [64]
        for (int r = 0; r < kLutRows; ++r) {
          const int64_t m = t * kLutRows + r;
          int v = 0;
          for (int d = 0; d < kLutGroupK; ++d) {
            const int64_t k = k0 + d;
            v = 3 * v + (m < M && k < kend ? trit(m, k) : 0);
          }
          const int mag = v < 0 ? -v : v;
          nib[lut_row_byte(r)] = static_cast<uint8_t>(nib[lut_row_byte(r)] | (mag << (4 * (g & 1))));
          if (v < 0) sign |= uint64_t{1} << r;
        }
        std::memcpy(rec + lut_sign_offset(g), &sign, 8);
      }
    }
  }
}

}  // namespace

void pack_lut_from_trits(const int8_t* trits, int64_t ldt, int64_t M, int64_t K, uint8_t* data, int64_t tile0,
                         int64_t tile1) {
  pack_tiles(M, K, data, tile0, tile1, [&](int64_t m, int64_t k) {
    const int v = trits[m * ldt + k];
    return v > 0 ? 1 : (v < 0 ? -1 : 0);
  });
}

void pack_lut_from_t2(const uint8_t* codes, int64_t M, int64_t K, uint8_t* data, int64_t tile0, int64_t tile1) {
  const int64_t kchunks = K / kT2KStep;
  pack_tiles(M, K, data, tile0, tile1, [&](int64_t m, int64_t k) {
    const int64_t t = m / kT2Rows, r = m % kT2Rows, kc = k / kT2KStep, l = (k % kT2KStep) / 4, i = k % 4;
    const uint8_t byte = codes[(t * kchunks + kc) * kT2ChunkBytes + 4 * r + i];
    const int code = (byte >> (2 * l)) & 3;
    return code == 3 ? 0 : code - 1;  // code 3 never comes out of the T2R16 packers; read it as 0
  });
}

void unpack_lut_to_trits(const uint8_t* data, int64_t M, int64_t K, int8_t* trits, int64_t ldt) {
  const int64_t nb = lut_blocks(K);
  for (int64_t m = 0; m < M; ++m) {
    const int64_t t = m / kLutRows;
    const int r = static_cast<int>(m % kLutRows);
    for (int64_t j = 0; j < nb; ++j) {
      const int ng = lut_block_groups(K, j);
      const uint8_t* rec = data + lut_record_offset(M, K, j, t);
      for (int g = 0; g < ng; ++g) {
        uint64_t sign;
        std::memcpy(&sign, rec + lut_sign_offset(g), 8);
        const int mag = (rec[lut_nibble_offset(g & ~1) + lut_row_byte(r)] >> (4 * (g & 1))) & 15;
        int v = (sign >> r) & 1 ? -mag : mag;
        // Balanced ternary digits of v, least significant (t2) first.
        int digits[kLutGroupK];
        for (int d = kLutGroupK - 1; d >= 0; --d) {
          int rem = ((v % 3) + 3) % 3;  // 0, 1, 2
          if (rem == 2) rem = -1;
          digits[d] = rem;
          v = (v - rem) / 3;
        }
        for (int d = 0; d < kLutGroupK; ++d) {
          const int64_t k = j * kScaleBlockK + int64_t{kLutGroupK} * g + d;
          if (k < K && k < (j + 1) * kScaleBlockK) trits[m * ldt + k] = static_cast<int8_t>(digits[d]);
        }
      }
    }
  }
}

}  // namespace bitllm
