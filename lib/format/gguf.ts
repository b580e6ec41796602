// GGUF v2/v3 reader (over a read-only mmap through the addon) and writer.
// Every count, offset and size is validated against the file length before use; errors are
// ModelFormatError naming the file and the field.
import { closeSync, openSync, writeSync } from 'node:fs';

import { ModelFormatError } from '../errors.js';
import { binding } from '../native.js';
import { tensorBytes, typeName } from './types.js';

export enum GgufType {
  UINT8 = 0, INT8 = 1, UINT16 = 2, INT16 = 3, UINT32 = 4, INT32 = 5, FLOAT32 = 6, BOOL = 7, STRING = 8,
  ARRAY = 9, UINT64 = 10, INT64 = 11, FLOAT64 = 12,
}

export type GgufScalar = number | bigint | boolean | string;
export type GgufArray =
  | Uint8Array | Int8Array | Uint16Array | Int16Array | Uint32Array | Int32Array | Float32Array | Float64Array
  | BigUint64Array | BigInt64Array | boolean[] | string[] | GgufArray[];
export type GgufValue = GgufScalar | GgufArray;

export interface GgufEntry {
  type: GgufType;
  /** Element type of arrays. */
  itemType?: GgufType;
  value: GgufValue;
}

export interface GgufTensorInfo {
  name: string;
  /** ne0 first (ne0 = contiguous row length). */
  dims: number[];
  type: number;
  typeName: string;
  /** Absolute byte offset in the file. */
  offset: number;
  nbytes: number;
}

export interface GgufFile {
  source: string;
  version: number;
  alignment: number;
  metadata: Map<string, GgufEntry>;
  tensors: GgufTensorInfo[];
  /** Absolute offset of the tensor data section. */
  dataOffset: number;
  /** The whole file (mapped). */
  bytes: Uint8Array;
}

const MAGIC = 0x46554747; // "GGUF" little-endian
const MAX_STRING = 1 << 26; // 64 MiB: no legitimate key or value is longer
const MAX_DIMS = 4;
const textDecoder = new TextDecoder('utf-8', { fatal: false });

const SCALAR_SIZE: Partial<Record<GgufType, number>> = {
  [GgufType.UINT8]: 1, [GgufType.INT8]: 1, [GgufType.UINT16]: 2, [GgufType.INT16]: 2, [GgufType.UINT32]: 4,
  [GgufType.INT32]: 4, [GgufType.FLOAT32]: 4, [GgufType.BOOL]: 1, [GgufType.UINT64]: 8, [GgufType.INT64]: 8,
  [GgufType.FLOAT64]: 8,
};

