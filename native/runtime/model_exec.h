// The forward pass of every attention-block architecture in one native call (DESIGN.md §2, §6, §8): the
// same op sequence as lib/model/transformer.ts runs through the same kernel table and thread pool, with no JS or N-API
// boundary between ops. Per token it removes ~17 binding calls per layer, the q/k/v copies (RoPE,
// the KV store and attention read the fused q|k|v rows with a row stride) and the JS residual adds.
// The results are bit-identical to the op-by-op path: every op is the same kernel on the same rows,
// and no op's result depends on how its rows are split over threads.
//
// Nothing here is global: a ModelPlan borrows weight memory owned by JS (the binding keeps it
// alive), a ModelExec owns the scratch of one model, and a forward gets the KV cache of one sequence.
#pragma once
#include <chrono>
#include <cstdint>
#include <vector>

#include "../kernels/kernels.h"
#include "attention_run.h"
#include "kv_pool.h"
#include "linear.h"
#include "thread_pool.h"

namespace bitllm {

// The token embedding / lm_head: F16 row-major [M, K], Q8R16 or Q4R16.
struct PlanDense {
  enum Kind : int32_t { kF16 = 0, kQ8 = 1, kQ4 = 2, kF16T = 3 };
  int32_t kind = kF16;
  const uint16_t* f16 = nullptr;  // kF16: GGUF rows [M, K]; kF16T: F16T32 tiles (dense.h)
  Q8Mat q8{};
  Q4Mat q4{};
  int64_t M = 0, K = 0;
};

// Scratch of a q8 / q4 head's int8 activations, grown on demand.
struct HeadScratch {
  std::vector<int8_t> q;
  std::vector<float> scale;
  std::vector<int32_t> sum, bsum;
};
// x [B, e.K] = the embedding rows of tokens (ids checked by the caller).
void embed_rows(const KernelTable& t, ThreadPool& pool, const PlanDense& e, const int32_t* tokens, int64_t B, float* x);
// logits [n, hw.M] = hw · h [n, hw.K] (an F16 / F16T32 head on the float rows; Q8R16 / Q4R16 on their int8
// quantization).
void head_logits(const KernelTable& t, ThreadPool& pool, const PlanDense& hw, const float* h, int64_t n, float* logits,
                 HeadScratch& s);

// Linears that share an input; their outputs sit side by side (q|k|v, gate|up). A fused projection is
// one LinearPlan; families with per-projection pre-steps (FBI-LLM, OneBit) have one per projection.
using LinearGroup = std::vector<LinearPlan>;

struct PlanLayer {
  const float* attn_norm = nullptr;      // [d]
  LinearGroup wqkv;                      // [d + 2 dkv, d]
  const float* attn_sub_norm = nullptr;  // [d] or nullptr
  LinearGroup wo;                        // [d, d]
  const float* ffn_norm = nullptr;       // [d]
  LinearGroup wgu;                       // [2 ff, d]
  const float* ffn_sub_norm = nullptr;   // [ff] or nullptr
  LinearGroup wdown;                     // [d, ff]
};

struct ModelPlan {
  int64_t n_embd = 0, n_ff = 0, n_head = 0, n_head_kv = 0, head_dim = 0, n_rot = 0, n_vocab = 0;
  float rope_theta = 10000.f, eps = 1e-5f;
  bool silu = false;  // gate activation: SiLU, else ReLU²
  std::vector<PlanLayer> layers;
  const float* output_norm = nullptr;  // [d]
  PlanDense embd;
  PlanDense head;
};

// One sequence's KV cache (layout per kernels/ops.h): per layer a K and a V plane set.
struct KvView {
  KvKind kind = KvKind::f16;
  int64_t capacity = 0;
  std::vector<void*> k, v;  // [n_layer]
};

// Time per op class, accumulated over forwards when profiling is on (nanoseconds).
enum ProfileOp : int {
  kProfEmbed = 0,
  kProfNorm,
  kProfQuant,
  kProfGemmQkv,
  kProfGemmO,
  kProfGemmGateUp,
  kProfGemmDown,
  kProfRope,
  kProfKvStore,
  kProfAttention,
  kProfGlu,
  kProfResidual,
  kProfHead,
  kProfTotal,
  kProfCount
};
const char* profile_op_name(int op);

// Scoped timer adding its nanoseconds to prof[op] (no-op when prof is null).
class ProfileTimer {
 public:
  ProfileTimer(double* prof, int op) : prof_(prof), op_(op) {
    if (prof_) t0_ = std::chrono::steady_clock::now();
  }
  ~ProfileTimer() {
    if (prof_)
      prof_[op_] += static_cast<double>(
          std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now() - t0_).count());
  }
  ProfileTimer(const ProfileTimer&) = delete;
  ProfileTimer& operator=(const ProfileTimer&) = delete;

