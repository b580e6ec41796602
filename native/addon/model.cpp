// Binding for the whole-model forward (runtime/model_exec.h): `new ModelNative(spec)` checks every
// weight of a spec object built by lib/model/native-model.ts and keeps references to its typed arrays
// (so the memory the plan borrows stays alive); `forward(ctx, ...)` checks tokens, positions and the
// KV cache of one sequence, then runs the forward pass in one call.
#include <algorithm>
#include <cmath>
#include <memory>
#include <string>

#include "common.h"
#include "runtime/model_exec.h"
#include "runtime/repack_ternary.h"

namespace bitllm {

namespace {

constexpr int64_t kMaxLayers = 4096;
constexpr int64_t kMaxHeads = 4096;
constexpr int64_t kMaxHeadDim = 4096;
constexpr int64_t kMaxCapacity = int64_t{1} << 20;

// Reads fields of a spec object; errors name the field path ("layers[3].wqkv.codes").
class Spec {
 public:
  Spec(Napi::Env env, Napi::Object o, std::string path, std::vector<Napi::Reference<Napi::Value>>* keep)
      : env_(env), o_(o), path_(std::move(path)), keep_(keep) {}

  [[noreturn]] void fail(const std::string& field, const std::string& msg, bool type = false) const {
    const std::string m = "ModelNative: " + where(field) + " " + msg;
    if (type) throw Napi::TypeError::New(env_, m);
    throw Napi::RangeError::New(env_, m);
  }
  std::string where(const std::string& field) const { return path_.empty() ? field : path_ + "." + field; }
  std::vector<Napi::Reference<Napi::Value>>* keep() const { return keep_; }

