// The forward pass of an attention-block model in one native call; see model_exec.h.
#include "model_exec.h"

#include <algorithm>
#include <cmath>
#include <new>

#include "attention_run.h"
#include "repack_ternary.h"

namespace bitllm {

namespace {

template <typename Body>
void run_split(ThreadPool& pool, int64_t n, int64_t unit_work, Body&& body) {
  pool.parallel_for_work(n, unit_work, body);
}

}  // namespace

const char* profile_op_name(int op) {
  static const char* const names[kProfCount] = {"embed",     "norm",      "act_quant", "gemm_qkv", "gemm_o",
                                                "gemm_gate_up", "gemm_down", "rope",   "kv_store", "attention",
                                                "glu",       "residual",  "head",      "total"};
  return op >= 0 && op < kProfCount ? names[op] : "?";
}

void ModelExec::ensure(int64_t B, int64_t max_ctx, int nthreads) {
  const int64_t d = p_.n_embd, ff = p_.n_ff, dkv = p_.n_head_kv * p_.head_dim;
  if (B > cap_b_) {
    x_.resize(B * d);
    h_.resize(B * d);
    qkv_.resize(B * (d + 2 * dkv));
    attn_.resize(B * d);
    o_.resize(B * d);
    gu_.resize(B * 2 * ff);
    ffh_.resize(B * ff);
    pos_.resize(B);
    // forward_batch's per-row tables: sized here, before the rows are admitted.
    row_table_.resize(static_cast<size_t>(B));
    row_block_.resize(static_cast<size_t>(B));
    row_group_.resize(static_cast<size_t>(B));
    row_chunks_.reserve(static_cast<size_t>(B) + 1);  // attention's row units: no allocation after admission
    kv_runs_.reserve(kFloatKvMaxRuns);
    cap_b_ = B;
  }
  const size_t need = static_cast<size_t>(attention_run_scratch(nthreads, p_.n_head, p_.n_head_kv, p_.head_dim, max_ctx - 1));
  if (attn_scratch_.size() < need) attn_scratch_.resize(need);
}

void embed_rows(const KernelTable& t, ThreadPool& pool, const PlanDense& e, const int32_t* tokens, int64_t B, float* x) {
  const int64_t d = e.K;
  if (e.kind == PlanDense::kF16)
    pool.parallel_for(B, [&](int64_t i0, int64_t i1) { t.f16_get_rows(e.f16, d, d, tokens + i0, i1 - i0, x + i0 * d, d); });
  else if (e.kind == PlanDense::kF16T)
    pool.parallel_for(B, [&](int64_t i0, int64_t i1) { t.f16t_get_rows(e.f16, d, tokens + i0, i1 - i0, x + i0 * d, d); });
  else if (e.kind == PlanDense::kQ8)
    pool.parallel_for(B, [&](int64_t i0, int64_t i1) { t.q8_get_rows(e.q8, tokens + i0, i1 - i0, x + i0 * d, d); });
  else
    pool.parallel_for(B, [&](int64_t i0, int64_t i1) { t.q4_get_rows(e.q4, tokens + i0, i1 - i0, x + i0 * d, d); });
}

void head_logits(const KernelTable& t, ThreadPool& pool, const PlanDense& hw, const float* h, int64_t n, float* logits,
                 HeadScratch& s) {
  const int64_t V = hw.M, d = hw.K;
  if (hw.kind == PlanDense::kF16) {
    // Chunks of whole 16-row groups, so each thread's rows stay register-blockable.
    const int64_t groups = (V + 15) / 16;
    pool.parallel_for_dynamic(groups, pool.chunk_grain(groups), [&](int64_t g0, int64_t g1) {
      t.f16_gemm(hw.f16, d, V, d, h, d, n, logits, V, g0 * 16, std::min(V, g1 * 16));
    });
    return;
  }
  if (hw.kind == PlanDense::kF16T) {
    const int64_t tiles = f16t_tiles(V);
    pool.parallel_for_dynamic(tiles, pool.chunk_grain(tiles), [&](int64_t t0, int64_t t1) {
      t.f16t_gemm(hw.f16, V, d, h, d, n, logits, V, t0, t1);
    });
    return;
  }
  // Per-token int8 quantization of h (the act-quant binding's split: over rows on the pool; rows are
  // independent either way).
  s.q.resize(static_cast<size_t>(n * d));
  s.scale.resize(static_cast<size_t>(n));
  s.sum.resize(static_cast<size_t>(n));
  int8_t* q = s.q.data();
  float* sc = s.scale.data();
  int32_t* sum = s.sum.data();
  const act_quant_fn fn = t.act_quant_i8;
  run_split(pool, n, d, [&](int64_t b0, int64_t b1) { fn(h + b0 * d, d, b1 - b0, d, q + b0 * d, d, sc + b0, sum + b0); });
  const QActs acts{q, sc, sum, nullptr, n, d, d};
  if (hw.kind == PlanDense::kQ4) {
    const int64_t nb = d / kQ4Block;
    s.bsum.resize(static_cast<size_t>(n * nb));
    q4_act_block_sums(q, d, n, d, s.bsum.data());
    const int64_t tiles = q4_tiles(V);
    pool.parallel_for_dynamic(tiles, pool.chunk_grain(tiles), [&](int64_t t0, int64_t t1) {
      t.q4_gemm(hw.q4, acts, s.bsum.data(), logits, V, t0, t1);
    });
  } else {
    const int64_t tiles = q8_tiles(V);
    pool.parallel_for_dynamic(tiles, pool.chunk_grain(tiles),
                              [&](int64_t t0, int64_t t1) { t.q8_gemm(hw.q8, acts, logits, V, t0, t1); });
  }
}

void ModelExec::forward(const KernelTable& t, ThreadPool& pool, const int32_t* tokens, int64_t B, int64_t pos0,
                         const KvView& kv, int64_t n_out, float* logits, double* prof) {
  ProfileTimer total(prof, kProfTotal);
  const ModelPlan& p = p_;
  const int64_t d = p.n_embd, hd = p.head_dim, nh = p.n_head, nkv = p.n_head_kv;
  const int64_t dkv = nkv * hd, nqkv = d + 2 * dkv;
  const int64_t max_ctx = pos0 + B;
  ensure(B, max_ctx, pool.size());
  int32_t* pos = pos_.data();
  for (int64_t b = 0; b < B; ++b) pos[b] = static_cast<int32_t>(pos0 + b);
  out_rows_.resize(static_cast<size_t>(n_out));
  for (int64_t i = 0; i < n_out; ++i) out_rows_[i] = static_cast<int32_t>(B - n_out + i);
  const float scale = static_cast<float>(1.0 / std::sqrt(static_cast<double>(hd)));
  const int64_t cap = kv.capacity;
  // Elements (f16) or bytes (q8, q3) of one cached row.
  const int64_t rb = kv.kind == KvKind::q8 ? q8_row_bytes(hd) : kv.kind == KvKind::q3 ? q3_row_bytes(hd) : hd;
  const float* qkv = qkv_.data();
  float* attn = attn_.data();
  auto store = [&](size_t l) {
    // Split by kv head: each thread owns whole cache planes.
    run_split(pool, nkv, B * hd, [&](int64_t h0, int64_t h1) {
      if (kv.kind != KvKind::f16) {
        uint8_t* kc = static_cast<uint8_t*>(kv.k[l]);
        uint8_t* vc = static_cast<uint8_t*>(kv.v[l]);
        const kv_store_q8_fn st = kv.kind == KvKind::q8 ? t.kv_store_q8 : t.kv_store_q3;
        st(qkv + d + h0 * hd, pos, kc + h0 * cap * rb, B, h1 - h0, hd, nqkv, cap);
        st(qkv + d + dkv + h0 * hd, pos, vc + h0 * cap * rb, B, h1 - h0, hd, nqkv, cap);
      } else {
        uint16_t* kc = static_cast<uint16_t*>(kv.k[l]);
        uint16_t* vc = static_cast<uint16_t*>(kv.v[l]);
        t.kv_store_f16(qkv + d + h0 * hd, pos, kc + h0 * cap * rb, B, h1 - h0, hd, nqkv, cap);
        t.kv_store_f16(qkv + d + dkv + h0 * hd, pos, vc + h0 * cap * rb, B, h1 - h0, hd, nqkv, cap);
      }
    });
  };
  const int64_t attn_parts = attention_parts(pool, pos, B, nh, hd);
  auto attend = [&](size_t l) {
    const AttentionCall call{qkv, kv.k[l], kv.v[l], kv.kind, pos, attn, B, nh, nkv, hd, cap, nqkv, d, scale};
    run_attention(t, pool, call, attn_parts, max_ctx - 1, attn_scratch_.data());
  };
  run(t, pool, tokens, B, pos, store, attend, out_rows_.data(), n_out, logits, prof);
}

void ModelExec::forward_batch(const KernelTable& t, ThreadPool& pool, const int32_t* tokens, const int32_t* seq,
                              const int32_t* pos, int64_t B, const KvPool& kv, const int32_t* out_rows, int64_t n_out,
                              float* logits, double* prof) {
  ProfileTimer total(prof, kProfTotal);
  const ModelPlan& p = p_;
  const int64_t d = p.n_embd, hd = p.head_dim, nh = p.n_head, nkv = p.n_head_kv;
  const int64_t dkv = nkv * hd, nqkv = d + 2 * dkv;
  int32_t max_pos = 0;
  for (int64_t b = 0; b < B; ++b) max_pos = std::max(max_pos, pos[b]);
  const int nthreads = pool.size();
  ensure(B, int64_t{max_pos} + 1, nthreads);
  // Each row's block table and the block its position is written to (admitted: exclusively owned).
  row_table_.resize(static_cast<size_t>(B));
  row_block_.resize(static_cast<size_t>(B));
  for (int64_t b = 0; b < B; ++b) {
    row_table_[b] = kv.table(seq[b]);
    row_block_[b] = kv.block_of(seq[b], pos[b]);
  }
  const KvLayout& lay = kv.layout();
  const KvKind kind = lay.kind;
  const float scale = static_cast<float>(1.0 / std::sqrt(static_cast<double>(hd)));
  const float* qkv = qkv_.data();
  float* attn = attn_.data();
  auto store = [&](size_t l) {
    // Per row: its position's row in its block (rows of one sequence have distinct positions, so no
    // two rows write the same bytes; a repeated block is fine).
    run_split(pool, B, 2 * dkv, [&](int64_t b0, int64_t b1) {
      for (int64_t b = b0; b < b1; ++b) {
        const int32_t off = pos[b] % static_cast<int32_t>(kKvBlockTokens);
        uint8_t* kc = row_block_[b] + lay.k_off(static_cast<int64_t>(l));
        uint8_t* vc = row_block_[b] + lay.v_off(static_cast<int64_t>(l));
        const float* kx = qkv + b * nqkv + d;
        if (kind == KvKind::f16) {
          t.kv_store_f16(kx, &off, reinterpret_cast<uint16_t*>(kc), 1, nkv, hd, nqkv, kKvBlockTokens);
          t.kv_store_f16(kx + dkv, &off, reinterpret_cast<uint16_t*>(vc), 1, nkv, hd, nqkv, kKvBlockTokens);
        } else {
          const kv_store_q8_fn st = kind == KvKind::q8 ? t.kv_store_q8 : t.kv_store_q3;
          st(kx, &off, kc, 1, nkv, hd, nqkv, kKvBlockTokens);
          st(kx + dkv, &off, vc, 1, nkv, hd, nqkv, kKvBlockTokens);
        }
      }
    });
  };
  // Attention: units (rows, part), part c of a unit = query heads [nh c / parts, nh (c+1) / parts); a unit's
  // rows are up to kAttnRows consecutive rows of one sequence (a prefill chunk's: one kernel call reads each
  // K/V tile once for them), else one row. Thread i runs the units i, i + n, i + 2n, ... with its own scratch
  // slice (strided, so the rows of a causal prefill chunk, whose work grows with the position, spread
  // evenly). No split or grouping changes a result: each (row, head) is computed whole by one kernel call,
  // with the same operations whichever rows share the call.
  int64_t work = 0;
  for (int64_t b = 0; b < B; ++b) work += (int64_t{pos[b]} + 1) * nh * hd;
  const bool par = nthreads > 1 && work >= ThreadPool::kMinParallelWork;
  const int64_t parts = par ? std::max<int64_t>(1, std::min<int64_t>(nh, (nthreads + B - 1) / B)) : 1;
  const int64_t per = attention_scratch_floats(nh / nkv, hd, int64_t{max_pos} + 1);
  const attention_paged_fn fn =
      kind == KvKind::q8 ? t.attention_paged_q8 : kind == KvKind::q3 ? t.attention_paged_q3 : t.attention_paged_f16;
  plan_float_kv(seq, pos, B, kind, nkv, hd);
  row_chunks_.clear();
  for (int64_t b = 0; b < B;) {
    int64_t e = b + 1;
    while (e < B && e - b < kAttnRows && seq[e] == seq[b] && row_group_[e] == row_group_[b]) ++e;
    row_chunks_.push_back(static_cast<int32_t>(b));
    b = e;
  }
  const int64_t nchunks = static_cast<int64_t>(row_chunks_.size());
  row_chunks_.push_back(static_cast<int32_t>(B));
  const int64_t units = nchunks * parts;
  const int64_t rb = lay.row_bytes();
  auto attend = [&](size_t l) {
    const int64_t ko = lay.k_off(static_cast<int64_t>(l)), vo = lay.v_off(static_cast<int64_t>(l));
    // The float rows of the sequences with several rows here (kv_groups_): one conversion per layer
    // instead of one per query row. Units (group, K/V, kv head, block) of kKvBlockTokens rows.
    if (!kv_groups_.empty()) {
      const int64_t nblk = kv_group_blocks_.back();
      pool.parallel_for_work(nblk * 2 * nkv, kKvBlockTokens * hd, [&](int64_t u0, int64_t u1) {
        for (int64_t u = u0; u < u1; ++u) {
          const int64_t blk = u / (2 * nkv), kvh = u % (2 * nkv), isv = kvh / nkv, g = kvh % nkv;
          const size_t gi = static_cast<size_t>(std::upper_bound(kv_group_blocks_.begin(), kv_group_blocks_.end(), blk) -
                                                kv_group_blocks_.begin() - 1);
          const FloatKvGroup& fg = kv_groups_[gi];
          const int64_t j = blk - kv_group_blocks_[gi];  // block of the sequence
          const int64_t n = std::min<int64_t>(kKvBlockTokens, fg.len - j * kKvBlockTokens);
          const uint8_t* src = static_cast<const uint8_t*>(row_table_[fg.row][j]) + (isv ? vo : ko) +
                               g * kKvBlockTokens * rb;
          float* dst = kv_f32_.data() + fg.off + ((isv * nkv + g) * fg.len + j * kKvBlockTokens) * hd;
          t.kv_rows_f32(static_cast<int>(kind), src, n, hd, dst);
        }
      });
    }
    auto run_units = [&](int64_t u0, int64_t step, float* sp) {
      for (int64_t u = u0; u < units; u += step) {
        const int64_t ci = u / parts, c = u % parts;
        const int64_t b = row_chunks_[ci], nb = row_chunks_[ci + 1] - b;
        const int64_t h0 = nh * c / parts, h1 = nh * (c + 1) / parts;
        const int32_t gi = row_group_[b];
        if (gi < 0) {
          const KvPages pg{row_table_[b], row_table_[b], ko, vo, kKvBlockTokens};
          fn(qkv + b * nqkv, pg, pos + b, attn + b * d, nb, nh, nkv, hd, nqkv, d, scale, h0, h1, sp);
        } else {
          // One page of the group's length: K planes [nkv, len, hd] then V planes.
          const FloatKvGroup& fg = kv_groups_[gi];
          const void* kp = kv_f32_.data() + fg.off;
          const void* vp = kv_f32_.data() + fg.off + nkv * fg.len * hd;
          const KvPages pg{&kp, &vp, 0, 0, fg.len};
          t.attention_paged_f32(qkv + b * nqkv, pg, pos + b, attn + b * d, nb, nh, nkv, hd, nqkv, d, scale, h0, h1, sp);
        }
      }
    };
    if (!par) {
      run_units(0, 1, attn_scratch_.data());
    } else {
      pool.parallel_for(nthreads, [&](int64_t i0, int64_t i1) {
        for (int64_t i = i0; i < i1; ++i) run_units(i, nthreads, attn_scratch_.data() + i * per);
      });
    }
  };
  run(t, pool, tokens, B, pos, store, attend, out_rows, n_out, logits, prof);
}

void ModelExec::plan_float_kv(const int32_t* seq, const int32_t* pos, int64_t B, KvKind kind, int64_t nkv, int64_t hd) {
  kv_groups_.clear();
  kv_group_blocks_.clear();
  std::fill_n(row_group_.begin(), B, -1);  // sized by ensure()
  // f16 rows convert with one instruction per 8 values: measured, converting them first gains nothing.
  if (kind == KvKind::f16) return;
  // Rows of one sequence are contiguous positions; a sequence with kFloatKvMinRows rows or more (a
  // prefill chunk) is a group, largest first while the float planes fit kFloatKvMaxFloats.
  std::vector<std::pair<int32_t, int64_t>>& runs = kv_runs_;  // (first row, rows) per sequence
  runs.clear();
  for (int64_t b = 0; b < B; ++b) {
    bool found = false;
    for (auto& r : runs)
      if (seq[r.first] == seq[b]) {
        ++r.second;
        found = true;
        break;
      }
    if (!found) {
      if (static_cast<int64_t>(runs.size()) >= kFloatKvMaxRuns) break;  // many sequences: decode rows
      runs.emplace_back(static_cast<int32_t>(b), 1);
    }
  }
  std::sort(runs.begin(), runs.end(), [](const auto& a, const auto& b) { return a.second > b.second; });
  int64_t off = 0, blocks = 0;
  // The planes are scratch: when they cannot be allocated (the rows are admitted by now), the rows keep
  // the cache-row kernels, which give the same bits.
  try {
    for (const auto& r : runs) {
      if (r.second < kFloatKvMinRows) break;
      int32_t mp = 0;
      for (int64_t b = 0; b < B; ++b)
        if (seq[b] == seq[r.first]) mp = std::max(mp, pos[b]);
      const int64_t len = int64_t{mp} + 1, floats = 2 * nkv * len * hd;
      if (off + floats > kFloatKvMaxFloats) continue;
      const int32_t gi = static_cast<int32_t>(kv_groups_.size());
      kv_groups_.push_back({r.first, len, off});
      kv_group_blocks_.push_back(blocks);
      for (int64_t b = 0; b < B; ++b)
        if (seq[b] == seq[r.first]) row_group_[b] = gi;
      off += floats;
      blocks += (len + kKvBlockTokens - 1) / kKvBlockTokens;
    }
    if (kv_groups_.empty()) return;
    kv_group_blocks_.push_back(blocks);  // the end, for the search
    if (kv_f32_.size() < static_cast<size_t>(off)) kv_f32_.resize(static_cast<size_t>(off));
  } catch (const std::bad_alloc&) {
    kv_groups_.clear();
    kv_group_blocks_.clear();
    std::fill_n(row_group_.begin(), B, -1);
  }
}

template <typename Store, typename Attend>
void ModelExec::run(const KernelTable& t, ThreadPool& pool, const int32_t* tokens, int64_t B, const int32_t* pos,
                    Store&& kv_store, Attend&& attend, const int32_t* out_rows, int64_t n_out, float* logits,
                    double* prof) {
  const ModelPlan& p = p_;
  const int64_t d = p.n_embd, ff = p.n_ff, hd = p.head_dim, nh = p.n_head, nkv = p.n_head_kv;
  const int64_t dkv = nkv * hd, nqkv = d + 2 * dkv;
  float* x = x_.data();
  float* h = h_.data();
  float* qkv = qkv_.data();
  float* attn = attn_.data();
  float* o = o_.data();
  float* gu = gu_.data();
  float* ffh = ffh_.data();
  const float eps = p.eps;

  {
    ProfileTimer tm(prof, kProfEmbed);
    embed_rows(t, pool, p.embd, tokens, B, x);
  }

  auto norm = [&](const float* in, const float* w, int64_t n, float* out) {
    ProfileTimer tm(prof, kProfNorm);
    run_split(pool, B, n, [&](int64_t b0, int64_t b1) { t.rmsnorm(in + b0 * n, w, out + b0 * n, b1 - b0, n, n, eps); });
  };
  // A group's linears write their output columns side by side into out [B, ldo].
  auto project = [&](const LinearGroup& g, const float* in, int64_t ldin, float* out, int64_t ldo, int op) {
    int64_t col = 0;
    for (const LinearPlan& w : g) {
      run_linear(t, pool, w, in, ldin, B, out + col, ldo, lin_, prof ? prof + kProfQuant : nullptr, prof ? prof + op : nullptr);
      col += w.M;
    }
  };
  auto residual = [&](const float* add) {
    ProfileTimer tm(prof, kProfResidual);
    const int64_t n = B * d;
    for (int64_t i = 0; i < n; ++i) x[i] = x[i] + add[i];
  };

  for (size_t l = 0; l < p.layers.size(); ++l) {
    const PlanLayer& w = p.layers[l];
    norm(x, w.attn_norm, d, h);
    project(w.wqkv, h, d, qkv, nqkv, kProfGemmQkv);
    {
      ProfileTimer tm(prof, kProfRope);
      run_split(pool, B, nqkv, [&](int64_t b0, int64_t b1) {
        t.rope_neox(qkv + b0 * nqkv, pos + b0, b1 - b0, nh, hd, nqkv, p.n_rot, p.rope_theta);
        t.rope_neox(qkv + b0 * nqkv + d, pos + b0, b1 - b0, nkv, hd, nqkv, p.n_rot, p.rope_theta);
      });
    }
    {
      ProfileTimer tm(prof, kProfKvStore);
      kv_store(l);
    }
    {
      ProfileTimer tm(prof, kProfAttention);
      attend(l);
    }
    if (w.attn_sub_norm) norm(attn, w.attn_sub_norm, d, attn);
    project(w.wo, attn, d, o, d, kProfGemmO);
    residual(o);

    norm(x, w.ffn_norm, d, h);
    project(w.wgu, h, d, gu, 2 * ff, kProfGemmGateUp);
    {
      ProfileTimer tm(prof, kProfGlu);
      const glu_fn fn = p.silu ? t.glu_silu : t.glu_relu2;
      run_split(pool, B, ff, [&](int64_t b0, int64_t b1) { fn(gu + b0 * 2 * ff, ffh + b0 * ff, b1 - b0, ff, 2 * ff, ff); });
    }
    if (w.ffn_sub_norm) norm(ffh, w.ffn_sub_norm, ff, ffh);
    project(w.wdown, ffh, ff, o, d, kProfGemmDown);
    residual(o);
  }

  // Output norm and head over the rows that want logits.
  if (n_out == 0) return;
  {
    ProfileTimer tm(prof, kProfNorm);
    run_split(pool, n_out, d, [&](int64_t b0, int64_t b1) {
      for (int64_t i = b0; i < b1; ++i) t.rmsnorm(x + int64_t{out_rows[i]} * d, p.output_norm, h + i * d, 1, d, d, eps);
    });
  }
  {
    ProfileTimer tm(prof, kProfHead);
    head_logits(t, pool, p.head, h, n_out, logits, head_);
  }
}

}  // namespace bitllm
