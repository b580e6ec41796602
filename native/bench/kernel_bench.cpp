// bitllm-kernel-bench: times the T2R16 ternary GEMM of every supported ISA on the BitNet b1.58 shapes
// and prints one JSON line per measurement, plus two machine probes to judge them against:
//   {"probe":"read_bw","threads":N,"gbps":X,"best_gbps":Y}  streaming read of a 1 GiB buffer (median, best pass)
//   {"probe":"int8_peak","threads":N,"gops":X,...}         independent vpdpbusd / sdot chains (best pass)
// Decode (small batch) is memory-bound, so the weights rotate through copies totalling >= 256 MiB:
// every call reads its weights from DRAM as in real inference instead of from the 32 MiB L3.
//
// Kernel figures and read_bw are medians (robust to neighbours on a shared machine); int8_peak is the
// best repetition, so "fraction of peak" figures err on the pessimistic side.
// gbps = weight bytes (M*K/4) per second; gops = 2*M*K*B / s / 1e9.
//
// usage: bitllm-kernel-bench [--isa scalar,avx2,avx512] [--threads 1,2] [--batch 1,8,128]
//                            [--shape 6912x2560,...] [--mode tensor|row|block] [--quick] [--hot] [--no-probes]
//   --isa       ISAs to time (default: every supported one; scalar skips batch > 8 unless named here)
//   --quick     the first three default shapes, 0.1 s per measurement instead of 0.5 s
//   --hot       one copy of the weights (cache-resident: the kernel's compute rate, not DRAM's)
//   --no-probes skip read_bw / int8_peak
#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "kernels/kernels.h"
#include "runtime/cpu_features.h"
#include "runtime/dispatch.h"
#include "runtime/repack_ternary.h"
#include "runtime/probes.h"
#include "runtime/thread_pool.h"

using namespace bitllm;

namespace {

using Clock = std::chrono::steady_clock;


double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

std::vector<int64_t> parse_ints(const std::string& s) {
  std::vector<int64_t> out;
  size_t i = 0;
  while (i < s.size()) {
    size_t j = s.find(',', i);
    if (j == std::string::npos) j = s.size();
    out.push_back(std::atoll(s.substr(i, j - i).c_str()));
    i = j + 1;
  }
  return out;
}

std::vector<std::string> parse_words(const std::string& s) {
  std::vector<std::string> out;
  size_t i = 0;
  while (i < s.size()) {
    size_t j = s.find(',', i);
    if (j == std::string::npos) j = s.size();
    out.push_back(s.substr(i, j - i));
    i = j + 1;
  }
  return out;
}

// Page-aligned buffer that is never value-initialized (the caller fills it).
struct Buffer {
  uint8_t* p = nullptr;
  explicit Buffer(size_t bytes) {
    p = static_cast<uint8_t*>(std::aligned_alloc(4096, (bytes + 4095) / 4096 * 4096));
    if (!p) {
      std::fprintf(stderr, "out of memory (%zu bytes)\n", bytes);
      std::exit(1);
    }
  }
  ~Buffer() { std::free(p); }
  Buffer(const Buffer&) = delete;
  Buffer& operator=(const Buffer&) = delete;
};

// ---- probes (runtime/probes.h: the same ones `bitllm bench kernels` prints) ----

void print_probes(ThreadPool& pool, int reps) {
  const ProbeResult bw = probe_read_bandwidth(pool, int64_t{1} << 30, reps);
  std::printf("{\"probe\":\"read_bw\",\"threads\":%d,\"gbps\":%.2f,\"best_gbps\":%.2f}\n", pool.size(), bw.median,
              bw.best);
  const char* instruction = "none";
  const double gops = probe_int8_peak(pool, cpu_features(), 0.5, &instruction);
  if (gops > 0)
    std::printf("{\"probe\":\"int8_peak\",\"threads\":%d,\"gops\":%.1f,\"instruction\":\"%s\"}\n", pool.size(), gops,
                instruction);
}

// ---- ternary GEMM ----

struct Shape {
  int64_t m, k;
};

// Weights rotated through `copies` T2R16 matrices, plus the scales of the chosen mode.
struct Weights {
  int64_t M, K, copies, bytes_per_copy;
  int32_t mode;
  std::vector<uint8_t> codes;  // [copies, Mp/16, K/16, 64]
  std::vector<float> scales;   // per ScaleMode
};

Weights make_weights(const Shape& s, int32_t mode, bool hot, uint64_t seed) {
  Weights w;
  w.M = s.m;
  w.K = s.k;
  w.mode = mode;
  w.bytes_per_copy = t2_code_bytes(s.m, s.k);
  const int64_t min_total = int64_t{256} << 20;
  w.copies = hot ? 1 : std::max<int64_t>(2, (min_total + w.bytes_per_copy - 1) / w.bytes_per_copy);
  std::vector<int8_t> trits(static_cast<size_t>(s.m * s.k));  // [M, K]
  uint64_t x = seed * 0x9E3779B97F4A7C15ull + 1;
  for (auto& t : trits) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    t = static_cast<int8_t>(static_cast<int64_t>(x % 3) - 1);
  }
  w.codes.resize(static_cast<size_t>(w.bytes_per_copy * w.copies));
  pack_t2_from_trits(trits.data(), s.k, s.m, s.k, w.codes.data(), 0, t2_tiles(s.m));
  for (int64_t c = 1; c < w.copies; ++c)
    std::memcpy(w.codes.data() + c * w.bytes_per_copy, w.codes.data(), static_cast<size_t>(w.bytes_per_copy));
  const int64_t tiles = t2_tiles(s.m);
  const int64_t nscales = mode == kScaleTensor ? 1 : (mode == kScaleRow ? tiles * kT2Rows : tiles * (s.k / kScaleBlockK) * kT2Rows);
  w.scales.assign(static_cast<size_t>(nscales), 0.03125f);
  return w;
}

