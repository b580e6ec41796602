// The architecture table: everything bitllm knows about a model family, as data. One row per
// `general.architecture`; the loader (weights.ts), the config reader (config.ts), the GGUF writer
// (lib/convert/export.ts), synth, inspect and the forward (TS and native) read it. Adding a family is a
// row here plus, at most, a new linear kind (docs/DESIGN.md §8 walks through one).
//
// A row names the block kind, how every projection is stored and run (its linear kind, the quantizer of
// its input, its sibling tensors), the norms, the FFN activation, the KV cache element type and the
// metadata keys. Block variations that real checkpoints of one family differ in (sub-norms present or
// not, ReLU² vs SiLU, tied vs untied head) are read from the file: sub-norm tensors are optional where
// the row says so, `<arch>.hidden_activation` overrides the row's default activation, and an
// `output.weight` tensor unties the head.
import { ModelFormatError } from '../errors.js';

/** The projections of an attention block, named as in GGUF (`blk.N.<name>.weight`). */
export const PROJECTIONS = ['attn_q', 'attn_k', 'attn_v', 'attn_output', 'ffn_gate', 'ffn_up', 'ffn_down'] as const;
export type Projection = (typeof PROJECTIONS)[number];

/**
 * How a projection's weights are stored and multiplied (docs/DESIGN.md §8):
 *   ternary     {−1, 0, +1} with tensor/row/block scales (b1.58, a4.8): T2R16 or TD3 in memory
 *   sign        ±1 with one scale (BitNet 1-bit: d = β): B1R16
 *   sign-col    ±1 with per-input-column α (scale) and β (shift) (FBI-LLM): y = (α ⊙ x)·Sᵀ + Σβx
 *   sign-gh-ln  ±1 with per-input g and per-output h, then a non-affine LayerNorm (OneBit)
 *   f16         dense half-precision weights (the FP16 teacher)
 *   billm       BiLLM's residual binarization (salient columns order 2, two groups order 1, 8 scalars per
 *               row per 128-column block), post-training (`bitllm quantize --method billm`)
 */
export type LinearKind = 'ternary' | 'sign' | 'sign-col' | 'sign-gh-ln' | 'f16' | 'billm';
export const LINEAR_KINDS: readonly LinearKind[] = ['ternary', 'sign', 'sign-col', 'sign-gh-ln', 'f16', 'billm'];

/**
 * The quantizer of a projection's input: per-token absmax int8, per-token absmean int4 (a4.8), top-k by
 * magnitude then int8 (a4.8's attention output), or none (float activations).
 */
export type ActQuant = 'i8' | 'i4' | 'topk-i8' | 'none';
export const ACT_QUANTS: readonly ActQuant[] = ['i8', 'i4', 'topk-i8', 'none'];

/** What a sibling tensor of a projection (`blk.N.<proj>.<suffix>`) means to its linear. */
export type SiblingRole = 'colScale' | 'colBias' | 'rowScale';

export interface SiblingSpec {
  /** Tensor name suffix after `blk.N.<proj>.`. */
  readonly suffix: string;
  readonly role: SiblingRole;
  /** Length: the projection's input (K) or output (M) size. */
  readonly length: 'K' | 'M';
}

export interface LinearKindSpec {
  readonly kind: LinearKind;
  /** GGML type names accepted for `<proj>.weight`. */
  readonly weightTypes: readonly string[];
  /** Sibling tensors every projection of this kind carries. */
  readonly siblings: readonly SiblingSpec[];
  /** Input quantizers the kernels of this kind can run ('none' = float activations). */
  readonly quants: readonly ActQuant[];
  /** Whether the linear ends in OneBit's non-affine LayerNorm over its M outputs. */
  readonly layerNorm: boolean;
  /** Projections sharing an input (q|k|v, gate|up) with the same quantizer fuse into one matrix. */
  readonly fusible: boolean;
}

