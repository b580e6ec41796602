// The Mamba-2 block kind on the native kernels (issue 13, DESIGN.md §8.4), op by op over a batch of rows of many
// sequences: the in/out projections run once over every row of the step (Bi-Mamba's FBI-linear on the exact float
// lookup-table GEMM, binary_lut.h; the FP teacher's dense F16 GEMM), the mixer's sequence-order ops (causal conv,
// the SSD scan) run per sequence on its own state, and the norms and the head run over all rows. A sequence's
// state (conv rows and SSM state per layer) is constant in its length: no KV cache.
//
// Batch invariance: every op is row-independent except the conv and the scan, which read only the sequence's own
// rows. The scan takes the chunked form (prefill) only over whole chunks aligned to absolute positions
// (multiples of `chunk`) and the recurrence elsewhere, so a sequence's logits depend on where its rows start and
// end (the scheduler splits prompts at those multiples) and never on what else is in the batch.
import type { GgufFile } from '../format/gguf.js';
import { type BinaryLutMatrix, binaryLutGemm, packBinaryLut } from '../kernels/binary-lut.js';
import { type KernelContext, WeightArena, weightBytes } from '../kernels/context.js';
import { b1lBytes } from '../reference/binary-lut.js';
import { type F16Matrix, f16Gemm, f16GetRows, f16tElems, f16tGemm, f16tGetRows, q4Gemm, q4GetRows, q8Gemm, q8GetRows, repackF16T, repackQ4,
  repackQ8 } from '../kernels/dense.js';
import { quantizeActivationsI8 } from '../kernels/ternary.js';
import type { HeadMatrix } from './weights.js';
import { gatedRmsNorm, mamba2Conv, ssdChunked, ssdRecurrent } from '../kernels/mamba2.js';
import { type KvCacheShape, attentionF16, kvStoreF16, rmsnorm, ropeNeox } from '../kernels/ops.js';
import { NativeError } from '../errors.js';
import { binding, loadNative } from '../native.js';
import { floatToHalf } from '../reference/numeric.js';
import { mamba2ConvDim, mamba2InProjDim } from '../reference/mamba2.js';
import { type Mamba2Config, type Mamba2Linear, isAttnLayer, isFbi, loadMamba2Weights } from './mamba2.js';
import type { OpProfiler } from './native-model.js';
import type { StatePoolHandle } from './state.js';

interface Mamba2NativeHandle {
  forwardBatch(ctx: unknown, pool: unknown, tokens: Int32Array, seq: Int32Array, pos: Int32Array, outRows: Int32Array,
    logits: Float32Array, chunk: number, profile?: Float64Array): void;
}

type PrepFn = (ctx: unknown, x: Float32Array, B: number, K: number, colScale: Float32Array | null, colBias: Float32Array | null,
  xs: Float32Array, tokBias: Float32Array | null) => void;

/** A projection as the kernels read it: FBI (signs + α, β) or dense F16. */
type LinearExec = { kind: 'fbi'; w: BinaryLutMatrix; alpha: Float32Array; beta: Float32Array } | { kind: 'f16'; w: F16Matrix };

interface AttnExec {
  kind: 'attention';
  norm: Float32Array;
  wq: LinearExec;
  wk: LinearExec;
  wv: LinearExec;
  wo: LinearExec;
}

interface LayerExec {
  kind: 'mamba2';
  norm: Float32Array;
  inProj: LinearExec;
  outProj: LinearExec;
  convWeight: Float32Array;
  convBias: Float32Array;
  ssm: { dtBias: Float32Array; ALog: Float32Array; D: Float32Array };
  normWeight: Float32Array;
}

/**
 * One sequence's state: per layer the conv's last raw rows and the SSM state (a hybrid's attention layers: empty
 * arrays there, and their f16 K/V caches [nHeadKv, capacity, headDim] in `kv`), and the tokens it has seen.
 */
export interface Mamba2SequenceState {
  conv: Float32Array[];
  ssm: Float32Array[];
  kv: Array<{ k: Uint16Array; v: Uint16Array } | null>;
  /** Positions the KV caches hold at most (Infinity without attention layers). */
  capacity: number;
  length: number;
}

/** Rows [start, start + rows) of a batch belong to one sequence and continue its state. */
export interface Mamba2Segment {
  state: Mamba2SequenceState;
  start: number;
  rows: number;
}

