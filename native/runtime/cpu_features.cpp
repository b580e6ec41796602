#include "cpu_features.h"

#include <sched.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <set>
#include <string>

#if defined(__x86_64__) || defined(_M_X64)
#include <cpuid.h>
#endif
#if defined(__aarch64__) && defined(__linux__)
#include <sys/auxv.h>
#ifndef HWCAP_ASIMDDP
#define HWCAP_ASIMDDP (1 << 20)
#endif
#ifndef HWCAP2_I8MM
#define HWCAP2_I8MM (1 << 13)
#endif
#endif

namespace bitllm {

namespace {

#if defined(__x86_64__) || defined(_M_X64)
uint64_t read_xcr0() {
  uint32_t eax, edx;
  __asm__ volatile("xgetbv" : "=a"(eax), "=d"(edx) : "c"(0));
  return (static_cast<uint64_t>(edx) << 32) | eax;
}
#endif

CpuFeatures detect() {
  CpuFeatures f;
#if defined(__x86_64__) || defined(_M_X64)
  unsigned a, b, c, d;
  if (!__get_cpuid(1, &a, &b, &c, &d)) return f;
  const bool osxsave = (c >> 27) & 1;
  const bool has_fma = (c >> 12) & 1;
  const bool has_f16c = (c >> 29) & 1;
  const bool has_avx = (c >> 28) & 1;
  if (!osxsave || !has_avx) return f;
  const uint64_t xcr0 = read_xcr0();
  const bool os_ymm = (xcr0 & 0x6) == 0x6;
  const bool os_zmm = (xcr0 & 0xe6) == 0xe6;
  if (!os_ymm) return f;
  if (!__get_cpuid_count(7, 0, &a, &b, &c, &d)) return f;
  f.avx2 = (b >> 5) & 1;
  f.fma = has_fma;
  f.f16c = has_f16c;
  if (os_zmm) {
    f.avx512f = (b >> 16) & 1;
    f.avx512bw = (b >> 30) & 1;
    f.avx512vl = (b >> 31) & 1;
    f.avx512vnni = (c >> 11) & 1;
    f.avx512bitalg = (c >> 12) & 1;
    f.avx512vpopcntdq = (c >> 14) & 1;
  }
#elif defined(__aarch64__)
  f.neon = true;
#if defined(__linux__)
  const unsigned long hw = getauxval(AT_HWCAP);
  const unsigned long hw2 = getauxval(AT_HWCAP2);
  f.dotprod = (hw & HWCAP_ASIMDDP) != 0;
  f.i8mm = (hw2 & HWCAP2_I8MM) != 0;
#endif
#endif
  return f;
}

}  // namespace

const CpuFeatures& cpu_features() {
  static const CpuFeatures f = detect();
  return f;
}

int physical_cores() {
  cpu_set_t set;
  CPU_ZERO(&set);
  int allowed = 0;
  if (sched_getaffinity(0, sizeof(set), &set) == 0) allowed = CPU_COUNT(&set);
  if (allowed <= 0) allowed = static_cast<int>(sysconf(_SC_NPROCESSORS_ONLN));
  if (allowed <= 0) allowed = 1;
  // Count distinct (package, core) pairs among allowed CPUs; fall back to the allowed count.
  std::set<std::string> cores;
  for (int cpu = 0; cpu < CPU_SETSIZE && static_cast<int>(cores.size()) <= allowed; ++cpu) {
    if (!CPU_ISSET(cpu, &set)) continue;
    char path[128];
    std::snprintf(path, sizeof(path), "/sys/devices/system/cpu/cpu%d/topology/core_id", cpu);
    FILE* fc = std::fopen(path, "r");
    std::snprintf(path, sizeof(path), "/sys/devices/system/cpu/cpu%d/topology/physical_package_id", cpu);
    FILE* fp = std::fopen(path, "r");
    int core = -1, pkg = -1;
    if (fc) {
      if (std::fscanf(fc, "%d", &core) != 1) core = -1;
      std::fclose(fc);
    }
    if (fp) {
      if (std::fscanf(fp, "%d", &pkg) != 1) pkg = -1;
      std::fclose(fp);
    }
    if (core < 0) return allowed;
    cores.insert(std::to_string(pkg) + ":" + std::to_string(core));
  }
  const int n = static_cast<int>(cores.size());
  return n > 0 ? n : allowed;
}

}  // namespace bitllm