/** The linear kinds: storage, siblings and what their kernels accept. */
export const LINEAR_KIND_SPECS: Readonly<Record<LinearKind, LinearKindSpec>> = {
  ternary: { kind: 'ternary', weightTypes: ['I2_S', 'TQ2_0', 'TQ1_0', 'F32'], siblings: [], quants: ['i8', 'i4', 'topk-i8'], layerNorm: false, fusible: true },
  sign: { kind: 'sign', weightTypes: ['Q1_0'], siblings: [], quants: ['i8'], layerNorm: false, fusible: true },
  'sign-col': {
    kind: 'sign-col', weightTypes: ['Q1_0'], quants: ['none', 'i8'], layerNorm: false, fusible: false,
    siblings: [{ suffix: 'alpha', role: 'colScale', length: 'K' }, { suffix: 'beta', role: 'colBias', length: 'K' }],
  },
  'sign-gh-ln': {
    kind: 'sign-gh-ln', weightTypes: ['Q1_0'], quants: ['none', 'i8'], layerNorm: true, fusible: false,
    siblings: [{ suffix: 'in_scale', role: 'colScale', length: 'K' }, { suffix: 'out_scale', role: 'rowScale', length: 'M' }],
  },
  f16: { kind: 'f16', weightTypes: ['F16', 'BF16', 'F32'], siblings: [], quants: ['none'], layerNorm: false, fusible: true },
  // `.weight` is the first sign plane; its other planes are lib/quantize/billm-gguf.ts's tensors (read as one unit).
  billm: { kind: 'billm', weightTypes: ['I8'], siblings: [], quants: ['i8'], layerNorm: false, fusible: false },
};

export interface LinearSpec {
  readonly kind: LinearKind;
  /** The quantizer the family was trained with for this input. */
  readonly act: ActQuant;
  /**
   * The input is mostly zeros (a4.8: top-k, ReLU²): ternary weights load column-sparse (TS256), so decode
   * reads only the columns of non-zero activations.
   */
  readonly sparseInput?: boolean;
}

export type BlockKind = 'attention' | 'mamba2';
export type FfnActivation = 'relu2' | 'silu';
/** KV cache element types: IEEE half, Q8_0-like int8 blocks, a4.8's 3-bit blocks. */
export type KvType = 'f16' | 'q8' | 'q3';

/** Survey families; one or more architecture rows each. */
export type Family = 'b158' | 'bitnet' | 'fbi' | 'onebit' | 'a48' | 'fp16' | 'billm';

export interface ArchRow {
  readonly arch: string;
  readonly family: Family;
  readonly title: string;
  readonly block: 'attention';
  readonly linears: Readonly<Record<Projection, LinearSpec>>;
  /** FFN activation when the file has no `<arch>.hidden_activation`. */
  readonly activation: FfnActivation;
  /** `attn_sub_norm` / `ffn_sub_norm` (SubLN): required, or used when present (LLaMA blocks have none). */
  readonly subNorms: 'required' | 'optional';
  /** KV cache type the family was trained with ('f16' = the user's choice, default f16). */
  readonly kv: 'f16' | 'q3';
  /** Positional encoding: NEOX-style RoPE for every row so far. */
  readonly rope: 'neox';
  /** Keys under `<arch>.` beyond the common ones (hparams.ts reads them). */
  readonly extraKeys: readonly string[];
}

const all = (kind: LinearKind, act: ActQuant): Record<Projection, LinearSpec> =>
  Object.fromEntries(PROJECTIONS.map((p) => [p, { kind, act }])) as Record<Projection, LinearSpec>;

/**
 * The rows. The b1.58 rows keep their historical names: `bitnet` is llama.cpp's (SiLU unless the file says
 * relu2; sub-norms optional), `bitnet-b1.58` / `bitnet-25` are bitnet.cpp's (ReLU²).
 */
