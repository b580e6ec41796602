#include "repack_td3.h"

#include <cstring>

namespace bitllm {

namespace {

constexpr int64_t kQuadBytes = 64;                 // one quad's nibble vector / tail chunk
constexpr uint8_t kZeroChunkByte = 0x55;           // T2R16 byte of four zero trits (code 1)
constexpr int kQuadsPerT2 = kTd3QuadRows / kT2Rows;  // 1: a quad is one T2R16 row tile

// Nibble |v| (bits 0..3) and sign (bit 4) of the group of T2R16 codes (c0, c1, c2), indexed by
// c0 << 4 | c1 << 2 | c2; code 3 (never written by the T2R16 packers) is read as a zero trit.
struct GroupTable {
  uint8_t e[64];
};
constexpr GroupTable make_group_table() {
  GroupTable g{};
  for (int i = 0; i < 64; ++i) {
    int v = 0;
    for (int d = 0; d < 3; ++d) {
      const int c = (i >> (4 - 2 * d)) & 3;
      v = 3 * v + (c == 3 ? 0 : c - 1);
    }
    g.e[i] = static_cast<uint8_t>((v < 0 ? -v : v) | (v < 0 ? 16 : 0));
  }
  return g;
}
constexpr GroupTable kGroups = make_group_table();
// The arithmetic in pack_td3_from_t2 is this table: spot-check a few entries at compile time.
static_assert(kGroups.e[0] == (13 | 16) && kGroups.e[0b010101] == 0 && kGroups.e[0b101010] == 13 &&
                  kGroups.e[0b000110] == (8 | 16) && kGroups.e[0b111111] == 0,
              "TD3 group map");

}  // namespace

void pack_td3_from_t2(const uint8_t* codes, int64_t M, int64_t K, uint8_t* data, int64_t tile0, int64_t tile1) {
  static_assert(kQuadsPerT2 == 1, "a TD3 quad is one T2R16 tile");
  const int64_t t2tiles = (M + kT2Rows - 1) / kT2Rows, kchunks = K / kT2KStep, nb = td3_blocks(K);
  const int64_t tile_bytes = td3_tile_bytes(K);
  for (int64_t t = tile0; t < tile1; ++t) {
    uint8_t* tile = data + t * tile_bytes;
    for (int64_t j = 0; j < nb; ++j) {
      uint8_t* blk = tile + td3_block_offset(j);
      const int units = td3_block_units(K, j), tails = td3_block_tails(K, j);
      for (int u = 0; u < units; ++u) {
        uint8_t* unit = blk + int64_t{u} * kTd3UnitBytes;  // [320]
        std::memset(unit, 0, kTd3UnitBytes);
        const int64_t qc0 = (j * kScaleBlockK + int64_t{u} * kTd3UnitK) / 4;  // first 4-column group
        for (int q = 0; q < kTd3Quads; ++q) {
          const int64_t t2 = t * kTd3Quads + q;
          if (t2 >= t2tiles) continue;  // all-zero quad: nibbles 0, signs 0
          const uint8_t* src = codes + t2 * kchunks * kT2ChunkBytes;  // this quad's T2R16 tile
          uint8_t* nib = unit + kQuadBytes + q * kQuadBytes;            // [64]
          for (int h = 0; h < 2; ++h) {
            const uint8_t* c[3];
            int sh[3];
            for (int d = 0; d < 3; ++d) {
              const int64_t qc = qc0 + 3 * h + d;
              c[d] = src + (qc / 4) * kT2ChunkBytes;
              sh[d] = static_cast<int>(2 * (qc % 4));
            }
            // Branch-free byte arithmetic (GCC vectorizes it; kGroups is the same map as a table, kept
            // for the tests' reading of the contract): code 3 reads as 1 (a zero trit), s = 9 c0 + 3 c1 + c2
            // = v + 13, so v < 0 is s < 13 and |v| = |s - 13|.
            const int nsh = 4 * h, ssh = td3_sign_bit(q, h);
            const uint8_t* c0 = c[0];
            const uint8_t* c1 = c[1];
            const uint8_t* c2 = c[2];
            for (int p = 0; p < kQuadBytes; ++p) {
              uint8_t x0 = static_cast<uint8_t>((c0[p] >> sh[0]) & 3), x1 = static_cast<uint8_t>((c1[p] >> sh[1]) & 3),
                      x2 = static_cast<uint8_t>((c2[p] >> sh[2]) & 3);
              x0 = static_cast<uint8_t>(x0 ^ (((x0 >> 1) & x0 & 1) << 1));
              x1 = static_cast<uint8_t>(x1 ^ (((x1 >> 1) & x1 & 1) << 1));
              x2 = static_cast<uint8_t>(x2 ^ (((x2 >> 1) & x2 & 1) << 1));
              const uint8_t sum = static_cast<uint8_t>(9 * x0 + 3 * x1 + x2);
              const uint8_t neg = sum < 13 ? 1 : 0;
              const uint8_t mag = static_cast<uint8_t>(neg ? 13 - sum : sum - 13);
              nib[p] = static_cast<uint8_t>(nib[p] | (mag << nsh));
              unit[p] = static_cast<uint8_t>(unit[p] | (neg << ssh));
            }
          }
        }
      }
      for (int c = 0; c < tails; ++c) {
        uint8_t* tail = blk + int64_t{units} * kTd3UnitBytes + int64_t{c} * kTd3TailBytes;  // [256]
        const int64_t kc = (j * kScaleBlockK + int64_t{units} * kTd3UnitK) / kT2KStep + c;
        for (int q = 0; q < kTd3Quads; ++q) {
          const int64_t t2 = t * kTd3Quads + q;
          if (t2 >= t2tiles)
            std::memset(tail + q * kQuadBytes, kZeroChunkByte, kQuadBytes);
          else
            std::memcpy(tail + q * kQuadBytes, codes + (t2 * kchunks + kc) * kT2ChunkBytes, kQuadBytes);
        }
      }
    }
  }
}

void unpack_td3_to_trits(const uint8_t* data, int64_t M, int64_t K, int8_t* trits, int64_t ldt) {
  const int64_t nb = td3_blocks(K), tile_bytes = td3_tile_bytes(K);
  for (int64_t m = 0; m < M; ++m) {
    const int64_t t = m / kTd3Rows;
    const int q = static_cast<int>((m % kTd3Rows) / kTd3QuadRows), r = static_cast<int>(m % kTd3QuadRows);
    int8_t* row = trits + m * ldt;
    for (int64_t j = 0; j < nb; ++j) {
      const uint8_t* blk = data + t * tile_bytes + td3_block_offset(j);
      const int units = td3_block_units(K, j), tails = td3_block_tails(K, j);
      for (int u = 0; u < units; ++u) {
        const uint8_t* unit = blk + int64_t{u} * kTd3UnitBytes;
        const int64_t k0 = j * kScaleBlockK + int64_t{u} * kTd3UnitK;
        for (int s = 0; s < 8; ++s) {
          const int h = s >> 2, i = s & 3, p = 4 * r + i;
          const int mag = (unit[kQuadBytes + q * kQuadBytes + p] >> (4 * h)) & 15;
          const bool neg = (unit[p] >> td3_sign_bit(q, h)) & 1;
          const int byte = neg ? kTd3Negate - kTd3Decode[mag] : kTd3Decode[mag];
          for (int d = 0; d < 3; ++d) row[k0 + 12 * h + 4 * d + i] = static_cast<int8_t>(((byte >> (2 * d)) & 3) - 1);
        }
      }
      for (int c = 0; c < tails; ++c) {
        const uint8_t* chunk = blk + int64_t{units} * kTd3UnitBytes + int64_t{c} * kTd3TailBytes + q * kQuadBytes;
        const int64_t k0 = j * kScaleBlockK + int64_t{units} * kTd3UnitK + int64_t{c} * kTd3TailK;
        for (int l = 0; l < 4; ++l)
          for (int i = 0; i < 4; ++i) {
            const int code = (chunk[4 * r + i] >> (2 * l)) & 3;
            row[k0 + 4 * l + i] = static_cast<int8_t>(code == 3 ? 0 : code - 1);
          }
      }
    }
  }
}

}  // namespace bitllm
