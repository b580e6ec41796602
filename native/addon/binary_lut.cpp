// Bindings for the B1L64 binary lookup-table family (kernels/binary_lut.h): the float-activation GEMM,
// its table build (exposed for tests), and the B1L64 packers (signs, B1R16) / unpacker.
#include <algorithm>
#include <string>

#include "common.h"
#include "runtime/repack_binary.h"
#include "runtime/lut_run.h"
#include "runtime/repack_binary_lut.h"

namespace bitllm {

namespace {

int64_t checked_k(const Args& a, size_t i, int64_t step) {
  const int64_t K = a.integer(i, "K", step, kMaxDim);
  if (K % step) a.range_error("K = " + std::to_string(K) + " must be a multiple of " + std::to_string(step));
  return K;
}

// binaryLutTables(ctx, u: Float32Array[B*K], B, K, tables: Float32Array[B*4K])  (K % 4 == 0)
Napi::Value lut_tables(const Napi::CallbackInfo& info) {
  Args a(info, "binaryLutTables");
  ContextWrap& ctx = a.context(0);
  const int64_t B = a.integer(2, "B", 1, kMaxBatch), K = checked_k(a, 3, kB1lGroupK);
  const float* u = a.f32(1, "u", B * K, B * K);
  const int64_t ldt = b1l_table_floats(K);
  float* tables = a.f32(4, "tables", B * ldt, B * ldt);
  check_disjoint(a, tables, B * ldt * 4, "tables", u, B * K * 4, "u");
  build_binary_lut_tables(ctx.table(), ctx.pool(), u, K, B, K, tables, ldt);
  return info.Env().Undefined();
}

// binaryLutGemm(ctx, bits: Uint8Array[Mp64*K/8], M, K, u: Float32Array[B*K], B,
//               rowScale: Float32Array[M] | null | undefined, tokBias: Float32Array[B] | null | undefined,
//               y: Float32Array[B*M])
// y[b, m] = (Σ_k sign(m, k)·u[b, k]) (* rowScale[m]) (+ tokBias[b]), binary_lut.h's contract.
Napi::Value lut_gemm(const Napi::CallbackInfo& info) {
  Args a(info, "binaryLutGemm");
  ContextWrap& ctx = a.context(0);
  const int64_t M = a.integer(2, "M", 1, kMaxDim), K = checked_k(a, 3, kB1lKStep);
  const int64_t nbits = b1l_bytes(M, K);
  const uint8_t* bits = a.u8(1, "bits", nbits, nbits);
  const int64_t B = a.integer(5, "B", 1, kMaxBatch);
  const float* u = a.f32(4, "u", B * K, B * K);
  const float* row_scale = a.has(6) ? a.f32(6, "rowScale", M, M) : nullptr;
  const float* tok_bias = a.has(7) ? a.f32(7, "tokBias", B, B) : nullptr;
  float* y = a.f32(8, "y", B * M, B * M);
  const int64_t ybytes = B * M * 4;
  check_disjoint(a, y, ybytes, "y", bits, nbits, "bits");
  check_disjoint(a, y, ybytes, "y", u, B * K * 4, "u");
  if (row_scale) check_disjoint(a, y, ybytes, "y", row_scale, M * 4, "rowScale");
  if (tok_bias) check_disjoint(a, y, ybytes, "y", tok_bias, B * 4, "tokBias");

  const BinaryLutMat w{bits, M, K};
  run_binary_lut_gemm(ctx.table(), ctx.pool(), w, u, K, B, row_scale, tok_bias, y, M, ctx.scratch_bytes());
  return info.Env().Undefined();
}

// packBinaryLutFromSigns(ctx, signs: Int8Array[M*K] (>= 0 -> +1), M, K, bits: Uint8Array[Mp64*K/8])  (K % 32 == 0)
Napi::Value pack_from_signs(const Napi::CallbackInfo& info) {
  Args a(info, "packBinaryLutFromSigns");
  ContextWrap& ctx = a.context(0);
  const int64_t M = a.integer(2, "M", 1, kMaxDim), K = checked_k(a, 3, kB1lKStep);
  const int8_t* signs = a.i8(1, "signs", M * K, M * K);
  uint8_t* bits = a.u8(4, "bits", b1l_bytes(M, K), b1l_bytes(M, K));
  check_disjoint(a, bits, b1l_bytes(M, K), "bits", signs, M * K, "signs");
  ctx.pool().parallel_for(b1l_blocks(M), [&](int64_t t0, int64_t t1) { pack_b1l_from_signs(signs, K, M, K, bits, t0, t1); });
  return info.Env().Undefined();
}

// packBinaryLutFromB1r16(ctx, b1r16: Uint8Array[Mp16*K/8], M, K, bits: Uint8Array[Mp64*K/8])  (K % 64 == 0)
Napi::Value pack_from_b1r16(const Napi::CallbackInfo& info) {
  Args a(info, "packBinaryLutFromB1r16");
  ContextWrap& ctx = a.context(0);
  const int64_t M = a.integer(2, "M", 1, kMaxDim), K = checked_k(a, 3, kB1KStep);
  const int64_t src_bytes = b1_bits_bytes(M, K), nbits = b1l_bytes(M, K);
  const uint8_t* src = a.u8(1, "b1r16", src_bytes, src_bytes);
  uint8_t* bits = a.u8(4, "bits", nbits, nbits);
  check_disjoint(a, bits, nbits, "bits", src, src_bytes, "b1r16");
  ctx.pool().parallel_for(b1l_blocks(M), [&](int64_t t0, int64_t t1) { pack_b1l_from_b1r16(src, M, K, bits, t0, t1); });
  return info.Env().Undefined();
}

// unpackBinaryLutToSigns(bits: Uint8Array[Mp64*K/8], M, K, signs: Int8Array[M*K])
Napi::Value unpack_to_signs(const Napi::CallbackInfo& info) {
  Args a(info, "unpackBinaryLutToSigns");
  const int64_t M = a.integer(1, "M", 1, kMaxDim), K = checked_k(a, 2, kB1lKStep);
  const uint8_t* bits = a.u8(0, "bits", b1l_bytes(M, K), b1l_bytes(M, K));
  int8_t* signs = a.i8(3, "signs", M * K, M * K);
  check_disjoint(a, signs, M * K, "signs", bits, b1l_bytes(M, K), "bits");
  unpack_b1l_to_signs(bits, M, K, signs, K);
  return info.Env().Undefined();
}

}  // namespace

void register_binary_lut(Napi::Env env, Napi::Object exports) {
  exports.Set("binaryLutGemm", Napi::Function::New(env, lut_gemm, "binaryLutGemm"));
  exports.Set("binaryLutTables", Napi::Function::New(env, lut_tables, "binaryLutTables"));
  exports.Set("packBinaryLutFromSigns", Napi::Function::New(env, pack_from_signs, "packBinaryLutFromSigns"));
  exports.Set("packBinaryLutFromB1r16", Napi::Function::New(env, pack_from_b1r16, "packBinaryLutFromB1r16"));
  exports.Set("unpackBinaryLutToSigns", Napi::Function::New(env, unpack_to_signs, "unpackBinaryLutToSigns"));
}

}  // namespace bitllm
