// Q6_K / BF16 embeddings (bitnet.cpp --quant-embd): the dequantizers against an independent decode,
// the F16 fast path against floatToHalf, and whole models whose token_embd is re-encoded as Q6_K / BF16.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { KvCache } from '../lib/model/kv-cache.js';
import { Q6_K_BLOCK_BYTES, QK_K, dequantizeBF16, dequantizeQ6K, floatsToHalves, quantizeQ6K } from '../lib/format/dequant.js';
import { type GgufFile, GgufWriter, parseGguf, readGguf } from '../lib/format/gguf.js';
import { GGML } from '../lib/format/types.js';
import { KernelContext } from '../lib/kernels/context.js';
import { repackQ8 } from '../lib/kernels/dense.js';
import { TransformerModel } from '../lib/model/transformer.js';
import { configFromGguf } from '../lib/model/config.js';
import { synthesizeModel } from '../lib/model/synth.js';
import { type HeadMatrix, type LoadWeightsOptions, dequantHead, loadWeights } from '../lib/model/weights.js';
import { refRepackF16T } from '../lib/reference/dense.js';
import { floatToHalf, halfToFloat } from '../lib/reference/numeric.js';
import { ModelFormatError } from '../lib/errors.js';
import { expectSameBits, expectSameInts, randomNormal, rng } from './helpers.js';

const ctx = new KernelContext({ threads: 2 });

/** Element e of a Q6_K stream, decoded element by element (not the row loop of lib/format/dequant.ts). */
function naiveQ6K(src: Uint8Array, e: number): number {
  const o = Math.floor(e / QK_K) * Q6_K_BLOCK_BYTES;
  const r = e % QK_K;
  const n = r >> 7; // half
  const g = (r >> 5) & 3; // 32-element group inside the half
  const l = r & 31;
  const lowByte = src[o + 64 * n + l + 32 * (g & 1)]!;
  const low = g < 2 ? lowByte & 0xf : lowByte >> 4;
  const high = (src[o + 128 + 32 * n + l]! >> (2 * g)) & 3;
  const q = (low | (high << 4)) - 32;
  const scale = new Int8Array([src[o + 192 + (r >> 4)]!])[0]!;
  const d = halfToFloat(src[o + 208]! | (src[o + 209]! << 8));
  return Math.fround(Math.fround(d * scale) * q); // ggml's float order: (d * sc) * q
}

describe('dequantizeQ6K', () => {
  it('matches an element-by-element decode of random blocks bit for bit', () => {
    const r = rng(7);
    const nb = 64;
    const src = new Uint8Array(nb * Q6_K_BLOCK_BYTES);
    for (let i = 0; i < src.length; i++) src[i] = Math.floor(r() * 256);
    for (let b = 0; b < nb; b++) {
      const h = floatToHalf((r() < 0.5 ? -1 : 1) * (1e-4 + r() * 0.1));
      src[b * Q6_K_BLOCK_BYTES + 208] = h & 0xff;
      src[b * Q6_K_BLOCK_BYTES + 209] = h >> 8;
    }
    const y = dequantizeQ6K(src, nb * QK_K);
    const want = Float32Array.from({ length: nb * QK_K }, (_, e) => naiveQ6K(src, e));
    expectSameBits(y, want, 'q6_k');
  });

  it('round-trips quantizeQ6K within half a quantization step', () => {
    const r = rng(3);
    const n = 32 * QK_K;
    const x = randomNormal(r, n, 0.02);
    for (let i = 0; i < n; i += 16) if (r() < 0.2) for (let j = 0; j < 16; j++) x[i + j]! *= 1e-3; // small sub-blocks
    x.fill(0, 0, 16); // an all-zero sub-block
    const q = quantizeQ6K(x);
    expect(q.byteLength).toBe((n / QK_K) * Q6_K_BLOCK_BYTES);
    const y = dequantizeQ6K(q, n);
    let err2 = 0, sig2 = 0;
    for (let e = 0; e < n; e++) {
      const o = Math.floor(e / QK_K) * Q6_K_BLOCK_BYTES;
      const step = halfToFloat(q[o + 208]! | (q[o + 209]! << 8)) * q[o + 192 + ((e % QK_K) >> 4)]!;
      expect(Math.abs(y[e]! - x[e]!)).toBeLessThanOrEqual(step * 0.5 * (1 + 1e-6) + 1e-30);
      err2 += (y[e]! - x[e]!) ** 2;
      sig2 += x[e]! ** 2;
    }
    expect(Math.sqrt(err2 / sig2)).toBeLessThan(0.03);
    expectSameInts(y.subarray(0, 16), new Float32Array(16), 'zero sub-block');
  });

  it('rejects partial blocks and short sources', () => {
    expect(() => dequantizeQ6K(new Uint8Array(210), 100)).toThrow(RangeError);
    expect(() => dequantizeQ6K(new Uint8Array(209), 256)).toThrow(RangeError);
  });
});

