// act_quant neon variant: placeholder fill (keeps the narrower variant) until the kernels land.
#include "kernels.h"

namespace bitllm {

void fill_act_quant_neon(KernelTable&, const CpuFeatures&) {}

}  // namespace bitllm
