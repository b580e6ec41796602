// The attention block of every architecture row (arch.ts) on the native kernels:
//   h = x + Wo·subnorm_attn(Attn(RoPE(Wq·n), RoPE(Wk·n), Wv·n)),  n = RMSNorm_attn(x)
//   y = h + Wdown·subnorm_ffn(act(Wgate·m) ⊙ Wup·m),               m = RMSNorm_ffn(h)
//   logits = RMSNorm_out(y_L) · headᵀ
// Sub-norms are skipped where the file has none (LLaMA blocks); act is ReLU² or SiLU; every projection is a
// Linear (weights.ts) of its row's linear kind with its input quantizer.
// By default forward() is one native call (./native-model.ts, native/runtime/model_exec.cpp). Given a
// ComputeBackend (./backend.ts) it runs op by op in TS instead: nativeBackend(ctx) (bit-identical to the
// one-call path; tests check it) or referenceBackend() (the pure-TS oracle).
import type { KernelContext } from '../kernels/context.js';
import { type QuantizedActivations, allocActivations } from '../kernels/ternary.js';
import { type ComputeBackend, nativeBackend } from './backend.js';
import type { ModelConfig } from './config.js';
import type { KvCache } from './kv-cache.js';
import { NativeModel } from './native-model.js';
import { type HeadMatrix, type Linear, type LinearGroup, type ModelWeights, groupRows } from './weights.js';

/** Scratch buffers for B tokens, grown on demand and reused across calls. */
class Scratch {
  B = 0;
  x!: Float32Array; // [B, d] residual stream
  h!: Float32Array; // [B, max(d, ff)] normed input
  qkv!: Float32Array; // [B, d + 2 dkv]
  q!: Float32Array; // [B, d]
  k!: Float32Array; // [B, dkv]
  v!: Float32Array; // [B, dkv]
  attn!: Float32Array; // [B, d]
  o!: Float32Array; // [B, d]
  gu!: Float32Array; // [B, 2 ff]
  ffh!: Float32Array; // [B, ff]
  part!: Float32Array; // [B, max(d + 2 dkv, 2 ff)] one linear's output before it is placed in its group's rows
  xs!: Float32Array; // [B, max(d, ff)] pre-scaled input (α / g)
  tokBias!: Float32Array; // [B]
  acts!: QuantizedActivations; // [B, max(d, ff)]
  pos!: Int32Array; // [B]

  ensure(B: number, cfg: ModelConfig): void {
    if (B <= this.B) return;
    const d = cfg.nEmbd;
    const dkv = cfg.nHeadKv * cfg.headDim;
    const ff = cfg.nFf;
    this.B = B;
    this.x = new Float32Array(B * d);
    this.h = new Float32Array(B * Math.max(d, ff));
    this.qkv = new Float32Array(B * (d + 2 * dkv));
    this.q = new Float32Array(B * d);
    this.k = new Float32Array(B * dkv);
    this.v = new Float32Array(B * dkv);
    this.attn = new Float32Array(B * d);
    this.o = new Float32Array(B * d);
    this.gu = new Float32Array(B * 2 * ff);
    this.ffh = new Float32Array(B * ff);
    this.part = new Float32Array(B * Math.max(d + 2 * dkv, 2 * ff));
    this.xs = new Float32Array(B * Math.max(d, ff));
    this.tokBias = new Float32Array(B);
    this.acts = allocActivations(B, Math.max(d, ff));
    this.pos = new Int32Array(B);
  }
}

function view<T extends Float32Array | Int8Array | Int32Array>(a: T, n: number): T {
  return a.subarray(0, n) as T;
}

/** Names of a layer's linear groups, in forward order. */
export type GroupName = 'wqkv' | 'wo' | 'wgu' | 'wdown';

/** Sees the input x [B, K] of every linear group (op-by-op path only): calibration for post-training quantizers. */
export type InputTap = (layer: number, group: GroupName, x: Float32Array, B: number, K: number) => void;

export class TransformerModel {
  private readonly scratch = new Scratch();
  /** Called with each linear group's input while forward() runs op by op (a ComputeBackend was given). */
  inputTap: InputTap | null = null;
  readonly backend: ComputeBackend;
  /** The one-call native forward; null when an explicit backend runs the ops from TS. */
  readonly native: NativeModel | null;

  /**
   * Without `backend`, forward() runs the whole pass natively in one call. With one, it runs op by op
   * on it: nativeBackend(ctx) (same kernels, bit-identical) or referenceBackend() (lib/reference).
   */
  constructor(
    readonly ctx: KernelContext,
    readonly cfg: ModelConfig,
    readonly weights: ModelWeights,
    backend?: ComputeBackend,
  ) {
    this.backend = backend ?? nativeBackend(ctx);
    this.native = backend ? null : new NativeModel(ctx, cfg, weights);
  }