export interface Mamba2ForwardOptions {
  /** Run the SSM by the chunked scan over whole aligned chunks of this many rows (default 64); 0: the recurrence only. */
  chunk?: number;
  /** Logits of every row (default: the last row only). */
  allLogits?: boolean;
}

/** The default scan chunk (rows): the alignment the scheduler splits recurrent prompts at. */
export const MAMBA2_CHUNK = 64;

type Scratch = Record<'res' | 'last' | 'u' | 'bias' | 'h' | 'proj' | 'z' | 'xBC' | 'dt' | 'conv' | 'x' | 'B' | 'C' | 'y' | 'yn' | 'out' | 'q' | 'k' | 'v' | 'att', Float32Array>
  & { pos: Int32Array };

export class Mamba2Exec implements OpProfiler {
  private readonly layers: Array<LayerExec | AttnExec>;
  private readonly embd: HeadMatrix;
  private readonly head: HeadMatrix;
  private readonly outputNorm: Float32Array;
  /** Bytes of weights read per token (projections, head; what decode streams). */
  readonly weightBytes: number;

  /**
   * `headType`: the embedding and head as F16 (default, exact), or Q8R16 / Q4R16 with int8 activations (loadModel's
   * headType, as the attention rows take it): the head is the largest weight decode reads at a 32k vocabulary.
   */
  /** The one-call native forward over the same weights (native/runtime/mamba2_exec.h), or null (`native: false`). */
  readonly native: Mamba2NativeHandle | null;
  /** Accumulated ns per op class of the native forward (see opNames) while profiling is on, else null. */
  profile: Float64Array | null = null;
  private ops: readonly string[] | undefined;
  /** The native forward's op classes (native/runtime/mamba2_exec.h Mamba2ProfileOp). */
  get opNames(): readonly string[] {
    return (this.ops ??= (loadNative().mamba2ProfileOps as () => string[])());
  }

  /** Turns per-op timing of the native forward on (zeroed) or off. */
  setProfiling(on: boolean): void {
    this.profile = on ? new Float64Array(this.opNames.length) : null;
  }

  constructor(private readonly ctx: KernelContext, readonly cfg: Mamba2Config, file: GgufFile, opts: { headType?: 'f16' | 'q8' | 'q4'; native?: boolean } = {}) {
    const w = loadMamba2Weights(file, cfg);
    // Every projection and the head in one weight arena (2 MiB-aligned, huge pages, as the attention loader
    // places weights): decode streams them with far fewer TLB misses.
    const all = w.layers.flatMap((L) => (isAttnLayer(L) ? [L.wq, L.wk, L.wv, L.wo] : [L.inProj, L.outProj]));
    let need = all.reduce((n, l) => n + WeightArena.slot(isFbi(l) ? b1lBytes(l.M, l.K) : 2 * l.M * l.K), 0);
    // F16: the head as F16T32 tiles (weights.ts loadHead), an untied embedding as its rows.
    if ((opts.headType ?? 'f16') === 'f16')
      need += WeightArena.slot(2 * f16tElems(cfg.nVocab, cfg.dModel)) + (w.output ? WeightArena.slot(2 * cfg.nVocab * cfg.dModel) : 0);
    const arena = new WeightArena(need);
    const halfIn = (n: number) => {
      const b = arena.alloc(2 * n);
      return new Uint16Array(b.buffer, b.byteOffset, n);
    };
    let bytes = 0;
    const linear = (l: Mamba2Linear): LinearExec => {
      if (isFbi(l)) {
        bytes += b1lBytes(l.M, l.K);
        return { kind: 'fbi', w: packBinaryLut(ctx, l.signs, l.M, l.K, undefined, arena.alloc), alpha: l.alpha, beta: l.beta };
      }
      bytes += 2 * l.M * l.K;
      const data = halfIn(l.M * l.K);
      data.set(l.half);
      return { kind: 'f16', w: { data, M: l.M, K: l.K } };
    };
    this.layers = w.layers.map((L): LayerExec | AttnExec => (isAttnLayer(L)
      ? { kind: 'attention', norm: L.norm, wq: linear(L.wq), wk: linear(L.wk), wv: linear(L.wv), wo: linear(L.wo) }
      : {
        kind: 'mamba2', norm: L.norm, inProj: linear(L.inProj), outProj: linear(L.outProj), convWeight: L.convWeight, convBias: L.convBias,
        ssm: { dtBias: L.dtBias, ALog: Float32Array.from(L.ALog), D: L.D }, normWeight: L.normWeight,
      }));
    const headType = opts.headType ?? 'f16';
    const half = (v: Float32Array, name: string, gemm: boolean): HeadMatrix => {
      const rows = headType === 'f16' && !gemm;
      const data = rows ? halfIn(v.length) : new Uint16Array(v.length);
      for (let i = 0; i < data.length; i++) data[i] = floatToHalf(v[i]!);
      if (headType === 'q8') return { kind: 'q8', m: repackQ8(ctx, 'f16', data, cfg.nVocab, cfg.dModel, name, weightBytes) };
      if (headType === 'q4') return { kind: 'q4', m: repackQ4(ctx, 'f16', data, cfg.nVocab, cfg.dModel, name, weightBytes) };
      if (!rows) return { kind: 'f16t', m: repackF16T(ctx, data, cfg.nVocab, cfg.dModel, name, arena.alloc) };
      return { kind: 'f16', m: { data, M: cfg.nVocab, K: cfg.dModel } };
    };
    this.head = w.output ? half(w.output, 'output.weight', true) : half(w.embd, 'token_embd.weight', true);
    this.embd = w.output ? half(w.embd, 'token_embd.weight', false) : this.head;
    this.outputNorm = w.outputNorm;
    this.weightBytes = bytes + this.head.m.data.byteLength;
    this.native = opts.native === false ? null : this.nativeHandle();
  }

