// Reference Mamba-2 mixer (Bi-Mamba's block, issue 13), evaluated in float64: the oracle the native block will
// be checked against. Facts from ../shared/families.md §8 (mamba_ssm's Mamba2 step and ssd_minimal):
//   zxbcdt = in_proj(h), split [z (dInner) | xBC (dInner + 2 nGroups dState) | dt (nHeads)]
//   xBC    = SiLU(causal depthwise conv1d(xBC) + bias), kernel dConv, zero left padding
//   x | B | C = xBC, x as nHeads x headDim, B and C as nGroups x dState (head h uses group h / (nHeads / nGroups))
//   per head: dt = softplus(dt + dtBias), A = -exp(ALog), state = exp(dt A) state + dt x ⊗ B, y = state C + D x
//   y'     = gated RMSNorm (norm_before_gate = False): t = y ⊙ SiLU(z), each group of dInner / nGroups channels
//            t / sqrt(mean(t²) + eps) ⊙ w
//   out    = out_proj(y')
// Prefill runs the SSD chunked form (block-lower-triangular decay within a chunk, a state carried between
// chunks); it equals the token-by-token recurrence up to float rounding (test/reference-mamba2.test.ts).
//
// State layout (ours, not upstream's): conv [dConv - 1, convDim], the last dConv - 1 raw (pre-conv) xBC rows,
// oldest first, zeros before the first token (upstream keeps dConv columns including the current input); ssm
// [nHeads, headDim, dState].

export interface Mamba2Dims {
  dModel: number;
  dInner: number;
  dState: number;
  nHeads: number;
  nGroups: number;
  dConv: number;
}

/** Channels of the conv (x, B and C). */
export const mamba2ConvDim = (d: Mamba2Dims) => d.dInner + 2 * d.nGroups * d.dState;
/** Outputs of in_proj: z | xBC | dt. */
export const mamba2InProjDim = (d: Mamba2Dims) => 2 * d.dInner + 2 * d.nGroups * d.dState + d.nHeads;

/** Checks the dimensions (RangeError naming the one that is wrong); returns headDim. */
export function checkMamba2Dims(d: Mamba2Dims): number {
  for (const k of ['dModel', 'dInner', 'dState', 'nHeads', 'nGroups', 'dConv'] as const)
    if (!(Number.isInteger(d[k]) && d[k] >= 1)) throw new RangeError(`mamba2: ${k} must be an integer >= 1, got ${String(d[k])}`);
  if (d.dInner % d.nHeads !== 0) throw new RangeError(`mamba2: dInner ${d.dInner} is not a multiple of nHeads ${d.nHeads}`);
  if (d.nHeads % d.nGroups !== 0) throw new RangeError(`mamba2: nHeads ${d.nHeads} is not a multiple of nGroups ${d.nGroups}`);
  return d.dInner / d.nHeads;
}

export interface Mamba2State {
  /** [dConv - 1, convDim]: the last raw xBC rows, oldest first. */
  conv: Float64Array;
  /** [nHeads, headDim, dState]. */
  ssm: Float64Array;
}

export function mamba2EmptyState(d: Mamba2Dims): Mamba2State {
  const hd = checkMamba2Dims(d);
  return { conv: new Float64Array((d.dConv - 1) * mamba2ConvDim(d)), ssm: new Float64Array(d.nHeads * hd * d.dState) };
}

const silu = (v: number) => v / (1 + Math.exp(-v));

/** torch.nn.functional.softplus with its default threshold 20 (x itself above it). */
export function softplus(v: number): number {
  return v > 20 ? v : Math.log1p(Math.exp(v));
}

/**
 * Causal depthwise conv over T rows of xBC [T, convDim] with weight [convDim, dConv] (tap dConv - 1 multiplies
 * the current row) and bias, then SiLU. Reads and advances `conv` (the rows before the first one).
 */
