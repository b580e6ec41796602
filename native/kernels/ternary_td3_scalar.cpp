// Scalar TD3 GEMM: the C++ reference every SIMD variant is tested against. It reads the same packed
// bytes as the SIMD kernels (so it checks the layout, not just the math) and accumulates in int32.
#include <cstring>

#include "kernels.h"

namespace bitllm {

namespace {

// dot of row r of quad q (one tile) with token q over block j: Σ code * q.
int32_t block_dot(const uint8_t* blk,  // [td3_block_bytes(K, j)]
                  int units, int tails, int q, int r,
                  const int8_t* x) {  // [block columns] the token's activations of block j
  int32_t dot = 0;
  for (int u = 0; u < units; ++u) {
    const uint8_t* unit = blk + int64_t{u} * kTd3UnitBytes;
    const int8_t* xu = x + u * kTd3UnitK;
    for (int s = 0; s < 8; ++s) {
      const int h = s >> 2, i = s & 3, p = 4 * r + i;
      const int mag = (unit[64 + 64 * q + p] >> (4 * h)) & 15;
      const int byte = (unit[p] >> td3_sign_bit(q, h)) & 1 ? kTd3Negate - kTd3Decode[mag] : kTd3Decode[mag];
      for (int d = 0; d < 3; ++d) dot += ((byte >> (2 * d)) & 3) * xu[12 * h + 4 * d + i];
    }
  }
  for (int c = 0; c < tails; ++c) {
    const uint8_t* chunk = blk + int64_t{units} * kTd3UnitBytes + int64_t{c} * kTd3TailBytes + 64 * q;
    const int8_t* xc = x + units * kTd3UnitK + c * kTd3TailK;
    for (int l = 0; l < 4; ++l)
      for (int i = 0; i < 4; ++i) dot += ((chunk[4 * r + i] >> (2 * l)) & 3) * xc[4 * l + i];
  }
  return dot;
}

void td3_gemm_scalar(const TernaryTd3Mat& w, const QActs& a, float* y, int64_t ldy, int64_t tile0, int64_t tile1) {
  const int64_t nb = td3_blocks(w.K), nsb = w.K / kScaleBlockK, tile_bytes = td3_tile_bytes(w.K);
  for (int64_t t = tile0; t < tile1; ++t) {
    const uint8_t* tile = w.data + t * tile_bytes;
    for (int64_t b = 0; b < a.B; ++b) {
      const int8_t* q = a.q + b * a.ldq;  // [K]
      for (int r64 = 0; r64 < kTd3Rows; ++r64) {
        const int64_t m = t * kTd3Rows + r64;
        if (m >= w.M) break;
        const int qd = r64 / kTd3QuadRows, r = r64 % kTd3QuadRows;
        int32_t total = 0;
        float acc = 0.0f;
        for (int64_t j = 0; j < nb; ++j) {
          const int32_t dot = block_dot(tile + td3_block_offset(j), td3_block_units(w.K, j), td3_block_tails(w.K, j),
                                        qd, r, q + j * kScaleBlockK);
          if (w.scale_mode == kScaleBlock) {
            const float d = w.scales[((m / kT2Rows) * nsb + j) * kT2Rows + m % kT2Rows];
            acc = acc + static_cast<float>(dot - a.bsum[b * nsb + j]) * d;
          } else {
            total += dot;
          }
        }
        if (w.scale_mode == kScaleBlock) {
          y[b * ldy + m] = acc / a.scale[b];
        } else {
          const float ws = w.scale_mode == kScaleRow ? w.scales[m] : w.scales[0];
          y[b * ldy + m] = (static_cast<float>(total - a.sum[b]) * ws) / a.scale[b];
        }
      }
    }
  }
}

// Decoded byte (c0 | c1 << 2 | c2 << 4) of byte p, half h of quad q in a unit.
inline int decoded(const uint8_t* unit, int q, int h, int p) {
  const int mag = (unit[64 + 64 * q + p] >> (4 * h)) & 15;
  return (unit[p] >> td3_sign_bit(q, h)) & 1 ? kTd3Negate - kTd3Decode[mag] : kTd3Decode[mag];
}

void td3_to_t2_scalar(const uint8_t* td3, int64_t K, int quads, uint8_t* codes) {
  const int64_t nb = td3_blocks(K), kchunks = K / kT2KStep;
  for (int64_t j = 0; j < nb; ++j) {
    const uint8_t* blk = td3 + td3_block_offset(j);
    const int units = td3_block_units(K, j), tails = td3_block_tails(K, j);
    for (int q = 0; q < quads; ++q) {
      uint8_t* out = codes + (q * kchunks + j * (kScaleBlockK / kT2KStep)) * kT2ChunkBytes;  // block j's chunks
      for (int u = 0; u < units; u += 2, out += 3 * kT2ChunkBytes) {
        const uint8_t* u0 = blk + int64_t{u} * kTd3UnitBytes;
        const uint8_t* u1 = u0 + kTd3UnitBytes;
        for (int p = 0; p < kT2ChunkBytes; ++p) {
          const int lo = decoded(u0, q, 0, p), hi = decoded(u0, q, 1, p);
          const int lo1 = decoded(u1, q, 0, p), hi1 = decoded(u1, q, 1, p);
          out[p] = static_cast<uint8_t>(lo | (hi & 3) << 6);
          out[kT2ChunkBytes + p] = static_cast<uint8_t>(hi >> 2 | (lo1 & 15) << 4);
          out[2 * kT2ChunkBytes + p] = static_cast<uint8_t>(lo1 >> 4 | hi1 << 2);
        }
      }
      for (int c = 0; c < tails; ++c, out += kT2ChunkBytes)
        std::memcpy(out, blk + int64_t{units} * kTd3UnitBytes + int64_t{c} * kTd3TailBytes + 64 * q, kT2ChunkBytes);
    }
  }
}

}  // namespace

void fill_ternary_td3_scalar(KernelTable& t, const CpuFeatures&) {
  t.ternary_td3_gemm = td3_gemm_scalar;
  t.ternary_td3_to_t2 = td3_to_t2_scalar;
  t.v_ternary_td3 = "scalar";
}

}  // namespace bitllm
