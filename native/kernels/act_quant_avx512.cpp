// act_quant avx512 variant: placeholder fill (keeps the narrower variant) until the kernels land.
#include "kernels.h"

namespace bitllm {

void fill_act_quant_avx512(KernelTable&, const CpuFeatures&) {}

}  // namespace bitllm
