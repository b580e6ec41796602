// Bi-Mamba's GGUF layout (lib/model/mamba2.ts): a synthetic file read back and checked, the float64 reference
// forward (prefill then decode = one prefill; chunked = recurrent; constant state), and every malformed file a
// ModelFormatError naming the tensor or key.
import { describe, expect, it } from 'vitest';

import { KernelContext } from '../lib/kernels/context.js';
import { Mamba2Exec } from '../lib/model/mamba2-exec.js';
import { ModelFormatError } from '../lib/errors.js';
import { GgufWriter, parseGguf } from '../lib/format/gguf.js';
import {
  loadMamba2Weights, mamba2ConfigFromGguf, mamba2ModelState, mamba2ReferenceForward, synthMamba2Gguf,
} from '../lib/model/mamba2.js';

const OPTS = { dModel: 128, nLayer: 2, dInner: 256, dState: 16, nHeads: 4, nGroups: 2, nVocab: 64, seed: 7 };

function load(bytes: Uint8Array) {
  const file = parseGguf(bytes, 'synthetic.gguf');
  const cfg = mamba2ConfigFromGguf(file);
  return { file, cfg, w: loadMamba2Weights(file, cfg) };
}

/** The synthetic file rewritten with one tensor or key changed (everything else copied byte for byte). */
function mutate(edit: { tensor?: string; dims?: number[]; data?: (b: Uint8Array) => Uint8Array; key?: string; value?: number }): Uint8Array {
  const src = parseGguf(synthMamba2Gguf(OPTS), 'synthetic.gguf');
  const w = new GgufWriter();
  for (const [k, e] of src.metadata) {
    if (k === edit.key) w.u32(k, edit.value!);
    else w.set(k, e.type, e.value, e.itemType);
  }
  for (const t of src.tensors) {
    let data = src.bytes.slice(t.offset, t.offset + t.nbytes);
    if (t.name === edit.tensor && edit.data) data = edit.data(data);
    w.addTensor(t.name, t.name === edit.tensor && edit.dims ? edit.dims : t.dims, t.type, data);
  }
  return w.toBytes();
}

