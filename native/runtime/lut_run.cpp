// The B1L64 GEMM driver; see lut_run.h.
#include "lut_run.h"

#include <algorithm>

namespace bitllm {

namespace {

// Token tables go to the scratch in chunks of at most this many bytes (at least one token).
constexpr int64_t kTableChunkBytes = int64_t{64} << 20;
// Groups per table-build work item (8 KB of one token's tables): splits one token over threads.
constexpr int64_t kBuildGroups = 128;
// From this many tokens per chunk the threads split the tokens instead of the row blocks: each thread
// then reads only its own tokens' tables (5 MB for 128 tokens at K = 2560 would otherwise stream from L3
// into every core), and the weights, read by all, are the smaller stream.
constexpr int64_t kTokenSplitBatch = 16;
// Below this many groups (all tokens together) the calling thread builds the tables alone: a decode
// token's 1728 groups (K = 6912) take ~2 us, about what waking the pool and joining it costs.
constexpr int64_t kParallelBuildGroups = 4096;

// 64-byte aligned tables: each group's table is one AVX-512 vector.
float* aligned(std::vector<uint8_t>& scratch, int64_t bytes) {
  if (scratch.size() < static_cast<size_t>(bytes + 64)) scratch.resize(static_cast<size_t>(bytes + 64));
  return reinterpret_cast<float*>((reinterpret_cast<uintptr_t>(scratch.data()) + 63) & ~uintptr_t{63});
}

}  // namespace

void build_binary_lut_tables(const KernelTable& t, ThreadPool& pool, const float* u, int64_t ldu, int64_t nb, int64_t K,
                             float* tables, int64_t ldt) {
  const int64_t G = b1l_groups(K), per_token = (G + kBuildGroups - 1) / kBuildGroups;
  if (nb * G < kParallelBuildGroups) {
    t.binary_lut_build(u, ldu, nb, K, tables, ldt, 0, G);
    return;
  }
  pool.parallel_for(nb * per_token, [&](int64_t u0, int64_t u1) {
    for (int64_t i = u0; i < u1; ++i) {
      const int64_t b = i / per_token, g0 = (i % per_token) * kBuildGroups;
      t.binary_lut_build(u + b * ldu, ldu, 1, K, tables + b * ldt, ldt, g0, std::min(G, g0 + kBuildGroups));
    }
  });
}

void run_binary_lut_gemm(const KernelTable& t, ThreadPool& pool, const BinaryLutMat& w, const float* u, int64_t ldu,
                         int64_t B, const float* row_scale, const float* tok_bias, float* y, int64_t ldy,
                         std::vector<uint8_t>& scratch) {
  const int64_t K = w.K;
  const int64_t ldt = b1l_table_floats(K), blocks = b1l_blocks(w.M);
  const int64_t slot = (ldt * 4 + 127) & ~int64_t{63};  // one token's tables, 64-byte multiple
  if (B == 1 && pool.size() > 1 && blocks >= pool.size() && slot * pool.size() <= kTableChunkBytes) {
    // Decode: every thread builds the token's tables itself (~2 us at K = 6912) into its own slot and
    // runs its contiguous range of blocks: one pool round trip, and no thread reads tables out of
    // another core's cache (sharing one copy made 2 threads only 1.3x faster than one, cache-hot).
    struct Job {
      const KernelTable* t;
      const BinaryLutMat* w;
      const float *u, *row_scale, *tok_bias;
      float* y;
      float* tables;
      int64_t ldu, ldy, ldt, blocks, slot_floats;
    } job{&t, &w, u, row_scale, tok_bias, y, aligned(scratch, slot * pool.size()), ldu, ldy, ldt, blocks, slot / 4};
    pool.run(
        [](void* ctx, int ith, int nth) {
          const Job& j = *static_cast<const Job*>(ctx);
          const int64_t b0 = j.blocks * ith / nth, b1 = j.blocks * (ith + 1) / nth;
          float* tab = j.tables + ith * j.slot_floats;  // [ldt]
          j.t->binary_lut_build(j.u, j.ldu, 1, j.w->K, tab, j.ldt, 0, b1l_groups(j.w->K));
          j.t->binary_lut_gemm(*j.w, tab, j.ldt, 1, j.row_scale, j.tok_bias, j.y, j.ldy, b0, b1);
        },
        &job);
    return;
  }
  const int64_t chunk = std::min(B, std::max<int64_t>(1, kTableChunkBytes / (ldt * 4)));
  float* tables = aligned(scratch, chunk * ldt * 4);  // [chunk, ldt]
  for (int64_t c0 = 0; c0 < B; c0 += chunk) {
    const int64_t nb = std::min(chunk, B - c0);
    build_binary_lut_tables(t, pool, u + c0 * ldu, ldu, nb, K, tables, ldt);
    float* yc = y + c0 * ldy;                              // [nb, ldy]
    const float* tb = tok_bias ? tok_bias + c0 : nullptr;  // [nb]
    if (nb == 1 || (blocks >= pool.size() && nb < kTokenSplitBatch)) {
      pool.parallel_for_dynamic(blocks, pool.chunk_grain(blocks), [&](int64_t t0, int64_t t1) {
        t.binary_lut_gemm(w, tables, ldt, nb, row_scale, tb, yc, ldy, t0, t1);
      });
    } else {
      // Many tokens, or fewer row blocks than threads (small M): split the tokens.
      pool.parallel_for(nb, [&](int64_t b0, int64_t b1) {
        t.binary_lut_gemm(w, tables + b0 * ldt, ldt, b1 - b0, row_scale, tb ? tb + b0 : nullptr, yc + b0 * ldy, ldy, 0,
                          blocks);
      });
    }
  }
}

}  // namespace bitllm