  /** Quantizes x [B, K] to int8 codes (i8 / i4 / top-k i8) in the shared activation buffer. */
  private quant(kind: 'i8' | 'i4' | 'topk-i8', x: Float32Array, B: number, K: number, ratio = 1): QuantizedActivations {
    const a = this.scratch.acts;
    const out: QuantizedActivations = { q: view(a.q, B * K), scale: view(a.scale, B), sum: view(a.sum, B), B, K };
    return this.backend.quantize(kind, view(x, B * K), B, K, ratio, out);
  }

  private embed(tokens: ArrayLike<number>, out: Float32Array): void {
    const ids = Int32Array.from(tokens as ArrayLike<number>);
    for (let i = 0; i < ids.length; i++)
      if (!(ids[i]! >= 0 && ids[i]! < this.cfg.nVocab)) throw new RangeError(`token id ${ids[i]} at index ${i} is outside the vocabulary [0, ${this.cfg.nVocab})`);
    const e = this.weights.tokEmbd;
    if (e.kind === 'f16') this.backend.f16GetRows(e.m, ids, out);
    else if (e.kind === 'f16t') this.backend.f16tGetRows(e.m, ids, out);
    else if (e.kind === 'q8') this.backend.q8GetRows(e.m, ids, out);
    else this.backend.q4GetRows(e.m, ids, out);
  }

  private head(h: HeadMatrix, x: Float32Array, B: number, out: Float32Array): void {
    if (h.kind === 'f16') this.backend.f16Gemm(h.m, x, B, out);
    else if (h.kind === 'f16t') this.backend.f16tGemm(h.m, x, B, out);
    else if (h.kind === 'q8') this.backend.q8Gemm(h.m, this.quant('i8', x, B, this.cfg.nEmbd), out);
    else this.backend.q4Gemm(h.m, this.quant('i8', x, B, this.cfg.nEmbd), out);
  }

  /** y [B, l.M] = the linear l of x [B, l.K] (pre-step, quantizer, GEMM, epilogue; linear.h's contract). */
  private linear(l: Linear, x: Float32Array, B: number, y: Float32Array): void {
    const be = this.backend;
    const s = this.scratch;
    const K = l.K;
    let input = view(x, B * K);
    const tokBias = l.colBias ? view(s.tokBias, B) : null;
    if (l.colScale || l.colBias) {
      input = view(s.xs, B * K);
      be.binaryPrep(view(x, B * K), B, K, l.colScale, l.colBias, input, tokBias);
    }
    const w = l.w;
    if (l.quant === 'none') {
      if (w.kind === 'f16') be.f16Gemm(w.m, input, B, y);
      else if (w.kind === 'b1l64') be.binaryFloatGemm(w.m, input, B, l.rowScale, tokBias, y);
      else throw new RangeError(`linear: ${w.kind} weights need quantized activations`);
    } else {
      const a = this.quant(l.quant, input, B, K, l.topkRatio);
      if (w.kind === 'b1r16') be.binaryGemm(w.m, a, tokBias, y);
      else if (w.kind === 't2r16' || w.kind === 'td3') be.ternaryGemm(w.m, a, y);
      else if (w.kind === 'ts256') be.ternarySparseGemm(w.m, a, y);
      else if (w.kind === 'billm') be.billmGemm(w.m, w.planes, a, y);
      else throw new RangeError(`linear: ${w.kind} weights take float activations`);
    }
    if (l.layerNormEps > 0) be.layerNorm(y, B, l.M, l.layerNormEps, y);
  }

  /** out [B, groupRows(g)] = the group's linears of x, side by side. */
  private group(l: number, name: GroupName, g: LinearGroup, x: Float32Array, B: number, out: Float32Array): void {
    this.inputTap?.(l, name, x.subarray(0, B * g[0]!.K), B, g[0]!.K);
    if (g.length === 1) {
      this.linear(g[0]!, x, B, view(out, B * g[0]!.M));
      return;
    }
    const M = groupRows(g);
    let off = 0;
    for (const l of g) {
      const part = view(this.scratch.part, B * l.M);
      this.linear(l, x, B, part);
      for (let b = 0; b < B; b++) out.set(part.subarray(b * l.M, (b + 1) * l.M), b * M + off);
      off += l.M;
    }
  }