  Napi::Value get(const char* f) const { return o_.Get(f); }
  bool has(const char* f) const {
    auto v = o_.Get(f);
    return !v.IsUndefined() && !v.IsNull();
  }
  Spec object(const char* f) const {
    auto v = o_.Get(f);
    if (!v.IsObject()) fail(f, "must be an object", true);
    return Spec(env_, v.As<Napi::Object>(), where(f), keep_);
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
};

// One linear of shape [M, K] (runtime/linear.h): {weights: 't2r16' | 'td3' | 'ts256' | 'b1r16' | 'b1l64' | 'billm' | 'f16', quant: 'i8' |
// 'i4' | 'topk-i8' | 'none', M, K, codes | data | bits, scales, scaleMode, colScale?, colBias?, rowScale?,
// topkRatio, lnEps}. Weights and quantizer must fit each other (int8 GEMMs need a quantizer, F16 none).
LinearPlan read_linear(const Spec& s, int64_t M, int64_t K) {
  LinearPlan w;
  w.M = s.integer("M", 1, M);
  w.K = s.integer("K", K, K);
  M = w.M;
  const std::string kind = s.string("weights");
  const std::string quant = s.string("quant");
  if (quant == "i8") w.quant = LinearPlan::kQuantI8;
  else if (quant == "i4") w.quant = LinearPlan::kQuantI4;
  else if (quant == "topk-i8") w.quant = LinearPlan::kQuantTopkI8;
  else if (quant == "none") w.quant = LinearPlan::kQuantNone;
  else s.fail("quant", "'" + quant + "' is not a known activation quantizer (i8, i4, topk-i8, none)");
  auto scales_of = [&](int64_t tiles, int32_t mode) {
    return mode == kScaleTensor ? 1 : (mode == kScaleRow ? tiles * 16 : tiles * (K / kScaleBlockK) * 16);
  };
  if (kind == "t2r16" || kind == "td3") {
    if (K % kT2KStep) s.fail("K", "= " + std::to_string(K) + " must be a multiple of 16");
    const int32_t mode = static_cast<int32_t>(s.integer("scaleMode", 0, 2));
    if (mode == kScaleBlock && K % kScaleBlockK) s.fail("scaleMode", "block scales need K % 256 == 0");
    const int64_t nscales = scales_of(t2_tiles(M), mode);
    if (kind == "td3") {
      w.weights = LinearPlan::kTd3;
      w.td3 = TernaryTd3Mat{s.u8("data", td3_weight_bytes(M, K)), s.f32("scales", nscales), M, K, mode};
    } else {
      w.weights = LinearPlan::kT2R16;
      w.t2 = TernaryMat{s.u8("codes", t2_code_bytes(M, K)), s.f32("scales", nscales), M, K, mode};
    }
    if (w.quant == LinearPlan::kQuantNone) s.fail("quant", "ternary weights need quantized activations");
  } else if (kind == "ts256") {
    if (K > kTsMaxK) s.fail("K", "= " + std::to_string(K) + " exceeds the TS256 limit " + std::to_string(kTsMaxK));
    const int32_t mode = static_cast<int32_t>(s.integer("scaleMode", 0, 1));
    w.weights = LinearPlan::kTs256;
    w.ts = TernarySparseMat{s.u8("data", ts_weight_bytes(M, K)), s.f32("scales", scales_of(t2_tiles(M), mode)), M, K, mode};
    if (w.quant == LinearPlan::kQuantNone) s.fail("quant", "ternary weights need quantized activations");
  } else if (kind == "b1r16") {
    if (K % kB1KStep) s.fail("K", "= " + std::to_string(K) + " must be a multiple of 64");
    const int32_t mode = static_cast<int32_t>(s.integer("scaleMode", 0, 1));
    const int64_t tiles = (M + kB1Rows - 1) / kB1Rows;
    w.weights = LinearPlan::kB1R16;
    w.b1 = BinaryMat{s.u8("bits", tiles * kB1Rows * (K / 8)), s.f32("scales", scales_of(tiles, mode)), M, K, mode};
    if (w.quant != LinearPlan::kQuantI8) s.fail("quant", "B1R16 weights take int8 activations");
  } else if (kind == "b1l64") {
    if (K % kB1lKStep) s.fail("K", "= " + std::to_string(K) + " must be a multiple of 32");
    w.weights = LinearPlan::kB1L64;
    w.b1l = BinaryLutMat{s.u8("bits", b1l_bytes(M, K)), M, K};
    if (w.quant != LinearPlan::kQuantNone) s.fail("quant", "B1L64 weights take float activations ('none')");
  } else if (kind == "billm") {
    if (K % kBillmBlock) s.fail("K", "= " + std::to_string(K) + " must be a multiple of 128");
    w.weights = LinearPlan::kBillm;
    w.billm_salient = s.u8("salient", K / 8);
    const int64_t nb = K / kBillmBlock;
    w.billm_geometry.resize(2 * nb + 1);
    billm_geometry(w.billm_salient, K, w.billm_geometry.data(), w.billm_geometry.data() + nb + 1);
    const int64_t tiles = (M + kBillmRows - 1) / kBillmRows;
    w.billm_data = s.u8("data", tiles * w.billm_geometry[nb]);
    if (w.quant != LinearPlan::kQuantI8) s.fail("quant", "BiLLM weights take int8 activations");
  } else if (kind == "f16") {
    w.weights = LinearPlan::kF16;
    w.f16 = s.u16("data", M * K);
    if (w.quant != LinearPlan::kQuantNone) s.fail("quant", "F16 weights take float activations ('none')");
  } else {
    s.fail("weights", "'" + kind + "' is not a supported linear layout (t2r16, td3, ts256, b1r16, b1l64, billm, f16)");
  }
  if (s.has("colScale")) w.col_scale = s.f32("colScale", K);
  if (s.has("colBias")) w.col_bias = s.f32("colBias", K);
  if (s.has("rowScale")) w.row_scale = s.f32("rowScale", M);
  const double ratio = s.number("topkRatio");
  if (!(ratio > 0 && ratio <= 1)) s.fail("topkRatio", "must be in (0, 1]");
  w.topk_ratio = static_cast<float>(ratio);
  const double ln = s.number("lnEps");
  if (!(ln >= 0 && ln < 1)) s.fail("lnEps", "must be in [0, 1)");
  w.ln_eps = static_cast<float>(ln);
  return w;
}

// A group of linears sharing one input: an array whose outputs together are `M` rows.
LinearGroup read_group(Napi::Env env, const Spec& parent, const char* field, int64_t M, int64_t K) {
  auto v = parent.get(field);
  if (!v.IsArray()) parent.fail(field, "must be an array of linears", true);
  auto arr = v.As<Napi::Array>();
  if (arr.Length() < 1 || arr.Length() > 8) parent.fail(field, "must hold 1 to 8 linears");
  LinearGroup g;
  int64_t rows = 0;
  for (uint32_t i = 0; i < arr.Length(); ++i) {
    auto e = arr.Get(i);
    const std::string path = parent.where(field) + "[" + std::to_string(i) + "]";
    if (!e.IsObject()) throw Napi::TypeError::New(env, "ModelNative: " + path + " must be an object");
    Spec ls(env, e.As<Napi::Object>(), path, parent.keep());
    g.push_back(read_linear(ls, M - rows, K));
    rows += g.back().M;
  }
  if (rows != M) parent.fail(field, "linears give " + std::to_string(rows) + " output rows, expected " + std::to_string(M));
  return g;
}

// An embedding / head matrix {kind: 'f16' | 'q8' | 'q4', data, M, K}.
PlanDense read_dense(const Spec& s, int64_t M, int64_t K) {
  const std::string kind = s.string("kind");
  PlanDense w;
  w.M = s.integer("M", M, M);
  w.K = s.integer("K", K, K);
  if (kind == "f16") {
    w.kind = PlanDense::kF16;
    w.f16 = s.u16("data", M * K);
  } else if (kind == "q8") {
    if (K % kQ8Block) s.fail("K", "= " + std::to_string(K) + " must be a multiple of 32 for q8");
    w.kind = PlanDense::kQ8;
    w.q8 = Q8Mat{s.u8("data", q8_bytes(M, K)), M, K};
  } else if (kind == "q4") {
    if (K % kQ4Block) s.fail("K", "= " + std::to_string(K) + " must be a multiple of 32 for q4");
    w.kind = PlanDense::kQ4;
    w.q4 = Q4Mat{s.u8("data", q4_bytes(M, K)), M, K};
  } else {
    s.fail("kind", "'" + kind + "' is not a supported dense layout (f16, q8, q4)");
  }
  return w;
}

// Marks KvPoolNative objects, so forwardBatch can check its pool argument before unwrapping it.
const napi_type_tag kKvPoolTag = {0x6b76706f6f6c6269ull, 0x746c6c6d31363130ull};

// A KvPoolError as a JS RangeError with a code the TS layer maps to its typed errors (lib/model/state.ts).
[[noreturn]] void throw_pool_error(Napi::Env env, const char* fn, const KvPoolError& e) {
  static const char* const codes[] = {"ERR_UNKNOWN_SEQUENCE", "ERR_BAD_POSITION", "ERR_KV_POOL_FULL", "ERR_CONTEXT_FULL",
                                      "ERR_BAD_ARGUMENT"};
  Napi::Error err = Napi::RangeError::New(env, std::string(fn) + ": " + e.message);
  err.Value().Set("code", Napi::String::New(env, codes[e.code]));
  throw err;
}

// new KvPoolNative(kvType: 'f16' | 'q8' | 'q3', nLayer, nKvHeads, headDim, maxTokens, contextSize): the
// sequence-state pool of one model (runtime/kv_pool.h). Sequence ids are int32 numbers, never reused.
class KvPoolWrap : public Napi::ObjectWrap<KvPoolWrap> {
 public:
  static Napi::Function define(Napi::Env env) {
    return DefineClass(env, "KvPoolNative",
                       {InstanceMethod<&KvPoolWrap::create>("create"), InstanceMethod<&KvPoolWrap::fork>("fork"),
                        InstanceMethod<&KvPoolWrap::dispose>("dispose"), InstanceMethod<&KvPoolWrap::truncate>("truncate"),
                        InstanceMethod<&KvPoolWrap::length>("length"), InstanceMethod<&KvPoolWrap::stats>("stats"),
                        InstanceMethod<&KvPoolWrap::trim>("trim")});
  }
  explicit KvPoolWrap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<KvPoolWrap>(info) {
    Args a(info, "KvPoolNative");
    if (!info[0].IsString()) a.type_error("kvType must be 'f16', 'q8' or 'q3'");
    const std::string kt = info[0].As<Napi::String>().Utf8Value();
    if (kt != "f16" && kt != "q8" && kt != "q3") a.range_error("kvType '" + kt + "' is not f16, q8 or q3");
    KvLayout lay;
    lay.kind = kt == "q8" ? KvKind::q8 : kt == "q3" ? KvKind::q3 : KvKind::f16;
    lay.n_layer = a.integer(1, "nLayer", 1, kMaxLayers);
    lay.n_kv_heads = a.integer(2, "nKvHeads", 1, kMaxHeads);
    lay.head_dim = a.integer(3, "headDim", 2, kMaxHeadDim);
    if (lay.kind != KvKind::f16 && lay.head_dim % 32) a.range_error("a " + kt + " KV cache needs headDim % 32 == 0");
    const int64_t max_tokens = a.integer(4, "maxTokens", 1, int64_t{1} << 26);
    const int64_t ctx = a.integer(5, "contextSize", 1, kMaxCapacity);
    if ((max_tokens + kKvBlockTokens - 1) / kKvBlockTokens * lay.block_bytes() > (int64_t{1} << 46))
      a.range_error("maxTokens: the pool would exceed 64 TiB");
    if (napi_type_tag_object(info.Env(), info.This(), &kKvPoolTag) != napi_ok)
      throw Napi::Error::New(info.Env(), "KvPoolNative: cannot tag the object");
    try {
      pool_ = std::make_unique<KvPool>(lay, max_tokens, ctx);
    } catch (const KvPoolError& e) {
      throw_pool_error(info.Env(), "KvPoolNative", e);
    }
  }
  KvPool& pool() { return *pool_; }

