// Small shared helpers for the ctest kernel tests: RNG, ISA iteration, failure reporting.
#pragma once
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "kernels/kernels.h"
#include "runtime/cpu_features.h"
#include "runtime/dispatch.h"

namespace bitllm_test {

using namespace bitllm;

// xorshift64*: deterministic across platforms (tests run under qemu too).
struct Rng {
  uint64_t s;
  explicit Rng(uint64_t seed) : s(seed * 0x9E3779B97F4A7C15ull + 1) {}
  uint64_t next() {
    s ^= s >> 12;
    s ^= s << 25;
    s ^= s >> 27;
    return s * 0x2545F4914F6CDD1Dull;
  }
  int64_t range(int64_t lo, int64_t hi) { return lo + static_cast<int64_t>(next() % static_cast<uint64_t>(hi - lo + 1)); }
  float uniform() { return static_cast<float>((next() >> 40) * (1.0 / 16777216.0)); }  // [0, 1)
  float normal() {
    float u = uniform() + 1e-7f, v = uniform();
    return std::sqrt(-2.0f * std::log(u)) * std::cos(6.2831853f * v);
  }
};

inline int g_failures = 0;
inline int g_checks = 0;

#define CHECK(cond, ...)                                              \
  do {                                                                \
    ++::bitllm_test::g_checks;                                        \
    if (!(cond)) {                                                    \
      ++::bitllm_test::g_failures;                                    \
      std::fprintf(stderr, "FAIL %s:%d: %s: ", __FILE__, __LINE__, #cond); \
      std::fprintf(stderr, __VA_ARGS__);                              \
      std::fprintf(stderr, "\n");                                     \
      if (::bitllm_test::g_failures > 20) std::exit(1);               \
    }                                                                 \
  } while (0)

// Tables for every ISA this CPU supports; element 0 is scalar (the C++ reference).
inline std::vector<KernelTable> all_tables() {
  std::vector<KernelTable> out;
  for (Isa isa : supported_isas(cpu_features())) {
    KernelTable t;
    std::string err;
    if (make_kernel_table(isa, cpu_features(), &t, &err)) out.push_back(t);
  }
  return out;
}

inline bool same_bits(float a, float b) {
  uint32_t x, y;
  std::memcpy(&x, &a, 4);
  std::memcpy(&y, &b, 4);
  return x == y;
}

inline int finish(const char* name) {
  std::printf("%s: %d checks, %d failed\n", name, g_checks, g_failures);
  return g_failures == 0 ? 0 : 1;
}

}  // namespace bitllm_test
