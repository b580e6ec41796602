// Bindings shared by the ternary layouts derived from T2R16 (TD3, TS256): packing from trits (through a
// T2R16 copy), packing from a loaded T2R16 matrix, and unpacking back to trits. A layout is its names,
// its K check, its byte size and its two converters; everything else (argument checks, the thread split
// of the T2R16 packer) is the same for each.
#pragma once
#include <cstdint>
#include <vector>

#include "common.h"
#include "runtime/repack_ternary.h"

namespace bitllm {

struct TernaryLayoutOps {
  const char* pack_name;     // packX(ctx, trits: Int8Array[M*K], M, K, data: Uint8Array[bytes(M, K)])
  const char* pack_t2_name;  // packXFromT2(ctx, codes: Uint8Array (T2R16), M, K, data: Uint8Array)
  const char* unpack_name;   // unpackX(data: Uint8Array, M, K, trits: Int8Array[M*K])
  int64_t (*check_k)(const Args& a, size_t i);
  int64_t (*bytes)(int64_t M, int64_t K);
  void (*pack_from_t2)(ThreadPool& pool, const uint8_t* codes, int64_t M, int64_t K, uint8_t* data);
  void (*unpack)(const uint8_t* data, int64_t M, int64_t K, int8_t* trits);
};

inline Napi::Value pack_layout_from_trits(const Napi::CallbackInfo& info, const TernaryLayoutOps& op) {
  Args a(info, op.pack_name);
  ContextWrap& ctx = a.context(0);
  const int64_t M = a.integer(2, "M", 1, kMaxDim), K = op.check_k(a, 3);
  const int8_t* trits = a.i8(1, "trits", M * K, M * K);
  const int64_t bytes = op.bytes(M, K);
  uint8_t* data = a.u8(4, "data", bytes, bytes);
  std::vector<uint8_t> codes(static_cast<size_t>(t2_code_bytes(M, K)));
  ctx.pool().parallel_for(t2_tiles(M), [&](int64_t t0, int64_t t1) { pack_t2_from_trits(trits, K, M, K, codes.data(), t0, t1); });
  op.pack_from_t2(ctx.pool(), codes.data(), M, K, data);
  return info.Env().Undefined();
}

inline Napi::Value pack_layout_from_t2(const Napi::CallbackInfo& info, const TernaryLayoutOps& op) {
  Args a(info, op.pack_t2_name);
  ContextWrap& ctx = a.context(0);
  const int64_t M = a.integer(2, "M", 1, kMaxDim), K = op.check_k(a, 3);
  const uint8_t* codes = a.u8(1, "codes", t2_code_bytes(M, K), t2_code_bytes(M, K));
  const int64_t bytes = op.bytes(M, K);
  uint8_t* data = a.u8(4, "data", bytes, bytes);
  check_disjoint(a, data, bytes, "data", codes, t2_code_bytes(M, K), "codes");
  op.pack_from_t2(ctx.pool(), codes, M, K, data);
  return info.Env().Undefined();
}

inline Napi::Value unpack_layout(const Napi::CallbackInfo& info, const TernaryLayoutOps& op) {
  Args a(info, op.unpack_name);
  const int64_t M = a.integer(1, "M", 1, kMaxDim), K = op.check_k(a, 2);
  const int64_t bytes = op.bytes(M, K);
  const uint8_t* data = a.u8(0, "data", bytes, bytes);
  int8_t* trits = a.i8(3, "trits", M * K, M * K);
  op.unpack(data, M, K, trits);
  return info.Env().Undefined();
}

}  // namespace bitllm
