// Every binary_lut_build / binary_lut_gemm variant vs a direct evaluation of the contract
// (binary_lut.h) on unpacked signs, bit-exact; the float64 error bound of the header; and the B1L64
// packers (signs, B1R16) and unpacker.
#include <algorithm>
#include <cfloat>

#include "runtime/repack_binary.h"
#include "runtime/repack_binary_lut.h"
#include "test_util.h"

using namespace bitllm_test;

namespace {

enum class Fill { random, ones, minus_ones, alternating_rows };
enum class Act { normal, wide, cancel, subnormal, zeros };

struct Case {
  int64_t M, K, B;
  bool row_scale, tok_bias;
  Fill weights;
  Act act;
};

std::vector<int8_t> make_signs(int64_t M, int64_t K, Fill fill, Rng& rng) {
  std::vector<int8_t> s(M * K);  // [M, K]
  for (int64_t m = 0; m < M; ++m)
    for (int64_t k = 0; k < K; ++k) {
      int8_t v = 1;
      switch (fill) {
        case Fill::random: v = rng.range(0, 1) ? 1 : -1; break;
        case Fill::ones: v = 1; break;
        case Fill::minus_ones: v = -1; break;
        case Fill::alternating_rows: v = m % 3 == 0 ? 1 : (m % 3 == 1 ? -1 : (rng.range(0, 1) ? 1 : -1)); break;
      }
      s[m * K + k] = v;
    }
  return s;
}

float make_act(Act act, int64_t k, Rng& rng) {
  switch (act) {
    case Act::normal: return rng.normal();
    case Act::wide: return rng.normal() * std::ldexp(1.0f, static_cast<int>(rng.range(-60, 60)));
    case Act::cancel: return (k % 2 ? -1.0f : 1.0f) * (1e6f + rng.uniform());  // big terms that cancel
    case Act::subnormal: return rng.normal() * 1e-39f;
    case Act::zeros: return k % 5 == 0 ? -0.0f : 0.0f;
  }
  return 0.0f;
}

// Tables straight from the contract.
std::vector<float> contract_tables(const std::vector<float>& u, int64_t ldu, int64_t B, int64_t K, int64_t ldt) {
  std::vector<float> t(B * ldt, 0.0f);
  for (int64_t b = 0; b < B; ++b)
    for (int64_t g = 0; g < K / 4; ++g)
      for (int j = 0; j < 16; ++j) {
        float a[4];
        for (int i = 0; i < 4; ++i) {
          const float x = u[b * ldu + 4 * g + i];
          a[i] = ((j >> i) & 1) ? x : -x;
        }
        t[b * ldt + 16 * g + j] = ((a[0] + a[1]) + a[2]) + a[3];
      }
  return t;
}

void run_case(const std::vector<KernelTable>& tables, const Case& c, Rng& rng) {
  const int64_t M = c.M, K = c.K, B = c.B, blocks = b1l_blocks(M);
  const std::vector<int8_t> signs = make_signs(M, K, c.weights, rng);
  std::vector<uint8_t> bits(b1l_bytes(M, K), 0xA5);
  pack_b1l_from_signs(signs.data(), K, M, K, bits.data(), 0, blocks);
  std::vector<int8_t> back(M * K);
  unpack_b1l_to_signs(bits.data(), M, K, back.data(), K);
  CHECK(back == signs, "pack/unpack round trip M=%lld K=%lld", (long long)M, (long long)K);

  const int64_t ldu = K + 3;  // strided activations, tables with padding and an odd float offset
  std::vector<float> u(B * ldu, 12345.0f);
  for (int64_t b = 0; b < B; ++b)
    for (int64_t k = 0; k < K; ++k) u[b * ldu + k] = make_act(c.act, k, rng);
  std::vector<float> rs(M), tb(B);
  for (auto& v : rs) v = rng.range(0, 9) == 0 ? 0.0f : 0.01f + rng.uniform();
  for (auto& v : tb) v = rng.normal() * 10.0f;
  const float* row_scale = c.row_scale ? rs.data() : nullptr;
  const float* tok_bias = c.tok_bias ? tb.data() : nullptr;

  const int64_t ldt = b1l_table_floats(K) + 16;
  const std::vector<float> want_t = contract_tables(u, ldu, B, K, ldt);
  // The contract's sums on the unpacked signs, and float64 with the header's bound.
  std::vector<float> want(B * M);
  int over = 0;
  for (int64_t b = 0; b < B; ++b) {
    double abs_sum = 0.0;
    for (int64_t k = 0; k < K; ++k) abs_sum += std::fabs(static_cast<double>(u[b * ldu + k]));
    for (int64_t m = 0; m < M; ++m) {
      float e = 0.0f, o = 0.0f;
      double exact = 0.0;
      for (int64_t g = 0; g < K / 4; ++g) {
        int nib = 0;
        for (int i = 0; i < 4; ++i) nib |= (signs[m * K + 4 * g + i] > 0 ? 1 : 0) << i;
        const float v = want_t[b * ldt + 16 * g + nib];
        if (g % 2 == 0) e = e + v; else o = o + v;
        for (int i = 0; i < 4; ++i) exact += signs[m * K + 4 * g + i] * static_cast<double>(u[b * ldu + 4 * g + i]);
      }
      float v = e + o;
      if (row_scale) v = v * row_scale[m];
      if (tok_bias) v = v + tok_bias[b];
      want[b * M + m] = v;
      const double r = row_scale ? row_scale[m] : 1.0, t = tok_bias ? tok_bias[b] : 0.0;
      const double n = K / 8.0 + 4.0, gamma = n * 0x1p-24 / (1.0 - n * 0x1p-24);
      const double bound = gamma * std::fabs(r) * abs_sum + 0x1p-24 * (2.0 * std::fabs(exact * r) + std::fabs(t)) + 0x1p-149;
      over += std::fabs(static_cast<double>(v) - (exact * r + t)) > bound * (1.0 + 1e-9);
    }
  }
  CHECK(over == 0, "M=%lld K=%lld B=%lld: %d outputs outside the float bound", (long long)M, (long long)K, (long long)B, over);

  const BinaryLutMat w{bits.data(), M, K};
  for (const KernelTable& t : tables) {
    std::vector<float> tab_store(B * ldt + 1, -777.0f);
    float* tab = tab_store.data() + 1;  // [B, ldt], not 64-byte aligned
    const int64_t G = K / 4, gsplit = G / 3;
    t.binary_lut_build(u.data(), ldu, B, K, tab, ldt, 0, gsplit);  // two calls over a split group range
    t.binary_lut_build(u.data(), ldu, B, K, tab, ldt, gsplit, G);
    int bad_t = 0;
    for (int64_t b = 0; b < B; ++b) {
      for (int64_t i = 0; i < 16 * G; ++i) bad_t += !same_bits(tab[b * ldt + i], want_t[b * ldt + i]);
      for (int64_t i = 16 * G; i < ldt; ++i) bad_t += tab[b * ldt + i] != -777.0f;
    }
    CHECK(bad_t == 0, "%s tables M=%lld K=%lld B=%lld: %d mismatches", t.v_binary_lut, (long long)M, (long long)K,
          (long long)B, bad_t);

    const int64_t ldy = M + 3;
    std::vector<float> y(B * ldy, -777.0f);
    const int64_t split = blocks / 2;  // as the thread pool splits blocks
    t.binary_lut_gemm(w, tab, ldt, B, row_scale, tok_bias, y.data(), ldy, 0, split);
    t.binary_lut_gemm(w, tab, ldt, B, row_scale, tok_bias, y.data(), ldy, split, blocks);
    int bad = 0;
    for (int64_t b = 0; b < B; ++b) {
      for (int64_t m = 0; m < M; ++m)
        if (!same_bits(y[b * ldy + m], want[b * M + m]) && ++bad <= 3)
          CHECK(false, "%s M=%lld K=%lld B=%lld b=%lld m=%lld got %.9g want %.9g", t.v_binary_lut, (long long)M,
                (long long)K, (long long)B, (long long)b, (long long)m, y[b * ldy + m], want[b * M + m]);
      for (int64_t m = M; m < ldy; ++m) CHECK(y[b * ldy + m] == -777.0f, "%s wrote past M", t.v_binary_lut);
    }
    CHECK(bad == 0, "%s: %d mismatches M=%lld K=%lld B=%lld", t.v_binary_lut, bad, (long long)M, (long long)K,
          (long long)B);
  }
}

// T[j ^ 15] = -T[j] exactly, for any finite input (the AVX2 / NEON kernels may rely on it).
void test_mirror(const std::vector<KernelTable>& tables, Rng& rng) {
  const int64_t K = 256;
  std::vector<float> u(K);
  for (int64_t k = 0; k < K; ++k) u[k] = make_act(k % 3 == 0 ? Act::wide : Act::cancel, k, rng);
  for (const KernelTable& t : tables) {
    std::vector<float> tab(b1l_table_floats(K));
    t.binary_lut_build(u.data(), K, 1, K, tab.data(), b1l_table_floats(K), 0, K / 4);
    bool ok = true;
    for (int64_t g = 0; g < K / 4; ++g)
      for (int j = 0; j < 16; ++j) ok = ok && same_bits(tab[16 * g + (j ^ 15)], -tab[16 * g + j]);
    CHECK(ok, "%s: T[j ^ 15] == -T[j]", t.v_binary_lut);
  }
}

// B1R16 -> B1L64 gives the same bytes as packing the same signs directly (padded rows included).
void test_from_b1r16(Rng& rng) {
  for (int64_t M : {1, 16, 17, 64, 65, 130})
    for (int64_t K : {64, 192, 2560}) {
      const std::vector<int8_t> signs = make_signs(M, K, Fill::random, rng);
      std::vector<uint8_t> r16(b1_bits_bytes(M, K));
      pack_b1_from_signs(signs.data(), K, M, K, r16.data(), 0, b1_tiles(M));
      std::vector<uint8_t> direct(b1l_bytes(M, K), 0x11), conv(b1l_bytes(M, K), 0x22);
      pack_b1l_from_signs(signs.data(), K, M, K, direct.data(), 0, b1l_blocks(M));
      pack_b1l_from_b1r16(r16.data(), M, K, conv.data(), 0, 1);
      pack_b1l_from_b1r16(r16.data(), M, K, conv.data(), 1, b1l_blocks(M));
      CHECK(direct == conv, "B1R16 -> B1L64 M=%lld K=%lld", (long long)M, (long long)K);
      bool pad = true;
      for (int64_t m = M; m < b1l_blocks(M) * kB1lRows; ++m)
        for (int64_t kc = 0; kc < K / kB1lKStep; ++kc)
          for (int i = 0; i < 4; ++i)
            pad = pad && direct[((m / kB1lRows) * (K / kB1lKStep) + kc) * kB1lChunkBytes + 4 * (m % kB1lRows) + i] == 0;
      CHECK(pad, "padded rows are zero bits M=%lld", (long long)M);
    }
}

}  // namespace

