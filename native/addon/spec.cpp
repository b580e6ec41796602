// Reading the native forwards' spec objects; see spec.h.
#include "spec.h"

#include <algorithm>

#include "runtime/repack_ternary.h"

namespace bitllm {

LinearPlan read_linear(const Spec& s, int64_t M, int64_t K) {
  LinearPlan w;
  w.M = s.integer("M", 1, M);
  w.K = s.integer("K", K, K);
  M = w.M;
  const std::string kind = s.string("weights");
  const std::string quant = s.string("quant");
  if (quant == "i8") w.quant = LinearPlan::kQuantI8;
  else if (quant == "i4") w.quant = LinearPlan::kQuantI4;
  else if (quant == "topk-i8") w.quant = LinearPlan::kQuantTopkI8;
  else if (quant == "none") w.quant = LinearPlan::kQuantNone;
  else s.fail("quant", "'" + quant + "' is not a known activation quantizer (i8, i4, topk-i8, none)");
  auto scales_of = [&](int64_t tiles, int32_t mode) {
    return mode == kScaleTensor ? 1 : (mode == kScaleRow ? tiles * 16 : tiles * (K / kScaleBlockK) * 16);
  };
  if (kind == "t2r16" || kind == "td3") {
    if (K % kT2KStep) s.fail("K", "= " + std::to_string(K) + " must be a multiple of 16");
    const int32_t mode = static_cast<int32_t>(s.integer("scaleMode", 0, 2));
    if (mode == kScaleBlock && K % kScaleBlockK) s.fail("scaleMode", "block scales need K % 256 == 0");
    const int64_t nscales = scales_of(t2_tiles(M), mode);
    if (kind == "td3") {
      w.weights = LinearPlan::kTd3;
      w.td3 = TernaryTd3Mat{s.u8("data", td3_weight_bytes(M, K)), s.f32("scales", nscales), M, K, mode};
    } else {
      w.weights = LinearPlan::kT2R16;
      w.t2 = TernaryMat{s.u8("codes", t2_code_bytes(M, K)), s.f32("scales", nscales), M, K, mode};
    }
    if (w.quant == LinearPlan::kQuantNone) s.fail("quant", "ternary weights need quantized activations");
  } else if (kind == "ts256") {
    if (K > kTsMaxK) s.fail("K", "= " + std::to_string(K) + " exceeds the TS256 limit " + std::to_string(kTsMaxK));
    const int32_t mode = static_cast<int32_t>(s.integer("scaleMode", 0, 1));
    w.weights = LinearPlan::kTs256;
    w.ts = TernarySparseMat{s.u8("data", ts_weight_bytes(M, K)), s.f32("scales", scales_of(t2_tiles(M), mode)), M, K, mode};
    if (w.quant == LinearPlan::kQuantNone) s.fail("quant", "ternary weights need quantized activations");
  } else if (kind == "b1r16") {
    if (K % kB1KStep) s.fail("K", "= " + std::to_string(K) + " must be a multiple of 64");
    const int32_t mode = static_cast<int32_t>(s.integer("scaleMode", 0, 1));
    const int64_t tiles = (M + kB1Rows - 1) / kB1Rows;
    w.weights = LinearPlan::kB1R16;
    w.b1 = BinaryMat{s.u8("bits", tiles * kB1Rows * (K / 8)), s.f32("scales", scales_of(tiles, mode)), M, K, mode};
    if (w.quant != LinearPlan::kQuantI8) s.fail("quant", "B1R16 weights take int8 activations");
  } else if (kind == "b1l64") {
    if (K % kB1lKStep) s.fail("K", "= " + std::to_string(K) + " must be a multiple of 32");
    w.weights = LinearPlan::kB1L64;
    w.b1l = BinaryLutMat{s.u8("bits", b1l_bytes(M, K)), M, K};
    if (w.quant != LinearPlan::kQuantNone) s.fail("quant", "B1L64 weights take float activations ('none')");
  } else if (kind == "billm") {
    if (K % kBillmBlock) s.fail("K", "= " + std::to_string(K) + " must be a multiple of 128");
    w.weights = LinearPlan::kBillm;
    w.billm_salient = s.u8("salient", K / 8);
    const int64_t nb = K / kBillmBlock;
    w.billm_geometry.resize(2 * nb + 1);
    billm_geometry(w.billm_salient, K, w.billm_geometry.data(), w.billm_geometry.data() + nb + 1);
    const int64_t tiles = (M + kBillmRows - 1) / kBillmRows;
    w.billm_data = s.u8("data", tiles * w.billm_geometry[nb]);
    if (w.quant != LinearPlan::kQuantI8) s.fail("quant", "BiLLM weights take int8 activations");
  } else if (kind == "f16") {
    w.weights = LinearPlan::kF16;
    w.f16 = s.u16("data", M * K);
    if (w.quant != LinearPlan::kQuantNone) s.fail("quant", "F16 weights take float activations ('none')");
  } else {
    s.fail("weights", "'" + kind + "' is not a supported linear layout (t2r16, td3, ts256, b1r16, b1l64, billm, f16)");
  }
  if (s.has("colScale")) w.col_scale = s.f32("colScale", K);
  if (s.has("colBias")) w.col_bias = s.f32("colBias", K);
  if (s.has("rowScale")) w.row_scale = s.f32("rowScale", M);
  const double ratio = s.number("topkRatio");
  if (!(ratio > 0 && ratio <= 1)) s.fail("topkRatio", "must be in (0, 1]");
  w.topk_ratio = static_cast<float>(ratio);
  const double ln = s.number("lnEps");
  if (!(ln >= 0 && ln < 1)) s.fail("lnEps", "must be in [0, 1)");
  w.ln_eps = static_cast<float>(ln);
  return w;
}

// A group of linears sharing one input: an array whose outputs together are `M` rows.
LinearGroup read_group(Napi::Env env, const Spec& parent, const char* field, int64_t M, int64_t K) {
  auto v = parent.get(field);
  if (!v.IsArray()) parent.fail(field, "must be an array of linears", true);
  auto arr = v.As<Napi::Array>();
  if (arr.Length() < 1 || arr.Length() > 8) parent.fail(field, "must hold 1 to 8 linears");
  LinearGroup g;
  int64_t rows = 0;
  for (uint32_t i = 0; i < arr.Length(); ++i) {
    auto e = arr.Get(i);
    const std::string path = parent.where(field) + "[" + std::to_string(i) + "]";
    if (!e.IsObject()) throw Napi::TypeError::New(env, std::string(parent.who()) + ": " + path + " must be an object");
    Spec ls(env, e.As<Napi::Object>(), path, parent.keep(), parent.who());
    g.push_back(read_linear(ls, M - rows, K));
    rows += g.back().M;
  }
  if (rows != M) parent.fail(field, "linears give " + std::to_string(rows) + " output rows, expected " + std::to_string(M));
  return g;
}

// An embedding / head matrix {kind: 'f16' | 'f16t' | 'q8' | 'q4', data, M, K}.
PlanDense read_dense(const Spec& s, int64_t M, int64_t K) {
  const std::string kind = s.string("kind");
  PlanDense w;
  w.M = s.integer("M", M, M);
  w.K = s.integer("K", K, K);
  if (kind == "f16") {
    w.kind = PlanDense::kF16;
    w.f16 = s.u16("data", M * K);
  } else if (kind == "f16t") {
    w.kind = PlanDense::kF16T;
    w.f16 = s.u16("data", f16t_elems(M, K));
  } else if (kind == "q8") {
    if (K % kQ8Block) s.fail("K", "= " + std::to_string(K) + " must be a multiple of 32 for q8");
    w.kind = PlanDense::kQ8;
    w.q8 = Q8Mat{s.u8("data", q8_bytes(M, K)), M, K};
  } else if (kind == "q4") {
    if (K % kQ4Block) s.fail("K", "= " + std::to_string(K) + " must be a multiple of 32 for q4");
    w.kind = PlanDense::kQ4;
    w.q4 = Q4Mat{s.u8("data", q4_bytes(M, K)), M, K};
  } else {
    s.fail("kind", "'" + kind + "' is not a supported dense layout (f16, f16t, q8, q4)");
  }
  return w;
}

BatchRows read_batch_rows(const Args& a, size_t i, int64_t n_vocab, int64_t max_pos_limit) {
  a.i32(i, "tokens", 0);  // type checks before the lengths are read
  a.i32(i + 3, "outRows", 0);
  const int64_t B = a.length(i);
  if (B < 1) a.range_error("tokens: a batch needs at least one row");
  if (B > kMaxBatch) a.range_error("tokens: " + std::to_string(B) + " rows exceed " + std::to_string(kMaxBatch) + " per call");
  BatchRows r;
  const int32_t* t = a.i32(i, "tokens", B, B);
  const int32_t* s = a.i32(i + 1, "seq", B, B);
  const int32_t* p = a.i32(i + 2, "pos", B, B);
  r.tokens.assign(t, t + B);
  r.seq.assign(s, s + B);
  r.pos.assign(p, p + B);
  for (int64_t b = 0; b < B; ++b) {
    if (r.tokens[b] < 0 || r.tokens[b] >= n_vocab)
      a.range_error("tokens[" + std::to_string(b) + "] = " + std::to_string(r.tokens[b]) + " is outside the vocabulary [0, " +
                    std::to_string(n_vocab) + ")");
    if (r.pos[b] < 0 || r.pos[b] >= max_pos_limit)
      a.range_error("pos[" + std::to_string(b) + "] = " + std::to_string(r.pos[b]) + " is outside [0, " + std::to_string(max_pos_limit) + ")");
    r.max_pos = std::max(r.max_pos, r.pos[b]);
  }
  const int64_t n_out = a.length(i + 3);
  if (n_out > 0) {
    const int32_t* o = a.i32(i + 3, "outRows", n_out, n_out);
    r.out_rows.assign(o, o + n_out);
  }
  for (int64_t k = 0; k < n_out; ++k)
    if (r.out_rows[k] < 0 || r.out_rows[k] >= B || (k > 0 && r.out_rows[k] <= r.out_rows[k - 1]))
      a.range_error("outRows must be ascending row indices in [0, " + std::to_string(B) + ")");
  return r;
}

double* read_profile(const Args& a, const Napi::CallbackInfo& info, size_t i, int64_t n) {
  if (!a.has(i)) return nullptr;
  if (!info[i].IsTypedArray() || info[i].As<Napi::TypedArray>().TypedArrayType() != napi_float64_array)
    a.type_error("profile must be a Float64Array");
  auto ta = info[i].As<Napi::TypedArray>();
  if (static_cast<int64_t>(ta.ElementLength()) != n) a.range_error("profile must have " + std::to_string(n) + " elements");
  return reinterpret_cast<double*>(static_cast<uint8_t*>(ta.ArrayBuffer().Data()) + ta.ByteOffset());
}

// A KvPoolError as a JS RangeError with a code the TS layer maps to its typed errors (lib/model/state.ts).
[[noreturn]] void throw_pool_error(Napi::Env env, const char* fn, const KvPoolError& e) {
  static const char* const codes[] = {"ERR_UNKNOWN_SEQUENCE", "ERR_BAD_POSITION", "ERR_KV_POOL_FULL", "ERR_CONTEXT_FULL",
                                      "ERR_BAD_ARGUMENT"};
  Napi::Error err = Napi::RangeError::New(env, std::string(fn) + ": " + e.message);
  err.Value().Set("code", Napi::String::New(env, codes[e.code]));
  throw err;
}


}  // namespace bitllm
