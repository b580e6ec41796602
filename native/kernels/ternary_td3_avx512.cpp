// TD3 GEMM, AVX-512 VNNI variants (bit-exact to ternary_td3_scalar.cpp and ternary_gemm); the body is
// ternary_td3_avx512.inc, compiled twice:
//   td3_bw    AVX-512 BW: vpshufb on the masked nibbles, a negative group's byte is 42 - byte (vpsubb
//             masked by vptestmb of the sign plane), fields masked in place (weights 4^d) -> vpdpbusd.
//   td3_vbmi  + AVX512-VBMI (Ice Lake and later, Zen 4): the sign bits are merged into a 6-bit vpermb
//             index, and one table per digit yields each sign-corrected code directly (weight 1).
// Both decode every unit once per 4 tokens for B > 1, and provide the tile decoder to T2R16.
#include <immintrin.h>

#include <cstring>
#include <type_traits>
#include <utility>

#include "kernels.h"

#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#endif

namespace bitllm {

namespace td3_bw {
constexpr bool kVbmi = false;
#include "ternary_td3_avx512.inc"
}  // namespace td3_bw

#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx512vbmi"))), apply_to = function)
#elif defined(__GNUC__)
#pragma GCC push_options
#pragma GCC target("avx512vbmi")
#endif
namespace td3_vbmi {
constexpr bool kVbmi = true;
#include "ternary_td3_avx512.inc"
}  // namespace td3_vbmi
#if defined(__clang__)
#pragma clang attribute pop
#elif defined(__GNUC__)
#pragma GCC pop_options
#endif

Td3Avx512Kernels ternary_td3_avx512_kernels(bool vbmi) {
  if (!vbmi) return {td3_bw::td3_gemm, td3_bw::td3_to_t2};
  // CpuFeatures has no VBMI bit; the compiler's cpuid cache answers (Ice Lake and later, Zen 4).
  if (!__builtin_cpu_supports("avx512vbmi")) return {nullptr, nullptr};
  return {td3_vbmi::td3_gemm, td3_vbmi::td3_to_t2};
}

void fill_ternary_td3_avx512(KernelTable& t, const CpuFeatures&) {
  Td3Avx512Kernels k = ternary_td3_avx512_kernels(true);
  t.v_ternary_td3 = k.gemm ? "avx512-vbmi" : "avx512";
  if (!k.gemm) k = ternary_td3_avx512_kernels(false);
  t.ternary_td3_gemm = k.gemm;
  t.ternary_td3_to_t2 = k.to_t2;
}

}  // namespace bitllm
