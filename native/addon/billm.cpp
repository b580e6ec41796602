// Bindings for the BiLLM family: the GEMM of a BR16 BiLLM matrix with int8 activations (billm.h).
// The per-token activation prep (compacted salient codes, block sums) runs here into the
// context's scratch, then the row tiles are split over the pool.
#include <string>

#include "common.h"
#include "runtime/billm_run.h"

namespace bitllm {

namespace {

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
  // Tile geometry (int32 scratch): boff [nb + 1] | ngroups [nb].
  int32_t* boff = ctx.scratch_i32(static_cast<size_t>(2 * nb + 1));
  int32_t* ngroups = boff + nb + 1;
  billm_geometry(salient, K, boff, ngroups);
  const int64_t tile_bytes = boff[nb];
  const uint8_t* data = a.u8(1, "data", tiles * tile_bytes, tiles * tile_bytes);
  const int64_t B = a.integer(7, "B", 1, kMaxBatch);
  const int8_t* q = a.i8(5, "q", B * K, B * K);
  const float* scale = a.f32(6, "scale", B, B);
  float* y = a.f32(8, "y", B * M, B * M);
  const BillmMat w{data, boff, ngroups, M, K};
  const QActs acts{q, scale, nullptr, nullptr, B, K, K};
  run_billm_gemm(ctx.table(), ctx.pool(), w, salient, acts, y, M, ctx.billm_scratch());
  return info.Env().Undefined();
}

}  // namespace

void register_billm(Napi::Env env, Napi::Object exports) {
  exports.Set("billmGemm", Napi::Function::New(env, billm_gemm, "billmGemm"));
}

}  // namespace bitllm
