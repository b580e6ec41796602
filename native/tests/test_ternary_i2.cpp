// Every ternary_gemm variant vs a direct evaluation of the contract on unpacked trits, bit-exact.
#include <algorithm>

#include "runtime/repack_ternary.h"
#include "test_util.h"

using namespace bitllm_test;

namespace {

enum class Fill { random, zeros, plus, minus, sparse };

struct Case {
  int64_t M, K, B;
  int32_t mode;
  Fill weights;
  int act;  // 0 random, 1 +127, 2 -128, 3 alternating extremes, 4 zeros
};

void run_case(const std::vector<KernelTable>& tables, const Case& c, Rng& rng) {
  const int64_t M = c.M, K = c.K, B = c.B, tiles = t2_tiles(M), nb = K / kScaleBlockK;
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
  std::vector<uint8_t> codes(t2_code_bytes(M, K));
  pack_t2_from_trits(trits.data(), K, M, K, codes.data(), 0, tiles);
  std::vector<int8_t> back(M * K);
  unpack_t2_to_trits(codes.data(), M, K, back.data(), K);
  CHECK(back == trits, "pack/unpack round trip M=%lld K=%lld", (long long)M, (long long)K);

  std::vector<float> scales;
  if (c.mode == kScaleTensor) scales = {0.0625f + rng.uniform()};
  if (c.mode == kScaleRow) {
    scales.resize(tiles * kT2Rows);
    for (auto& s : scales) s = 0.01f + rng.uniform();
  }
  if (c.mode == kScaleBlock) {
    scales.resize(tiles * nb * kT2Rows);
    for (auto& s : scales) s = rng.range(0, 7) == 0 ? 0.0f : 0.01f + rng.uniform();
  }

  std::vector<int8_t> q(B * K);
  for (int64_t i = 0; i < B * K; ++i) {
    switch (c.act) {
      case 0: q[i] = static_cast<int8_t>(rng.range(-128, 127)); break;
      case 1: q[i] = 127; break;
      case 2: q[i] = -128; break;
      case 3: q[i] = (i & 1) ? 127 : -128; break;
      default: q[i] = 0; break;
    }
  }
  std::vector<float> ascale(B);
  std::vector<int32_t> sum(B, 0), bsum(B * std::max<int64_t>(nb, 1), 0);
  for (int64_t b = 0; b < B; ++b) {
    ascale[b] = 0.5f + rng.uniform() * 100.0f;
    for (int64_t k = 0; k < K; ++k) {
      sum[b] += q[b * K + k];
      if (nb && k < nb * kScaleBlockK) bsum[b * nb + k / kScaleBlockK] += q[b * K + k];
    }
  }
  QActs a{q.data(), ascale.data(), sum.data(), c.mode == kScaleBlock ? bsum.data() : nullptr, B, K, K};
  TernaryMat w{codes.data(), scales.data(), M, K, c.mode};

  // Contract evaluated directly on trits.
  std::vector<float> expect(B * M);
  for (int64_t b = 0; b < B; ++b) {
    for (int64_t m = 0; m < M; ++m) {
      if (c.mode == kScaleBlock) {
        float acc = 0.0f;
        for (int64_t j = 0; j < nb; ++j) {
          int32_t dot = 0;
          for (int64_t k = j * kScaleBlockK; k < (j + 1) * kScaleBlockK; ++k) dot += (trits[m * K + k] + 1) * q[b * K + k];
          acc = acc + static_cast<float>(dot - bsum[b * nb + j]) * scales[(m / 16 * nb + j) * 16 + m % 16];
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

  for (const auto& t : tables) {
    if (!t.ternary_gemm) continue;
    const int64_t ldy = M + 3;
    std::vector<float> y(B * ldy, -777.0f);
    // Two calls over a split tile range, as the thread pool would issue them.
    const int64_t split = tiles / 2;
    t.ternary_gemm(w, a, y.data(), ldy, 0, split);
    t.ternary_gemm(w, a, y.data(), ldy, split, tiles);
    int bad = 0;
    for (int64_t b = 0; b < B && bad < 3; ++b) {
      for (int64_t m = 0; m < M && bad < 3; ++m) {
        if (!same_bits(y[b * ldy + m], expect[b * M + m])) {
          ++bad;
          CHECK(false, "%s M=%lld K=%lld B=%lld mode=%d b=%lld m=%lld got %.9g want %.9g", isa_name(t.isa),
                (long long)M, (long long)K, (long long)B, c.mode, (long long)b, (long long)m, y[b * ldy + m],
                expect[b * M + m]);
        }
      }
      for (int64_t m = M; m < ldy; ++m) CHECK(y[b * ldy + m] == -777.0f, "%s wrote past M", isa_name(t.isa));
    }
    CHECK(bad == 0, "%s mismatches", isa_name(t.isa));
  }
}

}  // namespace

int main() {
  const auto tables = all_tables();
  Rng rng(42);
  std::vector<Case> cases;
  const int64_t Ms[] = {1, 15, 16, 17, 33, 64, 100};
  const int64_t Ks[] = {16, 48, 256, 272, 768};
  const int64_t Bs[] = {1, 2, 3, 4, 5, 8, 13};
  for (int64_t M : Ms)
    for (int64_t K : Ks)
      for (int32_t mode : {kScaleTensor, kScaleRow, kScaleBlock}) {
        if (mode == kScaleBlock && K % kScaleBlockK) continue;
        cases.push_back({M, K, Bs[rng.range(0, 6)], mode, Fill::random, 0});
      }
  for (int32_t mode : {kScaleTensor, kScaleRow, kScaleBlock}) {
    cases.push_back({48, 512, 3, mode, Fill::zeros, 0});
    cases.push_back({48, 512, 3, mode, Fill::sparse, 0});
    // Long K with every product at its extreme: overflows naive int16 accumulation.
    for (int act = 1; act <= 4; ++act) {
      cases.push_back({32, 8192, 2, mode, Fill::plus, act});
      cases.push_back({32, 8192, 2, mode, Fill::minus, act});
    }
  }
  cases.push_back({70, 2560, 16, kScaleTensor, Fill::random, 0});
  cases.push_back({40, 6912, 33, kScaleRow, Fill::random, 3});
  cases.push_back({17, 1024, 64, kScaleBlock, Fill::random, 0});
  // GEMV over a K long enough that the B = 1 path must recombine its partial accumulators.
  cases.push_back({48, 33024, 1, kScaleTensor, Fill::plus, 2});
  cases.push_back({48, 33024, 1, kScaleRow, Fill::random, 0});
  for (const auto& c : cases) run_case(tables, c, rng);
  std::printf("ISAs:");
  for (const auto& t : tables) std::printf(" %s(%s)", isa_name(t.isa), t.v_ternary);
  std::printf("\n");
  return finish("test_ternary_i2");
}
