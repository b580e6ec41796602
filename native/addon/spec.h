// Reading the spec objects lib/model builds for the one-call native forwards (addon/model.cpp's ModelNative,
// addon/mamba2_model.cpp's Mamba2ModelNative): every field is checked (type, range, exact typed-array length)
// and every typed array the plan borrows is kept alive by a reference. Errors name the field path.
#pragma once
#include <cmath>
#include <string>
#include <vector>

#include "common.h"
#include "runtime/kv_pool.h"
#include "runtime/linear.h"
#include "runtime/model_exec.h"

namespace bitllm {

// Reads fields of a spec object; errors name the field path ("layers[3].wqkv.codes").
class Spec {
 public:
  // who: the class the errors name ("ModelNative: layers[3].wqkv ...").
  Spec(Napi::Env env, Napi::Object o, std::string path, std::vector<Napi::Reference<Napi::Value>>* keep,
       const char* who = "ModelNative")
      : env_(env), o_(o), path_(std::move(path)), keep_(keep), who_(who) {}

  [[noreturn]] void fail(const std::string& field, const std::string& msg, bool type = false) const {
    const std::string m = std::string(who_) + ": " + where(field) + " " + msg;
    if (type) throw Napi::TypeError::New(env_, m);
    throw Napi::RangeError::New(env_, m);
  }
  std::string where(const std::string& field) const { return path_.empty() ? field : path_ + "." + field; }
  std::vector<Napi::Reference<Napi::Value>>* keep() const { return keep_; }
  const char* who() const { return who_; }

  Napi::Value get(const char* f) const { return o_.Get(f); }
  bool has(const char* f) const {
    auto v = o_.Get(f);
    return !v.IsUndefined() && !v.IsNull();
  }
  Spec object(const char* f) const {
    auto v = o_.Get(f);
    if (!v.IsObject()) fail(f, "must be an object", true);
    return Spec(env_, v.As<Napi::Object>(), where(f), keep_, who_);
  }
  double number(const char* f) const {
    auto v = o_.Get(f);
    if (!v.IsNumber()) fail(f, "must be a number", true);
    return v.As<Napi::Number>().DoubleValue();
  }
  int64_t integer(const char* f, int64_t lo, int64_t hi) const {
    const double v = number(f);
    if (!std::isfinite(v) || std::floor(v) != v || v < static_cast<double>(lo) || v > static_cast<double>(hi))
      fail(f, "= " + std::to_string(v) + " must be an integer in [" + std::to_string(lo) + ", " + std::to_string(hi) + "]");
    return static_cast<int64_t>(v);
  }
  std::string string(const char* f) const {
    auto v = o_.Get(f);
    if (!v.IsString()) fail(f, "must be a string", true);
    return v.As<Napi::String>().Utf8Value();
  }
  // A typed array of `type` with exactly `n` elements; a reference keeps it alive with the model.
  void* typed(const char* f, napi_typedarray_type type, const char* type_name, int64_t n) const {
    auto v = o_.Get(f);
    if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != type)
      fail(f, std::string("must be a ") + type_name, true);
    auto ta = v.As<Napi::TypedArray>();
    const int64_t len = static_cast<int64_t>(ta.ElementLength());
    if (len != n) fail(f, "has " + std::to_string(len) + " elements, expected " + std::to_string(n));
    auto ab = ta.ArrayBuffer();
    if (ab.Data() == nullptr && n > 0) fail(f, "is detached", true);
    keep_->push_back(Napi::Persistent(v));
    return static_cast<uint8_t*>(ab.Data()) + ta.ByteOffset();
  }
  const float* f32(const char* f, int64_t n) const {
    return static_cast<const float*>(typed(f, napi_float32_array, "Float32Array", n));
  }
  const uint8_t* u8(const char* f, int64_t n) const {
    return static_cast<const uint8_t*>(typed(f, napi_uint8_array, "Uint8Array", n));
  }
  const uint16_t* u16(const char* f, int64_t n) const {
    return static_cast<const uint16_t*>(typed(f, napi_uint16_array, "Uint16Array", n));
  }

 private:
  Napi::Env env_;
  Napi::Object o_;
  std::string path_;
  std::vector<Napi::Reference<Napi::Value>>* keep_;
  const char* who_;
};

// One linear of shape [M, K] (runtime/linear.h): {weights: 't2r16' | 'td3' | 'ts256' | 'b1r16' | 'b1l64' | 'billm' | 'f16', quant: 'i8' |
// 'i4' | 'topk-i8' | 'none', M, K, codes | data | bits, scales, scaleMode, colScale?, colBias?, rowScale?,
// topkRatio, lnEps}. Weights and quantizer must fit each other (int8 GEMMs need a quantizer, F16 none).
// The linear may have fewer than M output rows (a member of a group); K is exact.
LinearPlan read_linear(const Spec& s, int64_t M, int64_t K);
// A group of linears sharing one input: an array whose outputs together are `M` rows.
LinearGroup read_group(Napi::Env env, const Spec& parent, const char* field, int64_t M, int64_t K);
// An embedding / head matrix {kind: 'f16' | 'q8' | 'q4', data, M, K}.
PlanDense read_dense(const Spec& s, int64_t M, int64_t K);

// The rows of a forwardBatch call (args i .. i + 3: tokens, seq, pos Int32Array[B], outRows Int32Array[nOut]),
// copied (the inputs may live anywhere in JS memory, including next to logits) and checked: 1 <= B <= kMaxBatch,
// token ids in [0, n_vocab), positions in [0, max_pos_limit), outRows ascending rows in [0, B).
struct BatchRows {
  std::vector<int32_t> tokens, seq, pos, out_rows;
  int32_t max_pos = 0;
  int64_t size() const { return static_cast<int64_t>(tokens.size()); }
};
BatchRows read_batch_rows(const Args& a, size_t i, int64_t n_vocab, int64_t max_pos_limit);
// An optional profile argument: a Float64Array of exactly n elements, or nullptr when absent.
double* read_profile(const Args& a, const Napi::CallbackInfo& info, size_t i, int64_t n);

// The op-class names of a forward's profile clocks, as a JS array (index order).
inline Napi::Array profile_names(Napi::Env env, const char* (*name)(int), int n) {
  auto arr = Napi::Array::New(env, n);
  for (int i = 0; i < n; ++i) arr.Set(i, name(i));
  return arr;
}

// A KvPoolError as a JS RangeError with a code the TS layer maps to its typed errors (lib/model/state.ts).
[[noreturn]] void throw_pool_error(Napi::Env env, const char* fn, const KvPoolError& e);

}  // namespace bitllm
