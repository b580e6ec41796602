// See logits_select.h. The scans run in blocks of kLanes with one comparison per element and no branch
// inside a block (the compiler vectorizes them at the baseline ISA); only a block that holds a value
// above the current bound goes element by element, in index order, exactly as the reference's scan does.
#include "logits_select.h"

#include <limits>

namespace bitllm {

namespace {
constexpr int64_t kLanes = 16;
constexpr float kNegInf = -std::numeric_limits<float>::infinity();
}  // namespace

int64_t logits_argmax(const float* x, int64_t n) {
  // The largest candidate value: a per-lane running maximum (comparisons only, so any grouping gives the
  // same value up to the sign of a zero, which the equality scan below does not see).
  float m[kLanes];
  for (float& v : m) v = kNegInf;
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes)
    for (int64_t j = 0; j < kLanes; ++j) m[j] = x[i + j] > m[j] ? x[i + j] : m[j];
  float mx = kNegInf;
  for (; i < n; ++i) mx = x[i] > mx ? x[i] : mx;
  for (float v : m) mx = v > mx ? v : mx;
  if (!(mx > kNegInf)) return 0;
  for (i = 0; i < n; ++i)
    if (x[i] == mx) return i;
  return 0;  // not reached: mx is one of the values
}

int64_t logits_top_k(const float* x, int64_t n, int64_t k, int32_t* out) {
  // worse(a, b): id a ranks below id b.
  auto worse = [x](int32_t a, int32_t b) { return x[a] < x[b] || (x[a] == x[b] && a > b); };
  int64_t c = 0;
  auto sift_down = [&](int64_t p) {
    for (;;) {
      const int64_t l = 2 * p + 1;
      if (l >= c) return;
      const int64_t r = l + 1;
      const int64_t m = r < c && worse(out[r], out[l]) ? r : l;
      if (!worse(out[m], out[p])) return;
      const int32_t t = out[p];
      out[p] = out[m];
      out[m] = t;
      p = m;
    }
  };
  int64_t i = 0;
  for (; i < n && c < k; ++i) {
    if (!(x[i] > kNegInf)) continue;
    out[c] = static_cast<int32_t>(i);
    for (int64_t j = c++; j > 0;) {  // sift up
      const int64_t p = (j - 1) >> 1;
      if (!worse(out[j], out[p])) break;
      const int32_t t = out[j];
      out[j] = out[p];
      out[p] = t;
      j = p;
    }
  }
  if (c < k) return c;
  float floor = x[out[0]];
  auto visit = [&](int64_t e) {
    if (x[e] > floor) {  // strictly: an equal value has a higher id than the root and ranks below it
      out[0] = static_cast<int32_t>(e);
      sift_down(0);
      floor = x[out[0]];
    }
  };
  for (; i < n && i % kLanes != 0; ++i) visit(i);
  for (; i + kLanes <= n; i += kLanes) {
    bool any = false;
    for (int64_t j = 0; j < kLanes; ++j) any |= x[i + j] > floor;
    if (any)
      for (int64_t j = 0; j < kLanes; ++j) visit(i + j);
  }
  for (; i < n; ++i) visit(i);
  return c;
}

}  // namespace bitllm