  private nativeHandle(): Mamba2NativeHandle {
    const Ctor = loadNative().Mamba2ModelNative as (new (spec: object) => Mamba2NativeHandle) | undefined;
    if (typeof Ctor !== 'function') throw new NativeError('bitllm: the native addon has no Mamba2ModelNative class');
    return new Ctor(this.nativeSpec());
  }

  /**
   * The native mirror of this model: the spec native/addon/mamba2_model.cpp reads (one linear spec per projection),
   * borrowing the packed weights.
   */
  nativeSpec(): Record<string, unknown> {
    const c = this.cfg;
    const lin = (p: LinearExec) => (p.kind === 'fbi'
      ? { weights: 'b1l64', quant: 'none', M: p.w.M, K: p.w.K, bits: p.w.bits, colScale: p.alpha, colBias: p.beta, topkRatio: 1, lnEps: 0 }
      : { weights: 'f16', quant: 'none', M: p.w.M, K: p.w.K, data: p.w.data, topkRatio: 1, lnEps: 0 });
    const dense = (h: HeadMatrix) => ({ kind: h.kind, data: h.m.data, M: h.m.M, K: h.m.K });
    return {
      dModel: c.dModel, dInner: c.dInner, nHeads: c.nHeads, dState: c.dState, nGroups: c.nGroups, dConv: c.dConv, nVocab: c.nVocab,
      eps: c.eps, normEps: c.normEps, attn: c.attn ?? undefined,
      layers: this.layers.map((L) => (L.kind === 'attention'
        ? { kind: 'attention', norm: L.norm, wqkv: [lin(L.wq), lin(L.wk), lin(L.wv)], wo: lin(L.wo) }
        : {
          kind: 'mamba2', norm: L.norm, inProj: lin(L.inProj), outProj: lin(L.outProj), convWeight: L.convWeight, convBias: L.convBias,
          dtBias: L.ssm.dtBias, ALog: L.ssm.ALog, D: L.ssm.D, normWeight: L.normWeight,
        })),
      outputNorm: this.outputNorm, embd: dense(this.embd), head: dense(this.head),
    };
  }

  /** The kernel layouts of the projections, distinct: 'b1l64' (FBI: signs on the exact float LUT GEMM), 'f16'. */
  linearLayouts(): string[] {
    const all = this.layers.flatMap((L) => (L.kind === 'attention' ? [L.wq, L.wk, L.wv, L.wo] : [L.inProj, L.outProj]));
    return [...new Set(all.map((p) => (p.kind === 'fbi' ? 'b1l64' : 'f16')))];
  }

  /** A native pool of `maxSequences` states for contexts of `contextSize` positions (runtime/recurrent_pool.h). */
  nativePool(maxSequences: number, contextSize: number): StatePoolHandle {
    if (!this.native) throw new NativeError('mamba2: this model was built without its native forward (native: false)');
    const Ctor = loadNative().Mamba2PoolNative as new (model: unknown, maxSequences: number, contextSize: number) => StatePoolHandle;
    return new Ctor(this.native, maxSequences, contextSize);
  }

