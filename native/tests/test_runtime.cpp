// Runtime pieces under the kernels: ThreadPool's splits (every unit exactly once, whatever the thread
// count, grain or a slowed thread) and the weight allocator (alignment, zero fill, exact extent).
#include <atomic>
#include <cstdlib>
#include <chrono>
#include <cstdint>
#include <thread>
#include <vector>

#include "runtime/mmap.h"
#include "runtime/thread_pool.h"
#include "test_util.h"

using namespace bitllm_test;

namespace {

// parallel_for_dynamic: each unit visited once, in chunks of at most `grain` units; with one thread slowed, the others take over its leftovers (stealing happens).
void test_dynamic(int threads, int64_t n, int64_t grain, bool slow_first) {
  ThreadPool pool(threads);
  std::vector<std::atomic<int>> hits(static_cast<size_t>(n));
  for (auto& h : hits) h.store(0);
  std::atomic<int64_t> by_caller{0}, calls{0};
  const std::thread::id caller = std::this_thread::get_id();
  pool.parallel_for_dynamic(n, grain, [&](int64_t b, int64_t e) {
    calls.fetch_add(1);
    // One thread (or n <= grain) runs the whole range in one call; otherwise chunks are at most `grain`.
    CHECK(b >= 0 && b < e && e <= n && (threads == 1 || n <= grain || e - b <= grain), "threads %d n %lld grain %lld: chunk [%lld, %lld)", threads,
          static_cast<long long>(n), static_cast<long long>(grain), static_cast<long long>(b), static_cast<long long>(e));
    const bool mine = std::this_thread::get_id() == caller;
    if (mine) by_caller.fetch_add(e - b);
    if (slow_first && mine) std::this_thread::sleep_for(std::chrono::milliseconds(2));
    for (int64_t i = b; i < e && i < n; ++i) hits[static_cast<size_t>(i)].fetch_add(1);
  });
  int64_t bad = 0;
  for (auto& h : hits) bad += h.load() != 1;
  CHECK(bad == 0, "threads %d n %lld grain %lld: %lld units not visited exactly once", threads, static_cast<long long>(n),
        static_cast<long long>(grain), static_cast<long long>(bad));
  // The caller (thread 0) sleeps 2 ms per chunk: the other threads must have taken part of its range.
  if (slow_first && threads > 1 && n >= 64 * grain) {
    const int64_t own = n / threads;
    CHECK(by_caller.load() < own, "threads %d n %lld: the slowed caller ran %lld units, its whole range %lld", threads,
          static_cast<long long>(n), static_cast<long long>(by_caller.load()), static_cast<long long>(own));
  }
}

void test_static(int threads, int64_t n) {
  ThreadPool pool(threads);
  std::vector<std::atomic<int>> hits(static_cast<size_t>(n));
  for (auto& h : hits) h.store(0);
  pool.parallel_for(n, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) hits[static_cast<size_t>(i)].fetch_add(1);
  });
  int64_t bad = 0;
  for (auto& h : hits) bad += h.load() != 1;
  CHECK(bad == 0, "parallel_for threads %d n %lld: %lld units not visited once", threads, static_cast<long long>(n),
        static_cast<long long>(bad));
}

// prepare_weights on a calloc'ed buffer of bytes + 2 MiB (what the addon gets from V8): the offset is
// 2 MiB-aligned where bytes >= 2 MiB and fits; the memory stays zero and writable.
void test_prepare(size_t bytes) {
  constexpr size_t kHuge = size_t{2} << 20;
  const size_t size = bytes + kHuge;
  uint8_t* p = static_cast<uint8_t*>(std::calloc(size, 1));
  CHECK(p != nullptr, "calloc(%zu)", size);
  if (!p) return;
  const size_t off = prepare_weights(p, size, bytes);
  CHECK(off + bytes <= size, "prepare_weights(%zu): offset %zu past the buffer", bytes, off);
  if (bytes < kHuge) CHECK(off == 0, "prepare_weights(%zu) < 2 MiB: offset %zu", bytes, off);
  else CHECK(reinterpret_cast<uintptr_t>(p + off) % kHuge == 0, "prepare_weights(%zu): not 2 MiB-aligned", bytes);
  size_t nonzero = 0;
  for (size_t i = 0; i < size; i += 997) nonzero += p[i] != 0;
  CHECK(nonzero == 0, "prepare_weights(%zu): %zu sampled bytes not zero", bytes, nonzero);
  if (bytes > 0) {
    p[off + bytes - 1] = 0x5a;
    CHECK(p[off + bytes - 1] == 0x5a, "prepare_weights(%zu): last byte not writable", bytes);
  }
  std::free(p);
}

}  // namespace

int main() {
  for (int threads : {1, 2, 3, 5})
    for (int64_t n : {1, 2, 7, 64, 1000, 4099})
      for (int64_t grain : {1, 3, 16, 5000}) {
        test_dynamic(threads, n, grain, false);
        test_static(threads, n);
      }
  for (int threads : {2, 3}) test_dynamic(threads, 256, 1, true);
  // The pool is reused job after job (decode issues hundreds per token): ranges reset every call.
  {
    ThreadPool pool(3);
    for (int rep = 0; rep < 200; ++rep) {
      const int64_t n = 1 + rep * 7 % 500;
      std::atomic<int64_t> sum{0};
      pool.parallel_for_dynamic(n, 1 + rep % 5, [&](int64_t b, int64_t e) { sum.fetch_add((b + e - 1) * (e - b) / 2); });
      CHECK(sum.load() == n * (n - 1) / 2, "rep %d n %lld: sum %lld", rep, static_cast<long long>(n),
            static_cast<long long>(sum.load()));
    }
  }
  for (size_t bytes : {size_t{0}, size_t{1}, size_t{4097}, (size_t{2} << 20) - 1, size_t{2} << 20,
                       (size_t{5} << 20) + 123, (size_t{40} << 20) + 1})
    test_prepare(bytes);
  CHECK(prepare_weights(nullptr, 10, 5) == 0, "prepare_weights(nullptr) is 0");
  CHECK(prepare_weights(reinterpret_cast<uint8_t*>(&g_checks), 4, 8) == 0, "bytes > size is 0");
  return finish("test_runtime");
}
