// The q3 KV cache (ops.h kv_store_q3 / attention_q3, BitNet a4.8's 3-bit K/V): every variant's store
// against the ops.h quantization written out independently here (bit for bit, so every variant equals
// scalar), the documented layout on a hand-made block, the round-trip bound, and every variant's
// attention against a double evaluation over the dequantized rows within attention_f16's bound.
#include <algorithm>

#include "runtime/repack_ternary.h"  // fp16_to_f32, f32_to_fp16
#include "test_util.h"

using namespace bitllm_test;

namespace {

constexpr double kU = 1.0 / 16777216.0;  // 2^-24

std::vector<KernelTable> g_tables;

double g_attn_worst[4];  // largest error / bound seen
double g_attn_rel[4];    // largest |o - o_exact| / max|v| seen

// Code i of a block: bit b of code i is bit 3i + b of the little-endian 12-byte code string.
int code_at(const uint8_t* blk, int64_t i) {
  int c = 0;
  for (int b = 0; b < 3; ++b) {
    const int64_t bit = 3 * i + b;
    c |= ((blk[2 + bit / 8] >> (bit % 8)) & 1) << b;
  }
  return c;
}

// The ops.h block quantization, written out independently of the kernels (codes set bit by bit).
void want_q3_block(const float* x, uint8_t* dst) {
  float amax = 0.0f;
  for (int i = 0; i < 32; ++i) amax = std::max(amax, std::fabs(x[i]));
  const uint16_t dh = f32_to_fp16(amax / 3.0f);
  const float df = fp16_to_f32(dh);
  dst[0] = static_cast<uint8_t>(dh & 0xFF);
  dst[1] = static_cast<uint8_t>(dh >> 8);
  std::memset(dst + 2, 0, 12);
  for (int i = 0; i < 32; ++i) {
    float q = 0.0f;
    if (df != 0.0f) {
      q = std::nearbyint(x[i] / df);
      q = q < -4.0f ? -4.0f : (q > 3.0f ? 3.0f : q);
    }
    const int c = static_cast<int>(q) + 4;
    for (int b = 0; b < 3; ++b)
      if ((c >> b) & 1) dst[2 + (3 * i + b) / 8] |= static_cast<uint8_t>(1u << ((3 * i + b) % 8));
  }
}

double block_scale(const uint8_t* blk) { return fp16_to_f32(static_cast<uint16_t>(blk[0] | (blk[1] << 8))); }

double q3_value(const uint8_t* row, int64_t d) {
  const uint8_t* blk = row + (d / 32) * 14;
  return static_cast<double>(code_at(blk, d % 32) - 4) * block_scale(blk);
}

// x [B, ld] whose 32-blocks cycle through adversarial kinds.
void fill_adversarial(std::vector<float>& x, int64_t ld, Rng& rng) {
  for (size_t i = 0; i < x.size(); ++i) {
    const int64_t blk = static_cast<int64_t>(i % ld) / 32, row = static_cast<int64_t>(i) / ld;
    const float s = (rng.next() & 1) ? -1.0f : 1.0f;
    switch ((row * 3 + blk) % 10) {
      case 0: x[i] = 0.0f; break;                                                   // d = 0, codes 4
      case 1: x[i] = s * 0.75f * static_cast<float>(rng.range(0, 8)); break;        // amax 6: ties k + 0.5
      case 2: x[i] = rng.normal() * 1e-6f; break;                                   // subnormal-half d
      case 3: x[i] = (rng.uniform() - 0.5f) * 8.0f * 5.9604645e-8f; break;          // d a few 2^-24: clamps
      case 4: x[i] = (rng.uniform() - 0.5f) * 6.0f * 2.9802322e-8f; break;          // the d = 0 threshold
      case 5: x[i] = s * ((rng.next() % 10 == 0) ? 196559.0f : rng.uniform() * 1000.0f); break;  // d = 65504
      case 6: x[i] = s * ((rng.next() % 10 == 0) ? 3e5f : rng.uniform()); break;   // d = +Inf, codes 4
      case 7: x[i] = s * ((rng.next() % 5 == 0) ? 7.5f : rng.uniform() * 7.5f); break;  // ±max repeated
      case 8: x[i] = rng.normal() * 1e-30f; break;                                  // d = 0
      default: x[i] = rng.normal() * 2.0f; break;
    }
  }
}

void test_layout() {
  // q_i = (i % 8) - 4 with d = 2^-24 (amax 2^-22 / 3 rounds down to the smallest half subnormal):
  // codes 0..7 repeated, 24 bits 0xFAC688 per 8 codes.
  float x[32];
  for (int i = 0; i < 32; ++i) x[i] = static_cast<float>((i % 8) - 4) * 5.9604645e-8f;
  const uint8_t want[14] = {0x01, 0x00, 0x88, 0xC6, 0xFA, 0x88, 0xC6, 0xFA, 0x88, 0xC6, 0xFA, 0x88, 0xC6, 0xFA};
  uint8_t mine[14];
  want_q3_block(x, mine);
  CHECK(std::memcmp(mine, want, 14) == 0, "the test's own quantization differs from the documented layout");
  const int32_t pos = 0;
  for (const auto& t : g_tables) {
    uint8_t got[14];
    t.kv_store_q3(x, &pos, got, 1, 1, 32, 32, 1);
    CHECK(std::memcmp(got, want, 14) == 0, "kv_store_q3 %s: hand-made block's bytes differ from ops.h's layout",
          isa_name(t.isa));
  }
  // Overflow: d = +Inf and codes 4 (0b100 repeated: 0x924924).
  for (int i = 0; i < 32; ++i) x[i] = i == 5 ? -196560.0f : 1.0f;
  const uint8_t inf_want[14] = {0x00, 0x7C, 0x24, 0x49, 0x92, 0x24, 0x49, 0x92, 0x24, 0x49, 0x92, 0x24, 0x49, 0x92};
  for (const auto& t : g_tables) {
    uint8_t got[14];
    t.kv_store_q3(x, &pos, got, 1, 1, 32, 32, 1);
    CHECK(std::memcmp(got, inf_want, 14) == 0, "kv_store_q3 %s: overflowing block is not {+Inf, codes 4}",
          isa_name(t.isa));
  }
}

void test_kv_store_q3(int64_t n_kv, int64_t hd, int64_t cap, const std::vector<int32_t>& pos, Rng& rng) {
  const int64_t B = static_cast<int64_t>(pos.size()), ld = n_kv * hd + 5, rb = q3_row_bytes(hd);
  std::vector<float> x(B * ld);
  fill_adversarial(x, ld, rng);
  std::vector<uint8_t> want(n_kv * cap * rb, 0xA5);
  for (int64_t b = 0; b < B; ++b)
    for (int64_t h = 0; h < n_kv; ++h)
      for (int64_t k = 0; k < hd / 32; ++k)
        want_q3_block(x.data() + b * ld + h * hd + k * 32, want.data() + (h * cap + pos[b]) * rb + k * 14);
  for (const auto& t : g_tables) {
    std::vector<uint8_t> cache(n_kv * cap * rb, 0xA5);
    t.kv_store_q3(x.data(), pos.data(), cache.data(), B, n_kv, hd, ld, cap);
    CHECK(cache == want, "kv_store_q3 %s n_kv=%lld hd=%lld differs from the ops.h quantization (or touched other rows)",
          isa_name(t.isa), (long long)n_kv, (long long)hd);
  }
  // Round trip within 0.5 d + 2^-20 d + 2^-23 (ops.h), for the last token stored at each position.
  for (int64_t b = 0; b < B; ++b) {
    bool last = true;
    for (int64_t c = b + 1; c < B; ++c) last = last && pos[c] != pos[b];
    if (!last) continue;
    for (int64_t h = 0; h < n_kv; ++h)
      for (int64_t d = 0; d < hd; ++d) {
        const uint8_t* row = want.data() + (h * cap + pos[b]) * rb;
        const double dd = block_scale(row + (d / 32) * 14);
        if (std::isinf(dd)) {
          CHECK(code_at(row + (d / 32) * 14, d % 32) == 4, "q3 overflow block code is not 4");
          continue;
        }
        const double err = std::fabs(q3_value(row, d) - x[b * ld + h * hd + d]);
        CHECK(err <= 0.5 * dd + dd / 1048576.0 + 2.0 * kU, "q3 round trip error %.6g (x %.6g, d %.6g)", err,
              static_cast<double>(x[b * ld + h * hd + d]), dd);
      }
  }
}

void test_attention_q3(int64_t nh, int64_t nkv, int64_t hd, const std::vector<int32_t>& pos, float qs, float vs,
                       bool adversarial, Rng& rng) {
  const int64_t B = static_cast<int64_t>(pos.size()), r = nh / nkv, cap = 1024, rb = q3_row_bytes(hd);
  const int64_t ldq = nh * hd + 3, ldo = nh * hd + 1, ldkv = nkv * hd;
  int32_t maxpos = 0;
  for (int32_t p : pos) maxpos = std::max(maxpos, p);
  std::vector<int32_t> all;
  for (int32_t p = 0; p <= maxpos; ++p) all.push_back(p);
  std::vector<float> kx(all.size() * ldkv), vx(all.size() * ldkv), q(B * ldq);
  if (adversarial) {
    fill_adversarial(kx, ldkv, rng);
    fill_adversarial(vx, ldkv, rng);
    for (auto* v : {&kx, &vx})
      for (auto& e : *v)
        if (std::fabs(e) >= 196560.0f) e = 1.0f;  // overflowing blocks are not finite (ops.h)
  } else {
    for (auto& e : kx) e = rng.normal();
    for (auto& e : vx) e = rng.normal() * vs;
  }
  for (auto& e : q) e = rng.normal() * qs;
  const float scale = static_cast<float>(1.0 / std::sqrt(static_cast<double>(hd)));
  std::vector<uint8_t> kref, vref;
  for (const auto& t : g_tables) {
    std::vector<uint8_t> kc(nkv * cap * rb, 0xFF), vc(nkv * cap * rb, 0xFF);  // NaN scales where unwritten
    const int64_t n = static_cast<int64_t>(all.size());
    t.kv_store_q3(kx.data(), all.data(), kc.data(), n, nkv, hd, ldkv, cap);
    t.kv_store_q3(vx.data(), all.data(), vc.data(), n, nkv, hd, ldkv, cap);
    if (kref.empty()) {
      kref = kc;
      vref = vc;
    } else {
      CHECK(kc == kref && vc == vref, "kv_store_q3 %s caches differ from scalar", isa_name(t.isa));
    }
    std::vector<float> out(B * ldo, -777.0f), out1(B * ldo, -777.0f);
    std::vector<float> scratch(attention_scratch_floats(r, hd, maxpos + 1), -555.0f);
    const int64_t s1 = nh / 3, s2 = (2 * nh) / 3;
    for (auto [h0, h1] : {std::pair<int64_t, int64_t>{0, s1}, {s1, s2}, {s2, nh}})
      if (h0 < h1)
        t.attention_q3(q.data(), kc.data(), vc.data(), pos.data(), out.data(), B, nh, nkv, hd, cap, ldq, ldo, scale, h0,
                       h1, scratch.data());
    t.attention_q3(q.data(), kc.data(), vc.data(), pos.data(), out1.data(), B, nh, nkv, hd, cap, ldq, ldo, scale, 0, nh,
                   scratch.data());
    bool same = true;
    for (size_t i = 0; i < out.size(); ++i) same = same && same_bits(out[i], out1[i]);
    CHECK(same, "attention_q3 %s depends on the head split", isa_name(t.isa));
    int bad = 0;
    for (int64_t b = 0; b < B; ++b) {
      const int64_t L = pos[b] + 1;
      for (int64_t h = 0; h < nh; ++h) {
        const int64_t g = h / r;
        const float* qh = q.data() + b * ldq + h * hd;
        std::vector<double> s(L);
        double m = -INFINITY, S = 0.0, vmax = 0.0;
        for (int64_t tt = 0; tt < L; ++tt) {
          double dot = 0.0, mag = 0.0;
          for (int64_t d = 0; d < hd; ++d) {
            const double k = q3_value(kc.data() + (g * cap + tt) * rb, d);
            dot += qh[d] * k;
            mag += std::fabs(qh[d] * k);
            vmax = std::max(vmax, std::fabs(q3_value(vc.data() + (g * cap + tt) * rb, d)));
          }
          s[tt] = scale * dot;
          S = std::max(S, std::fabs(scale) * mag);
          m = std::max(m, s[tt]);
        }
        double sum = 0.0;
        for (auto& e : s) sum += (e = std::exp(e - m));
        const double bound = vmax * kU * (4 * S * (hd + 8) + L / 2.0 + 128);
        for (int64_t d = 0; d < hd; ++d) {
          double o = 0.0;
          for (int64_t tt = 0; tt < L; ++tt) o += s[tt] * q3_value(vc.data() + (g * cap + tt) * rb, d);
          o /= sum;
          const double got = out[b * ldo + h * hd + d], err = std::fabs(got - o);
          const int i = static_cast<int>(t.isa);
          if (bound > 0) g_attn_worst[i] = std::max(g_attn_worst[i], err / bound);
          if (vmax > 0) g_attn_rel[i] = std::max(g_attn_rel[i], err / vmax);
          if (!(err <= bound) && bad++ < 3)
            CHECK(false, "attention_q3 %s nh=%lld hd=%lld pos=%d h=%lld d=%lld got %.9g want %.9g (bound %.3g)",
                  isa_name(t.isa), (long long)nh, (long long)hd, pos[b], (long long)h, (long long)d, got, o, bound);
        }
      }
      for (int64_t i = nh * hd; i < ldo; ++i) CHECK(out[b * ldo + i] == -777.0f, "attention_q3 wrote past the heads");
    }
    CHECK(bad == 0, "attention_q3 %s nh=%lld nkv=%lld hd=%lld B=%lld: %d mismatches", isa_name(t.isa), (long long)nh,
          (long long)nkv, (long long)hd, (long long)B, bad);
  }
}

}  // namespace

