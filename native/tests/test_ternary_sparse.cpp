// Column-sparse ternary GEMM (TS256): every ISA variant's list builder and GEMM vs the scalar T2R16
// multiply-add ternary_gemm (the result contract), bit for bit, at 0-100 % zero activations, odd M,
// several K, B = 1 (panels) and B > 1, split block ranges; extreme dots at K = kTsMaxK; pack/unpack.
#include <algorithm>

#include "runtime/repack_ternary.h"
#include "runtime/repack_ternary_sparse.h"
#include "test_util.h"

using namespace bitllm_test;

namespace {

struct Case {
  int64_t M, K, B;
  int32_t mode;
  double zeros;  // probability of a zero activation
  int act;       // 0 random, 1 -128 everywhere, 2 +127 everywhere, 3 ±extremes
  int weights;   // 0 random, 1 all +1, 2 all -1, 3 all 0
};

struct Lists {
  std::vector<int32_t> cols;  // [B, ldc]
  std::vector<int8_t> vals;   // [B, ldc]
  std::vector<int32_t> groups;
};

Lists build_lists(const KernelTable& t, const std::vector<int8_t>& q, int64_t B, int64_t K) {
  const int64_t ldc = ts_list_ld(K);
  Lists l{std::vector<int32_t>(static_cast<size_t>(B * ldc), -1), std::vector<int8_t>(static_cast<size_t>(B * ldc), 99),
          std::vector<int32_t>(static_cast<size_t>(B), -1)};
  // Two calls over a split token range, as the pool does.
  t.ternary_sparse_prep(q.data(), K, K, 0, B / 2, l.cols.data(), l.vals.data(), ldc, l.groups.data());
  t.ternary_sparse_prep(q.data(), K, K, B / 2, B, l.cols.data(), l.vals.data(), ldc, l.groups.data());
  return l;
}

void run_case(const std::vector<KernelTable>& tables, const Case& c, Rng& rng) {
  const int64_t M = c.M, K = c.K, B = c.B;
  std::vector<int8_t> trits(static_cast<size_t>(M * K));  // [M, K]
  for (auto& v : trits)
    v = c.weights == 0 ? static_cast<int8_t>(rng.range(-1, 1)) : (c.weights == 1 ? 1 : (c.weights == 2 ? -1 : 0));
  std::vector<uint8_t> codes(static_cast<size_t>(t2_code_bytes(M, K)));
  pack_t2_from_trits(trits.data(), K, M, K, codes.data(), 0, t2_tiles(M));
  std::vector<uint8_t> data(static_cast<size_t>(ts_weight_bytes(M, K)), 0xee);
  pack_sparse_from_t2(codes.data(), M, K, data.data(), 0, ts_blocks(M));
  std::vector<int8_t> back(static_cast<size_t>(M * K), 7);
  unpack_sparse_to_trits(data.data(), M, K, back.data(), K);
  CHECK(back == trits, "unpack round trip M=%lld K=%lld", (long long)M, (long long)K);

  std::vector<int8_t> q(static_cast<size_t>(B * K));  // [B, K]
  std::vector<int32_t> sum(static_cast<size_t>(B), 0);
  std::vector<float> scale(static_cast<size_t>(B));
  for (int64_t b = 0; b < B; ++b) {
    scale[b] = 0.25f + rng.uniform() * 4.0f;
    for (int64_t k = 0; k < K; ++k) {
      int v = 0;
      if (rng.uniform() >= c.zeros) {
        switch (c.act) {
          case 0: v = static_cast<int>(rng.range(-128, 127)); break;
          case 1: v = -128; break;
          case 2: v = 127; break;
          default: v = rng.range(0, 1) ? 127 : -128; break;
        }
      }
      q[b * K + k] = static_cast<int8_t>(v);
      sum[b] += v;
    }
  }
  const int64_t nscales = c.mode == kScaleTensor ? 1 : t2_tiles(M) * kT2Rows;
  std::vector<float> scales(static_cast<size_t>(nscales));
  for (auto& s : scales) s = rng.range(0, 9) == 0 ? 0.0f : (rng.range(0, 4) == 0 ? -1.0f : 1.0f) * (0.01f + rng.uniform());

  // The contract: scalar T2R16 ternary_gemm on the same trits and scales.
  const TernaryMat t2{codes.data(), scales.data(), M, K, c.mode};
  const QActs acts{q.data(), scale.data(), sum.data(), nullptr, B, K, K};
  std::vector<float> want(static_cast<size_t>(B * M));
  tables[0].ternary_gemm(t2, acts, want.data(), M, 0, t2_tiles(M));

  const Lists ref = build_lists(tables[0], q, B, K);
  const int64_t ldc = ts_list_ld(K);
  for (const KernelTable& t : tables) {
    const Lists l = build_lists(t, q, B, K);
    bool same = l.groups == ref.groups;
    for (int64_t b = 0; b < B && same; ++b)
      same = std::equal(l.cols.begin() + b * ldc, l.cols.begin() + b * ldc + 4 * ref.groups[b], ref.cols.begin() + b * ldc) &&
             std::equal(l.vals.begin() + b * ldc, l.vals.begin() + b * ldc + 4 * ref.groups[b], ref.vals.begin() + b * ldc);
    CHECK(same, "%s prep lists M=%lld K=%lld B=%lld zeros=%.2f", t.v_ternary_sparse, (long long)M, (long long)K, (long long)B, c.zeros);
    const TernarySparseMat w{data.data(), scales.data(), M, K, c.mode};
    const SparseActs sa{l.cols.data(), l.vals.data(), l.groups.data(), scale.data(), sum.data(), B, K, ldc};
    const int64_t blocks = ts_blocks(M), split = rng.range(0, blocks);
    std::vector<float> y(static_cast<size_t>(B * M), -777.0f);
    t.ternary_sparse_gemm(w, sa, y.data(), M, 0, split);
    t.ternary_sparse_gemm(w, sa, y.data(), M, split, blocks);
    int64_t bad = -1;
    for (int64_t i = 0; i < B * M && bad < 0; ++i)
      if (!same_bits(y[i], want[i])) bad = i;
    CHECK(bad < 0, "%s(%s) M=%lld K=%lld B=%lld mode=%d zeros=%.2f act=%d weights=%d: y[%lld] = %.9g, T2R16 %.9g",
          isa_name(t.isa), t.v_ternary_sparse, (long long)M, (long long)K, (long long)B, c.mode, c.zeros, c.act, c.weights,
          (long long)bad, bad < 0 ? 0.0 : y[bad], bad < 0 ? 0.0 : want[bad]);
  }
}

void check_layout() {
  std::vector<int> seen(kTsRows, 0);
  for (int p = 0; p < kTsLineBytes; ++p)
    for (int l = 0; l < 4; ++l) ++seen[ts_row(p, l)];
  CHECK(std::all_of(seen.begin(), seen.end(), [](int v) { return v == 1; }), "ts_row is a bijection onto 0..255");
  CHECK(ts_weight_bytes(2560, 6912) * 8 == 2 * int64_t{2560} * 6912, "2 bits per weight at M %% 256 == 0");
  CHECK(ts_col_bytes(257) == 128, "column runs are padded to 256 rows");
}

}  // namespace

