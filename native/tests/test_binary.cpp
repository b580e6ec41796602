// Every binary_gemm / binary_prep variant vs a direct evaluation of the contract (binary.h) on
// unpacked signs, bit-exact; and the B1R16 repackers (signs, float, OneBit, Q1_0) round trips.
#include <algorithm>

#include "runtime/repack_binary.h"
#include "runtime/repack_ternary.h"  // f32_to_fp16, fp16_to_f32
#include "test_util.h"

using namespace bitllm_test;

namespace {

// A kernel table under test and its label in messages.
struct Variant {
  KernelTable t;
  std::string name;
};

// Every supported ISA, plus the same ISA with an optional feature switched off where the CPU has it,
// so both sub-paths of a fill run here: AVX-512 without VPOPCNTDQ (k-mask paths only for small B)
// and NEON without dotprod.
std::vector<Variant> all_variants() {
  std::vector<Variant> out;
  for (const KernelTable& t : all_tables()) out.push_back({t, isa_name(t.isa)});
  CpuFeatures f = cpu_features();
  const char* name = nullptr;
  Isa isa = Isa::scalar;
  if (f.avx512vpopcntdq && isa_supported(Isa::avx512, f)) {
    f.avx512vpopcntdq = false;
    isa = Isa::avx512;
    name = "avx512-novpopcntdq";
  } else if (f.dotprod && isa_supported(Isa::neon, f)) {
    f.dotprod = false;
    isa = Isa::neon;
    name = "neon-nodotprod";
  }
  KernelTable t;
  std::string err;
  if (name && make_kernel_table(isa, f, &t, &err)) out.push_back({t, name});
  return out;
}

enum class Fill { random, ones, zeros, alternating_rows };
enum class Act { random, max, min, extremes, zeros };

struct Case {
  int64_t M, K, B;
  int32_t mode;
  bool tok_bias;
  Fill weights;
  Act act;
};

void run_case(const std::vector<Variant>& tables, const Case& c, Rng& rng) {
  const int64_t M = c.M, K = c.K, B = c.B, tiles = b1_tiles(M);
  std::vector<int8_t> signs(M * K);  // [M, K]
  for (int64_t m = 0; m < M; ++m)
    for (int64_t k = 0; k < K; ++k) {
      int8_t v = 1;
      switch (c.weights) {
        case Fill::random: v = rng.range(0, 1) ? 1 : -1; break;
        case Fill::ones: v = 1; break;
        case Fill::zeros: v = -1; break;
        case Fill::alternating_rows: v = (m % 3 == 0) ? 1 : (m % 3 == 1 ? -1 : (rng.range(0, 1) ? 1 : -1)); break;
      }
      signs[m * K + k] = v;
    }
  std::vector<uint8_t> bits(b1_bits_bytes(M, K), 0xA5);
  pack_b1_from_signs(signs.data(), K, M, K, bits.data(), 0, tiles);
  std::vector<int8_t> back(M * K);
  unpack_b1_to_signs(bits.data(), M, K, back.data(), K);
  CHECK(back == signs, "pack/unpack round trip M=%lld K=%lld", (long long)M, (long long)K);

  std::vector<float> scales;
  if (c.mode == kScaleTensor) scales = {0.0625f + rng.uniform()};
  if (c.mode == kScaleRow) {
    scales.resize(tiles * kB1Rows);
    for (auto& s : scales) s = rng.range(0, 9) == 0 ? 0.0f : 0.01f + rng.uniform();
  }

  std::vector<int8_t> q(B * K);  // [B, K]
  for (int64_t i = 0; i < B * K; ++i) {
    switch (c.act) {
      case Act::random: q[i] = static_cast<int8_t>(rng.range(-128, 127)); break;
      case Act::max: q[i] = 127; break;
      case Act::min: q[i] = -128; break;
      case Act::extremes: q[i] = (rng.range(0, 1)) ? 127 : -128; break;
      case Act::zeros: q[i] = 0; break;
    }
  }
  std::vector<float> ascale(B), bias(B);
  std::vector<int32_t> sum(B, 0);
  for (int64_t b = 0; b < B; ++b) {
    ascale[b] = 0.5f + rng.uniform() * 100.0f;
    bias[b] = rng.normal() * 10.0f;
    for (int64_t k = 0; k < K; ++k) sum[b] += q[b * K + k];
  }
  QActs a{q.data(), ascale.data(), sum.data(), nullptr, B, K, K};
  BinaryMat w{bits.data(), scales.data(), M, K, c.mode};
  const float* tb = c.tok_bias ? bias.data() : nullptr;

  // Contract evaluated directly on signs.
  std::vector<float> expect(B * M);
  for (int64_t b = 0; b < B; ++b)
    for (int64_t m = 0; m < M; ++m) {
      int32_t dot = 0;
      for (int64_t k = 0; k < K; ++k) dot += signs[m * K + k] * q[b * K + k];
      const float ws = c.mode == kScaleRow ? scales[m] : scales[0];
      float v = (static_cast<float>(dot) * ws) / ascale[b];
      if (tb) v = v + tb[b];
      expect[b * M + m] = v;
    }

  for (const auto& [t, name] : tables) {
    const int64_t ldy = M + 3;
    std::vector<float> y(B * ldy, -777.0f);
    // Two calls over a split tile range, as the thread pool would issue them.
    const int64_t split = tiles / 2;
    t.binary_gemm(w, a, tb, y.data(), ldy, 0, split);
    t.binary_gemm(w, a, tb, y.data(), ldy, split, tiles);
    int bad = 0;
    for (int64_t b = 0; b < B; ++b) {
      for (int64_t m = 0; m < M; ++m) {
        if (!same_bits(y[b * ldy + m], expect[b * M + m]) && ++bad <= 3)
          CHECK(false, "%s(%s) M=%lld K=%lld B=%lld mode=%d bias=%d b=%lld m=%lld got %.9g want %.9g",
                name.c_str(), t.v_binary, (long long)M, (long long)K, (long long)B, c.mode, c.tok_bias,
                (long long)b, (long long)m, y[b * ldy + m], expect[b * M + m]);
      }
      for (int64_t m = M; m < ldy; ++m) CHECK(y[b * ldy + m] == -777.0f, "%s wrote past M", name.c_str());
    }
    CHECK(bad == 0, "%s(%s): %d mismatches M=%lld K=%lld B=%lld", name.c_str(), t.v_binary, bad, (long long)M,
          (long long)K, (long long)B);
  }
}

// An inconsistent a.sum must give the same (wrapped) result in every variant: the kernels use it,
// never recompute it.
void run_wrapping_sum(const std::vector<Variant>& tables, Rng& rng) {
  const int64_t M = 20, K = 128, B = 3;
  std::vector<int8_t> signs(M * K);
  for (auto& s : signs) s = rng.range(0, 1) ? 1 : -1;
  std::vector<uint8_t> bits(b1_bits_bytes(M, K));
  pack_b1_from_signs(signs.data(), K, M, K, bits.data(), 0, b1_tiles(M));
  std::vector<int8_t> q(B * K);
  for (auto& v : q) v = static_cast<int8_t>(rng.range(-128, 127));
  std::vector<int32_t> sum = {INT32_MIN, INT32_MAX, 12345};
  std::vector<float> ascale = {1.0f, 3.0f, 0.25f}, scales = {1.5f};
  QActs a{q.data(), ascale.data(), sum.data(), nullptr, B, K, K};
  BinaryMat w{bits.data(), scales.data(), M, K, kScaleTensor};
  std::vector<float> ref(B * M);
  tables[0].t.binary_gemm(w, a, nullptr, ref.data(), M, 0, b1_tiles(M));
  for (const auto& [t, name] : tables) {
    std::vector<float> y(B * M);
    t.binary_gemm(w, a, nullptr, y.data(), M, 0, b1_tiles(M));
    bool same = true;
    for (int64_t i = 0; i < B * M; ++i) same = same && same_bits(y[i], ref[i]);
    CHECK(same, "%s: inconsistent a.sum handled differently from scalar", name.c_str());
  }
}

void run_prep(const std::vector<Variant>& tables, int64_t B, int64_t K, bool scale, bool bias, Rng& rng) {
  const int64_t ldx = K + 5, ldxs = K + 2;
  std::vector<float> x(B * ldx), cs(K), cb(K);
  for (auto& v : x) v = rng.normal() * 4.0f;
  for (auto& v : cs) v = rng.uniform() * 2.0f;
  for (auto& v : cb) v = rng.normal() * 0.1f;
  // Expected, straight from the contract.
  std::vector<float> xs_want(B * K), tb_want(B);
  for (int64_t b = 0; b < B; ++b) {
    float p[16] = {};
    for (int64_t k = 0; k < K; ++k) {
      const float xv = x[b * ldx + k];
      xs_want[b * K + k] = scale ? xv * cs[k] : xv;
      const float prod = cb[k] * xv;
      p[k % 16] = p[k % 16] + prod;
    }
    for (int h = 8; h >= 2; h /= 2)
      for (int l = 0; l < h; ++l) p[l] = p[l] + p[l + h];
    tb_want[b] = p[0] + p[1];
  }
  for (const auto& [t, name] : tables) {
    std::vector<float> xs(B * ldxs, -777.0f), tb(B, -777.0f);
    t.binary_prep(x.data(), ldx, B, K, scale ? cs.data() : nullptr, bias ? cb.data() : nullptr, xs.data(), ldxs,
                  tb.data());
    int bad = 0;
    for (int64_t b = 0; b < B; ++b) {
      for (int64_t k = 0; k < K; ++k) bad += !same_bits(xs[b * ldxs + k], xs_want[b * K + k]);
      for (int64_t k = K; k < ldxs; ++k) bad += xs[b * ldxs + k] != -777.0f;
      if (bias) {
        CHECK(same_bits(tb[b], tb_want[b]), "%s prep B=%lld K=%lld tok_bias[%lld] got %.9g want %.9g",
              name.c_str(), (long long)B, (long long)K, (long long)b, tb[b], tb_want[b]);
      } else {
        CHECK(tb[b] == -777.0f, "%s prep wrote tok_bias without col_bias", name.c_str());
      }
    }
    CHECK(bad == 0, "%s prep B=%lld K=%lld scale=%d: %d xs mismatches", name.c_str(), (long long)B,
          (long long)K, scale, bad);
  }
}

void test_repack_f32(Rng& rng) {
  const int64_t M = 19, K = 192;
  std::vector<float> w(M * K);
  for (auto& v : w) {
    const int64_t r = rng.range(0, 9);
    v = r == 0 ? 0.0f : (r == 1 ? -0.0f : rng.normal());
  }
  std::vector<uint8_t> bits(b1_bits_bytes(M, K), 0x5A);
  repack_b1_from_f32(w.data(), K, M, K, bits.data(), 0, b1_tiles(M));
  std::vector<int8_t> s(M * K);
  unpack_b1_to_signs(bits.data(), M, K, s.data(), K);
  bool ok = true;
  for (int64_t i = 0; i < M * K; ++i) ok = ok && s[i] == (w[i] < 0.0f ? -1 : 1);
  CHECK(ok, "f32 repack: sign(w) with sign(0) = +1");
  // Padded rows 19..31 are zero bits.
  bool pad_zero = true;
  const int64_t kchunks = K / kB1KStep;
  for (int64_t kc = 0; kc < kchunks; ++kc)
    for (int r = 3; r < 16; ++r)
      for (int j = 0; j < 8; ++j) pad_zero = pad_zero && bits[(1 * kchunks + kc) * kB1ChunkBytes + 8 * r + j] == 0;
  CHECK(pad_zero, "padded rows are zero bits");
}

void test_repack_onebit(Rng& rng) {
  const int64_t M = 33, K = 320;
  std::vector<int8_t> signs(M * K);
  for (auto& v : signs) v = rng.range(0, 1) ? 1 : -1;
  std::vector<uint8_t> src(M * K / 8, 0);  // [M, K/8], bit 1 = -1
  for (int64_t m = 0; m < M; ++m)
    for (int64_t k = 0; k < K; ++k)
      if (signs[m * K + k] < 0) src[m * (K / 8) + k / 8] = static_cast<uint8_t>(src[m * (K / 8) + k / 8] | (1u << (k % 8)));
  std::vector<uint8_t> bits(b1_bits_bytes(M, K));
  repack_b1_from_onebit(src.data(), M, K, bits.data(), 0, 1);
  repack_b1_from_onebit(src.data(), M, K, bits.data(), 1, b1_tiles(M));
  std::vector<int8_t> back(M * K);
  unpack_b1_to_signs(bits.data(), M, K, back.data(), K);
  CHECK(back == signs, "OneBit repack round trip (bit 1 = -1)");
}

void test_repack_q1_0(Rng& rng) {
  const int64_t M = 21, K = 384, nb = K / kQ1BlockK, rb = nb * kQ1BlockBytes;
  std::vector<uint8_t> src(M * rb);
  std::vector<float> want_w(M * K);  // dequantized: (2 bit - 1) * d
  const int64_t bad_row = 7, zero_row = 11;
  for (int64_t m = 0; m < M; ++m) {
    const uint16_t base = f32_to_fp16(0.01f + rng.uniform());
    for (int64_t j = 0; j < nb; ++j) {
      uint16_t h = rng.range(0, 1) ? base : static_cast<uint16_t>(base | 0x8000);  // +-|d|
      if (m == bad_row && j == 2) h = f32_to_fp16(fp16_to_f32(base) * 2.0f);
      if (m == zero_row) h = (j == 1) ? 0x8000 : 0;  // +-0: all weights 0
      uint8_t* blk = src.data() + m * rb + j * kQ1BlockBytes;
      std::memcpy(blk, &h, 2);
      for (int e = 0; e < 16; ++e) blk[2 + e] = static_cast<uint8_t>(rng.range(0, 255));
      const float d = fp16_to_f32(h);
      for (int e = 0; e < kQ1BlockK; ++e) {
        const int bit = (blk[2 + e / 8] >> (e % 8)) & 1;
        want_w[m * K + j * kQ1BlockK + e] = static_cast<float>(2 * bit - 1) * d;
      }
    }
  }
  const int64_t tiles = b1_tiles(M);
  std::vector<uint8_t> bits(b1_bits_bytes(M, K));
  std::vector<float> rs(tiles * kB1Rows, -1.0f);
  const int64_t bad = repack_b1_from_q1_0(src.data(), M, K, bits.data(), rs.data(), 0, tiles);
  CHECK(bad == 1, "Q1_0: one non-uniform row reported, got %lld", (long long)bad);
  std::vector<int8_t> s(M * K);
  unpack_b1_to_signs(bits.data(), M, K, s.data(), K);
  bool ok = true;
  for (int64_t m = 0; m < M; ++m) {
    if (m == bad_row) continue;
    for (int64_t k = 0; k < K; ++k) ok = ok && static_cast<float>(s[m * K + k]) * rs[m] == want_w[m * K + k];
  }
  CHECK(ok, "Q1_0 repack: sign * row scale == dequantized weight (negative block scales flip bits)");
  bool pad = true;
  for (int64_t m = M; m < tiles * kB1Rows; ++m) pad = pad && rs[m] == 0.0f;
  CHECK(pad, "Q1_0 padded row scales are 0");
}

}  // namespace

