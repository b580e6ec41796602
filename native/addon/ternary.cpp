// Bindings for activation quantization, the T2R16 ternary GEMM and the ternary repackers.
#include <cmath>
#include <cstring>

#include "common.h"
#include "runtime/repack_ternary.h"

namespace bitllm {

namespace {

// actQuantI8 / actQuantI4 (ctx, x: Float32Array[B*K], B, K, q: Int8Array[B*K], scale: Float32Array[B],
// sum: Int32Array[B])
template <bool kI4>
Napi::Value act_quant(const Napi::CallbackInfo& info) {
  Args a(info, kI4 ? "actQuantI4" : "actQuantI8");
  ContextWrap& ctx = a.context(0);
  const int64_t B = a.integer(2, "B", 1, kMaxBatch), K = a.integer(3, "K", 1, kMaxDim);
  const float* x = a.f32(1, "x", B * K);
  int8_t* q = a.i8(4, "q", B * K);
  float* scale = a.f32(5, "scale", B);
  int32_t* sum = a.i32(6, "sum", B);
  const act_quant_fn fn = kI4 ? ctx.table().act_quant_i4 : ctx.table().act_quant_i8;
  ctx.pool().parallel_for(B, [&](int64_t b0, int64_t b1) {
    fn(x + b0 * K, K, b1 - b0, K, q + b0 * K, K, scale + b0, sum + b0);
  });
  return info.Env().Undefined();
}

// actQuantTopkI8(ctx, x: Float32Array[B*K], B, K, keep: 0..K, q: Int8Array[B*K], scale: Float32Array[B],
// sum: Int32Array[B])
Napi::Value act_quant_topk(const Napi::CallbackInfo& info) {
  Args a(info, "actQuantTopkI8");
  ContextWrap& ctx = a.context(0);
  const int64_t B = a.integer(2, "B", 1, kMaxBatch), K = a.integer(3, "K", 1, kMaxDim);
  const int64_t keep = a.integer(4, "keep", 0, K);
  const float* x = a.f32(1, "x", B * K);
  int8_t* q = a.i8(5, "q", B * K);
  float* scale = a.f32(6, "scale", B);
  int32_t* sum = a.i32(7, "sum", B);
  const act_quant_topk_fn fn = ctx.table().act_quant_topk_i8;
  ctx.pool().parallel_for(B, [&](int64_t b0, int64_t b1) {
    fn(x + b0 * K, K, b1 - b0, K, keep, q + b0 * K, K, scale + b0, sum + b0);
  });
  return info.Env().Undefined();
}

// Validates a T2R16 matrix given as (codes, scales, M, K, scaleMode) at argument index i.
TernaryMat ternary_mat(const Args& a, size_t i) {
  const int64_t M = a.integer(i + 2, "M", 1, kMaxDim), K = a.integer(i + 3, "K", 16, kMaxDim);
  if (K % kT2KStep) a.range_error("K = " + std::to_string(K) + " must be a multiple of 16");
  const int32_t mode = static_cast<int32_t>(a.integer(i + 4, "scaleMode", 0, 2));
  if (mode == kScaleBlock && K % kScaleBlockK)
    a.range_error("block scales need K % 256 == 0, got K = " + std::to_string(K));
  const int64_t tiles = t2_tiles(M);
  const uint8_t* codes = a.u8(i, "codes", t2_code_bytes(M, K), t2_code_bytes(M, K));
  const int64_t nscales = mode == kScaleTensor ? 1 : (mode == kScaleRow ? tiles * kT2Rows : tiles * (K / kScaleBlockK) * kT2Rows);
  const float* scales = a.f32(i + 1, "scales", nscales, nscales);
  return TernaryMat{codes, scales, M, K, mode};
}

// ternaryGemm(ctx, codes, scales, M, K, scaleMode, q: Int8Array[B*K], scale: Float32Array[B],
//             sum: Int32Array[B], B, y: Float32Array[B*M])
Napi::Value ternary_gemm(const Napi::CallbackInfo& info) {
  Args a(info, "ternaryGemm");
  ContextWrap& ctx = a.context(0);
  TernaryMat w = ternary_mat(a, 1);
  const int64_t B = a.integer(9, "B", 1, kMaxBatch);
  const int8_t* q = a.i8(6, "q", B * w.K);
  const float* scale = a.f32(7, "scale", B);
  const int32_t* sum = a.i32(8, "sum", B);
  float* y = a.f32(10, "y", B * w.M);
  const int32_t* bsum = nullptr;
  if (w.scale_mode == kScaleBlock) {
    const int64_t nb = w.K / kScaleBlockK;
    int32_t* bs = ctx.scratch_i32(static_cast<size_t>(B * nb));
    ctx.table().act_block_sums(q, w.K, B, w.K, bs);
    bsum = bs;
  }
  const QActs acts{q, scale, sum, bsum, B, w.K, w.K};
  const KernelTable& t = ctx.table();
  ctx.pool().parallel_for(t2_tiles(w.M), [&](int64_t t0, int64_t t1) { t.ternary_gemm(w, acts, y, w.M, t0, t1); });
  return info.Env().Undefined();
}

// packTernaryFromTrits(ctx, trits: Int8Array[M*K], M, K, codes: Uint8Array)
Napi::Value pack_from_trits(const Napi::CallbackInfo& info) {
  Args a(info, "packTernaryFromTrits");
  ContextWrap& ctx = a.context(0);
  const int64_t M = a.integer(2, "M", 1, kMaxDim), K = a.integer(3, "K", 16, kMaxDim);
  if (K % kT2KStep) a.range_error("K must be a multiple of 16");
  const int8_t* trits = a.i8(1, "trits", M * K, M * K);
  uint8_t* codes = a.u8(4, "codes", t2_code_bytes(M, K), t2_code_bytes(M, K));
  ctx.pool().parallel_for(t2_tiles(M), [&](int64_t t0, int64_t t1) { pack_t2_from_trits(trits, K, M, K, codes, t0, t1); });
  return info.Env().Undefined();
}

// unpackTernaryToTrits(codes, M, K, trits: Int8Array[M*K])
Napi::Value unpack_to_trits(const Napi::CallbackInfo& info) {
  Args a(info, "unpackTernaryToTrits");
  const int64_t M = a.integer(1, "M", 1, kMaxDim), K = a.integer(2, "K", 16, kMaxDim);
  if (K % kT2KStep) a.range_error("K must be a multiple of 16");
  const uint8_t* codes = a.u8(0, "codes", t2_code_bytes(M, K), t2_code_bytes(M, K));
  int8_t* trits = a.i8(3, "trits", M * K, M * K);
  unpack_t2_to_trits(codes, M, K, trits, K);
  return info.Env().Undefined();
}

// repackTernary(ctx, format: 'i2_s'|'tq2_0'|'tq1_0', src: Uint8Array, M, K, codes: Uint8Array,
//               blockScales?: Float32Array) -> { invalid: number, scale?: number }
// i2_s: src = M*K/4 code bytes followed by the fp32 tensor scale (at least 4 more bytes).
// tq2_0/tq1_0: blockScales [Mp/16 * K/256 * 16] receives the per-block scales.
Napi::Value repack(const Napi::CallbackInfo& info) {
  Args a(info, "repackTernary");
  ContextWrap& ctx = a.context(0);
  if (info.Length() < 2 || !info[1].IsString()) a.type_error("format must be a string");
  const std::string format = info[1].As<Napi::String>().Utf8Value();
  const int64_t M = a.integer(3, "M", 1, kMaxDim), K = a.integer(4, "K", 16, kMaxDim);
  const int64_t tiles = t2_tiles(M);
  uint8_t* codes = a.u8(5, "codes", t2_code_bytes(M, K), t2_code_bytes(M, K));
  Napi::Object out = Napi::Object::New(info.Env());
  if (format == "i2_s") {
    if (K % kT2KStep || (M * K) % 128) a.range_error("i2_s needs K % 16 == 0 and M*K % 128 == 0");
    const uint8_t* src = a.u8(2, "src", M * K / 4 + 4);
    float scale;
    std::memcpy(&scale, src + M * K / 4, 4);
    ctx.pool().parallel_for(tiles, [&](int64_t t0, int64_t t1) { repack_t2_from_i2s(src, M, K, codes, t0, t1); });
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
  std::vector<int64_t> invalid(static_cast<size_t>(tiles), 0);
  ctx.pool().parallel_for(tiles, [&](int64_t t0, int64_t t1) {
    invalid[static_cast<size_t>(t0)] = tq2 ? repack_t2_from_tq2(src, M, K, codes, bscales, t0, t1)
                                           : repack_t2_from_tq1(src, M, K, codes, bscales, t0, t1);
  });
  int64_t total = 0;
  for (int64_t v : invalid) total += v;
  out.Set("invalid", static_cast<double>(total));
  float uniform;
  if (t2_uniform_block_scale(codes, bscales, M, K, &uniform)) out.Set("scale", uniform);
  return out;
}

// repackTernaryF32(ctx, w: Float32Array[M*K], M, K, gamma, codes)
Napi::Value repack_f32(const Napi::CallbackInfo& info) {
  Args a(info, "repackTernaryF32");
  ContextWrap& ctx = a.context(0);
  const int64_t M = a.integer(2, "M", 1, kMaxDim), K = a.integer(3, "K", 16, kMaxDim);
  if (K % kT2KStep) a.range_error("K must be a multiple of 16");
  const float* w = a.f32(1, "w", M * K, M * K);
  const double gamma = a.number(4, "gamma");
  if (!(gamma > 0) || !std::isfinite(gamma)) a.range_error("gamma must be a positive finite number");
  uint8_t* codes = a.u8(5, "codes", t2_code_bytes(M, K), t2_code_bytes(M, K));
  ctx.pool().parallel_for(t2_tiles(M), [&](int64_t t0, int64_t t1) {
    repack_t2_from_f32(w, K, M, K, static_cast<float>(gamma), codes, t0, t1);
  });
  return info.Env().Undefined();
}

}  // namespace

void register_ternary(Napi::Env env, Napi::Object exports) {
  exports.Set("actQuantI8", Napi::Function::New(env, act_quant<false>, "actQuantI8"));
  exports.Set("actQuantI4", Napi::Function::New(env, act_quant<true>, "actQuantI4"));
  exports.Set("actQuantTopkI8", Napi::Function::New(env, act_quant_topk, "actQuantTopkI8"));
  exports.Set("ternaryGemm", Napi::Function::New(env, ternary_gemm, "ternaryGemm"));
  exports.Set("packTernaryFromTrits", Napi::Function::New(env, pack_from_trits, "packTernaryFromTrits"));
  exports.Set("unpackTernaryToTrits", Napi::Function::New(env, unpack_to_trits, "unpackTernaryToTrits"));
  exports.Set("repackTernary", Napi::Function::New(env, repack, "repackTernary"));
  exports.Set("repackTernaryF32", Napi::Function::New(env, repack_f32, "repackTernaryF32"));
}

}  // namespace bitllm