int main() {
  const auto tables = all_tables();
  Rng rng(23);
  check_layout();
  std::vector<Case> cases;
  const int64_t Ms[] = {1, 15, 64, 255, 256, 257, 300, 513};
  const int64_t Ks[] = {16, 48, 64, 160, 272, 1040};
  const double zero_rates[] = {0.0, 0.5, 0.8, 0.99, 1.0};
  for (int64_t M : Ms)
    for (int64_t K : Ks)
      for (double z : zero_rates) cases.push_back({M, K, rng.range(0, 2) ? 1 : rng.range(2, 5), static_cast<int32_t>(rng.range(0, 1)), z, 0, 0});
  for (int64_t B = 1; B <= 9; ++B) cases.push_back({300, 512, B, kScaleRow, 0.8, 3, 0});
  // Many blocks: B = 1 walks several panels of the AVX-512 kernel.
  cases.push_back({4200, 64, 1, kScaleRow, 0.5, 0, 0});
  cases.push_back({2560, 6912, 1, kScaleTensor, 0.8, 0, 0});
  cases.push_back({2560, 2560, 3, kScaleRow, 0.5, 3, 0});
  // The largest dots: every product at its extreme over K = kTsMaxK (scaled accumulators reach 2^30).
  for (int act = 1; act <= 3; ++act)
    for (int weights = 1; weights <= 2; ++weights) cases.push_back({256, kTsMaxK, 1, kScaleTensor, 0.0, act, weights});
  cases.push_back({64, 1024, 2, kScaleTensor, 0.3, 0, 3});
  for (const auto& c : cases) run_case(tables, c, rng);
  std::printf("ISAs:");
  for (const auto& t : tables) std::printf(" %s(%s)", isa_name(t.isa), t.v_ternary_sparse);
  std::printf("\n");
  return finish("test_ternary_sparse");
}
