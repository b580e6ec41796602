// A persistent thread pool: n-1 workers plus the calling thread. Workers spin briefly after each job
// (decode issues jobs back to back), then sleep on a condition variable. No allocation per job.
#pragma once
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <thread>
#include <type_traits>
#include <vector>

namespace bitllm {

class ThreadPool {
 public:
  explicit ThreadPool(int n_threads);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int size() const { return n_threads_; }

  // Below this many elements of work an op runs on the calling thread: waking the pool costs more than
  // it saves (a decode-step KV store is 640 elements, an rmsnorm 2560).
  static constexpr int64_t kMinParallelWork = int64_t{1} << 15;

  // parallel_for over n units of `unit_work` elements each, or inline when the total is below
  // kMinParallelWork. Only for bodies whose results do not depend on the split.
  template <typename Body>
  void parallel_for_work(int64_t n, int64_t unit_work, Body&& body) {
    if (n * unit_work < kMinParallelWork || n_threads_ == 1)
      body(int64_t{0}, n);
    else
      parallel_for(n, body);
  }

  // Chunk size for parallel_for_dynamic over `units`: about 16 chunks per thread (enough to rebalance
  // around a slowed thread, few enough that the claim counters cost nothing next to a chunk's work).
  int64_t chunk_grain(int64_t units) const {
    const int64_t g = units / (16 * static_cast<int64_t>(n_threads_));
    return g < 1 ? 1 : g;
  }

  // Runs fn(ctx, ith, nth) for ith in [0, nth) with nth = size(); ith 0 runs on the caller.
  // Returns when every part has finished. Not re-entrant: one job at a time per pool.
  void run(void (*fn)(void* ctx, int ith, int nth), void* ctx);

  // Splits [0, n) into contiguous ranges, one per thread (balanced to within one unit), and calls
  // body(begin, end) for every non-empty range.
  template <typename Body>
  void parallel_for(int64_t n, Body&& body) {
    struct Job {
      std::remove_reference_t<Body>* body;
      int64_t n;
    } job{&body, n};
    if (n <= 0) return;
    if (n_threads_ == 1 || n == 1) {
      body(int64_t{0}, n);
      return;
    }
    run(
        [](void* ctx, int ith, int nth) {
          Job* j = static_cast<Job*>(ctx);
          const int64_t b = j->n * ith / nth, e = j->n * (ith + 1) / nth;
          if (b < e) (*j->body)(b, e);
        },
        &job);
  }

  // Like parallel_for, but dynamic: each thread owns the contiguous range parallel_for would give it and
  // claims it `grain` units at a time in order (so its weights stream sequentially, which the hardware
  // prefetchers need: one shared counter interleaving the threads' chunks ran a 2 MB GEMV at 70 % of the
  // bandwidth of contiguous halves); a thread whose range is done then claims the remaining chunks of
  // the others. A slowed thread (another process on its core, a LITTLE core of a big.LITTLE board) thus
  // gets fewer chunks instead of holding everyone back at the join. Use only where the result does not
  // depend on which thread runs which range (e.g. GEMM rows).
  template <typename Body>
  void parallel_for_dynamic(int64_t n, int64_t grain, Body&& body) {
    if (n <= 0) return;
    if (grain < 1) grain = 1;
    if (n_threads_ == 1 || n <= grain) {
      body(int64_t{0}, n);
      return;
    }
    for (int i = 0; i < n_threads_; ++i) {
      slots_[i].next.store(n * i / n_threads_, std::memory_order_relaxed);
      slots_[i].end = n * (i + 1) / n_threads_;
    }
    struct Job {
      std::remove_reference_t<Body>* body;
      int64_t grain;
      Slot* slots;
    } job{&body, grain, slots_.get()};
    run(
        [](void* ctx, int ith, int nth) {
          Job* j = static_cast<Job*>(ctx);
          for (int v = 0; v < nth; ++v) {  // own range first, then the others' leftovers
            Slot& s = j->slots[(ith + v) % nth];
            for (;;) {
              const int64_t b = s.next.fetch_add(j->grain, std::memory_order_relaxed);
              if (b >= s.end) break;
              (*j->body)(b, b + j->grain < s.end ? b + j->grain : s.end);
            }
          }
        },
        &job);
  }

 private:
  void worker_main(int ith);

  // One thread's range in parallel_for_dynamic, on its own cache line (claims do not bounce lines).
  struct alignas(64) Slot {
    std::atomic<int64_t> next{0};
    int64_t end = 0;
  };
  std::unique_ptr<Slot[]> slots_;

  int n_threads_;
  std::vector<std::thread> workers_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::atomic<uint64_t> generation_{0};
  std::atomic<int> pending_{0};
  std::atomic<bool> stop_{false};
  void (*fn_)(void*, int, int) = nullptr;
  void* ctx_ = nullptr;
};

}  // namespace bitllm
