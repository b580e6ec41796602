// Module entry: the Context class, CPU/ISA introspection, and each kernel family's bindings.
#include <cmath>
#include <cstdlib>

#include "common.h"
#include "runtime/cpu_features.h"
#include "runtime/dispatch.h"

namespace bitllm {

void Args::type_error(const std::string& msg) const {
  throw Napi::TypeError::New(info_.Env(), std::string(fn_) + ": " + msg);
}
void check_disjoint(const Args& a, const void* out, int64_t out_bytes, const char* out_name, const void* in,
                    int64_t in_bytes, const char* in_name) {
  const auto o = reinterpret_cast<uintptr_t>(out), i = reinterpret_cast<uintptr_t>(in);
  if (out_bytes > 0 && in_bytes > 0 && o < i + static_cast<uintptr_t>(in_bytes) &&
      i < o + static_cast<uintptr_t>(out_bytes))
    a.range_error(std::string(out_name) + " overlaps " + in_name);
}

void Args::range_error(const std::string& msg) const {
  throw Napi::RangeError::New(info_.Env(), std::string(fn_) + ": " + msg);
}

ContextWrap& Args::context(size_t i) const {
  auto* data = info_.Env().GetInstanceData<AddonData>();
  if (i >= info_.Length() || !info_[i].IsObject() ||
      !info_[i].As<Napi::Object>().InstanceOf(data->context_ctor.Value()))
    type_error("argument " + std::to_string(i) + " must be a Context");
  return *Napi::ObjectWrap<ContextWrap>::Unwrap(info_[i].As<Napi::Object>());
}

double Args::number(size_t i, const char* name) const {
  if (i >= info_.Length() || !info_[i].IsNumber()) type_error(std::string(name) + " must be a number");
  return info_[i].As<Napi::Number>().DoubleValue();
}

int64_t Args::integer(size_t i, const char* name, int64_t lo, int64_t hi) const {
  const double v = number(i, name);
  if (!std::isfinite(v) || std::floor(v) != v)
    range_error(std::string(name) + " must be an integer, got " + std::to_string(v));
  if (v < static_cast<double>(lo) || v > static_cast<double>(hi))
    range_error(std::string(name) + " = " + std::to_string(static_cast<long long>(v)) + " is outside [" +
                std::to_string(lo) + ", " + std::to_string(hi) + "]");
  return static_cast<int64_t>(v);
}

void* Args::typed(size_t i, const char* name, napi_typedarray_type type, const char* type_name,
                  int64_t min_len, int64_t exact) const {
  if (i >= info_.Length() || !info_[i].IsTypedArray())
    type_error(std::string(name) + " must be a " + type_name);
  auto ta = info_[i].As<Napi::TypedArray>();
  if (ta.TypedArrayType() != type) type_error(std::string(name) + " must be a " + type_name);
  const int64_t len = static_cast<int64_t>(ta.ElementLength());
  if (exact >= 0 && len != exact)
    range_error(std::string(name) + " has " + std::to_string(len) + " elements, expected " + std::to_string(exact));
  if (len < min_len)
    range_error(std::string(name) + " has " + std::to_string(len) + " elements, needs at least " +
                std::to_string(min_len));
  auto ab = ta.ArrayBuffer();
  if (ab.Data() == nullptr && len > 0) type_error(std::string(name) + " is detached");
  return static_cast<uint8_t*>(ab.Data()) + ta.ByteOffset();
}

int64_t Args::length(size_t i) const { return static_cast<int64_t>(info_[i].As<Napi::TypedArray>().ElementLength()); }

float* Args::f32(size_t i, const char* n, int64_t min_len, int64_t exact) const {
  return static_cast<float*>(typed(i, n, napi_float32_array, "Float32Array", min_len, exact));
}
int8_t* Args::i8(size_t i, const char* n, int64_t min_len, int64_t exact) const {
  return static_cast<int8_t*>(typed(i, n, napi_int8_array, "Int8Array", min_len, exact));
}
uint8_t* Args::u8(size_t i, const char* n, int64_t min_len, int64_t exact) const {
  return static_cast<uint8_t*>(typed(i, n, napi_uint8_array, "Uint8Array", min_len, exact));
}
uint16_t* Args::u16(size_t i, const char* n, int64_t min_len, int64_t exact) const {
  return static_cast<uint16_t*>(typed(i, n, napi_uint16_array, "Uint16Array", min_len, exact));
}
int32_t* Args::i32(size_t i, const char* n, int64_t min_len, int64_t exact) const {
  return static_cast<int32_t*>(typed(i, n, napi_int32_array, "Int32Array", min_len, exact));
}

// new Context({ threads?: number, isa?: 'scalar'|'avx2'|'avx512'|'neon' })
ContextWrap::ContextWrap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<ContextWrap>(info) {
  Napi::Env env = info.Env();
  int threads = physical_cores();
  const CpuFeatures& f = cpu_features();
  Isa isa;
  std::string err;
  bool have_isa = false;
  if (info.Length() > 0 && !info[0].IsUndefined()) {
    if (!info[0].IsObject()) throw Napi::TypeError::New(env, "Context: options must be an object");
    auto o = info[0].As<Napi::Object>();
    if (o.Has("threads") && !o.Get("threads").IsUndefined()) {
      auto v = o.Get("threads");
      if (!v.IsNumber()) throw Napi::TypeError::New(env, "Context: threads must be a number");
      const double d = v.As<Napi::Number>().DoubleValue();
      if (!(d >= 1 && d <= 256) || d != static_cast<int>(d))
        throw Napi::RangeError::New(env, "Context: threads must be an integer in [1, 256]");
      threads = static_cast<int>(d);
    }
    if (o.Has("isa") && !o.Get("isa").IsUndefined()) {
      auto v = o.Get("isa");
      if (!v.IsString()) throw Napi::TypeError::New(env, "Context: isa must be a string");
      const std::string name = v.As<Napi::String>().Utf8Value();
      if (!parse_isa(name, &isa))
        throw Napi::RangeError::New(env, "Context: isa '" + name + "' is not one of scalar, avx2, avx512, neon");
      have_isa = true;
    }
  }
  if (!have_isa && !default_isa(f, &isa, &err)) throw Napi::Error::New(env, err);
  if (!make_kernel_table(isa, f, &table_, &err)) throw Napi::Error::New(env, "Context: " + err);
  pool_ = std::make_unique<ThreadPool>(threads);
}

Napi::Value ContextWrap::threads(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), pool_->size());
}

