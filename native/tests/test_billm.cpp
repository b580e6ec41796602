// Every billm_gemm variant vs the scalar one, bit-exact, on random BR16 matrices (billm.h); the scalar
// variant vs a direct float64 evaluation of the BiLLM weights it encodes; billm_prep on its own.
#include <algorithm>

#include "runtime/repack_ternary.h"  // f32_to_fp16, fp16_to_f32
#include "test_util.h"

using namespace bitllm_test;

namespace {

enum class Act { random, max, min, extremes, zeros };

struct Matrix {
  int64_t M, K, tiles;
  std::vector<uint8_t> salient;  // [K/8]
  std::vector<int32_t> boff, ng;  // [nb + 1], [nb]
  std::vector<uint8_t> data;     // [tiles, tile_bytes]
};

inline bool bit(const uint8_t* p, int64_t i) { return (p[i >> 3] >> (i & 7)) & 1; }
inline void set_bit(uint8_t* p, int64_t i) { p[i >> 3] = static_cast<uint8_t>(p[i >> 3] | (1u << (i & 7))); }

// A random well-formed BR16 matrix: block j has counts[j] salient columns, sig / grp zero there, s1 /
// res padding bits zero, finite fp16 scalars (zero_rows: every bit and scalar of those rows 0).
Matrix random_matrix(int64_t M, int64_t K, const std::vector<int>& counts, const std::vector<int64_t>& zero_rows, Rng& rng) {
  Matrix w{M, K, (M + kBillmRows - 1) / kBillmRows, std::vector<uint8_t>(K / 8), {}, {}, {}};
  const int64_t nb = K / kBillmBlock;
  w.boff.assign(nb + 1, 0);
  w.ng.assign(nb, 0);
  for (int64_t j = 0; j < nb; ++j) {
    std::vector<int> cols(kBillmBlock);
    for (int c = 0; c < kBillmBlock; ++c) cols[c] = c;
    for (int c = kBillmBlock - 1; c > 0; --c) std::swap(cols[c], cols[rng.range(0, c)]);
    const int n = counts[j % counts.size()];
    for (int i = 0; i < n; ++i) set_bit(w.salient.data(), j * kBillmBlock + cols[i]);
    w.ng[j] = (n + 3) / 4;
    w.boff[j + 1] = w.boff[j] + static_cast<int32_t>(billm_block_bytes(w.ng[j]));
  }
  const int64_t tile_bytes = w.boff[nb];
  w.data.assign(w.tiles * tile_bytes, 0);
  for (int64_t m = 0; m < M; ++m) {
    if (std::find(zero_rows.begin(), zero_rows.end(), m) != zero_rows.end()) continue;
    const int64_t t = m / kBillmRows, r = m % kBillmRows;
    for (int64_t j = 0; j < nb; ++j) {
      uint8_t* rec = w.data.data() + t * tile_bytes + w.boff[j];
      int si = 0;
      for (int c = 0; c < kBillmBlock; ++c) {
        const int g = c / 4, b = static_cast<int>(4 * r + c % 4);
        if (bit(w.salient.data(), j * kBillmBlock + c)) {
          if (rng.next() & 1) set_bit(rec + 512 + 8 * (si / 4), 4 * r + si % 4);
          if (rng.next() & 1) set_bit(rec + 512 + 8 * (w.ng[j] + si / 4), 4 * r + si % 4);
          ++si;
          continue;
        }
        if (rng.next() & 1) set_bit(rec + 8 * g, b);
        if (rng.next() & 1) set_bit(rec + 256 + 8 * g, b);
      }
      uint8_t* sc = rec + 512 + 16 * w.ng[j];
      for (int l = 0; l < kBillmScalars; ++l) {
        const float v = l % 2 == 0 && l >= 4 ? std::fabs(0.05f * rng.normal()) : 0.05f * rng.normal();
        const uint16_t h = f32_to_fp16(v);
        std::memcpy(sc + 2 * (l * kBillmRows + r), &h, 2);
      }
    }
  }
  return w;
}

// The weight (m, k) the matrix encodes, in float64.
double weight(const Matrix& w, int64_t m, int64_t k) {
  const int64_t j = k / kBillmBlock, c = k % kBillmBlock, t = m / kBillmRows, r = m % kBillmRows;
  const uint8_t* rec = w.data.data() + t * w.boff.back() + w.boff[j];
  const uint8_t* sc = rec + 512 + 16 * w.ng[j];
  auto f = [&](int l) {
    uint16_t h;
    std::memcpy(&h, sc + 2 * (l * kBillmRows + r), 2);
    return static_cast<double>(fp16_to_f32(h));
  };
  auto sgn = [&](const uint8_t* word, int64_t i) { return bit(word, i) ? 1.0 : -1.0; };
  if (bit(w.salient.data(), k)) {
    int si = 0;
    for (int64_t c2 = 0; c2 < c; ++c2) si += bit(w.salient.data(), j * kBillmBlock + c2);
    return f(0) * sgn(rec + 512 + 8 * (si / 4), 4 * r + si % 4) + f(1) * sgn(rec + 512 + 8 * (w.ng[j] + si / 4), 4 * r + si % 4) +
           f(2) + f(3);
  }
  const bool grp_b = bit(rec + 256 + 8 * (c / 4), 4 * r + c % 4);
  const double s = sgn(rec + 8 * (c / 4), 4 * r + c % 4);
  return grp_b ? f(6) * s + f(7) : f(4) * s + f(5);
}

void run_case(const std::vector<KernelTable>& tables, int64_t M, int64_t K, int64_t B, const std::vector<int>& counts, Act act,
              Rng& rng) {
  const std::vector<int64_t> zero_rows = M > 2 ? std::vector<int64_t>{0, M - 1} : std::vector<int64_t>{};
  const Matrix w = random_matrix(M, K, counts, zero_rows, rng);
  const int64_t nb = K / kBillmBlock;
  std::vector<int8_t> q(B * K);
  for (auto& v : q) {
    switch (act) {
      case Act::random: v = static_cast<int8_t>(rng.range(-128, 127)); break;
      case Act::max: v = 127; break;
      case Act::min: v = -128; break;
      case Act::extremes: v = rng.next() & 1 ? 127 : -128; break;
      case Act::zeros: v = 0; break;
    }
  }
  std::vector<float> scale(B);
  for (auto& s : scale) s = 0.5f + rng.uniform() * 100.0f;
  std::vector<int8_t> qs(B * K);
  std::vector<int32_t> ssum(B * nb), bsum(B * nb);
  tables[0].billm_prep(w.salient.data(), K, q.data(), K, B, qs.data(), ssum.data(), bsum.data());
  const BillmMat mat{w.data.data(), w.boff.data(), w.ng.data(), M, K};
  const BillmActs acts{q.data(), scale.data(), qs.data(), ssum.data(), bsum.data(), B, K};
  std::vector<float> want(B * M, -1.0f);
  tables[0].billm_gemm(mat, acts, want.data(), M, 0, w.tiles);
  // Scalar vs the weights it encodes (float64 dot), within float rounding of the 8-term epilogue.
  bool close = true;
  for (int64_t b = 0; b < B; ++b)
    for (int64_t m = 0; m < M; ++m) {
      double dot = 0, mag = 0;
      for (int64_t k = 0; k < K; ++k) {
        const double p = weight(w, m, k) * q[b * K + k];
        dot += p;
        mag += std::fabs(p);
      }
      close = close && std::fabs(want[b * M + m] - dot / scale[b]) <= 1e-5 * (mag + 1e-30) / scale[b];
    }
  CHECK(close, "scalar vs float64 BiLLM dot: M=%lld K=%lld B=%lld", static_cast<long long>(M), static_cast<long long>(K),
        static_cast<long long>(B));
  for (size_t i = 1; i < tables.size(); ++i) {
    std::vector<float> got(B * M, -2.0f);
    // Two tile ranges, as the pool splits them.
    const int64_t mid = w.tiles / 2;
    tables[i].billm_gemm(mat, acts, got.data(), M, 0, mid);
    tables[i].billm_gemm(mat, acts, got.data(), M, mid, w.tiles);
    bool same = true;
    int64_t first = -1;
    for (int64_t e = 0; e < B * M; ++e)
      if (!same_bits(got[e], want[e]) && first < 0) first = e, same = false;
    CHECK(same, "%s M=%lld K=%lld B=%lld act=%d: y[%lld] = %g, scalar %g", isa_name(tables[i].isa), static_cast<long long>(M),
          static_cast<long long>(K), static_cast<long long>(B), static_cast<int>(act), static_cast<long long>(first),
          first >= 0 ? got[first] : 0.0, first >= 0 ? want[first] : 0.0);
  }
}

void test_prep(const std::vector<KernelTable>& tables, Rng& rng) {
  const int64_t K = 384, B = 3, nb = K / kBillmBlock;
  std::vector<uint8_t> salient(K / 8);
  for (auto& v : salient) v = static_cast<uint8_t>(rng.next());
  std::vector<int8_t> q(B * K);
  for (auto& v : q) v = static_cast<int8_t>(rng.range(-128, 127));
  std::vector<int8_t> qs(B * K, 99);
  std::vector<int32_t> ssum(B * nb), bsum(B * nb);
  tables[0].billm_prep(salient.data(), K, q.data(), K, B, qs.data(), ssum.data(), bsum.data());
  bool ok = true;
  for (int64_t b = 0; b < B; ++b)
    for (int64_t j = 0; j < nb; ++j) {
      int n = 0;
      int32_t ss = 0, bs = 0;
      for (int c = 0; c < kBillmBlock; ++c) {
        const int64_t k = j * kBillmBlock + c;
        bs += q[b * K + k];
        if (bit(salient.data(), k)) {
          ok = ok && qs[(b * nb + j) * kBillmBlock + n] == q[b * K + k];
          ss += q[b * K + k];
          ++n;
        }
      }
      for (int i = n; i < kBillmBlock; ++i) ok = ok && qs[(b * nb + j) * kBillmBlock + i] == 0;
      ok = ok && ssum[b * nb + j] == ss && bsum[b * nb + j] == bs;
    }
  CHECK(ok, "billm_prep: compacted salient codes (zero padded), salient and block sums");
}

}  // namespace

