// Bi-Mamba on the native kernels, op by op (issue 13): the FBI-linear in/out projections on the exact float
// lookup-table GEMM (binary_lut.h, the FBI-LLM path), the Mamba-2 mixer kernels (mamba2.h: conv, SSD recurrence
// for decode, SSD chunked scan for prefill, gated RMSNorm), RMSNorm and the tied F16 head. One sequence per call;
// its state (conv rows and SSM state per layer) is constant in the sequence length. This is the forward the
// sequence pool and the scheduler will drive once the SSM state is a state kind of the pool; today it serves the
// parity tests against the float64 reference (lib/model/mamba2.ts) and bench/bimamba.mjs.
import type { GgufFile } from '../format/gguf.js';
import { type BinaryLutMatrix, binaryLutGemm, packBinaryLut } from '../kernels/binary-lut.js';
import type { KernelContext } from '../kernels/context.js';
import { type F16Matrix, f16Gemm, f16GetRows } from '../kernels/dense.js';
import { gatedRmsNorm, mamba2Conv, ssdChunked, ssdRecurrent } from '../kernels/mamba2.js';
import { rmsnorm } from '../kernels/ops.js';
import { floatToHalf } from '../reference/numeric.js';
import { mamba2ConvDim, mamba2InProjDim } from '../reference/mamba2.js';
import { type Mamba2Config, loadMamba2Weights } from './mamba2.js';

interface FbiLut {
  w: BinaryLutMatrix;
  alpha: Float32Array;
  beta: Float32Array;
}

interface LayerExec {
  norm: Float32Array;
  inProj: FbiLut;
  outProj: FbiLut;
  convWeight: Float32Array;
  convBias: Float32Array;
  ssm: { dtBias: Float32Array; ALog: Float32Array; D: Float32Array };
  normWeight: Float32Array;
}

/** One sequence's state: per layer the conv's last raw rows and the SSM state, and the tokens it has seen. */
export interface Mamba2SequenceState {
  conv: Float32Array[];
  ssm: Float32Array[];
  length: number;
}

export interface Mamba2ForwardOptions {
  /** Run the SSM by the chunked scan with chunks of this many rows when T > 1 (default 64); 0: the recurrence. */
  chunk?: number;
  /** Logits of every row (default: the last row only). */
  allLogits?: boolean;
}

export class Mamba2Exec {
  private readonly layers: LayerExec[];
  private readonly embd: F16Matrix;
  private readonly outputNorm: Float32Array;

  constructor(private readonly ctx: KernelContext, readonly cfg: Mamba2Config, file: GgufFile) {
    const w = loadMamba2Weights(file, cfg);
    const lut = (l: { M: number; K: number; signs: Int8Array; alpha: Float32Array; beta: Float32Array }): FbiLut => ({
      w: packBinaryLut(ctx, l.signs, l.M, l.K), alpha: l.alpha, beta: l.beta,
    });
    this.layers = w.layers.map((L) => ({
      norm: L.norm, inProj: lut(L.inProj), outProj: lut(L.outProj), convWeight: L.convWeight, convBias: L.convBias,
      ssm: { dtBias: L.dtBias, ALog: Float32Array.from(L.ALog), D: L.D }, normWeight: L.normWeight,
    }));
    const data = new Uint16Array(w.embd.length);
    for (let i = 0; i < data.length; i++) data[i] = floatToHalf(w.embd[i]!);
    this.embd = { data, M: cfg.nVocab, K: cfg.dModel };
    this.outputNorm = w.outputNorm;
  }

  private scratch: Record<'u' | 'bias' | 'z' | 'xBC' | 'dt' | 'x' | 'B' | 'C', Float32Array> | undefined;
  private scratchRows = 0;

  private scratchFor(T: number): NonNullable<Mamba2Exec['scratch']> {
    if (!this.scratch || this.scratchRows < T) {
      const c = this.cfg;
      const G = c.nGroups * c.dState;
      const f = (n: number) => new Float32Array(T * n);
      this.scratch = {
        u: f(Math.max(c.dModel, c.dInner)), bias: f(1), z: f(c.dInner), xBC: f(mamba2ConvDim(c)), dt: f(c.nHeads), x: f(c.dInner), B: f(G), C: f(G),
      };
      this.scratchRows = T;
    }
    return this.scratch;
  }