export function refMamba2Conv(d: Mamba2Dims, xBC: ArrayLike<number>, T: number, weight: ArrayLike<number>, bias: ArrayLike<number>, conv: Float64Array): Float64Array {
  const C = mamba2ConvDim(d);
  const K = d.dConv;
  const out = new Float64Array(T * C);
  // History: the K - 1 rows before, then the T new ones.
  const hist = new Float64Array((K - 1 + T) * C);
  hist.set(conv);
  for (let i = 0; i < T * C; i++) hist[(K - 1) * C + i] = xBC[i]!;
  for (let t = 0; t < T; t++) {
    for (let c = 0; c < C; c++) {
      let s = bias[c]!;
      for (let k = 0; k < K; k++) s += weight[c * K + k]! * hist[(t + k) * C + c]!;
      out[t * C + c] = silu(s);
    }
  }
  conv.set(hist.subarray(T * C));
  return out;
}

export interface Mamba2SsmParams {
  /** [nHeads] */
  dtBias: ArrayLike<number>;
  /** [nHeads]: A = -exp(ALog). */
  ALog: ArrayLike<number>;
  /** [nHeads] */
  D: ArrayLike<number>;
}

/**
 * The SSM over T rows by the recurrence, one token at a time: x [T, dInner], B and C [T, nGroups dState],
 * dt [T, nHeads] (raw: before dtBias and softplus). Advances `ssm`; returns y [T, dInner] (D x included).
 */
export function refSsdRecurrent(d: Mamba2Dims, x: ArrayLike<number>, B: ArrayLike<number>, C: ArrayLike<number>, dt: ArrayLike<number>, T: number,
  p: Mamba2SsmParams, ssm: Float64Array): Float64Array {
  const P = checkMamba2Dims(d);
  const N = d.dState;
  const G = d.nGroups * N;
  const perGroup = d.nHeads / d.nGroups;
  const y = new Float64Array(T * d.dInner);
  for (let t = 0; t < T; t++) {
    for (let h = 0; h < d.nHeads; h++) {
      const g = Math.floor(h / perGroup);
      const dth = softplus(dt[t * d.nHeads + h]! + p.dtBias[h]!);
      const dA = Math.exp(-Math.exp(p.ALog[h]!) * dth);
      for (let i = 0; i < P; i++) {
        const xi = x[t * d.dInner + h * P + i]!;
        const st = (h * P + i) * N;
        let acc = 0;
        for (let n = 0; n < N; n++) {
          const v = dA * ssm[st + n]! + dth * xi * B[t * G + g * N + n]!;
          ssm[st + n] = v;
          acc += v * C[t * G + g * N + n]!;
        }
        y[t * d.dInner + h * P + i] = acc + p.D[h]! * xi;
      }
    }
  }
  return y;
}

/**
 * The same SSM over T rows in the SSD chunked form (chunks of `chunk` rows): within a chunk
 * y_t = Σ_{s<=t} (C_t·B_s) exp(Σ_{s<r<=t} a_r) dt_s x_s + exp(Σ_{r<=t} a_r) C_t·H, with a = dt A and H the state
 * entering the chunk; H then becomes exp(Σ_chunk a) H + Σ_s exp(Σ_{s<r} a_r) dt_s x_s ⊗ B_s. Advances `ssm`.
 */
