#include "probes.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <vector>

#if defined(__x86_64__) || defined(_M_X64)
#include <immintrin.h>
#endif
#if defined(__aarch64__)
#include <arm_neon.h>
#endif

namespace bitllm {

namespace {

using Clock = std::chrono::steady_clock;

uint64_t sum_range_portable(const uint64_t* p, int64_t n) {  // p: [n]
  // Eight independent lanes so the loads, not the adds, set the pace; the compiler vectorizes it.
  uint64_t acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  for (int64_t i = 0; i + 8 <= n; i += 8)
    for (int j = 0; j < 8; ++j) acc[j] += p[i + j];
  uint64_t s = 0;
  for (int j = 0; j < 8; ++j) s += acc[j];
  return s;
}

#if defined(__x86_64__) || defined(_M_X64)
// 256-bit loads, as the kernels use: a narrower probe would understate what the kernels can reach.
__attribute__((target("avx2"))) uint64_t sum_range_avx2(const uint64_t* p, int64_t n) {  // p: [n]
  __m256i a0 = _mm256_setzero_si256(), a1 = a0, a2 = a0, a3 = a0;
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    a0 = _mm256_add_epi64(a0, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + i)));
    a1 = _mm256_add_epi64(a1, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + i + 4)));
    a2 = _mm256_add_epi64(a2, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + i + 8)));
    a3 = _mm256_add_epi64(a3, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + i + 12)));
  }
  a0 = _mm256_add_epi64(_mm256_add_epi64(a0, a1), _mm256_add_epi64(a2, a3));
  alignas(32) uint64_t lanes[4];
  _mm256_store_si256(reinterpret_cast<__m256i*>(lanes), a0);
  return lanes[0] + lanes[1] + lanes[2] + lanes[3] + sum_range_portable(p + i, n - i);
}
#endif

uint64_t sum_range(const uint64_t* p, int64_t n) {
#if defined(__x86_64__) || defined(_M_X64)
  static const bool avx2 = __builtin_cpu_supports("avx2");
  if (avx2) return sum_range_avx2(p, n);
#endif
  return sum_range_portable(p, n);
}

#if defined(__x86_64__) || defined(_M_X64)
// Twelve independent vpdpbusd chains (more than latency × throughput). Distinct starting values keep
// the compiler from merging identical chains; the result is returned so nothing is dropped.
__attribute__((target("avx512f,avx512bw,avx512vnni"))) int64_t vnni_loop(int64_t iters) {
  const __m512i a = _mm512_set1_epi32(0x01010101), b = _mm512_set1_epi32(0x02020202);
  __m512i c0 = _mm512_set1_epi32(0), c1 = _mm512_set1_epi32(1), c2 = _mm512_set1_epi32(2);
  __m512i c3 = _mm512_set1_epi32(3), c4 = _mm512_set1_epi32(4), c5 = _mm512_set1_epi32(5);
  __m512i c6 = _mm512_set1_epi32(6), c7 = _mm512_set1_epi32(7), c8 = _mm512_set1_epi32(8);
  __m512i c9 = _mm512_set1_epi32(9), c10 = _mm512_set1_epi32(10), c11 = _mm512_set1_epi32(11);
  for (int64_t i = 0; i < iters; ++i) {
    c0 = _mm512_dpbusd_epi32(c0, a, b);
    c1 = _mm512_dpbusd_epi32(c1, a, b);
    c2 = _mm512_dpbusd_epi32(c2, a, b);
    c3 = _mm512_dpbusd_epi32(c3, a, b);
    c4 = _mm512_dpbusd_epi32(c4, a, b);
    c5 = _mm512_dpbusd_epi32(c5, a, b);
    c6 = _mm512_dpbusd_epi32(c6, a, b);
    c7 = _mm512_dpbusd_epi32(c7, a, b);
    c8 = _mm512_dpbusd_epi32(c8, a, b);
    c9 = _mm512_dpbusd_epi32(c9, a, b);
    c10 = _mm512_dpbusd_epi32(c10, a, b);
    c11 = _mm512_dpbusd_epi32(c11, a, b);
  }
  __m512i s = _mm512_add_epi32(_mm512_add_epi32(_mm512_add_epi32(c0, c1), _mm512_add_epi32(c2, c3)),
                               _mm512_add_epi32(_mm512_add_epi32(c4, c5), _mm512_add_epi32(c6, c7)));
  s = _mm512_add_epi32(s, _mm512_add_epi32(_mm512_add_epi32(c8, c9), _mm512_add_epi32(c10, c11)));
  alignas(64) int32_t lanes[16];
  _mm512_store_si512(reinterpret_cast<__m512i*>(lanes), s);
  int64_t total = 0;
  for (int32_t v : lanes) total += v;
  return total;
}
constexpr int64_t kVnniOpsPerIter = 12 * 64 * 2;
#endif