int main() {
  const auto tables = all_tables();
  Rng rng(11);
  std::vector<Case> cases;
  for (int64_t M : {1, 15, 17, 63, 64, 65, 130})
    for (int64_t K : {32, 96, 704, 2560})
      for (bool rs : {false, true}) {
        const int64_t B = rng.range(1, 5);
        cases.push_back({M, K, B, rs, !rs || M % 2 == 1, Fill::random, Act::normal});
      }
  // Every token count around the kernels' token pairs and chunks.
  for (int64_t B = 1; B <= 9; ++B) cases.push_back({70, 160, B, B % 2 == 0, B % 3 == 0, Fill::random, Act::normal});
  cases.push_back({128, 6912, 2, true, true, Fill::random, Act::normal});
  cases.push_back({64, 6912, 40, false, true, Fill::random, Act::wide});  // several token chunks (AVX-512: 4 per chunk)
  cases.push_back({33, 8192, 3, true, false, Fill::alternating_rows, Act::wide});
  // Adversarial activations and weights.
  for (Fill f : {Fill::ones, Fill::minus_ones, Fill::alternating_rows})
    for (Act act : {Act::wide, Act::cancel, Act::subnormal, Act::zeros})
      cases.push_back({67, 1024, 3, true, act != Act::subnormal, f, act});
  cases.push_back({17, 32768, 1, true, true, Fill::random, Act::cancel});
  for (const auto& c : cases) run_case(tables, c, rng);
  test_mirror(tables, rng);
  test_from_b1r16(rng);

  std::printf("ISAs:");
  for (const KernelTable& t : tables) std::printf(" %s(%s)", isa_name(t.isa), t.v_binary_lut);
  std::printf("\n");
  return finish("test_binary_lut");
}