export function refSsdChunked(d: Mamba2Dims, x: ArrayLike<number>, B: ArrayLike<number>, C: ArrayLike<number>, dt: ArrayLike<number>, T: number,
  p: Mamba2SsmParams, ssm: Float64Array, chunk: number): Float64Array {
  const P = checkMamba2Dims(d);
  if (!(Number.isInteger(chunk) && chunk >= 1)) throw new RangeError(`mamba2: chunk must be an integer >= 1, got ${chunk}`);
  const N = d.dState;
  const G = d.nGroups * N;
  const perGroup = d.nHeads / d.nGroups;
  const y = new Float64Array(T * d.dInner);
  const cum = new Float64Array(chunk);
  const dts = new Float64Array(chunk);
  const cb = new Float64Array(chunk * chunk);
  for (let h = 0; h < d.nHeads; h++) {
    const g = Math.floor(h / perGroup);
    const A = -Math.exp(p.ALog[h]!);
    for (let t0 = 0; t0 < T; t0 += chunk) {
      const L = Math.min(chunk, T - t0);
      let run = 0;
      for (let l = 0; l < L; l++) {
        dts[l] = softplus(dt[(t0 + l) * d.nHeads + h]! + p.dtBias[h]!);
        run += dts[l]! * A;
        cum[l] = run;
      }
      // C_t · B_s within the chunk (shared by the head's headDim channels).
      for (let t = 0; t < L; t++)
        for (let s = 0; s <= t; s++) {
          let v = 0;
          for (let n = 0; n < N; n++) v += C[(t0 + t) * G + g * N + n]! * B[(t0 + s) * G + g * N + n]!;
          cb[t * chunk + s] = v;
        }
      for (let i = 0; i < P; i++) {
        const st = (h * P + i) * N;
        const xAt = (l: number) => x[(t0 + l) * d.dInner + h * P + i]!;
        for (let t = 0; t < L; t++) {
          let diag = 0;
          for (let s = 0; s <= t; s++) diag += cb[t * chunk + s]! * Math.exp(cum[t]! - cum[s]!) * dts[s]! * xAt(s);
          let off = 0;
          for (let n = 0; n < N; n++) off += C[(t0 + t) * G + g * N + n]! * ssm[st + n]!;
          y[(t0 + t) * d.dInner + h * P + i] = diag + Math.exp(cum[t]!) * off + p.D[h]! * xAt(t);
        }
        // The state leaving the chunk.
        const decay = Math.exp(cum[L - 1]!);
        for (let n = 0; n < N; n++) {
          let v = decay * ssm[st + n]!;
          for (let s = 0; s < L; s++) v += Math.exp(cum[L - 1]! - cum[s]!) * dts[s]! * xAt(s) * B[(t0 + s) * G + g * N + n]!;
          ssm[st + n] = v;
        }
      }
    }
  }
  return y;
}

/** The gated rows t = y ⊙ SiLU(z) [T, dInner] and each group's scale 1 / sqrt(mean(t²) + eps) [T, nGroups]. */
function gatedScaled(d: Mamba2Dims, y: ArrayLike<number>, z: ArrayLike<number>, T: number, eps: number): { t: Float64Array; scale: Float64Array } {
  const n = d.dInner / d.nGroups;
  const t = new Float64Array(T * d.dInner);
  const scale = new Float64Array(T * d.nGroups);
  for (let r = 0; r < T; r++)
    for (let g = 0; g < d.nGroups; g++) {
      const o = r * d.dInner + g * n;
      let ss = 0;
      for (let i = 0; i < n; i++) {
        const v = y[o + i]! * silu(z[o + i]!);
        t[o + i] = v;
        ss += v * v;
      }
      scale[r * d.nGroups + g] = 1 / Math.sqrt(ss / n + eps);
    }
  return { t, scale };
}

/**
 * Gated RMSNorm with norm_before_gate = False over T rows: t = y ⊙ SiLU(z), then every group of
 * dInner / nGroups channels t / sqrt(mean(t²) + eps) ⊙ w.
 */
export function refGatedRmsNorm(d: Mamba2Dims, y: ArrayLike<number>, z: ArrayLike<number>, w: ArrayLike<number>, T: number, eps: number): Float64Array {
  const n = d.dInner / d.nGroups;
  const { t: out, scale } = gatedScaled(d, y, z, T, eps);
  for (let i = 0; i < out.length; i++) {
    const c = i % d.dInner;
    out[i] = out[i]! * scale[Math.floor(i / d.dInner) * d.nGroups + Math.floor(c / n)]! * w[c]!;
  }
  return out;
}

