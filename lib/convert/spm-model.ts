// Reads a SentencePiece model file (the ModelProto protobuf written by sentencepiece's trainer, also
// the `tokenizer.model` of LLaMA-family checkpoints) and turns it into GGUF `llama` tokenizer keys.
// Fields used (sentencepiece_model.proto):
//   ModelProto      1 pieces (repeated SentencePiece), 2 trainer_spec, 3 normalizer_spec
//   SentencePiece   1 piece (string), 2 score (float), 3 type (enum, default NORMAL = 1)
//   TrainerSpec     3 model_type (1 unigram, 2 bpe, 3 word, 4 char), 4 vocab_size, 35 byte_fallback,
//                   40 unk_id, 41 bos_id, 42 eos_id, 43 pad_id
//   NormalizerSpec  1 name, 3 add_dummy_prefix (default true), 4 remove_extra_whitespaces (default true),
//                   5 escape_whitespaces (default true)
// The piece types are numbered as GGUF's tokenizer.ggml.token_type (1 normal, 2 unknown, 3 control,
// 4 user-defined, 5 unused, 6 byte).
import { readFileSync } from 'node:fs';

import { ModelFormatError } from '../errors.js';
import { type GgufWriter } from '../format/gguf.js';

export interface SpmPiece {
  piece: string;
  score: number;
  type: number;
}

export interface SpmModelFile {
  pieces: SpmPiece[];
  modelType: number; // 1 unigram, 2 bpe
  vocabSize: number | undefined;
  byteFallback: boolean;
  unkId: number;
  bosId: number;
  eosId: number;
  padId: number;
  normalizer: { name: string; addDummyPrefix: boolean; removeExtraWhitespaces: boolean; escapeWhitespaces: boolean };
}

/** Minimal protobuf wire-format reader (varint, fixed32/64, length-delimited). */
class Wire {
  pos = 0;
  constructor(readonly b: Uint8Array, readonly end = b.byteLength, readonly source = '<buffer>') {}
  fail(msg: string): never {
    throw new ModelFormatError(`${this.source}: not a SentencePiece model (${msg} at byte ${this.pos})`);
  }
  varint(): number {
    let v = 0;
    let mul = 1;
    for (let i = 0; i < 10; i++) {
      if (this.pos >= this.end) this.fail('truncated varint');
      const c = this.b[this.pos++]!;
      v += (c & 0x7f) * mul;
      if ((c & 0x80) === 0) return v;
      mul *= 128;
    }
    return this.fail('varint longer than 10 bytes');
  }
  /** Next field as [number, wire type], or undefined at the end. */
  tag(): [number, number] | undefined {
    if (this.pos >= this.end) return undefined;
    const t = this.varint();
    return [Math.floor(t / 8), t % 8];
  }
  bytes(): Uint8Array {
    const n = this.varint();
    if (this.pos + n > this.end) this.fail('length-delimited field past the end');
    const out = this.b.subarray(this.pos, this.pos + n);
    this.pos += n;
    return out;
  }
  float(): number {
    if (this.pos + 4 > this.end) this.fail('truncated fixed32');
    const v = new DataView(this.b.buffer, this.b.byteOffset + this.pos, 4).getFloat32(0, true);
    this.pos += 4;
    return v;
  }
  skip(wt: number): void {
    if (wt === 0) this.varint();
    else if (wt === 1) this.pos += 8;
    else if (wt === 2) this.bytes();
    else if (wt === 5) this.pos += 4;
    else this.fail(`wire type ${wt}`);
    if (this.pos > this.end) this.fail('field past the end');
  }
  /** A signed int32 field: a varint whose low 32 bits are two's complement (negative values take 10 bytes). */
  int32(): number {
    let v = 0n;
    for (let i = 0, shift = 0n; i < 10; i++, shift += 7n) {
      if (this.pos >= this.end) this.fail('truncated varint');
      const c = this.b[this.pos++]!;
      v |= BigInt(c & 0x7f) << shift;
      if ((c & 0x80) === 0) return Number(BigInt.asIntN(32, v));
    }
    return this.fail('varint longer than 10 bytes');
  }
}

const utf8 = new TextDecoder('utf-8', { fatal: true });