  /**
   * Runs tokens at positions [kv.length, kv.length + B) through the model, appends their K/V, and
   * returns logits [n, vocab] for the last `n = allLogits ? B : 1` tokens.
   */
  forward(tokens: ArrayLike<number>, kv: KvCache, allLogits = false): Float32Array {
    const cfg = this.cfg;
    const B = tokens.length;
    if (B === 0) throw new RangeError('forward: no tokens');
    kv.reserve(B);
    if (this.native) {
      for (let i = 0; i < B; i++) {
        const t = tokens[i]!;
        if (!(t >= 0 && t < this.cfg.nVocab && Number.isInteger(t)))
          throw new RangeError(`token id ${t} at index ${i} is outside the vocabulary [0, ${this.cfg.nVocab})`);
      }
      const logits = this.native.forward(tokens, kv, allLogits);
      kv.length += B;
      return logits;
    }
    const pos = new Int32Array(B);
    for (let b = 0; b < B; b++) pos[b] = kv.length + b;
    const n = allLogits ? B : 1;
    const outRows = Array.from({ length: n }, (_, i) => B - n + i);
    const logits = this.runOps(tokens, pos, outRows, (l, q, k, v, attn) => this.attendFlat(l, kv, q, k, v, pos, attn));
    kv.length += B;
    return logits;
  }

  /** Stores the rows' K/V into one flat cache and runs their attention (the single-sequence forward). */
  private attendFlat(l: number, kv: KvCache, q: Float32Array, k: Float32Array, v: Float32Array, pos: Int32Array, attn: Float32Array): void {
    const be = this.backend;
    const cfg = this.cfg;
    const scale = 1 / Math.sqrt(cfg.headDim);
    if (kv.type === 'q8') {
      const kc = kv.k[l] as Uint8Array;
      const vc = kv.v[l] as Uint8Array;
      be.kvStoreQ8(k, pos, kc, kv.shape);
      be.kvStoreQ8(v, pos, vc, kv.shape);
      be.attentionQ8(q, kc, vc, pos, cfg.nHead, kv.shape, scale, attn);
    } else if (kv.type === 'q3') {
      const kc = kv.k[l] as Uint8Array;
      const vc = kv.v[l] as Uint8Array;
      be.kvStoreQ3(k, pos, kc, kv.shape);
      be.kvStoreQ3(v, pos, vc, kv.shape);
      be.attentionQ3(q, kc, vc, pos, cfg.nHead, kv.shape, scale, attn);
    } else {
      const kc = kv.k[l] as Uint16Array;
      const vc = kv.v[l] as Uint16Array;
      be.kvStoreF16(k, pos, kc, kv.shape);
      be.kvStoreF16(v, pos, vc, kv.shape);
      be.attentionF16(q, kc, vc, pos, cfg.nHead, kv.shape, scale, attn);
    }
  }

  /**
   * The batch contract of the op-by-op path (the oracle of the native forwardBatch, lib/model/state.ts):
   * row b is tokens[b] of the sequence whose flat cache is caches[b] at position pos[b]; GEMMs run over
   * all rows, the KV store and attention per row through its own cache (every row's K/V is stored before
   * any row attends, as natively). The caller has validated the rows (positions continue each cache);
   * the caches' lengths are not changed here. Logits [outRows.length, vocab] in outRows order.
   */
  forwardRows(tokens: ArrayLike<number>, caches: readonly KvCache[], pos: Int32Array, outRows: readonly number[]): Float32Array {
    if (this.native) throw new RangeError('forwardRows runs op by op: use SequencePool.forwardBatch for the native forward');
    const cfg = this.cfg;
    const d = cfg.nEmbd;
    const dkv = cfg.nHeadKv * cfg.headDim;
    const be = this.backend;
    const scale = 1 / Math.sqrt(cfg.headDim);
    return this.runOps(tokens, pos, outRows, (l, q, k, v, attn) => {
      const B = pos.length;
      for (let b = 0; b < B; b++) {
        const kv = caches[b]!;
        const p = pos.subarray(b, b + 1);
        const kr = k.subarray(b * dkv, (b + 1) * dkv);
        const vr = v.subarray(b * dkv, (b + 1) * dkv);
        if (kv.type === 'q8') {
          be.kvStoreQ8(kr, p, kv.k[l] as Uint8Array, kv.shape);
          be.kvStoreQ8(vr, p, kv.v[l] as Uint8Array, kv.shape);
        } else if (kv.type === 'q3') {
          be.kvStoreQ3(kr, p, kv.k[l] as Uint8Array, kv.shape);
          be.kvStoreQ3(vr, p, kv.v[l] as Uint8Array, kv.shape);
        } else {
          be.kvStoreF16(kr, p, kv.k[l] as Uint16Array, kv.shape);
          be.kvStoreF16(vr, p, kv.v[l] as Uint16Array, kv.shape);
        }
      }
      for (let b = 0; b < B; b++) {
        const kv = caches[b]!;
        const p = pos.subarray(b, b + 1);
        const qr = q.subarray(b * d, (b + 1) * d);
        const o = attn.subarray(b * d, (b + 1) * d);
        if (kv.type === 'q8') be.attentionQ8(qr, kv.k[l] as Uint8Array, kv.v[l] as Uint8Array, p, cfg.nHead, kv.shape, scale, o);
        else if (kv.type === 'q3') be.attentionQ3(qr, kv.k[l] as Uint8Array, kv.v[l] as Uint8Array, p, cfg.nHead, kv.shape, scale, o);
        else be.attentionF16(qr, kv.k[l] as Uint16Array, kv.v[l] as Uint16Array, p, cfg.nHead, kv.shape, scale, o);
      }
    });
  }

