// Machine probes for benchmarks: streaming read bandwidth and peak int8 dot-product rate.
// They give the roofline figures kernel results are compared against.
#pragma once
#include <cstdint>

#include "../kernels/kernels.h"
#include "thread_pool.h"

namespace bitllm {

struct ProbeResult {
  double median = 0;  // median pass (the statistic kernel timings use on a shared machine)
  double best = 0;    // best pass
};

// Streams `bytes` (rounded down to 4 KiB) of a freshly allocated, pre-faulted buffer `reps` times,
// split across the pool's threads; GB/s (1e9 bytes/s) of the median and the best pass.
ProbeResult probe_read_bandwidth(ThreadPool& pool, int64_t bytes, int reps);

// Peak int8 multiply-add rate of the widest dot-product instruction this CPU has (AVX-512 VNNI
// vpdpbusd on 512-bit registers, NEON sdot), from a loop of independent accumulator chains on
// every pool thread. Counts 2 ops per multiply-add (GOP/s). Returns 0 when there is none.
// `name` receives the instruction measured.
double probe_int8_peak(ThreadPool& pool, const CpuFeatures& f, double seconds, const char** name);

}  // namespace bitllm
