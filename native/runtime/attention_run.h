// Runs causal GQA attention (kernels/ops.h) over a thread pool: shared by the attentionF16/Q8/Q3 bindings
// and the one-call forward. Query heads are split into `parts`; part c handles heads
// [nh c / parts, nh (c+1) / parts) with its own scratch slice, and every thread runs at most one part.
#pragma once
#include <cstdint>

#include "../kernels/kernels.h"
#include "thread_pool.h"

namespace bitllm {

// Element format of the K/V caches (layouts in kernels/ops.h).
enum class KvKind : int { f16 = 0, q8 = 1, q3 = 2 };

struct AttentionCall {
  const float* q;   // [B, nh, hd] (row stride ldq)
  const void* k;    // f16: uint16_t caches; q8 / q3: uint8_t caches (layout in kernels/ops.h)
  const void* v;
  KvKind kind;
  const int32_t* pos;  // [B]
  float* out;          // [B, nh, hd] (row stride ldo)
  int64_t B, nh, nkv, hd, capacity, ldq, ldo;
  float scale;
};

// Parts to split a call into: 1 for tiny calls (a first decode step), else one per thread (<= nh).
int64_t attention_parts(const ThreadPool& pool, const int32_t* pos, int64_t B, int64_t nh, int64_t hd);
// Scratch floats for `parts` parts when the largest position is max_pos.
int64_t attention_run_scratch(int64_t parts, int64_t nh, int64_t nkv, int64_t hd, int64_t max_pos);
void run_attention(const KernelTable& t, ThreadPool& pool, const AttentionCall& c, int64_t parts, int64_t max_pos,
                   float* scratch);

}  // namespace bitllm