 private:
  int32_t id_arg(const Args& a, size_t i) const { return static_cast<int32_t>(a.integer(i, "sequence", 0, INT32_MAX)); }
  template <typename F>
  Napi::Value guarded(const Napi::CallbackInfo& info, const char* fn, F&& f) {
    try {
      return f();
    } catch (const KvPoolError& e) {
      throw_pool_error(info.Env(), fn, e);
    }
  }
  Napi::Value create(const Napi::CallbackInfo& info) {
    return guarded(info, "KvPoolNative.create", [&] { return Napi::Number::New(info.Env(), pool_->create()); });
  }
  Napi::Value fork(const Napi::CallbackInfo& info) {
    Args a(info, "KvPoolNative.fork");
    const int32_t id = id_arg(a, 0);
    return guarded(info, "KvPoolNative.fork", [&] { return Napi::Number::New(info.Env(), pool_->fork(id)); });
  }
  Napi::Value dispose(const Napi::CallbackInfo& info) {
    Args a(info, "KvPoolNative.dispose");
    const int32_t id = id_arg(a, 0);
    return guarded(info, "KvPoolNative.dispose", [&] {
      pool_->dispose(id);
      return info.Env().Undefined();
    });
  }
  Napi::Value truncate(const Napi::CallbackInfo& info) {
    Args a(info, "KvPoolNative.truncate");
    const int32_t id = id_arg(a, 0);
    const int64_t len = a.integer(1, "length", 0, kMaxCapacity);
    return guarded(info, "KvPoolNative.truncate", [&] {
      pool_->truncate(id, len);
      return info.Env().Undefined();
    });
  }
  Napi::Value length(const Napi::CallbackInfo& info) {
    Args a(info, "KvPoolNative.length");
    const int32_t id = id_arg(a, 0);
    return guarded(info, "KvPoolNative.length",
                   [&] { return Napi::Number::New(info.Env(), static_cast<double>(pool_->length(id))); });
  }
  Napi::Value stats(const Napi::CallbackInfo& info) {
    const KvPool::Stats st = pool_->stats();
    Napi::Object o = Napi::Object::New(info.Env());
    auto set = [&](const char* k, int64_t v) { o.Set(k, Napi::Number::New(info.Env(), static_cast<double>(v))); };
    set("sequences", st.sequences);
    set("blocksUsed", st.blocks_used);
    set("blocksCached", st.blocks_cached);
    set("blocksMax", st.blocks_max);
    set("blockTokens", st.block_tokens);
    set("blockBytes", st.block_bytes);
    set("tokensHeld", st.tokens_held);
    return o;
  }
  Napi::Value trim(const Napi::CallbackInfo& info) {
    pool_->trim();
    return info.Env().Undefined();
  }
  std::unique_ptr<KvPool> pool_;
};

class ModelNativeWrap : public Napi::ObjectWrap<ModelNativeWrap> {
 public:
  static Napi::Function define(Napi::Env env) {
    return DefineClass(env, "ModelNative", {InstanceMethod<&ModelNativeWrap::forward>("forward"),
                                            InstanceMethod<&ModelNativeWrap::forward_batch>("forwardBatch")});
  }

