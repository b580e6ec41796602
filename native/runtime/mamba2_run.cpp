// The SSD chunked scan over a thread pool; see mamba2_run.h.
#include "mamba2_run.h"

#include <algorithm>

namespace bitllm {

int64_t ssd_chunked_run_floats(const SsdArgs& a, int64_t chunk, int nthreads) {
  return ssd_cb_floats(a.T, chunk, a.n_groups, a.d_state) + int64_t{nthreads} * ssd_chunked_scratch_floats(chunk, a.d_state, a.head_dim);
}

void run_ssd_chunked(const KernelTable& t, ThreadPool& pool, const SsdArgs& a, int64_t chunk, float* scratch) {
  const int64_t T = a.T, units = a.n_groups * ((T + chunk - 1) / chunk);
  float* cb = scratch;
  pool.parallel_for_work(units, std::min(chunk, T) * std::min(chunk, T) * a.d_state / 2,
                         [&](int64_t u0, int64_t u1) { t.ssd_chunk_cb(a, chunk, cb, u0, u1); });
  struct Job {
    const SsdArgs* a;
    const KernelTable* t;
    int64_t chunk, per;
    const float* cb;
    float* thread_scratch;
  } job{&a, &t, chunk, ssd_chunked_scratch_floats(chunk, a.d_state, a.head_dim), cb,
        cb + ssd_cb_floats(T, chunk, a.n_groups, a.d_state)};
  auto body = [](void* p, int ith, int nth) {
    const Job* j = static_cast<const Job*>(p);
    const int64_t H = j->a->n_heads, h0 = H * ith / nth, h1 = H * (ith + 1) / nth;
    if (h0 < h1) j->t->ssd_chunked(*j->a, j->chunk, j->cb, j->thread_scratch + ith * j->per, h0, h1);
  };
  if (pool.size() == 1 || a.n_heads == 1 || a.n_heads * T * a.head_dim * a.d_state < ThreadPool::kMinParallelWork)
    body(&job, 0, 1);
  else
    pool.run(body, &job);
}

}  // namespace bitllm