export const ARCHITECTURES: readonly ArchRow[] = [
  { arch: 'bitnet', family: 'b158', title: 'BitNet b1.58', block: 'attention', linears: all('ternary', 'i8'), activation: 'silu',
    subNorms: 'optional', kv: 'f16', rope: 'neox', extraKeys: [] },
  { arch: 'bitnet-b1.58', family: 'b158', title: 'BitNet b1.58', block: 'attention', linears: all('ternary', 'i8'), activation: 'relu2',
    subNorms: 'optional', kv: 'f16', rope: 'neox', extraKeys: [] },
  { arch: 'bitnet-25', family: 'b158', title: 'BitNet b1.58', block: 'attention', linears: all('ternary', 'i8'), activation: 'relu2',
    subNorms: 'optional', kv: 'f16', rope: 'neox', extraKeys: [] },
  { arch: 'bitnet-a4.8', family: 'a48', title: 'BitNet a4.8', block: 'attention', activation: 'relu2', subNorms: 'required', kv: 'q3', rope: 'neox',
    linears: {
      ...all('ternary', 'i4'),
      // TS256 pays at high sparsity only (measured: 0.61x TD3's time at 80 % zeros, none at 50 %): the
      // top-50 % attention output input stays dense, the ReLU² down input goes column-sparse.
      attn_output: { kind: 'ternary', act: 'topk-i8' },
      ffn_down: { kind: 'ternary', act: 'i8', sparseInput: true },
    },
    extraKeys: ['attn_output.topk_ratio', 'kv_bits'] },
  { arch: 'bitnet-1bit', family: 'bitnet', title: 'BitNet (1-bit)', block: 'attention', linears: all('sign', 'i8'), activation: 'relu2',
    subNorms: 'optional', kv: 'f16', rope: 'neox', extraKeys: [] },
  { arch: 'fbi-llm', family: 'fbi', title: 'FBI-LLM', block: 'attention', linears: all('sign-col', 'none'), activation: 'silu',
    subNorms: 'optional', kv: 'f16', rope: 'neox', extraKeys: [] },
  { arch: 'onebit', family: 'onebit', title: 'OneBit', block: 'attention', linears: all('sign-gh-ln', 'none'), activation: 'silu',
    subNorms: 'optional', kv: 'f16', rope: 'neox', extraKeys: ['linear_norm_epsilon'] },
  { arch: 'bitnet-f16', family: 'fp16', title: 'FP16 teacher', block: 'attention', linears: all('f16', 'none'), activation: 'relu2',
    subNorms: 'optional', kv: 'f16', rope: 'neox', extraKeys: [] },
  // A dense model of the b1.58 / LLaMA block after BiLLM post-training binarization (`bitllm quantize`).
  { arch: 'billm', family: 'billm', title: 'BiLLM (PTQ)', block: 'attention', linears: all('billm', 'i8'), activation: 'relu2',
    subNorms: 'optional', kv: 'f16', rope: 'neox', extraKeys: [] },
];

const BY_ARCH = new Map(ARCHITECTURES.map((r) => [r.arch, r]));

/** The projections of a Mamba-2 block (`blk.N.<name>.weight`): in_proj → z | xBC | dt, out_proj. */
export const SSM_PROJECTIONS = ['ssm_in', 'ssm_out'] as const;
export type SsmProjection = (typeof SSM_PROJECTIONS)[number];

/**
 * A row of the Mamba-2 block kind (DESIGN.md §8.4): RMSNorm → mixer (in_proj, causal depthwise conv + SiLU,
 * the SSD scan, gated RMSNorm over `ngroups` groups, out_proj) → residual, no attention and no KV cache: a
 * sequence's state is its conv rows and SSM state per layer, constant in its length. Its linears are
 * `sign-col` (Bi-Mamba's FBI-linear: ±1 with per-input α, β) or `f16` (the full-precision Mamba-2 teacher,
 * llama.cpp's `mamba2`); metadata under `<arch>.ssm.*` with llama.cpp's key names.
 */
export interface SsmArchRow {
  readonly arch: string;
  readonly family: 'bimamba' | 'mamba2' | 'hybrid';
  readonly title: string;
  readonly block: 'mamba2';
  readonly linears: Readonly<Record<SsmProjection, LinearSpec>>;
  /**
   * A hybrid: `<arch>.attention.head_count_kv` is a per-layer array (llama.cpp's Jamba convention), 0 for a
   * Mamba-2 layer and the KV head count for an attention layer (GQA, NEOX RoPE, f16 KV cache, no MLP), whose
   * projections `attn_q/k/v/output` are of the same linear kind as the Mamba-2 ones.
   */
  readonly hybrid?: boolean;
}