export interface Mamba2MixerWeights extends Mamba2SsmParams {
  /** h [T, dModel] -> zxbcdt [T, mamba2InProjDim] (Bi-Mamba: an FBI-linear). */
  inProj(h: Float64Array, T: number): Float64Array;
  /** y' [T, dInner] -> [T, dModel]. */
  outProj(y: Float64Array, T: number): Float64Array;
  /** [convDim, dConv] */
  convWeight: ArrayLike<number>;
  /** [convDim] */
  convBias: ArrayLike<number>;
  /** [dInner] */
  normWeight: ArrayLike<number>;
  normEps: number;
}

/**
 * The mixer over T rows of one sequence, continuing from `state` (advanced): in_proj, conv, SSM (recurrent,
 * or chunked with `chunk`), gated norm, out_proj. Returns [T, dModel].
 */
export function refMamba2Mixer(d: Mamba2Dims, w: Mamba2MixerWeights, h: Float64Array, T: number, state: Mamba2State, chunk?: number): Float64Array {
  checkMamba2Dims(d);
  const F = mamba2InProjDim(d);
  const Cd = mamba2ConvDim(d);
  const G = d.nGroups * d.dState;
  const zxbcdt = w.inProj(h, T);
  if (zxbcdt.length !== T * F) throw new RangeError(`mamba2: in_proj gave ${zxbcdt.length} values for ${T} rows of ${F}`);
  const z = new Float64Array(T * d.dInner);
  const xBC = new Float64Array(T * Cd);
  const dt = new Float64Array(T * d.nHeads);
  for (let t = 0; t < T; t++) {
    z.set(zxbcdt.subarray(t * F, t * F + d.dInner), t * d.dInner);
    xBC.set(zxbcdt.subarray(t * F + d.dInner, t * F + d.dInner + Cd), t * Cd);
    dt.set(zxbcdt.subarray(t * F + d.dInner + Cd, (t + 1) * F), t * d.nHeads);
  }
  const conv = refMamba2Conv(d, xBC, T, w.convWeight, w.convBias, state.conv);
  const x = new Float64Array(T * d.dInner);
  const B = new Float64Array(T * G);
  const C = new Float64Array(T * G);
  for (let t = 0; t < T; t++) {
    x.set(conv.subarray(t * Cd, t * Cd + d.dInner), t * d.dInner);
    B.set(conv.subarray(t * Cd + d.dInner, t * Cd + d.dInner + G), t * G);
    C.set(conv.subarray(t * Cd + d.dInner + G, (t + 1) * Cd), t * G);
  }
  const y = chunk === undefined ? refSsdRecurrent(d, x, B, C, dt, T, w, state.ssm) : refSsdChunked(d, x, B, C, dt, T, w, state.ssm, chunk);
  return w.outProj(refGatedRmsNorm(d, y, z, w.normWeight, T, w.normEps), T);
}

// ---------------------------------------------------------------------------------------------------------------
// Error bounds of the float32 native kernels (native/kernels/mamba2.h states and derives them): per element, what
// |native - reference| may be. u = 2^-24. The functions below read their inputs (and states) without advancing them,
// except the SSD bound state, which carries the magnitude M and error E of every state element across calls.

const U = 2 ** -24;
const SUB = 2 ** -149;
const TINY = 2 ** -120;

/** Bound of the native conv (mamba2_conv) against refMamba2Conv for the same inputs; `conv` is read, not advanced. */
export function mamba2ConvBound(d: Mamba2Dims, xBC: ArrayLike<number>, T: number, weight: ArrayLike<number>, bias: ArrayLike<number>,
  conv: ArrayLike<number>): Float64Array {
  const C = mamba2ConvDim(d);
  const K = d.dConv;
  const bound = new Float64Array(T * C);
  const h = (r: number, c: number) => (r < K - 1 ? conv[r * C + c]! : xBC[(r - (K - 1)) * C + c]!);
  for (let t = 0; t < T; t++)
    for (let c = 0; c < C; c++) {
      let s = bias[c]!;
      let S = Math.abs(bias[c]!);
      for (let k = 0; k < K; k++) {
        const v = weight[c * K + k]! * h(t + k, c);
        s += v;
        S += Math.abs(v);
      }
      bound[t * C + c] = 1.1 * (K + 2) * U * S + 8 * U * Math.abs(silu(s)) + 1e-36 * S + SUB;
    }
  return bound;
}

