// Bindings of the Mamba-2 block kind's one-call forward (runtime/mamba2_exec.h) and its sequence-state pool
// kind (runtime/recurrent_pool.h):
//   new Mamba2ModelNative(spec)          checks every field and weight of a spec built by lib/model/mamba2-exec.ts
//                                        and keeps its typed arrays alive
//   new Mamba2PoolNative(model, maxSequences, contextSize)
//                                        a pool of fixed-size states laid out for that model and context
//   model.forwardBatch(ctx, pool, tokens, seq, pos, outRows, logits, chunk)
//                                        everything checked before any state changes, then one forward
#include <algorithm>
#include <cmath>
#include <memory>
#include <string>

#include "common.h"
#include "kernels/mamba2.h"
#include "pool_wrap.h"
#include "runtime/mamba2_exec.h"
#include "runtime/recurrent_pool.h"
#include "spec.h"

namespace bitllm {

namespace {

constexpr int64_t kMaxLayers = 4096;
constexpr int64_t kMaxHeads = 4096;
constexpr int64_t kMaxState = 4096;
constexpr int64_t kMaxCapacity = int64_t{1} << 20;
constexpr const char* kWho = "Mamba2ModelNative";

const napi_type_tag kModelTag = {0x6d616d6261326d6full, 0x62696c6c6d313330ull};
const napi_type_tag kPoolTag = {0x6d616d6261327070ull, 0x62696c6c6d313331ull};

class Mamba2ModelWrap : public Napi::ObjectWrap<Mamba2ModelWrap> {
 public:
  static Napi::Function define(Napi::Env env) {
    return DefineClass(env, "Mamba2ModelNative", {InstanceMethod<&Mamba2ModelWrap::forward_batch>("forwardBatch")});
  }