class Cursor {
  pos = 0;
  private readonly view: DataView;
  constructor(readonly bytes: Uint8Array, readonly source: string) {
    this.view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  }
  fail(what: string): never {
    throw new ModelFormatError(`${this.source}: ${what} (at byte ${this.pos})`);
  }
  need(n: number, what: string): void {
    if (n < 0 || this.pos + n > this.bytes.byteLength)
      this.fail(`truncated: ${what} needs ${n} bytes, ${this.bytes.byteLength - this.pos} left`);
  }
  u8(what: string): number { this.need(1, what); return this.view.getUint8(this.pos++); }
  u32(what: string): number { this.need(4, what); const v = this.view.getUint32(this.pos, true); this.pos += 4; return v; }
  /** u64 as a number; values past 2^53 are an error (no count or offset can be that large). */
  u64(what: string): number {
    this.need(8, what);
    const v = this.view.getBigUint64(this.pos, true);
    this.pos += 8;
    if (v > BigInt(Number.MAX_SAFE_INTEGER)) this.fail(`${what} = ${v} is impossibly large`);
    return Number(v);
  }
  string(what: string): string {
    const n = this.u64(`${what} length`);
    if (n > MAX_STRING) this.fail(`${what} length ${n} exceeds ${MAX_STRING}`);
    this.need(n, what);
    const s = textDecoder.decode(this.bytes.subarray(this.pos, this.pos + n));
    this.pos += n;
    return s;
  }
  scalar(type: GgufType, what: string): GgufScalar {
    const size = SCALAR_SIZE[type];
    if (size === undefined) {
      if (type === GgufType.STRING) return this.string(what);
      this.fail(`${what}: unknown metadata value type ${type}`);
    }
    this.need(size, what);
    const p = this.pos;
    this.pos += size;
    const v = this.view;
    switch (type) {
      case GgufType.UINT8: return v.getUint8(p);
      case GgufType.INT8: return v.getInt8(p);
      case GgufType.UINT16: return v.getUint16(p, true);
      case GgufType.INT16: return v.getInt16(p, true);
      case GgufType.UINT32: return v.getUint32(p, true);
      case GgufType.INT32: return v.getInt32(p, true);
      case GgufType.FLOAT32: return v.getFloat32(p, true);
      case GgufType.BOOL: {
        const b = v.getUint8(p);
        if (b > 1) this.fail(`${what}: bool value ${b}`);
        return b === 1;
      }
      case GgufType.UINT64: { const x = v.getBigUint64(p, true); return x <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(x) : x; }
      case GgufType.INT64: { const x = v.getBigInt64(p, true); return x <= BigInt(Number.MAX_SAFE_INTEGER) && x >= -BigInt(Number.MAX_SAFE_INTEGER) ? Number(x) : x; }
      default: return v.getFloat64(p, true);
    }
  }
  array(what: string, depth: number): { itemType: GgufType; value: GgufArray } {
    const itemType = this.u32(`${what} item type`) as GgufType;
    const n = this.u64(`${what} count`);
    // Every element takes at least one byte (strings at least 8): a count beyond the bytes left is a lie.
    const minSize = itemType === GgufType.STRING ? 8 : itemType === GgufType.ARRAY ? 12 : SCALAR_SIZE[itemType];
    if (minSize === undefined) this.fail(`${what}: unknown array item type ${itemType}`);
    if (n * minSize > this.bytes.byteLength - this.pos) this.fail(`${what}: array claims ${n} items, more than the file can hold`);
    const size = SCALAR_SIZE[itemType];
    if (size !== undefined && itemType !== GgufType.BOOL) {
      const start = this.bytes.byteOffset + this.pos;
      const raw = this.bytes.buffer.slice(start, start + n * size); // copy: aligned and independent of the mapping
      this.pos += n * size;
      switch (itemType) {
        case GgufType.UINT8: return { itemType, value: new Uint8Array(raw) };
        case GgufType.INT8: return { itemType, value: new Int8Array(raw) };
        case GgufType.UINT16: return { itemType, value: new Uint16Array(raw) };
        case GgufType.INT16: return { itemType, value: new Int16Array(raw) };
        case GgufType.UINT32: return { itemType, value: new Uint32Array(raw) };
        case GgufType.INT32: return { itemType, value: new Int32Array(raw) };
        case GgufType.FLOAT32: return { itemType, value: new Float32Array(raw) };
        case GgufType.UINT64: return { itemType, value: new BigUint64Array(raw) };
        case GgufType.INT64: return { itemType, value: new BigInt64Array(raw) };
        default: return { itemType, value: new Float64Array(raw) };
      }
    }
    if (itemType === GgufType.BOOL) {
      const out: boolean[] = [];
      for (let i = 0; i < n; i++) out.push(this.scalar(GgufType.BOOL, `${what}[${i}]`) as boolean);
      return { itemType, value: out };
    }
    if (itemType === GgufType.STRING) {
      // Hot for tokenizer vocabularies (hundreds of thousands of strings): no per-item labels or BigInts.
      const out: string[] = new Array<string>(n);
      const end = this.bytes.byteLength;
      for (let i = 0; i < n; i++) {
        if (this.pos + 8 > end) this.fail(`truncated: ${what}[${i}] length`);
        const lo = this.view.getUint32(this.pos, true);
        const hi = this.view.getUint32(this.pos + 4, true);
        this.pos += 8;
        if (hi !== 0 || lo > MAX_STRING) this.fail(`${what}[${i}] length exceeds ${MAX_STRING}`);
        if (this.pos + lo > end) this.fail(`truncated: ${what}[${i}] needs ${lo} bytes, ${end - this.pos} left`);
        out[i] = textDecoder.decode(this.bytes.subarray(this.pos, this.pos + lo));
        this.pos += lo;
      }
      return { itemType, value: out };
    }
    if (depth > 2) this.fail(`${what}: arrays nested too deeply`);
    const out: GgufArray[] = [];
    for (let i = 0; i < n; i++) out.push(this.array(`${what}[${i}]`, depth + 1).value);
    return { itemType, value: out };
  }
}

