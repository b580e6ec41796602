// Dense kernels: every f16 variant against a float64 evaluation within the dense.h bound, every q8 /
// q4 variant bit-exact against the contract evaluated on GGUF Q8_0 / Q4_0 blocks, get_rows exact, and
// the Q8R16 / Q4R16 repackers (Q8_0 / Q4_0 round trips, F16/BF16/F32/Q8_0 quantization rules, invalid
// blocks).
#include <algorithm>

#include "runtime/repack_dense.h"
#include "runtime/repack_ternary.h"
#include "test_util.h"

using namespace bitllm_test;

namespace {

// ---------------------------------------------------------------------------------------------
// f16

enum class WFill { normal, zeros, extreme, subnormal, mixed };

uint16_t random_half(Rng& rng, WFill f) {
  switch (f) {
    case WFill::normal: return f32_to_fp16(rng.normal() * 0.05f);
    case WFill::zeros: return static_cast<uint16_t>(rng.range(0, 1) ? 0x8000 : 0);
    case WFill::extreme: return static_cast<uint16_t>(rng.range(0, 1) ? 0x7bff : 0xfbff);  // ±65504
    case WFill::subnormal: return static_cast<uint16_t>(rng.range(1, 0x3ff) | (rng.range(0, 1) << 15));
    case WFill::mixed:
      switch (rng.range(0, 3)) {
        case 0: return static_cast<uint16_t>(rng.range(0, 1) ? 0x7bff : 0xfbff);
        case 1: return static_cast<uint16_t>(rng.range(1, 0x3ff) | (rng.range(0, 1) << 15));
        default: return f32_to_fp16(rng.normal());
      }
  }
  return 0;
}

double g_worst_ratio = 0.0;  // max |err| / bound seen

// y [B, ldy] within the bound of the float64 sums, -777 past M, and (order != null) the same bits as order [B, M].
void check_outputs(const char* what, const KernelTable& t, const std::vector<float>& y, int64_t ldy,
                   const std::vector<double>& exact, const std::vector<double>& bound, const std::vector<float>* order,
                   int64_t M, int64_t K, int64_t B) {
  int bad = 0;
  for (int64_t b = 0; b < B; ++b) {
    for (int64_t m = 0; m < M; ++m) {
      const float got = y[b * ldy + m];
      const double err = std::fabs(static_cast<double>(got) - exact[b * M + m]);
      const double bd = bound[b * M + m];
      if (bd > 0) g_worst_ratio = std::max(g_worst_ratio, err / bd);
      if (!(err <= bd) && bad++ < 3)
        CHECK(false, "%s %s(%s) M=%lld K=%lld B=%lld b=%lld m=%lld got %.9g want %.9g bound %.3g", what, isa_name(t.isa),
              t.v_f16, (long long)M, (long long)K, (long long)B, (long long)b, (long long)m, got, exact[b * M + m], bd);
      if (order && !same_bits(got, (*order)[b * M + m]) && bad++ < 3)
        CHECK(false, "%s %s M=%lld K=%lld b=%lld m=%lld: %.9g is not the contract's sum %.9g", what, isa_name(t.isa),
              (long long)M, (long long)K, (long long)b, (long long)m, got, (*order)[b * M + m]);
    }
    for (int64_t m = M; m < ldy; ++m) CHECK(y[b * ldy + m] == -777.0f, "%s %s wrote past M", what, isa_name(t.isa));
  }
  CHECK(bad == 0, "%s %s: %d outputs wrong", what, isa_name(t.isa), bad);
}

// Batch invariance: gemv1(b, y1) computes token b alone (B = 1, all rows); its bits must equal row b of y.
template <typename F>
void check_invariance(const char* what, const KernelTable& t, const std::vector<float>& y, int64_t ldy, int64_t M,
                      int64_t K, int64_t B, F gemv1) {
  std::vector<float> y1(ldy, -777.0f);
  for (int64_t b = 0; b < B; ++b) {
    gemv1(b, y1.data());
    CHECK(std::memcmp(y1.data(), y.data() + b * ldy, static_cast<size_t>(M) * 4) == 0,
          "%s %s M=%lld K=%lld B=%lld token %lld: batched bits differ from B = 1", what, isa_name(t.isa), (long long)M,
          (long long)K, (long long)B, (long long)b);
  }
}

void run_f16_case(const std::vector<KernelTable>& tables, int64_t M, int64_t K, int64_t B, WFill fill, Rng& rng) {
  const int64_t ldw = K + (rng.range(0, 1) ? 3 : 0), ldx = K + (rng.range(0, 1) ? 5 : 0), ldy = M + 2;
  std::vector<uint16_t> w(M * ldw, 0x7e00);  // NaN in the stride padding: must never be read
  for (int64_t m = 0; m < M; ++m) {
    const bool zero_row = rng.range(0, 9) == 0;
    for (int64_t k = 0; k < K; ++k) w[m * ldw + k] = zero_row ? 0 : random_half(rng, fill);
  }
  std::vector<float> x(B * ldx, std::nanf(""));
  for (int64_t b = 0; b < B; ++b)
    for (int64_t k = 0; k < K; ++k) x[b * ldx + k] = fill == WFill::extreme ? rng.normal() * 1e-3f : rng.normal();
  std::vector<double> exact(B * M), bound(B * M);
  for (int64_t b = 0; b < B; ++b)
    for (int64_t m = 0; m < M; ++m) {
      double s = 0.0, a = 0.0;
      for (int64_t k = 0; k < K; ++k) {
        const double p = static_cast<double>(fp16_to_f32(w[m * ldw + k])) * x[b * ldx + k];
        s += p;
        a += std::fabs(p);
      }
      exact[b * M + m] = s;
      bound[b * M + m] = static_cast<double>(f16_chain_slack(K)) * std::ldexp(1.0, -23) * a + K * std::ldexp(1.0, -149);
    }
  for (const auto& t : tables) {
    std::vector<float> y(B * ldy, -777.0f);
    // Row ranges as threads would get them (uneven, not tile aligned).
    const int64_t c1 = M / 3, c2 = (2 * M) / 3 + (M > 2 ? 1 : 0);
    t.f16_gemm(w.data(), ldw, M, K, x.data(), ldx, B, y.data(), ldy, 0, c1);
    t.f16_gemm(w.data(), ldw, M, K, x.data(), ldx, B, y.data(), ldy, c1, std::min(M, c2));
    t.f16_gemm(w.data(), ldw, M, K, x.data(), ldx, B, y.data(), ldy, std::min(M, c2), M);
    check_outputs("f16", t, y, ldy, exact, bound, nullptr, M, K, B);
    // Batch invariance (DESIGN.md §4): every token's outputs are the bits of a B = 1 call over all rows.
    check_invariance("f16", t, y, ldy, M, K, B, [&](int64_t b, float* y1) {
      t.f16_gemm(w.data(), ldw, M, K, x.data() + b * ldx, ldx, 1, y1, ldy, 0, M);
    });
  }

  // The same weights as F16T32 tiles (the lm_head layout): the same bound, batch invariance, and the scalar
  // variant's summation order exactly (chunks of kF16TChunk from zero, added to the total).
  std::vector<uint16_t> wc(M * K);
  for (int64_t m = 0; m < M; ++m) std::memcpy(&wc[m * K], &w[m * ldw], static_cast<size_t>(K) * 2);
  const int64_t tiles = f16t_tiles(M);
  std::vector<uint16_t> wt(f16t_elems(M, K), 0x7e00);
  CHECK(repack_f16t(wc.data(), M, K, wt.data(), 0, tiles) == 0, "f16t repack counted finite halves");
  for (int64_t m = M; m < tiles * kF16TRows; ++m)
    for (int64_t k = 0; k < K; ++k) CHECK(wt[(m / kF16TRows) * K * kF16TRows + k * kF16TRows + m % kF16TRows] == 0, "f16t pad not zero");
  std::vector<float> order(B * M);
  for (int64_t b = 0; b < B; ++b)
    for (int64_t m = 0; m < M; ++m) {
      float tot = 0.0f;
      for (int64_t k0 = 0; k0 < K; k0 += kF16TChunk) {
        float s = 0.0f;
        for (int64_t k = k0; k < std::min(K, k0 + kF16TChunk); ++k) {
          const float p = fp16_to_f32(wc[m * K + k]) * x[b * ldx + k];
          s = s + p;
        }
        tot = tot + s;
      }
      order[b * M + m] = tot;
    }
  for (const auto& t : tables) {
    std::vector<float> y(B * ldy, -777.0f);
    const int64_t c1 = tiles / 3, c2 = (2 * tiles) / 3 + (tiles > 2 ? 1 : 0);
    t.f16t_gemm(wt.data(), M, K, x.data(), ldx, B, y.data(), ldy, 0, c1);
    t.f16t_gemm(wt.data(), M, K, x.data(), ldx, B, y.data(), ldy, c1, std::min(tiles, c2));
    t.f16t_gemm(wt.data(), M, K, x.data(), ldx, B, y.data(), ldy, std::min(tiles, c2), tiles);
    check_outputs("f16t", t, y, ldy, exact, bound, t.isa == Isa::scalar ? &order : nullptr, M, K, B);
    check_invariance("f16t", t, y, ldy, M, K, B, [&](int64_t b, float* y1) {
      t.f16t_gemm(wt.data(), M, K, x.data() + b * ldx, ldx, 1, y1, ldy, 0, tiles);
    });
  }
}

void test_f16t_rows_and_repack(const std::vector<KernelTable>& tables, Rng& rng) {
  for (int64_t K : {1, 7, 16, 17, 33, 2560}) {
    const int64_t M = 70;
    std::vector<uint16_t> w(M * K);
    for (auto& h : w) h = static_cast<uint16_t>(rng.range(0, 0x7bff) | (rng.range(0, 1) << 15));
    std::vector<uint16_t> wt(f16t_elems(M, K));
    CHECK(repack_f16t(w.data(), M, K, wt.data(), 0, f16t_tiles(M)) == 0, "f16t repack: finite halves counted");
    const std::vector<int32_t> rows = {0, 69, 31, 32, 63, 64, 5, 5};
    const int64_t n = static_cast<int64_t>(rows.size()), ldo = K + 1;
    for (const auto& t : tables) {
      std::vector<float> out(n * ldo, -777.0f);
      t.f16t_get_rows(wt.data(), K, rows.data(), n, out.data(), ldo);
      for (int64_t i = 0; i < n; ++i) {
        int bad = 0;
        for (int64_t k = 0; k < K; ++k)
          if (!same_bits(out[i * ldo + k], fp16_to_f32(w[rows[i] * K + k]))) ++bad;
        CHECK(bad == 0, "f16t_get_rows %s K=%lld row %d: %d values differ", isa_name(t.isa), (long long)K, rows[i], bad);
        CHECK(out[i * ldo + K] == -777.0f, "f16t_get_rows %s wrote past K", isa_name(t.isa));
      }
    }
  }
  std::vector<uint16_t> h(33 * 5, 0x3c00), out(f16t_elems(33, 5));
  h[7] = 0x7c00;    // +Inf
  h[100] = 0xfe00;  // NaN
  CHECK(repack_f16t(h.data(), 33, 5, out.data(), 0, f16t_tiles(33)) == 2, "f16t repack: Inf / NaN not counted");
}

void test_f16_get_rows(const std::vector<KernelTable>& tables, Rng& rng) {
  for (int64_t K : {1, 7, 8, 15, 16, 17, 33, 2560}) {
    const int64_t M = 37;
    std::vector<uint16_t> w(M * K);
    for (auto& h : w) {  // every non-NaN half class
      const int c = static_cast<int>(rng.range(0, 5));
      h = c == 0 ? static_cast<uint16_t>(rng.range(0, 0x7bff) | (rng.range(0, 1) << 15))
          : c == 1 ? static_cast<uint16_t>(rng.range(0, 0x3ff) | (rng.range(0, 1) << 15))
          : c == 2 ? static_cast<uint16_t>(rng.range(0, 1) ? 0x7c00 : 0xfc00)
          : c == 3 ? static_cast<uint16_t>(rng.range(0, 1) ? 0x7bff : 0xfbff)
                   : f32_to_fp16(rng.normal());
    }
    const std::vector<int32_t> rows = {0, 36, 5, 5, 17, 1, 36, 0};
    const int64_t n = static_cast<int64_t>(rows.size()), ldo = K + 1;
    for (const auto& t : tables) {
      std::vector<float> out(n * ldo, -777.0f);
      t.f16_get_rows(w.data(), K, K, rows.data(), n, out.data(), ldo);
      int bad = 0;
      for (int64_t i = 0; i < n; ++i) {
        for (int64_t k = 0; k < K; ++k) {
          const float want = fp16_to_f32(w[rows[i] * K + k]);
          if (!same_bits(out[i * ldo + k], want) && bad++ < 3)
            CHECK(false, "f16_get_rows %s K=%lld row %d k=%lld got %.9g want %.9g", isa_name(t.isa), (long long)K,
                  rows[i], (long long)k, out[i * ldo + k], want);
          CHECK(same_bits(half_to_f32(w[rows[i] * K + k]), want), "half_to_f32 disagrees with fp16_to_f32");
        }
        CHECK(out[i * ldo + K] == -777.0f, "f16_get_rows %s wrote past K", isa_name(t.isa));
      }
    }
  }
}

// ---------------------------------------------------------------------------------------------
// q8

constexpr int64_t kQ8_0 = 34;

enum class QFill { random, zeros, max, min, small_d };

// GGUF Q8_0 bytes [M, K/32, 34].
std::vector<uint8_t> make_q8_0(int64_t M, int64_t K, QFill f, Rng& rng) {
  const int64_t nb = K / 32;
  std::vector<uint8_t> src(M * nb * kQ8_0);
  for (int64_t m = 0; m < M; ++m)
    for (int64_t j = 0; j < nb; ++j) {
      uint8_t* blk = &src[(m * nb + j) * kQ8_0];
      uint16_t d;
      switch (f) {
        case QFill::small_d: d = static_cast<uint16_t>(rng.range(0, 0x3ff)); break;  // zero and subnormal
        default: d = rng.range(0, 15) == 0 ? 0 : f32_to_fp16((0.5f + rng.uniform()) * (rng.range(0, 1) ? 1e-3f : 2.0f));
      }
      if (f == QFill::max) d = 0x7bff;
      std::memcpy(blk, &d, 2);
      for (int i = 0; i < 32; ++i) {
        int v;
        switch (f) {
          case QFill::zeros: v = 0; break;
          case QFill::max: v = i % 2 ? 127 : -128; break;
          case QFill::min: v = -128; break;
          default: v = static_cast<int>(rng.range(-128, 127));
        }
        blk[2 + i] = static_cast<uint8_t>(static_cast<int8_t>(v));
      }
    }
  return src;
}

void run_q8_case(const std::vector<KernelTable>& tables, int64_t M, int64_t K, int64_t B, QFill wf, int act,
                 Rng& rng) {
  const int64_t nb = K / 32, tiles = q8_tiles(M);
  const std::vector<uint8_t> src = make_q8_0(M, K, wf, rng);
  // Repack into an odd byte offset: kernels must not assume alignment.
  std::vector<uint8_t> buf(q8_bytes(M, K) + 1, 0xcd);
  uint8_t* data = buf.data() + 1;
  const int64_t half = tiles / 2;
  CHECK(repack_q8_from_q8_0(src.data(), M, K, data, 0, half) + repack_q8_from_q8_0(src.data(), M, K, data, half, tiles) == 0,
        "repack_q8_from_q8_0 reported invalid blocks");
  std::vector<uint8_t> back(src.size());
  unpack_q8_to_q8_0(data, M, K, back.data());
  CHECK(back == src, "Q8_0 -> Q8R16 -> Q8_0 round trip M=%lld K=%lld", (long long)M, (long long)K);
  for (int64_t t = 0; t < tiles; ++t)  // padding rows are zero
    for (int64_t r = M - t * 16; r < 16; ++r)
      for (int64_t j = 0; j < nb; ++j) {
        const uint8_t* tile = data + t * q8_tile_bytes(K);
        bool zero = tile[j * 544 + 512 + 2 * r] == 0 && tile[j * 544 + 512 + 2 * r + 1] == 0;
        for (int g = 0; g < 8; ++g)
          for (int i = 0; i < 4; ++i) zero = zero && tile[j * 544 + g * 64 + 4 * r + i] == 0;
        CHECK(zero, "padding row %lld not zero", (long long)(t * 16 + r));
      }

  std::vector<int8_t> q(B * K);
  for (int64_t i = 0; i < B * K; ++i) {
    switch (act) {
      case 0: q[i] = static_cast<int8_t>(rng.range(-128, 127)); break;
      case 1: q[i] = 127; break;
      case 2: q[i] = -128; break;
      case 3: q[i] = (i & 1) ? 127 : -128; break;
      case 4: q[i] = 0; break;
      default: q[i] = static_cast<int8_t>(rng.range(-127, 127)); break;  // no -128 (AVX2 fast path)
    }
  }
  if (act == 5 && B > 2) q[(B / 2) * K + K - 1] = -128;  // one token takes the AVX2 exact path
  std::vector<float> ascale(B);
  std::vector<int32_t> sum(B, 0);
  for (int64_t b = 0; b < B; ++b) {
    ascale[b] = 0.5f + rng.uniform() * 100.0f;
    for (int64_t k = 0; k < K; ++k) sum[b] += q[b * K + k];
  }
  const QActs a{q.data(), ascale.data(), sum.data(), nullptr, B, K, K};
  const Q8Mat w{data, M, K};

  // The contract, straight from the Q8_0 blocks.
  std::vector<float> expect(B * M);
  for (int64_t b = 0; b < B; ++b)
    for (int64_t m = 0; m < M; ++m) {
      float acc = 0.0f;
      for (int64_t j = 0; j < nb; ++j) {
        const uint8_t* blk = &src[(m * nb + j) * kQ8_0];
        int32_t dot = 0;
        for (int i = 0; i < 32; ++i) dot += static_cast<int8_t>(blk[2 + i]) * q[b * K + j * 32 + i];
        uint16_t d;
        std::memcpy(&d, blk, 2);
        acc = acc + static_cast<float>(dot) * fp16_to_f32(d);
      }
      expect[b * M + m] = acc / ascale[b];
    }

  for (const auto& t : tables) {
    const int64_t ldy = M + 3;
    std::vector<float> y(B * ldy, -777.0f);
    const int64_t split = tiles / 2;
    t.q8_gemm(w, a, y.data(), ldy, 0, split);
    t.q8_gemm(w, a, y.data(), ldy, split, tiles);
    int bad = 0;
    for (int64_t b = 0; b < B; ++b) {
      for (int64_t m = 0; m < M; ++m)
        if (!same_bits(y[b * ldy + m], expect[b * M + m]) && bad++ < 3)
          CHECK(false, "q8 %s(%s) M=%lld K=%lld B=%lld act=%d b=%lld m=%lld got %.9g want %.9g", isa_name(t.isa),
                t.v_q8, (long long)M, (long long)K, (long long)B, act, (long long)b, (long long)m, y[b * ldy + m],
                expect[b * M + m]);
      for (int64_t m = M; m < ldy; ++m) CHECK(y[b * ldy + m] == -777.0f, "q8 %s wrote past M", isa_name(t.isa));
    }
    CHECK(bad == 0, "q8 %s mismatches", isa_name(t.isa));

    // get_rows: every row of the first and last tile plus a few, dequantized exactly.
    std::vector<int32_t> rows;
    for (int64_t m = 0; m < M; ++m)
      if (m < 17 || m >= M - 17 || m % 7 == 0) rows.push_back(static_cast<int32_t>(m));
    const int64_t n = static_cast<int64_t>(rows.size()), ldo = K + 1;
    std::vector<float> out(n * ldo, -777.0f);
    t.q8_get_rows(w, rows.data(), n, out.data(), ldo);
    int gbad = 0;
    for (int64_t i = 0; i < n; ++i) {
      for (int64_t k = 0; k < K; ++k) {
        const uint8_t* blk = &src[(rows[i] * nb + k / 32) * kQ8_0];
        uint16_t d;
        std::memcpy(&d, blk, 2);
        const float want = fp16_to_f32(d) * static_cast<float>(static_cast<int8_t>(blk[2 + k % 32]));
        if (!same_bits(out[i * ldo + k], want) && gbad++ < 3)
          CHECK(false, "q8_get_rows %s row %d k=%lld got %.9g want %.9g", isa_name(t.isa), rows[i], (long long)k,
                out[i * ldo + k], want);
      }
      CHECK(out[i * ldo + K] == -777.0f, "q8_get_rows %s wrote past K", isa_name(t.isa));
    }
  }
}

// F16 / F32 -> Q8R16 quantization: the documented rule, evaluated independently.
void test_quantize(Rng& rng) {
  for (int64_t M : {1, 16, 19}) {
    const int64_t K = 96, nb = K / 32;
    std::vector<uint16_t> h(M * K);
    for (int64_t m = 0; m < M; ++m)
      for (int64_t k = 0; k < K; ++k) {
        const int64_t j = k / 32;
        float v = rng.normal() * (j == 0 ? 0.02f : j == 1 ? 1e-5f : 300.0f);  // normal, subnormal-d, large
        if (m == 0 && j == 1) v = 0.0f;  // an all-zero block
        h[m * K + k] = f32_to_fp16(v);
      }
    std::vector<float> f(M * K);
    for (int64_t i = 0; i < M * K; ++i) f[i] = fp16_to_f32(h[i]);
    std::vector<uint8_t> a(q8_bytes(M, K)), b(q8_bytes(M, K));
    CHECK(repack_q8_from_f16(h.data(), K, M, K, a.data(), 0, q8_tiles(M)) == 0, "f16 repack invalid");
    CHECK(repack_q8_from_f32(f.data(), K, M, K, b.data(), 0, q8_tiles(M)) == 0, "f32 repack invalid");
    CHECK(a == b, "F16 and F32 of the same values quantize differently");
    std::vector<uint8_t> q80(M * nb * kQ8_0);
    unpack_q8_to_q8_0(a.data(), M, K, q80.data());
    for (int64_t m = 0; m < M; ++m)
      for (int64_t j = 0; j < nb; ++j) {
        float amax = 0.0f;
        for (int i = 0; i < 32; ++i) amax = std::max(amax, std::fabs(f[m * K + j * 32 + i]));
        const uint16_t dh = f32_to_fp16(amax / 127.0f);
        const uint8_t* blk = &q80[(m * nb + j) * kQ8_0];
        uint16_t got;
        std::memcpy(&got, blk, 2);
        CHECK(got == dh, "quantize d m=%lld j=%lld got %04x want %04x", (long long)m, (long long)j, got, dh);
        const float d = fp16_to_f32(dh);
        for (int i = 0; i < 32; ++i) {
          const float x = f[m * K + j * 32 + i];
          const int c = static_cast<int8_t>(blk[2 + i]);
          const int want = d == 0.0f ? 0 : static_cast<int>(std::clamp(std::nearbyint(x / d), -127.0f, 127.0f));
          CHECK(c == want, "quantize code m=%lld k=%lld got %d want %d", (long long)m, (long long)(j * 32 + i), c, want);
          if (d > 0.0f && std::fabs(x / d) <= 127.0f)
            CHECK(std::fabs(x - d * c) <= d * 0.5f, "quantization error above d/2");
        }
      }
  }
  // Every finite half (62 rows x 1024): the F16 path converts exactly like fp16_to_f32.
  {
    const int64_t M = 62, K = 1024;
    std::vector<uint16_t> h;
    for (uint32_t v = 0; v < 0x10000; ++v)
      if ((v & 0x7c00) != 0x7c00) h.push_back(static_cast<uint16_t>(v));
    CHECK(static_cast<int64_t>(h.size()) == M * K, "finite half count");
    for (size_t i = h.size() - 1; i > 0; --i) std::swap(h[i], h[static_cast<size_t>(rng.range(0, static_cast<int64_t>(i)))]);
    std::vector<float> f(h.size());
    for (size_t i = 0; i < h.size(); ++i) f[i] = fp16_to_f32(h[i]);
    std::vector<uint8_t> a(q8_bytes(M, K)), b(q8_bytes(M, K));
    CHECK(repack_q8_from_f16(h.data(), K, M, K, a.data(), 0, q8_tiles(M)) == 0, "all halves: f16 invalid");
    CHECK(repack_q8_from_f32(f.data(), K, M, K, b.data(), 0, q8_tiles(M)) == 0, "all halves: f32 invalid");
    CHECK(a == b, "all finite halves: F16 and F32 repacks differ");
  }
  // Non-finite inputs and fp16 overflow of the scale are counted and stored as zero blocks.
  std::vector<float> f(2 * 64, 1.0f);
  f[3] = INFINITY;
  f[64 + 40] = 1e9f;  // amax / 127 > 65504
  std::vector<uint8_t> out(q8_bytes(2, 64));
  CHECK(repack_q8_from_f32(f.data(), 64, 2, 64, out.data(), 0, 1) == 2, "f32 invalid blocks not counted");
  std::vector<uint16_t> h(64, 0x3c00);
  h[63] = 0x7e00;
  CHECK(repack_q8_from_f16(h.data(), 64, 1, 64, out.data(), 0, 1) == 1, "f16 NaN block not counted");
  std::vector<uint8_t> src(2 * kQ8_0, 0);
  const uint16_t inf = 0x7c00;
  std::memcpy(&src[kQ8_0], &inf, 2);
  CHECK(repack_q8_from_q8_0(src.data(), 1, 64, out.data(), 0, 1) == 1, "Q8_0 Inf scale not counted");
}

// ---------------------------------------------------------------------------------------------
// q4

constexpr int64_t kQ4_0 = 18;

enum class Q4Fill { random, zeros, max, min, small_d, neg_d };

// GGUF Q4_0 bytes [M, K/32, 18]: fp16 d, qs[16] (low nibble k i, high nibble k i + 16).
std::vector<uint8_t> make_q4_0(int64_t M, int64_t K, Q4Fill f, Rng& rng) {
  const int64_t nb = K / 32;
  std::vector<uint8_t> src(M * nb * kQ4_0);
  for (int64_t m = 0; m < M; ++m) {
    const bool zero_row = f == Q4Fill::random && rng.range(0, 7) == 0;
    for (int64_t j = 0; j < nb; ++j) {
      uint8_t* blk = &src[(m * nb + j) * kQ4_0];
      uint16_t d;
      switch (f) {
        case Q4Fill::small_d: d = static_cast<uint16_t>(rng.range(0, 0x3ff) | (rng.range(0, 1) << 15)); break;
        case Q4Fill::max: d = rng.range(0, 1) ? 0x7bff : 0xfbff; break;  // ±65504
        case Q4Fill::min: d = 0x7bff; break;
        case Q4Fill::neg_d: d = f32_to_fp16(-(0.5f + rng.uniform()) * 1e-2f); break;
        default: d = rng.range(0, 15) == 0 ? 0 : f32_to_fp16((rng.uniform() - 0.5f) * (rng.range(0, 1) ? 1e-3f : 4.0f));
      }
      if (zero_row) d = 0;
      std::memcpy(blk, &d, 2);
      for (int i = 0; i < 16; ++i) {
        int lo, hi;
        switch (f) {
          case Q4Fill::zeros: lo = hi = 8; break;
          case Q4Fill::max: lo = i % 2 ? 15 : 0, hi = i % 3 ? 0 : 15; break;
          case Q4Fill::min: lo = hi = 0; break;  // code -8 everywhere
          default: lo = static_cast<int>(rng.range(0, 15)), hi = static_cast<int>(rng.range(0, 15));
        }
        blk[2 + i] = static_cast<uint8_t>(lo | (hi << 4));
      }
    }
  }
  return src;
}

inline int q4_0_code(const uint8_t* blk, int k) {  // signed code of element k of a Q4_0 block
  const uint8_t b = blk[2 + (k & 15)];
  return (k < 16 ? (b & 15) : (b >> 4)) - 8;
}

void run_q4_case(const std::vector<KernelTable>& tables, int64_t M, int64_t K, int64_t B, Q4Fill wf, int act,
                 Rng& rng) {
  const int64_t nb = K / 32, tiles = q4_tiles(M);
  const std::vector<uint8_t> src = make_q4_0(M, K, wf, rng);
  std::vector<uint8_t> buf(q4_bytes(M, K) + 1, 0xcd);  // odd byte offset: no alignment assumed
  uint8_t* data = buf.data() + 1;
  const int64_t half = tiles / 2;
  CHECK(repack_q4_from_q4_0(src.data(), M, K, data, 0, half) + repack_q4_from_q4_0(src.data(), M, K, data, half, tiles) == 0,
        "repack_q4_from_q4_0 reported invalid blocks");
  std::vector<uint8_t> back(src.size());
  unpack_q4_to_q4_0(data, M, K, back.data());
  CHECK(back == src, "Q4_0 -> Q4R16 -> Q4_0 round trip M=%lld K=%lld", (long long)M, (long long)K);
  for (int64_t t = 0; t < tiles; ++t)  // padding rows: u = 8, d = 0
    for (int64_t r = M - t * 16; r < 16; ++r)
      for (int64_t j = 0; j < nb; ++j) {
        const uint8_t* rec = data + t * q4_tile_bytes(K) + j * 288;
        bool zero = rec[256 + 2 * r] == 0 && rec[256 + 2 * r + 1] == 0;
        for (int c = 0; c < 4; ++c)
          for (int i = 0; i < 4; ++i) zero = zero && rec[c * 64 + 4 * r + i] == 0x88;
        CHECK(zero, "q4 padding row %lld not zero", (long long)(t * 16 + r));
      }

  std::vector<int8_t> q(B * K);
  for (int64_t i = 0; i < B * K; ++i) {
    switch (act) {
      case 0: q[i] = static_cast<int8_t>(rng.range(-128, 127)); break;
      case 1: q[i] = 127; break;
      case 2: q[i] = -128; break;
      case 3: q[i] = (i & 1) ? 127 : -128; break;
      case 4: q[i] = 0; break;
      default: q[i] = static_cast<int8_t>(rng.range(-127, 127)); break;
    }
  }
  std::vector<float> ascale(B);
  for (int64_t b = 0; b < B; ++b) ascale[b] = act == 4 ? 1.0f : 0.5f + rng.uniform() * 100.0f;
  std::vector<int32_t> bsum32(B * nb);
  q4_act_block_sums(q.data(), K, B, K, bsum32.data());
  const QActs a{q.data(), ascale.data(), nullptr, nullptr, B, K, K};
  const Q4Mat w{data, M, K};

  // The contract, straight from the Q4_0 blocks.
  std::vector<float> expect(B * M);
  for (int64_t b = 0; b < B; ++b)
    for (int64_t m = 0; m < M; ++m) {
      float acc = 0.0f;
      for (int64_t j = 0; j < nb; ++j) {
        const uint8_t* blk = &src[(m * nb + j) * kQ4_0];
        int32_t dot = 0;
        for (int i = 0; i < 32; ++i) dot += q4_0_code(blk, i) * q[b * K + j * 32 + i];
        uint16_t d;
        std::memcpy(&d, blk, 2);
        acc = acc + static_cast<float>(dot) * fp16_to_f32(d);
      }
      expect[b * M + m] = acc / ascale[b];
    }

  for (const auto& t : tables) {
    const int64_t ldy = M + 3;
    std::vector<float> y(B * ldy, -777.0f);
    const int64_t split = tiles / 2;
    t.q4_gemm(w, a, bsum32.data(), y.data(), ldy, 0, split);
    t.q4_gemm(w, a, bsum32.data(), y.data(), ldy, split, tiles);
    int bad = 0;
    for (int64_t b = 0; b < B; ++b) {
      for (int64_t m = 0; m < M; ++m)
        if (!same_bits(y[b * ldy + m], expect[b * M + m]) && bad++ < 3)
          CHECK(false, "q4 %s(%s) M=%lld K=%lld B=%lld act=%d b=%lld m=%lld got %.9g want %.9g", isa_name(t.isa),
                t.v_q4, (long long)M, (long long)K, (long long)B, act, (long long)b, (long long)m, y[b * ldy + m],
                expect[b * M + m]);
      for (int64_t m = M; m < ldy; ++m) CHECK(y[b * ldy + m] == -777.0f, "q4 %s wrote past M", isa_name(t.isa));
    }
    CHECK(bad == 0, "q4 %s mismatches", isa_name(t.isa));

    std::vector<int32_t> rows;
    for (int64_t m = 0; m < M; ++m)
      if (m < 17 || m >= M - 17 || m % 7 == 0) rows.push_back(static_cast<int32_t>(m));
    const int64_t n = static_cast<int64_t>(rows.size()), ldo = K + 1;
    std::vector<float> out(n * ldo, -777.0f);
    t.q4_get_rows(w, rows.data(), n, out.data(), ldo);
    int gbad = 0;
    for (int64_t i = 0; i < n; ++i) {
      for (int64_t k = 0; k < K; ++k) {
        const uint8_t* blk = &src[(rows[i] * nb + k / 32) * kQ4_0];
        uint16_t d;
        std::memcpy(&d, blk, 2);
        const float want = fp16_to_f32(d) * static_cast<float>(q4_0_code(blk, static_cast<int>(k % 32)));
        if (!same_bits(out[i * ldo + k], want) && gbad++ < 3)
          CHECK(false, "q4_get_rows %s row %d k=%lld got %.9g want %.9g", isa_name(t.isa), rows[i], (long long)k,
                out[i * ldo + k], want);
      }
      CHECK(out[i * ldo + K] == -777.0f, "q4_get_rows %s wrote past K", isa_name(t.isa));
    }
  }
}

// F16 / BF16 / F32 / Q8_0 -> Q4R16 quantization: the documented rule, evaluated independently.
void check_q4_rule(const std::vector<float>& f, int64_t M, int64_t K, const std::vector<uint8_t>& data,
                   const char* what) {
  const int64_t nb = K / 32;
  std::vector<uint8_t> q40(M * nb * kQ4_0);
  unpack_q4_to_q4_0(data.data(), M, K, q40.data());
  for (int64_t m = 0; m < M; ++m)
    for (int64_t j = 0; j < nb; ++j) {
      const float* x = &f[m * K + j * 32];
      float mx = 0.0f;
      for (int i = 0; i < 32; ++i)
        if (std::fabs(x[i]) > std::fabs(mx)) mx = x[i];
      uint16_t dh = f32_to_fp16(mx / -8.0f);
      const float d = fp16_to_f32(dh);
      if (d == 0.0f) dh = 0;
      const uint8_t* blk = &q40[(m * nb + j) * kQ4_0];
      uint16_t got;
      std::memcpy(&got, blk, 2);
      CHECK(got == dh, "%s: q4 d m=%lld j=%lld got %04x want %04x", what, (long long)m, (long long)j, got, dh);
      for (int i = 0; i < 32; ++i) {
        const int c = q4_0_code(blk, i);
        const int want = d == 0.0f ? 0 : static_cast<int>(std::clamp(std::nearbyint(x[i] / d), -8.0f, 7.0f));
        CHECK(c == want, "%s: q4 code m=%lld k=%lld got %d want %d", what, (long long)m, (long long)(j * 32 + i), c, want);
        if (d != 0.0f && x[i] / d <= 7.5f && x[i] / d >= -8.5f)
          CHECK(std::fabs(x[i] - d * c) <= std::fabs(d) * 0.5f, "%s: q4 error above |d|/2", what);
        if (d != 0.0f && x[i] == mx && std::fabs(x[i] / d + 8.0f) < 0.5f)
          CHECK(c == -8, "%s: the block extreme is not code -8", what);
      }
    }
}

void test_quantize_q4(Rng& rng) {
  for (int64_t M : {1, 16, 19}) {
    const int64_t K = 128, nb = K / 32;
    std::vector<uint16_t> h(M * K);
    for (int64_t m = 0; m < M; ++m)
      for (int64_t k = 0; k < K; ++k) {
        const int64_t j = k / 32;
        float v = rng.normal() * (j == 0 ? 0.02f : j == 1 ? 1e-5f : j == 2 ? 300.0f : 1e-7f);
        if (m == 0 && j == 1) v = 0.0f;  // an all-zero block
        if (m == 1 && j == 0) v = (k % 2 ? 1.0f : -1.0f);  // ties between +max and -max
        h[m * K + k] = f32_to_fp16(v);
      }
    std::vector<float> f(M * K);
    for (int64_t i = 0; i < M * K; ++i) f[i] = fp16_to_f32(h[i]);
    std::vector<uint16_t> bf(M * K);  // the same values as bfloat16 where exact, else their bf16 rounding
    std::vector<float> fb(M * K);
    for (int64_t i = 0; i < M * K; ++i) {
      uint32_t bits;
      std::memcpy(&bits, &f[i], 4);
      bf[i] = static_cast<uint16_t>(bits >> 16);
      const uint32_t back = static_cast<uint32_t>(bf[i]) << 16;
      std::memcpy(&fb[i], &back, 4);
    }
    std::vector<uint8_t> a(q4_bytes(M, K)), b(q4_bytes(M, K)), c(q4_bytes(M, K)), e(q4_bytes(M, K));
    CHECK(repack_q4_from_f16(h.data(), K, M, K, a.data(), 0, q4_tiles(M)) == 0, "q4 f16 repack invalid");
    CHECK(repack_q4_from_f32(f.data(), K, M, K, b.data(), 0, q4_tiles(M)) == 0, "q4 f32 repack invalid");
    CHECK(a == b, "F16 and F32 of the same values quantize differently (q4)");
    check_q4_rule(f, M, K, a, "f16");
    CHECK(repack_q4_from_bf16(bf.data(), K, M, K, c.data(), 0, q4_tiles(M)) == 0, "q4 bf16 repack invalid");
    CHECK(repack_q4_from_f32(fb.data(), K, M, K, e.data(), 0, q4_tiles(M)) == 0, "q4 f32 (bf16 values) invalid");
    CHECK(c == e, "BF16 and F32 of the same values quantize differently (q4)");
    check_q4_rule(fb, M, K, c, "bf16");
    // Q8_0 -> Q4: requantizes the exact dequantized values.
    const std::vector<uint8_t> q80 = make_q8_0(M, K, QFill::random, rng);
    std::vector<float> fq(M * K);
    for (int64_t m = 0; m < M; ++m)
      for (int64_t j = 0; j < nb; ++j) {
        const uint8_t* blk = &q80[(m * nb + j) * kQ8_0];
        uint16_t d;
        std::memcpy(&d, blk, 2);
        for (int i = 0; i < 32; ++i) fq[m * K + j * 32 + i] = fp16_to_f32(d) * static_cast<float>(static_cast<int8_t>(blk[2 + i]));
      }
    std::vector<uint8_t> g(q4_bytes(M, K)), g2(q4_bytes(M, K));
    CHECK(repack_q4_from_q8_0(q80.data(), M, K, g.data(), 0, q4_tiles(M)) == 0, "q4 from q8_0 invalid");
    CHECK(repack_q4_from_f32(fq.data(), K, M, K, g2.data(), 0, q4_tiles(M)) == 0, "q4 from dequantized q8_0 invalid");
    CHECK(g == g2, "Q8_0 -> Q4 differs from the F32 repack of its values");
    check_q4_rule(fq, M, K, g, "q8_0");
  }
  // Every finite half: F16 converts exactly like fp16_to_f32 (the quantized bytes agree with F32).
  {
    const int64_t M = 62, K = 1024;
    std::vector<uint16_t> h;
    for (uint32_t v = 0; v < 0x10000; ++v)
      if ((v & 0x7c00) != 0x7c00) h.push_back(static_cast<uint16_t>(v));
    for (size_t i = h.size() - 1; i > 0; --i) std::swap(h[i], h[static_cast<size_t>(rng.range(0, static_cast<int64_t>(i)))]);
    std::vector<float> f(h.size());
    for (size_t i = 0; i < h.size(); ++i) f[i] = fp16_to_f32(h[i]);
    std::vector<uint8_t> a(q4_bytes(M, K)), b(q4_bytes(M, K));
    CHECK(repack_q4_from_f16(h.data(), K, M, K, a.data(), 0, q4_tiles(M)) == 0, "all halves: q4 f16 invalid");
    CHECK(repack_q4_from_f32(f.data(), K, M, K, b.data(), 0, q4_tiles(M)) == 0, "all halves: q4 f32 invalid");
    CHECK(a == b, "all finite halves: F16 and F32 q4 repacks differ");
    check_q4_rule(f, M, K, a, "all halves");
  }
  // Non-finite inputs, fp16 overflow of the scale and non-finite Q4_0 / Q8_0 scales are counted and
  // stored as zero blocks.
  std::vector<float> f(2 * 64, 1.0f);
  f[3] = INFINITY;
  f[64 + 40] = 1e9f;  // 1e9 / 8 > 65504
  std::vector<uint8_t> out(q4_bytes(2, 64));
  CHECK(repack_q4_from_f32(f.data(), 64, 2, 64, out.data(), 0, 1) == 2, "q4 f32 invalid blocks not counted");
  std::vector<uint8_t> z(2 * 2 * kQ4_0);
  unpack_q4_to_q4_0(out.data(), 2, 64, z.data());
  for (int64_t blk : {0, 3}) {
    bool zero = z[blk * kQ4_0] == 0 && z[blk * kQ4_0 + 1] == 0;
    for (int i = 0; i < 16; ++i) zero = zero && z[blk * kQ4_0 + 2 + i] == 0x88;
    CHECK(zero, "invalid q4 block %lld not stored as zeros", (long long)blk);
  }
  std::vector<uint16_t> h(64, 0x3c00);
  h[63] = 0x7e00;
  CHECK(repack_q4_from_f16(h.data(), 64, 1, 64, out.data(), 0, 1) == 1, "q4 f16 NaN block not counted");
  std::vector<uint16_t> bh(64, 0x3f80);
  bh[5] = 0xff80;  // bf16 -Inf
  CHECK(repack_q4_from_bf16(bh.data(), 64, 1, 64, out.data(), 0, 1) == 1, "q4 bf16 Inf block not counted");
  std::vector<uint8_t> s4(2 * kQ4_0, 0);
  const uint16_t inf = 0x7c00;
  std::memcpy(&s4[kQ4_0], &inf, 2);
  CHECK(repack_q4_from_q4_0(s4.data(), 1, 64, out.data(), 0, 1) == 1, "Q4_0 Inf scale not counted");
  std::vector<uint8_t> s8(2 * kQ8_0, 0);
  std::memcpy(&s8[kQ8_0], &inf, 2);
  const uint16_t big = 0x7bff;  // 65504 * 127 / 8 overflows the fp16 scale
  std::memcpy(&s8[0], &big, 2);
  s8[2] = 127;
  CHECK(repack_q4_from_q8_0(s8.data(), 1, 64, out.data(), 0, 1) == 2, "Q8_0 -> Q4 invalid blocks not counted");
}

}  // namespace