  explicit ModelNativeWrap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<ModelNativeWrap>(info) {
    Napi::Env env = info.Env();
    if (info.Length() < 1 || !info[0].IsObject()) throw Napi::TypeError::New(env, "ModelNative: spec must be an object");
    Spec s(env, info[0].As<Napi::Object>(), "", &keep_);
    ModelPlan p;
    p.n_embd = s.integer("nEmbd", 16, kMaxDim);
    p.n_ff = s.integer("nFf", 16, kMaxDim);
    p.n_head = s.integer("nHead", 1, kMaxHeads);
    p.n_head_kv = s.integer("nHeadKv", 1, p.n_head);
    if (p.n_head % p.n_head_kv) s.fail("nHeadKv", "must divide nHead");
    p.head_dim = s.integer("headDim", 2, kMaxHeadDim);
    if (p.n_head * p.head_dim != p.n_embd) s.fail("headDim", "x nHead must equal nEmbd");
    p.n_rot = s.integer("nRot", 0, p.head_dim);
    if (p.n_rot % 2) s.fail("nRot", "must be even");
    p.n_vocab = s.integer("nVocab", 1, kMaxDim);
    const double theta = s.number("ropeTheta"), eps = s.number("eps");
    if (!(theta > 0) || !std::isfinite(theta)) s.fail("ropeTheta", "must be a positive finite number");
    if (!(eps >= 0) || !std::isfinite(eps)) s.fail("eps", "must be a finite number >= 0");
    p.rope_theta = static_cast<float>(theta);
    p.eps = static_cast<float>(eps);
    const std::string act = s.string("activation");
    if (act != "silu" && act != "relu2") s.fail("activation", "'" + act + "' is not silu or relu2");
    p.silu = act == "silu";
    const int64_t d = p.n_embd, ff = p.n_ff, dkv = p.n_head_kv * p.head_dim;
    auto layers_v = s.get("layers");
    if (!layers_v.IsArray()) s.fail("layers", "must be an array", true);
    auto layers = layers_v.As<Napi::Array>();
    if (layers.Length() < 1 || layers.Length() > kMaxLayers) s.fail("layers", "must hold 1 to 4096 layers");
    for (uint32_t i = 0; i < layers.Length(); ++i) {
      auto lv = layers.Get(i);
      const std::string path = "layers[" + std::to_string(i) + "]";
      if (!lv.IsObject()) throw Napi::TypeError::New(env, "ModelNative: " + path + " must be an object");
      Spec ls(env, lv.As<Napi::Object>(), path, &keep_);
      PlanLayer L;
      L.attn_norm = ls.f32("attnNorm", d);
      L.attn_sub_norm = ls.has("attnSubNorm") ? ls.f32("attnSubNorm", d) : nullptr;
      L.ffn_norm = ls.f32("ffnNorm", d);
      L.ffn_sub_norm = ls.has("ffnSubNorm") ? ls.f32("ffnSubNorm", ff) : nullptr;
      L.wqkv = read_group(env, ls, "wqkv", d + 2 * dkv, d);
      L.wo = read_group(env, ls, "wo", d, d);
      L.wgu = read_group(env, ls, "wgu", 2 * ff, d);
      L.wdown = read_group(env, ls, "wdown", d, ff);
      p.layers.push_back(L);
    }
    p.output_norm = s.f32("outputNorm", d);
    p.embd = read_dense(s.object("embd"), p.n_vocab, d);
    p.head = read_dense(s.object("head"), p.n_vocab, d);
    exec_ = std::make_unique<ModelExec>(std::move(p));
  }

