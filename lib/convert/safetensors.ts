// safetensors (huggingface/safetensors): u64 little-endian header length N, N bytes of JSON
// {name: {dtype, shape, data_offsets: [begin, end]}, "__metadata__"?: {string: string}}, then the raw
// little-endian tensor bytes (offsets relative to the end of the header). Reader and writer.
import { closeSync, fstatSync, openSync, readFileSync, readSync, writeFileSync } from 'node:fs';

import { ModelFormatError } from '../errors.js';

export type SafetensorsDtype = 'F64' | 'F32' | 'F16' | 'BF16' | 'I64' | 'I32' | 'I16' | 'I8' | 'U8' | 'BOOL';

export const DTYPE_BYTES: Record<SafetensorsDtype, number> = { F64: 8, F32: 4, F16: 2, BF16: 2, I64: 8, I32: 4, I16: 2, I8: 1, U8: 1, BOOL: 1 };

export interface SafeTensor {
  name: string;
  dtype: SafetensorsDtype;
  /** Row-major, outermost first (PyTorch order: a Linear weight is [out, in]). */
  shape: number[];
  /** The tensor's bytes (a view into the file). */
  data: Uint8Array;
}

export interface SafetensorsFile {
  source: string;
  tensors: Map<string, SafeTensor>;
  metadata: Record<string, string>;
}

const MAX_HEADER = 100 << 20;

/** A tensor's place in a safetensors file: `dataStart + begin .. dataStart + end` (bytes). */
export interface SafetensorsEntry {
  name: string;
  dtype: SafetensorsDtype;
  shape: number[];
  /** Absolute byte offset of the tensor in the file, and its length. */
  offset: number;
  nbytes: number;
}

/**
 * Validates a safetensors header (the JSON after the u64 length) against the size of the data that follows;
 * `base` is the absolute offset of that data. Every offset and size is checked.
 */
export function parseSafetensorsHeader(json: Uint8Array, base: number, dataBytes: number, source: string): { entries: SafetensorsEntry[]; metadata: Record<string, string> } {
  const fail = (msg: string): never => { throw new ModelFormatError(`${source}: ${msg}`); };
  let header: Record<string, unknown>;
  try {
    header = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(json)) as Record<string, unknown>;
  } catch (err) {
    return fail(`header is not JSON: ${(err as Error).message}`);
  }
  if (header === null || typeof header !== 'object' || Array.isArray(header)) fail('header is not a JSON object');
  const entries: SafetensorsEntry[] = [];
  let metadata: Record<string, string> = {};
  for (const [name, raw] of Object.entries(header)) {
    if (name === '__metadata__') {
      if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) fail('__metadata__ is not an object');
      metadata = Object.fromEntries(Object.entries(raw as object).map(([k, v]) => [k, String(v)]));
      continue;
    }
    const e = raw as { dtype?: unknown; shape?: unknown; data_offsets?: unknown };
    const dtype = e?.dtype as SafetensorsDtype;
    if (typeof dtype !== 'string' || !Object.hasOwn(DTYPE_BYTES, dtype)) fail(`tensor '${name}': unsupported dtype ${JSON.stringify(e?.dtype)}`);
    const shape = e.shape;
    if (!Array.isArray(shape) || shape.some((d) => !Number.isSafeInteger(d) || (d as number) < 0)) fail(`tensor '${name}': bad shape ${JSON.stringify(shape)}`);
    const off = e.data_offsets;
    if (!Array.isArray(off) || off.length !== 2 || off.some((o) => !Number.isSafeInteger(o) || (o as number) < 0)) fail(`tensor '${name}': bad data_offsets`);
    const [b, end] = off as [number, number];
    const count = (shape as number[]).reduce((a, d) => a * d, 1);
    if (end < b || end > dataBytes) fail(`tensor '${name}': data_offsets [${b}, ${end}] outside the data (${dataBytes} bytes)`);
    if (end - b !== count * DTYPE_BYTES[dtype]) fail(`tensor '${name}': ${end - b} bytes for ${count} × ${dtype}`);
    entries.push({ name, dtype, shape: shape as number[], offset: base + b, nbytes: end - b });
  }
  return { entries, metadata };
}