struct Acts {
  std::vector<int8_t> q;  // [B, K]
  std::vector<float> scale;
  std::vector<int32_t> sum, bsum;
};

Acts make_acts(int64_t B, int64_t K) {
  Acts a;
  a.q.resize(static_cast<size_t>(B * K));
  uint64_t x = 12345;
  for (auto& v : a.q) {
    x = x * 6364136223846793005ull + 1442695040888963407ull;
    v = static_cast<int8_t>(x >> 56);
  }
  a.scale.assign(static_cast<size_t>(B), 1.5f);
  a.sum.assign(static_cast<size_t>(B), 0);
  const int64_t nb = K / kScaleBlockK;
  a.bsum.assign(static_cast<size_t>(B * std::max<int64_t>(nb, 1)), 0);
  for (int64_t b = 0; b < B; ++b)
    for (int64_t k = 0; k < K; ++k) {
      a.sum[b] += a.q[b * K + k];
      if (nb) a.bsum[b * nb + k / kScaleBlockK] += a.q[b * K + k];
    }
  return a;
}

void bench_ternary(const KernelTable& t, ThreadPool& pool, const Weights& w, const Acts& acts, int64_t B,
                   double min_time) {
  const int64_t M = w.M, K = w.K, tiles = t2_tiles(M);
  const QActs a{acts.q.data(), acts.scale.data(), acts.sum.data(),
                w.mode == kScaleBlock ? acts.bsum.data() : nullptr, B, K, K};
  std::vector<float> y(static_cast<size_t>(B * M));  // [B, M]
  int64_t copy = 0;
  auto call = [&] {
    const TernaryMat m{w.codes.data() + copy * w.bytes_per_copy, w.scales.data(), M, K, w.mode};
    copy = (copy + 1) % w.copies;
    pool.parallel_for(tiles, [&](int64_t t0, int64_t t1) { t.ternary_gemm(m, a, y.data(), M, t0, t1); });
  };
  call();  // warm-up: page faults, pool wake-up
  std::vector<double> times;
  const auto start = Clock::now();
  while (times.size() < 3 || (seconds_since(start) < min_time && times.size() < 100000)) {
    const auto t0 = Clock::now();
    call();
    times.push_back(seconds_since(t0));
  }
  std::sort(times.begin(), times.end());
  const double s = times[times.size() / 2];  // median: robust to neighbours on a shared machine
  const double gbps = static_cast<double>(M * K / 4) / s / 1e9;
  const double gops = 2.0 * static_cast<double>(M) * static_cast<double>(K) * static_cast<double>(B) / s / 1e9;
  std::printf(
      "{\"kernel\":\"ternary_i2\",\"isa\":\"%s\",\"m\":%lld,\"k\":%lld,\"batch\":%lld,\"threads\":%d,"
      "\"ms\":%.4f,\"gbps\":%.2f,\"gops\":%.2f}\n",
      isa_name(t.isa), static_cast<long long>(M), static_cast<long long>(K), static_cast<long long>(B),
      pool.size(), s * 1e3, gbps, gops);
  std::fflush(stdout);
}