  /**
   * The batch forward in one native call over a native pool's states: rows (tokens, seq, pos) in any order, the
   * logits of rows `outRows` (ascending) [n, vocab], written to `into` when it is large enough. The addon checks
   * every row and admits them into the pool before anything runs.
   */
  forwardNative(pool: StatePoolHandle, tokens: Int32Array, seq: Int32Array, pos: Int32Array, outRows: Int32Array, into?: Float32Array, chunk = MAMBA2_CHUNK): Float32Array {
    const n = outRows.length * this.cfg.nVocab;
    const logits = into && into.length >= n ? into.subarray(0, n) : new Float32Array(n);
    this.native!.forwardBatch(this.ctx.handle, pool, tokens, seq, pos, outRows, logits, chunk, this.profile ?? undefined);
    return logits;
  }

  private scratch: Scratch | undefined;
  private scratchRows = 0;

  private scratchFor(T: number): Scratch {
    if (!this.scratch || this.scratchRows < T) {
      const c = this.cfg;
      const G = c.nGroups * c.dState;
      const f = (n: number) => new Float32Array(T * n);
      this.scratch = {
        res: f(c.dModel), last: f(c.dModel), u: f(Math.max(c.dModel, c.dInner)), bias: f(1), h: f(c.dModel), proj: f(mamba2InProjDim(c)), z: f(c.dInner), xBC: f(mamba2ConvDim(c)),
        dt: f(c.nHeads), conv: f(mamba2ConvDim(c)), x: f(c.dInner), B: f(G), C: f(G), y: f(c.dInner), yn: f(c.dInner), out: f(c.dModel),
        q: f(c.attn ? c.dModel : 0), k: f(c.attn ? c.attn.nHeadKv * c.attn.headDim : 0), v: f(c.attn ? c.attn.nHeadKv * c.attn.headDim : 0),
        att: f(c.attn ? c.dModel : 0), pos: new Int32Array(T),
      };
      this.scratchRows = T;
    }
    return this.scratch;
  }

  /** A fresh state; `capacity`: the positions a hybrid's KV caches hold (required with attention layers). */
  newState(capacity?: number): Mamba2SequenceState {
    const c = this.cfg;
    const P = c.dInner / c.nHeads;
    const a = c.attn;
    if (a && !(capacity !== undefined && Number.isInteger(capacity) && capacity >= 1))
      throw new RangeError(`mamba2: a hybrid's state needs a KV capacity (an integer >= 1), got ${capacity}`);
    const mamba = (L: LayerExec | AttnExec) => L.kind === 'mamba2';
    return {
      conv: this.layers.map((L) => new Float32Array(mamba(L) ? (c.dConv - 1) * mamba2ConvDim(c) : 0)),
      ssm: this.layers.map((L) => new Float32Array(mamba(L) ? c.nHeads * P * c.dState : 0)),
      kv: this.layers.map((L) => (mamba(L) ? null : { k: new Uint16Array(a!.nHeadKv * capacity! * a!.headDim), v: new Uint16Array(a!.nHeadKv * capacity! * a!.headDim) })),
      capacity: a ? capacity! : Infinity,
      length: 0,
    };
  }

  /** Bytes of one sequence's state (every layer): constant in its length, plus a hybrid's KV caches for `capacity` positions. */
  stateBytes(capacity = 0): number {
    const c = this.cfg;
    let n = 0;
    for (const L of this.layers)
      n += L.kind === 'mamba2' ? 4 * ((c.dConv - 1) * mamba2ConvDim(c) + c.dInner * c.dState) : 2 * 2 * c.attn!.nHeadKv * capacity * c.attn!.headDim;
    return n;
  }

  /** Runs `tokens` after what `state` has seen (advancing it); logits [rows, vocab] of the last row or all. */
  forward(tokens: readonly number[], state: Mamba2SequenceState, opts: Mamba2ForwardOptions = {}): Float32Array {
    const T = tokens.length;
    if (T === 0) throw new RangeError('mamba2: no tokens');
    const out = opts.allLogits ? Int32Array.from({ length: T }, (_, i) => i) : Int32Array.of(T - 1);
    return this.forwardRows(Int32Array.from(tokens, (t, i) => this.token(t, i)), [{ state, start: 0, rows: T }], out, undefined, opts.chunk);
  }

