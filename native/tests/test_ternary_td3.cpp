// TD3 ternary GEMM: every ISA variant (and on x86 both AVX-512 kernels, with and without VBMI) vs the
// scalar TD3 kernel vs the scalar T2R16 multiply-add ternary_gemm (the result contract) vs a direct
// evaluation on trits, bit for bit. Also: pack/unpack round trips, layout sizes, the decode table.
#include <algorithm>
#include <cstddef>

#include "runtime/repack_td3.h"
#include "runtime/repack_ternary.h"
#include "test_util.h"

using namespace bitllm_test;

namespace {

enum class Fill { random, zeros, plus, minus, sparse };

struct Case {
  int64_t M, K, B;
  int32_t mode;
  Fill weights;
  int act;  // 0 random, 1 +127, 2 -128, 3 alternating extremes, 4 zeros, 5 ±127/-128 random signs
};

const char* fill_name(Fill f) {
  switch (f) {
    case Fill::random: return "random";
    case Fill::zeros: return "zeros";
    case Fill::plus: return "plus";
    case Fill::minus: return "minus";
    case Fill::sparse: return "sparse";
  }
  return "?";
}

struct Kernel {
  std::string name;
  ternary_td3_gemm_fn fn;
  ternary_td3_to_t2_fn to_t2;
};

// Every TD3 kernel this CPU can run: one per ISA table, plus both AVX-512 variants (with and without VBMI).
std::vector<Kernel> all_kernels(const std::vector<KernelTable>& tables) {
  std::vector<Kernel> out;
  for (const auto& t : tables) {
    if (!t.ternary_td3_gemm) continue;
    out.push_back({std::string(isa_name(t.isa)) + "(" + t.v_ternary_td3 + ")", t.ternary_td3_gemm, t.ternary_td3_to_t2});
#if defined(__x86_64__) || defined(_M_X64)
    if (t.isa == Isa::avx512) {
      const Td3Avx512Kernels bw = ternary_td3_avx512_kernels(false), vbmi = ternary_td3_avx512_kernels(true);
      out.push_back({"avx512(bw kernels)", bw.gemm, bw.to_t2});
      if (vbmi.gemm) out.push_back({"avx512(vbmi kernels)", vbmi.gemm, vbmi.to_t2});
    }
#endif
  }
  return out;
}

// Y from a kernel called over a split tile range, as the pool does.
std::vector<float> run_td3(ternary_td3_gemm_fn fn, const TernaryTd3Mat& w, const QActs& a, int64_t ldy) {
  std::vector<float> y(static_cast<size_t>(a.B * ldy), -777.0f);
  const int64_t tiles = td3_tiles(w.M), split = tiles / 2;
  fn(w, a, y.data(), ldy, 0, split);
  fn(w, a, y.data(), ldy, split, tiles);
  return y;
}

void run_case(const std::vector<KernelTable>& tables, const std::vector<Kernel>& kernels, const Case& c, Rng& rng) {
  const int64_t M = c.M, K = c.K, B = c.B, nb = K / kScaleBlockK;
  std::vector<int8_t> trits(M * K);  // [M, K]
  for (auto& v : trits) {
    switch (c.weights) {
      case Fill::random: v = static_cast<int8_t>(rng.range(-1, 1)); break;
      case Fill::zeros: v = 0; break;
      case Fill::plus: v = 1; break;
      case Fill::minus: v = -1; break;
      case Fill::sparse: v = rng.range(0, 9) == 0 ? static_cast<int8_t>(rng.range(0, 1) * 2 - 1) : 0; break;
    }
  }
  // All-zero rows inside otherwise random weights.
  if (c.weights == Fill::random && M > 2) std::fill(trits.begin() + (M / 2) * K, trits.begin() + (M / 2 + 1) * K, 0);

  const int64_t t2tiles = t2_tiles(M);
  std::vector<uint8_t> codes(static_cast<size_t>(t2_code_bytes(M, K)));
  pack_t2_from_trits(trits.data(), K, M, K, codes.data(), 0, t2tiles);
  std::vector<uint8_t> td(static_cast<size_t>(td3_weight_bytes(M, K)), 0xA5);
  // Packed in two tile ranges (as the binding's threads do).
  const int64_t tiles = td3_tiles(M);
  pack_td3_from_t2(codes.data(), M, K, td.data(), tiles / 2, tiles);
  pack_td3_from_t2(codes.data(), M, K, td.data(), 0, tiles / 2);
  std::vector<int8_t> back(M * K, 9);
  unpack_td3_to_trits(td.data(), M, K, back.data(), K);
  CHECK(back == trits, "TD3 trits round trip M=%lld K=%lld", (long long)M, (long long)K);

  // Each variant's tile decoder reproduces the T2R16 codes of the tile's quads.
  {
    const int64_t kchunks = K / kT2KStep;
    for (const auto& t : kernels) {
      if (!t.to_t2) continue;
      for (int64_t tile = 0; tile < tiles; ++tile) {
        const int quads = static_cast<int>(std::min<int64_t>(kTd3Quads, t2tiles - tile * kTd3Quads));
        std::vector<uint8_t> dec(static_cast<size_t>(kTd3Quads * kchunks * kT2ChunkBytes), 0xEE);
        t.to_t2(td.data() + tile * td3_tile_bytes(K), K, quads, dec.data());
        const size_t n = static_cast<size_t>(quads * kchunks * kT2ChunkBytes);
        const uint8_t* want = codes.data() + tile * kTd3Quads * kchunks * kT2ChunkBytes;
        CHECK(std::memcmp(dec.data(), want, n) == 0, "%s td3_to_t2 M=%lld K=%lld tile %lld", t.name.c_str(), (long long)M,
              (long long)K, (long long)tile);
        CHECK(std::all_of(dec.begin() + static_cast<std::ptrdiff_t>(n), dec.end(), [](uint8_t v) { return v == 0xEE; }),
              "%s td3_to_t2 wrote past %d quads", t.name.c_str(), quads);
      }
    }
  }

  // Scales in the T2R16 layout (shared by both kernels).
  std::vector<float> scales;
  if (c.mode == kScaleTensor) scales = {0.0625f + rng.uniform()};
  if (c.mode == kScaleRow) {
    scales.resize(t2tiles * kT2Rows);
    for (auto& s : scales) s = 0.01f + rng.uniform();
  }
  if (c.mode == kScaleBlock) {
    scales.resize(t2tiles * nb * kT2Rows);
    for (auto& s : scales) s = rng.range(0, 7) == 0 ? 0.0f : (rng.range(0, 3) == 0 ? -1.0f : 1.0f) * (0.01f + rng.uniform());
  }

  std::vector<int8_t> q(B * K);
  for (int64_t i = 0; i < B * K; ++i) {
    switch (c.act) {
      case 0: q[i] = static_cast<int8_t>(rng.range(-128, 127)); break;
      case 1: q[i] = 127; break;
      case 2: q[i] = -128; break;
      case 3: q[i] = (i & 1) ? 127 : -128; break;
      case 4: q[i] = 0; break;
      default: q[i] = rng.range(0, 1) ? 127 : -128; break;
    }
  }
  std::vector<float> ascale(B);
  std::vector<int32_t> sum(B, 0), bsum(B * std::max<int64_t>(nb, 1), 0);
  for (int64_t b = 0; b < B; ++b) {
    ascale[b] = 0.5f + rng.uniform() * 100.0f;
    for (int64_t k = 0; k < K; ++k) {
      sum[b] += q[b * K + k];
      if (k / kScaleBlockK < nb) bsum[b * nb + k / kScaleBlockK] += q[b * K + k];
    }
  }

  // Contract evaluated directly on trits.
  std::vector<float> expect(B * M);
  for (int64_t b = 0; b < B; ++b) {
    for (int64_t m = 0; m < M; ++m) {
      if (c.mode == kScaleBlock) {
        float acc = 0.0f;
        for (int64_t j = 0; j < nb; ++j) {
          int32_t dot = 0;
          for (int64_t k = j * kScaleBlockK; k < (j + 1) * kScaleBlockK; ++k) dot += trits[m * K + k] * q[b * K + k];
          acc = acc + static_cast<float>(dot) * scales[(m / 16 * nb + j) * 16 + m % 16];
        }
        expect[b * M + m] = acc / ascale[b];
      } else {
        int32_t dot = 0;
        for (int64_t k = 0; k < K; ++k) dot += trits[m * K + k] * q[b * K + k];
        const float ws = c.mode == kScaleRow ? scales[m] : scales[0];
        expect[b * M + m] = (static_cast<float>(dot) * ws) / ascale[b];
      }
    }
  }
  char what[160];
  std::snprintf(what, sizeof what, "M=%lld K=%lld B=%lld mode=%d w=%s act=%d", (long long)M, (long long)K, (long long)B,
                c.mode, fill_name(c.weights), c.act);

  QActs a{q.data(), ascale.data(), sum.data(), c.mode == kScaleBlock ? bsum.data() : nullptr, B, K, K};
  // The MAD kernel (scalar ternary_gemm on T2R16) on the same trits and scales.
  {
    TernaryMat tw{codes.data(), scales.data(), M, K, c.mode};
    std::vector<float> ym(B * M, -777.0f);
    tables[0].ternary_gemm(tw, a, ym.data(), M, 0, t2tiles);
    int bad = 0;
    for (int64_t i = 0; i < B * M && bad < 3; ++i)
      if (!same_bits(ym[i], expect[i])) {
        ++bad;
        CHECK(false, "MAD scalar vs direct %s i=%lld got %.9g want %.9g", what, (long long)i, ym[i], expect[i]);
      }
  }
  TernaryTd3Mat w{td.data(), scales.data(), M, K, c.mode};
  const int64_t ldy = M + 5;
  for (const auto& k : kernels) {
    const std::vector<float> y = run_td3(k.fn, w, a, ldy);
    int bad = 0;
    for (int64_t b = 0; b < B; ++b) {
      for (int64_t m = 0; m < M && bad < 3; ++m) {
        if (!same_bits(y[b * ldy + m], expect[b * M + m])) {
          ++bad;
          CHECK(false, "%s %s b=%lld m=%lld got %.9g want %.9g", k.name.c_str(), what, (long long)b, (long long)m,
                y[b * ldy + m], expect[b * M + m]);
        }
      }
      for (int64_t m = M; m < ldy; ++m) CHECK(y[b * ldy + m] == -777.0f, "%s wrote past M %s", k.name.c_str(), what);
    }
  }
}

void check_layout() {
  CHECK(kTd3BlockBytes == 3456, "full block %d", kTd3BlockBytes);
  CHECK(kTd3BlockBytes * 8 == 27 * kTd3Rows * 16, "1.6875 bits per weight");
  CHECK(td3_weight_bytes(6912, 2560) == 108 * 10 * 3456, "6912x2560 bytes %lld", (long long)td3_weight_bytes(6912, 2560));
  CHECK(td3_weight_bytes(2560, 6912) == 40 * 27 * 3456, "2560x6912 bytes %lld", (long long)td3_weight_bytes(2560, 6912));
  // Units and tails of a block of r columns: 24 * units + 16 * tails == r, tails <= 2.
  for (int64_t r = 16; r <= 256; r += 16) {
    const int u = td3_block_units(r, 0), t = td3_block_tails(r, 0);
    CHECK(24 * u + 16 * t == r && t <= 2 && u % 2 == 0, "r=%lld units %d tails %d", (long long)r, u, t);
  }
  CHECK(td3_block_units(256, 0) == 10 && td3_block_tails(256, 0) == 1, "full block split");
  CHECK(td3_block_units(8640, 33) == 8 && td3_block_tails(8640, 33) == 0, "8640 tail block");
  CHECK(td3_tile_bytes(272) == 3456 + 256, "K=272 tile bytes %lld", (long long)td3_tile_bytes(272));
  // Decode table: byte = c0 | c1 << 2 | c2 << 4 of the balanced ternary digits of m, c = digit + 1;
  // 42 - byte negates every digit.
  for (int m = 0; m < 14; ++m) {
    int v = m, d[3];
    for (int i = 2; i >= 0; --i) {
      int r = ((v % 3) + 3) % 3;
      if (r == 2) r = -1;
      d[i] = r;
      v = (v - r) / 3;
    }
    CHECK(9 * d[0] + 3 * d[1] + d[2] == m, "digits of %d", m);
    const int byte = (d[0] + 1) | (d[1] + 1) << 2 | (d[2] + 1) << 4;
    const int nbyte = (1 - d[0]) | (1 - d[1]) << 2 | (1 - d[2]) << 4;
    CHECK(kTd3Decode[m] == byte && kTd3Negate - byte == nbyte, "decode table m=%d", m);
  }
  for (int q = 0; q < kTd3Quads; ++q)
    for (int h = 0; h < 2; ++h)
      for (int q2 = 0; q2 < kTd3Quads; ++q2)
        for (int h2 = 0; h2 < 2; ++h2)
          CHECK((q == q2 && h == h2) == (td3_sign_bit(q, h) == td3_sign_bit(q2, h2)), "sign bits distinct");
}

}  // namespace

