// The kernel table: one function pointer per kernel, filled once per ISA at context creation.
#pragma once
#include <cstdint>

#include "act_quant.h"
#include "billm.h"
#include "binary.h"
#include "binary_lut.h"
#include "dense.h"
#include "mamba2.h"
#include "ops.h"
#include "ternary_i2.h"
#include "ternary_lut.h"
#include "ternary_sparse.h"
#include "ternary_td3.h"

namespace bitllm {

enum class Isa : int { scalar = 0, avx2 = 1, avx512 = 2, neon = 3 };

// What the CPU can do (runtime/cpu_features.cpp). Isa::avx2 needs avx2+fma+f16c; Isa::avx512 needs
// avx512 f+bw+vl+vnni on top of avx2; Isa::neon is every aarch64 CPU, with dotprod/i8mm optional.
struct CpuFeatures {
  bool avx2 = false, fma = false, f16c = false;
  bool avx512f = false, avx512bw = false, avx512vl = false, avx512vnni = false;
  bool avx512vpopcntdq = false, avx512bitalg = false;
  bool neon = false, dotprod = false, i8mm = false;
};

const char* isa_name(Isa isa);

struct KernelTable {
  Isa isa = Isa::scalar;
  act_quant_fn act_quant_i8 = nullptr;
  act_quant_fn act_quant_i4 = nullptr;
  act_block_sums_fn act_block_sums = nullptr;
  act_quant_topk_fn act_quant_topk_i8 = nullptr;
  ternary_gemm_fn ternary_gemm = nullptr;
  ternary_lut_build_fn ternary_lut_build = nullptr;
  ternary_lut_gemm_fn ternary_lut_gemm = nullptr;
  ternary_td3_gemm_fn ternary_td3_gemm = nullptr;
  ternary_td3_to_t2_fn ternary_td3_to_t2 = nullptr;
  ternary_sparse_prep_fn ternary_sparse_prep = nullptr;
  ternary_sparse_gemm_fn ternary_sparse_gemm = nullptr;
  binary_gemm_fn binary_gemm = nullptr;
  binary_prep_fn binary_prep = nullptr;
  binary_lut_build_fn binary_lut_build = nullptr;
  binary_lut_gemm_fn binary_lut_gemm = nullptr;
  billm_prep_fn billm_prep = nullptr;
  billm_gemm_fn billm_gemm = nullptr;
  f16_gemm_fn f16_gemm = nullptr;
  f16_get_rows_fn f16_get_rows = nullptr;
  f16t_gemm_fn f16t_gemm = nullptr;
  f16t_get_rows_fn f16t_get_rows = nullptr;
  q8_gemm_fn q8_gemm = nullptr;
  q8_get_rows_fn q8_get_rows = nullptr;
  q4_gemm_fn q4_gemm = nullptr;
  q4_get_rows_fn q4_get_rows = nullptr;
  rmsnorm_fn rmsnorm = nullptr;
  rope_neox_fn rope_neox = nullptr;
  kv_store_f16_fn kv_store_f16 = nullptr;
  attention_f16_fn attention_f16 = nullptr;
  kv_store_q8_fn kv_store_q8 = nullptr;
  attention_q8_fn attention_q8 = nullptr;
  kv_store_q3_fn kv_store_q3 = nullptr;
  attention_q3_fn attention_q3 = nullptr;
  attention_paged_fn attention_paged_f16 = nullptr;  // the same kernels over a page table
  attention_paged_fn attention_paged_q8 = nullptr;
  attention_paged_fn attention_paged_q3 = nullptr;
  attention_paged_fn attention_paged_f32 = nullptr;  // over rows kv_rows_f32 converted
  kv_rows_f32_fn kv_rows_f32 = nullptr;
  glu_fn glu_relu2 = nullptr;
  glu_fn glu_silu = nullptr;
  mamba2_conv_fn mamba2_conv = nullptr;  // the Mamba-2 mixer (mamba2.h)
  ssd_recurrent_fn ssd_recurrent = nullptr;
  ssd_chunk_cb_fn ssd_chunk_cb = nullptr;
  ssd_chunked_fn ssd_chunked = nullptr;
  gated_rmsnorm_fn gated_rmsnorm = nullptr;

  // Variant that filled each entry ("scalar", "avx2", "avx512", "neon", "neon-dotprod"), for info().
  const char* v_act_quant = "none";
  const char* v_ternary = "none";
  const char* v_ternary_lut = "none";
  const char* v_ternary_td3 = "none";
  const char* v_ternary_sparse = "none";
  const char* v_binary = "none";
  const char* v_binary_lut = "none";
  const char* v_billm = "none";
  const char* v_f16 = "none";
  const char* v_q8 = "none";
  const char* v_q4 = "none";
  const char* v_ops = "none";
  const char* v_mamba2 = "none";
};

// Each kernel family file provides one fill function per ISA variant. A fill overwrites only the
// entries it accelerates; the dispatcher applies scalar, then avx2, then avx512 (or scalar then
// neon), so an entry a wider ISA does not improve keeps the narrower variant.
// Fills get the CPU features so a variant can pick sub-paths (e.g. NEON with or without dotprod,
// whose code lives in *_neondot.cpp files compiled with +dotprod).
#define BITLLM_DECLARE_FILLS(family)                                   \
  void fill_##family##_scalar(KernelTable& t, const CpuFeatures& f);   \
  void fill_##family##_avx2(KernelTable& t, const CpuFeatures& f);     \
  void fill_##family##_avx512(KernelTable& t, const CpuFeatures& f);   \
  void fill_##family##_neon(KernelTable& t, const CpuFeatures& f);

BITLLM_DECLARE_FILLS(act_quant)
BITLLM_DECLARE_FILLS(ternary_i2)
BITLLM_DECLARE_FILLS(ternary_lut)
BITLLM_DECLARE_FILLS(ternary_td3)
BITLLM_DECLARE_FILLS(ternary_sparse)
BITLLM_DECLARE_FILLS(binary)
BITLLM_DECLARE_FILLS(binary_lut)
BITLLM_DECLARE_FILLS(billm)
BITLLM_DECLARE_FILLS(dense)
BITLLM_DECLARE_FILLS(ops)
BITLLM_DECLARE_FILLS(mamba2)

#undef BITLLM_DECLARE_FILLS

}  // namespace bitllm