 private:
  double* prof_;
  int op_;
  std::chrono::steady_clock::time_point t0_;
};

class ModelExec {
 public:
  explicit ModelExec(ModelPlan plan) : p_(std::move(plan)) {}
  const ModelPlan& plan() const { return p_; }

  // Runs tokens[0, B) at positions pos0 .. pos0+B-1 (pos0 + B <= kv.capacity, validated by the
  // caller, as are the token ids), stores their K/V and writes the logits of the last n_out tokens
  // to logits [n_out, n_vocab]. prof (kProfCount doubles, or nullptr) accumulates ns per op class.
  void forward(const KernelTable& t, ThreadPool& pool, const int32_t* tokens, int64_t B, int64_t pos0,
               const KvView& kv, int64_t n_out, float* logits, double* prof);

  // The batch-first forward (DESIGN.md §4): row b is token tokens[b] of sequence seq[b] at position
  // pos[b]; the rows of many sequences run together (every GEMM over all B rows; RoPE, the KV store
  // and attention per row through that row's block table in kv). The rows must have been admitted
  // (kv.admit(seq, pos, B): live sequences, contiguous positions, blocks reserved); token ids are
  // validated by the caller. Writes the logits of rows out_rows[0, n_out) (ascending) to logits
  // [n_out, n_vocab] in that order. Batch-invariant: a row's logits depend only on its token, its
  // position and its sequence's cached K/V, never on the other rows, B, the row's index or the
  // thread count (every kernel computes a row with one fixed operation order).
  void forward_batch(const KernelTable& t, ThreadPool& pool, const int32_t* tokens, const int32_t* seq,
                     const int32_t* pos, int64_t B, const KvPool& kv, const int32_t* out_rows, int64_t n_out,
                     float* logits, double* prof);
  // Scratch for a batch of B rows whose largest position is max_pos (call before kv.admit, so a failed
  // allocation leaves the pool as it was).
  void reserve(int64_t B, int64_t max_pos, int nthreads) { ensure(B, max_pos + 1, nthreads); }

 private:
  void ensure(int64_t B, int64_t max_ctx, int nthreads);
  // The layers and the head; kv_store(l) and attend(l, parts) do the per-layer KV work.
  template <typename Store, typename Attend>
  void run(const KernelTable& t, ThreadPool& pool, const int32_t* tokens, int64_t B, const int32_t* pos,
           Store&& kv_store, Attend&& attend, const int32_t* out_rows, int64_t n_out, float* logits, double* prof);

  ModelPlan p_;
  int64_t cap_b_ = 0;
  LinearScratch lin_;
  std::vector<float> x_, h_, qkv_, attn_, o_, gu_, ffh_, attn_scratch_;
  HeadScratch head_;
  std::vector<int32_t> pos_, out_rows_;
  std::vector<const void* const*> row_table_;
  std::vector<uint8_t*> row_block_;
  // Float K/V of the sequences with several rows in a forward_batch step (plan_float_kv).
  struct FloatKvGroup {
    int32_t row;  // a row of the sequence (its block table)
    int64_t len;  // positions converted: 0 .. the sequence's largest position here
    int64_t off;  // floats into kv_f32_: K planes [nkv, len, hd], then V planes
  };
  static constexpr int64_t kFloatKvMinRows = 4;
  static constexpr int64_t kFloatKvMaxFloats = int64_t{1} << 24;  // 64 MiB
  static constexpr int64_t kFloatKvMaxRuns = 64;  // distinct sequences looked at per step
  void plan_float_kv(const int32_t* seq, const int32_t* pos, int64_t B, KvKind kind, int64_t nkv, int64_t hd);
  std::vector<FloatKvGroup> kv_groups_;
  std::vector<int64_t> kv_group_blocks_;  // first block unit of each group, then the total
  std::vector<int32_t> row_group_;        // [B] group of each row or -1
  std::vector<int32_t> row_chunks_;       // attention's row units: first row of each, then B
  std::vector<std::pair<int32_t, int64_t>> kv_runs_;
  std::vector<float> kv_f32_;
};

}  // namespace bitllm