 private:
  // forward(ctx, tokens: Int32Array[B], pos0, kvK: TypedArray[nLayer], kvV: TypedArray[nLayer],
  //         kvType: 'f16' | 'q8', capacity, nOut, logits: Float32Array[nOut * nVocab],
  //         profile?: Float64Array[14])
  Napi::Value forward(const Napi::CallbackInfo& info) {
    Args a(info, "ModelNative.forward");
    ContextWrap& ctx = a.context(0);
    const ModelPlan& p = exec_->plan();
    const int32_t* tokens = a.i32(1, "tokens", 1);
    const int64_t B = a.length(1);
    if (B > kMaxBatch) a.range_error("tokens: " + std::to_string(B) + " tokens exceed " + std::to_string(kMaxBatch) + " per call");
    for (int64_t b = 0; b < B; ++b)
      if (tokens[b] < 0 || tokens[b] >= p.n_vocab)
        a.range_error("tokens[" + std::to_string(b) + "] = " + std::to_string(tokens[b]) + " is outside the vocabulary [0, " +
                      std::to_string(p.n_vocab) + ")");
    const int64_t cap = a.integer(6, "capacity", 1, kMaxCapacity);
    const int64_t pos0 = a.integer(2, "pos0", 0, cap - 1);
    if (pos0 + B > cap)
      a.range_error("pos0 + B = " + std::to_string(pos0 + B) + " exceeds the cache capacity " + std::to_string(cap));
    if (!info[5].IsString()) a.type_error("kvType must be 'f16', 'q8' or 'q3'");
    const std::string kt = info[5].As<Napi::String>().Utf8Value();
    if (kt != "f16" && kt != "q8" && kt != "q3") a.range_error("kvType '" + kt + "' is not f16, q8 or q3");
    KvView kv;
    kv.kind = kt == "q8" ? KvKind::q8 : kt == "q3" ? KvKind::q3 : KvKind::f16;
    const bool bytes_rows = kv.kind != KvKind::f16;
    kv.capacity = cap;
    if (bytes_rows && p.head_dim % 32) a.range_error("a " + kt + " KV cache needs headDim % 32 == 0");
    const int64_t plane = p.n_head_kv * cap *
                          (kv.kind == KvKind::q8 ? q8_row_bytes(p.head_dim) : kv.kind == KvKind::q3 ? q3_row_bytes(p.head_dim) : p.head_dim);
    const size_t nl = p.layers.size();
    for (int side = 0; side < 2; ++side) {
      const char* name = side ? "kvV" : "kvK";
      if (!info[3 + side].IsArray()) a.type_error(std::string(name) + " must be an array of typed arrays");
      auto arr = info[3 + side].As<Napi::Array>();
      if (arr.Length() != nl)
        a.range_error(std::string(name) + " has " + std::to_string(arr.Length()) + " layers, expected " + std::to_string(nl));
      auto& out = side ? kv.v : kv.k;
      out.resize(nl);
      for (uint32_t l = 0; l < nl; ++l) {
        auto v = arr.Get(l);
        const napi_typedarray_type want = bytes_rows ? napi_uint8_array : napi_uint16_array;
        const std::string el = std::string(name) + "[" + std::to_string(l) + "]";
        if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != want)
          a.type_error(el + (bytes_rows ? " must be a Uint8Array" : " must be a Uint16Array"));
        auto ta = v.As<Napi::TypedArray>();
        if (static_cast<int64_t>(ta.ElementLength()) != plane)
          a.range_error(el + " has " + std::to_string(ta.ElementLength()) + " elements, expected " + std::to_string(plane));
        auto ab = ta.ArrayBuffer();
        if (ab.Data() == nullptr) a.type_error(el + " is detached");
        out[l] = static_cast<uint8_t*>(ab.Data()) + ta.ByteOffset();
      }
    }
    const int64_t n_out = a.integer(7, "nOut", 1, B);
    float* logits = a.f32(8, "logits", n_out * p.n_vocab, n_out * p.n_vocab);
    double* prof = nullptr;
    if (a.has(9)) {
      if (!info[9].IsTypedArray() || info[9].As<Napi::TypedArray>().TypedArrayType() != napi_float64_array)
        a.type_error("profile must be a Float64Array");
      auto ta = info[9].As<Napi::TypedArray>();
      if (ta.ElementLength() != kProfCount)
        a.range_error("profile must have " + std::to_string(kProfCount) + " elements");
      prof = reinterpret_cast<double*>(static_cast<uint8_t*>(ta.ArrayBuffer().Data()) + ta.ByteOffset());
    }
    // The outputs must not alias the weights or the caches the pass reads (the scratch is native).
    auto lo = reinterpret_cast<uintptr_t>(logits), hi = lo + static_cast<uintptr_t>(n_out * p.n_vocab * 4);
    for (size_t l = 0; l < nl; ++l)
      for (void* c : {kv.k[l], kv.v[l]}) {
        auto c0 = reinterpret_cast<uintptr_t>(c), c1 = c0 + static_cast<uintptr_t>(plane * (bytes_rows ? 1 : 2));
        if (lo < c1 && c0 < hi) a.range_error("logits overlaps a KV cache plane");
      }
    try {
      exec_->forward(ctx.table(), ctx.pool(), tokens, B, pos0, kv, n_out, logits, prof);
    } catch (const std::bad_alloc&) {
      a.range_error("cannot allocate the forward scratch for " + std::to_string(B) + " tokens");
    }
    return info.Env().Undefined();
  }