int main() {
  const auto tables = all_variants();
  Rng rng(7);
  std::vector<Case> cases;
  const int64_t Ms[] = {1, 15, 17, 33};
  const int64_t Ks[] = {64, 192, 704, 8192};
  for (int64_t M : Ms)
    for (int64_t K : Ks)
      for (int32_t mode : {kScaleTensor, kScaleRow})
        for (bool tb : {false, true}) {
          const int64_t B = K >= 8192 ? rng.range(1, 5) : rng.range(1, 13);
          cases.push_back({M, K, B, mode, tb, Fill::random, Act::random});
        }
  // Every token-block width and remainder.
  for (int64_t B = 1; B <= 13; ++B) cases.push_back({33, 192, B, kScaleRow, B % 2 == 0, Fill::random, Act::random});
  cases.push_back({17, 704, 64, kScaleRow, true, Fill::random, Act::random});
  cases.push_back({48, 256, 64, kScaleTensor, false, Fill::alternating_rows, Act::extremes});
  // Extremes: all-one / all-zero bit rows with +127 / -128 activations over long K (|pos| = 128 K:
  // overflows any int16 accumulation that is not widened in time).
  for (Fill f : {Fill::ones, Fill::zeros, Fill::alternating_rows})
    for (Act act : {Act::max, Act::min, Act::extremes, Act::zeros})
      for (int64_t K : {int64_t{8192}, int64_t{32768}})
        cases.push_back({17, K, K > 8192 ? 2 : 5, kScaleRow, true, f, act});
  // The same at B = 1 over 1 to 5 tiles (AVX-512 with VPOPCNTDQ: bit-serial up to K = 16384, the direct
  // tile path above it).
  for (Fill f : {Fill::ones, Fill::zeros, Fill::alternating_rows})
    for (Act act : {Act::max, Act::min, Act::extremes})
      for (int64_t M : {int64_t{16}, int64_t{79}})
        for (int64_t K : {int64_t{16384}, int64_t{32768}}) cases.push_back({M, K, 1, kScaleRow, false, f, act});
  // The same extremes through the expanded paths (B >= 32), K-blocks of 4096.
  cases.push_back({17, 8192, 40, kScaleRow, true, Fill::ones, Act::min});
  cases.push_back({17, 8192, 40, kScaleTensor, false, Fill::zeros, Act::max});
  cases.push_back({33, 8192, 37, kScaleRow, true, Fill::alternating_rows, Act::extremes});
  cases.push_back({70, 2560, 16, kScaleTensor, false, Fill::random, Act::random});
  cases.push_back({40, 6912, 33, kScaleRow, true, Fill::random, Act::extremes});
  cases.push_back({16, 1024, 128, kScaleRow, false, Fill::random, Act::random});
  for (const auto& c : cases) run_case(tables, c, rng);
  run_wrapping_sum(tables, rng);

  for (int64_t K : {1, 7, 15, 16, 17, 31, 64, 100, 2560, 6913})
    for (int64_t B : {1, 3})
      for (bool sc : {false, true})
        for (bool bi : {false, true}) run_prep(tables, B, K, sc, bi, rng);

  test_repack_f32(rng);
  test_repack_onebit(rng);
  test_repack_q1_0(rng);

  std::printf("ISAs:");
  for (const auto& [t, name] : tables) std::printf(" %s(%s)", name.c_str(), t.v_binary);
  std::printf("\n");
  return finish("test_binary");
}