int main() {
  const auto tables = all_tables();
  Rng rng(7);

  // f16: shapes of the brief plus odd K (tails of every vector width).
  const int64_t Ms[] = {1, 15, 17, 33, 100};
  const int64_t Ks[] = {1, 7, 17, 32, 96, 250, 2560};
  const int64_t Bs[] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 64};
  for (int64_t M : Ms)
    for (int64_t K : Ks) run_f16_case(tables, M, K, Bs[rng.range(0, 13)], WFill::normal, rng);
  for (int64_t B : Bs) run_f16_case(tables, 17, 96, B, WFill::normal, rng);
  for (WFill f : {WFill::zeros, WFill::extreme, WFill::subnormal, WFill::mixed}) {
    run_f16_case(tables, 33, 2560, 1, f, rng);
    run_f16_case(tables, 15, 250, 13, f, rng);
  }
  run_f16_case(tables, 100, 2560, 64, WFill::normal, rng);
  test_f16_get_rows(tables, rng);
  test_f16t_rows_and_repack(tables, rng);

  // q8
  for (int64_t M : Ms)
    for (int64_t K : {32, 96, 2560}) run_q8_case(tables, M, K, Bs[rng.range(0, 13)], QFill::random, 0, rng);
  for (int64_t B : Bs) run_q8_case(tables, 17, 96, B, QFill::random, static_cast<int>(rng.range(0, 5)), rng);
  for (QFill f : {QFill::zeros, QFill::max, QFill::min, QFill::small_d})
    for (int act = 0; act <= 5; ++act) run_q8_case(tables, 33, 2560, act == 5 ? 7 : 3, f, act, rng);
  run_q8_case(tables, 100, 2560, 64, QFill::random, 5, rng);
  run_q8_case(tables, 40, 8192, 9, QFill::max, 3, rng);
  test_quantize(rng);

  // q4
  for (int64_t M : Ms)
    for (int64_t K : {32, 96, 2560}) run_q4_case(tables, M, K, Bs[rng.range(0, 13)], Q4Fill::random, 0, rng);
  for (int64_t B : Bs) run_q4_case(tables, 17, 96, B, Q4Fill::random, static_cast<int>(rng.range(0, 5)), rng);
  for (Q4Fill f : {Q4Fill::zeros, Q4Fill::max, Q4Fill::min, Q4Fill::small_d, Q4Fill::neg_d})
    for (int act = 0; act <= 5; ++act) run_q4_case(tables, 33, 2560, act == 5 ? 7 : 3, f, act, rng);
  run_q4_case(tables, 100, 2560, 64, Q4Fill::random, 0, rng);
  run_q4_case(tables, 40, 8192, 9, Q4Fill::max, 3, rng);
  run_q4_case(tables, 40, 8192, 2, Q4Fill::min, 2, rng);
  test_quantize_q4(rng);

  std::printf("ISAs:");
  for (const auto& t : tables) std::printf(" %s(f16 %s, q8 %s, q4 %s)", isa_name(t.isa), t.v_f16, t.v_q8, t.v_q4);
  std::printf("\nf16: worst |err| / bound = %.3g\n", g_worst_ratio);
  return finish("test_dense");
}