  newState(): Mamba2SequenceState {
    const c = this.cfg;
    const P = c.dInner / c.nHeads;
    return {
      conv: this.layers.map(() => new Float32Array((c.dConv - 1) * mamba2ConvDim(c))),
      ssm: this.layers.map(() => new Float32Array(c.nHeads * P * c.dState)),
      length: 0,
    };
  }

  /** Bytes of one sequence's state (every layer): what a sequence costs, whatever its length. */
  stateBytes(): number {
    const c = this.cfg;
    return c.nLayer * 4 * ((c.dConv - 1) * mamba2ConvDim(c) + c.dInner * c.dState);
  }

  /** Runs `tokens` after what `state` has seen (advancing it); logits [rows, vocab] of the last row or all. */
  forward(tokens: readonly number[], state: Mamba2SequenceState, opts: Mamba2ForwardOptions = {}): Float32Array {
    const c = this.cfg;
    const ctx = this.ctx;
    const T = tokens.length;
    if (T === 0) throw new RangeError('mamba2: no tokens');
    tokens.forEach((t, i) => {
      if (!(Number.isInteger(t) && t >= 0 && t < c.nVocab)) throw new RangeError(`mamba2: tokens[${i}] = ${t} is outside the vocabulary (${c.nVocab})`);
    });
    const chunk = opts.chunk ?? 64;
    const d = c.dModel;
    const F = mamba2InProjDim(c);
    const Cd = mamba2ConvDim(c);
    const G = c.nGroups * c.dState;
    const res = f16GetRows(ctx, this.embd, Int32Array.from(tokens));
    // Scratch for T rows, kept across calls (decode runs one row per call: no allocation per token beyond the
    // kernels' outputs).
    const sc = this.scratchFor(T);
    const { u, bias } = sc;
    const z = sc.z.subarray(0, T * c.dInner);
    const xBC = sc.xBC.subarray(0, T * Cd);
    const dt = sc.dt.subarray(0, T * c.nHeads);
    const x = sc.x.subarray(0, T * c.dInner);
    const B = sc.B.subarray(0, T * G);
    const Cm = sc.C.subarray(0, T * G);
    // u = α ⊙ h, bias = Σ β h per row: the FBI-linear's pre-step.
    const prep = (p: FbiLut, h: Float32Array, K: number) => {
      for (let t = 0; t < T; t++) {
        let s = 0;
        for (let k = 0; k < K; k++) {
          const v = h[t * K + k]!;
          u[t * K + k] = p.alpha[k]! * v;
          s += p.beta[k]! * v;
        }
        bias[t] = s;
      }
      return u.subarray(0, T * K);
    };
    this.layers.forEach((L, l) => {
      const h = rmsnorm(ctx, res, L.norm, T, d, c.eps);
      const zxbcdt = binaryLutGemm(ctx, L.inProj.w, prep(L.inProj, h, d), T, bias);
      for (let t = 0; t < T; t++) {
        z.set(zxbcdt.subarray(t * F, t * F + c.dInner), t * c.dInner);
        xBC.set(zxbcdt.subarray(t * F + c.dInner, t * F + c.dInner + Cd), t * Cd);
        dt.set(zxbcdt.subarray(t * F + c.dInner + Cd, (t + 1) * F), t * c.nHeads);
      }
      const conv = mamba2Conv(ctx, c, xBC, T, L.convWeight, L.convBias, state.conv[l]!);
      for (let t = 0; t < T; t++) {
        x.set(conv.subarray(t * Cd, t * Cd + c.dInner), t * c.dInner);
        B.set(conv.subarray(t * Cd + c.dInner, t * Cd + c.dInner + G), t * G);
        Cm.set(conv.subarray(t * Cd + c.dInner + G, (t + 1) * Cd), t * G);
      }
      const y = T > 1 && chunk > 0
        ? ssdChunked(ctx, c, x, B, Cm, dt, T, L.ssm, state.ssm[l]!, chunk)
        : ssdRecurrent(ctx, c, x, B, Cm, dt, T, L.ssm, state.ssm[l]!);
      const yn = gatedRmsNorm(ctx, c, y, z, L.normWeight, T, c.normEps);
      const out = binaryLutGemm(ctx, L.outProj.w, prep(L.outProj, yn, c.dInner), T, bias);
      for (let i = 0; i < T * d; i++) res[i] = res[i]! + out[i]!;
    });
    state.length += T;
    const rows = opts.allLogits ? T : 1;
    const last = res.subarray((T - rows) * d, T * d);
    return f16Gemm(ctx, this.embd, rmsnorm(ctx, last, this.outputNorm, rows, d, c.eps), rows);
  }
}
