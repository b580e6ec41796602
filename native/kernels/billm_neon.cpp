// NEON (ARMv8.0) BiLLM GEMM on BR16, bit-exact to billm_scalar.cpp (layout and contract in billm.h);
// the fill picks the sdot variant of billm_neondot.cpp when the CPU has dotprod.
//
// Lanes = rows: the 16 rows of a tile in four int32x4 (rows 4k .. 4k+3 = bytes 2k, 2k+1 of a plane
// word). Each 16 bits become 16 byte masks (two vdup + vtst against the bit of each byte); AND with the
// group's 4 activations (replicated per lane) keeps the selected codes (T: σ & q; qG = G & q gives GB,
// σ & qG gives PB; salient columns: compact s1 / res words against qs) and vpadal adds pairs into int16
// (|lane| <= 32 * 256 per block), widened once per block by vpaddl. The epilogue is the contract's
// order on 4 rows at a time (separate vmul / vadd, built with -ffp-contract=off).
#include <algorithm>
#include <cstring>

#include "billm_neon.h"

namespace bitllm {

namespace {

void billm_gemm_neon(const BillmMat& w, const BillmActs& a, float* y, int64_t ldy, int64_t tile0, int64_t tile1) {
  const int64_t nb = w.K / kBillmBlock, tile_bytes = w.boff[nb];
  static const uint8_t kBits[16] = {1, 2, 4, 8, 16, 32, 64, 128, 1, 2, 4, 8, 16, 32, 64, 128};
  const uint8x16_t bitsel = vld1q_u8(kBits);
  for (int64_t t = tile0; t < tile1; ++t) {
    const uint8_t* tile = w.data + t * tile_bytes;  // [tile_bytes]
    const int64_t rows = std::min<int64_t>(kBillmRows, w.M - t * kBillmRows);
    for (int64_t b = 0; b < a.B; ++b) {
      float32x4_t acc[4];
      for (int k = 0; k < 4; ++k) acc[k] = vdupq_n_f32(0.0f);
      for (int64_t j = 0; j < nb; ++j) {
        const uint8_t* rec = tile + w.boff[j];  // [768 + 16 ng]
        const int ng = w.ngroups[j];
        const int8_t* q = a.q + b * a.ldq + j * kBillmBlock;      // [128]
        const int8_t* qs = a.qs + (b * nb + j) * kBillmBlock;     // [128]
        const uint8_t* sc = rec + 512 + 16 * ng;                  // [8][16] fp16
        for (int k = 0; k < 4; ++k) {
          int16x8_t t16 = vdupq_n_s16(0), ps16 = t16, gb16 = t16, pb16 = t16, pr16 = t16;
          for (int g = 0; g < kBillmGroups; ++g) {
            const int8x16_t es = billm_expand16(rec + 8 * g + 2 * k, bitsel), eg = billm_expand16(rec + 256 + 8 * g + 2 * k, bitsel);
            const int8x16_t xq = billm_bcast4(q + 4 * g);
            const int8x16_t qg = vandq_s8(eg, xq);  // q at G = 1
            t16 = vpadalq_s8(t16, vandq_s8(es, xq));
            pb16 = vpadalq_s8(pb16, vandq_s8(es, qg));
            gb16 = vpadalq_s8(gb16, qg);
          }
          for (int g = 0; g < ng; ++g) {
            const int8x16_t x = billm_bcast4(qs + 4 * g);
            ps16 = vpadalq_s8(ps16, vandq_s8(billm_expand16(rec + 512 + 8 * g + 2 * k, bitsel), x));
            pr16 = vpadalq_s8(pr16, vandq_s8(billm_expand16(rec + 512 + 8 * (ng + g) + 2 * k, bitsel), x));
          }
          const int32x4_t tt = vpaddlq_s16(t16), ps = vpaddlq_s16(ps16), gb = vpaddlq_s16(gb16);
          const int32x4_t pb = vpaddlq_s16(pb16), pr = vpaddlq_s16(pr16);
          acc[k] = vaddq_f32(acc[k], billm_epilogue(sc, k, tt, gb, pb, ps, pr, a.ssum[b * nb + j], a.bsum[b * nb + j]));
        }
      }
      float out[kBillmRows];
      const float32x4_t s = vdupq_n_f32(a.scale[b]);
      for (int k = 0; k < 4; ++k) vst1q_f32(out + 4 * k, vdivq_f32(acc[k], s));
      std::memcpy(y + b * ldy + t * kBillmRows, out, static_cast<size_t>(rows) * sizeof(float));
    }
  }
}

}  // namespace

void fill_billm_neon(KernelTable& t, const CpuFeatures& f) {
  t.billm_gemm = f.dotprod ? billm_gemm_neondot : billm_gemm_neon;
  t.v_billm = f.dotprod ? "neon-dotprod" : "neon";
}

}  // namespace bitllm
