// The linear-layer driver; see linear.h.
#include "linear.h"

#include <algorithm>
#include <chrono>
#include <cmath>

#include "repack_ternary.h"
#include "td3_run.h"

namespace bitllm {

namespace {

constexpr int64_t kB1MinChunkTiles = 32;  // B1R16 tiles (16 rows) per thread-pool chunk, at least

class Clock {
 public:
  explicit Clock(double* acc) : acc_(acc) {
    if (acc_) t0_ = std::chrono::steady_clock::now();
  }
  void stop() {
    if (acc_)
      *acc_ += static_cast<double>(
          std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now() - t0_).count());
    acc_ = nullptr;
  }
  ~Clock() { stop(); }

 private:
  double* acc_;
  std::chrono::steady_clock::time_point t0_;
};

}  // namespace

void LinearScratch::ensure(int64_t B, int64_t K) {
  const size_t n = static_cast<size_t>(B * K);
  if (q.size() < n) q.resize(n);
  if (xs.size() < n) xs.resize(n);
  if (scale.size() < static_cast<size_t>(B)) {
    scale.resize(B);
    sum.resize(B);
    tok_bias.resize(B);
  }
  const size_t nb = static_cast<size_t>(B * (K / kScaleBlockK + 1));
  if (bsum.size() < nb) bsum.resize(nb);
}

void layer_norm_rows(const float* x, float* y, int64_t B, int64_t n, int64_t ld, float eps) {
  for (int64_t b = 0; b < B; ++b) {
    const float* xr = x + b * ld;
    float* yr = y + b * ld;
    double s = 0.0;
    for (int64_t i = 0; i < n; ++i) s += static_cast<double>(xr[i]);
    const double mean = s / static_cast<double>(n);
    double v = 0.0;
    for (int64_t i = 0; i < n; ++i) {
      const double c = static_cast<double>(xr[i]) - mean;
      v += c * c;
    }
    const double inv = 1.0 / std::sqrt(v / static_cast<double>(n) + static_cast<double>(eps));
    for (int64_t i = 0; i < n; ++i) yr[i] = static_cast<float>((static_cast<double>(xr[i]) - mean) * inv);
  }
}

