// Bindings for the column-sparse ternary GEMM (kernels/ternary_sparse.h, layout TS256) and its packers:
// from trits and from a T2R16 matrix (so every file format that loads as T2R16 reaches it).
#include <string>
#include <vector>

#include "common.h"
#include "ternary_layout.h"
#include "runtime/sparse_run.h"
#include "runtime/repack_ternary.h"
#include "runtime/repack_ternary_sparse.h"

namespace bitllm {

namespace {

int64_t check_k(const Args& a, size_t i) {
  const int64_t K = a.integer(i, "K", kT2KStep, kTsMaxK);
  if (K % kT2KStep) a.range_error("K = " + std::to_string(K) + " must be a multiple of 16");
  return K;
}

// sparseLayout(M, K) -> { rows, blocks, weightBytes }
Napi::Value sparse_layout(const Napi::CallbackInfo& info) {
  Args a(info, "sparseLayout");
  const int64_t M = a.integer(0, "M", 1, kMaxDim), K = check_k(a, 1);
  auto o = Napi::Object::New(info.Env());
  o.Set("rows", kTsRows);
  o.Set("blocks", static_cast<double>(ts_blocks(M)));
  o.Set("weightBytes", static_cast<double>(ts_weight_bytes(M, K)));
  return o;
}

// TS256 as a layout derived from T2R16 (ternary_layout.h).
const TernaryLayoutOps kSparseOps{
    "packTernarySparse", "packTernarySparseFromT2", "unpackTernarySparse", check_k, ts_weight_bytes,
    [](ThreadPool& pool, const uint8_t* codes, int64_t M, int64_t K, uint8_t* data) {
      pool.parallel_for(ts_blocks(M), [&](int64_t b0, int64_t b1) { pack_sparse_from_t2(codes, M, K, data, b0, b1); });
    },
    [](const uint8_t* data, int64_t M, int64_t K, int8_t* trits) { unpack_sparse_to_trits(data, M, K, trits, K); }};

Napi::Value pack_trits(const Napi::CallbackInfo& info) { return pack_layout_from_trits(info, kSparseOps); }
Napi::Value pack_t2(const Napi::CallbackInfo& info) { return pack_layout_from_t2(info, kSparseOps); }
Napi::Value unpack(const Napi::CallbackInfo& info) { return unpack_layout(info, kSparseOps); }

// ternarySparseGemm(ctx, data: Uint8Array, scales: Float32Array, M, K, scaleMode: 0 (tensor) | 1 (row),
//                   q: Int8Array[B*K], scale: Float32Array[B], sum: Int32Array[B], B, y: Float32Array[B*M])
// Scales have the T2R16 layout (tensor [1], row [round_up(M, 16)]).
Napi::Value gemm(const Napi::CallbackInfo& info) {
  Args a(info, "ternarySparseGemm");
  ContextWrap& ctx = a.context(0);
  const int64_t M = a.integer(3, "M", 1, kMaxDim), K = check_k(a, 4);
  const int32_t mode = static_cast<int32_t>(a.integer(5, "scaleMode", 0, 1));
  const int64_t bytes = ts_weight_bytes(M, K);
  const uint8_t* data = a.u8(1, "data", bytes, bytes);
  const int64_t nscales = mode == kScaleTensor ? 1 : t2_tiles(M) * kT2Rows;
  const float* scales = a.f32(2, "scales", nscales, nscales);
  const int64_t B = a.integer(9, "B", 1, kMaxBatch);
  const int8_t* q = a.i8(6, "q", B * K);
  const float* scale = a.f32(7, "scale", B);
  const int32_t* sum = a.i32(8, "sum", B);
  float* y = a.f32(10, "y", B * M);
  const int64_t ybytes = B * M * 4;
  check_disjoint(a, y, ybytes, "y", data, bytes, "data");
  check_disjoint(a, y, ybytes, "y", scales, nscales * 4, "scales");
  check_disjoint(a, y, ybytes, "y", q, B * K, "q");
  check_disjoint(a, y, ybytes, "y", scale, B * 4, "scale");
  check_disjoint(a, y, ybytes, "y", sum, B * 4, "sum");
  const TernarySparseMat w{data, scales, M, K, mode};
  const QActs acts{q, scale, sum, nullptr, B, K, K};
  run_ternary_sparse_gemm(ctx.table(), ctx.pool(), w, acts, y, M, ctx.sparse_lists());
  return info.Env().Undefined();
}

}  // namespace

void register_ternary_sparse(Napi::Env env, Napi::Object exports) {
  exports.Set("sparseLayout", Napi::Function::New(env, sparse_layout, "sparseLayout"));
  exports.Set("packTernarySparse", Napi::Function::New(env, pack_trits, "packTernarySparse"));
  exports.Set("packTernarySparseFromT2", Napi::Function::New(env, pack_t2, "packTernarySparseFromT2"));
  exports.Set("unpackTernarySparse", Napi::Function::New(env, unpack, "unpackTernarySparse"));
  exports.Set("ternarySparseGemm", Napi::Function::New(env, gemm, "ternarySparseGemm"));
}

}  // namespace bitllm
