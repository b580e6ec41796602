// Bindings for the BiLLM family: the GEMM of a packed BiLLM matrix with int8 activations (billm.h).
// The per-token activation prep (compacted salient codes, block sums) runs here into the context's
// scratch, then the rows are split over the pool.
#include <string>

#include "common.h"

namespace bitllm {

namespace {

int popcount16(const uint8_t* p) {  // p: [16]
  int c = 0;
  for (int i = 0; i < 16; ++i) c += __builtin_popcount(p[i]);
  return c;
}

// billmGemm(ctx, salient: Uint8Array[K/8], signs: Uint8Array[M*K/8], groups: Uint8Array[M*K/8],
//           residual: Uint8Array[M*R], scalars: Uint16Array[M*(K/128)*8], M, K,
//           q: Int8Array[B*K], scale: Float32Array[B], B, y: Float32Array[B*M])
// R = Σ_j ceil(nS_j / 8) over the blocks' salient counts (from `salient`).
Napi::Value billm_gemm(const Napi::CallbackInfo& info) {
  Args a(info, "billmGemm");
  ContextWrap& ctx = a.context(0);
  const int64_t M = a.integer(6, "M", 1, kMaxDim), K = a.integer(7, "K", kBillmBlock, kMaxDim);
  if (K % kBillmBlock) a.range_error("K = " + std::to_string(K) + " must be a multiple of 128");
  const int64_t nb = K / kBillmBlock, row_bytes = K / 8;
  const uint8_t* salient = a.u8(1, "salient", row_bytes, row_bytes);
  const uint8_t* signs = a.u8(2, "signs", M * row_bytes, M * row_bytes);
  const uint8_t* groups = a.u8(3, "groups", M * row_bytes, M * row_bytes);
  const int64_t B = a.integer(10, "B", 1, kMaxBatch);
  int64_t rstride = 0;
  for (int64_t j = 0; j < nb; ++j) rstride += (popcount16(salient + 16 * j) + 7) / 8;
  const uint8_t* residual = a.u8(4, "residual", M * rstride, M * rstride);
  const int64_t nscalars = M * nb * kBillmScalars;
  const uint16_t* scalars = a.u16(5, "scalars", nscalars, nscalars);
  const int8_t* q = a.i8(8, "q", B * K, B * K);
  const float* scale = a.f32(9, "scale", B, B);
  float* y = a.f32(11, "y", B * M, B * M);

  // Scratch (int32): roff [nb + 1] | ssum [B, nb] | bsum [B, nb]; (int8) qs [B, nb, 128].
  int32_t* scratch = ctx.scratch_i32(static_cast<size_t>(nb + 1 + 2 * B * nb));
  int32_t* roff = scratch;
  roff[0] = 0;
  for (int64_t j = 0; j < nb; ++j) roff[j + 1] = roff[j] + (popcount16(salient + 16 * j) + 7) / 8;
  int32_t* ssum = scratch + nb + 1;
  int32_t* bsum = ssum + B * nb;
  int8_t* qs = reinterpret_cast<int8_t*>(ctx.scratch_u8(static_cast<size_t>(B * K)));
  const KernelTable& t = ctx.table();
  ThreadPool& pool = ctx.pool();
  pool.parallel_for_work(B, K, [&](int64_t b0, int64_t b1) {
    t.billm_prep(salient, K, q + b0 * K, K, b1 - b0, qs + b0 * K, ssum + b0 * nb, bsum + b0 * nb);
  });
  const BillmMat w{salient, signs, groups, residual, scalars, roff, M, K, rstride};
  if (M >= pool.size() || B == 1) {
    const BillmActs acts{q, scale, qs, ssum, bsum, B, K};
    pool.parallel_for_dynamic(M, pool.chunk_grain(M), [&](int64_t m0, int64_t m1) { t.billm_gemm(w, acts, y, M, m0, m1); });
  } else {
    // Fewer rows than threads: split the tokens instead.
    pool.parallel_for(B, [&](int64_t b0, int64_t b1) {
      const BillmActs acts{q + b0 * K, scale + b0, qs + b0 * K, ssum + b0 * nb, bsum + b0 * nb, b1 - b0, K};
      t.billm_gemm(w, acts, y + b0 * M, M, 0, M);
    });
  }
  return info.Env().Undefined();
}

}  // namespace

void register_billm(Napi::Env env, Napi::Object exports) {
  exports.Set("billmGemm", Napi::Function::New(env, billm_gemm, "billmGemm"));
}

}  // namespace bitllm