describe('dequantizeBF16 / floatsToHalves', () => {
  it('BF16 is exact, from aligned and unaligned bytes', () => {
    const r = rng(11);
    const n = 4096;
    const bf = new Uint16Array(n);
    for (let i = 0; i < n; i++) bf[i] = Math.floor(r() * 65536);
    bf[0] = 0x7f80; bf[1] = 0xff80; bf[2] = 0x8000; bf[3] = 0x0001; // inf, -inf, -0, subnormal
    const want = new Float32Array(new Uint32Array(Array.from(bf, (h) => h << 16)).buffer);
    const bytes = new Uint8Array(bf.buffer);
    expectSameInts(new Uint32Array(dequantizeBF16(bytes, n).buffer), new Uint32Array(want.buffer), 'aligned');
    const odd = new Uint8Array(2 * n + 1);
    odd.set(bytes, 1);
    expectSameInts(new Uint32Array(dequantizeBF16(odd.subarray(1), n).buffer), new Uint32Array(want.buffer), 'unaligned');
  });

  it('floatsToHalves rounds like floatToHalf on every class of float', () => {
    const r = rng(5);
    const bits = new Uint32Array(200_000);
    for (let i = 0; i < bits.length; i++) bits[i] = Math.floor(r() * 2 ** 32) >>> 0;
    // Exponents near the half range, ties and the overflow edge.
    for (let i = 0; i < 100_000; i++) bits[i] = (bits[i]! & 0x807fffff) | ((100 + (i % 45)) << 23);
    bits.set([0, 0x80000000, 0x477fefff, 0x477ff000, 0x477ff001, 0x47800000, 0x38800000, 0x387fffff, 0x33000000, 0x33000001,
      0x7f800000, 0x7fc00000, 0x3f801000, 0x3f803000]);
    const f = new Float32Array(bits.buffer);
    const h = new Uint16Array(f.length);
    const bad = floatsToHalves(f, h);
    const want = Uint16Array.from(f, floatToHalf);
    expectSameInts(h, want, 'halves');
    expect(bad).toBe(Array.from(want).filter((v) => (v & 0x7c00) === 0x7c00).length);
  });
});

describe('dequantHead', () => {
  // M = 100 rows: chunks of 32 leave a partial last Q8R16 tile (100 % 16 = 4).
  const M = 100, K = 512;
  const x = randomNormal(rng(9), M * K, 0.05);
  const q6 = quantizeQ6K(x);
  const full = dequantizeQ6K(q6, M * K);

  it('chunked Q6_K → q8 equals one repack of the whole F32 matrix', () => {
    const want = repackQ8(ctx, 'f32', full, M, K).data;
    for (const chunk of [16, 32, 4096]) {
      const h = dequantHead(ctx, 'q6_k', q6, M, K, 'q8', 'w', chunk);
      expect(h.kind).toBe('q8');
      expectSameInts(h.m.data, want, `chunk ${chunk}`);
    }
  });

  it('chunked Q6_K / BF16 → f16 equals floatToHalf of the dequantized values', () => {
    const h = dequantHead(ctx, 'q6_k', q6, M, K, 'f16', 'w', 32);
    expectSameInts(h.m.data, Uint16Array.from(full, floatToHalf), 'q6_k f16');
    const bf = new Uint16Array(new Uint32Array(x.buffer).map((v) => v >>> 16));
    const hb = dequantHead(ctx, 'bf16', new Uint8Array(bf.buffer), M, K, 'f16', 'w', 48);
    expectSameInts(hb.m.data, Uint16Array.from(bf, (b) => floatToHalf(new Float32Array(new Uint32Array([b << 16]).buffer)[0]!)), 'bf16 f16');
  });

  it('chunked Q6_K → f16t (the head\'s F16T32 tiles) equals the tiles of the whole F16 matrix, for any chunk', () => {
    const want = refRepackF16T(Uint16Array.from(full, floatToHalf), M, K).w.data;
    for (const chunk of [16, 32, 48, 4096]) {
      const h = dequantHead(ctx, 'q6_k', q6, M, K, 'f16t', 'w', chunk);
      expect(h.kind).toBe('f16t');
      expectSameInts(h.m.data, want, `f16t chunk ${chunk}`);
    }
  });

  it('rejects BF16 values F16 cannot hold and short sources', () => {
    const bf = new Uint16Array(16 * 32).fill(0x4780); // 65536
    expect(() => dequantHead(ctx, 'bf16', new Uint8Array(bf.buffer), 16, 32, 'f16', 'big')).toThrow(/big: 512 values/);
    expect(dequantHead(ctx, 'bf16', new Uint8Array(bf.buffer), 16, 32, 'q8').kind).toBe('q8');
    expect(() => dequantHead(ctx, 'q6_k', q6.subarray(1), M, K, 'q8')).toThrow(/fewer than 100 rows/);
  });
});

