// Runs the SSD chunked scan (kernels/mamba2.h) over a thread pool: shared by the ssdChunked binding and the
// one-call Mamba-2 forward (mamba2_exec.h). The group products C.B and Bᵀ over (group, chunk) units, then the
// heads split evenly over the threads, each with its own scratch slice; no split changes a result.
#pragma once
#include <cstdint>

#include "../kernels/kernels.h"
#include "../kernels/mamba2.h"
#include "thread_pool.h"

namespace bitllm {

// Floats of scratch run_ssd_chunked needs for a.T rows on `nthreads` threads.
int64_t ssd_chunked_run_floats(const SsdArgs& a, int64_t chunk, int nthreads);
void run_ssd_chunked(const KernelTable& t, ThreadPool& pool, const SsdArgs& a, int64_t chunk, float* scratch);

}  // namespace bitllm
