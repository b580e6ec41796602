// Every act_quant_i8 / act_quant_i4 / act_block_sums variant vs the scalar reference, bit-exact:
// codes, scale bits and sums, on odd K, strided rows, zero rows, huge, tiny and tie values; and
// act_quant_topk_i8 against a sort-based evaluation of its contract.
#include <algorithm>
#include <limits>

#include "test_util.h"

using namespace bitllm_test;

namespace {

enum class Fill { normal, zeros, huge, tiny, denormal, ties, one_spike, neg_zero, overflow_sum };

const char* fill_name(Fill f) {
  switch (f) {
    case Fill::normal: return "normal";
    case Fill::zeros: return "zeros";
    case Fill::huge: return "huge";
    case Fill::tiny: return "tiny";
    case Fill::denormal: return "denormal";
    case Fill::ties: return "ties";
    case Fill::one_spike: return "one_spike";
    case Fill::neg_zero: return "neg_zero";
    case Fill::overflow_sum: return "overflow_sum";
  }
  return "?";
}

void fill_row(float* x,  // [K]
              int64_t K, Fill f, Rng& rng) {
  const float fmax = std::numeric_limits<float>::max();
  for (int64_t k = 0; k < K; ++k) {
    float v = 0.0f;
    switch (f) {
      case Fill::normal: v = rng.normal() * (0.01f + 10.0f * rng.uniform()); break;
      case Fill::zeros: v = 0.0f; break;
      case Fill::huge: v = (rng.uniform() < 0.5f ? -1.0f : 1.0f) * fmax * (0.5f + 0.5f * rng.uniform()); break;
      case Fill::tiny: v = rng.normal() * 1e-7f; break;  // max|x| < 1e-5: the 1e-5 floor decides the scale
      case Fill::denormal: v = rng.normal() * 1e-40f; break;
      // Multiples of 0.5 up to ±127 with the max pinned at 127: i8 scale is 1, x*s lands on .5 ties.
      case Fill::ties: v = k == 0 ? 127.0f : static_cast<float>(rng.range(-254, 254)) * 0.5f; break;
      case Fill::one_spike: v = k == K / 2 ? -1e30f : rng.normal(); break;
      case Fill::neg_zero: v = (k & 1) ? -0.0f : rng.normal() * 1e-3f; break;
      case Fill::overflow_sum: v = (k < 2) ? fmax : rng.normal(); break;  // Σ|x| overflows to inf
    }
    x[k] = v;
  }
}

struct QuantOut {
  std::vector<int8_t> q;  // [B, ldq]
  std::vector<float> scale;
  std::vector<int32_t> sum;
};

QuantOut run_quant(act_quant_fn fn, const std::vector<float>& x, int64_t ldx, int64_t B, int64_t K, int64_t ldq) {
  QuantOut o;
  o.q.assign(static_cast<size_t>(B * ldq), static_cast<int8_t>(0x5a));  // sentinel past K must survive
  o.scale.assign(static_cast<size_t>(B), -1.0f);
  o.sum.assign(static_cast<size_t>(B), -12345);
  fn(x.data(), ldx, B, K, o.q.data(), ldq, o.scale.data(), o.sum.data());
  return o;
}

// Quantizes B rows of length K (row strides ldx, ldq > K) with every ISA and compares with scalar.
void check_quant_matches_scalar(const std::vector<KernelTable>& tables, int64_t B, int64_t K, Fill fill, Rng& rng) {
  const int64_t ldx = K + 1 + rng.range(0, 7), ldq = K + 1 + rng.range(0, 40);
  std::vector<float> x(static_cast<size_t>(B * ldx), 1e9f);  // padding past K must be ignored
  for (int64_t b = 0; b < B; ++b) {
    // Mix the requested fill with ordinary rows and an all-zero row.
    const Fill f = (b == 1) ? Fill::zeros : (b == 2 ? Fill::normal : fill);
    fill_row(x.data() + b * ldx, K, f, rng);
  }
  for (int bits : {8, 4}) {
    const auto ref = run_quant(bits == 8 ? tables[0].act_quant_i8 : tables[0].act_quant_i4, x, ldx, B, K, ldq);
    for (size_t i = 1; i < tables.size(); ++i) {
      const KernelTable& t = tables[i];
      const auto got = run_quant(bits == 8 ? t.act_quant_i8 : t.act_quant_i4, x, ldx, B, K, ldq);
      int bad = 0;
      for (int64_t b = 0; b < B && bad < 3; ++b) {
        if (!same_bits(got.scale[b], ref.scale[b]) || got.sum[b] != ref.sum[b]) {
          ++bad;
          CHECK(false, "%s i%d %s B=%lld K=%lld b=%lld: scale %.9g vs %.9g, sum %d vs %d", t.v_act_quant, bits,
                fill_name(fill), (long long)B, (long long)K, (long long)b, got.scale[b], ref.scale[b], got.sum[b],
                ref.sum[b]);
        }
        for (int64_t k = 0; k < ldq && bad < 3; ++k) {
          const size_t i = static_cast<size_t>(b * ldq + k);
          if (got.q[i] != ref.q[i]) {
            ++bad;
            CHECK(false, "%s i%d %s B=%lld K=%lld b=%lld k=%lld: q %d vs %d (x=%.9g)", t.v_act_quant, bits,
                  fill_name(fill), (long long)B, (long long)K, (long long)b, (long long)k, got.q[i], ref.q[i],
                  k < K ? x[b * ldx + k] : 0.0f);
          }
        }
      }
      CHECK(bad == 0, "%s i%d mismatches", t.v_act_quant, bits);
    }
  }
}

void check_block_sums_match_scalar(const std::vector<KernelTable>& tables, int64_t B, int64_t K, int extreme, Rng& rng) {
  const int64_t ldq = K + rng.range(1, 70), nb = K / kScaleBlockK;
  std::vector<int8_t> q(static_cast<size_t>(B * ldq));
  for (auto& v : q) v = extreme == 1 ? int8_t{-128} : (extreme == 2 ? int8_t{127} : static_cast<int8_t>(rng.range(-128, 127)));
  std::vector<int32_t> ref(static_cast<size_t>(B * nb), -1);
  tables[0].act_block_sums(q.data(), ldq, B, K, ref.data());
  for (size_t i = 1; i < tables.size(); ++i) {
    std::vector<int32_t> got(static_cast<size_t>(B * nb), -1);
    tables[i].act_block_sums(q.data(), ldq, B, K, got.data());
    CHECK(got == ref, "%s act_block_sums B=%lld K=%lld extreme=%d", tables[i].v_act_quant, (long long)B, (long long)K,
          extreme);
  }
}

// The reference itself: ties round half to even, the scale floor is 1e-5, sums match the codes.
void check_scalar_contract(const KernelTable& scalar) {
  const float x[6] = {127.0f, 2.5f, -2.5f, 3.5f, -0.5f, 0.5f};
  int8_t q[6];
  float s;
  int32_t sum;
  scalar.act_quant_i8(x, 6, 1, 6, q, 6, &s, &sum);
  CHECK(s == 1.0f && q[0] == 127 && q[1] == 2 && q[2] == -2 && q[3] == 4 && q[4] == 0 && q[5] == 0 && sum == 131,
        "i8 ties: s=%g q=%d,%d,%d,%d,%d,%d sum=%d", s, q[0], q[1], q[2], q[3], q[4], q[5], sum);
  const float z[3] = {0.0f, 0.0f, 0.0f};
  scalar.act_quant_i8(z, 3, 1, 3, q, 3, &s, &sum);
  CHECK(s == 127.0f / 1e-5f && sum == 0, "i8 zero row: s=%g sum=%d", s, sum);
}

// act_quant_topk_i8 of every table vs a direct evaluation of its contract: a stable sort of the indices
// by |x| (descending; equal |x| keep index order), the first `keep` kept, then the scalar act_quant_i8
// on the masked row. Rows have ties at the threshold (ties fill), zeros, -0 and equal values.
void check_topk(const std::vector<KernelTable>& tables, int64_t B, int64_t K, Fill fill, Rng& rng) {
  const int64_t ldx = K + rng.range(0, 5), ldq = K + rng.range(1, 9);
  std::vector<float> x(static_cast<size_t>(B * ldx), 1e9f);
  for (int64_t b = 0; b < B; ++b) fill_row(x.data() + b * ldx, K, b == 1 ? Fill::zeros : fill, rng);
  if (fill == Fill::ties && B > 2)  // one row of equal magnitudes, mixed signs
    for (int64_t k = 0; k < K; ++k) x[2 * ldx + k] = (k % 3) ? -0.75f : 0.75f;
  for (int64_t keep : {int64_t{0}, int64_t{1}, K / 2, K / 5, K - 1, K}) {
    if (keep < 0) continue;
    std::vector<float> masked(static_cast<size_t>(B * K), 0.0f);
    for (int64_t b = 0; b < B; ++b) {
      std::vector<int64_t> order(static_cast<size_t>(K));
      for (int64_t k = 0; k < K; ++k) order[k] = k;
      const float* xr = x.data() + b * ldx;
      std::stable_sort(order.begin(), order.end(), [&](int64_t i, int64_t j) { return std::fabs(xr[i]) > std::fabs(xr[j]); });
      for (int64_t r = 0; r < keep; ++r) masked[b * K + order[r]] = xr[order[r]];
    }
    const auto want = run_quant(tables[0].act_quant_i8, masked, K, B, K, ldq);
    for (const KernelTable& t : tables) {
      QuantOut got;
      got.q.assign(static_cast<size_t>(B * ldq), static_cast<int8_t>(0x5a));
      got.scale.assign(static_cast<size_t>(B), -1.0f);
      got.sum.assign(static_cast<size_t>(B), -12345);
      t.act_quant_topk_i8(x.data(), ldx, B, K, keep, got.q.data(), ldq, got.scale.data(), got.sum.data());
      bool same = got.q == want.q && got.sum == want.sum;
      for (int64_t b = 0; b < B; ++b) same = same && same_bits(got.scale[b], want.scale[b]);
      CHECK(same, "%s topk %s B=%lld K=%lld keep=%lld", isa_name(t.isa), fill_name(fill), (long long)B, (long long)K,
            (long long)keep);
    }
  }
}

}  // namespace

