// NEON BiLLM GEMM on BR16 with the ARMv8.2 dot product (sdot), bit-exact to billm_scalar.cpp (layout
// and contract in billm.h). Compiled with -march=armv8.2-a+dotprod; reached only through
// fill_billm_neon when CpuFeatures::dotprod is set.
//
// Lanes = rows as in billm_neon.cpp (rows 4k .. 4k+3 per int32x4), but the byte masks (-1 / 0 from
// vtst) go straight into vdotq_s32 against the group's 4 activations replicated per lane: each sdot
// adds minus the selected codes of 4 columns to every row's lane (T: σ; GB: G; PB: σ against q & G),
// negated once per block (exact: |sums| <= 128 * 128).
#include <algorithm>
#include <cstring>

#include "billm_neon.h"

namespace bitllm {

void billm_gemm_neondot(const BillmMat& w, const BillmActs& a, float* y, int64_t ldy, int64_t tile0, int64_t tile1) {
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
        const uint8_t* rec = tile + w.boff[j];                 // [768 + 16 ng]
        const int ng = w.ngroups[j];
        const int8_t* q = a.q + b * a.ldq + j * kBillmBlock;   // [128]
        const int8_t* qs = a.qs + (b * nb + j) * kBillmBlock;  // [128]
        const uint8_t* sc = rec + 512 + 16 * ng;               // [8][16] fp16
        for (int k = 0; k < 4; ++k) {
          int32x4_t nt = vdupq_n_s32(0), ngb = nt, npb = nt, nps = nt, npr = nt;  // minus the sums
          for (int g = 0; g < kBillmGroups; ++g) {
            const int8x16_t es = billm_expand16(rec + 8 * g + 2 * k, bitsel), eg = billm_expand16(rec + 256 + 8 * g + 2 * k, bitsel);
            const int8x16_t xq = billm_bcast4(q + 4 * g);
            nt = vdotq_s32(nt, es, xq);
            ngb = vdotq_s32(ngb, eg, xq);
            npb = vdotq_s32(npb, es, vandq_s8(eg, xq));
          }
          for (int g = 0; g < ng; ++g) {
            const int8x16_t x = billm_bcast4(qs + 4 * g);
            nps = vdotq_s32(nps, billm_expand16(rec + 512 + 8 * g + 2 * k, bitsel), x);
            npr = vdotq_s32(npr, billm_expand16(rec + 512 + 8 * (ng + g) + 2 * k, bitsel), x);
          }
          acc[k] = vaddq_f32(acc[k], billm_epilogue(sc, k, vnegq_s32(nt), vnegq_s32(ngb), vnegq_s32(npb), vnegq_s32(nps),
                                                    vnegq_s32(npr), a.ssum[b * nb + j], a.bsum[b * nb + j]));
        }
      }
      float out[kBillmRows];
      const float32x4_t s = vdupq_n_f32(a.scale[b]);
      for (int k = 0; k < 4; ++k) vst1q_f32(out + 4 * k, vdivq_f32(acc[k], s));
      std::memcpy(y + b * ldy + t * kBillmRows, out, static_cast<size_t>(rows) * sizeof(float));
    }
  }
}

}  // namespace bitllm
