// CPU feature detection (cpuid/xgetbv on x86, getauxval on aarch64).
#pragma once
#include "../kernels/kernels.h"

namespace bitllm {

// Detected once; also honours nothing from the environment (BITLLM_ISA is applied in dispatch).
const CpuFeatures& cpu_features();

// Number of physical cores usable by this process (affinity-aware, SMT siblings counted once).
int physical_cores();

}  // namespace bitllm