  explicit Mamba2ModelWrap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<Mamba2ModelWrap>(info) {
    Napi::Env env = info.Env();
    if (info.Length() < 1 || !info[0].IsObject()) throw Napi::TypeError::New(env, std::string(kWho) + ": spec must be an object");
    Spec s(env, info[0].As<Napi::Object>(), "", &keep_, kWho);
    Mamba2Plan p;
    p.d_model = s.integer("dModel", 1, kMaxDim);
    p.d_inner = s.integer("dInner", 1, kMaxDim);
    p.n_heads = s.integer("nHeads", 1, kMaxHeads);
    if (p.d_inner % p.n_heads) s.fail("nHeads", "must divide dInner");
    p.d_state = s.integer("dState", 1, kMaxState);
    p.n_groups = s.integer("nGroups", 1, p.n_heads);
    if (p.n_heads % p.n_groups) s.fail("nGroups", "must divide nHeads");
    if (p.d_inner % p.n_groups) s.fail("nGroups", "must divide dInner");
    p.d_conv = s.integer("dConv", 2, kMamba2MaxConv);
    p.n_vocab = s.integer("nVocab", 1, kMaxDim);
    if (p.in_dim() > kMaxDim) s.fail("dInner", "gives an in_proj of " + std::to_string(p.in_dim()) + " rows, more than " + std::to_string(kMaxDim));
    const double eps = s.number("eps"), neps = s.number("normEps");
    if (!(eps > 0) || !std::isfinite(eps)) s.fail("eps", "must be a finite number > 0");
    if (!(neps > 0) || !std::isfinite(neps)) s.fail("normEps", "must be a finite number > 0");
    p.eps = static_cast<float>(eps);
    p.norm_eps = static_cast<float>(neps);
    if (s.has("attn")) {
      const Spec at = s.object("attn");
      p.n_head = at.integer("nHead", 1, kMaxHeads);
      p.n_head_kv = at.integer("nHeadKv", 1, p.n_head);
      if (p.n_head % p.n_head_kv) at.fail("nHeadKv", "must divide nHead");
      p.head_dim = at.integer("headDim", 2, 4096);
      if (p.head_dim % 2) at.fail("headDim", "must be even (NEOX RoPE rotates pairs)");
      if (p.qkv_dim() > kMaxDim) at.fail("headDim", "gives q|k|v rows beyond " + std::to_string(kMaxDim));
      const double theta = at.number("ropeTheta");
      if (!(theta > 0) || !std::isfinite(theta)) at.fail("ropeTheta", "must be a positive finite number");
      p.rope_theta = static_cast<float>(theta);
    }
    const int64_t d = p.d_model, dI = p.d_inner, H = p.n_heads, Cd = p.conv_dim();
    auto layers_v = s.get("layers");
    if (!layers_v.IsArray()) s.fail("layers", "must be an array", true);
    auto layers = layers_v.As<Napi::Array>();
    if (layers.Length() < 1 || layers.Length() > kMaxLayers) s.fail("layers", "must hold 1 to 4096 layers");
    for (uint32_t i = 0; i < layers.Length(); ++i) {
      auto lv = layers.Get(i);
      const std::string path = "layers[" + std::to_string(i) + "]";
      if (!lv.IsObject()) throw Napi::TypeError::New(env, std::string(kWho) + ": " + path + " must be an object");
      Spec ls(env, lv.As<Napi::Object>(), path, &keep_, kWho);
      Mamba2PlanLayer L;
      L.norm = ls.f32("norm", d);
      const std::string kind = ls.string("kind");
      if (kind == "attention") {
        if (p.n_head == 0) ls.fail("kind", "is 'attention' but the spec has no attn shape");
        L.attention = true;
        L.wqkv = read_group(env, ls, "wqkv", p.qkv_dim(), d);
        L.wo = read_linear(ls.object("wo"), d, p.n_head * p.head_dim);
        if (L.wo.M != d) ls.fail("wo", "has " + std::to_string(L.wo.M) + " rows, expected " + std::to_string(d));
      } else if (kind == "mamba2") {
        L.in_proj = read_linear(ls.object("inProj"), p.in_dim(), d);
        if (L.in_proj.M != p.in_dim()) ls.fail("inProj", "has " + std::to_string(L.in_proj.M) + " rows, expected " + std::to_string(p.in_dim()));
        L.out_proj = read_linear(ls.object("outProj"), d, dI);
        if (L.out_proj.M != d) ls.fail("outProj", "has " + std::to_string(L.out_proj.M) + " rows, expected " + std::to_string(d));
        L.conv_w = ls.f32("convWeight", Cd * p.d_conv);
        L.conv_b = ls.f32("convBias", Cd);
        L.dt_bias = ls.f32("dtBias", H);
        L.a_log = ls.f32("ALog", H);
        L.d_skip = ls.f32("D", H);
        L.gnorm = ls.f32("normWeight", dI);
      } else {
        ls.fail("kind", "'" + kind + "' is not a Mamba-2 model's layer kind (mamba2, attention)");
      }
      p.layers.push_back(std::move(L));
    }
    p.output_norm = s.f32("outputNorm", d);
    p.embd = read_dense(s.object("embd"), p.n_vocab, d);
    p.head = read_dense(s.object("head"), p.n_vocab, d);
    if (napi_type_tag_object(env, info.This(), &kModelTag) != napi_ok) throw Napi::Error::New(env, std::string(kWho) + ": cannot tag the object");
    exec_ = std::make_unique<Mamba2Exec>(std::move(p));
  }
  Mamba2Exec& exec() { return *exec_; }

 private:
  Napi::Value forward_batch(const Napi::CallbackInfo& info);

  std::vector<Napi::Reference<Napi::Value>> keep_;
  std::unique_ptr<Mamba2Exec> exec_;
};

// new Mamba2PoolNative(model: Mamba2ModelNative, maxSequences, contextSize)
class Mamba2PoolWrap : public PoolWrap<Mamba2PoolWrap, RecurrentPool> {
 public:
  static Napi::Function define(Napi::Env env) { return define_class(env, "Mamba2PoolNative"); }
  explicit Mamba2PoolWrap(const Napi::CallbackInfo& info) : PoolWrap(info, "Mamba2PoolNative") {
    Args a(info, "Mamba2PoolNative");
    bool ok = false;
    if (!info[0].IsObject() || napi_check_object_type_tag(info.Env(), info[0], &kModelTag, &ok) != napi_ok || !ok)
      a.type_error("model must be a Mamba2ModelNative");
    owner_ = &Napi::ObjectWrap<Mamba2ModelWrap>::Unwrap(info[0].As<Napi::Object>())->exec();
    const int64_t max_seqs = a.integer(1, "maxSequences", 1, int64_t{1} << 20);
    const int64_t ctx = a.integer(2, "contextSize", 1, kMaxCapacity);
    const Mamba2StateLayout lay = mamba2_state_layout(owner_->plan(), ctx);
    if (static_cast<double>(lay.bytes) * static_cast<double>(max_seqs) > static_cast<double>(int64_t{1} << 46))
      a.range_error("maxSequences: the pool would exceed 64 TiB");
    tag(info, kPoolTag);
    try {
      pool_ = std::make_unique<RecurrentPool>(lay.bytes, max_seqs, ctx);
    } catch (const KvPoolError& e) {
      throw_pool_error(info.Env(), "Mamba2PoolNative", e);
    }
  }
  const Mamba2Exec* owner() const { return owner_; }
  void stats_of(int64_t* s) const {
    const RecurrentPool::Stats st = pool_->stats();
    // A state stands for a whole context: "blocks" of one state each, of contextSize positions.
    const int64_t v[7] = {st.sequences, st.sequences, st.states_cached, st.states_max, pool_->max_seq_len(), st.state_bytes, st.tokens_held};
    std::copy(v, v + 7, s);
  }

