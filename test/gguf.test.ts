import { closeSync, ftruncateSync, mkdtempSync, openSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { describe, expect, it } from 'vitest';

import { ModelFormatError } from '../lib/errors.js';
import { GgufMetadata, GgufType, GgufWriter, parseGguf, readGguf } from '../lib/format/gguf.js';
import { GGML } from '../lib/format/types.js';
import { goldenPath, rng, vocabPath } from './helpers.js';

function smallFile(): Uint8Array {
  const w = new GgufWriter();
  w.string('general.architecture', 'bitnet-b1.58').u32('bitnet-b1.58.block_count', 1).f32('x.eps', 1e-5);
  w.bool('flag', true).stringArray('tokenizer.ggml.tokens', ['a', 'b', 'ü']).f32Array('scores', Float32Array.of(1, 2, 3));
  w.set('big', GgufType.UINT64, 2 ** 40).set('neg', GgufType.INT64, -5);
  w.addTensor('norm', [64], GGML.F32, new Uint8Array(256).fill(1));
  w.addTensor('w', [128, 4], GGML.I2_S, new Uint8Array((128 * 4) / 4 + 32).fill(0x55));
  w.addTensor('e', [256, 2], GGML.TQ2_0, new Uint8Array(2 * 66).fill(0x55));
  return w.toBytes();
}

describe('GGUF reader', () => {
  it('refuses a file over 4 GiB with an error naming it, instead of aborting the process', () => {
    // A sparse file: no disk space is used. V8 cannot view more than 2^32 bytes as one typed array.
    const dir = mkdtempSync(join(tmpdir(), 'bitllm-big-'));
    const path = join(dir, 'huge.gguf');
    const fd = openSync(path, 'w');
    ftruncateSync(fd, 2 ** 32 + 4096);
    closeSync(fd);
    try {
      expect(() => readGguf(path)).toThrow(ModelFormatError);
      expect(() => readGguf(path)).toThrow(/huge\.gguf: the file is 4294971392 bytes; bitllm maps model files of up to 4 GiB/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('reads the golden bitnet.cpp I2_S model: metadata, 46 tensors with I2_S sizes', () => {
    const f = readGguf(goldenPath('small-b158-i2s-s11.gguf'));
    const md = new GgufMetadata(f);
    expect(f.version).toBe(3);
    expect(md.string('general.architecture')).toBe('bitnet-b1.58');
    expect(md.number('bitnet-b1.58.embedding_length')).toBe(512);
    expect(f.tensors).toHaveLength(46);
    const q = f.tensors.find((t) => t.name === 'blk.0.attn_q.weight')!;
    expect(q.typeName).toBe('I2_S');
    expect(q.nbytes).toBe((512 * 512) / 4 + 32);
    expect(md.strings('tokenizer.ggml.tokens')).toHaveLength(4096);
  });

  it('reads vocab-only files (no tensors)', () => {
    const f = readGguf(vocabPath('ggml-vocab-llama-bpe.gguf'));
    expect(f.tensors).toHaveLength(0);
    expect(new GgufMetadata(f).strings('tokenizer.ggml.merges')).toHaveLength(280147);
  });

  it('round-trips what the writer wrote, with aligned tensor data', () => {
    const f = parseGguf(smallFile(), 'mem.gguf');
    const md = new GgufMetadata(f);
    expect(md.string('general.architecture')).toBe('bitnet-b1.58');
    expect(md.number('bitnet-b1.58.block_count')).toBe(1);
    expect(md.number('x.eps')).toBe(Math.fround(1e-5));
    expect(md.bool('flag', false)).toBe(true);
    expect(md.strings('tokenizer.ggml.tokens')).toEqual(['a', 'b', 'ü']);
    expect(Array.from(md.array('scores') as Float32Array)).toEqual([1, 2, 3]);
    expect(md.number('big')).toBe(2 ** 40);
    expect(md.number('neg')).toBe(-5);
    for (const t of f.tensors) expect(t.offset % 32).toBe(0);
    const w = f.tensors.find((t) => t.name === 'w')!;
    expect(f.bytes[w.offset]).toBe(0x55);
    expect(f.bytes[w.offset + w.nbytes - 32]).toBe(0x55);
  });

  it('maps files instead of reading them', () => {
    const dir = mkdtempSync(join(tmpdir(), 'bitllm-gguf-'));
    const path = join(dir, 'm.gguf');
    writeFileSync(path, smallFile());
    const f = readGguf(path);
    expect(f.source).toBe(path);
    expect(f.tensors.map((t) => t.name)).toEqual(['norm', 'w', 'e']);
    expect(() => readGguf(join(dir, 'missing.gguf'))).toThrow(/missing\.gguf: No such file/);
  });

  it('a file truncated at any of 20 random points is a ModelFormatError, never a crash or hang', () => {
    const full = readGguf(goldenPath('small-b158-i2s-s11.gguf')).bytes;
    const r = rng(5);
    const cuts = [0, 3, 4, 8, 23, 24, ...Array.from({ length: 20 }, () => Math.floor(r() * (full.byteLength - 1)))];
    for (const cut of cuts) {
      const part = full.slice(0, cut);
      expect(() => parseGguf(part, 'cut.gguf'), `cut at ${cut}`).toThrow(ModelFormatError);
    }
  });

  it('names the problem for corrupted headers, counts, dims, types and offsets', () => {
    const base = smallFile();
    const view = (b: Uint8Array) => new DataView(b.buffer, b.byteOffset, b.byteLength);
    const mutate = (fn: (b: Uint8Array, v: DataView) => void) => {
      const b = base.slice();
      fn(b, view(b));
      return () => parseGguf(b, 'bad.gguf');
    };
    expect(mutate((b) => (b[0] = 0x00))).toThrow(/bad\.gguf: not a GGUF file/);
    expect(mutate((_b, v) => v.setUint32(4, 7, true))).toThrow(/unsupported GGUF version 7/);
    expect(mutate((_b, v) => v.setBigUint64(16, 1n << 40n, true))).toThrow(/metadata count .* more than the file can hold/);
    expect(mutate((_b, v) => v.setBigUint64(8, 1n << 60n, true))).toThrow(/impossibly large|more than the file can hold/);
    // The first key's length field.
    expect(mutate((_b, v) => v.setBigUint64(24, 1n << 50n, true))).toThrow(/length .* exceeds|impossibly large/);
    // Find the tensor table by name and corrupt fields after it.
    const f = parseGguf(base);
    const enc = new TextEncoder();
    const find = (s: string) => {
      const needle = enc.encode(s);
      outer: for (let i = 0; i < base.length - needle.length; i++) {
        for (let j = 0; j < needle.length; j++) if (base[i + j] !== needle[j]) continue outer;
        return i + needle.length;
      }
      throw new Error(s);
    };
    const afterW = find('\x01\x00\x00\x00\x00\x00\x00\x00w'); // name 'w' (length 1)
    expect(mutate((_b, v) => v.setUint32(afterW, 9, true))).toThrow(/tensor 'w': n_dims = 9/);
    expect(mutate((_b, v) => v.setBigUint64(afterW + 4, 0n, true))).toThrow(/tensor 'w': dim 0 = 0/);
    expect(mutate((_b, v) => v.setUint32(afterW + 20, 77, true))).toThrow(/tensor 'w': unknown ggml type id 77/);
    expect(mutate((_b, v) => v.setUint32(afterW + 20, GGML.TL2, true))).toThrow(/tensor 'w': type TL2 .* convert the model to I2_S/);
    expect(mutate((_b, v) => v.setBigUint64(afterW + 24, 3n, true))).toThrow(/tensor 'w': offset 3 is not a multiple/);
    expect(mutate((_b, v) => v.setBigUint64(afterW + 24, BigInt(Math.ceil(base.length / 32) * 32), true))).toThrow(/tensor 'w' .* runs past the end of the file/);
    expect(f.tensors).toHaveLength(3);
  });

  it('interprets type ids 36-39 by architecture (bitnet.cpp fork vs upstream)', () => {
    const upstream = new GgufWriter().string('general.architecture', 'bitnet');
    upstream.addTensor('w', [128, 4], 36, new Uint8Array(160));
    expect(() => parseGguf(upstream.toBytes(), 'up.gguf')).toThrow(/type id 36 is bitnet\.cpp's I2_S only under architecture bitnet-b1\.58/);
    const mx = new GgufWriter().string('general.architecture', 'llama');
    mx.addTensor('w', [32, 1], 39, new Uint8Array(17));
    expect(parseGguf(mx.toBytes()).tensors[0]!.typeName).toBe('MXFP4');
  });

  it('rejects absurd metadata arrays without allocating them', () => {
    const w = new GgufWriter().stringArray('a', ['x']);
    const b = w.toBytes();
    const v = new DataView(b.buffer);
    // header(24) + key len(8) + 'a'(1) + type(4) + item type(4) → count at 41
    v.setBigUint64(41, 3_000_000_000n, true);
    expect(() => parseGguf(b, 'huge.gguf')).toThrow(/metadata 'a': array claims 3000000000 items/);
  });
});
