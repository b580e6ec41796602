// Bindings of the linear-layer driver's own ops (runtime/linear.h): OneBit's LayerNorm over rows.
#include <cmath>
#include <string>

#include "common.h"
#include "runtime/linear.h"

namespace bitllm {

namespace {

// layerNormRows(ctx, x: Float32Array[B*n], B, n, eps, y: Float32Array[B*n]); y may be x (in place).
Napi::Value layer_norm_rows_binding(const Napi::CallbackInfo& info) {
  Args a(info, "layerNormRows");
  ContextWrap& ctx = a.context(0);
  const int64_t B = a.integer(2, "B", 1, kMaxBatch), n = a.integer(3, "n", 1, kMaxDim);
  if (!info[4].IsNumber()) a.type_error("eps must be a number");
  const double eps = info[4].As<Napi::Number>().DoubleValue();
  if (!(eps >= 0 && eps < 1)) a.range_error("eps = " + std::to_string(eps) + " must be in [0, 1)");
  const float* x = a.f32(1, "x", B * n, B * n);
  float* y = a.f32(5, "y", B * n, B * n);
  if (y != x) {
    auto x0 = reinterpret_cast<uintptr_t>(x), y0 = reinterpret_cast<uintptr_t>(y);
    const uintptr_t bytes = static_cast<uintptr_t>(B * n * 4);
    if (x0 < y0 + bytes && y0 < x0 + bytes) a.range_error("y overlaps x (in place needs y === x)");
  }
  const float e = static_cast<float>(eps);
  ctx.pool().parallel_for_work(B, n, [&](int64_t b0, int64_t b1) { layer_norm_rows(x + b0 * n, y + b0 * n, b1 - b0, n, n, e); });
  return info.Env().Undefined();
}

}  // namespace

void register_linear(Napi::Env env, Napi::Object exports) {
  exports.Set("layerNormRows", Napi::Function::New(env, layer_norm_rows_binding, "layerNormRows"));
}

}  // namespace bitllm
