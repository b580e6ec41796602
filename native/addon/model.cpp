// Binding for the whole-model forward (runtime/model_exec.h): `new ModelNative(spec)` checks every
// weight of a spec object built by lib/model/native-model.ts and keeps references to its typed arrays
// (so the memory the plan borrows stays alive); `forward(ctx, ...)` checks tokens, positions and the
// KV cache of one sequence, then runs the forward pass in one call.
#include <algorithm>
#include <cmath>
#include <memory>
#include <string>

#include "common.h"
#include "pool_wrap.h"
#include "spec.h"
#include "runtime/model_exec.h"
#include "runtime/repack_ternary.h"

namespace bitllm {

namespace {

constexpr int64_t kMaxLayers = 4096;
constexpr int64_t kMaxHeads = 4096;
constexpr int64_t kMaxHeadDim = 4096;
constexpr int64_t kMaxCapacity = int64_t{1} << 20;

// Marks KvPoolNative objects, so forwardBatch can check its pool argument before unwrapping it.
const napi_type_tag kKvPoolTag = {0x6b76706f6f6c6269ull, 0x746c6c6d31363130ull};

// new KvPoolNative(kvType: 'f16' | 'q8' | 'q3', nLayer, nKvHeads, headDim, maxTokens, contextSize): the
// sequence-state pool of one model (runtime/kv_pool.h). Sequence ids are int32 numbers, never reused.
class KvPoolWrap : public PoolWrap<KvPoolWrap, KvPool> {
 public:
  static Napi::Function define(Napi::Env env) { return define_class(env, "KvPoolNative"); }
  explicit KvPoolWrap(const Napi::CallbackInfo& info) : PoolWrap(info, "KvPoolNative") {
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
    tag(info, kKvPoolTag);
    try {
      pool_ = std::make_unique<KvPool>(lay, max_tokens, ctx);
    } catch (const KvPoolError& e) {
      throw_pool_error(info.Env(), "KvPoolNative", e);
    }
  }
  void stats_of(int64_t* s) const {
    const KvPool::Stats st = pool_->stats();
    const int64_t v[7] = {st.sequences, st.blocks_used, st.blocks_cached, st.blocks_max, st.block_tokens, st.block_bytes, st.tokens_held};
    std::copy(v, v + 7, s);
  }
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
    double* prof = read_profile(a, info, 9, kProfCount);
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
    KvPool* kvp = KvPoolWrap::unwrap(info.Env(), info[1], kKvPoolTag);
    if (!kvp) a.type_error("pool must be a KvPoolNative");
    KvPool& kv = *kvp;
    const KvLayout& lay = kv.layout();
    if (lay.n_layer != static_cast<int64_t>(p.layers.size()) || lay.n_kv_heads != p.n_head_kv || lay.head_dim != p.head_dim)
      a.range_error("pool shape (layers " + std::to_string(lay.n_layer) + ", kv heads " + std::to_string(lay.n_kv_heads) +
                    ", head dim " + std::to_string(lay.head_dim) + ") does not fit the model");
    BatchRows rows = read_batch_rows(a, 2, p.n_vocab, kMaxCapacity);
    const int64_t B = rows.size(), n_out = static_cast<int64_t>(rows.out_rows.size());
    float* logits = n_out > 0 ? a.f32(6, "logits", n_out * p.n_vocab, n_out * p.n_vocab) : nullptr;
    double* prof = read_profile(a, info, 7, kProfCount);
    const int32_t max_pos = rows.max_pos;
    try {
      exec_->reserve(B, max_pos, ctx.pool().size());
    } catch (const std::bad_alloc&) {
      a.range_error("cannot allocate the forward scratch for " + std::to_string(B) + " rows");
    }
    try {
      kv.admit(rows.seq.data(), rows.pos.data(), B);
    } catch (const KvPoolError& e) {
      throw_pool_error(info.Env(), "ModelNative.forwardBatch", e);
    }
    exec_->forward_batch(ctx.table(), ctx.pool(), rows.tokens.data(), rows.seq.data(), rows.pos.data(), B, kv,
                         rows.out_rows.data(), n_out, logits, prof);
    return info.Env().Undefined();
  }

  std::vector<Napi::Reference<Napi::Value>> keep_;
  std::unique_ptr<ModelExec> exec_;
};

Napi::Value profile_ops(const Napi::CallbackInfo& info) { return profile_names(info.Env(), profile_op_name, kProfCount); }

}  // namespace

void register_model(Napi::Env env, Napi::Object exports) {
  exports.Set("ModelNative", ModelNativeWrap::define(env));
  exports.Set("KvPoolNative", KvPoolWrap::define(env));
  exports.Set("profileOps", Napi::Function::New(env, profile_ops, "profileOps"));
}

}  // namespace bitllm
