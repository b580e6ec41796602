#include "thread_pool.h"

#include <chrono>

#if defined(__x86_64__) || defined(_M_X64)
#include <immintrin.h>
#define BITLLM_PAUSE() _mm_pause()
#elif defined(__aarch64__)
#define BITLLM_PAUSE() __asm__ __volatile__("yield")
#else
#define BITLLM_PAUSE() ((void)0)
#endif

namespace bitllm {

namespace {
// How long a worker spins for the next job before sleeping (decode issues a job every few µs).
constexpr auto kSpin = std::chrono::microseconds(200);
}  // namespace

ThreadPool::ThreadPool(int n_threads) : n_threads_(n_threads < 1 ? 1 : n_threads) {
  slots_.reset(new Slot[static_cast<size_t>(n_threads_)]);
  workers_.reserve(static_cast<size_t>(n_threads_ - 1));
  for (int i = 1; i < n_threads_; ++i) workers_.emplace_back([this, i] { worker_main(i); });
}

ThreadPool::~ThreadPool() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_.store(true, std::memory_order_release);
    generation_.fetch_add(1, std::memory_order_acq_rel);
  }
  cv_.notify_all();
  for (auto& w : workers_) w.join();
}

void ThreadPool::run(void (*fn)(void*, int, int), void* ctx) {
  if (n_threads_ == 1) {
    fn(ctx, 0, 1);
    return;
  }
  fn_ = fn;
  ctx_ = ctx;
  pending_.store(n_threads_ - 1, std::memory_order_relaxed);
  {
    // The lock orders the publication against a worker that is about to sleep.
    std::lock_guard<std::mutex> lock(mu_);
    generation_.fetch_add(1, std::memory_order_acq_rel);
  }
  cv_.notify_all();
  fn(ctx, 0, n_threads_);
  // Wait for the workers; after a while yield the core, in case a worker we wait for shares it (an
  // oversubscribed machine): spinning would only delay it further.
  for (int spins = 0; pending_.load(std::memory_order_acquire) != 0;) {
    BITLLM_PAUSE();
    if (++spins == 4096) {
      spins = 0;
      std::this_thread::yield();
    }
  }
}

void ThreadPool::worker_main(int ith) {
  uint64_t seen = 0;
  for (;;) {
    uint64_t gen = generation_.load(std::memory_order_acquire);
    if (gen == seen) {
      const auto until = std::chrono::steady_clock::now() + kSpin;
      int spins = 0;
      while ((gen = generation_.load(std::memory_order_acquire)) == seen) {
        BITLLM_PAUSE();
        if (++spins == 256) {
          spins = 0;
          if (std::chrono::steady_clock::now() > until) break;
        }
      }
      if (gen == seen) {
        std::unique_lock<std::mutex> lock(mu_);
        cv_.wait(lock, [&] { return generation_.load(std::memory_order_acquire) != seen; });
        gen = generation_.load(std::memory_order_acquire);
      }
    }
    seen = gen;
    if (stop_.load(std::memory_order_acquire)) return;
    fn_(ctx_, ith, n_threads_);
    pending_.fetch_sub(1, std::memory_order_acq_rel);
  }
}

}  // namespace bitllm
