#include "td3_run.h"

#include <algorithm>
#include <vector>

namespace bitllm {

namespace {
// Largest decoded tile (T2R16 bytes of 64 rows) the batched path allocates per chunk: K <= 256K.
constexpr int64_t kMaxDecodeBytes = int64_t{4} << 20;
}  // namespace

void run_td3_gemm(const KernelTable& t, ThreadPool& pool, const TernaryTd3Mat& w, const QActs& a, float* y, int64_t ldy) {
  const int64_t M = w.M, K = w.K, tiles = td3_tiles(M);
  const int64_t grain = pool.chunk_grain(tiles);
  const int64_t tile_codes = int64_t{kTd3Quads} * (K / kT2KStep) * kT2ChunkBytes;  // one tile as T2R16
  if (a.B >= td3_decode_batch(t.isa) && t.ternary_td3_to_t2 && tile_codes <= kMaxDecodeBytes) {
    pool.parallel_for_dynamic(tiles, grain, [&](int64_t t0, int64_t t1) {
      std::vector<uint8_t> buf(static_cast<size_t>(tile_codes));
      for (int64_t tile = t0; tile < t1; ++tile) {
        const int64_t m0 = tile * kTd3Rows, rows = std::min<int64_t>(kTd3Rows, M - m0);
        const int quads = static_cast<int>((rows + kT2Rows - 1) / kT2Rows);
        t.ternary_td3_to_t2(w.data + tile * td3_tile_bytes(K), K, quads, buf.data());
        const float* sc = w.scale_mode == kScaleTensor ? w.scales
                          : w.scale_mode == kScaleRow  ? w.scales + m0
                                                       : w.scales + (m0 / kT2Rows) * (K / kScaleBlockK) * kT2Rows;
        const TernaryMat sub{buf.data(), sc, rows, K, w.scale_mode};
        t.ternary_gemm(sub, a, y + m0, ldy, 0, quads);
      }
    });
  } else {
    pool.parallel_for_dynamic(tiles, grain, [&](int64_t t0, int64_t t1) { t.ternary_td3_gemm(w, a, y, ldy, t0, t1); });
  }
}

}  // namespace bitllm
