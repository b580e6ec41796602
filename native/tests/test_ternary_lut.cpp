// TL3 lookup-table GEMM: every ISA variant's table build + gemm vs the scalar LUT kernel vs the scalar
// T2R16 multiply-add ternary_gemm (the result contract) vs a direct evaluation on trits, bit-exact.
// Also: TL3 pack/unpack round trips (from trits and from T2R16), table contents per variant, layout sizes.
#include <algorithm>

#include "runtime/repack_lut.h"
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

// Y from a variant's table build + gemm, calling the gemm over a split tile range (as the pool does)
// and the build over two token ranges.
std::vector<float> run_lut(const KernelTable& t, const TernaryLutMat& w, const QActs& a, int64_t ldy) {
  const int64_t tb = lut_table_bytes(w.K), tiles = lut_tiles(w.M);
  std::vector<uint8_t> tables(static_cast<size_t>(a.B * tb + 1), 0xA5);
  const int64_t bsplit = a.B / 2;
  t.ternary_lut_build(a, 0, bsplit, tables.data());
  t.ternary_lut_build(a, bsplit, a.B, tables.data());
  std::vector<float> y(static_cast<size_t>(a.B * ldy), -777.0f);
  const int64_t split = tiles / 2;
  t.ternary_lut_gemm(w, a, tables.data(), y.data(), ldy, 0, split);
  t.ternary_lut_gemm(w, a, tables.data(), y.data(), ldy, split, tiles);
  return y;
}

void run_case(const std::vector<KernelTable>& tables, const Case& c, Rng& rng) {
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

  std::vector<uint8_t> lut(static_cast<size_t>(lut_weight_bytes(M, K)));
  pack_lut_from_trits(trits.data(), K, M, K, lut.data(), 0, lut_tiles(M));
  std::vector<int8_t> back(M * K, 9);
  unpack_lut_to_trits(lut.data(), M, K, back.data(), K);
  CHECK(back == trits, "TL3 trits round trip M=%lld K=%lld", (long long)M, (long long)K);

  // Scales in the T2R16 layout (shared by both kernels).
  const int64_t t2tiles = t2_tiles(M);
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

  // The MAD kernel (scalar ternary_gemm on T2R16) on the same trits and scales, when K allows T2R16.
  const bool t2_ok = K % kT2KStep == 0;
  std::vector<uint8_t> codes;
  if (t2_ok) {
    codes.resize(static_cast<size_t>(t2_code_bytes(M, K)));
    pack_t2_from_trits(trits.data(), K, M, K, codes.data(), 0, t2tiles);
    // TL3 packed from T2R16 codes is byte-identical to TL3 packed from trits.
    std::vector<uint8_t> lut2(lut.size(), 0x5A);
    pack_lut_from_t2(codes.data(), M, K, lut2.data(), 0, lut_tiles(M));
    CHECK(lut2 == lut, "pack from T2R16 != pack from trits %s", what);
    QActs am{q.data(), ascale.data(), sum.data(), c.mode == kScaleBlock ? bsum.data() : nullptr, B, K, K};
    TernaryMat tw{codes.data(), scales.data(), M, K, c.mode};
    std::vector<float> ym(B * M, -777.0f);
    tables[0].ternary_gemm(tw, am, ym.data(), M, 0, t2tiles);
    int bad = 0;
    for (int64_t i = 0; i < B * M && bad < 3; ++i)
      if (!same_bits(ym[i], expect[i])) {
        ++bad;
        CHECK(false, "MAD scalar vs direct %s i=%lld got %.9g want %.9g", what, (long long)i, ym[i], expect[i]);
      }
  }

  // Each LUT variant: the tables see only q and scale (sum/bsum deliberately garbage).
  std::vector<int32_t> junk(B * std::max<int64_t>(nb, 1), 0x7fffffff);
  QActs a{q.data(), ascale.data(), junk.data(), junk.data(), B, K, K};
  TernaryLutMat w{lut.data(), scales.data(), M, K, c.mode};
  const int64_t ldy = M + 5;
  for (const auto& t : tables) {
    if (!t.ternary_lut_gemm || !t.ternary_lut_build) continue;
    const std::vector<float> y = run_lut(t, w, a, ldy);
    int bad = 0;
    for (int64_t b = 0; b < B; ++b) {
      for (int64_t m = 0; m < M && bad < 3; ++m) {
        if (!same_bits(y[b * ldy + m], expect[b * M + m])) {
          ++bad;
          CHECK(false, "%s(%s) %s b=%lld m=%lld got %.9g want %.9g", isa_name(t.isa), t.v_ternary_lut, what,
                (long long)b, (long long)m, y[b * ldy + m], expect[b * M + m]);
        }
      }
      for (int64_t m = M; m < ldy; ++m)
        CHECK(y[b * ldy + m] == -777.0f, "%s wrote past M %s", isa_name(t.isa), what);
    }
  }
}

