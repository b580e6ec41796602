// dense bindings: placeholder until the family's kernels land.
#include "common.h"

namespace bitllm {

void register_dense(Napi::Env, Napi::Object) {}

}  // namespace bitllm