void run_linear(const KernelTable& t, ThreadPool& pool, const LinearPlan& w, const float* x, int64_t ldx, int64_t B,
                float* y, int64_t ldy, LinearScratch& s, double* prof_quant, double* prof_gemm) {
  const int64_t K = w.K, M = w.M;
  s.ensure(B, K);
  Clock cq(prof_quant);
  // Pre-step: column scale and FBI-LLM's per-token bias.
  const float* in = x;
  int64_t ldin = ldx;
  float* tok_bias = w.col_bias ? s.tok_bias.data() : nullptr;
  if (w.col_scale || w.col_bias) {
    float* xs = s.xs.data();
    pool.parallel_for_work(B, K, [&](int64_t b0, int64_t b1) {
      t.binary_prep(x + b0 * ldx, ldx, b1 - b0, K, w.col_scale, w.col_bias, xs + b0 * K, K, tok_bias ? tok_bias + b0 : nullptr);
    });
    in = xs;
    ldin = K;
  }
  // Quantizer.
  QActs acts{s.q.data(), s.scale.data(), s.sum.data(), nullptr, B, K, K};
  if (w.quant != LinearPlan::kQuantNone) {
    int8_t* q = s.q.data();
    float* sc = s.scale.data();
    int32_t* sm = s.sum.data();
    if (w.quant == LinearPlan::kQuantTopkI8) {
      const float ratio = w.topk_ratio;
      const int64_t keep = static_cast<int64_t>(std::floor(static_cast<double>(K) * static_cast<double>(ratio)));
      pool.parallel_for_work(B, K, [&](int64_t b0, int64_t b1) {
        t.act_quant_topk_i8(in + b0 * ldin, ldin, b1 - b0, K, keep, q + b0 * K, K, sc + b0, sm + b0);
      });
    } else {
      const act_quant_fn fn = w.quant == LinearPlan::kQuantI4 ? t.act_quant_i4 : t.act_quant_i8;
      pool.parallel_for_work(B, K, [&](int64_t b0, int64_t b1) { fn(in + b0 * ldin, ldin, b1 - b0, K, q + b0 * K, K, sc + b0, sm + b0); });
    }
    const int32_t mode = w.weights == LinearPlan::kTd3 ? w.td3.scale_mode : (w.weights == LinearPlan::kT2R16 ? w.t2.scale_mode : kScaleTensor);
    if (mode == kScaleBlock) {
      t.act_block_sums(q, K, B, K, s.bsum.data());
      acts.bsum = s.bsum.data();
    }
  }
  cq.stop();
  Clock cg(prof_gemm);
  switch (w.weights) {
    case LinearPlan::kT2R16: {
      const int64_t tiles = t2_tiles(M);
      pool.parallel_for_dynamic(tiles, pool.chunk_grain(tiles),
                                [&](int64_t t0, int64_t t1) { t.ternary_gemm(w.t2, acts, y, ldy, t0, t1); });
      break;
    }
    case LinearPlan::kTd3:
      run_td3_gemm(t, pool, w.td3, acts, y, ldy);
      break;
    case LinearPlan::kTs256:
      run_ternary_sparse_gemm(t, pool, w.ts, acts, y, ldy, s.sparse);
      break;
    case LinearPlan::kB1R16: {
      // At least kB1MinChunkTiles tiles per chunk: every binary_gemm call has a fixed start-up cost (AVX-512,
      // B <= 2: it builds the activation bit planes before its weight stream starts). One Zen 4 core streaming
      // 2560x2560 / 3840x2560 / 2560x6912 from DRAM in calls of 5 / 7 / 5 tiles (chunk_grain at 2
      // threads) ran 20-30 % below whole-range calls (e.g. 15.4-16.2 vs 21-23 GB/s); 32-tile calls
      // 0-10 % below.
      const int64_t tiles = (M + kB1Rows - 1) / kB1Rows;
      pool.parallel_for_dynamic(tiles, std::max(pool.chunk_grain(tiles), kB1MinChunkTiles),
                                [&](int64_t t0, int64_t t1) { t.binary_gemm(w.b1, acts, tok_bias, y, ldy, t0, t1); });
      break;
    }
    case LinearPlan::kBillm: {
      // The geometry lives in the plan (copied with it); the matrix view is rebuilt per call.
      const int32_t* boff = w.billm_geometry.data();
      const BillmMat m{w.billm_data, boff, boff + K / kBillmBlock + 1, M, K};
      run_billm_gemm(t, pool, m, w.billm_salient, acts, y, ldy, s.billm);
      break;
    }
    case LinearPlan::kB1L64:
      // Float activations (quant none): the tables hold the exact sums; the row scale and bias are its epilogue.
      run_binary_lut_gemm(t, pool, w.b1l, in, ldin, B, w.row_scale, tok_bias, y, ldy, s.lut);
      break;
    case LinearPlan::kF16: {
      const int64_t groups = (M + 15) / 16;
      pool.parallel_for_dynamic(groups, pool.chunk_grain(groups), [&](int64_t g0, int64_t g1) {
        t.f16_gemm(w.f16, K, M, K, in, ldin, B, y, ldy, g0 * 16, std::min(M, g1 * 16));
      });
      if (tok_bias || w.row_scale) {
        for (int64_t b = 0; b < B; ++b)
          for (int64_t m = 0; m < M; ++m) {
            float v = y[b * ldy + m];
            if (w.row_scale) v = v * w.row_scale[m];
            if (tok_bias) v = v + tok_bias[b];
            y[b * ldy + m] = v;
          }
      }
      break;
    }
  }
  if (w.ln_eps > 0.f) {
    const float eps = w.ln_eps;
    pool.parallel_for_work(B, M, [&](int64_t b0, int64_t b1) { layer_norm_rows(y + b0 * ldy, y + b0 * ldy, b1 - b0, M, ldy, eps); });
  }
}

}  // namespace bitllm