/** Parses GGUF bytes (a mapped file or a buffer). `source` names the file in errors. */
export function parseGguf(bytes: Uint8Array, source = '<buffer>'): GgufFile {
  const c = new Cursor(bytes, source);
  if (bytes.byteLength < 4 || c.u32('magic') !== MAGIC) throw new ModelFormatError(`${source}: not a GGUF file (bad magic)`);
  const version = c.u32('version');
  if (version !== 2 && version !== 3) c.fail(`unsupported GGUF version ${version} (2 and 3 are supported)`);
  const nTensors = c.u64('tensor count');
  const nKv = c.u64('metadata count');
  if (nKv * 13 > bytes.byteLength) c.fail(`metadata count ${nKv} is more than the file can hold`);
  if (nTensors * 28 > bytes.byteLength) c.fail(`tensor count ${nTensors} is more than the file can hold`);
  const metadata = new Map<string, GgufEntry>();
  for (let i = 0; i < nKv; i++) {
    const key = c.string(`metadata key #${i}`);
    const type = c.u32(`metadata '${key}' type`) as GgufType;
    if (type === GgufType.ARRAY) {
      const { itemType, value } = c.array(`metadata '${key}'`, 0);
      metadata.set(key, { type, itemType, value });
    } else {
      metadata.set(key, { type, value: c.scalar(type, `metadata '${key}'`) });
    }
  }
  const alignEntry = metadata.get('general.alignment');
  let alignment = 32;
  if (alignEntry !== undefined) {
    const a = alignEntry.value;
    if (typeof a !== 'number' || !Number.isInteger(a) || a < 1 || a > 1 << 16 || (a & (a - 1)) !== 0)
      c.fail(`general.alignment = ${String(a)} is not a power of two in [1, 65536]`);
    alignment = a as number;
  }
  const archEntry = metadata.get('general.architecture');
  const arch = typeof archEntry?.value === 'string' ? archEntry.value : undefined;
  const infos: Array<Omit<GgufTensorInfo, 'offset'> & { rel: number }> = [];
  const names = new Set<string>();
  for (let i = 0; i < nTensors; i++) {
    const name = c.string(`tensor #${i} name`);
    if (names.has(name)) c.fail(`duplicate tensor name '${name}'`);
    names.add(name);
    const nd = c.u32(`tensor '${name}' n_dims`);
    if (nd < 1 || nd > MAX_DIMS) c.fail(`tensor '${name}': n_dims = ${nd} is outside [1, ${MAX_DIMS}]`);
    const dims: number[] = [];
    for (let d = 0; d < nd; d++) {
      const v = c.u64(`tensor '${name}' dim ${d}`);
      if (v < 1 || v > 2 ** 40) c.fail(`tensor '${name}': dim ${d} = ${v} is out of range`);
      dims.push(v);
    }
    if (dims.reduce((a, b) => a * b, 1) > 2 ** 45) c.fail(`tensor '${name}': ${dims.join('x')} elements is out of range`);
    const type = c.u32(`tensor '${name}' type`);
    const rel = c.u64(`tensor '${name}' offset`);
    const size = tensorBytes(dims, type, arch);
    if (typeof size === 'string') throw new ModelFormatError(`${source}: tensor '${name}': ${size}`);
    if (rel % alignment !== 0) c.fail(`tensor '${name}': offset ${rel} is not a multiple of the alignment ${alignment}`);
    infos.push({ name, dims, type, typeName: typeName(type, arch), nbytes: size, rel });
  }
  const dataOffset = Math.ceil(c.pos / alignment) * alignment;
  const tensors = infos.map(({ rel, ...t }) => {
    const offset = dataOffset + rel;
    if (offset + t.nbytes > bytes.byteLength)
      throw new ModelFormatError(`${source}: tensor '${t.name}' (${t.typeName} ${t.dims.join('x')}, ${t.nbytes} bytes at ${offset}) runs past the end of the file (${bytes.byteLength} bytes): truncated file?`);
    return { ...t, offset };
  });
  return { source, version, alignment, metadata, tensors, dataOffset, bytes };
}

