// Selections over a row of logits for the sampler (lib/engine/sampler.ts), with the contracts of their
// TypeScript references (lib/reference/select.ts): comparisons only, so every build gives the same ids.
// Candidates are the values > -inf (NaN and -inf never count).
#pragma once
#include <cstdint>

namespace bitllm {

// The index of the first largest candidate (a sequential scan that keeps the first of equal values, +0 and
// -0 equal); 0 when there is none.
int64_t logits_argmax(const float* x, int64_t n);

// The k >= 1 largest candidates (ties: the lower index first) into out[0, count), in heap order (the worst
// at out[0]); count = min(k, number of candidates). out holds at least min(k, n) ids.
int64_t logits_top_k(const float* x, int64_t n, int64_t k, int32_t* out);

}  // namespace bitllm