describe('models with a Q6_K / BF16 token_embd', () => {
  const TOKENS = [1, 450, 4996, 17354, 1701, 432, 17204, 975];
  let dir = '';
  let base: GgufFile;
  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'bitllm-dequant-'));
    const out = join(dir, 'tiny.gguf');
    await synthesizeModel({ shape: 'tiny', type: 'i2_s', seed: 1, out });
    base = readGguf(out);
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  /** The same file with token_embd (tied lm_head) re-encoded by `encode` as GGML type `type`. */
  function withEmbedding(type: number, encode: (x: Float32Array) => Uint8Array): GgufFile {
    const w = new GgufWriter();
    for (const [k, e] of base.metadata) w.set(k, e.type, e.value, e.itemType);
    for (const t of base.tensors) {
      let data = base.bytes.subarray(t.offset, t.offset + t.nbytes);
      if (t.name === 'token_embd.weight') {
        expect(t.type).toBe(GGML.F16);
        const h = new Uint16Array(data.slice().buffer);
        data = encode(Float32Array.from(h, halfToFloat));
        w.addTensor(t.name, t.dims, type, data);
      } else w.addTensor(t.name, t.dims, t.type, data);
    }
    return parseGguf(w.toBytes(), `tiny-${type}.gguf`);
  }

  function run(f: GgufFile, opts: LoadWeightsOptions = {}): { y: Float32Array; head: HeadMatrix } {
    const cfg = configFromGguf(f);
    const weights = loadWeights(ctx, f, cfg, opts);
    const y = new TransformerModel(ctx, cfg, weights).forward(TOKENS, new KvCache(cfg.nLayer, cfg.nHeadKv, cfg.headDim, 16), true);
    return { y, head: weights.tokEmbd };
  }

  function cosine(a: Float32Array, b: Float32Array): number {
    let ab = 0, aa = 0, bb = 0;
    for (let i = 0; i < a.length; i++) { ab += a[i]! * b[i]!; aa += a[i]! ** 2; bb += b[i]! ** 2; }
    return ab / Math.sqrt(aa * bb);
  }

  const toBF16 = (x: Float32Array) => {
    // Round to nearest even on the 16 dropped bits (the values are finite).
    const u = new Uint32Array(x.buffer, x.byteOffset, x.length);
    const out = new Uint16Array(x.length);
    for (let i = 0; i < x.length; i++) out[i] = (u[i]! + 0x7fff + ((u[i]! >>> 16) & 1)) >>> 16;
    return new Uint8Array(out.buffer);
  };

  it('an F16 head holding Inf or NaN is a ModelFormatError naming the tensor (not garbage logits)', () => {
    const f = withEmbedding(GGML.F16, (x) => {
      const h = Uint16Array.from(x, floatToHalf);
      h[5] = 0x7c00; // +Inf
      h[h.length - 1] = 0x7e00; // NaN
      return new Uint8Array(h.buffer);
    });
    expect(() => run(f)).toThrow(ModelFormatError);
    expect(() => run(f)).toThrow(/token_embd\.weight: 2 F16 values are Inf or NaN/);
  });

  for (const [label, type, encode, minCos] of [
    ['BF16', GGML.BF16, toBF16, 0.999],
    ['Q6_K', GGML.Q6_K, quantizeQ6K, 0.99],
  ] as const)
    for (const headType of ['f16', 'q8'] as const)
      it(`${label} loads as ${headType} and its logits follow the F16 model (cosine >= ${minCos})`, () => {
        const ref = run(base).y;
        const f = withEmbedding(type, encode);
        expect(f.tensors.find((t) => t.name === 'token_embd.weight')!.typeName).toBe(label);
        const { y, head } = run(f, { headType });
        expect(head.kind, 'an F16 head runs as F16T32 tiles').toBe(headType === 'f16' ? 'f16t' : headType);
        expect(y.every(Number.isFinite)).toBe(true);
        expect(cosine(y, ref)).toBeGreaterThanOrEqual(minCos);
      });
});
