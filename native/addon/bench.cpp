// Bindings for the machine probes used by `bitllm bench kernels`.
#include "common.h"
#include "runtime/cpu_features.h"
#include "runtime/probes.h"

namespace bitllm {

namespace {

// probeReadBandwidth(ctx, bytes, reps) -> { median, best } GB/s
Napi::Value read_bandwidth(const Napi::CallbackInfo& info) {
  Args a(info, "probeReadBandwidth");
  ContextWrap& ctx = a.context(0);
  const int64_t bytes = a.integer(1, "bytes", 4096, int64_t{16} << 30);
  const int reps = static_cast<int>(a.integer(2, "reps", 1, 100));
  const ProbeResult r = probe_read_bandwidth(ctx.pool(), bytes, reps);
  auto o = Napi::Object::New(info.Env());
  o.Set("median", r.median);
  o.Set("best", r.best);
  return o;
}

// probeInt8Peak(ctx, seconds) -> { gops, instruction }
Napi::Value int8_peak(const Napi::CallbackInfo& info) {
  Args a(info, "probeInt8Peak");
  ContextWrap& ctx = a.context(0);
  const double seconds = a.number(1, "seconds");
  if (!(seconds > 0 && seconds <= 10)) a.range_error("seconds must be in (0, 10]");
  const char* name = "none";
  const double gops = probe_int8_peak(ctx.pool(), cpu_features(), seconds, &name);
  auto o = Napi::Object::New(info.Env());
  o.Set("gops", gops);
  o.Set("instruction", name);
  return o;
}

}  // namespace

void register_bench(Napi::Env env, Napi::Object exports) {
  exports.Set("probeReadBandwidth", Napi::Function::New(env, read_bandwidth, "probeReadBandwidth"));
  exports.Set("probeInt8Peak", Napi::Function::New(env, int8_peak, "probeInt8Peak"));
}

}  // namespace bitllm