#if defined(__aarch64__)
__attribute__((target("arch=armv8.2-a+dotprod"))) int64_t sdot_loop(int64_t iters) {
  int32x4_t acc[12];
  for (int i = 0; i < 12; ++i) acc[i] = vdupq_n_s32(i);
  const int8x16_t a = vdupq_n_s8(3), b = vdupq_n_s8(-5);
  for (int64_t it = 0; it < iters; ++it) {
    for (int i = 0; i < 12; ++i) acc[i] = vdotq_s32(acc[i], a, b);
    __asm__ volatile("" : "+w"(acc[0]), "+w"(acc[1]), "+w"(acc[2]), "+w"(acc[3]));
  }
  int32x4_t s = acc[0];
  for (int i = 1; i < 12; ++i) s = vaddq_s32(s, acc[i]);
  return vaddvq_s32(s);
}
constexpr int64_t kSdotOpsPerIter = 12 * 16 * 2;
#endif

}  // namespace

ProbeResult probe_read_bandwidth(ThreadPool& pool, int64_t bytes, int reps) {
  const int64_t n = (bytes / 4096) * 4096 / 8;
  if (n <= 0 || reps < 1) return {};
  std::unique_ptr<uint64_t[]> buf(new uint64_t[static_cast<size_t>(n)]);
  pool.parallel_for(n, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) buf[static_cast<size_t>(i)] = static_cast<uint64_t>(i);
  });
  const int nth = pool.size();
  std::atomic<uint64_t> sink{0};
  std::vector<double> gbps;
  for (int r = 0; r < reps; ++r) {
    const auto t0 = Clock::now();
    pool.parallel_for(nth, [&](int64_t b, int64_t e) {
      for (int64_t part = b; part < e; ++part) {
        const int64_t lo = n * part / nth, hi = n * (part + 1) / nth;
        sink.fetch_add(sum_range(buf.get() + lo, hi - lo), std::memory_order_relaxed);
      }
    });
    const double s = std::chrono::duration<double>(Clock::now() - t0).count();
    gbps.push_back(static_cast<double>(n * 8) / s / 1e9);
  }
  if (sink.load() == 42) std::abort();  // keeps the sums observable
  std::sort(gbps.begin(), gbps.end());
  return {gbps[gbps.size() / 2], gbps.back()};
}

double probe_int8_peak(ThreadPool& pool, const CpuFeatures& f, double seconds, const char** name) {
  int64_t (*loop)(int64_t) = nullptr;
  int64_t ops_per_iter = 0;
  *name = "none";
#if defined(__x86_64__) || defined(_M_X64)
  if (f.avx512f && f.avx512bw && f.avx512vnni) {
    loop = vnni_loop;
    ops_per_iter = kVnniOpsPerIter;
    *name = "vpdpbusd zmm";
  }
#endif
#if defined(__aarch64__)
  if (f.dotprod) {
    loop = sdot_loop;
    ops_per_iter = kSdotOpsPerIter;
    *name = "sdot";
  }
#endif
  if (!loop) return 0.0;
  // Calibrate iterations for ~seconds on one thread, then run on all threads at once.
  int64_t iters = 1 << 16;
  std::atomic<int64_t> sink{0};
  for (;;) {
    const auto t0 = Clock::now();
    sink += loop(iters);
    if (std::chrono::duration<double>(Clock::now() - t0).count() > seconds / 4 || iters > (int64_t{1} << 34)) break;
    iters *= 2;
  }
  const int nth = pool.size();
  double best = 0.0;
  for (int r = 0; r < 3; ++r) {
    const auto t0 = Clock::now();
    pool.parallel_for(nth, [&](int64_t b, int64_t e) {
      for (int64_t i = b; i < e; ++i) sink += loop(iters);
    });
    const double s = std::chrono::duration<double>(Clock::now() - t0).count();
    const double gops = static_cast<double>(iters * ops_per_iter * nth) / s / 1e9;
    if (gops > best) best = gops;
  }
  if (sink.load() == 42) std::abort();
  return best;
}

}  // namespace bitllm