// Table entries equal T[m] = Σ d_i(m) x_i in each variant's documented format.
void check_table_contents(const std::vector<KernelTable>& tables, Rng& rng) {
  const int64_t K = 300;  // one full block + a tail of 44 columns (15 groups -> 16)
  std::vector<int8_t> q(K);
  for (auto& v : q) v = static_cast<int8_t>(rng.range(-128, 127));
  q[0] = -128;
  q[1] = -128;
  q[2] = -128;
  float s = 1.0f;
  int32_t sum = 0;
  QActs a{q.data(), &s, &sum, nullptr, 1, K, K};
  CHECK(lut_groups(K) == 86 + 16, "lut_groups(300) = %lld", (long long)lut_groups(K));
  for (const auto& t : tables) {
    std::vector<uint8_t> tb(static_cast<size_t>(lut_table_bytes(K)));
    t.ternary_lut_build(a, 0, 1, tb.data());
    for (int64_t gi = 0; gi < lut_groups(K); ++gi) {
      const int64_t j = gi / kLutBlockGroups, g = gi % kLutBlockGroups;
      int x[3];
      for (int d = 0; d < 3; ++d) {
        const int64_t k = j * 256 + 3 * g + d;
        x[d] = (k < K && k < (j + 1) * 256) ? q[k] : 0;
      }
      const uint8_t* e = tb.data() + gi * 64;
      for (int m = 0; m < 16; ++m) {
        const int v = kLutDigits[m][0] * x[0] + kLutDigits[m][1] * x[1] + kLutDigits[m][2] * x[2];
        if (std::strcmp(t.v_ternary_lut, "avx512") == 0) {  // int16 T[0..15], twice
          int16_t p, p2;
          std::memcpy(&p, e + 2 * m, 2);
          std::memcpy(&p2, e + 32 + 2 * m, 2);
          CHECK(p == v && p2 == v, "%s table group %lld m=%d: %d %d want %d", isa_name(t.isa), (long long)gi, m, p, p2, v);
        } else {  // byte planes of +T and -T
          const int p = static_cast<int16_t>(static_cast<uint16_t>(e[m] | (e[32 + m] << 8)));
          const int n = static_cast<int16_t>(static_cast<uint16_t>(e[16 + m] | (e[48 + m] << 8)));
          CHECK(p == v && n == -v, "%s table group %lld m=%d: +%d -%d want %d", isa_name(t.isa), (long long)gi, m, p, n, v);
        }
      }
    }
  }
}

void check_layout_sizes() {
  CHECK(lut_record_bytes(86) == 3456, "full record %lld", (long long)lut_record_bytes(86));
  CHECK(lut_weight_bytes(6912, 2560) == 108 * 10 * 3456, "6912x2560 bytes %lld", (long long)lut_weight_bytes(6912, 2560));
  CHECK(lut_block_groups(16, 0) == 6, "K=16 groups %d", lut_block_groups(16, 0));
  CHECK(lut_block_groups(1, 0) == 2, "K=1 groups %d", lut_block_groups(1, 0));
  CHECK(lut_block_groups(255, 0) == 86, "K=255 groups %d", lut_block_groups(255, 0));
  for (int p = 0; p < 64; ++p) CHECK(lut_row_byte(lut_byte_row(p)) == p, "row/byte map p=%d", p);
  // Bits per weight of a full block: 3456 * 8 / (64 * 256).
  CHECK(lut_record_bytes(86) * 8 == 27 * 1024, "1.6875 bpw");
}

}  // namespace

int main() {
  const auto tables = all_tables();
  Rng rng(7);
  check_layout_sizes();
  check_table_contents(tables, rng);
  std::vector<Case> cases;
  const int64_t Ms[] = {1, 15, 17, 63, 64, 65, 100, 130};
  const int64_t Ks[] = {1, 2, 3, 16, 48, 250, 256, 257, 272, 512, 768, 1000};
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
    // Long K with every product at its extreme: overflows an int16 accumulator that is not flushed.
    for (int act = 1; act <= 5; ++act) {
      cases.push_back({64, 8192, 2, mode, Fill::plus, act});
      cases.push_back({65, 8192, 3, mode, Fill::minus, act});
    }
  }
  cases.push_back({70, 2560, 16, kScaleTensor, Fill::random, 0});
  cases.push_back({40, 6912, 5, kScaleRow, Fill::random, 3});
  cases.push_back({17, 1024, 64, kScaleBlock, Fill::random, 0});
  for (const auto& c : cases) run_case(tables, c, rng);
  std::printf("ISAs:");
  for (const auto& t : tables) std::printf(" %s(%s)", isa_name(t.isa), t.v_ternary_lut);
  std::printf("\n");
  return finish("test_ternary_lut");
}
