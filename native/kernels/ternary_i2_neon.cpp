// ternary_i2 neon variant: placeholder fill (keeps the narrower variant) until the kernels land.
#include "kernels.h"

namespace bitllm {

void fill_ternary_i2_neon(KernelTable&, const CpuFeatures&) {}

}  // namespace bitllm
