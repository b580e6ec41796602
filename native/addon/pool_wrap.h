// The JS face of a sequence-state pool kind (runtime/kv_pool.h's KvPool, runtime/recurrent_pool.h's
// RecurrentPool): create / fork / dispose / truncate / length / stats / trim with checked arguments and
// KvPoolError mapped to a RangeError with the code lib/model/state.ts maps to its typed errors. Derived
// classes construct pool_ and describe their stats; the object is type-tagged so a forward can check a pool
// argument before unwrapping it.
#pragma once
#include <cstdint>
#include <memory>
#include <string>

#include "common.h"
#include "spec.h"

namespace bitllm {

template <typename Derived, typename Pool>
class PoolWrap : public Napi::ObjectWrap<Derived> {
 public:
  using Base = Napi::ObjectWrap<Derived>;
  static Napi::Function define_class(Napi::Env env, const char* name) {
    return Base::DefineClass(env, name,
                             {Base::InstanceMethod("create", &PoolWrap::create), Base::InstanceMethod("fork", &PoolWrap::fork),
                              Base::InstanceMethod("dispose", &PoolWrap::dispose),
                              Base::InstanceMethod("truncate", &PoolWrap::truncate),
                              Base::InstanceMethod("length", &PoolWrap::length), Base::InstanceMethod("stats", &PoolWrap::stats),
                              Base::InstanceMethod("trim", &PoolWrap::trim)});
  }
  Pool& pool() { return *pool_; }
  // The object's pool when `v` is an object of this kind (checked by its type tag), else nullptr.
  static Pool* unwrap(Napi::Env env, Napi::Value v, const napi_type_tag& tag) {
    bool ok = false;
    if (!v.IsObject() || napi_check_object_type_tag(env, v, &tag, &ok) != napi_ok || !ok) return nullptr;
    return &Base::Unwrap(v.As<Napi::Object>())->pool();
  }

 protected:
  PoolWrap(const Napi::CallbackInfo& info, const char* name) : Base(info), name_(name) {}
  void tag(const Napi::CallbackInfo& info, const napi_type_tag& t) {
    if (napi_type_tag_object(info.Env(), info.This(), &t) != napi_ok)
      throw Napi::Error::New(info.Env(), name_ + ": cannot tag the object");
  }
  std::unique_ptr<Pool> pool_;
  std::string name_;

 private:
  int32_t id_arg(const Args& a, size_t i) const { return static_cast<int32_t>(a.integer(i, "sequence", 0, INT32_MAX)); }
  template <typename F>
  Napi::Value guarded(const Napi::CallbackInfo& info, const std::string& fn, F&& f) {
    try {
      return f();
    } catch (const KvPoolError& e) {
      throw_pool_error(info.Env(), fn.c_str(), e);
    }
  }
  Napi::Value create(const Napi::CallbackInfo& info) {
    return guarded(info, name_ + ".create", [&] { return Napi::Number::New(info.Env(), pool_->create()); });
  }
  Napi::Value fork(const Napi::CallbackInfo& info) {
    const std::string fn = name_ + ".fork";
    Args a(info, fn.c_str());
    const int32_t id = id_arg(a, 0);
    return guarded(info, fn, [&] { return Napi::Number::New(info.Env(), pool_->fork(id)); });
  }
  Napi::Value dispose(const Napi::CallbackInfo& info) {
    const std::string fn = name_ + ".dispose";
    Args a(info, fn.c_str());
    const int32_t id = id_arg(a, 0);
    return guarded(info, fn, [&] {
      pool_->dispose(id);
      return info.Env().Undefined();
    });
  }
  Napi::Value truncate(const Napi::CallbackInfo& info) {
    const std::string fn = name_ + ".truncate";
    Args a(info, fn.c_str());
    const int32_t id = id_arg(a, 0);
    const int64_t len = a.integer(1, "length", 0, int64_t{1} << 30);
    return guarded(info, fn, [&] {
      pool_->truncate(id, len);
      return info.Env().Undefined();
    });
  }
  Napi::Value length(const Napi::CallbackInfo& info) {
    const std::string fn = name_ + ".length";
    Args a(info, fn.c_str());
    const int32_t id = id_arg(a, 0);
    return guarded(info, fn, [&] { return Napi::Number::New(info.Env(), static_cast<double>(pool_->length(id))); });
  }
  // {sequences, blocksUsed, blocksCached, blocksMax, blockTokens, blockBytes, tokensHeld} (SequencePoolStats).
  Napi::Value stats(const Napi::CallbackInfo& info) {
    int64_t s[7];
    static_cast<Derived*>(this)->stats_of(s);
    static const char* const keys[7] = {"sequences", "blocksUsed", "blocksCached", "blocksMax", "blockTokens", "blockBytes", "tokensHeld"};
    Napi::Object o = Napi::Object::New(info.Env());
    for (int i = 0; i < 7; ++i) o.Set(keys[i], Napi::Number::New(info.Env(), static_cast<double>(s[i])));
    return o;
  }
  Napi::Value trim(const Napi::CallbackInfo& info) {
    pool_->trim();
    return info.Env().Undefined();
  }
};

}  // namespace bitllm
