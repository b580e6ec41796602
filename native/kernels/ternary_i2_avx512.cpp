// ternary_i2 avx512 variant: placeholder fill (keeps the narrower variant) until the kernels land.
#include "kernels.h"

namespace bitllm {

void fill_ternary_i2_avx512(KernelTable&, const CpuFeatures&) {}

}  // namespace bitllm