int main() {
  const auto tables = all_tables();
  const auto kernels = all_kernels(tables);
  Rng rng(11);
  check_layout();
  std::vector<Case> cases;
  const int64_t Ms[] = {1, 15, 16, 17, 63, 64, 65, 100, 130, 200};
  const int64_t Ks[] = {16, 32, 48, 64, 128, 240, 256, 272, 304, 512, 768, 1040};
  for (int64_t M : Ms)
    for (int64_t K : Ks)
      for (int32_t mode : {kScaleTensor, kScaleRow, kScaleBlock}) {
        if (mode == kScaleBlock && K % kScaleBlockK) continue;
        cases.push_back({M, K, rng.range(1, 13), mode, Fill::random, 0});
      }
  for (int64_t B = 1; B <= 13; ++B) cases.push_back({70, 512, B, static_cast<int32_t>(B % 3), Fill::random, 0});
  for (int32_t mode : {kScaleTensor, kScaleRow, kScaleBlock}) {
    cases.push_back({128, 512, 64, mode, Fill::random, 0});
    cases.push_back({48, 512, 3, mode, Fill::zeros, 0});
    cases.push_back({48, 512, 3, mode, Fill::sparse, 0});
    // Long K with every product at its extreme: overflows int16 accumulators widened too late.
    for (int act = 1; act <= 5; ++act) {
      cases.push_back({64, 8192, 1, mode, Fill::plus, act});
      cases.push_back({65, 8192, 2, mode, Fill::minus, act});
      cases.push_back({80, 8192, 5, mode, Fill::minus, act});
    }
  }
  cases.push_back({70, 2560, 16, kScaleTensor, Fill::random, 0});
  cases.push_back({130, 2560, 1, kScaleTensor, Fill::random, 5});
  cases.push_back({40, 6912, 5, kScaleRow, Fill::random, 3});
  cases.push_back({70, 6912, 1, kScaleBlock, Fill::random, 0});
  cases.push_back({33, 8640, 1, kScaleTensor, Fill::random, 0});
  cases.push_back({33, 8640, 6, kScaleRow, Fill::random, 5});
  cases.push_back({17, 1024, 64, kScaleBlock, Fill::random, 0});
  for (const auto& c : cases) run_case(tables, kernels, c, rng);
  std::printf("ISAs:");
  for (const auto& t : tables) std::printf(" %s(%s)", isa_name(t.isa), t.v_ternary_td3);
  std::printf("\n");
  return finish("test_ternary_td3");
}
