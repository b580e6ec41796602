#include "attention_run.h"

#include <algorithm>

namespace bitllm {

int64_t attention_parts(const ThreadPool& pool, const int32_t* pos, int64_t B, int64_t nh, int64_t hd) {
  int64_t work = 0;
  for (int64_t b = 0; b < B; ++b) work += (static_cast<int64_t>(pos[b]) + 1) * nh * hd;
  return work < ThreadPool::kMinParallelWork ? 1 : std::min<int64_t>(pool.size(), nh);
}

int64_t attention_run_scratch(int64_t parts, int64_t nh, int64_t nkv, int64_t hd, int64_t max_pos) {
  return parts * attention_scratch_floats(nh / nkv, hd, max_pos + 1);
}

void run_attention(const KernelTable& t, ThreadPool& pool, const AttentionCall& c, int64_t parts, int64_t max_pos,
                   float* scratch) {
  const int64_t per = attention_scratch_floats(c.nh / c.nkv, c.hd, max_pos + 1);
  auto part = [&](int64_t p0, int64_t p1) {
    for (int64_t p = p0; p < p1; ++p) {
      const int64_t h0 = c.nh * p / parts, h1 = c.nh * (p + 1) / parts;
      float* sp = scratch + p * per;
      switch (c.kind) {
        case KvKind::f16:
          t.attention_f16(c.q, static_cast<const uint16_t*>(c.k), static_cast<const uint16_t*>(c.v), c.pos, c.out,
                          c.B, c.nh, c.nkv, c.hd, c.capacity, c.ldq, c.ldo, c.scale, h0, h1, sp);
          break;
        case KvKind::q8:
          t.attention_q8(c.q, static_cast<const uint8_t*>(c.k), static_cast<const uint8_t*>(c.v), c.pos, c.out, c.B,
                         c.nh, c.nkv, c.hd, c.capacity, c.ldq, c.ldo, c.scale, h0, h1, sp);
          break;
        case KvKind::q3:
          t.attention_q3(c.q, static_cast<const uint8_t*>(c.k), static_cast<const uint8_t*>(c.v), c.pos, c.out, c.B,
                         c.nh, c.nkv, c.hd, c.capacity, c.ldq, c.ldo, c.scale, h0, h1, sp);
          break;
      }
    }
  };
  // parallel_for balances to within one unit, so with parts <= threads no thread gets two parts and the
  // scratch slices are never shared.
  if (parts == 1)
    part(0, 1);
  else
    pool.parallel_for(parts, part);
}

}  // namespace bitllm
