// Every Mamba-2 kernel variant (mamba2_conv, ssd_recurrent, ssd_chunked, gated_rmsnorm) against a double
// evaluation of the contracts in mamba2.h, within the bounds stated there (the same bounds lib/reference/mamba2.ts
// computes for the vitest suite): odd shapes, groups, headDim 1, dState not a multiple of 16, T = 1, states
// carried across calls, large |dt|, decays ~0 and ~1, all-zero inputs.
#include <algorithm>

#include "test_util.h"

using namespace bitllm_test;

namespace {

constexpr double kU = 1.0 / 16777216.0;  // 2^-24
constexpr double kSub = 1.401298464324817e-45;
const double kTiny = std::ldexp(1.0, -120), kTiny130 = std::ldexp(1.0, -130), kTiny140 = std::ldexp(1.0, -140);

std::vector<KernelTable> g_tables;
double g_worst[4][4];  // [isa][conv, recurrent, chunked, norm]: largest error / bound

double silu(double v) { return v / (1.0 + std::exp(-v)); }
double softplus(double v) { return v > 20 ? v : std::log1p(std::exp(v)); }

std::vector<float> randn(Rng& rng, size_t n, float scale) {
  std::vector<float> v(n);
  for (auto& x : v) x = rng.normal() * scale;
  return v;
}

void check_within(const float* got, const std::vector<double>& want, const std::vector<double>& bound, int isa, int kind,
                  const char* what) {
  int bad = 0;
  for (size_t i = 0; i < want.size(); ++i) {
    const double err = std::fabs(got[i] - want[i]);
    if (bound[i] > 0) g_worst[isa][kind] = std::max(g_worst[isa][kind], err / bound[i]);
    if (!(err <= bound[i]) && bad++ < 3)
      CHECK(false, "%s %s: element %zu got %.9g want %.9g bound %.3g", isa_name(static_cast<Isa>(isa)), what, i, got[i],
            want[i], bound[i]);
  }
}

// ---------------------------------------------------------------------------------------------
// conv

void test_conv(int64_t C, int64_t K, const std::vector<int64_t>& pieces, float scale, Rng& rng) {
  int64_t T = 0;
  for (int64_t p : pieces) T += p;
  const std::vector<float> x = randn(rng, T * C, scale), w = randn(rng, C * K, 0.7f), bias = randn(rng, C, 0.3f);
  const std::vector<float> s0 = randn(rng, (K - 1) * C, 1.0f);
  // Double reference over the whole history.
  std::vector<double> hist((K - 1 + T) * C);
  for (int64_t i = 0; i < (K - 1) * C; ++i) hist[i] = s0[i];
  for (int64_t i = 0; i < T * C; ++i) hist[(K - 1) * C + i] = x[i];
  std::vector<double> want(T * C), bound(T * C);
  for (int64_t t = 0; t < T; ++t)
    for (int64_t c = 0; c < C; ++c) {
      double s = bias[c], S = std::fabs(bias[c]);
      for (int64_t k = 0; k < K; ++k) {
        const double v = w[c * K + k] * hist[(t + k) * C + c];
        s += v;
        S += std::fabs(v);
      }
      want[t * C + c] = silu(s);
      bound[t * C + c] = 1.1 * (K + 2) * kU * S + 8 * kU * std::fabs(silu(s)) + 1e-36 * S + kSub;
    }
  for (const auto& tb : g_tables) {
    std::vector<float> state = s0, out(T * C + 5, -777.0f);
    int64_t t0 = 0;
    for (int64_t p : pieces) {
      // Two channel ranges, as two threads would split them.
      const int64_t mid = C / 3;
      tb.mamba2_conv(x.data() + t0 * C, w.data(), bias.data(), state.data(), out.data() + t0 * C, p, C, K, C, C, 0, mid);
      tb.mamba2_conv(x.data() + t0 * C, w.data(), bias.data(), state.data(), out.data() + t0 * C, p, C, K, C, C, mid, C);
      t0 += p;
    }
    check_within(out.data(), want, bound, static_cast<int>(tb.isa), 0, "conv");
    for (int64_t i = T * C; i < T * C + 5; ++i) CHECK(out[i] == -777.0f, "conv wrote past the output");
    for (int64_t i = 0; i < (K - 1) * C; ++i)
      CHECK(state[i] == static_cast<float>(hist[T * C + i]), "conv %s state element %lld", isa_name(tb.isa), (long long)i);
  }
}

// ---------------------------------------------------------------------------------------------
// SSD

struct SsdCase {
  int64_t H, P, G, N;
  std::vector<float> x, B, C, dt, dt_bias, a_log, D, s0;
};

SsdCase make_ssd(int64_t H, int64_t P, int64_t G, int64_t N, int64_t T, Rng& rng, int kind) {
  SsdCase c{H, P, G, N, {}, {}, {}, {}, {}, {}, {}, {}};
  c.x = randn(rng, T * H * P, 1.0f);
  c.B = randn(rng, T * G * N, 1.0f);
  c.C = randn(rng, T * G * N, 1.0f);
  c.dt = randn(rng, T * H, 1.5f);
  c.dt_bias = randn(rng, H, 0.5f);
  c.a_log.resize(H);
  for (auto& v : c.a_log) v = rng.uniform() * 3 - 1;
  c.D = randn(rng, H, 1.0f);
  c.s0 = randn(rng, H * P * N, 0.5f);
  if (kind == 1) {  // |dt| = 40: softplus saturates both ways; decays ~0 and ~1
    for (auto& v : c.dt) v = v > 0 ? 40.0f : -40.0f;
    for (int64_t h = 0; h < H; ++h) c.a_log[h] = h % 3 == 0 ? 5.0f : h % 3 == 1 ? -20.0f : 0.0f;
  } else if (kind == 2) {  // all zero
    for (auto* v : {&c.x, &c.B, &c.C, &c.dt, &c.s0}) std::fill(v->begin(), v->end(), 0.0f);
  }
  return c;
}

// The double recurrence over rows [t0, t1) with M / E bounds (mamba2.h), advancing s, M, E; y and its bound out.
// chunk = 0: the recurrence's bound; else the chunked scan's bound with chunks starting at t0.
void ssd_reference(const SsdCase& c, int64_t t0, int64_t t1, int64_t chunk, std::vector<double>& s, std::vector<double>& M,
                   std::vector<double>& E, std::vector<double>& y, std::vector<double>& yb) {
  const int64_t H = c.H, P = c.P, N = c.N, GN = c.G * N, DI = H * P, per = H / c.G, T = t1 - t0;
  y.assign(T * DI, 0.0);
  yb.assign(T * DI, 0.0);
  for (int64_t h = 0; h < H; ++h) {
    const int64_t g = h / per;
    const double A = -std::exp(static_cast<double>(c.a_log[h]));
    auto Bv = [&](int64_t t, int64_t n) { return static_cast<double>(c.B[t * GN + g * N + n]); };
    auto Cv = [&](int64_t t, int64_t n) { return static_cast<double>(c.C[t * GN + g * N + n]); };
    auto xv = [&](int64_t t, int64_t i) { return static_cast<double>(c.x[t * DI + h * P + i]); };
    for (int64_t a = t0; a < t1; a += (chunk ? chunk : T)) {
      const int64_t L = std::min(chunk ? chunk : T, t1 - a);
      std::vector<double> dth(L), dA(L), pf(L), dk(L * L, 0.0), acb(L * L, 0.0);
      for (int64_t l = 0; l < L; ++l) {
        dth[l] = softplus(static_cast<double>(c.dt[(a + l) * H + h]) + c.dt_bias[h]);
        dA[l] = std::exp(A * dth[l]);
        pf[l] = (l ? pf[l - 1] : 1.0) * dA[l];
      }
      for (int64_t s2 = 0; s2 < L; ++s2) {
        double v = 1.0;
        for (int64_t t = s2; t < L; ++t) {
          if (t > s2) v *= dA[t];
          dk[t * L + s2] = v;
        }
      }
      if (chunk)
        for (int64_t t = 0; t < L; ++t)
          for (int64_t s2 = 0; s2 <= t; ++s2) {
            double v = 0;
            for (int64_t n = 0; n < N; ++n) v += std::fabs(Cv(a + t, n) * Bv(a + s2, n));
            acb[t * L + s2] = v;
          }
      for (int64_t i = 0; i < P; ++i) {
        const int64_t st = (h * P + i) * N;
        if (chunk) {  // the chunked bound uses the state entering the chunk
          const double c1 = (N + 3 * L + 8) * kU;
          for (int64_t t = 0; t < L; ++t) {
            double diag = 0, diagZ = 0, dx = 0, offME = 0, offE = 0;
            for (int64_t s2 = 0; s2 <= t; ++s2) {
              const double v = dth[s2] * std::fabs(xv(a + s2, i)) * acb[t * L + s2];
              diag += dk[t * L + s2] * v;
              diagZ += v;
              dx += dth[s2] * std::fabs(xv(a + s2, i));
            }
            for (int64_t n = 0; n < N; ++n) {
              offME += std::fabs(Cv(a + t, n)) * (M[st + n] + E[st + n]);
              offE += std::fabs(Cv(a + t, n)) * E[st + n];
            }
            yb[(a - t0 + t) * DI + h * P + i] = c1 * (diag + pf[t] * offME) + pf[t] * offE +
                                                3 * kU * std::fabs(c.D[h] * xv(a + t, i)) + kTiny * L * (diagZ + offME) +
                                                kTiny130 * L * (1 + dx) + kSub;
          }
          double dx = 0;
          for (int64_t s2 = 0; s2 < L; ++s2) dx += dth[s2] * std::fabs(xv(a + s2, i));
          for (int64_t n = 0; n < N; ++n) {
            double in_mag = 0, in_z = 0;
            for (int64_t s2 = 0; s2 < L; ++s2) {
              const double v = dth[s2] * std::fabs(xv(a + s2, i) * Bv(a + s2, n));
              in_mag += dk[(L - 1) * L + s2] * v;
              in_z += v;
            }
            const double m0 = M[st + n], e0 = E[st + n], pl = pf[L - 1];
            M[st + n] = pl * m0 + in_mag;
            E[st + n] = pl * e0 + (3 * L + 8) * kU * (M[st + n] + pl * e0) + kTiny * L * (m0 + e0 + in_z) + kTiny130 * L * (1 + dx);
          }
        }
        // The values: the recurrence in double (and its bound when chunk = 0).
        for (int64_t t = 0; t < L; ++t) {
          double acc = 0, accb = 0;
          for (int64_t n = 0; n < N; ++n) {
            s[st + n] = dA[t] * s[st + n] + dth[t] * xv(a + t, i) * Bv(a + t, n);
            acc += s[st + n] * Cv(a + t, n);
            if (!chunk) {
              M[st + n] = dA[t] * M[st + n] + std::fabs(dth[t] * xv(a + t, i) * Bv(a + t, n));
              E[st + n] = dA[t] * (1 + 3 * kU) * E[st + n] + 5 * kU * M[st + n] + kTiny140;
              accb += std::fabs(Cv(a + t, n)) * (E[st + n] + (N + 2) * kU * (M[st + n] + E[st + n]));
            }
          }
          y[(a - t0 + t) * DI + h * P + i] = acc + c.D[h] * xv(a + t, i);
          if (!chunk) yb[(a - t0 + t) * DI + h * P + i] = accb + 3 * kU * std::fabs(c.D[h] * xv(a + t, i)) + kTiny140;
        }
      }
    }
  }
}

// Runs the variant over pieces [(rows, chunk)] (chunk 0: ssd_recurrent), against the reference with its bounds.
void test_ssd(int64_t H, int64_t P, int64_t G, int64_t N, const std::vector<std::pair<int64_t, int64_t>>& pieces, int kind,
              Rng& rng) {
  int64_t T = 0;
  for (auto [p, ch] : pieces) T += p;
  const SsdCase c = make_ssd(H, P, G, N, T, rng, kind);
  const int64_t DI = H * P, GN = G * N;
  for (const auto& tb : g_tables) {
    std::vector<double> s(c.s0.begin(), c.s0.end()), M(s.size()), E(s.size(), 0.0), y, yb;
    for (size_t i = 0; i < s.size(); ++i) M[i] = std::fabs(s[i]);
    std::vector<float> state = c.s0;
    int64_t t0 = 0;
    for (auto [rows, chunk] : pieces) {
      ssd_reference(c, t0, t0 + rows, chunk, s, M, E, y, yb);
      std::vector<float> out(rows * DI + 3, -777.0f);
      SsdArgs a{};
      a.x = c.x.data() + t0 * DI;
      a.B = c.B.data() + t0 * GN;
      a.C = c.C.data() + t0 * GN;
      a.dt = c.dt.data() + t0 * H;
      a.dt_bias = c.dt_bias.data();
      a.a_log = c.a_log.data();
      a.d = c.D.data();
      a.state = state.data();
      a.y = out.data();
      a.T = rows;
      a.n_heads = H;
      a.head_dim = P;
      a.n_groups = G;
      a.d_state = N;
      a.ldx = a.ldy = DI;
      a.ldbc = GN;
      a.lddt = H;
      const int64_t mid = H / 2;  // two head ranges, as two threads
      if (chunk == 0) {
        tb.ssd_recurrent(a, 0, mid);
        tb.ssd_recurrent(a, mid, H);
      } else {
        const int64_t nc = (rows + chunk - 1) / chunk;
        std::vector<float> cb(ssd_cb_floats(rows, chunk, G, N)), scratch(2 * ssd_chunked_scratch_floats(chunk, N, P));
        tb.ssd_chunk_cb(a, chunk, cb.data(), 0, G * nc);
        tb.ssd_chunked(a, chunk, cb.data(), scratch.data(), 0, mid);
        tb.ssd_chunked(a, chunk, cb.data(), scratch.data() + ssd_chunked_scratch_floats(chunk, N, P), mid, H);
      }
      const int kindk = chunk == 0 ? 1 : 2;
      check_within(out.data(), y, yb, static_cast<int>(tb.isa), kindk, chunk == 0 ? "ssd_recurrent y" : "ssd_chunked y");
      check_within(state.data(), s, E, static_cast<int>(tb.isa), kindk, chunk == 0 ? "ssd_recurrent state" : "ssd_chunked state");
      for (int64_t i = rows * DI; i < rows * DI + 3; ++i) CHECK(out[i] == -777.0f, "ssd wrote past y");
      if (kind == 2)
        for (int64_t i = 0; i < rows * DI; ++i) CHECK(out[i] == 0.0f, "all-zero input gave %g", out[i]);
      t0 += rows;
    }
  }
}

// ---------------------------------------------------------------------------------------------
// gated RMSNorm

void test_norm(int64_t T, int64_t G, int64_t gs, float z_scale, float eps, Rng& rng) {
  const int64_t D = G * gs;
  const std::vector<float> y = randn(rng, T * D, 3.0f), z = randn(rng, T * D, z_scale), w = randn(rng, D, 1.0f);
  std::vector<double> want(T * D), bound(T * D);
  for (int64_t t = 0; t < T; ++t)
    for (int64_t g = 0; g < G; ++g) {
      const int64_t o = t * D + g * gs;
      double ss = 0;
      for (int64_t i = 0; i < gs; ++i) {
        const double v = y[o + i] * silu(z[o + i]);
        ss += v * v;
      }
      const double s = 1.0 / std::sqrt(ss / static_cast<double>(gs) + eps);
      for (int64_t i = 0; i < gs; ++i) {
        const double v = y[o + i] * silu(z[o + i]) * s * w[g * gs + i];
        want[o + i] = v;
        bound[o + i] = 24 * kU * std::fabs(v) + (1e-36 * std::fabs(static_cast<double>(y[o + i]) * z[o + i]) + kSub) * s *
                                                    std::fabs(w[g * gs + i]) + kSub;
      }
    }
  for (const auto& tb : g_tables) {
    std::vector<float> out(T * D + 4, -777.0f);
    tb.gated_rmsnorm(y.data(), z.data(), w.data(), out.data(), G, gs, eps, 0, T / 2);
    tb.gated_rmsnorm(y.data(), z.data(), w.data(), out.data(), G, gs, eps, T / 2, T);
    check_within(out.data(), want, bound, static_cast<int>(tb.isa), 3, "gated_rmsnorm");
    for (int64_t i = T * D; i < T * D + 4; ++i) CHECK(out[i] == -777.0f, "gated_rmsnorm wrote past the output");
  }
}

}  // namespace