int main() {
  g_tables = all_tables();
  Rng rng(11);

  test_layout();
  test_kv_store_q3(3, 96, 6, {5, 0, 3, 5}, rng);  // repeated position keeps the last
  test_kv_store_q3(1, 32, 2, {1}, rng);
  test_kv_store_q3(2, 128, 40, {0, 7, 14, 21, 28, 35, 2, 9, 16, 23, 30, 37, 4, 11, 18, 25, 32, 39, 6, 13}, rng);
  test_kv_store_q3(5, 64, 9, {8, 1, 1, 0, 4}, rng);

  // GQA groups 1..8 (every 4/2/1 head-block mix) x head_dim 32/64/128, one decode token and a batch.
  for (int64_t hd : {32, 64, 128})
    for (int64_t grp = 1; grp <= 8; ++grp) {
      const int64_t nkv = grp <= 4 ? 3 : 1;
      test_attention_q3(grp * nkv, nkv, hd, {static_cast<int32_t>(rng.range(0, 40))}, 1.0f, 1.0f, false, rng);
      std::vector<int32_t> pos;
      for (int b = 0; b < 3; ++b) pos.push_back(static_cast<int32_t>(rng.range(0, 300)));
      test_attention_q3(grp * nkv, nkv, hd, pos, 1.0f, 1.0f, false, rng);
    }
  test_attention_q3(20, 5, 128, {500}, 1.0f, 1.0f, false, rng);             // decode
  test_attention_q3(20, 5, 128, {37, 3, 200}, 30.0f, 1e4f, false, rng);     // peaked softmax, large V, out of order
  test_attention_q3(8, 2, 64, {100}, 0.0f, 1.0f, false, rng);               // uniform average
  test_attention_q3(16, 1, 64, {60, 61}, 1.0f, 1.0f, false, rng);           // group of 16 (> kAttnMaxGroup)
  test_attention_q3(6, 2, 96, {69, 0, 33}, 1e-3f, 1.0f, true, rng);         // zero, subnormal-d, ±max rows
  // Each SIMD table has its own q3 kernels (a fallback to scalar would leave the SIMD code untested).
  for (const auto& t : g_tables)
    if (t.isa != Isa::scalar)
      CHECK(t.attention_q3 != g_tables[0].attention_q3 && t.kv_store_q3 != g_tables[0].kv_store_q3,
            "%s q3 kernels fall back to scalar", isa_name(t.isa));

  std::printf("attention_q3 worst error / bound:");
  const char* names[] = {"scalar", "avx2", "avx512", "neon"};
  for (const auto& t : g_tables) {
    const int i = static_cast<int>(t.isa);
    std::printf(" %s %.4f (%.2g max|v|)", names[i], g_attn_worst[i], g_attn_rel[i]);
  }
  std::printf("\nISAs:");
  for (const auto& t : g_tables) std::printf(" %s(%s)", isa_name(t.isa), t.v_ops);
  std::printf("\n");
  return finish("test_kv_q3");
}
