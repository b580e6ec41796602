// The Mamba-2 block kind's forward in one native call; see mamba2_exec.h.
#include "mamba2_exec.h"

#include <algorithm>
#include <cmath>

#include "attention_run.h"
#include "../kernels/mamba2.h"
#include "mamba2_run.h"

namespace bitllm {

namespace {
int64_t align64(int64_t n) { return (n + 63) / 64 * 64; }
}  // namespace

const char* mamba2_profile_op_name(int op) {
  static const char* const names[kM2ProfCount] = {"embed",      "norm",      "in_proj",  "conv",     "scan",
                                                  "gated_norm", "out_proj",  "attn_qkv", "rope",     "kv_store",
                                                  "attention",  "attn_out",  "head",     "total"};
  return op >= 0 && op < kM2ProfCount ? names[op] : "?";
}

Mamba2StateLayout mamba2_state_layout(const Mamba2Plan& p, int64_t capacity) {
  Mamba2StateLayout s;
  int64_t at = 0;
  for (const Mamba2PlanLayer& L : p.layers) {
    const int64_t a = L.attention ? 2 * p.n_head_kv * capacity * p.head_dim : 4 * (p.d_conv - 1) * p.conv_dim();
    const int64_t b = L.attention ? a : 4 * p.n_heads * p.p() * p.d_state;
    s.off.push_back(at);
    at += align64(a);
    s.off2.push_back(at);
    at += align64(b);
  }
  s.bytes = std::max<int64_t>(at, 64);
  return s;
}

const Mamba2StateLayout& Mamba2Exec::layout(int64_t capacity) {
  if (capacity != layout_cap_) {
    layout_ = mamba2_state_layout(p_, capacity);
    layout_cap_ = capacity;
  }
  return layout_;
}

void Mamba2Exec::reserve(int64_t B, int64_t max_pos, int64_t chunk, int nthreads) {
  const Mamba2Plan& p = p_;
  const int64_t d = p.d_model;
  if (B > cap_b_) {
    res_.resize(B * d);
    h_.resize(B * d);
    out_.resize(B * d);
    proj_.resize(B * p.in_dim());
    conv_.resize(B * p.conv_dim());
    y_.resize(B * p.d_inner);
    yn_.resize(B * p.d_inner);
    if (p.n_head > 0) {
      qkv_.resize(B * p.qkv_dim());
      attn_.resize(B * p.n_head * p.head_dim);
    }
    tok_.resize(B);
    pos_.resize(B);
    at_.resize(B);
    cap_b_ = B;
  }
  if (chunk > 0) {
    const size_t need = static_cast<size_t>(ssd_cb_floats(B, chunk, p.n_groups, p.d_state) +
                                            int64_t{nthreads} * ssd_chunked_scratch_floats(chunk, p.d_state, p.p()));
    if (ssd_scratch_.size() < need) ssd_scratch_.resize(need);
  }
  if (p.n_head > 0) {
    const size_t need = static_cast<size_t>(attention_run_scratch(nthreads, p.n_head, p.n_head_kv, p.head_dim, max_pos));
    if (attn_scratch_.size() < need) attn_scratch_.resize(need);
  }
}

void Mamba2Exec::forward_batch(const KernelTable& t, ThreadPool& pool, const int32_t* tokens, const int32_t* seq,
                               const int32_t* pos, int64_t B, const RecurrentPool& states, const int32_t* out_rows,
                               int64_t n_out, float* logits, int64_t chunk, double* prof) {
  ProfileTimer total(prof, kM2Total);
  const Mamba2Plan& p = p_;
  const int64_t d = p.d_model, dI = p.d_inner, H = p.n_heads, P = p.p(), N = p.d_state, G = p.g();
  const int64_t F = p.in_dim(), Cd = p.conv_dim(), Kc = p.d_conv;
  const int nthreads = pool.size();
  int32_t max_pos = 0;
  for (int64_t b = 0; b < B; ++b) max_pos = std::max(max_pos, pos[b]);
  reserve(B, max_pos, chunk, nthreads);
  const Mamba2StateLayout& lay = layout(states.max_seq_len());

  // Gather each sequence's rows contiguously (sequences in first-appearance order, rows in row order), in the
  // kept scratch: no allocation per step once warm.
  std::vector<Seg>& segs = segs_;
  segs.clear();
  seg_of_.clear();
  for (int64_t b = 0; b < B; ++b) {
    auto it = seg_of_.find(seq[b]);
    if (it == seg_of_.end()) {
      it = seg_of_.emplace(seq[b], segs.size()).first;
      segs.push_back(Seg{states.state(seq[b]), 0, 0});
    }
    segs[it->second].rows++;
  }
  int64_t k = 0;
  for (Seg& s : segs) {
    s.start = k;
    k += s.rows;
    s.rows = 0;
  }
  int64_t* at = at_.data();
  for (int64_t b = 0; b < B; ++b) {
    Seg& s = segs[seg_of_[seq[b]]];
    const int64_t r = s.start + s.rows++;
    at[b] = r;
    tok_[r] = tokens[b];
    pos_[r] = pos[b];
  }
  const int32_t* rpos = pos_.data();

  float* res = res_.data();
  float* h = h_.data();
  float* out = out_.data();
  float* proj = proj_.data();
  float* conv = conv_.data();
  float* y = y_.data();
  float* yn = yn_.data();
  const float eps = p.eps;
  {
    ProfileTimer tm(prof, kM2Embed);
    embed_rows(t, pool, p.embd, tok_.data(), B, res);
  }

  for (size_t l = 0; l < p.layers.size(); ++l) {
    const Mamba2PlanLayer& L = p.layers[l];
    // The residual add of the previous layer fused with this layer's pre-norm, row by row (fp32).
    {
      ProfileTimer tm(prof, kM2Norm);
      pool.parallel_for_work(B, d, [&](int64_t b0, int64_t b1) {
        for (int64_t b = b0; b < b1; ++b) {
          float* x = res + b * d;
          if (l > 0) {
            const float* o = out + b * d;
            for (int64_t i = 0; i < d; ++i) x[i] = x[i] + o[i];
          }
          t.rmsnorm(x, L.norm, h + b * d, 1, d, d, eps);
        }
      });
    }
    if (L.attention) {
      const int64_t nh = p.n_head, nkv = p.n_head_kv, hd = p.head_dim, dq = nh * hd, dkv = nkv * hd, nq = p.qkv_dim();
      const int64_t cap = states.max_seq_len();
      float* qkv = qkv_.data();
      float* attn = attn_.data();
      int64_t col = 0;
      for (const LinearPlan& w : L.wqkv) {
        run_linear(t, pool, w, h, d, B, qkv + col, nq, lin_, prof ? prof + kM2AttnQkv : nullptr, prof ? prof + kM2AttnQkv : nullptr);
        col += w.M;
      }
      {
        ProfileTimer tm(prof, kM2Rope);
        pool.parallel_for_work(B, nq, [&](int64_t b0, int64_t b1) {
          t.rope_neox(qkv + b0 * nq, rpos + b0, b1 - b0, nh, hd, nq, hd, p.rope_theta);
          t.rope_neox(qkv + b0 * nq + dq, rpos + b0, b1 - b0, nkv, hd, nq, hd, p.rope_theta);
        });
      }
      const float scale = static_cast<float>(1.0 / std::sqrt(static_cast<double>(hd)));
      for (const Seg& s : segs) {
        uint16_t* kc = reinterpret_cast<uint16_t*>(s.mem + lay.off[l]);
        uint16_t* vc = reinterpret_cast<uint16_t*>(s.mem + lay.off2[l]);
        const float* q = qkv + s.start * nq;
        const int32_t* sp = rpos + s.start;
        {
          ProfileTimer tm(prof, kM2KvStore);
          pool.parallel_for_work(nkv, s.rows * hd, [&](int64_t h0, int64_t h1) {
            t.kv_store_f16(q + dq + h0 * hd, sp, kc + h0 * cap * hd, s.rows, h1 - h0, hd, nq, cap);
            t.kv_store_f16(q + dq + dkv + h0 * hd, sp, vc + h0 * cap * hd, s.rows, h1 - h0, hd, nq, cap);
          });
        }
        ProfileTimer tm(prof, kM2Attention);
        const AttentionCall call{q, kc, vc, KvKind::f16, sp, attn + s.start * dq, s.rows, nh, nkv, hd, cap, nq, dq, scale};
        run_attention(t, pool, call, attention_parts(pool, sp, s.rows, nh, hd), sp[s.rows - 1], attn_scratch_.data());
      }
      run_linear(t, pool, L.wo, attn, dq, B, out, d, lin_, prof ? prof + kM2AttnOut : nullptr, prof ? prof + kM2AttnOut : nullptr);
      continue;
    }
    run_linear(t, pool, L.in_proj, h, d, B, proj, F, lin_, prof ? prof + kM2InProj : nullptr, prof ? prof + kM2InProj : nullptr);
    // Per sequence: the conv over xBC (read in place from the projection, row stride F) on its conv state.
    for (const Seg& s : segs) {
      ProfileTimer tm(prof, kM2Conv);
      float* cstate = reinterpret_cast<float*>(s.mem + lay.off[l]);
      const float* xbc = proj + s.start * F + dI;
      float* co = conv + s.start * Cd;
      pool.parallel_for_work(Cd, s.rows * Kc, [&](int64_t c0, int64_t c1) {
        t.mamba2_conv(xbc, L.conv_w, L.conv_b, cstate, co, s.rows, Cd, Kc, F, Cd, c0, c1);
      });
    }
    // Per sequence: the SSM. The recurrence up to the next multiple of `chunk`, the chunked scan over whole
    // aligned chunks, the recurrence for the rest: the split depends only on the sequence's own positions.
    for (const Seg& s : segs) {
      ProfileTimer tm(prof, kM2Scan);
      float* sstate = reinterpret_cast<float*>(s.mem + lay.off2[l]);
      const int64_t p0 = rpos[s.start];
      const int64_t lead = chunk > 0 ? std::min(s.rows, (chunk - p0 % chunk) % chunk) : s.rows;
      const int64_t body = chunk > 0 ? (s.rows - lead) / chunk * chunk : 0;
      auto run = [&](int64_t off, int64_t n, bool chunked) {
        if (n == 0) return;
        const int64_t r = s.start + off;
        SsdArgs a{};
        a.x = conv + r * Cd;
        a.B = conv + r * Cd + dI;
        a.C = conv + r * Cd + dI + G;
        a.dt = proj + r * F + dI + Cd;
        a.dt_bias = L.dt_bias;
        a.a_log = L.a_log;
        a.d = L.d_skip;
        a.state = sstate;
        a.y = y + r * dI;
        a.T = n;
        a.n_heads = H;
        a.head_dim = P;
        a.n_groups = p.n_groups;
        a.d_state = N;
        a.ldx = Cd;
        a.ldbc = Cd;
        a.lddt = F;
        a.ldy = dI;
        if (!chunked) {
          pool.parallel_for_work(H, n * P * N, [&](int64_t h0, int64_t h1) { t.ssd_recurrent(a, h0, h1); });
          return;
        }
        run_ssd_chunked(t, pool, a, chunk, ssd_scratch_.data());
      };
      run(0, lead, false);
      run(lead, body, true);
      run(lead + body, s.rows - lead - body, false);
    }
    // Gated RMSNorm with z read in place from the projection (row by row: z's row stride is F).
    {
      ProfileTimer tm(prof, kM2GatedNorm);
      pool.parallel_for_work(B, dI, [&](int64_t b0, int64_t b1) {
        for (int64_t b = b0; b < b1; ++b)
          t.gated_rmsnorm(y + b * dI, proj + b * F, L.gnorm, yn + b * dI, p.n_groups, dI / p.n_groups, p.norm_eps, 0, 1);
      });
    }
    run_linear(t, pool, L.out_proj, yn, dI, B, out, d, lin_, prof ? prof + kM2OutProj : nullptr, prof ? prof + kM2OutProj : nullptr);
  }

  if (n_out == 0) return;
  ProfileTimer tm(prof, kM2Head);
  // The last residual add and the output norm, for the rows that want logits only.
  pool.parallel_for_work(n_out, d, [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i) {
      const int64_t r = at[out_rows[i]];
      float* x = res + r * d;
      const float* o = out + r * d;
      for (int64_t j = 0; j < d; ++j) x[j] = x[j] + o[j];
      t.rmsnorm(x, p.output_norm, h + i * d, 1, d, d, eps);
    }
  });
  head_logits(t, pool, p.head, h, n_out, logits, head_);
}

}  // namespace bitllm