int main() {
  const auto tables = all_tables();
  Rng rng(11);
  const std::vector<int> mixed = {0, 1, 3, 4, 5, 31, 49, 64, 65, 100, 127, 128};
  for (int64_t M : {1, 15, 16, 17, 33})
    for (int64_t K : {128, 384, 1024})
      for (int64_t B : {1, 2, 5}) run_case(tables, M, K, B, mixed, Act::random, rng);
  // Every token-block width and remainder.
  for (int64_t B = 1; B <= 9; ++B) run_case(tables, 33, 256, B, mixed, Act::random, rng);
  // Extreme activations over every salient count (|sums| up to 128 * 128 per block).
  for (Act act : {Act::max, Act::min, Act::extremes, Act::zeros})
    for (int n : {0, 49, 128}) run_case(tables, 17, 512, 3, {n}, act, rng);
  run_case(tables, 40, 6912, 2, {1, 12, 25, 49}, Act::random, rng);
  // Long tile ranges (the tile-blocked B = 1 paths: 4, 2 and 1 tiles per pass).
  for (int64_t M : {97, 100, 128}) run_case(tables, M, 384, 1, mixed, Act::random, rng);
  test_prep(tables, rng);

  std::printf("ISAs:");
  for (const auto& t : tables) std::printf(" %s(%s)", isa_name(t.isa), t.v_billm);
  std::printf("\n");
  return finish("test_billm");
}
