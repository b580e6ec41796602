// Bindings for the TL3 lookup-table ternary GEMM (kernels/ternary_lut.h) and its packers.
#include <algorithm>

#include "common.h"
#include "runtime/repack_lut.h"
#include "runtime/repack_ternary.h"

namespace bitllm {

namespace {

// Token tables are built into the context scratch in chunks of at most this many bytes (at least one
// token), so a large batch never needs more than ~64 MiB of tables at once.
constexpr int64_t kTableChunkBytes = int64_t{64} << 20;
// Blocks (256 columns) per table-build work item: splits a single token's build across threads.
constexpr int64_t kBuildBlocks = 8;

int64_t scale_count(int64_t M, int64_t K, int32_t mode) {
  if (mode == kScaleTensor) return 1;
  if (mode == kScaleRow) return t2_tiles(M) * kT2Rows;
  return t2_tiles(M) * (K / kScaleBlockK) * kT2Rows;
}

// lutLayout(M, K) -> { rows, tiles, blocks, groups, weightBytes, tableBytes }
Napi::Value lut_layout(const Napi::CallbackInfo& info) {
  Args a(info, "lutLayout");
  const int64_t M = a.integer(0, "M", 1, kMaxDim), K = a.integer(1, "K", 1, kMaxDim);
  auto o = Napi::Object::New(info.Env());
  o.Set("rows", kLutRows);
  o.Set("tiles", static_cast<double>(lut_tiles(M)));
  o.Set("blocks", static_cast<double>(lut_blocks(K)));
  o.Set("groups", static_cast<double>(lut_groups(K)));
  o.Set("weightBytes", static_cast<double>(lut_weight_bytes(M, K)));
  o.Set("tableBytes", static_cast<double>(lut_table_bytes(K)));
  return o;
}

// packTernaryLut(ctx, trits: Int8Array[M*K], M, K, data: Uint8Array[lutLayout(M, K).weightBytes])
Napi::Value pack_lut(const Napi::CallbackInfo& info) {
  Args a(info, "packTernaryLut");
  ContextWrap& ctx = a.context(0);
  const int64_t M = a.integer(2, "M", 1, kMaxDim), K = a.integer(3, "K", 1, kMaxDim);
  const int8_t* trits = a.i8(1, "trits", M * K, M * K);
  const int64_t bytes = lut_weight_bytes(M, K);
  uint8_t* data = a.u8(4, "data", bytes, bytes);
  ctx.pool().parallel_for(lut_tiles(M), [&](int64_t t0, int64_t t1) { pack_lut_from_trits(trits, K, M, K, data, t0, t1); });
  return info.Env().Undefined();
}

// packTernaryLutFromT2(ctx, codes: Uint8Array (T2R16), M, K, data: Uint8Array) — K % 16 == 0.
Napi::Value pack_lut_t2(const Napi::CallbackInfo& info) {
  Args a(info, "packTernaryLutFromT2");
  ContextWrap& ctx = a.context(0);
  const int64_t M = a.integer(2, "M", 1, kMaxDim), K = a.integer(3, "K", 16, kMaxDim);
  if (K % kT2KStep) a.range_error("K = " + std::to_string(K) + " must be a multiple of 16 (T2R16)");
  const uint8_t* codes = a.u8(1, "codes", t2_code_bytes(M, K), t2_code_bytes(M, K));
  const int64_t bytes = lut_weight_bytes(M, K);
  uint8_t* data = a.u8(4, "data", bytes, bytes);
  ctx.pool().parallel_for(lut_tiles(M), [&](int64_t t0, int64_t t1) { pack_lut_from_t2(codes, M, K, data, t0, t1); });
  return info.Env().Undefined();
}

// unpackTernaryLut(data: Uint8Array, M, K, trits: Int8Array[M*K])
Napi::Value unpack_lut(const Napi::CallbackInfo& info) {
  Args a(info, "unpackTernaryLut");
  const int64_t M = a.integer(1, "M", 1, kMaxDim), K = a.integer(2, "K", 1, kMaxDim);
  const int64_t bytes = lut_weight_bytes(M, K);
  const uint8_t* data = a.u8(0, "data", bytes, bytes);
  int8_t* trits = a.i8(3, "trits", M * K, M * K);
  unpack_lut_to_trits(data, M, K, trits, K);
  return info.Env().Undefined();
}

// ternaryLutGemm(ctx, data: Uint8Array, scales: Float32Array, M, K, scaleMode, q: Int8Array[B*K],
//                scale: Float32Array[B], sum: Int32Array[B], B, y: Float32Array[B*M])
// Scales have the T2R16 layout (tensor [1], row [Mp16], block [Mp16/16 * K/256 * 16]), so a matrix
// repacked from T2R16 keeps its scales array.
Napi::Value lut_gemm(const Napi::CallbackInfo& info) {
  Args a(info, "ternaryLutGemm");
  ContextWrap& ctx = a.context(0);
  const int64_t M = a.integer(3, "M", 1, kMaxDim), K = a.integer(4, "K", 1, kMaxDim);
  const int32_t mode = static_cast<int32_t>(a.integer(5, "scaleMode", 0, 2));
  if (mode == kScaleBlock && K % kScaleBlockK)
    a.range_error("block scales need K % 256 == 0, got K = " + std::to_string(K));
  const int64_t bytes = lut_weight_bytes(M, K);
  const uint8_t* data = a.u8(1, "data", bytes, bytes);
  const int64_t nscales = scale_count(M, K, mode);
  const float* scales = a.f32(2, "scales", nscales, nscales);
  const int64_t B = a.integer(9, "B", 1, kMaxBatch);
  const int8_t* q = a.i8(6, "q", B * K);
  const float* scale = a.f32(7, "scale", B);
  const int32_t* sum = a.i32(8, "sum", B);
  float* y = a.f32(10, "y", B * M);

  const KernelTable& t = ctx.table();
  const TernaryLutMat w{data, scales, M, K, mode};
  const int64_t tb = lut_table_bytes(K), nb = lut_blocks(K);
  const int64_t chunk = std::max<int64_t>(1, std::min<int64_t>(B, kTableChunkBytes / tb));
  uint8_t* tables = ctx.scratch_u8(static_cast<size_t>(chunk * tb));  // [chunk, tb]
  const int64_t units_per_token = (nb + kBuildBlocks - 1) / kBuildBlocks;
  for (int64_t c0 = 0; c0 < B; c0 += chunk) {
    const int64_t nc = std::min(chunk, B - c0);
    // Tables: one work item per (token, run of kBuildBlocks blocks).
    ctx.pool().parallel_for(nc * units_per_token, [&](int64_t u0, int64_t u1) {
      for (int64_t u = u0; u < u1; ++u) {
        const int64_t b = u / units_per_token, j0 = (u % units_per_token) * kBuildBlocks;
        const int64_t k0 = j0 * kScaleBlockK, k1 = std::min(K, k0 + kBuildBlocks * kScaleBlockK);
        const QActs view{q + (c0 + b) * K + k0, scale + c0 + b, sum + c0 + b, nullptr, 1, k1 - k0, K};
        t.ternary_lut_build(view, 0, 1, tables + b * tb + lut_block_group0(j0) * kLutTableBytes);
      }
    });
    const QActs acts{q + c0 * K, scale + c0, sum + c0, nullptr, nc, K, K};
    float* yc = y + c0 * M;
    ctx.pool().parallel_for(lut_tiles(M), [&](int64_t t0, int64_t t1) { t.ternary_lut_gemm(w, acts, tables, yc, M, t0, t1); });
  }
  return info.Env().Undefined();
}

}  // namespace

void register_ternary_lut(Napi::Env env, Napi::Object exports) {
  exports.Set("lutLayout", Napi::Function::New(env, lut_layout, "lutLayout"));
  exports.Set("packTernaryLut", Napi::Function::New(env, pack_lut, "packTernaryLut"));
  exports.Set("packTernaryLutFromT2", Napi::Function::New(env, pack_lut_t2, "packTernaryLutFromT2"));
  exports.Set("unpackTernaryLut", Napi::Function::New(env, unpack_lut, "unpackTernaryLut"));
  exports.Set("ternaryLutGemm", Napi::Function::New(env, lut_gemm, "ternaryLutGemm"));
}

}  // namespace bitllm