export const SSM_ARCHITECTURES: readonly SsmArchRow[] = [
  { arch: 'bi-mamba', family: 'bimamba', title: 'Bi-Mamba', block: 'mamba2',
    linears: { ssm_in: { kind: 'sign-col', act: 'none' }, ssm_out: { kind: 'sign-col', act: 'none' } } },
  { arch: 'mamba2', family: 'mamba2', title: 'Mamba-2 (FP teacher)', block: 'mamba2',
    linears: { ssm_in: { kind: 'f16', act: 'none' }, ssm_out: { kind: 'f16', act: 'none' } } },
  // Beyond the survey: binarized attention layers between Bi-Mamba layers, set per layer by the file.
  { arch: 'bi-mamba-hybrid', family: 'hybrid', title: 'Bi-Mamba hybrid (attention + Mamba-2)', block: 'mamba2', hybrid: true,
    linears: { ssm_in: { kind: 'sign-col', act: 'none' }, ssm_out: { kind: 'sign-col', act: 'none' } } },
];

const SSM_BY_ARCH = new Map(SSM_ARCHITECTURES.map((r) => [r.arch, r]));

/** The Mamba-2 row of `arch`, or undefined when `arch` is not of the Mamba-2 block kind. */
export function ssmArchRow(arch: string): SsmArchRow | undefined {
  return SSM_BY_ARCH.get(arch);
}

/** The block kind of an architecture (undefined: not in the table). */
export function blockKindOf(arch: string): 'attention' | 'mamba2' | undefined {
  return BY_ARCH.has(arch) ? 'attention' : SSM_BY_ARCH.has(arch) ? 'mamba2' : undefined;
}

/**
 * Architectures whose files bitllm reads and checks but whose blocks the engine does not run yet: what a user
 * loading one is told instead of "not supported". (Empty today; Bi-Mamba left it when its block kind landed.)
 */
export const RECOGNIZED_NOT_RUNNABLE: Readonly<Record<string, string>> = {};

/** The row of `arch`, or a ModelFormatError naming the file and listing what is supported. */
export function archRow(arch: string, source = 'model'): ArchRow {
  const row = BY_ARCH.get(arch);
  if (!row && RECOGNIZED_NOT_RUNNABLE[arch]) throw new ModelFormatError(`${source}: ${RECOGNIZED_NOT_RUNNABLE[arch]}`);
  if (!row && SSM_BY_ARCH.has(arch))
    throw new ModelFormatError(`${source}: architecture '${arch}' is of the Mamba-2 block kind, not an attention block (read it with mamba2ConfigFromGguf)`);
  if (!row) throw new ModelFormatError(`${source}: architecture '${arch}' is not supported (supported: ${[...ARCHITECTURES, ...SSM_ARCHITECTURES].map((r) => r.arch).join(', ')})`);
  return row;
}

export const ARCH_NAMES: readonly string[] = ARCHITECTURES.map((r) => r.arch);

/** GGUF tensor names (llama.cpp's per-architecture tensor table, shared by every attention row). */
export const TENSORS = {
  tokEmbd: 'token_embd.weight',
  output: 'output.weight',
  outputNorm: 'output_norm.weight',
  attnNorm: (l: number) => `blk.${l}.attn_norm.weight`,
  attnSubNorm: (l: number) => `blk.${l}.attn_sub_norm.weight`,
  ffnNorm: (l: number) => `blk.${l}.ffn_norm.weight`,
  ffnSubNorm: (l: number) => `blk.${l}.ffn_sub_norm.weight`,
  weight: (l: number, p: Projection) => `blk.${l}.${p}.weight`,
  /** llama.cpp's separate per-tensor scale of a ternary projection (optional). */
  scale: (l: number, p: Projection) => `blk.${l}.${p}.scale`,
  sibling: (l: number, p: Projection, suffix: string) => `blk.${l}.${p}.${suffix}`,
} as const;

/** Output and input sizes of a projection. */
export function projectionShape(p: Projection, d: number, dkv: number, ff: number): { M: number; K: number } {
  switch (p) {
    case 'attn_q': case 'attn_output': return { M: d, K: d };
    case 'attn_k': case 'attn_v': return { M: dkv, K: d };
    case 'ffn_gate': case 'ffn_up': return { M: ff, K: d };
    case 'ffn_down': return { M: d, K: ff };
  }
}
