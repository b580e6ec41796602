// Builds a KernelTable for an ISA: the only place that knows which variants exist.
#pragma once
#include <string>
#include <vector>

#include "../kernels/kernels.h"

namespace bitllm {

// Whether this build has code for `isa` and this CPU can run it.
bool isa_supported(Isa isa, const CpuFeatures& f);
// Best supported ISA: avx512 > avx2 > scalar on x86, neon > scalar on aarch64.
Isa best_isa(const CpuFeatures& f);
// Every supported ISA, narrowest first.
std::vector<Isa> supported_isas(const CpuFeatures& f);
// Parses "scalar" | "avx2" | "avx512" | "neon". Returns false for anything else.
bool parse_isa(const std::string& name, Isa* out);
// Fills `t` for `isa`; returns false (with `err` set) when the ISA is not supported here.
bool make_kernel_table(Isa isa, const CpuFeatures& f, KernelTable* t, std::string* err);
// The ISA a new context uses by default: BITLLM_ISA if set (error if unsupported/unknown), else best.
bool default_isa(const CpuFeatures& f, Isa* out, std::string* err);

}  // namespace bitllm