  private token(t: number, i: number): number {
    if (!(Number.isInteger(t) && t >= 0 && t < this.cfg.nVocab)) throw new RangeError(`mamba2: tokens[${i}] = ${t} is outside the vocabulary (${this.cfg.nVocab})`);
    return t;
  }

  /**
   * The batch forward: `tokens` [N] where each segment's rows are contiguous and continue its state (advanced,
   * its length too). Returns the logits [outRows.length, vocab] of the rows `outRows` in that order (into `into`
   * when it is large enough). Nothing is checked twice: the caller (Mamba2StatePool) validated ids and rows.
   */
  forwardRows(tokens: Int32Array, segments: readonly Mamba2Segment[], outRows: Int32Array, into?: Float32Array, chunk = MAMBA2_CHUNK): Float32Array {
    const c = this.cfg;
    const ctx = this.ctx;
    const N = tokens.length;
    const d = c.dModel;
    const F = mamba2InProjDim(c);
    const Cd = mamba2ConvDim(c);
    const G = c.nGroups * c.dState;
    const H = c.nHeads;
    const e = this.embd;
    const sc = this.scratchFor(N);
    const view = (a: Float32Array, w: number) => a.subarray(0, N * w);
    // The residual stream, fp32, in the kept scratch (no allocation per step).
    const res = view(sc.res, d);
    if (e.kind === 'f16') f16GetRows(ctx, e.m, tokens, res);
    else if (e.kind === 'f16t') f16tGetRows(ctx, e.m, tokens, res);
    else if (e.kind === 'q8') q8GetRows(ctx, e.m, tokens, res);
    else q4GetRows(ctx, e.m, tokens, res);
    const h = view(sc.h, d);
    const proj = view(sc.proj, F);
    const z = view(sc.z, c.dInner);
    const xBC = view(sc.xBC, Cd);
    const dt = view(sc.dt, H);
    const conv = view(sc.conv, Cd);
    const x = view(sc.x, c.dInner);
    const B = view(sc.B, G);
    const Cm = view(sc.C, G);
    const y = view(sc.y, c.dInner);
    const yn = view(sc.yn, c.dInner);
    const out = view(sc.out, d);
    const bias = sc.bias.subarray(0, N);
    const prep = binding<PrepFn>('binaryPrep');
    const apply = (p: LinearExec, v: Float32Array, K: number, dst: Float32Array): void => {
      if (p.kind === 'f16') {
        f16Gemm(ctx, p.w, v, N, dst);
        return;
      }
      // u = α ⊙ v, bias = Σ β v per row: the FBI-linear's pre-step (binary.h binary_prep, as FBI-LLM runs it).
      const u = sc.u.subarray(0, N * K);
      prep(ctx.handle, v.subarray(0, N * K), N, K, p.alpha, p.beta, u, bias);
      binaryLutGemm(ctx, p.w, u, N, bias, dst);
    };
    const rows = (a: Float32Array, w: number, s: Mamba2Segment, off: number, n: number) => a.subarray((s.start + off) * w, (s.start + off + n) * w);
    const pos = sc.pos.subarray(0, N);
    for (const s of segments) {
      if (s.state.length + s.rows > s.state.capacity)
        throw new RangeError(`mamba2: ${s.rows} rows after ${s.state.length} positions exceed the sequence's KV capacity ${s.state.capacity}`);
      for (let i = 0; i < s.rows; i++) pos[s.start + i] = s.state.length + i;
    }
    this.layers.forEach((L, l) => {
      rmsnorm(ctx, res, L.norm, N, d, c.eps, h);
      if (L.kind === 'attention') {
        // The hybrid's attention mixer: q, k, v (row-independent), RoPE at each row's position, K/V into the
        // sequence's f16 cache, causal GQA over the sequence's own rows, wo.
        const a = c.attn!;
        const dq = a.nHead * a.headDim;
        const dkv = a.nHeadKv * a.headDim;
        const q = view(sc.q, dq);
        const k = view(sc.k, dkv);
        const v = view(sc.v, dkv);
        const att = view(sc.att, dq);
        apply(L.wq, h, d, q);
        apply(L.wk, h, d, k);
        apply(L.wv, h, d, v);
        ropeNeox(ctx, q, pos, a.nHead, a.headDim, a.headDim, a.ropeTheta);
        ropeNeox(ctx, k, pos, a.nHeadKv, a.headDim, a.headDim, a.ropeTheta);
        for (const s of segments) {
          const cache = s.state.kv[l]!;
          const shape: KvCacheShape = { nKvHeads: a.nHeadKv, headDim: a.headDim, capacity: s.state.capacity };
          const p = pos.subarray(s.start, s.start + s.rows);
          kvStoreF16(ctx, rows(k, dkv, s, 0, s.rows), p, cache.k, shape);
          kvStoreF16(ctx, rows(v, dkv, s, 0, s.rows), p, cache.v, shape);
          attentionF16(ctx, rows(q, dq, s, 0, s.rows), cache.k, cache.v, p, a.nHead, shape, 1 / Math.sqrt(a.headDim), rows(att, dq, s, 0, s.rows));
        }
        apply(L.wo, att, dq, out);
        for (let i = 0; i < N * d; i++) res[i] = res[i]! + out[i]!;
        return;
      }
      apply(L.inProj, h, d, proj);
      for (let t = 0; t < N; t++) {
        z.set(proj.subarray(t * F, t * F + c.dInner), t * c.dInner);
        xBC.set(proj.subarray(t * F + c.dInner, t * F + c.dInner + Cd), t * Cd);
        dt.set(proj.subarray(t * F + c.dInner + Cd, (t + 1) * F), t * H);
      }
      for (const s of segments) mamba2Conv(ctx, c, rows(xBC, Cd, s, 0, s.rows), s.rows, L.convWeight, L.convBias, s.state.conv[l]!, rows(conv, Cd, s, 0, s.rows));
      for (let t = 0; t < N; t++) {
        x.set(conv.subarray(t * Cd, t * Cd + c.dInner), t * c.dInner);
        B.set(conv.subarray(t * Cd + c.dInner, t * Cd + c.dInner + G), t * G);
        Cm.set(conv.subarray(t * Cd + c.dInner + G, (t + 1) * Cd), t * G);
      }
      for (const s of segments) {
        // Recurrence up to the next multiple of `chunk`, the chunked scan over whole aligned chunks, the recurrence
        // for the rest: the split depends only on the sequence's own positions.
        const p0 = s.state.length;
        const lead = chunk > 0 ? Math.min(s.rows, (chunk - (p0 % chunk)) % chunk) : s.rows;
        const body = chunk > 0 ? Math.floor((s.rows - lead) / chunk) * chunk : 0;
        const run = (off: number, n: number, chunked: boolean) => {
          if (n === 0) return;
          const args = [rows(x, c.dInner, s, off, n), rows(B, G, s, off, n), rows(Cm, G, s, off, n), rows(dt, H, s, off, n)] as const;
          if (chunked) ssdChunked(ctx, c, ...args, n, L.ssm, s.state.ssm[l]!, chunk, rows(y, c.dInner, s, off, n));
          else ssdRecurrent(ctx, c, ...args, n, L.ssm, s.state.ssm[l]!, rows(y, c.dInner, s, off, n));
        };
        run(0, lead, false);
        run(lead, body, true);
        run(lead + body, s.rows - lead - body, false);
      }
      gatedRmsNorm(ctx, c, y, z, L.normWeight, N, c.normEps, yn);
      apply(L.outProj, yn, c.dInner, out);
      for (let i = 0; i < N * d; i++) res[i] = res[i]! + out[i]!;
    });
    for (const s of segments) s.state.length += s.rows;
    const n = outRows.length;
    if (n === 0) return into ? into.subarray(0, 0) : new Float32Array(0);
    const last = sc.last.subarray(0, n * d);
    for (let i = 0; i < n; i++) last.set(res.subarray(outRows[i]! * d, (outRows[i]! + 1) * d), i * d);
    const logits = into && into.length >= n * c.nVocab ? into.subarray(0, n * c.nVocab) : undefined;
    const xn = rmsnorm(ctx, last, this.outputNorm, n, d, c.eps);
    const hm = this.head;
    if (hm.kind === 'f16') return f16Gemm(ctx, hm.m, xn, n, logits);
    if (hm.kind === 'f16t') return f16tGemm(ctx, hm.m, xn, n, logits);
    const a = quantizeActivationsI8(ctx, xn, n, d);
    return hm.kind === 'q8' ? q8Gemm(ctx, hm.m, a, logits) : q4Gemm(ctx, hm.m, a, logits);
  }
}
