// A BiLLM-packed projection as GGUF tensors, with existing ggml type ids only (I8 = 24 for bit planes,
// F16 = 1 for the scalars; no new type id). For a projection with prefix p (e.g. 'blk.0.attn_q'),
// W [M, K], K % 128 == 0, nb = K/128, R = the residual stride (billmResidualLayout):
//   p.weight          I8  [K/8, M]      first sign plane (BillmMatrix.signs), row-major: ne0 = K/8 bytes of a row
//   p.billm_groups    I8  [K/8, M]      group plane (1 = sparse group B)
//   p.billm_salient   I8  [K/8]         salient column mask, shared by all rows
//   p.billm_residual  I8  [R, M]        second-order signs of the salient columns (absent when R = 0,
//                                       i.e. no block has a salient column: GGUF dims must be ≥ 1)
//   p.billm_scalars   F16 [8, nb, M]    (α1, α2, μ1, μ2, αA, μA, αB, μB) per row per block
// Bits are LSB first within each byte (BillmMatrix). A reader tells a BiLLM projection from a plain one
// by the presence of p.billm_salient; p.weight alone (I8) is not a loadable weight.
import { ModelFormatError } from '../errors.js';
import { GGML } from '../format/types.js';
import { type BillmMatrix, BILLM_BLOCK, BILLM_SCALARS, BillmPlaneError, validateBillmMatrix } from './billm.js';

export const GGML_I8 = 24;

/** One tensor as written to / read from a GGUF file (dims ne0 first). */
export interface BillmTensor {
  name: string;
  dims: number[];
  type: number;
  data: Uint8Array;
}

export const billmTensorNames = (prefix: string) => ({
  signs: `${prefix}.weight`,
  groups: `${prefix}.billm_groups`,
  salient: `${prefix}.billm_salient`,
  residual: `${prefix}.billm_residual`,
  scalars: `${prefix}.billm_scalars`,
});

const bytesOf = (a: Uint8Array | Uint16Array): Uint8Array => new Uint8Array(a.buffer, a.byteOffset, a.byteLength);

/** The GGUF tensors of one BiLLM projection (views of the matrix's planes, not copies). */
export function encodeBillmTensors(prefix: string, m: BillmMatrix): BillmTensor[] {
  const layout = validateBillmMatrix(m);
  const names = billmTensorNames(prefix);
  const nb = m.K / BILLM_BLOCK;
  const out: BillmTensor[] = [
    { name: names.signs, dims: [m.K / 8, m.M], type: GGML_I8, data: m.signs },
    { name: names.groups, dims: [m.K / 8, m.M], type: GGML_I8, data: m.groups },
    { name: names.salient, dims: [m.K / 8], type: GGML_I8, data: m.salient },
  ];
  if (layout.stride > 0) out.push({ name: names.residual, dims: [layout.stride, m.M], type: GGML_I8, data: m.residual });
  out.push({ name: names.scalars, dims: [BILLM_SCALARS, nb, m.M], type: GGML.F16, data: bytesOf(m.scalars) });
  return out;
}

/**
 * The BiLLM matrix of projection `prefix` from its tensors (`lookup` returns a tensor by name, e.g.
 * from a parsed GgufFile). Copies the data (so the result owns aligned planes) unless `copy` is false:
 * then the planes are views of the tensors' bytes (the scalars too when 2-byte aligned), for a caller
 * that only reads them while the tensors live (the loader packs them into BR16 at once). Throws
 * ModelFormatError naming the tensor when one is missing or has the wrong type or shape.
 */
export function decodeBillmTensors(prefix: string, lookup: (name: string) => BillmTensor | undefined, { copy = true } = {}): BillmMatrix {
  const names = billmTensorNames(prefix);
  const need = (name: string, type: number, typeName: string): BillmTensor => {
    const t = lookup(name);
    if (!t) throw new ModelFormatError(`BiLLM projection '${prefix}': tensor '${name}' is missing`);
    if (t.type !== type) throw new ModelFormatError(`BiLLM tensor '${name}': type ${t.type}, expected ${typeName} (${type})`);
    return t;
  };
  const shape = (t: BillmTensor, dims: number[]): void => {
    if (t.dims.length !== dims.length || t.dims.some((d, i) => d !== dims[i]))
      throw new ModelFormatError(`BiLLM tensor '${t.name}': dims [${t.dims.join(', ')}], expected [${dims.join(', ')}]`);
    const want = dims.reduce((a, b) => a * b, 1) * (t.type === GGML.F16 ? 2 : 1);
    if (t.data.length !== want) throw new ModelFormatError(`BiLLM tensor '${t.name}': ${t.data.length} bytes, expected ${want}`);
  };
  const signs = need(names.signs, GGML_I8, 'I8');
  if (signs.dims.length !== 2) throw new ModelFormatError(`BiLLM tensor '${signs.name}': ${signs.dims.length} dims, expected 2 ([K/8, M])`);
  const [rowBytes, M] = signs.dims as [number, number];
  const K = rowBytes * 8;
  if (K % BILLM_BLOCK !== 0) throw new ModelFormatError(`BiLLM tensor '${signs.name}': K = ${K} is not a multiple of ${BILLM_BLOCK}`);
  const nb = K / BILLM_BLOCK;
  shape(signs, [rowBytes, M]);
  const groups = need(names.groups, GGML_I8, 'I8');
  shape(groups, [rowBytes, M]);
  const salient = need(names.salient, GGML_I8, 'I8');
  shape(salient, [rowBytes]);
  const scalars = need(names.scalars, GGML.F16, 'F16');
  shape(scalars, [BILLM_SCALARS, nb, M]);
  const residualT = lookup(names.residual);
  let residual: Uint8Array = new Uint8Array(0);
  if (residualT) {
    if (residualT.type !== GGML_I8) throw new ModelFormatError(`BiLLM tensor '${residualT.name}': type ${residualT.type}, expected I8 (${GGML_I8})`);
    if (residualT.dims.length !== 2 || residualT.dims[1] !== M) throw new ModelFormatError(`BiLLM tensor '${residualT.name}': dims [${residualT.dims.join(', ')}], expected [R, ${M}]`);
    shape(residualT, [residualT.dims[0]!, M]);
    residual = copy ? residualT.data.slice() : residualT.data;
  }
  const nsc = M * nb * BILLM_SCALARS;
  let sc: Uint16Array;
  if (!copy && scalars.data.byteOffset % 2 === 0) sc = new Uint16Array(scalars.data.buffer, scalars.data.byteOffset, nsc);
  else bytesOf((sc = new Uint16Array(nsc))).set(scalars.data);
  const own = (a: Uint8Array): Uint8Array => (copy ? a.slice() : a);
  const m: BillmMatrix = { M, K, salient: own(salient.data), signs: own(signs.data), groups: own(groups.data), residual, scalars: sc };
  try {
    validateBillmMatrix(m);
  } catch (e) {
    if (e instanceof BillmPlaneError) throw new ModelFormatError(`BiLLM tensor '${names[e.plane]}': ${e.detail}`);
    throw new ModelFormatError(`BiLLM projection '${prefix}': ${(e as Error).message}`);
  }
  return m;
}
