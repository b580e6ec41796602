// dense neon variant: placeholder fill (keeps the narrower variant) until the kernels land.
#include "kernels.h"

namespace bitllm {

void fill_dense_neon(KernelTable&, const CpuFeatures&) {}

}  // namespace bitllm
