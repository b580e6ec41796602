// ternary_lut bindings: placeholder until the family's kernels land.
#include "common.h"

namespace bitllm {

void register_ternary_lut(Napi::Env, Napi::Object) {}

}  // namespace bitllm