[[noreturn]] void usage() {
  std::fprintf(stderr,
               "usage: bitllm-kernel-bench [--isa scalar,avx2,avx512] [--threads 1,2] [--batch 1,8,128]\n"
               "                           [--shape MxK,...] [--mode tensor|row|block] [--quick] [--hot] [--no-probes]\n");
  std::exit(2);
}

}  // namespace

int main(int argc, char** argv) {
  const CpuFeatures& f = cpu_features();
  std::vector<Isa> isas = supported_isas(f);
  std::vector<int64_t> threads = {1, 2}, batches = {1, 8, 128};
  std::vector<Shape> shapes = {{2560, 2560}, {640, 2560}, {6912, 2560}, {2560, 6912}, {8640, 3200}, {3200, 8640}};
  int32_t mode = kScaleTensor;
  bool quick = false, isa_given = false, shapes_given = false, hot = false, no_probes = false;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    const bool has_value = i + 1 < argc;
    if (arg == "--quick") {
      quick = true;
    } else if (arg == "--hot") {
      hot = true;
    } else if (arg == "--no-probes") {
      no_probes = true;
    } else if (arg == "--isa" && has_value) {
      isas.clear();
      isa_given = true;
      for (const auto& name : parse_words(argv[++i])) {
        Isa isa;
        if (!parse_isa(name, &isa) || !isa_supported(isa, f)) {
          std::fprintf(stderr, "ISA '%s' is unknown or not supported here\n", name.c_str());
          return 2;
        }
        isas.push_back(isa);
      }
    } else if (arg == "--threads" && has_value) {
      threads = parse_ints(argv[++i]);
    } else if (arg == "--batch" && has_value) {
      batches = parse_ints(argv[++i]);
    } else if (arg == "--shape" && has_value) {
      shapes.clear();
      shapes_given = true;
      for (const auto& w : parse_words(argv[++i])) {
        const size_t x = w.find('x');
        if (x == std::string::npos) usage();
        shapes.push_back({std::atoll(w.substr(0, x).c_str()), std::atoll(w.substr(x + 1).c_str())});
      }
    } else if (arg == "--mode" && has_value) {
      const std::string m = argv[++i];
      mode = m == "tensor" ? kScaleTensor : m == "row" ? kScaleRow : m == "block" ? kScaleBlock : -1;
      if (mode < 0) usage();
    } else {
      usage();
    }
  }
  for (int64_t v : threads)
    if (v < 1 || v > 256) usage();
  for (int64_t v : batches)
    if (v < 1 || v > 4096) usage();
  for (const Shape& s : shapes)
    if (s.m < 1 || s.k < kT2KStep || s.k % kT2KStep || (mode == kScaleBlock && s.k % kScaleBlockK)) {
      std::fprintf(stderr, "bad shape %lldx%lld for this mode\n", static_cast<long long>(s.m), static_cast<long long>(s.k));
      return 2;
    }
  if (quick && !shapes_given) shapes.resize(3);
  const double min_time = quick ? 0.1 : 0.5;

  for (int64_t n : threads) {
    if (no_probes) break;
    ThreadPool pool(static_cast<int>(n));
    print_probes(pool, quick ? 3 : 9);
  }
  for (const Shape& s : shapes) {
    const Weights w = make_weights(s, mode, hot, 7);
    int64_t max_b = 1;
    for (int64_t b : batches) max_b = std::max(max_b, b);
    const Acts acts = make_acts(max_b, s.k);
    for (Isa isa : isas) {
      KernelTable t;
      std::string err;
      if (!make_kernel_table(isa, f, &t, &err)) continue;
      for (int64_t n : threads) {
        ThreadPool pool(static_cast<int>(n));
        for (int64_t b : batches) {
          // The scalar reference is ~100x slower: at large batch it only runs when asked for.
          if (isa == Isa::scalar && b > 8 && !isa_given) continue;
          bench_ternary(t, pool, w, acts, b, min_time);
        }
      }
    }
  }
  return 0;
}