export function parseSpmModel(bytes: Uint8Array, source = '<buffer>'): SpmModelFile {
  const top = new Wire(bytes, bytes.byteLength, source);
  const model: SpmModelFile = {
    pieces: [], modelType: 1, vocabSize: undefined, byteFallback: false, unkId: 0, bosId: 1, eosId: 2, padId: -1,
    normalizer: { name: '', addDummyPrefix: true, removeExtraWhitespaces: true, escapeWhitespaces: true },
  };
  for (let t = top.tag(); t; t = top.tag()) {
    const [field, wt] = t;
    if (wt !== 2 || (field !== 1 && field !== 2 && field !== 3)) { top.skip(wt); continue; }
    const body = top.bytes();
    const w = new Wire(body, body.byteLength, source);
    if (field === 1) {
      const p: SpmPiece = { piece: '', score: 0, type: 1 };
      for (let f = w.tag(); f; f = w.tag()) {
        if (f[0] === 1 && f[1] === 2) p.piece = utf8.decode(w.bytes());
        else if (f[0] === 2 && f[1] === 5) p.score = w.float();
        else if (f[0] === 3 && f[1] === 0) p.type = w.varint();
        else w.skip(f[1]);
      }
      model.pieces.push(p);
    } else if (field === 2) {
      for (let f = w.tag(); f; f = w.tag()) {
        const [n, ft] = f;
        if (ft !== 0) { w.skip(ft); continue; }
        const v = w.int32();
        if (n === 3) model.modelType = v;
        else if (n === 4) model.vocabSize = v;
        else if (n === 35) model.byteFallback = v !== 0;
        else if (n === 40) model.unkId = v;
        else if (n === 41) model.bosId = v;
        else if (n === 42) model.eosId = v;
        else if (n === 43) model.padId = v;
      }
    } else {
      for (let f = w.tag(); f; f = w.tag()) {
        const [n, ft] = f;
        if (n === 1 && ft === 2) model.normalizer.name = utf8.decode(w.bytes());
        else if (ft === 0 && n === 3) model.normalizer.addDummyPrefix = w.varint() !== 0;
        else if (ft === 0 && n === 4) model.normalizer.removeExtraWhitespaces = w.varint() !== 0;
        else if (ft === 0 && n === 5) model.normalizer.escapeWhitespaces = w.varint() !== 0;
        else w.skip(ft);
      }
    }
  }
  if (model.pieces.length === 0) top.fail('no pieces');
  return model;
}

export function readSpmModel(path: string): SpmModelFile {
  return parseSpmModel(new Uint8Array(readFileSync(path)), path);
}

/**
 * Writes the GGUF `llama` tokenizer section of a SentencePiece model. Only models llama.cpp's SPM tokenizer
 * reproduces exactly are accepted: BPE with identity normalization and no whitespace clean-up (an NFKC or
 * whitespace-collapsing normalizer would be silently skipped by a GGUF reader).
 */
export function writeSpmTokenizer(w: GgufWriter, m: SpmModelFile, source = 'tokenizer'): void {
  if (m.modelType !== 2) throw new ModelFormatError(`${source}: model_type ${m.modelType} is not BPE (2); llama.cpp's SPM tokenizer merges like BPE`);
  if (m.normalizer.name !== 'identity' || m.normalizer.removeExtraWhitespaces)
    throw new ModelFormatError(`${source}: normalizer '${m.normalizer.name}' (remove_extra_whitespaces ${m.normalizer.removeExtraWhitespaces}) is not identity without whitespace clean-up; GGUF cannot express it`);
  const n = m.pieces.length;
  w.string('tokenizer.ggml.model', 'llama');
  w.string('tokenizer.ggml.pre', 'default');
  w.stringArray('tokenizer.ggml.tokens', m.pieces.map((p) => p.piece));
  w.f32Array('tokenizer.ggml.scores', Float32Array.from(m.pieces, (p) => p.score));
  w.i32Array('tokenizer.ggml.token_type', Int32Array.from(m.pieces, (p) => p.type));
  const id = (v: number, what: string) => {
    if (!(v >= 0 && v < n)) throw new ModelFormatError(`${source}: ${what} id ${v} is outside the ${n} pieces`);
    return v;
  };
  w.u32('tokenizer.ggml.bos_token_id', id(m.bosId, 'bos'));
  w.u32('tokenizer.ggml.eos_token_id', id(m.eosId, 'eos'));
  w.u32('tokenizer.ggml.unknown_token_id', id(m.unkId, 'unk'));
  if (m.padId >= 0) w.u32('tokenizer.ggml.padding_token_id', id(m.padId, 'pad'));
  w.bool('tokenizer.ggml.add_bos_token', true);
  w.bool('tokenizer.ggml.add_eos_token', false);
  w.bool('tokenizer.ggml.add_space_prefix', m.normalizer.addDummyPrefix);
}
