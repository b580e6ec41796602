// Bindings for the BiLLM family: the GEMM of a BR16 BiLLM matrix with int8 activations (billm.h).
// The per-token activation prep (compacted salient codes, block sums) runs here into the
// context's scratch, then the row tiles are split over the pool.
#include <string>
#include <vector>

#include "common.h"
#include "runtime/billm_run.h"
#include "runtime/repack_billm.h"

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

// packBillmTiles(ctx, salient: Uint8Array[K/8], signs: Uint8Array[M*K/8], groups: Uint8Array[M*K/8],
//                residual: Uint8Array[M*R], scalars: Uint16Array[M*K/128*8], M, K, data: Uint8Array[Mp/16 * tileBytes])
// R = Σ_j ceil(nS_j / 8) and tileBytes from the salient mask (repack_billm.h, billm.h). Writes every
// byte of data; the tiles are split over the pool.
Napi::Value pack_billm_tiles(const Napi::CallbackInfo& info) {
  Args a(info, "packBillmTiles");
  ContextWrap& ctx = a.context(0);
  const int64_t M = a.integer(6, "M", 1, kMaxDim), K = a.integer(7, "K", kBillmBlock, kMaxDim);
  if (K % kBillmBlock) a.range_error("K = " + std::to_string(K) + " must be a multiple of 128");
  const int64_t nb = K / kBillmBlock, tiles = (M + kBillmRows - 1) / kBillmRows;
  const uint8_t* salient = a.u8(1, "salient", K / 8, K / 8);
  std::vector<int32_t> geo(static_cast<size_t>(4 * nb + 2));
  int32_t* boff = geo.data();
  int32_t* ngroups = boff + nb + 1;
  int32_t* roff = ngroups + nb;
  int32_t* counts = roff + nb + 1;
  billm_geometry(salient, K, boff, ngroups);
  billm_residual_layout(salient, K, roff, counts);
  const int64_t tile_bytes = boff[nb], R = roff[nb];
  const uint8_t* signs = a.u8(2, "signs", M * K / 8, M * K / 8);
  const uint8_t* groups = a.u8(3, "groups", M * K / 8, M * K / 8);
  const uint8_t* residual = a.u8(4, "residual", M * R, M * R);
  const uint16_t* scalars = a.u16(5, "scalars", M * nb * kBillmScalars, M * nb * kBillmScalars);
  uint8_t* data = a.u8(8, "data", tiles * tile_bytes, tiles * tile_bytes);
  ctx.pool().parallel_for(tiles, [&](int64_t t0, int64_t t1) {
    pack_billm_br16(salient, signs, groups, residual, scalars, M, K, boff, ngroups, roff, counts, data, t0, t1);
  });
  return info.Env().Undefined();
}

}  // namespace

void register_billm(Napi::Env env, Napi::Object exports) {
  exports.Set("billmGemm", Napi::Function::New(env, billm_gemm, "billmGemm"));
  exports.Set("packBillmTiles", Napi::Function::New(env, pack_billm_tiles, "packBillmTiles"));
}

}  // namespace bitllm