 private:
  const Mamba2Exec* owner_ = nullptr;
};

// forwardBatch(ctx, pool: Mamba2PoolNative, tokens: Int32Array[B], seq: Int32Array[B], pos: Int32Array[B],
//              outRows: Int32Array[nOut] (ascending rows in [0, B)), logits: Float32Array[nOut * nVocab], chunk,
//              profile?: Float64Array[14] (ns per op class, mamba2ProfileOps() names them))
Napi::Value Mamba2ModelWrap::forward_batch(const Napi::CallbackInfo& info) {
  Args a(info, "Mamba2ModelNative.forwardBatch");
  ContextWrap& ctx = a.context(0);
  const Mamba2Plan& p = exec_->plan();
  bool ok = false;
  if (!info[1].IsObject() || napi_check_object_type_tag(info.Env(), info[1], &kPoolTag, &ok) != napi_ok || !ok)
    a.type_error("pool must be a Mamba2PoolNative");
  Mamba2PoolWrap* pw = Napi::ObjectWrap<Mamba2PoolWrap>::Unwrap(info[1].As<Napi::Object>());
  if (pw->owner() != exec_.get()) a.range_error("pool was made for another model");
  RecurrentPool& states = pw->pool();
  BatchRows rows = read_batch_rows(a, 2, p.n_vocab, kMaxCapacity);
  const int64_t B = rows.size(), n_out = static_cast<int64_t>(rows.out_rows.size());
  float* logits = n_out > 0 ? a.f32(6, "logits", n_out * p.n_vocab, n_out * p.n_vocab) : nullptr;
  const int64_t chunk = a.integer(7, "chunk", 0, kSsdMaxChunk);
  double* prof = read_profile(a, info, 8, kM2ProfCount);
  if (exec_->layout(states.max_seq_len()).bytes != states.state_bytes())
    a.range_error("pool's state size does not fit the model");
  try {
    exec_->reserve(B, rows.max_pos, chunk, ctx.pool().size());
  } catch (const std::bad_alloc&) {
    a.range_error("cannot allocate the forward scratch for " + std::to_string(B) + " rows");
  }
  try {
    states.admit(rows.seq.data(), rows.pos.data(), B);
  } catch (const KvPoolError& e) {
    throw_pool_error(info.Env(), "Mamba2ModelNative.forwardBatch", e);
  }
  exec_->forward_batch(ctx.table(), ctx.pool(), rows.tokens.data(), rows.seq.data(), rows.pos.data(), B, states,
                       rows.out_rows.data(), n_out, logits, chunk, prof);
  return info.Env().Undefined();
}

Napi::Value profile_ops(const Napi::CallbackInfo& info) { return profile_names(info.Env(), mamba2_profile_op_name, kM2ProfCount); }

}  // namespace

void register_mamba2_model(Napi::Env env, Napi::Object exports) {
  exports.Set("Mamba2ModelNative", Mamba2ModelWrap::define(env));
  exports.Set("Mamba2PoolNative", Mamba2PoolWrap::define(env));
  exports.Set("mamba2ProfileOps", Napi::Function::New(env, profile_ops, "mamba2ProfileOps"));
}

}  // namespace bitllm
