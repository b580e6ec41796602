// Bindings for the dense family: f16 GEMM / row lookup on GGUF F16 weights and on F16T32 tiles, the F16T32 / Q8R16 / Q4R16
// repackers and the q8 / q4 GEMM and row lookup (kernels/dense.h, kernels/dense_q4.h). Every argument
// is checked (type, exact length, shape limits, row ids, overlapping outputs) before a pointer reaches
// a kernel.
#include <atomic>
#include <new>
#include <string>

#include "common.h"
#include "runtime/repack_dense.h"

namespace bitllm {

namespace {

constexpr int64_t kQ8_0BlockBytes = 34;

// rows: Int32Array of ids in [0, M); an id outside is a RangeError naming its index.
const int32_t* row_ids(const Args& a, size_t i, int64_t M, int64_t* n) {
  const int32_t* rows = a.i32(i, "rows", 0);
  *n = a.length(i);
  for (int64_t r = 0; r < *n; ++r)
    if (rows[r] < 0 || rows[r] >= M)
      a.range_error("rows[" + std::to_string(r) + "] = " + std::to_string(rows[r]) + " is outside [0, " +
                    std::to_string(M) + ")");
  return rows;
}

// M and K of a Q8R16 matrix at argument indices i, i+1 (K % 32 == 0).
void q8_shape(const Args& a, size_t i, int64_t* M, int64_t* K) {
  *M = a.integer(i, "M", 1, kMaxDim);
  *K = a.integer(i + 1, "K", kQ8Block, kMaxDim);
  if (*K % kQ8Block) a.range_error("K = " + std::to_string(*K) + " must be a multiple of 32");
}

// f16Gemm(ctx, w: Uint16Array[M*K], M, K, x: Float32Array[B*K], B, y: Float32Array[B*M])
Napi::Value f16_gemm(const Napi::CallbackInfo& info) {
  Args a(info, "f16Gemm");
  ContextWrap& ctx = a.context(0);
  const int64_t M = a.integer(2, "M", 1, kMaxDim), K = a.integer(3, "K", 1, kMaxDim);
  const int64_t B = a.integer(5, "B", 1, kMaxBatch);
  const uint16_t* w = a.u16(1, "w", M * K, M * K);
  const float* x = a.f32(4, "x", B * K, B * K);
  float* y = a.f32(6, "y", B * M, B * M);
  check_disjoint(a, y, B * M * 4, "y", x, B * K * 4, "x");
  check_disjoint(a, y, B * M * 4, "y", w, M * K * 2, "w");
  const KernelTable& t = ctx.table();
  ctx.pool().parallel_for(M, [&](int64_t m0, int64_t m1) { t.f16_gemm(w, K, M, K, x, K, B, y, M, m0, m1); });
  return info.Env().Undefined();
}

// f16GetRows(ctx, w: Uint16Array[M*K], M, K, rows: Int32Array[n], out: Float32Array[n*K])
Napi::Value f16_get_rows(const Napi::CallbackInfo& info) {
  Args a(info, "f16GetRows");
  ContextWrap& ctx = a.context(0);
  const int64_t M = a.integer(2, "M", 1, kMaxDim), K = a.integer(3, "K", 1, kMaxDim);
  const uint16_t* w = a.u16(1, "w", M * K, M * K);
  int64_t n = 0;
  const int32_t* rows = row_ids(a, 4, M, &n);
  float* out = a.f32(5, "out", n * K, n * K);
  check_disjoint(a, out, n * K * 4, "out", w, M * K * 2, "w");
  check_disjoint(a, out, n * K * 4, "out", rows, n * 4, "rows");
  const KernelTable& t = ctx.table();
  ctx.pool().parallel_for(n, [&](int64_t i0, int64_t i1) {
    t.f16_get_rows(w, K, K, rows + i0, i1 - i0, out + i0 * K, K);
  });
  return info.Env().Undefined();
}

// ---- F16T32 (the F16 lm_head, k-major 32-row tiles) ----

int64_t f16t_shape_elems(const Args& a, size_t i, int64_t* M, int64_t* K) {
  *M = a.integer(i, "M", 1, kMaxDim);
  *K = a.integer(i + 1, "K", 1, kMaxDim);
  return f16t_elems(*M, *K);
}

// repackF16T(ctx, src: Uint16Array[M*K] (GGUF F16 rows), M, K, dst: Uint16Array[f16tElems(M, K)]) -> number of
// Inf / NaN halves (moved as they are: the caller rejects the tensor).
Napi::Value repack_f16t_binding(const Napi::CallbackInfo& info) {
  Args a(info, "repackF16T");
  ContextWrap& ctx = a.context(0);
  int64_t M, K;
  const int64_t n = f16t_shape_elems(a, 2, &M, &K);
  const uint16_t* src = a.u16(1, "src", M * K, M * K);
  uint16_t* dst = a.u16(4, "dst", n, n);
  check_disjoint(a, dst, n * 2, "dst", src, M * K * 2, "src");
  std::atomic<int64_t> bad{0};
  ctx.pool().parallel_for(f16t_tiles(M), [&](int64_t t0, int64_t t1) {
    bad.fetch_add(repack_f16t(src, M, K, dst, t0, t1), std::memory_order_relaxed);
  });
  return Napi::Number::New(info.Env(), static_cast<double>(bad.load()));
}

// f16tGemm(ctx, w: Uint16Array[f16tElems(M, K)], M, K, x: Float32Array[B*K], B, y: Float32Array[B*M])
Napi::Value f16t_gemm(const Napi::CallbackInfo& info) {
  Args a(info, "f16tGemm");
  ContextWrap& ctx = a.context(0);
  int64_t M, K;
  const int64_t n = f16t_shape_elems(a, 2, &M, &K);
  const int64_t B = a.integer(5, "B", 1, kMaxBatch);
  const uint16_t* w = a.u16(1, "w", n, n);
  const float* x = a.f32(4, "x", B * K, B * K);
  float* y = a.f32(6, "y", B * M, B * M);
  check_disjoint(a, y, B * M * 4, "y", x, B * K * 4, "x");
  check_disjoint(a, y, B * M * 4, "y", w, n * 2, "w");
  const KernelTable& t = ctx.table();
  ctx.pool().parallel_for(f16t_tiles(M), [&](int64_t t0, int64_t t1) { t.f16t_gemm(w, M, K, x, K, B, y, M, t0, t1); });
  return info.Env().Undefined();
}

// f16tGetRows(ctx, w: Uint16Array[f16tElems(M, K)], M, K, rows: Int32Array[n], out: Float32Array[n*K])
Napi::Value f16t_get_rows(const Napi::CallbackInfo& info) {
  Args a(info, "f16tGetRows");
  ContextWrap& ctx = a.context(0);
  int64_t M, K;
  const int64_t elems = f16t_shape_elems(a, 2, &M, &K);
  const uint16_t* w = a.u16(1, "w", elems, elems);
  int64_t n = 0;
  const int32_t* rows = row_ids(a, 4, M, &n);
  float* out = a.f32(5, "out", n * K, n * K);
  check_disjoint(a, out, n * K * 4, "out", w, elems * 2, "w");
  check_disjoint(a, out, n * K * 4, "out", rows, n * 4, "rows");
  const KernelTable& t = ctx.table();
  ctx.pool().parallel_for(n, [&](int64_t i0, int64_t i1) { t.f16t_get_rows(w, K, rows + i0, i1 - i0, out + i0 * K, K); });
  return info.Env().Undefined();
}

// repackQ8(ctx, format: 'q8_0'|'f16'|'f32', src, M, K, data: Uint8Array[q8Bytes(M, K)]) -> number of
// invalid blocks (non-finite scale or values; stored as zeros: the caller rejects the tensor).
// src: q8_0 Uint8Array[M*K/32*34] (GGUF blocks), f16 Uint16Array[M*K], f32 Float32Array[M*K].
Napi::Value repack_q8(const Napi::CallbackInfo& info) {
  Args a(info, "repackQ8");
  ContextWrap& ctx = a.context(0);
  if (info.Length() < 2 || !info[1].IsString()) a.type_error("format must be a string");
  const std::string format = info[1].As<Napi::String>().Utf8Value();
  if (format != "q8_0" && format != "f16" && format != "f32")
    a.range_error("format '" + format + "' is not one of q8_0, f16, f32");
  int64_t M, K;
  q8_shape(a, 3, &M, &K);
  uint8_t* data = a.u8(5, "data", q8_bytes(M, K), q8_bytes(M, K));
  const void* src;
  int64_t src_bytes;
  if (format == "q8_0") {
    src_bytes = M * (K / kQ8Block) * kQ8_0BlockBytes;
    src = a.u8(2, "src", src_bytes, src_bytes);
  } else if (format == "f16") {
    src = a.u16(2, "src", M * K, M * K);
    src_bytes = M * K * 2;
  } else {
    src = a.f32(2, "src", M * K, M * K);
    src_bytes = M * K * 4;
  }
  check_disjoint(a, data, q8_bytes(M, K), "data", src, src_bytes, "src");
  std::atomic<int64_t> invalid{0};
  ctx.pool().parallel_for(q8_tiles(M), [&](int64_t t0, int64_t t1) {
    int64_t bad;
    if (format == "q8_0") {
      bad = repack_q8_from_q8_0(static_cast<const uint8_t*>(src), M, K, data, t0, t1);
    } else if (format == "f16") {
      bad = repack_q8_from_f16(static_cast<const uint16_t*>(src), K, M, K, data, t0, t1);
    } else {
      bad = repack_q8_from_f32(static_cast<const float*>(src), K, M, K, data, t0, t1);
    }
    invalid.fetch_add(bad, std::memory_order_relaxed);
  });
  return Napi::Number::New(info.Env(), static_cast<double>(invalid.load()));
}

// unpackQ8ToQ8_0(data: Uint8Array[q8Bytes(M, K)], M, K, dst: Uint8Array[M*K/32*34])
Napi::Value unpack_q8(const Napi::CallbackInfo& info) {
  Args a(info, "unpackQ8ToQ8_0");
  int64_t M, K;
  q8_shape(a, 1, &M, &K);
  const uint8_t* data = a.u8(0, "data", q8_bytes(M, K), q8_bytes(M, K));
  const int64_t dst_bytes = M * (K / kQ8Block) * kQ8_0BlockBytes;
  uint8_t* dst = a.u8(3, "dst", dst_bytes, dst_bytes);
  check_disjoint(a, dst, dst_bytes, "dst", data, q8_bytes(M, K), "data");
  unpack_q8_to_q8_0(data, M, K, dst);
  return info.Env().Undefined();
}

// q8Gemm(ctx, data: Uint8Array[q8Bytes(M, K)], M, K, q: Int8Array[B*K], scale: Float32Array[B],
//        sum: Int32Array[B], B, y: Float32Array[B*M])
Napi::Value q8_gemm(const Napi::CallbackInfo& info) {
  Args a(info, "q8Gemm");
  ContextWrap& ctx = a.context(0);
  int64_t M, K;
  q8_shape(a, 2, &M, &K);
  const int64_t B = a.integer(7, "B", 1, kMaxBatch);
  const uint8_t* data = a.u8(1, "data", q8_bytes(M, K), q8_bytes(M, K));
  const int8_t* q = a.i8(4, "q", B * K, B * K);
  const float* scale = a.f32(5, "scale", B, B);
  const int32_t* sum = a.i32(6, "sum", B, B);
  float* y = a.f32(8, "y", B * M, B * M);
  check_disjoint(a, y, B * M * 4, "y", data, q8_bytes(M, K), "data");
  check_disjoint(a, y, B * M * 4, "y", q, B * K, "q");
  check_disjoint(a, y, B * M * 4, "y", scale, B * 4, "scale");
  const Q8Mat w{data, M, K};
  const QActs acts{q, scale, sum, nullptr, B, K, K};
  const KernelTable& t = ctx.table();
  ctx.pool().parallel_for(q8_tiles(M), [&](int64_t t0, int64_t t1) { t.q8_gemm(w, acts, y, M, t0, t1); });
  return info.Env().Undefined();
}

// q8GetRows(ctx, data: Uint8Array[q8Bytes(M, K)], M, K, rows: Int32Array[n], out: Float32Array[n*K])
Napi::Value q8_get_rows(const Napi::CallbackInfo& info) {
  Args a(info, "q8GetRows");
  ContextWrap& ctx = a.context(0);
  int64_t M, K;
  q8_shape(a, 2, &M, &K);
  const uint8_t* data = a.u8(1, "data", q8_bytes(M, K), q8_bytes(M, K));
  int64_t n = 0;
  const int32_t* rows = row_ids(a, 4, M, &n);
  float* out = a.f32(5, "out", n * K, n * K);
  check_disjoint(a, out, n * K * 4, "out", data, q8_bytes(M, K), "data");
  check_disjoint(a, out, n * K * 4, "out", rows, n * 4, "rows");
  const Q8Mat w{data, M, K};
  const KernelTable& t = ctx.table();
  ctx.pool().parallel_for(n, [&](int64_t i0, int64_t i1) { t.q8_get_rows(w, rows + i0, i1 - i0, out + i0 * K, K); });
  return info.Env().Undefined();
}

// ---- q4 (Q4R16) ----

constexpr int64_t kQ4_0BlockBytes = 18;

// repackQ4(ctx, format: 'q4_0'|'q8_0'|'f16'|'bf16'|'f32', src, M, K, data: Uint8Array[q4Bytes(M, K)])
// -> number of invalid blocks (non-finite scale or values, or a scale past fp16; stored as zeros: the
// caller rejects the tensor). src: q4_0 Uint8Array[M*K/32*18], q8_0 Uint8Array[M*K/32*34] (GGUF
// blocks), f16 / bf16 Uint16Array[M*K], f32 Float32Array[M*K].
Napi::Value repack_q4(const Napi::CallbackInfo& info) {
  Args a(info, "repackQ4");
  ContextWrap& ctx = a.context(0);
  if (info.Length() < 2 || !info[1].IsString()) a.type_error("format must be a string");
  const std::string format = info[1].As<Napi::String>().Utf8Value();
  if (format != "q4_0" && format != "q8_0" && format != "f16" && format != "bf16" && format != "f32")
    a.range_error("format '" + format + "' is not one of q4_0, q8_0, f16, bf16, f32");
  int64_t M, K;
  q8_shape(a, 3, &M, &K);
  uint8_t* data = a.u8(5, "data", q4_bytes(M, K), q4_bytes(M, K));
  const void* src;
  int64_t src_bytes;
  if (format == "q4_0" || format == "q8_0") {
    src_bytes = M * (K / kQ4Block) * (format == "q4_0" ? kQ4_0BlockBytes : kQ8_0BlockBytes);
    src = a.u8(2, "src", src_bytes, src_bytes);
  } else if (format == "f16" || format == "bf16") {
    src = a.u16(2, "src", M * K, M * K);
    src_bytes = M * K * 2;
  } else {
    src = a.f32(2, "src", M * K, M * K);
    src_bytes = M * K * 4;
  }
  check_disjoint(a, data, q4_bytes(M, K), "data", src, src_bytes, "src");
  std::atomic<int64_t> invalid{0};
  const char f = format == "q4_0" ? '4' : format == "q8_0" ? '8' : format == "f16" ? 'h' : format == "bf16" ? 'b' : 'f';
  ctx.pool().parallel_for(q4_tiles(M), [&](int64_t t0, int64_t t1) {
    int64_t bad;
    switch (f) {
      case '4': bad = repack_q4_from_q4_0(static_cast<const uint8_t*>(src), M, K, data, t0, t1); break;
      case '8': bad = repack_q4_from_q8_0(static_cast<const uint8_t*>(src), M, K, data, t0, t1); break;
      case 'h': bad = repack_q4_from_f16(static_cast<const uint16_t*>(src), K, M, K, data, t0, t1); break;
      case 'b': bad = repack_q4_from_bf16(static_cast<const uint16_t*>(src), K, M, K, data, t0, t1); break;
      default: bad = repack_q4_from_f32(static_cast<const float*>(src), K, M, K, data, t0, t1); break;
    }
    invalid.fetch_add(bad, std::memory_order_relaxed);
  });
  return Napi::Number::New(info.Env(), static_cast<double>(invalid.load()));
}

// unpackQ4ToQ4_0(data: Uint8Array[q4Bytes(M, K)], M, K, dst: Uint8Array[M*K/32*18])
Napi::Value unpack_q4(const Napi::CallbackInfo& info) {
  Args a(info, "unpackQ4ToQ4_0");
  int64_t M, K;
  q8_shape(a, 1, &M, &K);
  const uint8_t* data = a.u8(0, "data", q4_bytes(M, K), q4_bytes(M, K));
  const int64_t dst_bytes = M * (K / kQ4Block) * kQ4_0BlockBytes;
  uint8_t* dst = a.u8(3, "dst", dst_bytes, dst_bytes);
  check_disjoint(a, dst, dst_bytes, "dst", data, q4_bytes(M, K), "data");
  unpack_q4_to_q4_0(data, M, K, dst);
  return info.Env().Undefined();
}

// q4Gemm(ctx, data: Uint8Array[q4Bytes(M, K)], M, K, q: Int8Array[B*K], scale: Float32Array[B], B,
//        y: Float32Array[B*M]). The per-32-block activation sums go to the context scratch first.
Napi::Value q4_gemm(const Napi::CallbackInfo& info) {
  Args a(info, "q4Gemm");
  ContextWrap& ctx = a.context(0);
  int64_t M, K;
  q8_shape(a, 2, &M, &K);
  const int64_t B = a.integer(6, "B", 1, kMaxBatch);
  const uint8_t* data = a.u8(1, "data", q4_bytes(M, K), q4_bytes(M, K));
  const int8_t* q = a.i8(4, "q", B * K, B * K);
  const float* scale = a.f32(5, "scale", B, B);
  float* y = a.f32(7, "y", B * M, B * M);
  check_disjoint(a, y, B * M * 4, "y", data, q4_bytes(M, K), "data");
  check_disjoint(a, y, B * M * 4, "y", q, B * K, "q");
  check_disjoint(a, y, B * M * 4, "y", scale, B * 4, "scale");
  const int64_t nb = K / kQ4Block;
  int32_t* bsum32;
  try {
    bsum32 = ctx.scratch_i32(static_cast<size_t>(B * nb));
  } catch (const std::bad_alloc&) {
    a.range_error("cannot allocate " + std::to_string(B * nb * 4) + " bytes of block-sum scratch");
  }
  ctx.pool().parallel_for(B, [&](int64_t b0, int64_t b1) {
    q4_act_block_sums(q + b0 * K, K, b1 - b0, K, bsum32 + b0 * nb);
  });
  const Q4Mat w{data, M, K};
  const QActs acts{q, scale, nullptr, nullptr, B, K, K};
  const KernelTable& t = ctx.table();
  ctx.pool().parallel_for(q4_tiles(M), [&](int64_t t0, int64_t t1) { t.q4_gemm(w, acts, bsum32, y, M, t0, t1); });
  return info.Env().Undefined();
}

// q4GetRows(ctx, data: Uint8Array[q4Bytes(M, K)], M, K, rows: Int32Array[n], out: Float32Array[n*K])
Napi::Value q4_get_rows(const Napi::CallbackInfo& info) {
  Args a(info, "q4GetRows");
  ContextWrap& ctx = a.context(0);
  int64_t M, K;
  q8_shape(a, 2, &M, &K);
  const uint8_t* data = a.u8(1, "data", q4_bytes(M, K), q4_bytes(M, K));
  int64_t n = 0;
  const int32_t* rows = row_ids(a, 4, M, &n);
  float* out = a.f32(5, "out", n * K, n * K);
  check_disjoint(a, out, n * K * 4, "out", data, q4_bytes(M, K), "data");
  check_disjoint(a, out, n * K * 4, "out", rows, n * 4, "rows");
  const Q4Mat w{data, M, K};
  const KernelTable& t = ctx.table();
  ctx.pool().parallel_for(n, [&](int64_t i0, int64_t i1) { t.q4_get_rows(w, rows + i0, i1 - i0, out + i0 * K, K); });
  return info.Env().Undefined();
}

}  // namespace

void register_dense(Napi::Env env, Napi::Object exports) {
  exports.Set("f16Gemm", Napi::Function::New(env, f16_gemm, "f16Gemm"));
  exports.Set("f16GetRows", Napi::Function::New(env, f16_get_rows, "f16GetRows"));
  exports.Set("repackF16T", Napi::Function::New(env, repack_f16t_binding, "repackF16T"));
  exports.Set("f16tGemm", Napi::Function::New(env, f16t_gemm, "f16tGemm"));
  exports.Set("f16tGetRows", Napi::Function::New(env, f16t_get_rows, "f16tGetRows"));
  exports.Set("repackQ8", Napi::Function::New(env, repack_q8, "repackQ8"));
  exports.Set("unpackQ8ToQ8_0", Napi::Function::New(env, unpack_q8, "unpackQ8ToQ8_0"));
  exports.Set("q8Gemm", Napi::Function::New(env, q8_gemm, "q8Gemm"));
  exports.Set("q8GetRows", Napi::Function::New(env, q8_get_rows, "q8GetRows"));
  exports.Set("repackQ4", Napi::Function::New(env, repack_q4, "repackQ4"));
  exports.Set("unpackQ4ToQ4_0", Napi::Function::New(env, unpack_q4, "unpackQ4ToQ4_0"));
  exports.Set("q4Gemm", Napi::Function::New(env, q4_gemm, "q4Gemm"));
  exports.Set("q4GetRows", Napi::Function::New(env, q4_get_rows, "q4GetRows"));
}

}  // namespace bitllm
