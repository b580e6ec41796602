// binary neon variant: placeholder fill (keeps the narrower variant) until the kernels land.
#include "kernels.h"

namespace bitllm {

void fill_binary_neon(KernelTable&, const CpuFeatures&) {}

}  // namespace bitllm
