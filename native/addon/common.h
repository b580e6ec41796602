// Shared pieces of the N-API layer: the Context object and argument checking.
// Every value from JS is checked here (type, range, length against the shape) before any pointer
// is handed to a kernel; failures throw TypeError / RangeError naming the function and argument.
#pragma once
#include <napi.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "kernels/kernels.h"
#include "runtime/billm_run.h"
#include "runtime/sparse_run.h"
#include "runtime/thread_pool.h"

namespace bitllm {

// A compute context: one kernel table (one ISA) and one thread pool. No global state: tests build
// one context per ISA side by side.
class ContextWrap : public Napi::ObjectWrap<ContextWrap> {
 public:
  static Napi::Function define(Napi::Env env);
  explicit ContextWrap(const Napi::CallbackInfo& info);

  const KernelTable& table() const { return table_; }
  ThreadPool& pool() { return *pool_; }
  // Scratch that grows but never shrinks: no allocation per call once warm.
  int32_t* scratch_i32(size_t n) {
    if (scratch_i32_.size() < n) scratch_i32_.resize(n);
    return scratch_i32_.data();
  }
  // The byte scratch itself, for runtime drivers that size it themselves (runtime/lut_run.h).
  std::vector<uint8_t>& scratch_bytes() { return scratch_u8_; }
  BillmScratch& billm_scratch() { return billm_scratch_; }
  SparseLists& sparse_lists() { return sparse_lists_; }
  uint8_t* scratch_u8(size_t n) {
    if (scratch_u8_.size() < n) scratch_u8_.resize(n);
    return scratch_u8_.data();
  }

 private:
  Napi::Value info(const Napi::CallbackInfo& info);
  Napi::Value threads(const Napi::CallbackInfo& info);

  KernelTable table_;
  std::unique_ptr<ThreadPool> pool_;
  std::vector<int32_t> scratch_i32_;
  std::vector<uint8_t> scratch_u8_;
  BillmScratch billm_scratch_;
  SparseLists sparse_lists_;
};

// Per-env data: the Context constructor, to check `instanceof` before unwrapping.
struct AddonData {
  Napi::FunctionReference context_ctor;
};

// Argument reader for one binding call: args.context(0), args.f32(1, "x", n) ...
class Args {
 public:
  Args(const Napi::CallbackInfo& info, const char* fn) : info_(info), fn_(fn) {}

  Napi::Env env() const { return info_.Env(); }
  [[noreturn]] void type_error(const std::string& msg) const;
  [[noreturn]] void range_error(const std::string& msg) const;

  ContextWrap& context(size_t i) const;
  // An integer in [lo, hi] (a JS number with no fraction).
  int64_t integer(size_t i, const char* name, int64_t lo, int64_t hi) const;
  double number(size_t i, const char* name) const;
  bool has(size_t i) const { return i < info_.Length() && !info_[i].IsUndefined() && !info_[i].IsNull(); }

  // Typed arrays of an exact element type with at least `min_len` elements (exactly `exact` if >= 0).
  float* f32(size_t i, const char* name, int64_t min_len, int64_t exact = -1) const;
  int8_t* i8(size_t i, const char* name, int64_t min_len, int64_t exact = -1) const;
  uint8_t* u8(size_t i, const char* name, int64_t min_len, int64_t exact = -1) const;
  uint16_t* u16(size_t i, const char* name, int64_t min_len, int64_t exact = -1) const;
  int32_t* i32(size_t i, const char* name, int64_t min_len, int64_t exact = -1) const;
  // Length in elements of typed array argument i (after a successful typed-array check).
  int64_t length(size_t i) const;

 private:
  void* typed(size_t i, const char* name, napi_typedarray_type type, const char* type_name, int64_t min_len,
              int64_t exact) const;
  const Napi::CallbackInfo& info_;
  const char* fn_;
};

// Rejects (RangeError "<out> overlaps <in>") an output typed array whose bytes overlap an input's: kernels
// read their inputs while they write. Empty ranges never overlap.
void check_disjoint(const Args& a, const void* out, int64_t out_bytes, const char* out_name, const void* in,
                    int64_t in_bytes, const char* in_name);

// Largest K / M / B the bindings accept: keeps every int32 dot and size computation exact.
constexpr int64_t kMaxDim = int64_t{1} << 22;
constexpr int64_t kMaxBatch = 4096;

// Registration hooks, one per kernel family file (addon/<family>.cpp).
void register_ternary(Napi::Env env, Napi::Object exports);
void register_ternary_lut(Napi::Env env, Napi::Object exports);
void register_binary(Napi::Env env, Napi::Object exports);
void register_billm(Napi::Env env, Napi::Object exports);
void register_dense(Napi::Env env, Napi::Object exports);
void register_bench(Napi::Env env, Napi::Object exports);
void register_ops(Napi::Env env, Napi::Object exports);
void register_file(Napi::Env env, Napi::Object exports);
void register_model(Napi::Env env, Napi::Object exports);

}  // namespace bitllm