/** What the SSD bounds carry per state element [nHeads, headDim, dState]: a magnitude M and an error bound E. */
export interface SsdBoundState {
  M: Float64Array;
  E: Float64Array;
}

/** The bound state for native and reference runs that start from the same state values (E = 0). */
export function ssdBoundState(ssm: ArrayLike<number>): SsdBoundState {
  return { M: Float64Array.from(ssm, Math.abs), E: new Float64Array(ssm.length) };
}

function ssdStep(dt: number, dtBias: number, ALog: number): [number, number] {
  const dth = softplus(dt + dtBias);
  return [dth, Math.exp(-Math.exp(ALog) * dth)];
}

/**
 * Bound of the native recurrence (ssd_recurrent) against refSsdRecurrent over T rows: y [T, dInner] per element, and
 * the state's bound after the call ([nHeads, headDim, dState], = bs.E). Advances bs.
 */
export function ssdRecurrentBound(d: Mamba2Dims, x: ArrayLike<number>, B: ArrayLike<number>, C: ArrayLike<number>, dt: ArrayLike<number>,
  T: number, p: Mamba2SsmParams, bs: SsdBoundState): { y: Float64Array; state: Float64Array } {
  const P = checkMamba2Dims(d);
  const N = d.dState;
  const G = d.nGroups * N;
  const perGroup = d.nHeads / d.nGroups;
  const y = new Float64Array(T * d.dInner);
  for (let t = 0; t < T; t++)
    for (let h = 0; h < d.nHeads; h++) {
      const g = Math.floor(h / perGroup);
      const [dth, dA] = ssdStep(dt[t * d.nHeads + h]!, p.dtBias[h]!, p.ALog[h]!);
      for (let i = 0; i < P; i++) {
        const xi = x[t * d.dInner + h * P + i]!;
        const st = (h * P + i) * N;
        let acc = 0;
        for (let n = 0; n < N; n++) {
          const M = dA * bs.M[st + n]! + Math.abs(dth * xi * B[t * G + g * N + n]!);
          const E = dA * (1 + 3 * U) * bs.E[st + n]! + 5 * U * M + 2 ** -140;
          bs.M[st + n] = M;
          bs.E[st + n] = E;
          acc += Math.abs(C[t * G + g * N + n]!) * (E + (N + 2) * U * (M + E));
        }
        y[t * d.dInner + h * P + i] = acc + 3 * U * Math.abs(p.D[h]! * xi) + 2 ** -140;
      }
    }
  return { y, state: bs.E.slice() };
}

/**
 * Bound of the native chunked scan (ssd_chunked, chunks of `chunk` rows from the first row of the call) against
 * refSsdChunked / refSsdRecurrent: y [T, dInner] per element and the state's bound after the call. Advances bs.
 */