Napi::Value ContextWrap::info(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto o = Napi::Object::New(env);
  o.Set("isa", isa_name(table_.isa));
  o.Set("threads", pool_->size());
  auto k = Napi::Object::New(env);
  k.Set("act_quant", table_.v_act_quant);
  k.Set("ternary_i2", table_.v_ternary);
  k.Set("ternary_lut", table_.v_ternary_lut);
  k.Set("ternary_td3", table_.v_ternary_td3);
  k.Set("ternary_sparse", table_.v_ternary_sparse);
  k.Set("binary", table_.v_binary);
  k.Set("binary_lut", table_.v_binary_lut);
  k.Set("billm", table_.v_billm);
  k.Set("f16", table_.v_f16);
  k.Set("q8", table_.v_q8);
  k.Set("q4", table_.v_q4);
  k.Set("ops", table_.v_ops);
  k.Set("mamba2", table_.v_mamba2);
  o.Set("kernels", k);
  return o;
}

Napi::Function ContextWrap::define(Napi::Env env) {
  return DefineClass(env, "Context",
                     {InstanceMethod<&ContextWrap::info>("info"), InstanceAccessor<&ContextWrap::threads>("threads")});
}

namespace {

Napi::Value cpu_info(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const CpuFeatures& f = cpu_features();
  auto o = Napi::Object::New(env);
  auto feats = Napi::Array::New(env);
  uint32_t n = 0;
  auto add = [&](bool on, const char* name) {
    if (on) feats.Set(n++, name);
  };
  add(f.avx2, "avx2");
  add(f.fma, "fma");
  add(f.f16c, "f16c");
  add(f.avx512f, "avx512f");
  add(f.avx512bw, "avx512bw");
  add(f.avx512vl, "avx512vl");
  add(f.avx512vnni, "avx512vnni");
  add(f.avx512vpopcntdq, "avx512vpopcntdq");
  add(f.avx512bitalg, "avx512bitalg");
  add(f.neon, "neon");
  add(f.dotprod, "dotprod");
  add(f.i8mm, "i8mm");
  o.Set("features", feats);
  auto isas = Napi::Array::New(env);
  n = 0;
  for (Isa isa : supported_isas(f)) isas.Set(n++, isa_name(isa));
  o.Set("supportedIsas", isas);
  o.Set("bestIsa", isa_name(best_isa(f)));
  Isa def;
  std::string err;
  if (default_isa(f, &def, &err)) {
    o.Set("defaultIsa", isa_name(def));
  } else {
    o.Set("defaultIsa", env.Null());
    o.Set("defaultIsaError", err);
  }
  o.Set("physicalCores", physical_cores());
#if defined(__x86_64__)
  o.Set("arch", "x64");
#elif defined(__aarch64__)
  o.Set("arch", "arm64");
#else
  o.Set("arch", "other");
#endif
  return o;
}

}  // namespace

// Bindings of the TD3 ternary family (addon/ternary_td3.cpp).
void register_ternary_td3(Napi::Env env, Napi::Object exports);
// Bindings of the linear-layer driver's ops (addon/linear.cpp).
void register_linear(Napi::Env env, Napi::Object exports);
// Bindings of the column-sparse ternary family (addon/ternary_sparse.cpp).
void register_ternary_sparse(Napi::Env env, Napi::Object exports);
// Bindings of the B1L64 binary lookup-table family (addon/binary_lut.cpp).
void register_binary_lut(Napi::Env env, Napi::Object exports);
// Bindings of the Mamba-2 mixer kernels (addon/mamba2.cpp).
void register_mamba2(Napi::Env env, Napi::Object exports);
void register_mamba2_model(Napi::Env env, Napi::Object exports);

Napi::Object init_module(Napi::Env env, Napi::Object exports) {
  auto* data = new AddonData();
  Napi::Function ctor = ContextWrap::define(env);
  data->context_ctor = Napi::Persistent(ctor);
  env.SetInstanceData<AddonData>(data);
  exports.Set("Context", ctor);
  exports.Set("cpuInfo", Napi::Function::New(env, cpu_info, "cpuInfo"));
  register_ternary(env, exports);
  register_ternary_lut(env, exports);
  register_ternary_td3(env, exports);
  register_ternary_sparse(env, exports);
  register_binary(env, exports);
  register_binary_lut(env, exports);
  register_billm(env, exports);
  register_dense(env, exports);
  register_bench(env, exports);
  register_ops(env, exports);
  register_file(env, exports);
  register_model(env, exports);
  register_linear(env, exports);
  register_mamba2(env, exports);
  register_mamba2_model(env, exports);
  return exports;
}

}  // namespace bitllm

static Napi::Object init_bitllm(Napi::Env env, Napi::Object exports) { return bitllm::init_module(env, exports); }

NODE_API_MODULE(bitllm, init_bitllm)
