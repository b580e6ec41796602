// The Mamba-2 block kind's forward in one native call (DESIGN.md §8.4): Bi-Mamba, its FP teacher and the
// binarized hybrid, over a batch of rows of many sequences whose states live in a RecurrentPool. The same op
// sequence as lib/model/mamba2-exec.ts (the op-by-op twin, kept as the oracle's neighbour) through the same
// kernel table and thread pool, with no N-API boundary between ops, and bit-identical to it:
//   per layer  h = rmsnorm(res)  (after the first layer fused with the residual add: res += out, then the norm
//              of that row while it is in cache; fp32 throughout)
//   Mamba-2    in_proj (every row) → z | xBC | dt read in place (row strides, no copies) → per sequence the
//              causal conv on its conv state and the SSD scan on its SSM state (the chunked scan over whole
//              chunks aligned to absolute positions, the recurrence elsewhere) → gated RMSNorm → out_proj
//   attention  q|k|v (every row) → NEOX RoPE → per sequence: K/V into its f16 caches, causal GQA → wo
//   head       output norm and the head over the rows that want logits
// Rows may come in any order: they are gathered per sequence (first appearance order) and each sequence's
// rows run in row order. A row's logits depend only on its sequence's rows and where they start and end,
// never on the rest of the batch (every kernel computes a row, a channel or a head with one fixed order).
#pragma once
#include <cstdint>
#include <unordered_map>
#include <vector>

#include "../kernels/kernels.h"
#include "linear.h"
#include "model_exec.h"
#include "recurrent_pool.h"
#include "thread_pool.h"

namespace bitllm {

struct Mamba2PlanLayer {
  bool attention = false;
  const float* norm = nullptr;  // [d] the pre-norm
  // Mamba-2 mixer
  LinearPlan in_proj, out_proj;  // [2 dInner + 2 G + nHeads, d], [d, dInner]
  const float* conv_w = nullptr;  // [convDim, dConv]
  const float* conv_b = nullptr;  // [convDim]
  const float* dt_bias = nullptr;  // [nHeads]
  const float* a_log = nullptr;    // [nHeads]
  const float* d_skip = nullptr;   // [nHeads]
  const float* gnorm = nullptr;    // [dInner]
  // attention mixer (hybrid)
  LinearGroup wqkv;  // [nHead hd + 2 nHeadKv hd, d]
  LinearPlan wo;     // [d, nHead hd]
};

struct Mamba2Plan {
  int64_t d_model = 0, d_inner = 0, n_heads = 0, d_state = 0, n_groups = 0, d_conv = 0, n_vocab = 0;
  float eps = 1e-5f, norm_eps = 1e-5f;
  // attention layers (a hybrid): 0 heads when there are none
  int64_t n_head = 0, n_head_kv = 0, head_dim = 0;
  float rope_theta = 10000.f;
  std::vector<Mamba2PlanLayer> layers;
  const float* output_norm = nullptr;
  PlanDense embd, head;

  int64_t p() const { return d_inner / n_heads; }
  int64_t g() const { return n_groups * d_state; }
  int64_t conv_dim() const { return d_inner + 2 * g(); }
  int64_t in_dim() const { return 2 * d_inner + 2 * g() + n_heads; }
  int64_t qkv_dim() const { return (n_head + 2 * n_head_kv) * head_dim; }
};

// Where each layer's state lives in one sequence's state memory, for a context of `capacity` positions:
// Mamba-2 layers [conv (dConv - 1) x convDim floats][ssm nHeads x P x N floats]; attention layers
// [K nHeadKv x capacity x hd halves][V same]. Offsets are 64-byte aligned.
struct Mamba2StateLayout {
  std::vector<int64_t> off;  // per layer: conv / K
  std::vector<int64_t> off2;  // per layer: ssm / V
  int64_t bytes = 0;
};
Mamba2StateLayout mamba2_state_layout(const Mamba2Plan& p, int64_t capacity);

// Time per op class of the Mamba-2 forward, accumulated over forwards when profiling is on (nanoseconds).
enum Mamba2ProfileOp : int {
  kM2Embed = 0,
  kM2Norm,       // the residual add fused with the pre-norm
  kM2InProj,
  kM2Conv,
  kM2Scan,
  kM2GatedNorm,
  kM2OutProj,
  kM2AttnQkv,    // the hybrid's attention layers
  kM2Rope,
  kM2KvStore,
  kM2Attention,
  kM2AttnOut,
  kM2Head,       // the last residual add, the output norm and the head
  kM2Total,
  kM2ProfCount
};
const char* mamba2_profile_op_name(int op);

class Mamba2Exec {
 public:
  explicit Mamba2Exec(Mamba2Plan plan) : p_(std::move(plan)) {}
  const Mamba2Plan& plan() const { return p_; }
  // mamba2_state_layout(plan, capacity), computed once per capacity (a model serves one pool's context).
  const Mamba2StateLayout& layout(int64_t capacity);

  // Scratch for B rows whose largest position is max_pos, scanning in chunks of `chunk` rows (call before
  // pool.admit, so a failed allocation leaves the pool as it was).
  void reserve(int64_t B, int64_t max_pos, int64_t chunk, int nthreads);
  // Row b: token tokens[b] of sequence seq[b] at position pos[b]; the rows were admitted by `pool` (whose
  // state size is mamba2_state_layout(plan, pool.max_seq_len()).bytes, checked by the caller) and token ids
  // checked. chunk: the scan's chunk (0: the recurrence only). Writes the logits of rows out_rows[0, n_out)
  // (any rows, in that order) to logits [n_out, n_vocab].
  void forward_batch(const KernelTable& t, ThreadPool& pool, const int32_t* tokens, const int32_t* seq, const int32_t* pos,
                     int64_t B, const RecurrentPool& states, const int32_t* out_rows, int64_t n_out, float* logits,
                     int64_t chunk, double* prof = nullptr);

 private:
  Mamba2Plan p_;
  int64_t cap_b_ = 0;
  LinearScratch lin_;
  HeadScratch head_;
  std::vector<float> res_, h_, proj_, conv_, y_, yn_, out_, qkv_, attn_, ssd_scratch_, attn_scratch_;
  std::vector<int32_t> tok_, pos_;
  // The step's rows gathered per sequence: segments, the sequence -> segment map, each row's gathered index.
  struct Seg {
    uint8_t* mem;
    int64_t start, rows;
  };
  std::vector<Seg> segs_;
  std::unordered_map<int32_t, size_t> seg_of_;
  std::vector<int64_t> at_;
  Mamba2StateLayout layout_;
  int64_t layout_cap_ = -1;
};

}  // namespace bitllm