export function ssdChunkedBound(d: Mamba2Dims, x: ArrayLike<number>, B: ArrayLike<number>, C: ArrayLike<number>, dt: ArrayLike<number>,
  T: number, p: Mamba2SsmParams, bs: SsdBoundState, chunk: number): { y: Float64Array; state: Float64Array } {
  const P = checkMamba2Dims(d);
  const N = d.dState;
  const G = d.nGroups * N;
  const perGroup = d.nHeads / d.nGroups;
  const y = new Float64Array(T * d.dInner);
  for (let h = 0; h < d.nHeads; h++) {
    const g = Math.floor(h / perGroup);
    for (let t0 = 0; t0 < T; t0 += chunk) {
      const L = Math.min(chunk, T - t0);
      const c = (N + 3 * L + 8) * U;
      const dth = new Float64Array(L);
      const dA = new Float64Array(L);
      for (let l = 0; l < L; l++) [dth[l], dA[l]] = ssdStep(dt[(t0 + l) * d.nHeads + h]!, p.dtBias[h]!, p.ALog[h]!);
      const pf = new Float64Array(L);
      const dk = new Float64Array(L * L); // dk[t L + s] = dA[s+1] .. dA[t]
      for (let s = 0; s < L; s++) {
        let v = 1;
        for (let t = s; t < L; t++) {
          if (t > s) v *= dA[t]!;
          dk[t * L + s] = v;
        }
        pf[s] = (s > 0 ? pf[s - 1]! : 1) * dA[s]!;
      }
      const absCB = new Float64Array(L * L);
      for (let t = 0; t < L; t++)
        for (let s = 0; s <= t; s++) {
          let v = 0;
          for (let n = 0; n < N; n++) v += Math.abs(C[(t0 + t) * G + g * N + n]! * B[(t0 + s) * G + g * N + n]!);
          absCB[t * L + s] = v;
        }
      for (let i = 0; i < P; i++) {
        const st = (h * P + i) * N;
        const xa = (l: number) => Math.abs(x[(t0 + l) * d.dInner + h * P + i]!);
        for (let t = 0; t < L; t++) {
          let diag = 0;
          let diagZ = 0;
          let dx = 0;
          for (let s = 0; s <= t; s++) {
            const v = dth[s]! * xa(s) * absCB[t * L + s]!;
            diag += dk[t * L + s]! * v;
            diagZ += v;
            dx += dth[s]! * xa(s);
          }
          let offME = 0;
          let offE = 0;
          for (let n = 0; n < N; n++) {
            const ca = Math.abs(C[(t0 + t) * G + g * N + n]!);
            offME += ca * (bs.M[st + n]! + bs.E[st + n]!);
            offE += ca * bs.E[st + n]!;
          }
          y[(t0 + t) * d.dInner + h * P + i] = c * (diag + pf[t]! * offME) + pf[t]! * offE + 3 * U * Math.abs(p.D[h]!) * xa(t) +
            TINY * L * (diagZ + offME) + 2 ** -130 * L * (1 + dx) + SUB;
        }
        const pL = pf[L - 1]!;
        let dx = 0;
        for (let s = 0; s < L; s++) dx += dth[s]! * xa(s);
        for (let n = 0; n < N; n++) {
          let inMag = 0;
          let inZ = 0;
          for (let s = 0; s < L; s++) {
            const v = dth[s]! * xa(s) * Math.abs(B[(t0 + s) * G + g * N + n]!);
            inMag += dk[(L - 1) * L + s]! * v;
            inZ += v;
          }
          const M0 = bs.M[st + n]!;
          const E0 = bs.E[st + n]!;
          const M = pL * M0 + inMag;
          bs.M[st + n] = M;
          bs.E[st + n] = pL * E0 + (3 * L + 8) * U * (M + pL * E0) + TINY * L * (M0 + E0 + inZ) + 2 ** -130 * L * (1 + dx);
        }
      }
    }
  }
  return { y, state: bs.E.slice() };
}

/** Bound of the native gated RMSNorm (gated_rmsnorm) against refGatedRmsNorm. */
export function gatedRmsNormBound(d: Mamba2Dims, y: ArrayLike<number>, z: ArrayLike<number>, w: ArrayLike<number>, T: number, eps: number): Float64Array {
  const n = d.dInner / d.nGroups;
  const { t, scale } = gatedScaled(d, y, z, T, eps);
  const bound = new Float64Array(T * d.dInner);
  for (let i = 0; i < bound.length; i++) {
    const c = i % d.dInner;
    const s = scale[Math.floor(i / d.dInner) * d.nGroups + Math.floor(c / n)]!;
    const out = t[i]! * s * w[c]!;
    bound[i] = 24 * U * Math.abs(out) + (1e-36 * Math.abs(y[i]! * z[i]!) + SUB) * s * Math.abs(w[c]!) + SUB;
  }
  return bound;
}