int main() {
  const auto tables = all_tables();
  Rng rng(7);
  check_scalar_contract(tables[0]);
  const int64_t Ks[] = {1, 3, 7, 15, 16, 17, 31, 32, 33, 63, 64, 65, 255, 256, 257, 2560, 6912};
  const Fill fills[] = {Fill::normal, Fill::zeros,   Fill::huge,     Fill::tiny,        Fill::denormal,
                        Fill::ties,   Fill::one_spike, Fill::neg_zero, Fill::overflow_sum};
  for (int64_t K : Ks)
    for (Fill f : fills) check_quant_matches_scalar(tables, rng.range(1, 9), K, f, rng);
  for (int64_t B = 1; B <= 9; ++B) check_quant_matches_scalar(tables, B, 2560 + 16 * B + (B & 1), Fill::normal, rng);
  for (int64_t K : {256, 512, 768, 2560, 6912})
    for (int extreme = 0; extreme < 3; ++extreme) check_block_sums_match_scalar(tables, rng.range(1, 9), K, extreme, rng);
  for (int64_t K : {1, 2, 3, 7, 16, 33, 100, 257, 2560})
    for (Fill f : {Fill::normal, Fill::zeros, Fill::ties, Fill::neg_zero, Fill::huge, Fill::one_spike})
      check_topk(tables, rng.range(3, 5), K, f, rng);
  std::printf("ISAs:");
  for (const auto& t : tables) std::printf(" %s(%s)", isa_name(t.isa), t.v_act_quant);
  std::printf("\n");
  return finish("test_act_quant");
}