describe('Bi-Mamba GGUF and reference forward', () => {
  it('a synthetic file reads back with its hyperparameters and tensors', () => {
    const { cfg, w } = load(synthMamba2Gguf(OPTS));
    expect(cfg).toMatchObject({ arch: 'bi-mamba', dModel: 128, nLayer: 2, dInner: 256, dState: 16, nHeads: 4, nGroups: 2, dConv: 4, nVocab: 64 });
    expect(w.layers).toHaveLength(2);
    expect(w.layers[0]!.inProj.M).toBe(2 * 256 + 2 * 2 * 16 + 4);
    expect(w.layers[0]!.ALog.every((v) => v >= 0 && v <= Math.log(16) + 1e-6)).toBe(true);
  });

  it('prefill then decode gives the logits of one prefill; the chunked SSM gives the recurrent one; the state does not grow', () => {
    const { cfg, w } = load(synthMamba2Gguf(OPTS));
    const tokens = Array.from({ length: 12 }, (_, i) => (i * 7 + 3) % cfg.nVocab);
    const whole = mamba2ReferenceForward(cfg, w, tokens, mamba2ModelState(cfg));
    const st = mamba2ModelState(cfg);
    const sizes = st.map((s) => s.ssm.length + s.conv.length);
    const pre = mamba2ReferenceForward(cfg, w, tokens.slice(0, 9), st, 4);
    const rows = [...pre];
    for (const tok of tokens.slice(9)) rows.push(...mamba2ReferenceForward(cfg, w, [tok], st));
    expect(st.map((s) => s.ssm.length + s.conv.length)).toEqual(sizes);
    let err = 0;
    let scale = 0;
    rows.forEach((v, i) => {
      err = Math.max(err, Math.abs(v - whole[i]!));
      scale = Math.max(scale, Math.abs(whole[i]!));
    });
    expect(err / scale).toBeLessThan(1e-12);
    expect(whole.every(Number.isFinite)).toBe(true);
    // The logits depend on the history: the same last token after different prefixes differs.
    const a = mamba2ReferenceForward(cfg, w, [1, 2, 3, 9], mamba2ModelState(cfg)).slice(3 * cfg.nVocab);
    const b = mamba2ReferenceForward(cfg, w, [5, 4, 3, 9], mamba2ModelState(cfg)).slice(3 * cfg.nVocab);
    expect(a.some((v, i) => Math.abs(v - b[i]!) > 1e-6)).toBe(true);
  });

  it('malformed files are ModelFormatErrors naming the tensor or key', () => {
    const cases: Array<[Parameters<typeof mutate>[0], RegExp]> = [
      // a state size that does not match the tensors
      [{ key: 'bi-mamba.ssm.state_size', value: 32 }, /tensor 'blk\.0\.ssm_conv1d\.weight' has shape \[4, 320\], expected \[4, 384\]/],
      // a head count that does not match
      [{ key: 'bi-mamba.ssm.time_step_rank', value: 8 }, /tensor 'blk\.0\.ssm_a' has shape \[1, 4\], expected \[1, 8\]/],
      [{ key: 'bi-mamba.ssm.time_step_rank', value: 3 }, /dInner 256 is not a multiple of nHeads 3/],
      [{ key: 'bi-mamba.ssm.group_count', value: 3 }, /nHeads 4 is not a multiple of nGroups 3/],
      // a conv kernel of the wrong shape
      [{ tensor: 'blk.1.ssm_conv1d.weight', dims: [8, 160], data: (b) => b.subarray(0, 8 * 160 * 4) }, /tensor 'blk\.1\.ssm_conv1d\.weight' has shape \[8, 160\], expected \[4, 320\]/],
      // NaN in A (A = -exp(A_log))
      [{ tensor: 'blk.1.ssm_a', data: (b) => { const c = b.slice(); new DataView(c.buffer).setFloat32(4, Number.NaN, true); return c; } }, /tensor 'blk\.1\.ssm_a' has a non-finite value \(NaN\) at element 1/],
      // a positive A: the state would grow without bound
      [{ tensor: 'blk.0.ssm_a', data: (b) => { const c = b.slice(); new DataView(c.buffer).setFloat32(0, 0.5, true); return c; } }, /tensor 'blk\.0\.ssm_a' \(A = -exp\(A_log\)\) has 0\.5 at head 0: it must be negative/],
      [{ tensor: 'blk.0.ssm_d', dims: [1, 5], data: (b) => new Uint8Array([...b, 0, 0, 0, 0]) }, /tensor 'blk\.0\.ssm_d' has shape \[1, 5\], expected \[1, 4\]/],
    ];
    for (const [edit, message] of cases) {
      const bytes = mutate(edit);
      let err: unknown;
      try {
        load(bytes);
      } catch (e) {
        err = e;
      }
      expect(err, JSON.stringify({ ...edit, data: undefined })).toBeInstanceOf(ModelFormatError);
      expect((err as Error).message).toMatch(message);
    }
  });

  it('the native op-by-op forward (every ISA) matches the float64 reference; chunked prefill + decode = one prefill', () => {
    const bytes = synthMamba2Gguf(OPTS);
    const { file, cfg, w } = load(bytes);
    const tokens = Array.from({ length: 40 }, (_, i) => (i * 11 + 5) % cfg.nVocab);
    const want = mamba2ReferenceForward(cfg, w, tokens, mamba2ModelState(cfg));
    let scale = 0;
    for (const v of want) scale = Math.max(scale, Math.abs(v));
    for (const isa of ['scalar', 'avx2', 'avx512'] as const) {
      let ctx: KernelContext;
      try {
        ctx = new KernelContext({ threads: 2, isa });
      } catch {
        continue; // this CPU lacks the ISA
      }
      const exec = new Mamba2Exec(ctx, cfg, file);
      const all = exec.forward(tokens, exec.newState(), { allLogits: true });
      let err = 0;
      all.forEach((v, i) => (err = Math.max(err, Math.abs(v - want[i]!))));
      expect(err / scale, isa).toBeLessThan(1e-4);
      // Chunked prefill of 33 rows, then 7 decode steps: the same last logits as the recurrence over all 40.
      const st = exec.newState();
      exec.forward(tokens.slice(0, 33), st, { chunk: 16 });
      let last = new Float32Array(0);
      for (const t of tokens.slice(33)) last = exec.forward([t], st);
      expect(st.length).toBe(40);
      const rec = exec.forward(tokens, exec.newState(), { chunk: 0 });
      let e2 = 0;
      last.forEach((v, i) => (e2 = Math.max(e2, Math.abs(v - rec[i]!))));
      expect(e2 / scale, isa).toBeLessThan(1e-4);
      expect(exec.stateBytes()).toBe(cfg.nLayer * 4 * (3 * (256 + 2 * 2 * 16) + 256 * 16));
    }
  });
});
