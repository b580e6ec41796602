#include "dispatch.h"

#include <cstdlib>

namespace bitllm {

const char* isa_name(Isa isa) {
  switch (isa) {
    case Isa::scalar: return "scalar";
    case Isa::avx2: return "avx2";
    case Isa::avx512: return "avx512";
    case Isa::neon: return "neon";
  }
  return "unknown";
}

bool isa_supported(Isa isa, const CpuFeatures& f) {
  switch (isa) {
    case Isa::scalar: return true;
#if defined(__x86_64__) || defined(_M_X64)
    case Isa::avx2: return f.avx2 && f.fma && f.f16c;
    case Isa::avx512:
      return f.avx2 && f.fma && f.f16c && f.avx512f && f.avx512bw && f.avx512vl && f.avx512vnni;
#endif
#if defined(__aarch64__)
    case Isa::neon: return f.neon;
#endif
    default: return false;
  }
}

std::vector<Isa> supported_isas(const CpuFeatures& f) {
  std::vector<Isa> out;
  for (Isa isa : {Isa::scalar, Isa::avx2, Isa::avx512, Isa::neon})
    if (isa_supported(isa, f)) out.push_back(isa);
  return out;
}

Isa best_isa(const CpuFeatures& f) { return supported_isas(f).back(); }

bool parse_isa(const std::string& name, Isa* out) {
  for (Isa isa : {Isa::scalar, Isa::avx2, Isa::avx512, Isa::neon}) {
    if (name == isa_name(isa)) {
      *out = isa;
      return true;
    }
  }
  return false;
}

namespace {

void fill_scalar(KernelTable& t, const CpuFeatures& f) {
  fill_act_quant_scalar(t, f);
  fill_ternary_i2_scalar(t, f);
  fill_ternary_lut_scalar(t, f);
  fill_ternary_td3_scalar(t, f);
  fill_ternary_sparse_scalar(t, f);
  fill_binary_scalar(t, f);
  fill_binary_lut_scalar(t, f);
  fill_billm_scalar(t, f);
  fill_dense_scalar(t, f);
  fill_ops_scalar(t, f);
  fill_mamba2_scalar(t, f);
}

#if defined(__x86_64__) || defined(_M_X64)
void fill_avx2(KernelTable& t, const CpuFeatures& f) {
  fill_act_quant_avx2(t, f);
  fill_ternary_i2_avx2(t, f);
  fill_ternary_lut_avx2(t, f);
  fill_ternary_td3_avx2(t, f);
  fill_ternary_sparse_avx2(t, f);
  fill_binary_avx2(t, f);
  fill_binary_lut_avx2(t, f);
  fill_billm_avx2(t, f);
  fill_dense_avx2(t, f);
  fill_ops_avx2(t, f);
  fill_mamba2_avx2(t, f);
}
void fill_avx512(KernelTable& t, const CpuFeatures& f) {
  fill_act_quant_avx512(t, f);
  fill_ternary_i2_avx512(t, f);
  fill_ternary_lut_avx512(t, f);
  fill_ternary_td3_avx512(t, f);
  fill_ternary_sparse_avx512(t, f);
  fill_binary_avx512(t, f);
  fill_binary_lut_avx512(t, f);
  fill_billm_avx512(t, f);
  fill_dense_avx512(t, f);
  fill_ops_avx512(t, f);
  fill_mamba2_avx512(t, f);
}
#endif

#if defined(__aarch64__)
void fill_neon(KernelTable& t, const CpuFeatures& f) {
  fill_act_quant_neon(t, f);
  fill_ternary_i2_neon(t, f);
  fill_ternary_lut_neon(t, f);
  fill_ternary_td3_neon(t, f);
  fill_ternary_sparse_neon(t, f);
  fill_binary_neon(t, f);
  fill_binary_lut_neon(t, f);
  fill_billm_neon(t, f);
  fill_dense_neon(t, f);
  fill_ops_neon(t, f);
  fill_mamba2_neon(t, f);
}
#endif

}  // namespace

bool make_kernel_table(Isa isa, const CpuFeatures& f, KernelTable* t, std::string* err) {
  if (!isa_supported(isa, f)) {
    if (err) *err = std::string("ISA '") + isa_name(isa) + "' is not supported by this CPU or build";
    return false;
  }
  *t = KernelTable();
  fill_scalar(*t, f);
#if defined(__x86_64__) || defined(_M_X64)
  if (isa == Isa::avx2 || isa == Isa::avx512) fill_avx2(*t, f);
  if (isa == Isa::avx512) fill_avx512(*t, f);
#endif
#if defined(__aarch64__)
  if (isa == Isa::neon) fill_neon(*t, f);
#endif
  t->isa = isa;
  return true;
}

bool default_isa(const CpuFeatures& f, Isa* out, std::string* err) {
  const char* env = std::getenv("BITLLM_ISA");
  if (env == nullptr || *env == '\0') {
    *out = best_isa(f);
    return true;
  }
  Isa isa;
  if (!parse_isa(env, &isa)) {
    if (err) *err = std::string("BITLLM_ISA='") + env + "' is not one of scalar, avx2, avx512, neon";
    return false;
  }
  if (!isa_supported(isa, f)) {
    if (err) *err = std::string("BITLLM_ISA='") + env + "' is not supported by this CPU or build";
    return false;
  }
  *out = isa;
  return true;
}

}  // namespace bitllm