/** Maps and parses a GGUF file; nothing but metadata arrays is copied into the JS heap. */
export function readGguf(path: string): GgufFile {
  // Outside the try: an addon that does not load is a NativeError (what to install), not a format error.
  const mapFile = binding<(p: string) => ArrayBuffer>('mapFile');
  let buf: ArrayBuffer;
  try {
    buf = mapFile(path);
  } catch (err) {
    throw new ModelFormatError(`${(err as Error).message}`, { cause: err });
  }
  return parseGguf(new Uint8Array(buf), path);
}

/** Typed metadata accessors with errors naming the key. */
export class GgufMetadata {
  constructor(readonly file: GgufFile) {}
  has(key: string): boolean { return this.file.metadata.has(key); }
  private get(key: string, required: boolean): GgufEntry | undefined {
    const e = this.file.metadata.get(key);
    if (!e && required) throw new ModelFormatError(`${this.file.source}: missing metadata key '${key}'`);
    return e;
  }
  string(key: string): string;
  string(key: string, fallback: string | undefined): string | undefined;
  string(key: string, fallback?: string): string | undefined {
    const e = this.get(key, arguments.length < 2);
    if (!e) return fallback;
    if (typeof e.value !== 'string') throw new ModelFormatError(`${this.file.source}: metadata '${key}' must be a string`);
    return e.value;
  }
  number(key: string): number;
  number(key: string, fallback: number | undefined): number | undefined;
  number(key: string, fallback?: number): number | undefined {
    const e = this.get(key, arguments.length < 2);
    if (!e) return fallback;
    if (typeof e.value !== 'number' || !Number.isFinite(e.value)) throw new ModelFormatError(`${this.file.source}: metadata '${key}' must be a finite number`);
    return e.value;
  }
  bool(key: string, fallback: boolean): boolean {
    const e = this.get(key, false);
    if (!e) return fallback;
    if (typeof e.value !== 'boolean') throw new ModelFormatError(`${this.file.source}: metadata '${key}' must be a bool`);
    return e.value;
  }
  strings(key: string, required = true): string[] | undefined {
    const e = this.get(key, required);
    if (!e) return undefined;
    if (!Array.isArray(e.value) || e.itemType !== GgufType.STRING) throw new ModelFormatError(`${this.file.source}: metadata '${key}' must be an array of strings`);
    return e.value as string[];
  }
  array(key: string, required = true): GgufArray | undefined {
    const e = this.get(key, required);
    if (!e) return undefined;
    if (e.type !== GgufType.ARRAY) throw new ModelFormatError(`${this.file.source}: metadata '${key}' must be an array`);
    return e.value as GgufArray;
  }
}

// ---------------------------------------------------------------- writer

export interface GgufTensorInput {
  name: string;
  dims: number[];
  type: number;
  data: Uint8Array;
}

/** Builds a GGUF v3 file: metadata in insertion order, tensors aligned to `general.alignment`. */
export class GgufWriter {
  private readonly kv: Array<[string, GgufEntry]> = [];
  private readonly tensors: GgufTensorInput[] = [];
  alignment = 32;

  set(key: string, type: GgufType, value: GgufValue, itemType?: GgufType): this {
    const i = this.kv.findIndex(([k]) => k === key);
    const entry: GgufEntry = itemType === undefined ? { type, value } : { type, itemType, value };
    if (i >= 0) this.kv[i] = [key, entry];
    else this.kv.push([key, entry]);
    if (key === 'general.alignment') this.alignment = Number(value);
    return this;
  }
  string(key: string, v: string): this { return this.set(key, GgufType.STRING, v); }
  u32(key: string, v: number): this { return this.set(key, GgufType.UINT32, v); }
  i32(key: string, v: number): this { return this.set(key, GgufType.INT32, v); }
  f32(key: string, v: number): this { return this.set(key, GgufType.FLOAT32, v); }
  bool(key: string, v: boolean): this { return this.set(key, GgufType.BOOL, v); }
  stringArray(key: string, v: string[]): this { return this.set(key, GgufType.ARRAY, v, GgufType.STRING); }
  f32Array(key: string, v: Float32Array): this { return this.set(key, GgufType.ARRAY, v, GgufType.FLOAT32); }
  i32Array(key: string, v: Int32Array): this { return this.set(key, GgufType.ARRAY, v, GgufType.INT32); }

  addTensor(name: string, dims: number[], type: number, data: Uint8Array): this {
    this.tensors.push({ name, dims, type, data });
    return this;
  }