int main() {
  g_tables = all_tables();
  Rng rng(13);

  for (int64_t C : {1, 7, 16, 33, 200})
    for (int64_t K : {1, 2, 4, 5})
      for (float scale : {1.0f, 300.0f}) {
        test_conv(C, K, {1, 2, 9}, scale, rng);
        test_conv(C, K, {20}, scale, rng);
      }

  // (heads, headDim, groups, dState)
  const int64_t shapes[][4] = {{4, 8, 2, 8}, {3, 5, 1, 5}, {6, 1, 3, 3}, {4, 10, 4, 20}, {4, 64, 1, 128}, {2, 37, 2, 17}};
  for (const auto& sh : shapes)
    for (int kind = 0; kind < 3; ++kind) {
      test_ssd(sh[0], sh[1], sh[2], sh[3], {{1, 0}, {9, 0}, {30, 0}}, kind, rng);
      test_ssd(sh[0], sh[1], sh[2], sh[3], {{1, 1}, {9, 4}, {40, 16}, {70, 64}, {3, 0}, {33, 8}}, kind, rng);
    }

  const int64_t norms[][3] = {{1, 1, 1}, {3, 1, 7}, {2, 4, 12}, {2, 1, 3072}, {4, 11, 3}};  // T, groups, group size
  for (const auto& nc : norms)
    for (float zs : {1.0f, 4.0f, 200.0f}) test_norm(nc[0], nc[1], nc[2], zs, 1e-5f, rng);

  // Each SIMD table has its own kernels (a fallback to scalar would leave the variant untested).
  for (const auto& t : g_tables)
    if (t.isa != Isa::scalar)
      CHECK(t.ssd_chunked != g_tables[0].ssd_chunked && t.mamba2_conv != g_tables[0].mamba2_conv,
            "%s mamba2 falls back to the scalar kernels", isa_name(t.isa));

  std::printf("worst error / bound:");
  for (const auto& t : g_tables) {
    const int i = static_cast<int>(t.isa);
    std::printf(" %s[conv %.3f recurrent %.3f chunked %.3f norm %.3f]", isa_name(t.isa), g_worst[i][0], g_worst[i][1],
                g_worst[i][2], g_worst[i][3]);
  }
  std::printf("\nISAs:");
  for (const auto& t : g_tables) std::printf(" %s(%s)", isa_name(t.isa), t.v_mamba2);
  std::printf("\n");
  return finish("test_mamba2");
}
