// BiLLM planes -> BR16 tiles; see repack_billm.h and the layout in kernels/billm.h.
#include "repack_billm.h"

#include <cstring>

namespace bitllm {

namespace {

inline uint64_t load_u64(const uint8_t* p) {
  uint64_t v;
  std::memcpy(&v, p, 8);
  return v;
}

}  // namespace

void billm_residual_layout(const uint8_t* salient, int64_t K, int32_t* roff, int32_t* counts) {
  const int64_t nb = K / kBillmBlock;
  roff[0] = 0;
  for (int64_t j = 0; j < nb; ++j) {
    const int c = billm_block_salient(salient, j);
    counts[j] = c;
    roff[j + 1] = roff[j] + (c + 7) / 8;
  }
}

void pack_billm_br16(const uint8_t* salient, const uint8_t* signs, const uint8_t* groups, const uint8_t* residual,
                     const uint16_t* scalars, int64_t M, int64_t K, const int32_t* boff, const int32_t* ngroups,
                     const int32_t* roff, const int32_t* counts, uint8_t* data, int64_t tile0, int64_t tile1) {
  const int64_t nb = K / kBillmBlock, row_bytes = K / 8, tile_bytes = boff[nb], R = roff[nb];
  uint64_t sig[kBillmGroups], grp[kBillmGroups], s1[kBillmGroups], s2[kBillmGroups];
  int cols[kBillmBlock];  // the block's salient columns, ascending
  for (int64_t j = 0; j < nb; ++j) {
    const uint8_t* sal = salient + j * (kBillmBlock / 8);
    const uint64_t keep[2] = {~load_u64(sal), ~load_u64(sal + 8)};
    int ns = 0;
    for (int h = 0; h < 2; ++h)
      for (uint64_t v = ~keep[h]; v; v &= v - 1) cols[ns++] = 64 * h + __builtin_ctzll(v);
    const int ng = ngroups[j], cnt = counts[j];
    for (int64_t t = tile0; t < tile1; ++t) {
      uint8_t* rec = data + t * tile_bytes + boff[j];
      std::memset(sig, 0, sizeof sig);
      std::memset(grp, 0, sizeof grp);
      std::memset(s1, 0, sizeof s1);
      std::memset(s2, 0, sizeof s2);
      uint8_t* sc = rec + 512 + 16 * ng;  // [8][16] fp16, little-endian
      std::memset(sc, 0, 2 * kBillmScalars * kBillmRows);
      for (int r = 0; r < kBillmRows; ++r) {
        const int64_t m = t * kBillmRows + r;
        if (m >= M) break;  // padding rows stay 0
        const uint8_t* srow = signs + m * row_bytes + 16 * j;
        const uint8_t* grow = groups + m * row_bytes + 16 * j;
        // Sign and group words of the non-salient columns: word g takes the row's bits of columns
        // 4g .. 4g + 3 at bits 4r .. 4r + 3.
        for (int h = 0; h < 2; ++h) {
          const uint64_t sv = load_u64(srow + 8 * h) & keep[h], gv = load_u64(grow + 8 * h) & keep[h];
          for (int n = 0; n < 16; ++n) {
            sig[16 * h + n] |= ((sv >> (4 * n)) & 0xF) << (4 * r);
            grp[16 * h + n] |= ((gv >> (4 * n)) & 0xF) << (4 * r);
          }
        }
        // s1: the row's signs at the salient columns, compacted in column order.
        for (int i = 0; i < ns; ++i)
          s1[i >> 2] |= static_cast<uint64_t>((srow[cols[i] >> 3] >> (cols[i] & 7)) & 1) << (4 * r + (i & 3));
        // s2: the row's residual bits of block j, already compact; bits past nS_j stay 0.
        const uint8_t* res = residual + m * R + roff[j];
        for (int n = 0; 4 * n < cnt; ++n) {
          uint64_t nib = (res[n >> 1] >> (4 * (n & 1))) & 0xF;
          if (cnt - 4 * n < 4) nib &= (1u << (cnt - 4 * n)) - 1u;
          s2[n] |= nib << (4 * r);
        }
        const uint16_t* f = scalars + (m * nb + j) * kBillmScalars;
        for (int l = 0; l < kBillmScalars; ++l) {
          sc[2 * (l * kBillmRows + r)] = static_cast<uint8_t>(f[l] & 0xff);
          sc[2 * (l * kBillmRows + r) + 1] = static_cast<uint8_t>(f[l] >> 8);
        }
      }
      std::memcpy(rec, sig, sizeof sig);
      std::memcpy(rec + 256, grp, sizeof grp);
      std::memcpy(rec + 512, s1, 8 * static_cast<size_t>(ng));
      std::memcpy(rec + 512 + 8 * ng, s2, 8 * static_cast<size_t>(ng));
    }
  }
}

}  // namespace bitllm
