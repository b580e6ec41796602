// Bindings for the B1L64 binary lookup-table family (kernels/binary_lut.h): the float-activation GEMM,
// its table build (exposed for tests), and the B1L64 packers (signs, B1R16) / unpacker.
#include <algorithm>
#include <string>

#include "common.h"
#include "runtime/repack_binary.h"
#include "runtime/repack_binary_lut.h"

namespace bitllm {

namespace {

// Token tables go to the context scratch in chunks of at most this many bytes (at least one token).
constexpr int64_t kTableChunkBytes = int64_t{64} << 20;
// Groups per table-build work item (8 KB of one token's tables): splits one token over threads.
constexpr int64_t kBuildGroups = 128;
// From this many tokens per chunk the threads split the tokens instead of the row blocks: each thread
// then reads only its own tokens' tables (5 MB for 128 tokens at K = 2560 would otherwise stream from L3
// into every core), and the weights, read by all, are the smaller stream.
constexpr int64_t kTokenSplitBatch = 16;
// Below this many groups (all tokens together) the calling thread builds the tables alone: a decode
// token's 1728 groups (K = 6912) take ~2 us, about what waking the pool and joining it costs.
constexpr int64_t kParallelBuildGroups = 4096;

int64_t checked_k(const Args& a, size_t i, int64_t step) {
  const int64_t K = a.integer(i, "K", step, kMaxDim);
  if (K % step) a.range_error("K = " + std::to_string(K) + " must be a multiple of " + std::to_string(step));
  return K;
}

void no_overlap(const Args& a, const void* out, int64_t out_bytes, const char* out_name, const void* in,
                int64_t in_bytes, const char* in_name) {
  const auto o = reinterpret_cast<uintptr_t>(out), i = reinterpret_cast<uintptr_t>(in);
  if (o < i + static_cast<uintptr_t>(in_bytes) && i < o + static_cast<uintptr_t>(out_bytes))
    a.range_error(std::string(out_name) + " overlaps " + in_name);
}

// Tables of tokens [0, nb) of u (row stride K) into tables (row stride ldt), split over the pool in
// units of kBuildGroups groups of one token.
void build_tables(const KernelTable& t, ThreadPool& pool, const float* u, int64_t nb, int64_t K, float* tables,
                  int64_t ldt) {
  const int64_t G = b1l_groups(K), per_token = (G + kBuildGroups - 1) / kBuildGroups;
  if (nb * G < kParallelBuildGroups) {
    t.binary_lut_build(u, K, nb, K, tables, ldt, 0, G);
    return;
  }
  pool.parallel_for(nb * per_token, [&](int64_t u0, int64_t u1) {
    for (int64_t i = u0; i < u1; ++i) {
      const int64_t b = i / per_token, g0 = (i % per_token) * kBuildGroups;
      t.binary_lut_build(u + b * K, K, 1, K, tables + b * ldt, ldt, g0, std::min(G, g0 + kBuildGroups));
    }
  });
}

// binaryLutTables(ctx, u: Float32Array[B*K], B, K, tables: Float32Array[B*4K])  (K % 4 == 0)
Napi::Value lut_tables(const Napi::CallbackInfo& info) {
  Args a(info, "binaryLutTables");
  ContextWrap& ctx = a.context(0);
  const int64_t B = a.integer(2, "B", 1, kMaxBatch), K = checked_k(a, 3, kB1lGroupK);
  const float* u = a.f32(1, "u", B * K, B * K);
  const int64_t ldt = b1l_table_floats(K);
  float* tables = a.f32(4, "tables", B * ldt, B * ldt);
  no_overlap(a, tables, B * ldt * 4, "tables", u, B * K * 4, "u");
  build_tables(ctx.table(), ctx.pool(), u, B, K, tables, ldt);
  return info.Env().Undefined();
}

// binaryLutGemm(ctx, bits: Uint8Array[Mp64*K/8], M, K, u: Float32Array[B*K], B,
//               rowScale: Float32Array[M] | null | undefined, tokBias: Float32Array[B] | null | undefined,
//               y: Float32Array[B*M])
// y[b, m] = (Σ_k sign(m, k)·u[b, k]) (* rowScale[m]) (+ tokBias[b]), binary_lut.h's contract.
Napi::Value lut_gemm(const Napi::CallbackInfo& info) {
  Args a(info, "binaryLutGemm");
  ContextWrap& ctx = a.context(0);
  const int64_t M = a.integer(2, "M", 1, kMaxDim), K = checked_k(a, 3, kB1lKStep);
  const int64_t nbits = b1l_bytes(M, K);
  const uint8_t* bits = a.u8(1, "bits", nbits, nbits);
  const int64_t B = a.integer(5, "B", 1, kMaxBatch);
  const float* u = a.f32(4, "u", B * K, B * K);
  const float* row_scale = a.has(6) ? a.f32(6, "rowScale", M, M) : nullptr;
  const float* tok_bias = a.has(7) ? a.f32(7, "tokBias", B, B) : nullptr;
  float* y = a.f32(8, "y", B * M, B * M);
  const int64_t ybytes = B * M * 4;
  no_overlap(a, y, ybytes, "y", bits, nbits, "bits");
  no_overlap(a, y, ybytes, "y", u, B * K * 4, "u");
  if (row_scale) no_overlap(a, y, ybytes, "y", row_scale, M * 4, "rowScale");
  if (tok_bias) no_overlap(a, y, ybytes, "y", tok_bias, B * 4, "tokBias");

  const KernelTable& t = ctx.table();
  ThreadPool& pool = ctx.pool();
  const BinaryLutMat w{bits, M, K};
  const int64_t ldt = b1l_table_floats(K), blocks = b1l_blocks(M);
  const auto aligned = [](uint8_t* p) {  // 64-byte aligned tables: each group's table is one AVX-512 vector
    return reinterpret_cast<float*>((reinterpret_cast<uintptr_t>(p) + 63) & ~uintptr_t{63});
  };
  const int64_t slot = (ldt * 4 + 127) & ~int64_t{63};  // one token's tables, 64-byte multiple
  if (B == 1 && pool.size() > 1 && blocks >= pool.size() && slot * pool.size() <= kTableChunkBytes) {
    // Decode: every thread builds the token's tables itself (~2 us at K = 6912) into its own slot and
    // runs its contiguous range of blocks: one pool round trip, and no thread reads tables out of
    // another core's cache (sharing one copy made 2 threads only 1.3x faster than one, cache-hot).
    uint8_t* raw = ctx.scratch_u8(static_cast<size_t>(slot * pool.size() + 64));
    struct Job {
      const KernelTable* t;
      const BinaryLutMat* w;
      const float *u, *row_scale, *tok_bias;
      float* y;
      float* tables;
      int64_t K, M, ldt, blocks, slot_floats;
    } job{&t, &w, u, row_scale, tok_bias, y, aligned(raw), K, M, ldt, blocks, slot / 4};
    pool.run(
        [](void* ctx, int ith, int nth) {
          const Job& j = *static_cast<const Job*>(ctx);
          const int64_t b0 = j.blocks * ith / nth, b1 = j.blocks * (ith + 1) / nth;
          float* tab = j.tables + ith * j.slot_floats;  // [ldt]
          j.t->binary_lut_build(j.u, j.K, 1, j.K, tab, j.ldt, 0, b1l_groups(j.K));
          j.t->binary_lut_gemm(*j.w, tab, j.ldt, 1, j.row_scale, j.tok_bias, j.y, j.M, b0, b1);
        },
        &job);
    return info.Env().Undefined();
  }
  const int64_t chunk = std::min(B, std::max<int64_t>(1, kTableChunkBytes / (ldt * 4)));
  float* tables = aligned(ctx.scratch_u8(static_cast<size_t>(chunk * ldt * 4 + 64)));  // [chunk, ldt]
  for (int64_t c0 = 0; c0 < B; c0 += chunk) {
    const int64_t nb = std::min(chunk, B - c0);
    build_tables(t, pool, u + c0 * K, nb, K, tables, ldt);
    float* yc = y + c0 * M;                                   // [nb, M]
    const float* tb = tok_bias ? tok_bias + c0 : nullptr;     // [nb]
    if (nb == 1 || (blocks >= pool.size() && nb < kTokenSplitBatch)) {
      pool.parallel_for_dynamic(blocks, pool.chunk_grain(blocks), [&](int64_t t0, int64_t t1) {
        t.binary_lut_gemm(w, tables, ldt, nb, row_scale, tb, yc, M, t0, t1);
      });
    } else {
      // Many tokens, or fewer row blocks than threads (small M): split the tokens.
      pool.parallel_for(nb, [&](int64_t b0, int64_t b1) {
        t.binary_lut_gemm(w, tables + b0 * ldt, ldt, b1 - b0, row_scale, tb ? tb + b0 : nullptr, yc + b0 * M, M, 0,
                          blocks);
      });
    }
  }
  return info.Env().Undefined();
}

// packBinaryLutFromSigns(ctx, signs: Int8Array[M*K] (>= 0 -> +1), M, K, bits: Uint8Array[Mp64*K/8])  (K % 32 == 0)
Napi::Value pack_from_signs(const Napi::CallbackInfo& info) {
  Args a(info, "packBinaryLutFromSigns");
  ContextWrap& ctx = a.context(0);
  const int64_t M = a.integer(2, "M", 1, kMaxDim), K = checked_k(a, 3, kB1lKStep);
  const int8_t* signs = a.i8(1, "signs", M * K, M * K);
  uint8_t* bits = a.u8(4, "bits", b1l_bytes(M, K), b1l_bytes(M, K));
  no_overlap(a, bits, b1l_bytes(M, K), "bits", signs, M * K, "signs");
  ctx.pool().parallel_for(b1l_blocks(M), [&](int64_t t0, int64_t t1) { pack_b1l_from_signs(signs, K, M, K, bits, t0, t1); });
  return info.Env().Undefined();
}

// packBinaryLutFromB1r16(ctx, b1r16: Uint8Array[Mp16*K/8], M, K, bits: Uint8Array[Mp64*K/8])  (K % 64 == 0)
Napi::Value pack_from_b1r16(const Napi::CallbackInfo& info) {
  Args a(info, "packBinaryLutFromB1r16");
  ContextWrap& ctx = a.context(0);
  const int64_t M = a.integer(2, "M", 1, kMaxDim), K = checked_k(a, 3, kB1KStep);
  const int64_t src_bytes = b1_bits_bytes(M, K), nbits = b1l_bytes(M, K);
  const uint8_t* src = a.u8(1, "b1r16", src_bytes, src_bytes);
  uint8_t* bits = a.u8(4, "bits", nbits, nbits);
  no_overlap(a, bits, nbits, "bits", src, src_bytes, "b1r16");
  ctx.pool().parallel_for(b1l_blocks(M), [&](int64_t t0, int64_t t1) { pack_b1l_from_b1r16(src, M, K, bits, t0, t1); });
  return info.Env().Undefined();
}

// unpackBinaryLutToSigns(bits: Uint8Array[Mp64*K/8], M, K, signs: Int8Array[M*K])
Napi::Value unpack_to_signs(const Napi::CallbackInfo& info) {
  Args a(info, "unpackBinaryLutToSigns");
  const int64_t M = a.integer(1, "M", 1, kMaxDim), K = checked_k(a, 2, kB1lKStep);
  const uint8_t* bits = a.u8(0, "bits", b1l_bytes(M, K), b1l_bytes(M, K));
  int8_t* signs = a.i8(3, "signs", M * K, M * K);
  no_overlap(a, signs, M * K, "signs", bits, b1l_bytes(M, K), "bits");
  unpack_b1l_to_signs(bits, M, K, signs, K);
  return info.Env().Undefined();
}

}  // namespace

void register_binary_lut(Napi::Env env, Napi::Object exports) {
  exports.Set("binaryLutGemm", Napi::Function::New(env, lut_gemm, "binaryLutGemm"));
  exports.Set("binaryLutTables", Napi::Function::New(env, lut_tables, "binaryLutTables"));
  exports.Set("packBinaryLutFromSigns", Napi::Function::New(env, pack_from_signs, "packBinaryLutFromSigns"));
  exports.Set("packBinaryLutFromB1r16", Napi::Function::New(env, pack_from_b1r16, "packBinaryLutFromB1r16"));
  exports.Set("unpackBinaryLutToSigns", Napi::Function::New(env, unpack_to_signs, "unpackBinaryLutToSigns"));
}

}  // namespace bitllm
