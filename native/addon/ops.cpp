// Bindings for the float ops of the transformer block (kernels/ops.h): rmsnorm, NEOX RoPE, f16, q8
// and q3 KV stores, causal GQA attention over each cache, gated activations. Rows are contiguous at the JS
// level (ld = row length); every typed array must have exactly the length its shape implies.
#include <algorithm>
#include <cfloat>
#include <cmath>
#include <cstdint>
#include <new>
#include <string>

#include "common.h"
#include "runtime/attention_run.h"
#include "runtime/logits_select.h"

namespace bitllm {

namespace {

constexpr int64_t kMaxHeads = 4096;
constexpr int64_t kMaxHeadDim = 4096;
constexpr int64_t kMaxCapacity = int64_t{1} << 20;  // KV positions per cache
constexpr int64_t kMaxRopePos = (int64_t{1} << 24) - 1;  // positions stay exact as floats

// A finite JS number that is also finite as a float, in [lo, +inf) when nonneg / positive is asked.
float float_arg(const Args& a, size_t i, const char* name, bool nonneg, bool positive) {
  const double v = a.number(i, name);
  if (!std::isfinite(v) || std::fabs(v) > static_cast<double>(FLT_MAX))
    a.range_error(std::string(name) + " must be a finite float, got " + std::to_string(v));
  if (positive && !(v > 0)) a.range_error(std::string(name) + " must be > 0, got " + std::to_string(v));
  if (nonneg && !(v >= 0)) a.range_error(std::string(name) + " must be >= 0, got " + std::to_string(v));
  return static_cast<float>(v);
}

// Every pos[b] in [0, limit); returns the largest.
int32_t check_positions(const Args& a, const int32_t* pos, int64_t B, int64_t limit, const char* limit_name) {
  int32_t mx = 0;
  for (int64_t b = 0; b < B; ++b) {
    if (pos[b] < 0 || pos[b] >= limit)
      a.range_error("pos[" + std::to_string(b) + "] = " + std::to_string(pos[b]) + " is outside [0, " + limit_name +
                    " = " + std::to_string(limit) + ")");
    if (pos[b] > mx) mx = pos[b];
  }
  return mx;
}

// body(begin, end) over [0, n) units of `unit_work` elements each: on the pool when the total work
// is worth it, else inline. Every op here gives the same bits either way (rows are independent).
template <typename Body>
void run_split(ContextWrap& ctx, int64_t n, int64_t unit_work, Body&& body) {
  ctx.pool().parallel_for_work(n, unit_work, body);
}

// head count x head_dim of one token row, bounded like every other row length.
void check_row(const Args& a, int64_t heads, int64_t head_dim, const char* what) {
  if (heads * head_dim > kMaxDim)
    a.range_error(std::string(what) + " x headDim = " + std::to_string(heads * head_dim) + " exceeds " +
                  std::to_string(kMaxDim));
}

// rmsnorm(ctx, x: Float32Array[B*n], w: Float32Array[n] | null, y: Float32Array[B*n], B, n, eps)
// y may be x itself (in place), not a partial overlap.
Napi::Value rmsnorm(const Napi::CallbackInfo& info) {
  Args a(info, "rmsnorm");
  ContextWrap& ctx = a.context(0);
  const int64_t B = a.integer(4, "B", 1, kMaxBatch), n = a.integer(5, "n", 1, kMaxDim);
  const float eps = float_arg(a, 6, "eps", true, false);
  const float* x = a.f32(1, "x", B * n, B * n);
  const float* w = a.has(2) ? a.f32(2, "w", n, n) : nullptr;
  float* y = a.f32(3, "y", B * n, B * n);
  if (y != x) check_disjoint(a, y, B * n * 4, "y", x, B * n * 4, "x (in place needs y === x)");
  if (w) check_disjoint(a, y, B * n * 4, "y", w, n * 4, "w");
  const rmsnorm_fn fn = ctx.table().rmsnorm;
  run_split(ctx, B, n, [&](int64_t b0, int64_t b1) { fn(x + b0 * n, w, y + b0 * n, b1 - b0, n, n, eps); });
  return info.Env().Undefined();
}

// ropeNeox(ctx, x: Float32Array[B*nHeads*headDim], pos: Int32Array[B], B, nHeads, headDim, nRot, thetaBase)
// in place on x.
Napi::Value rope_neox(const Napi::CallbackInfo& info) {
  Args a(info, "ropeNeox");
  ContextWrap& ctx = a.context(0);
  const int64_t B = a.integer(3, "B", 1, kMaxBatch), nh = a.integer(4, "nHeads", 1, kMaxHeads);
  const int64_t hd = a.integer(5, "headDim", 1, kMaxHeadDim), n_rot = a.integer(6, "nRot", 0, hd);
  if (n_rot % 2) a.range_error("nRot = " + std::to_string(n_rot) + " must be even");
  check_row(a, nh, hd, "nHeads");
  const float base = float_arg(a, 7, "thetaBase", false, true);
  float* x = a.f32(1, "x", B * nh * hd, B * nh * hd);
  const int32_t* pos = a.i32(2, "pos", B, B);
  check_positions(a, pos, B, kMaxRopePos + 1, "2^24");
  check_disjoint(a, x, B * nh * hd * 4, "x", pos, B * 4, "pos");
  const rope_neox_fn fn = ctx.table().rope_neox;
  const int64_t ld = nh * hd;
  run_split(ctx, B, ld, [&](int64_t b0, int64_t b1) { fn(x + b0 * ld, pos + b0, b1 - b0, nh, hd, ld, n_rot, base); });
  return info.Env().Undefined();
}

// kvStoreF16(ctx, x: Float32Array[B*nKvHeads*headDim], pos: Int32Array[B],
//            cache: Uint16Array[nKvHeads*capacity*headDim], B, nKvHeads, headDim, capacity)
Napi::Value kv_store_f16(const Napi::CallbackInfo& info) {
  Args a(info, "kvStoreF16");
  ContextWrap& ctx = a.context(0);
  const int64_t B = a.integer(4, "B", 1, kMaxBatch), nkv = a.integer(5, "nKvHeads", 1, kMaxHeads);
  const int64_t hd = a.integer(6, "headDim", 1, kMaxHeadDim), cap = a.integer(7, "capacity", 1, kMaxCapacity);
  check_row(a, nkv, hd, "nKvHeads");
  const float* x = a.f32(1, "x", B * nkv * hd, B * nkv * hd);
  const int32_t* pos = a.i32(2, "pos", B, B);
  uint16_t* cache = a.u16(3, "cache", nkv * cap * hd, nkv * cap * hd);
  check_positions(a, pos, B, cap, "capacity");
  check_disjoint(a, cache, nkv * cap * hd * 2, "cache", x, B * nkv * hd * 4, "x");
  check_disjoint(a, cache, nkv * cap * hd * 2, "cache", pos, B * 4, "pos");
  const kv_store_f16_fn fn = ctx.table().kv_store_f16;
  const int64_t ld = nkv * hd;
  // Split by kv head: each thread owns whole cache planes, so repeated positions cannot race.
  run_split(ctx, nkv, B * hd, [&](int64_t h0, int64_t h1) {
    fn(x + h0 * hd, pos, cache + h0 * cap * hd, B, h1 - h0, hd, ld, cap);
  });
  return info.Env().Undefined();
}

// headDim of a q8 / q3 cache: a multiple of the 32-value block.
void check_block_head_dim(const Args& a, int64_t hd, const char* kind) {
  static_assert(kKvQ8Block == kKvQ3Block, "one block size");
  if (hd % kKvQ8Block)
    a.range_error("headDim = " + std::to_string(hd) + " must be a multiple of " + std::to_string(kKvQ8Block) +
                  " for a " + kind + " KV cache");
}

// Stores K or V rows into a block-quantized cache (q8: 34-byte, q3: 14-byte blocks of 32 values):
// kvStoreQ8 / kvStoreQ3(ctx, x: Float32Array[B*nKvHeads*headDim], pos: Int32Array[B],
//           cache: Uint8Array[nKvHeads*capacity*row_bytes(headDim)], B, nKvHeads, headDim, capacity)
Napi::Value kv_store_blocks(const Napi::CallbackInfo& info, const char* name, KvKind kind) {
  Args a(info, name);
  ContextWrap& ctx = a.context(0);
  const int64_t B = a.integer(4, "B", 1, kMaxBatch), nkv = a.integer(5, "nKvHeads", 1, kMaxHeads);
  const int64_t hd = a.integer(6, "headDim", 1, kMaxHeadDim), cap = a.integer(7, "capacity", 1, kMaxCapacity);
  const bool q8 = kind == KvKind::q8;
  check_block_head_dim(a, hd, q8 ? "q8" : "q3");
  check_row(a, nkv, hd, "nKvHeads");
  const int64_t rb = q8 ? q8_row_bytes(hd) : q3_row_bytes(hd), cn = nkv * cap * rb;
  const float* x = a.f32(1, "x", B * nkv * hd, B * nkv * hd);
  const int32_t* pos = a.i32(2, "pos", B, B);
  uint8_t* cache = a.u8(3, "cache", cn, cn);
  check_positions(a, pos, B, cap, "capacity");
  check_disjoint(a, cache, cn, "cache", x, B * nkv * hd * 4, "x");
  check_disjoint(a, cache, cn, "cache", pos, B * 4, "pos");
  const kv_store_q8_fn fn = q8 ? ctx.table().kv_store_q8 : ctx.table().kv_store_q3;
  const int64_t ld = nkv * hd;
  // Split by kv head: each thread owns whole cache planes, so repeated positions cannot race.
  run_split(ctx, nkv, B * hd, [&](int64_t h0, int64_t h1) {
    fn(x + h0 * hd, pos, cache + h0 * cap * rb, B, h1 - h0, hd, ld, cap);
  });
  return info.Env().Undefined();
}

Napi::Value kv_store_q8(const Napi::CallbackInfo& info) { return kv_store_blocks(info, "kvStoreQ8", KvKind::q8); }
Napi::Value kv_store_q3(const Napi::CallbackInfo& info) { return kv_store_blocks(info, "kvStoreQ3", KvKind::q3); }

// attentionF16(ctx, q: Float32Array[B*nHeads*headDim], kCache, vCache: Uint16Array[nKvHeads*capacity*headDim],
//              pos: Int32Array[B], out: Float32Array[B*nHeads*headDim], B, nHeads, nKvHeads, headDim,
//              capacity, scale)
// attentionQ8(ctx, q, kCache, vCache: Uint8Array[nKvHeads*capacity*headDim/32*34], pos, out, B, nHeads,
//             nKvHeads, headDim (% 32 == 0), capacity, scale): the same over q8 caches.
// attentionQ3(ctx, q, kCache, vCache: Uint8Array[nKvHeads*capacity*headDim/32*14], pos, out, B, nHeads,
//             nKvHeads, headDim (% 32 == 0), capacity, scale): the same over q3 caches.
template <KvKind kKind>
Napi::Value attention(const Napi::CallbackInfo& info) {
  constexpr bool kBytes = kKind != KvKind::f16;  // q8 / q3: Uint8Array caches of blocks
  Args a(info, kKind == KvKind::q8 ? "attentionQ8" : kKind == KvKind::q3 ? "attentionQ3" : "attentionF16");
  ContextWrap& ctx = a.context(0);
  const int64_t B = a.integer(6, "B", 1, kMaxBatch), nh = a.integer(7, "nHeads", 1, kMaxHeads);
  const int64_t nkv = a.integer(8, "nKvHeads", 1, nh);
  if (nh % nkv)
    a.range_error("nHeads = " + std::to_string(nh) + " is not a multiple of nKvHeads = " + std::to_string(nkv));
  const int64_t hd = a.integer(9, "headDim", 1, kMaxHeadDim), cap = a.integer(10, "capacity", 1, kMaxCapacity);
  if (kBytes) check_block_head_dim(a, hd, kKind == KvKind::q8 ? "q8" : "q3");
  check_row(a, nh, hd, "nHeads");
  const float scale = float_arg(a, 11, "scale", false, false);
  // cn elements of cb bytes per cache.
  const int64_t row = kKind == KvKind::q8 ? q8_row_bytes(hd) : kKind == KvKind::q3 ? q3_row_bytes(hd) : hd;
  const int64_t qn = B * nh * hd, cn = nkv * cap * row, cb = kBytes ? 1 : 2;
  const float* q = a.f32(1, "q", qn, qn);
  const void* kc = kBytes ? static_cast<const void*>(a.u8(2, "kCache", cn, cn)) : a.u16(2, "kCache", cn, cn);
  const void* vc = kBytes ? static_cast<const void*>(a.u8(3, "vCache", cn, cn)) : a.u16(3, "vCache", cn, cn);
  const int32_t* pos = a.i32(4, "pos", B, B);
  float* out = a.f32(5, "out", qn, qn);
  const int32_t max_pos = check_positions(a, pos, B, cap, "capacity");
  check_disjoint(a, out, qn * 4, "out", q, qn * 4, "q");
  check_disjoint(a, out, qn * 4, "out", kc, cn * cb, "kCache");
  check_disjoint(a, out, qn * 4, "out", vc, cn * cb, "vCache");
  check_disjoint(a, out, qn * 4, "out", pos, B * 4, "pos");

  const int64_t parts = attention_parts(ctx.pool(), pos, B, nh, hd);
  const int64_t nscratch = attention_run_scratch(parts, nh, nkv, hd, max_pos);
  float* scratch = nullptr;
  try {
    scratch = reinterpret_cast<float*>(ctx.scratch_u8(static_cast<size_t>(nscratch) * sizeof(float)));
  } catch (const std::bad_alloc&) {
    a.range_error("cannot allocate " + std::to_string(nscratch * 4) + " bytes of attention scratch");
  }
  const AttentionCall call{q, kc, vc, kKind, pos, out, B, nh, nkv, hd, cap, nh * hd, nh * hd, scale};
  run_attention(ctx.table(), ctx.pool(), call, parts, max_pos, scratch);
  return info.Env().Undefined();
}

// gluRelu2 / gluSilu (ctx, gateUp: Float32Array[B*2n] (gate | up per row), out: Float32Array[B*n], B, n)
template <bool kSilu>
Napi::Value glu(const Napi::CallbackInfo& info) {
  Args a(info, kSilu ? "gluSilu" : "gluRelu2");
  ContextWrap& ctx = a.context(0);
  const int64_t B = a.integer(3, "B", 1, kMaxBatch), n = a.integer(4, "n", 1, kMaxDim);
  const float* gu = a.f32(1, "gateUp", B * 2 * n, B * 2 * n);
  float* out = a.f32(2, "out", B * n, B * n);
  check_disjoint(a, out, B * n * 4, "out", gu, B * 2 * n * 4, "gateUp");
  const glu_fn fn = kSilu ? ctx.table().glu_silu : ctx.table().glu_relu2;
  run_split(ctx, B, n, [&](int64_t b0, int64_t b1) { fn(gu + b0 * 2 * n, out + b0 * n, b1 - b0, n, 2 * n, n); });
  return info.Env().Undefined();
}

// logitsArgmax(x: Float32Array) -> number (runtime/logits_select.h; lib/reference/select.ts refArgmax).
Napi::Value logits_argmax_binding(const Napi::CallbackInfo& info) {
  Args a(info, "logitsArgmax");
  const float* x = a.f32(0, "x", 0);
  if (a.length(0) > INT32_MAX) a.range_error("x has more than 2^31 - 1 logits");
  return Napi::Number::New(info.Env(), static_cast<double>(logits_argmax(x, a.length(0))));
}

// logitsTopK(x: Float32Array, k, out: Int32Array) -> count (refTopKFinite): out needs min(k, x.length) ids.
Napi::Value logits_top_k_binding(const Napi::CallbackInfo& info) {
  Args a(info, "logitsTopK");
  const float* x = a.f32(0, "x", 0);
  const int64_t n = a.length(0);
  if (n > INT32_MAX) a.range_error("x has more than 2^31 - 1 logits (ids are int32)");
  const int64_t k = a.integer(1, "k", 1, INT32_MAX);
  int32_t* out = a.i32(2, "out", std::min(k, n));
  check_disjoint(a, out, std::min(k, n) * 4, "out", x, n * 4, "x");
  return Napi::Number::New(info.Env(), static_cast<double>(logits_top_k(x, n, k, out)));
}

}  // namespace

void register_ops(Napi::Env env, Napi::Object exports) {
  exports.Set("logitsArgmax", Napi::Function::New(env, logits_argmax_binding, "logitsArgmax"));
  exports.Set("logitsTopK", Napi::Function::New(env, logits_top_k_binding, "logitsTopK"));
  exports.Set("rmsnorm", Napi::Function::New(env, rmsnorm, "rmsnorm"));
  exports.Set("ropeNeox", Napi::Function::New(env, rope_neox, "ropeNeox"));
  exports.Set("kvStoreF16", Napi::Function::New(env, kv_store_f16, "kvStoreF16"));
  exports.Set("attentionF16", Napi::Function::New(env, attention<KvKind::f16>, "attentionF16"));
  exports.Set("kvStoreQ8", Napi::Function::New(env, kv_store_q8, "kvStoreQ8"));
  exports.Set("attentionQ8", Napi::Function::New(env, attention<KvKind::q8>, "attentionQ8"));
  exports.Set("kvStoreQ3", Napi::Function::New(env, kv_store_q3, "kvStoreQ3"));
  exports.Set("attentionQ3", Napi::Function::New(env, attention<KvKind::q3>, "attentionQ3"));
  exports.Set("gluRelu2", Napi::Function::New(env, glu<false>, "gluRelu2"));
  exports.Set("gluSilu", Napi::Function::New(env, glu<true>, "gluSilu"));
}

}  // namespace bitllm
