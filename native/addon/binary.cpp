// Bindings for the binary (+-1 weight) family: the B1R16 GEMM, the column-side prep, and the B1R16
// packers / repackers (signs, float, OneBit, Q1_0).
#include <atomic>
#include <string>

#include "common.h"
#include "runtime/repack_binary.h"

namespace bitllm {

namespace {

int64_t checked_k(const Args& a, size_t i) {
  const int64_t K = a.integer(i, "K", kB1KStep, kMaxDim);
  if (K % kB1KStep) a.range_error("K = " + std::to_string(K) + " must be a multiple of 64");
  return K;
}

// binaryGemm(ctx, bits: Uint8Array[Mp/16*K/64*128], scales: Float32Array[1 | Mp], M, K, scaleMode (0 | 1),
//            q: Int8Array[B*K], scale: Float32Array[B], sum: Int32Array[B], B,
//            tokBias: Float32Array[B] | null | undefined, y: Float32Array[B*M])
Napi::Value binary_gemm(const Napi::CallbackInfo& info) {
  Args a(info, "binaryGemm");
  ContextWrap& ctx = a.context(0);
  const int64_t M = a.integer(3, "M", 1, kMaxDim), K = checked_k(a, 4);
  const int32_t mode = static_cast<int32_t>(a.integer(5, "scaleMode", kScaleTensor, kScaleBlock));
  if (mode == kScaleBlock) a.range_error("scaleMode 2 (block scales) is not supported by binary weights");
  const int64_t tiles = b1_tiles(M), nbits = b1_bits_bytes(M, K);
  const int64_t nscales = mode == kScaleTensor ? 1 : tiles * kB1Rows;
  const uint8_t* bits = a.u8(1, "bits", nbits, nbits);
  const float* scales = a.f32(2, "scales", nscales, nscales);
  const int64_t B = a.integer(9, "B", 1, kMaxBatch);
  const int8_t* q = a.i8(6, "q", B * K, B * K);
  const float* scale = a.f32(7, "scale", B, B);
  const int32_t* sum = a.i32(8, "sum", B, B);
  const float* tok_bias = a.has(10) ? a.f32(10, "tokBias", B, B) : nullptr;
  float* y = a.f32(11, "y", B * M, B * M);

  const BinaryMat w{bits, scales, M, K, mode};
  const KernelTable& t = ctx.table();
  ThreadPool& pool = ctx.pool();
  if (tiles >= pool.size() || B == 1) {
    const QActs acts{q, scale, sum, nullptr, B, K, K};
    pool.parallel_for(tiles, [&](int64_t t0, int64_t t1) { t.binary_gemm(w, acts, tok_bias, y, M, t0, t1); });
  } else {
    // Fewer row tiles than threads (small M, batched tokens): split the tokens instead.
    pool.parallel_for(B, [&](int64_t b0, int64_t b1) {
      const QActs acts{q + b0 * K, scale + b0, sum + b0, nullptr, b1 - b0, K, K};
      t.binary_gemm(w, acts, tok_bias ? tok_bias + b0 : nullptr, y + b0 * M, M, 0, tiles);
    });
  }
  return info.Env().Undefined();
}

// binaryPrep(ctx, x: Float32Array[B*K], B, K, colScale: Float32Array[K] | null, colBias: Float32Array[K] | null,
//            xs: Float32Array[B*K], tokBias: Float32Array[B] | null)   (tokBias required with colBias)
Napi::Value binary_prep(const Napi::CallbackInfo& info) {
  Args a(info, "binaryPrep");
  ContextWrap& ctx = a.context(0);
  const int64_t B = a.integer(2, "B", 1, kMaxBatch), K = a.integer(3, "K", 1, kMaxDim);
  const float* x = a.f32(1, "x", B * K, B * K);
  const float* col_scale = a.has(4) ? a.f32(4, "colScale", K, K) : nullptr;
  const float* col_bias = a.has(5) ? a.f32(5, "colBias", K, K) : nullptr;
  float* xs = a.f32(6, "xs", B * K, B * K);
  float* tok_bias = a.has(7) ? a.f32(7, "tokBias", B, B) : nullptr;
  if (col_bias && !tok_bias) a.type_error("tokBias must be a Float32Array when colBias is given");
  const binary_prep_fn fn = ctx.table().binary_prep;
  ctx.pool().parallel_for(B, [&](int64_t b0, int64_t b1) {
    fn(x + b0 * K, K, b1 - b0, K, col_scale, col_bias, xs + b0 * K, K, col_bias ? tok_bias + b0 : nullptr);
  });
  return info.Env().Undefined();
}

// packBinaryFromSigns(ctx, signs: Int8Array[M*K] (>= 0 -> +1, < 0 -> -1), M, K, bits: Uint8Array)
Napi::Value pack_from_signs(const Napi::CallbackInfo& info) {
  Args a(info, "packBinaryFromSigns");
  ContextWrap& ctx = a.context(0);
  const int64_t M = a.integer(2, "M", 1, kMaxDim), K = checked_k(a, 3);
  const int8_t* signs = a.i8(1, "signs", M * K, M * K);
  uint8_t* bits = a.u8(4, "bits", b1_bits_bytes(M, K), b1_bits_bytes(M, K));
  ctx.pool().parallel_for(b1_tiles(M), [&](int64_t t0, int64_t t1) { pack_b1_from_signs(signs, K, M, K, bits, t0, t1); });
  return info.Env().Undefined();
}

// unpackBinaryToSigns(bits: Uint8Array, M, K, signs: Int8Array[M*K])
Napi::Value unpack_to_signs(const Napi::CallbackInfo& info) {
  Args a(info, "unpackBinaryToSigns");
  const int64_t M = a.integer(1, "M", 1, kMaxDim), K = checked_k(a, 2);
  const uint8_t* bits = a.u8(0, "bits", b1_bits_bytes(M, K), b1_bits_bytes(M, K));
  int8_t* signs = a.i8(3, "signs", M * K, M * K);
  unpack_b1_to_signs(bits, M, K, signs, K);
  return info.Env().Undefined();
}

// repackBinary(ctx, format: 'q1_0' | 'onebit', src: Uint8Array, M, K, bits: Uint8Array,
//              rowScales?: Float32Array[Mp]) -> { nonUniformRows: number }
// q1_0: src = M rows of K/128 blocks {fp16 d, qs[16]} (18 bytes), K % 128 == 0; rowScales (required)
//       receives |d| per row; nonUniformRows counts rows whose blocks differ in |d| (reject those).
// onebit: src = int8 [M, K/8], bit 1 = -1; nonUniformRows is 0.
Napi::Value repack(const Napi::CallbackInfo& info) {
  Args a(info, "repackBinary");
  ContextWrap& ctx = a.context(0);
  if (info.Length() < 2 || !info[1].IsString()) a.type_error("format must be a string");
  const std::string format = info[1].As<Napi::String>().Utf8Value();
  if (format != "q1_0" && format != "onebit") a.range_error("format '" + format + "' is not one of q1_0, onebit");
  const int64_t M = a.integer(3, "M", 1, kMaxDim), K = checked_k(a, 4);
  const int64_t tiles = b1_tiles(M);
  uint8_t* bits = a.u8(5, "bits", b1_bits_bytes(M, K), b1_bits_bytes(M, K));
  Napi::Object out = Napi::Object::New(info.Env());
  if (format == "onebit") {
    const uint8_t* src = a.u8(2, "src", M * K / 8, M * K / 8);
    ctx.pool().parallel_for(tiles, [&](int64_t t0, int64_t t1) { repack_b1_from_onebit(src, M, K, bits, t0, t1); });
    out.Set("nonUniformRows", 0);
    return out;
  }
  if (K % kQ1BlockK) a.range_error("q1_0 needs K % 128 == 0, got K = " + std::to_string(K));
  const int64_t src_bytes = M * (K / kQ1BlockK) * kQ1BlockBytes;
  const uint8_t* src = a.u8(2, "src", src_bytes, src_bytes);
  float* row_scales = a.f32(6, "rowScales", tiles * kB1Rows, tiles * kB1Rows);
  std::atomic<int64_t> bad{0};
  ctx.pool().parallel_for(tiles, [&](int64_t t0, int64_t t1) {
    bad.fetch_add(repack_b1_from_q1_0(src, M, K, bits, row_scales, t0, t1), std::memory_order_relaxed);
  });
  out.Set("nonUniformRows", static_cast<double>(bad.load()));
  return out;
}

// repackBinaryF32(ctx, w: Float32Array[M*K], M, K, bits: Uint8Array): sign(w), sign(0) = +1.
Napi::Value repack_f32(const Napi::CallbackInfo& info) {
  Args a(info, "repackBinaryF32");
  ContextWrap& ctx = a.context(0);
  const int64_t M = a.integer(2, "M", 1, kMaxDim), K = checked_k(a, 3);
  const float* w = a.f32(1, "w", M * K, M * K);
  uint8_t* bits = a.u8(4, "bits", b1_bits_bytes(M, K), b1_bits_bytes(M, K));
  ctx.pool().parallel_for(b1_tiles(M), [&](int64_t t0, int64_t t1) { repack_b1_from_f32(w, K, M, K, bits, t0, t1); });
  return info.Env().Undefined();
}

}  // namespace

void register_binary(Napi::Env env, Napi::Object exports) {
  exports.Set("binaryGemm", Napi::Function::New(env, binary_gemm, "binaryGemm"));
  exports.Set("binaryPrep", Napi::Function::New(env, binary_prep, "binaryPrep"));
  exports.Set("packBinaryFromSigns", Napi::Function::New(env, pack_from_signs, "packBinaryFromSigns"));
  exports.Set("unpackBinaryToSigns", Napi::Function::New(env, unpack_to_signs, "unpackBinaryToSigns"));
  exports.Set("repackBinary", Napi::Function::New(env, repack, "repackBinary"));
  exports.Set("repackBinaryF32", Napi::Function::New(env, repack_f32, "repackBinaryF32"));
}

}  // namespace bitllm
