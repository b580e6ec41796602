// binary bindings: placeholder until the family's kernels land.
#include "common.h"

namespace bitllm {

void register_binary(Napi::Env, Napi::Object) {}

}  // namespace bitllm