/** Parses a safetensors buffer; every offset and size is checked against the buffer. */
export function parseSafetensors(bytes: Uint8Array, source = '<buffer>'): SafetensorsFile {
  const fail = (msg: string): never => { throw new ModelFormatError(`${source}: ${msg}`); };
  if (bytes.byteLength < 8) fail('too short for a safetensors header');
  const n = Number(new DataView(bytes.buffer, bytes.byteOffset, 8).getBigUint64(0, true));
  if (n > MAX_HEADER || 8 + n > bytes.byteLength) fail(`header length ${n} exceeds the file (${bytes.byteLength} bytes)`);
  const base = 8 + n;
  const { entries, metadata } = parseSafetensorsHeader(bytes.subarray(8, base), base, bytes.byteLength - base, source);
  const tensors = new Map<string, SafeTensor>();
  for (const e of entries) tensors.set(e.name, { name: e.name, dtype: e.dtype, shape: e.shape, data: bytes.subarray(e.offset, e.offset + e.nbytes) });
  return { source, tensors, metadata };
}

/** Reads only the header of a safetensors file (tensors are read later by offset: files may exceed 2 GiB). */
export function indexSafetensors(path: string): { entries: SafetensorsEntry[]; metadata: Record<string, string> } {
  const fd = openSync(path, 'r');
  try {
    const size = fstatSync(fd).size;
    const fail = (msg: string): never => { throw new ModelFormatError(`${path}: ${msg}`); };
    if (size < 8) fail('too short for a safetensors header');
    const head = Buffer.alloc(8);
    readSync(fd, head, 0, 8, 0);
    const n = Number(head.readBigUInt64LE(0));
    if (n > MAX_HEADER || 8 + n > size) fail(`header length ${n} exceeds the file (${size} bytes)`);
    const json = Buffer.alloc(n);
    if (readSync(fd, json, 0, n, 8) !== n) fail('short read of the header');
    return parseSafetensorsHeader(json, 8 + n, size - 8 - n, path);
  } finally {
    closeSync(fd);
  }
}

/** Bytes of a file at an absolute offset (a short read is a ModelFormatError naming the file). */
export function readFileRange(path: string, offset: number, nbytes: number): Uint8Array {
  const fd = openSync(path, 'r');
  try {
    const out = new Uint8Array(nbytes);
    let done = 0;
    while (done < nbytes) {
      const got = readSync(fd, out, done, Math.min(nbytes - done, 1 << 30), offset + done);
      if (got === 0) throw new ModelFormatError(`${path}: file ends before byte ${offset + nbytes}`);
      done += got;
    }
    return out;
  } finally {
    closeSync(fd);
  }
}

export function readSafetensors(path: string): SafetensorsFile {
  return parseSafetensors(new Uint8Array(readFileSync(path)), path);
}

/** Copies the tensor's bytes into an aligned typed array of its dtype (little-endian hosts). */
export function tensorValues(t: SafeTensor): Float32Array | Uint16Array | Int8Array | Uint8Array | Int32Array {
  const copy = t.data.slice();
  switch (t.dtype) {
    case 'F32': return new Float32Array(copy.buffer);
    case 'F16': case 'BF16': return new Uint16Array(copy.buffer);
    case 'I8': return new Int8Array(copy.buffer);
    case 'U8': case 'BOOL': return copy;
    case 'I32': return new Int32Array(copy.buffer);
    default: throw new ModelFormatError(`tensor '${t.name}': dtype ${t.dtype} has no typed view here`);
  }
}

export interface SafetensorsInput {
  name: string;
  dtype: SafetensorsDtype;
  shape: number[];
  data: ArrayBufferView;
}

/** Serializes tensors (in the given order) and string metadata. */
export function encodeSafetensors(tensors: SafetensorsInput[], metadata?: Record<string, string>): Uint8Array {
  const header: Record<string, unknown> = {};
  let off = 0;
  for (const t of tensors) {
    const n = t.data.byteLength;
    const want = t.shape.reduce((a, d) => a * d, 1) * DTYPE_BYTES[t.dtype];
    if (n !== want) throw new RangeError(`encodeSafetensors: '${t.name}' has ${n} bytes, shape needs ${want}`);
    header[t.name] = { dtype: t.dtype, shape: t.shape, data_offsets: [off, off + n] };
    off += n;
  }
  if (metadata) header['__metadata__'] = metadata;
  let json = JSON.stringify(header);
  json += ' '.repeat((8 - (new TextEncoder().encode(json).byteLength % 8)) % 8);
  const h = new TextEncoder().encode(json);
  const out = new Uint8Array(8 + h.byteLength + off);
  new DataView(out.buffer).setBigUint64(0, BigInt(h.byteLength), true);
  out.set(h, 8);
  let p = 8 + h.byteLength;
  for (const t of tensors) {
    out.set(new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength), p);
    p += t.data.byteLength;
  }
  return out;
}

export function writeSafetensors(path: string, tensors: SafetensorsInput[], metadata?: Record<string, string>): void {
  writeFileSync(path, encodeSafetensors(tensors, metadata));
}
