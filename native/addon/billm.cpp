// Bindings for the BiLLM family: the GEMM of a BR16 BiLLM matrix with int8 activations (billm.h).
// The per-token activation prep (compacted salient codes, block sums) runs here into the
// context's scratch, then the row tiles are split over the pool.
#include <string>

#include "common.h"

namespace bitllm {

namespace {

int popcount16(const uint8_t* p) {  // p: [16]
  int c = 0;
  for (int i = 0; i < 16; ++i) c += __builtin_popcount(p[i]);
  return c;
}

// billmGemm(ctx, data: Uint8Array[Mp/16 * tileBytes], salient: Uint8Array[K/8], M, K,
//           q: Int8Array[B*K], scale: Float32Array[B], B, y: Float32Array[B*M])
// tileBytes = Σ_j (768 + 16 ceil(nS_j / 4)) over the blocks' salient counts (billm.h, BR16).
Napi::Value billm_gemm(const Napi::CallbackInfo& info) {
  Args a(info, "billmGemm");
  ContextWrap& ctx = a.context(0);
  const int64_t M = a.integer(3, "M", 1, kMaxDim), K = a.integer(4, "K", kBillmBlock, kMaxDim);
  if (K % kBillmBlock) a.range_error("K = " + std::to_string(K) + " must be a multiple of 128");
  const int64_t nb = K / kBillmBlock, tiles = (M + kBillmRows - 1) / kBillmRows;
  const uint8_t* salient = a.u8(2, "salient", K / 8, K / 8);
  int64_t tile_bytes = 0;
  for (int64_t j = 0; j < nb; ++j) tile_bytes += billm_block_bytes((popcount16(salient + 16 * j) + 3) / 4);
  const uint8_t* data = a.u8(1, "data", tiles * tile_bytes, tiles * tile_bytes);
  const int64_t B = a.integer(7, "B", 1, kMaxBatch);
  const int8_t* q = a.i8(5, "q", B * K, B * K);
  const float* scale = a.f32(6, "scale", B, B);
  float* y = a.f32(8, "y", B * M, B * M);

  // Scratch (int32): boff [nb + 1] | ngroups [nb] | ssum [B, nb] | bsum [B, nb]; (int8) qs [B, K].
  int32_t* scratch = ctx.scratch_i32(static_cast<size_t>(2 * nb + 1 + 2 * B * nb));
  int32_t* boff = scratch;
  int32_t* ngroups = boff + nb + 1;
  int32_t* ssum = ngroups + nb;
  int32_t* bsum = ssum + B * nb;
  boff[0] = 0;
  for (int64_t j = 0; j < nb; ++j) {
    ngroups[j] = (popcount16(salient + 16 * j) + 3) / 4;
    boff[j + 1] = boff[j] + static_cast<int32_t>(billm_block_bytes(ngroups[j]));
  }
  int8_t* qs = reinterpret_cast<int8_t*>(ctx.scratch_u8(static_cast<size_t>(B * K)));
  const KernelTable& t = ctx.table();
  ThreadPool& pool = ctx.pool();
  pool.parallel_for_work(B, K, [&](int64_t b0, int64_t b1) {
    t.billm_prep(salient, K, q + b0 * K, K, b1 - b0, qs + b0 * K, ssum + b0 * nb, bsum + b0 * nb);
  });
  const BillmMat w{data, boff, ngroups, M, K};
  if (tiles >= pool.size() || B == 1) {
    const BillmActs acts{q, scale, qs, ssum, bsum, B, K};
    pool.parallel_for_dynamic(tiles, pool.chunk_grain(tiles), [&](int64_t t0, int64_t t1) { t.billm_gemm(w, acts, y, M, t0, t1); });
  } else {
    // Fewer row tiles than threads: split the tokens instead.
    pool.parallel_for(B, [&](int64_t b0, int64_t b1) {
      const BillmActs acts{q + b0 * K, scale + b0, qs + b0 * K, ssum + b0 * nb, bsum + b0 * nb, b1 - b0, K};
      t.billm_gemm(w, acts, y + b0 * M, M, 0, tiles);
    });
  }
  return info.Env().Undefined();
}

}  // namespace

void register_billm(Napi::Env env, Napi::Object exports) {
  exports.Set("billmGemm", Napi::Function::New(env, billm_gemm, "billmGemm"));
}

}  // namespace bitllm
