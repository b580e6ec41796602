// Bindings for the TD3 ternary GEMM (kernels/ternary_td3.h) and its packers: from trits, from a T2R16
// matrix, and straight from the GGUF ternary formats (through a temporary T2R16 copy).
#include <algorithm>
#include <cstring>
#include <vector>

#include "common.h"
#include "ternary_layout.h"
#include "runtime/td3_run.h"
#include "runtime/repack_td3.h"
#include "runtime/repack_ternary.h"

namespace bitllm {

namespace {

// Batches from which ternaryTd3Gemm decodes each 64-row tile to T2R16 once and runs the T2R16 kernel on
// it (for all tokens) instead of the TD3 kernel, which decodes in registers for every 4 tokens. Measured
// on Zen 4 (2560x2560, 2560x6912, 1 thread): the AVX-512 TD3 kernel took 1.0-1.1x T2R16's time up to
// B = 32 (the decode path 1.1-1.9x) and they meet from B = 64; the AVX2 kernel took 1.4-1.6x from B = 4,
// the decode path 1.04-1.3x.


int64_t scale_count(int64_t M, int64_t K, int32_t mode) {
  if (mode == kScaleTensor) return 1;
  if (mode == kScaleRow) return t2_tiles(M) * kT2Rows;
  return t2_tiles(M) * (K / kScaleBlockK) * kT2Rows;
}

int64_t check_k(const Args& a, size_t i) {
  const int64_t K = a.integer(i, "K", kTd3KStep, kMaxDim);
  if (K % kTd3KStep) a.range_error("K = " + std::to_string(K) + " must be a multiple of 16");
  return K;
}

// td3Layout(M, K) -> { rows, tiles, blocks, weightBytes, tileBytes }
Napi::Value td3_layout(const Napi::CallbackInfo& info) {
  Args a(info, "td3Layout");
  const int64_t M = a.integer(0, "M", 1, kMaxDim), K = check_k(a, 1);
  auto o = Napi::Object::New(info.Env());
  o.Set("rows", kTd3Rows);
  o.Set("tiles", static_cast<double>(td3_tiles(M)));
  o.Set("blocks", static_cast<double>(td3_blocks(K)));
  o.Set("weightBytes", static_cast<double>(td3_weight_bytes(M, K)));
  o.Set("tileBytes", static_cast<double>(td3_tile_bytes(K)));
  return o;
}

// TD3 as a layout derived from T2R16 (ternary_layout.h).
const TernaryLayoutOps kTd3Ops{
    "packTernaryTd3", "packTernaryTd3FromT2", "unpackTernaryTd3", check_k, td3_weight_bytes,
    [](ThreadPool& pool, const uint8_t* codes, int64_t M, int64_t K, uint8_t* data) {
      pool.parallel_for(td3_tiles(M), [&](int64_t t0, int64_t t1) { pack_td3_from_t2(codes, M, K, data, t0, t1); });
    },
    [](const uint8_t* data, int64_t M, int64_t K, int8_t* trits) { unpack_td3_to_trits(data, M, K, trits, K); }};

Napi::Value pack_trits(const Napi::CallbackInfo& info) { return pack_layout_from_trits(info, kTd3Ops); }
Napi::Value pack_t2(const Napi::CallbackInfo& info) { return pack_layout_from_t2(info, kTd3Ops); }
Napi::Value unpack(const Napi::CallbackInfo& info) { return unpack_layout(info, kTd3Ops); }

// repackTernaryTd3(ctx, format: 'i2_s'|'tq2_0'|'tq1_0', src: Uint8Array, M, K, data: Uint8Array,
//                  blockScales?: Float32Array) -> { invalid: number, scale?: number }
// Same sources, checks and scale results as repackTernary (addon/ternary.cpp), written as TD3.
Napi::Value repack(const Napi::CallbackInfo& info) {
  Args a(info, "repackTernaryTd3");
  ContextWrap& ctx = a.context(0);
  if (info.Length() < 2 || !info[1].IsString()) a.type_error("format must be a string");
  const std::string format = info[1].As<Napi::String>().Utf8Value();
  const int64_t M = a.integer(3, "M", 1, kMaxDim), K = check_k(a, 4);
  const int64_t tiles = t2_tiles(M), bytes = td3_weight_bytes(M, K);
  uint8_t* data = a.u8(5, "data", bytes, bytes);
  Napi::Object out = Napi::Object::New(info.Env());
  std::vector<uint8_t> codes;
  if (format == "i2_s") {
    if ((M * K) % 128) a.range_error("i2_s needs M*K % 128 == 0");
    const uint8_t* src = a.u8(2, "src", M * K / 4 + 4);
    float scale;
    std::memcpy(&scale, src + M * K / 4, 4);
    codes.resize(static_cast<size_t>(t2_code_bytes(M, K)));
    ctx.pool().parallel_for(tiles, [&](int64_t t0, int64_t t1) { repack_t2_from_i2s(src, M, K, codes.data(), t0, t1); });
    kTd3Ops.pack_from_t2(ctx.pool(), codes.data(), M, K, data);
    out.Set("invalid", 0);
    out.Set("scale", scale);
    return out;
  }
  if (format != "tq2_0" && format != "tq1_0") a.range_error("format '" + format + "' is not one of i2_s, tq2_0, tq1_0");
  if (K % kScaleBlockK) a.range_error(format + " needs K % 256 == 0, got K = " + std::to_string(K));
  const bool tq2 = format == "tq2_0";
  const int64_t block_bytes = tq2 ? 66 : 54;
  const uint8_t* src = a.u8(2, "src", M * (K / 256) * block_bytes);
  const int64_t nscales = tiles * (K / kScaleBlockK) * kT2Rows;
  float* bscales = a.f32(6, "blockScales", nscales, nscales);
  check_disjoint(a, data, bytes, "data", src, M * (K / 256) * block_bytes, "src");
  codes.resize(static_cast<size_t>(t2_code_bytes(M, K)));
  std::vector<int64_t> invalid(static_cast<size_t>(tiles), 0);
  ctx.pool().parallel_for(tiles, [&](int64_t t0, int64_t t1) {
    invalid[static_cast<size_t>(t0)] = tq2 ? repack_t2_from_tq2(src, M, K, codes.data(), bscales, t0, t1)
                                           : repack_t2_from_tq1(src, M, K, codes.data(), bscales, t0, t1);
  });
  int64_t total = 0;
  for (int64_t v : invalid) total += v;
  kTd3Ops.pack_from_t2(ctx.pool(), codes.data(), M, K, data);
  out.Set("invalid", static_cast<double>(total));
  float uniform;
  if (t2_uniform_block_scale(codes.data(), bscales, M, K, &uniform)) out.Set("scale", uniform);
  return out;
}

// ternaryTd3Gemm(ctx, data: Uint8Array, scales: Float32Array, M, K, scaleMode, q: Int8Array[B*K],
//                scale: Float32Array[B], sum: Int32Array[B], B, y: Float32Array[B*M])
// Scales have the T2R16 layout (tensor [1], row [Mp16], block [Mp16/16 * K/256 * 16]).
Napi::Value gemm(const Napi::CallbackInfo& info) {
  Args a(info, "ternaryTd3Gemm");
  ContextWrap& ctx = a.context(0);
  const int64_t M = a.integer(3, "M", 1, kMaxDim), K = check_k(a, 4);
  const int32_t mode = static_cast<int32_t>(a.integer(5, "scaleMode", 0, 2));
  if (mode == kScaleBlock && K % kScaleBlockK)
    a.range_error("block scales need K % 256 == 0, got K = " + std::to_string(K));
  const int64_t bytes = td3_weight_bytes(M, K);
  const uint8_t* data = a.u8(1, "data", bytes, bytes);
  const int64_t nscales = scale_count(M, K, mode);
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
  const KernelTable& t = ctx.table();
  const int32_t* bsum = nullptr;
  if (mode == kScaleBlock) {
    const int64_t nb = K / kScaleBlockK;
    int32_t* bs = ctx.scratch_i32(static_cast<size_t>(B * nb));
    t.act_block_sums(q, K, B, K, bs);
    bsum = bs;
  }
  const TernaryTd3Mat w{data, scales, M, K, mode};
  const QActs acts{q, scale, sum, bsum, B, K, K};
  run_td3_gemm(t, ctx.pool(), w, acts, y, M);
  return info.Env().Undefined();
}

}  // namespace

void register_ternary_td3(Napi::Env env, Napi::Object exports) {
  exports.Set("td3Layout", Napi::Function::New(env, td3_layout, "td3Layout"));
  exports.Set("packTernaryTd3", Napi::Function::New(env, pack_trits, "packTernaryTd3"));
  exports.Set("packTernaryTd3FromT2", Napi::Function::New(env, pack_t2, "packTernaryTd3FromT2"));
  exports.Set("unpackTernaryTd3", Napi::Function::New(env, unpack, "unpackTernaryTd3"));
  exports.Set("repackTernaryTd3", Napi::Function::New(env, repack, "repackTernaryTd3"));
  exports.Set("ternaryTd3Gemm", Napi::Function::New(env, gemm, "ternaryTd3Gemm"));
}

}  // namespace bitllm
