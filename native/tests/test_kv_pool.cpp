// The paged attention kernels and the sequence-state pool (runtime/kv_pool.h):
//   - attention_paged_{f16,q8,q3} on every ISA give the bits of the flat kernels on the same rows when
//     the rows are scattered over 16-position pages in any page order (kernels/ops.h KvPages), and so
//     does attention_paged_f32 on the rows kv_rows_f32 converts;
//   - KvPool: admission rules (live sequences, contiguous positions, context, budget) fail without
//     changing anything; fork shares blocks, the first write copies a shared block (copy-on-write)
//     and leaves the other sequence's bytes alone; dispose / truncate return blocks.
//   - RecurrentPool (the recurrent kind): the same admission rules and all-or-nothing failures, a budget of
//     sequences, forks that copy the whole state, truncate to the length or to 0 only, zeroed fresh states.
#include <algorithm>
#include <numeric>

#include "runtime/kv_pool.h"
#include "runtime/recurrent_pool.h"
#include "test_util.h"

using namespace bitllm_test;

namespace {

std::vector<KernelTable> g_tables;

void test_paged_attention(KvKind kind, int64_t nh, int64_t nkv, int64_t hd, const std::vector<int32_t>& pos, Rng& rng) {
  const int64_t L = *std::max_element(pos.begin(), pos.end()) + 1;
  const int64_t cap = L + 5;
  const int64_t pt = kKvBlockTokens, pages = (L + pt - 1) / pt;
  const int64_t rb = kind == KvKind::q8 ? q8_row_bytes(hd) : kind == KvKind::q3 ? q3_row_bytes(hd) : 2 * hd;
  const int64_t B = static_cast<int64_t>(pos.size()), ldq = nh * hd + 3, ldo = nh * hd + 1, ldkv = nkv * hd;
  std::vector<float> kx(L * ldkv), vx(L * ldkv), q(B * ldq);
  for (auto& x : kx) x = rng.normal();
  for (auto& x : vx) x = rng.normal();
  for (auto& x : q) x = rng.normal();
  std::vector<int32_t> all(L);
  std::iota(all.begin(), all.end(), 0);
  const float scale = 1.0f / std::sqrt(static_cast<float>(hd));
  for (const auto& t : g_tables) {
    // Flat caches.
    std::vector<uint8_t> kc(nkv * cap * rb), vc(nkv * cap * rb);
    auto store = [&](const float* x, const int32_t* p, int64_t n, uint8_t* cache, int64_t capacity) {
      if (kind == KvKind::f16) t.kv_store_f16(x, p, reinterpret_cast<uint16_t*>(cache), n, nkv, hd, ldkv, capacity);
      else (kind == KvKind::q8 ? t.kv_store_q8 : t.kv_store_q3)(x, p, cache, n, nkv, hd, ldkv, capacity);
    };
    store(kx.data(), all.data(), L, kc.data(), cap);
    store(vx.data(), all.data(), L, vc.data(), cap);
    std::vector<float> want(B * ldo, -777.0f), got(B * ldo, -777.0f);
    std::vector<float> scratch(attention_scratch_floats(nh / nkv, hd, L));
    const void* kp = kc.data();
    const void* vp = vc.data();
    const KvPages flat{&kp, &vp, 0, 0, cap};
    const attention_paged_fn fn =
        kind == KvKind::q8 ? t.attention_paged_q8 : kind == KvKind::q3 ? t.attention_paged_q3 : t.attention_paged_f16;
    // The flat kernel of the table (the one-page case).
    if (kind == KvKind::f16)
      t.attention_f16(q.data(), reinterpret_cast<const uint16_t*>(kc.data()), reinterpret_cast<const uint16_t*>(vc.data()),
                      pos.data(), want.data(), B, nh, nkv, hd, cap, ldq, ldo, scale, 0, nh, scratch.data());
    else
      (kind == KvKind::q8 ? t.attention_q8 : t.attention_q3)(q.data(), kc.data(), vc.data(), pos.data(), want.data(), B, nh,
                                                           nkv, hd, cap, ldq, ldo, scale, 0, nh, scratch.data());
    std::vector<float> one(B * ldo, -777.0f);
    fn(q.data(), flat, pos.data(), one.data(), B, nh, nkv, hd, ldq, ldo, scale, 0, nh, scratch.data());
    CHECK(std::memcmp(one.data(), want.data(), one.size() * 4) == 0, "%s kind %d: one-page paged != flat", isa_name(t.isa),
          static_cast<int>(kind));
    // Pages in shuffled memory order, K and V in one block each at different offsets (as the pool lays them out).
    const int64_t plane = nkv * pt * rb, koff = 3 * plane, voff = 5 * plane;
    std::vector<std::vector<uint8_t>> mem(pages, std::vector<uint8_t>(7 * plane, 0xEE));
    std::vector<int64_t> order(pages);
    std::iota(order.begin(), order.end(), 0);
    for (int64_t i = pages - 1; i > 0; --i) std::swap(order[i], order[rng.range(0, i)]);
    std::vector<const void*> table(pages);
    for (int64_t j = 0; j < pages; ++j) table[j] = mem[order[j]].data();
    for (int64_t p = 0; p < L; ++p) {
      const int32_t off = static_cast<int32_t>(p % pt);
      uint8_t* blk = mem[order[p / pt]].data();
      store(kx.data() + p * ldkv, &off, 1, blk + koff, pt);
      store(vx.data() + p * ldkv, &off, 1, blk + voff, pt);
    }
    // The rows converted to floats (kv_rows_f32, in pieces as the model converts page by page), then
    // attention_paged_f32: the same bits, for the converted format of every kind.
    {
      std::vector<float> kf(nkv * L * hd, -777.0f), vf(nkv * L * hd, -777.0f);
      for (int64_t g = 0; g < nkv; ++g)
        for (int64_t t0 = 0; t0 < L; t0 += pt) {
          const int64_t n = std::min(pt, L - t0);
          t.kv_rows_f32(static_cast<int>(kind), kc.data() + (g * cap + t0) * rb, n, hd, kf.data() + (g * L + t0) * hd);
          t.kv_rows_f32(static_cast<int>(kind), vc.data() + (g * cap + t0) * rb, n, hd, vf.data() + (g * L + t0) * hd);
        }
      const void* kfp = kf.data();
      const void* vfp = vf.data();
      const KvPages fl{&kfp, &vfp, 0, 0, L};
      std::vector<float> f32(B * ldo, -777.0f);
      t.attention_paged_f32(q.data(), fl, pos.data(), f32.data(), B, nh, nkv, hd, ldq, ldo, scale, 0, nh, scratch.data());
      CHECK(std::memcmp(f32.data(), want.data(), f32.size() * 4) == 0,
            "%s kind %d nh=%lld nkv=%lld hd=%lld: float rows != cache rows", isa_name(t.isa), static_cast<int>(kind),
            (long long)nh, (long long)nkv, (long long)hd);
    }
    const KvPages paged{table.data(), table.data(), koff, voff, pt};
    for (int64_t h0 : {int64_t{0}, nh / 2}) {  // any head split
      fn(q.data(), paged, pos.data(), got.data(), B, nh, nkv, hd, ldq, ldo, scale, h0, nh, scratch.data());
      if (h0) fn(q.data(), paged, pos.data(), got.data(), B, nh, nkv, hd, ldq, ldo, scale, 0, h0, scratch.data());
      CHECK(std::memcmp(got.data(), want.data(), got.size() * 4) == 0, "%s kind %d nh=%lld nkv=%lld hd=%lld: paged != flat",
            isa_name(t.isa), static_cast<int>(kind), (long long)nh, (long long)nkv, (long long)hd);
    }
  }
}

template <typename F>
bool throws(KvPoolError::Code code, F&& f) {
  try {
    f();
  } catch (const KvPoolError& e) {
    return e.code == code;
  }
  return false;
}

void test_pool() {
  KvLayout lay;
  lay.kind = KvKind::f16;
  lay.n_layer = 2;
  lay.n_kv_heads = 1;
  lay.head_dim = 4;
  KvPool pool(lay, 4 * kKvBlockTokens, 40);
  const int32_t a = pool.create();
  std::vector<int32_t> seq(20, a), pos(20);
  std::iota(pos.begin(), pos.end(), 0);
  pool.admit(seq.data(), pos.data(), 20);
  CHECK(pool.length(a) == 20 && pool.stats().blocks_used == 2, "admit 20 positions");
  // Mark a's bytes, fork, write b's shared partial block: b gets a copy, a's bytes stay.
  std::memset(pool.block_of(a, 17), 0x11, static_cast<size_t>(lay.block_bytes()));
  const int32_t b = pool.fork(a);
  CHECK(pool.stats().blocks_used == 2 && pool.table(a)[1] == pool.table(b)[1], "fork shares blocks");
  int32_t s1 = b, p1 = 20;
  pool.admit(&s1, &p1, 1);
  CHECK(pool.stats().blocks_used == 3 && pool.table(a)[1] != pool.table(b)[1] && pool.table(a)[0] == pool.table(b)[0],
        "first write copies the shared block only");
  CHECK(pool.block_of(b, 17)[5] == 0x11, "the copy holds the shared bytes");
  std::memset(pool.block_of(b, 20), 0x22, static_cast<size_t>(lay.block_bytes()));
  CHECK(pool.block_of(a, 17)[5] == 0x11, "writing b leaves a alone");
  // Errors change nothing.
  const auto before = pool.stats();
  int32_t bad_seq = 99, p0 = 0;
  CHECK(throws(KvPoolError::kUnknownSequence, [&] { pool.admit(&bad_seq, &p0, 1); }), "unknown sequence");
  int32_t two_s[2] = {a, a}, two_p[2] = {20, 22};
  CHECK(throws(KvPoolError::kBadPosition, [&] { pool.admit(two_s, two_p, 2); }), "gap");
  std::vector<int32_t> ls(21, a), lp(21);
  std::iota(lp.begin(), lp.end(), 20);
  CHECK(throws(KvPoolError::kTooLong, [&] { pool.admit(ls.data(), lp.data(), 21); }), "context");
  const int32_t c = pool.create();
  std::vector<int32_t> cs(32, c), cp(32);
  std::iota(cp.begin(), cp.end(), 0);
  CHECK(throws(KvPoolError::kFull, [&] { pool.admit(cs.data(), cp.data(), 32); }), "budget");
  const auto after = pool.stats();
  CHECK(after.blocks_used == before.blocks_used && pool.length(a) == 20 && pool.length(b) == 21 && pool.length(c) == 0,
        "failed admits change nothing");
  CHECK(throws(KvPoolError::kBadPosition, [&] { pool.truncate(a, 21); }), "truncate past the end");
  pool.truncate(b, 16);
  CHECK(pool.stats().blocks_used == 2, "truncate frees b's copied block");
  pool.dispose(a);
  pool.dispose(b);
  CHECK(pool.stats().blocks_used == 0 && pool.stats().blocks_cached == 3, "dispose returns every block");
  pool.trim();
  CHECK(pool.stats().blocks_cached == 0, "trim");
  pool.admit(cs.data(), cp.data(), 32);
  CHECK(pool.stats().blocks_used == 2 && pool.length(c) == 32, "blocks are reused after trim");
  CHECK(throws(KvPoolError::kUnknownSequence, [&] { pool.fork(a); }), "fork of a disposed sequence");
}

void test_recurrent_pool() {
  RecurrentPool pool(100, 2, 30);
  const int32_t a = pool.create();
  CHECK(pool.length(a) == 0 && pool.state(a)[99] == 0 && reinterpret_cast<uintptr_t>(pool.state(a)) % 64 == 0, "fresh state");
  std::vector<int32_t> s(20, a), p(20);
  std::iota(p.begin(), p.end(), 0);
  pool.admit(s.data(), p.data(), 20);
  CHECK(pool.length(a) == 20, "admit 20 positions");
  pool.state(a)[7] = 0x5a;
  const int32_t b = pool.fork(a);
  CHECK(pool.length(b) == 20 && pool.state(b)[7] == 0x5a && pool.state(b) != pool.state(a), "fork copies the state");
  CHECK(throws(KvPoolError::kFull, [&] { pool.create(); }), "a budget of sequences");
  CHECK(throws(KvPoolError::kFull, [&] { pool.fork(a); }), "a fork needs a free state");
  const int32_t gap_s[2] = {a, b}, gap_p[2] = {20, 21};
  CHECK(throws(KvPoolError::kBadPosition, [&] { pool.admit(gap_s, gap_p, 2); }), "gap");
  const int32_t bad = 99, p0 = 0;
  CHECK(throws(KvPoolError::kUnknownSequence, [&] { pool.admit(&bad, &p0, 1); }), "unknown sequence");
  std::vector<int32_t> ls(11, b), lp(11);
  std::iota(lp.begin(), lp.end(), 20);
  CHECK(throws(KvPoolError::kTooLong, [&] { pool.admit(ls.data(), lp.data(), 11); }), "context");
  CHECK(pool.length(a) == 20 && pool.length(b) == 20, "failed admissions change nothing");
  CHECK(throws(KvPoolError::kBadPosition, [&] { pool.truncate(a, 5); }), "a state cannot be cut back");
  CHECK(throws(KvPoolError::kBadPosition, [&] { pool.truncate(a, 21); }), "truncate past the end");
  pool.truncate(a, 20);
  CHECK(pool.length(a) == 20 && pool.state(a)[7] == 0x5a, "truncate to the length keeps the state");
  pool.truncate(a, 0);
  CHECK(pool.length(a) == 0 && pool.state(a)[7] == 0 && pool.state(b)[7] == 0x5a, "truncate to 0 clears only that state");
  pool.dispose(b);
  CHECK(pool.stats().sequences == 1 && pool.stats().states_cached == 1 && pool.stats().tokens_held == 0, "dispose keeps the memory");
  const int32_t c = pool.create();
  CHECK(pool.state(c)[7] == 0 && pool.stats().states_cached == 0, "a reused state is zeroed");
  CHECK(throws(KvPoolError::kUnknownSequence, [&] { pool.length(b); }), "a disposed sequence is gone");
  pool.dispose(c);
  pool.trim();
  CHECK(pool.stats().states_cached == 0 && pool.stats().state_bytes == 100 && pool.stats().states_max == 2, "trim");
  CHECK(throws(KvPoolError::kBadArgument, [] { RecurrentPool(0, 1, 1); }), "a state of 0 bytes");
}

}  // namespace

int main() {
  g_tables = all_tables();
  Rng rng(7);
  for (KvKind kind : {KvKind::f16, KvKind::q8, KvKind::q3}) {
    test_paged_attention(kind, 4, 4, 64, {0}, rng);
    test_paged_attention(kind, 8, 2, 128, {15, 16, 17, 47, 3}, rng);
    test_paged_attention(kind, 20, 5, 128, {100}, rng);
    test_paged_attention(kind, 16, 1, 64, {63, 64, 31}, rng);
  }
  test_paged_attention(KvKind::f16, 6, 2, 40, {33, 17}, rng);  // head_dim % 8 != 0 (f16 tails)
  // Each SIMD table has its own paged kernels.
  for (const auto& t : g_tables)
    if (t.isa != Isa::scalar)
      CHECK(t.attention_paged_f16 != g_tables[0].attention_paged_f16, "%s paged attention falls back to scalar", isa_name(t.isa));
  test_pool();
  test_recurrent_pool();
  return finish("test_kv_pool");
}