  // forwardBatch(ctx, pool: KvPoolNative, tokens: Int32Array[B], seq: Int32Array[B], pos: Int32Array[B],
  //              outRows: Int32Array[nOut] (ascending rows in [0, B)), logits: Float32Array[nOut * nVocab],
  //              profile?: Float64Array[14])
  // Everything is checked before any state changes: the pool fits the model, token ids are in the
  // vocabulary, the rows are admitted by the pool (live sequences, contiguous positions, blocks within
  // the budget; typed codes on failure). Then one forward over all rows.
  Napi::Value forward_batch(const Napi::CallbackInfo& info) {
    Args a(info, "ModelNative.forwardBatch");
    ContextWrap& ctx = a.context(0);
    const ModelPlan& p = exec_->plan();
    bool is_pool = false;
    if (info[1].IsObject() && napi_check_object_type_tag(info.Env(), info[1], &kKvPoolTag, &is_pool) != napi_ok) is_pool = false;
    if (!is_pool) a.type_error("pool must be a KvPoolNative");
    KvPool& kv = Napi::ObjectWrap<KvPoolWrap>::Unwrap(info[1].As<Napi::Object>())->pool();
    const KvLayout& lay = kv.layout();
    if (lay.n_layer != static_cast<int64_t>(p.layers.size()) || lay.n_kv_heads != p.n_head_kv || lay.head_dim != p.head_dim)
      a.range_error("pool shape (layers " + std::to_string(lay.n_layer) + ", kv heads " + std::to_string(lay.n_kv_heads) +
                    ", head dim " + std::to_string(lay.head_dim) + ") does not fit the model");
    a.i32(2, "tokens", 0);  // type checks before the lengths are read
    a.i32(5, "outRows", 0);
    const int64_t B = a.length(2);
    if (B < 1) a.range_error("tokens: a batch needs at least one row");
    if (B > kMaxBatch) a.range_error("tokens: " + std::to_string(B) + " rows exceed " + std::to_string(kMaxBatch) + " per call");
    // Copies: the inputs may live anywhere in JS memory, including next to logits.
    std::vector<int32_t> tokens(a.i32(2, "tokens", B, B), a.i32(2, "tokens", B, B) + B);
    std::vector<int32_t> seq(a.i32(3, "seq", B, B), a.i32(3, "seq", B, B) + B);
    std::vector<int32_t> pos(a.i32(4, "pos", B, B), a.i32(4, "pos", B, B) + B);
    for (int64_t b = 0; b < B; ++b) {
      if (tokens[b] < 0 || tokens[b] >= p.n_vocab)
        a.range_error("tokens[" + std::to_string(b) + "] = " + std::to_string(tokens[b]) + " is outside the vocabulary [0, " +
                      std::to_string(p.n_vocab) + ")");
      if (pos[b] < 0 || pos[b] >= kMaxCapacity)
        a.range_error("pos[" + std::to_string(b) + "] = " + std::to_string(pos[b]) + " is outside [0, " + std::to_string(kMaxCapacity) + ")");
    }
    const int64_t n_out = a.length(5);
    std::vector<int32_t> out_rows(static_cast<size_t>(n_out));
    if (n_out > 0) {
      const int32_t* o = a.i32(5, "outRows", n_out, n_out);
      out_rows.assign(o, o + n_out);
    }
    for (int64_t i = 0; i < n_out; ++i)
      if (out_rows[i] < 0 || out_rows[i] >= B || (i > 0 && out_rows[i] <= out_rows[i - 1]))
        a.range_error("outRows must be ascending row indices in [0, " + std::to_string(B) + ")");
    float* logits = n_out > 0 ? a.f32(6, "logits", n_out * p.n_vocab, n_out * p.n_vocab) : nullptr;
    double* prof = nullptr;
    if (a.has(7)) {
      if (!info[7].IsTypedArray() || info[7].As<Napi::TypedArray>().TypedArrayType() != napi_float64_array)
        a.type_error("profile must be a Float64Array");
      auto ta = info[7].As<Napi::TypedArray>();
      if (ta.ElementLength() != kProfCount) a.range_error("profile must have " + std::to_string(kProfCount) + " elements");
      prof = reinterpret_cast<double*>(static_cast<uint8_t*>(ta.ArrayBuffer().Data()) + ta.ByteOffset());
    }
    int32_t max_pos = 0;
    for (int64_t b = 0; b < B; ++b) max_pos = std::max(max_pos, pos[b]);
    try {
      exec_->reserve(B, max_pos, ctx.pool().size());
    } catch (const std::bad_alloc&) {
      a.range_error("cannot allocate the forward scratch for " + std::to_string(B) + " rows");
    }
    try {
      kv.admit(seq.data(), pos.data(), B);
    } catch (const KvPoolError& e) {
      throw_pool_error(info.Env(), "ModelNative.forwardBatch", e);
    }
    exec_->forward_batch(ctx.table(), ctx.pool(), tokens.data(), seq.data(), pos.data(), B, kv, out_rows.data(), n_out,
                         logits, prof);
    return info.Env().Undefined();
  }

  std::vector<Napi::Reference<Napi::Value>> keep_;
  std::unique_ptr<ModelExec> exec_;
};

Napi::Value profile_ops(const Napi::CallbackInfo& info) {
  auto arr = Napi::Array::New(info.Env(), kProfCount);
  for (int i = 0; i < kProfCount; ++i) arr.Set(i, profile_op_name(i));
  return arr;
}

}  // namespace

void register_model(Napi::Env env, Napi::Object exports) {
  exports.Set("ModelNative", ModelNativeWrap::define(env));
  exports.Set("KvPoolNative", KvPoolWrap::define(env));
  exports.Set("profileOps", Napi::Function::New(env, profile_ops, "profileOps"));
}

}  // namespace bitllm
