// Bindings of the Mamba-2 mixer kernels (kernels/mamba2.h): the causal conv with its state, the SSD recurrence,
// the SSD chunked scan and the gated RMSNorm. Rows are contiguous at the JS level; every typed array must have
// exactly the length its shape implies, outputs and states must not overlap the inputs, and every dimension is
// range-checked before a pointer is touched. Work is split over the context's threads by channel (conv), head
// (SSM) or row (norm); every split gives the same bits.
#include <algorithm>
#include <cfloat>
#include <cmath>
#include <cstdint>
#include <new>
#include <string>

#include "common.h"
#include "runtime/mamba2_run.h"

namespace bitllm {

namespace {

constexpr int64_t kMaxRows = int64_t{1} << 16;  // T: tokens per call
constexpr int64_t kMaxHeads = 4096;
constexpr int64_t kMaxHeadDim = 4096;
constexpr int64_t kMaxState = 4096;
constexpr int64_t kMaxScratchBytes = int64_t{1} << 30;

std::string str(int64_t v) { return std::to_string(v); }

// eps: finite as a float and > 0.
float eps_arg(const Args& a, size_t i) {
  const double v = a.number(i, "eps");
  if (!std::isfinite(v) || !(v > 0) || v > static_cast<double>(FLT_MAX))
    a.range_error("eps must be a finite float > 0, got " + std::to_string(v));
  return static_cast<float>(v);
}

// mamba2Conv(ctx, xBC: F32[T*C], weight: F32[C*K], bias: F32[C], state: F32[(K-1)*C], out: F32[T*C], T, C, K)
Napi::Value mamba2_conv(const Napi::CallbackInfo& info) {
  Args a(info, "mamba2Conv");
  ContextWrap& ctx = a.context(0);
  const int64_t T = a.integer(6, "T", 1, kMaxRows), C = a.integer(7, "C", 1, kMaxDim);
  const int64_t K = a.integer(8, "K", 1, kMamba2MaxConv);
  const float* x = a.f32(1, "xBC", T * C, T * C);
  const float* w = a.f32(2, "weight", C * K, C * K);
  const float* bias = a.f32(3, "bias", C, C);
  float* state = a.f32(4, "state", (K - 1) * C, (K - 1) * C);
  float* out = a.f32(5, "out", T * C, T * C);
  const int64_t sb = (K - 1) * C * 4;
  check_disjoint(a, out, T * C * 4, "out", x, T * C * 4, "xBC");
  check_disjoint(a, out, T * C * 4, "out", w, C * K * 4, "weight");
  check_disjoint(a, out, T * C * 4, "out", bias, C * 4, "bias");
  check_disjoint(a, out, T * C * 4, "out", state, sb, "state");
  check_disjoint(a, state, sb, "state", x, T * C * 4, "xBC");
  check_disjoint(a, state, sb, "state", w, C * K * 4, "weight");
  check_disjoint(a, state, sb, "state", bias, C * 4, "bias");
  const mamba2_conv_fn fn = ctx.table().mamba2_conv;
  ctx.pool().parallel_for_work(C, T * K, [&](int64_t c0, int64_t c1) { fn(x, w, bias, state, out, T, C, K, C, C, c0, c1); });
  return info.Env().Undefined();
}

// The SSM arguments shared by ssdRecurrent and ssdChunked:
// (ctx, x: F32[T*nHeads*headDim], B: F32[T*nGroups*dState], C: F32[T*nGroups*dState], dt: F32[T*nHeads],
//  dtBias: F32[nHeads], ALog: F32[nHeads], D: F32[nHeads], state: F32[nHeads*headDim*dState],
//  y: F32[T*nHeads*headDim], T, nHeads, headDim, nGroups, dState)
SsdArgs ssd_args(const Args& a) {
  SsdArgs s{};
  s.T = a.integer(10, "T", 1, kMaxRows);
  s.n_heads = a.integer(11, "nHeads", 1, kMaxHeads);
  s.head_dim = a.integer(12, "headDim", 1, kMaxHeadDim);
  s.n_groups = a.integer(13, "nGroups", 1, s.n_heads);
  s.d_state = a.integer(14, "dState", 1, kMaxState);
  if (s.n_heads % s.n_groups)
    a.range_error("nHeads = " + str(s.n_heads) + " is not a multiple of nGroups = " + str(s.n_groups));
  const int64_t di = s.n_heads * s.head_dim, G = s.n_groups * s.d_state;
  if (di > kMaxDim) a.range_error("nHeads x headDim = " + str(di) + " exceeds " + str(kMaxDim));
  if (G > kMaxDim) a.range_error("nGroups x dState = " + str(G) + " exceeds " + str(kMaxDim));
  const int64_t sn = s.n_heads * s.head_dim * s.d_state;
  if (sn > (int64_t{1} << 30)) a.range_error("the state of " + str(sn) + " floats is too large");
  const int64_t T = s.T, H = s.n_heads;
  s.x = a.f32(1, "x", T * di, T * di);
  s.B = a.f32(2, "B", T * G, T * G);
  s.C = a.f32(3, "C", T * G, T * G);
  s.dt = a.f32(4, "dt", T * H, T * H);
  s.dt_bias = a.f32(5, "dtBias", H, H);
  s.a_log = a.f32(6, "ALog", H, H);
  s.d = a.f32(7, "D", H, H);
  s.state = a.f32(8, "state", sn, sn);
  s.y = a.f32(9, "y", T * di, T * di);
  s.ldx = s.ldy = di;
  s.ldbc = G;
  s.lddt = H;
  const struct {
    const void* p;
    int64_t bytes;
    const char* name;
  } ins[] = {{s.x, T * di * 4, "x"}, {s.B, T * G * 4, "B"}, {s.C, T * G * 4, "C"}, {s.dt, T * H * 4, "dt"},
             {s.dt_bias, H * 4, "dtBias"}, {s.a_log, H * 4, "ALog"}, {s.d, H * 4, "D"}};
  for (const auto& in : ins) {
    check_disjoint(a, s.y, T * di * 4, "y", in.p, in.bytes, in.name);
    check_disjoint(a, s.state, sn * 4, "state", in.p, in.bytes, in.name);
  }
  check_disjoint(a, s.y, T * di * 4, "y", s.state, sn * 4, "state");
  return s;
}

// ssdRecurrent(ctx, x, B, C, dt, dtBias, ALog, D, state, y, T, nHeads, headDim, nGroups, dState)
Napi::Value ssd_recurrent(const Napi::CallbackInfo& info) {
  Args a(info, "ssdRecurrent");
  ContextWrap& ctx = a.context(0);
  const SsdArgs s = ssd_args(a);
  const ssd_recurrent_fn fn = ctx.table().ssd_recurrent;
  ctx.pool().parallel_for_work(s.n_heads, s.T * s.head_dim * s.d_state, [&](int64_t h0, int64_t h1) { fn(s, h0, h1); });
  return info.Env().Undefined();
}

// ssdChunked(ctx, x, B, C, dt, dtBias, ALog, D, state, y, T, nHeads, headDim, nGroups, dState, chunk)
Napi::Value ssd_chunked(const Napi::CallbackInfo& info) {
  Args a(info, "ssdChunked");
  ContextWrap& ctx = a.context(0);
  const SsdArgs s = ssd_args(a);
  const int64_t chunk = a.integer(15, "chunk", 1, kSsdMaxChunk);
  ThreadPool& pool = ctx.pool();
  const int64_t total = ssd_chunked_run_floats(s, chunk, pool.size());
  if (total * 4 > kMaxScratchBytes)
    a.range_error("ssdChunked needs " + str(total * 4) + " bytes of scratch (more than " + str(kMaxScratchBytes) +
                  "): use a smaller chunk or fewer rows per call");
  float* scratch = nullptr;
  try {
    scratch = reinterpret_cast<float*>(ctx.scratch_u8(static_cast<size_t>(total) * sizeof(float)));
  } catch (const std::bad_alloc&) {
    a.range_error("cannot allocate " + str(total * 4) + " bytes of ssdChunked scratch");
  }
  run_ssd_chunked(ctx.table(), pool, s, chunk, scratch);
  return info.Env().Undefined();
}

// gatedRmsNorm(ctx, y: F32[T*dInner], z: F32[T*dInner], w: F32[dInner], out: F32[T*dInner], T, dInner, nGroups, eps)
Napi::Value gated_rmsnorm(const Napi::CallbackInfo& info) {
  Args a(info, "gatedRmsNorm");
  ContextWrap& ctx = a.context(0);
  const int64_t T = a.integer(5, "T", 1, kMaxRows), D = a.integer(6, "dInner", 1, kMaxDim);
  const int64_t G = a.integer(7, "nGroups", 1, D);
  if (D % G) a.range_error("dInner = " + str(D) + " is not a multiple of nGroups = " + str(G));
  const float eps = eps_arg(a, 8);
  const float* y = a.f32(1, "y", T * D, T * D);
  const float* z = a.f32(2, "z", T * D, T * D);
  const float* w = a.f32(3, "w", D, D);
  float* out = a.f32(4, "out", T * D, T * D);
  check_disjoint(a, out, T * D * 4, "out", y, T * D * 4, "y");
  check_disjoint(a, out, T * D * 4, "out", z, T * D * 4, "z");
  check_disjoint(a, out, T * D * 4, "out", w, D * 4, "w");
  const gated_rmsnorm_fn fn = ctx.table().gated_rmsnorm;
  ctx.pool().parallel_for_work(T, D, [&](int64_t r0, int64_t r1) { fn(y, z, w, out, G, D / G, eps, r0, r1); });
  return info.Env().Undefined();
}

}  // namespace

void register_mamba2(Napi::Env env, Napi::Object exports) {
  exports.Set("mamba2Conv", Napi::Function::New(env, mamba2_conv, "mamba2Conv"));
  exports.Set("ssdRecurrent", Napi::Function::New(env, ssd_recurrent, "ssdRecurrent"));
  exports.Set("ssdChunked", Napi::Function::New(env, ssd_chunked, "ssdChunked"));
  exports.Set("gatedRmsNorm", Napi::Function::New(env, gated_rmsnorm, "gatedRmsNorm"));
}

}  // namespace bitllm