  /** The op-by-op forward of rows at positions pos; attend(l, ...) stores K/V and fills attn [B, d]. */
  private runOps(tokens: ArrayLike<number>, posIn: Int32Array, outRows: readonly number[],
    attend: (l: number, q: Float32Array, k: Float32Array, v: Float32Array, attn: Float32Array) => void): Float32Array {
    const cfg = this.cfg;
    const B = tokens.length;
    const s = this.scratch;
    const be = this.backend;
    s.ensure(B, cfg);
    const d = cfg.nEmbd;
    const ff = cfg.nFf;
    const dkv = cfg.nHeadKv * cfg.headDim;
    const nqkv = d + 2 * dkv;
    const x = view(s.x, B * d);
    const pos = view(s.pos, B);
    pos.set(posIn);
    this.embed(tokens, x);
    const h = view(s.h, B * d);
    const q = view(s.q, B * d);
    const k = view(s.k, B * dkv);
    const v = view(s.v, B * dkv);
    const attn = view(s.attn, B * d);
    const o = view(s.o, B * d);
    const qkv = view(s.qkv, B * nqkv);
    const gu = view(s.gu, B * 2 * ff);
    const ffh = view(s.ffh, B * ff);
    for (let l = 0; l < cfg.nLayer; l++) {
      const w = this.weights.layers[l]!;
      // Attention.
      be.rmsnorm(x, w.attnNorm, B, d, cfg.eps, h);
      this.group(l, 'wqkv', w.wqkv, h, B, qkv);
      for (let b = 0; b < B; b++) {
        const row = b * nqkv;
        q.set(qkv.subarray(row, row + d), b * d);
        k.set(qkv.subarray(row + d, row + d + dkv), b * dkv);
        v.set(qkv.subarray(row + d + dkv, row + nqkv), b * dkv);
      }
      be.ropeNeox(q, pos, cfg.nHead, cfg.headDim, cfg.nRot, cfg.ropeTheta);
      be.ropeNeox(k, pos, cfg.nHeadKv, cfg.headDim, cfg.nRot, cfg.ropeTheta);
      attend(l, q, k, v, attn);
      if (w.attnSubNorm) be.rmsnorm(attn, w.attnSubNorm, B, d, cfg.eps, attn);
      this.group(l, 'wo', w.wo, attn, B, o);
      for (let i = 0; i < B * d; i++) x[i] = x[i]! + o[i]!;
      // Feed-forward.
      be.rmsnorm(x, w.ffnNorm, B, d, cfg.eps, h);
      this.group(l, 'wgu', w.wgu, h, B, gu);
      if (cfg.activation === 'relu2') be.gluRelu2(gu, B, ff, ffh);
      else be.gluSilu(gu, B, ff, ffh);
      if (w.ffnSubNorm) be.rmsnorm(ffh, w.ffnSubNorm, B, ff, cfg.eps, ffh);
      this.group(l, 'wdown', w.wdown, ffh, B, o);
      for (let i = 0; i < B * d; i++) x[i] = x[i]! + o[i]!;
    }
    const n = outRows.length;
    const logits = new Float32Array(n * cfg.nVocab);
    if (n === 0) return logits;
    // The rows that want logits, gathered (o is free here), then the output norm and head over them.
    const picked = view(s.o, n * d);
    for (let i = 0; i < n; i++) picked.set(x.subarray(outRows[i]! * d, (outRows[i]! + 1) * d), i * d);
    const normed = view(s.h, n * d);
    be.rmsnorm(picked, this.weights.outputNorm, n, d, cfg.eps, normed);
    this.head(this.weights.output, normed, n, logits);
    return logits;
  }
}