  /** Header + metadata + tensor table, padded to the alignment; tensor data follows. */
  private header(): { head: Uint8Array; offsets: number[] } {
    const parts: Uint8Array[] = [];
    const enc = new TextEncoder();
    const u32 = (v: number) => { const b = new Uint8Array(4); new DataView(b.buffer).setUint32(0, v, true); parts.push(b); };
    const u64 = (v: number | bigint) => { const b = new Uint8Array(8); new DataView(b.buffer).setBigUint64(0, BigInt(v), true); parts.push(b); };
    const str = (s: string) => { const e = enc.encode(s); u64(e.length); parts.push(e); };
    const scalar = (type: GgufType, v: GgufScalar) => {
      const size = type === GgufType.STRING ? 0 : SCALAR_SIZE[type]!;
      if (type === GgufType.STRING) return str(v as string);
      const b = new Uint8Array(size);
      const d = new DataView(b.buffer);
      switch (type) {
        case GgufType.UINT8: d.setUint8(0, v as number); break;
        case GgufType.INT8: d.setInt8(0, v as number); break;
        case GgufType.UINT16: d.setUint16(0, v as number, true); break;
        case GgufType.INT16: d.setInt16(0, v as number, true); break;
        case GgufType.UINT32: d.setUint32(0, v as number, true); break;
        case GgufType.INT32: d.setInt32(0, v as number, true); break;
        case GgufType.FLOAT32: d.setFloat32(0, v as number, true); break;
        case GgufType.BOOL: d.setUint8(0, v ? 1 : 0); break;
        case GgufType.UINT64: d.setBigUint64(0, BigInt(v as number), true); break;
        case GgufType.INT64: d.setBigInt64(0, BigInt(v as number), true); break;
        default: d.setFloat64(0, v as number, true);
      }
      parts.push(b);
    };
    const value = (e: GgufEntry) => {
      u32(e.type);
      if (e.type !== GgufType.ARRAY) return scalar(e.type, e.value as GgufScalar);
      const items = e.value as ArrayLike<GgufScalar>;
      u32(e.itemType!);
      u64(items.length);
      if (ArrayBuffer.isView(items) && !(items instanceof BigUint64Array) && !(items instanceof BigInt64Array)) {
        const v = items as unknown as ArrayBufferView;
        parts.push(new Uint8Array(v.buffer.slice(v.byteOffset, v.byteOffset + v.byteLength)));
      } else for (let i = 0; i < items.length; i++) scalar(e.itemType!, items[i]!);
    };
    u32(MAGIC);
    u32(3);
    u64(this.tensors.length);
    u64(this.kv.length);
    for (const [k, e] of this.kv) { str(k); value(e); }
    const offsets: number[] = [];
    let off = 0;
    for (const t of this.tensors) {
      str(t.name);
      u32(t.dims.length);
      for (const d of t.dims) u64(d);
      u32(t.type);
      u64(off);
      offsets.push(off);
      off = Math.ceil((off + t.data.byteLength) / this.alignment) * this.alignment;
    }
    const len = parts.reduce((a, p) => a + p.byteLength, 0);
    const head = new Uint8Array(Math.ceil(len / this.alignment) * this.alignment);
    let p = 0;
    for (const part of parts) { head.set(part, p); p += part.byteLength; }
    return { head, offsets };
  }

  /** The whole file in memory (small files, tests). */
  toBytes(): Uint8Array {
    const { head, offsets } = this.header();
    const last = this.tensors.length ? offsets[offsets.length - 1]! + this.tensors[this.tensors.length - 1]!.data.byteLength : 0;
    const out = new Uint8Array(head.byteLength + last);
    out.set(head, 0);
    this.tensors.forEach((t, i) => out.set(t.data, head.byteLength + offsets[i]!));
    return out;
  }

  /** Streams the file to `path` (large models never sit in memory twice). */
  write(path: string): void {
    const { head, offsets } = this.header();
    const fd = openSync(path, 'w');
    try {
      writeSync(fd, head);
      let pos = 0;
      this.tensors.forEach((t, i) => {
        if (offsets[i]! > pos) writeSync(fd, new Uint8Array(offsets[i]! - pos));
        for (let o = 0; o < t.data.byteLength; o += 1 << 26) writeSync(fd, t.data.subarray(o, Math.min(o + (1 << 26), t.data.byteLength)));
        pos = offsets[i]! + t.data.byteLength;
      });
    } finally {
      closeSync(fd);
    }
  }
}
