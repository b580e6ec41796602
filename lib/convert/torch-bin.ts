// PyTorch `.bin` checkpoints (torch.save since 1.6): a zip archive, entries stored uncompressed,
//   <prefix>/data.pkl    the state dict, pickled (protocol 2)
//   <prefix>/data/<key>  the raw little-endian bytes of each storage
//   <prefix>/byteorder   "little" (absent in older files: little)
// A tensor is pickled as REDUCE(torch._utils._rebuild_tensor_v2, (storage, offset, size, stride,
// requires_grad, backward_hooks[, metadata])) where `storage` comes from a persistent id
// ('storage', torch.<Type>Storage, key, location, numel).
//
// The unpickler here is RESTRICTED: it implements only the opcodes torch.save emits, builds plain data
// (numbers, strings, tuples, lists, dicts) and accepts only the tensor-rebuild globals below. Any other
// global (os.system, builtins.eval, ...) is refused by name with an UnsafePickleError before anything else
// happens; nothing is ever called or imported. Every length and index is checked against the buffer.
import { closeSync, fstatSync, openSync, readSync } from 'node:fs';

import { ModelFormatError } from '../errors.js';
import { DTYPE_BYTES, type SafetensorsDtype, type SafetensorsEntry } from './safetensors.js';

/** A pickle asked for a global outside the allowed tensor-rebuild set. */
export class UnsafePickleError extends ModelFormatError {}

/** torch storage classes → element type. */
const STORAGE_DTYPES: Readonly<Record<string, SafetensorsDtype>> = {
  FloatStorage: 'F32', HalfStorage: 'F16', BFloat16Storage: 'BF16', DoubleStorage: 'F64', LongStorage: 'I64',
  IntStorage: 'I32', ShortStorage: 'I16', CharStorage: 'I8', ByteStorage: 'U8', BoolStorage: 'BOOL',
};

/** The only globals a state dict may name. */
export const ALLOWED_GLOBALS: readonly string[] = [
  'collections.OrderedDict', 'torch._utils._rebuild_tensor_v2', 'torch._utils._rebuild_parameter',
  ...Object.keys(STORAGE_DTYPES).map((s) => `torch.${s}`),
];

interface PickleGlobal { readonly kind: 'global'; readonly name: string }
interface PickleTuple { readonly kind: 'tuple'; readonly items: PickleValue[] }
interface PickleList { readonly kind: 'list'; readonly items: PickleValue[] }
interface PickleDict { readonly kind: 'dict'; readonly entries: Map<string | number, PickleValue> }
interface PickleStorage { readonly kind: 'storage'; readonly dtype: SafetensorsDtype; readonly key: string; readonly numel: number }
/** A tensor view of a storage (offsets and strides in elements). */
export interface PickleTensor {
  readonly kind: 'tensor';
  readonly storage: PickleStorage;
  readonly offset: number;
  readonly shape: number[];
  readonly stride: number[];
}
type PickleValue = null | boolean | number | bigint | string | Uint8Array
  | PickleGlobal | PickleTuple | PickleList | PickleDict | PickleStorage | PickleTensor;

const MARK = Symbol('mark');

/**
 * Unpickles a torch state dict. Returns the top-level dict's tensors by name; `source` names the file in
 * errors. Never executes anything: see the file comment.
 */
export function unpickleStateDict(bytes: Uint8Array, source: string): Map<string, PickleTensor> {
  const top = unpickle(bytes, source);
  const fail = (msg: string): never => { throw new ModelFormatError(`${source}: ${msg}`); };
  if (top === null || typeof top !== 'object' || !('kind' in top) || top.kind !== 'dict') fail('the pickle is not a state dict (a dict of tensors)');
  const out = new Map<string, PickleTensor>();
  for (const [k, v] of (top as PickleDict).entries) {
    if (typeof k !== 'string') fail(`state dict key ${String(k)} is not a string`);
    if (v === null || typeof v !== 'object' || !('kind' in v) || v.kind !== 'tensor') fail(`state dict entry '${String(k)}' is not a tensor`);
    out.set(k as string, v as PickleTensor);
  }
  return out;
}

/** The restricted unpickler (protocol ≤ 4 opcodes that torch.save's protocol 2 uses, plus a few neighbours). */
export function unpickle(b: Uint8Array, source: string): PickleValue {
  let pos = 0;
  const stack: Array<PickleValue | typeof MARK> = [];
  const memo = new Map<number, PickleValue>();
  const dv = new DataView(b.buffer, b.byteOffset, b.byteLength);
  const fail = (msg: string): never => { throw new ModelFormatError(`${source}: bad pickle: ${msg} at byte ${pos}`); };
  const need = (n: number) => { if (n < 0 || pos + n > b.byteLength) fail(`truncated (needs ${n} more bytes)`); };
  const u8 = () => { need(1); return b[pos++]!; };
  const u16 = () => { need(2); const v = dv.getUint16(pos, true); pos += 2; return v; };
  const u32 = () => { need(4); const v = dv.getUint32(pos, true); pos += 4; return v; };
  const take = (n: number) => { need(n); const v = b.subarray(pos, pos + n); pos += n; return v; };
  const utf8 = (x: Uint8Array) => {
    try { return new TextDecoder('utf-8', { fatal: true }).decode(x); } catch { return fail('string is not UTF-8'); }
  };
  const line = () => {
    const end = b.indexOf(0x0a, pos);
    if (end < 0) fail('unterminated GLOBAL line');
    const s = new TextDecoder('latin1').decode(b.subarray(pos, end));
    pos = end + 1;
    return s;
  };
  const pop = (): PickleValue => {
    const v = stack.pop();
    if (v === undefined) fail('stack underflow');
    if (v === MARK) fail('unexpected MARK');
    return v as PickleValue;
  };
  const peek = (): PickleValue => {
    const v = stack[stack.length - 1];
    if (v === undefined || v === MARK) fail('stack underflow');
    return v as PickleValue;
  };
  const popMark = (): PickleValue[] => {
    const i = stack.lastIndexOf(MARK);
    if (i < 0) fail('no MARK on the stack');
    const items = stack.splice(i) as Array<PickleValue | typeof MARK>;
    items.shift();
    return items as PickleValue[];
  };
  const global = (name: string): PickleGlobal => {
    if (!ALLOWED_GLOBALS.includes(name))
      throw new UnsafePickleError(`${source}: the pickle names the global '${name}', which a tensor state dict never needs; refused (allowed: torch's tensor-rebuild functions and storage types, collections.OrderedDict)`);
    return { kind: 'global', name };
  };
  const isKind = <K extends string>(v: PickleValue, kind: K): boolean => v !== null && typeof v === 'object' && 'kind' in v && v.kind === kind;
  const dictOf = (v: PickleValue, op: string): PickleDict => {
    if (!isKind(v, 'dict')) fail(`${op} on a non-dict`);
    return v as PickleDict;
  };
  const setItem = (d: PickleDict, k: PickleValue, v: PickleValue) => {
    if (typeof k !== 'string' && typeof k !== 'number') fail('dict key is not a string or an int');
    d.entries.set(k as string | number, v);
  };
  const int = (v: PickleValue, what: string): number => {
    const n = typeof v === 'bigint' ? Number(v) : v;
    if (typeof n !== 'number' || !Number.isSafeInteger(n) || n < 0) fail(`${what} is not a non-negative integer`);
    return n as number;
  };
  const ints = (v: PickleValue, what: string): number[] => {
    if (!isKind(v, 'tuple') && !isKind(v, 'list')) fail(`${what} is not a tuple`);
    return (v as PickleTuple).items.map((x) => int(x, what));
  };
  const persistent = (pid: PickleValue): PickleStorage => {
    if (!isKind(pid, 'tuple')) fail('persistent id is not a tuple');
    const [tag, type, key, , numel] = (pid as PickleTuple).items;
    if (tag !== 'storage' || !isKind(type ?? null, 'global')) fail('persistent id is not a torch storage');
    const cls = (type as PickleGlobal).name.replace(/^torch\./, '');
    const dtype = STORAGE_DTYPES[cls];
    if (!dtype) fail(`persistent id names '${(type as PickleGlobal).name}', not a storage type`);
    if (typeof key !== 'string' || !/^[A-Za-z0-9_]+$/.test(key)) fail('storage key is not a plain name');
    return { kind: 'storage', dtype: dtype!, key: key as string, numel: int(numel ?? null, 'storage size') };
  };
  const reduce = (fn: PickleValue, args: PickleValue): PickleValue => {
    if (!isKind(fn, 'global')) fail('REDUCE of something that is not an allowed global');
    if (!isKind(args, 'tuple')) fail('REDUCE arguments are not a tuple');
    const a = (args as PickleTuple).items;
    switch ((fn as PickleGlobal).name) {
      case 'collections.OrderedDict':
        if (a.length !== 0) fail('OrderedDict with arguments');
        return { kind: 'dict', entries: new Map() };
      case 'torch._utils._rebuild_tensor_v2': {
        if (a.length < 6 || a.length > 7) fail(`_rebuild_tensor_v2 with ${a.length} arguments`);
        if (!isKind(a[0]!, 'storage')) fail('_rebuild_tensor_v2 without a storage');
        const shape = ints(a[2]!, 'tensor size');
        const stride = ints(a[3]!, 'tensor stride');
        if (shape.length !== stride.length) fail('tensor size and stride differ in length');
        return { kind: 'tensor', storage: a[0] as PickleStorage, offset: int(a[1]!, 'storage offset'), shape, stride };
      }
      case 'torch._utils._rebuild_parameter':
        if (a.length !== 3 || !isKind(a[0]!, 'tensor')) fail('_rebuild_parameter without a tensor');
        return a[0]!;
      default:
        return fail(`'${(fn as PickleGlobal).name}' cannot be called`);
    }
  };

  for (;;) {
    const op = u8();
    switch (op) {
      case 0x80: u8(); break; // PROTO
      case 0x95: pos += 0; take(8); break; // FRAME (length only)
      case 0x2e: { // STOP
        const v = pop();
        if (stack.length !== 0) fail('items left on the stack at STOP');
        return v;
      }
      case 0x28: stack.push(MARK); break; // MARK
      case 0x7d: stack.push({ kind: 'dict', entries: new Map() }); break; // EMPTY_DICT
      case 0x5d: stack.push({ kind: 'list', items: [] }); break; // EMPTY_LIST
      case 0x29: stack.push({ kind: 'tuple', items: [] }); break; // EMPTY_TUPLE
      case 0x71: memo.set(u8(), peek()); break; // BINPUT
      case 0x72: memo.set(u32(), peek()); break; // LONG_BINPUT
      case 0x94: memo.set(memo.size, peek()); break; // MEMOIZE
      case 0x68: case 0x6a: { // BINGET, LONG_BINGET
        const i = op === 0x68 ? u8() : u32();
        if (!memo.has(i)) fail(`memo ${i} is not set`);
        stack.push(memo.get(i)!);
        break;
      }
      case 0x58: stack.push(utf8(take(u32()))); break; // BINUNICODE
      case 0x8c: stack.push(utf8(take(u8()))); break; // SHORT_BINUNICODE
      case 0x55: stack.push(new TextDecoder('latin1').decode(take(u8()))); break; // SHORT_BINSTRING
      case 0x54: stack.push(new TextDecoder('latin1').decode(take(u32()))); break; // BINSTRING
      case 0x43: stack.push(take(u8()).slice()); break; // SHORT_BINBYTES
      case 0x42: stack.push(take(u32()).slice()); break; // BINBYTES
      case 0x4b: stack.push(u8()); break; // BININT1
      case 0x4d: stack.push(u16()); break; // BININT2
      case 0x4a: { need(4); stack.push(dv.getInt32(pos, true)); pos += 4; break; } // BININT
      case 0x8a: { // LONG1
        const n = u8();
        const bytes = take(n);
        let v = 0n;
        for (let i = n - 1; i >= 0; i--) v = (v << 8n) | BigInt(bytes[i]!);
        if (n > 0 && bytes[n - 1]! & 0x80) v -= 1n << BigInt(8 * n);
        stack.push(v >= BigInt(Number.MIN_SAFE_INTEGER) && v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v);
        break;
      }
      case 0x47: { need(8); stack.push(dv.getFloat64(pos, false)); pos += 8; break; } // BINFLOAT
      case 0x4e: stack.push(null); break; // NONE
      case 0x88: stack.push(true); break; // NEWTRUE
      case 0x89: stack.push(false); break; // NEWFALSE
      case 0x74: stack.push({ kind: 'tuple', items: popMark() }); break; // TUPLE
      case 0x85: { const a = pop(); stack.push({ kind: 'tuple', items: [a] }); break; } // TUPLE1
      case 0x86: { const b2 = pop(); const a = pop(); stack.push({ kind: 'tuple', items: [a, b2] }); break; } // TUPLE2
      case 0x87: { const c = pop(); const b2 = pop(); const a = pop(); stack.push({ kind: 'tuple', items: [a, b2, c] }); break; } // TUPLE3
      case 0x6c: stack.push({ kind: 'list', items: popMark() }); break; // LIST
      case 0x61: { const v = pop(); const l = peek(); if (!isKind(l, 'list')) fail('APPEND to a non-list'); (l as PickleList).items.push(v); break; }
      case 0x65: { const items = popMark(); const l = peek(); if (!isKind(l, 'list')) fail('APPENDS to a non-list'); (l as PickleList).items.push(...items); break; }
      case 0x64: { // DICT
        const items = popMark();
        if (items.length % 2) fail('DICT with an odd number of items');
        const d: PickleDict = { kind: 'dict', entries: new Map() };
        for (let i = 0; i < items.length; i += 2) setItem(d, items[i]!, items[i + 1]!);
        stack.push(d);
        break;
      }
      case 0x73: { const v = pop(); const k = pop(); setItem(dictOf(peek(), 'SETITEM'), k, v); break; }
      case 0x75: { // SETITEMS
        const items = popMark();
        if (items.length % 2) fail('SETITEMS with an odd number of items');
        const d = dictOf(peek(), 'SETITEMS');
        for (let i = 0; i < items.length; i += 2) setItem(d, items[i]!, items[i + 1]!);
        break;
      }
      case 0x63: { const mod = line(); const name = line(); stack.push(global(`${mod}.${name}`)); break; } // GLOBAL
      case 0x93: { // STACK_GLOBAL
        const name = pop();
        const mod = pop();
        if (typeof mod !== 'string' || typeof name !== 'string') fail('STACK_GLOBAL of non-strings');
        stack.push(global(`${mod as string}.${name as string}`));
        break;
      }
      case 0x52: { const args = pop(); const fn = pop(); stack.push(reduce(fn, args)); break; } // REDUCE
      case 0x62: { // BUILD: a state dict's attributes (_metadata) are dropped; nothing else may be built
        pop();
        const target = peek();
        if (!isKind(target, 'dict') && !isKind(target, 'tensor')) fail('BUILD of something that is not a dict or tensor');
        break;
      }
      case 0x51: stack.push(persistent(pop())); break; // BINPERSID
      default:
        fail(`opcode 0x${op.toString(16).padStart(2, '0')} is not one torch.save writes`);
    }
  }
}

// ---------------------------------------------------------------- zip (stored entries, zip64)

interface ZipEntry { name: string; dataOffset: number; size: number }

function readAt(fd: number, offset: number, n: number, path: string): Buffer {
  const buf = Buffer.alloc(n);
  let done = 0;
  while (done < n) {
    const got = readSync(fd, buf, done, n - done, offset + done);
    if (got === 0) throw new ModelFormatError(`${path}: truncated zip archive (wanted ${n} bytes at ${offset})`);
    done += got;
  }
  return buf;
}

const MAX_CENTRAL_DIRECTORY = 256 << 20;

/** Lists a zip archive's entries (names, data offsets, sizes); only stored (uncompressed) entries are accepted. */
export function listZip(fd: number, size: number, path: string): ZipEntry[] {
  const fail = (msg: string): never => { throw new ModelFormatError(`${path}: not a readable torch zip archive (${msg})`); };
  if (size < 22) fail('too short');
  const tailLen = Math.min(size, 22 + 65535);
  const tail = readAt(fd, size - tailLen, tailLen, path);
  let eocd = -1;
  for (let i = tailLen - 22; i >= 0; i--) if (tail.readUInt32LE(i) === 0x06054b50) { eocd = i; break; }
  if (eocd < 0) fail('no end-of-central-directory record: truncated or not a zip');
  let count = tail.readUInt16LE(eocd + 10);
  let cdSize = tail.readUInt32LE(eocd + 12);
  let cdOffset = tail.readUInt32LE(eocd + 16);
  if (count === 0xffff || cdSize === 0xffffffff || cdOffset === 0xffffffff) {
    const loc = eocd - 20;
    if (loc < 0 || tail.readUInt32LE(loc) !== 0x07064b50) fail('zip64 locator missing');
    const z64 = Number(tail.readBigUInt64LE(loc + 8));
    if (!(z64 >= 0 && z64 + 56 <= size)) fail('zip64 record outside the file');
    const rec = readAt(fd, z64, 56, path);
    if (rec.readUInt32LE(0) !== 0x06064b50) fail('bad zip64 record');
    count = Number(rec.readBigUInt64LE(32));
    cdSize = Number(rec.readBigUInt64LE(40));
    cdOffset = Number(rec.readBigUInt64LE(48));
  }
  if (cdSize > MAX_CENTRAL_DIRECTORY || cdOffset + cdSize > size) fail('central directory outside the file');
  const cd = readAt(fd, cdOffset, cdSize, path);
  const entries: ZipEntry[] = [];
  let p = 0;
  for (let i = 0; i < count; i++) {
    if (p + 46 > cd.byteLength || cd.readUInt32LE(p) !== 0x02014b50) fail(`central directory entry ${i} is damaged`);
    const method = cd.readUInt16LE(p + 10);
    let comp = cd.readUInt32LE(p + 20);
    let uncomp = cd.readUInt32LE(p + 24);
    const nameLen = cd.readUInt16LE(p + 28);
    const extraLen = cd.readUInt16LE(p + 30);
    const commentLen = cd.readUInt16LE(p + 32);
    let local = cd.readUInt32LE(p + 42);
    if (p + 46 + nameLen + extraLen + commentLen > cd.byteLength) fail(`central directory entry ${i} is damaged`);
    const name = cd.subarray(p + 46, p + 46 + nameLen).toString('utf8');
    // zip64 extra field: the 0xffffffff fields, in the order uncompressed, compressed, offset.
    for (let e = p + 46 + nameLen, end = e + extraLen; e + 4 <= end;) {
      const id = cd.readUInt16LE(e);
      const len = cd.readUInt16LE(e + 2);
      if (e + 4 + len > end) fail(`extra field of '${name}' is damaged`);
      if (id === 1) {
        let q = e + 4;
        const next = () => { if (q + 8 > e + 4 + len) fail(`zip64 field of '${name}' is short`); const v = Number(cd.readBigUInt64LE(q)); q += 8; return v; };
        if (uncomp === 0xffffffff) uncomp = next();
        if (comp === 0xffffffff) comp = next();
        if (local === 0xffffffff) local = next();
      }
      e += 4 + len;
    }
    if (method !== 0 || comp !== uncomp) fail(`entry '${name}' is compressed (method ${method}); torch.save stores entries`);
    if (local + 30 > size) fail(`entry '${name}' starts outside the file`);
    const lh = readAt(fd, local, 30, path);
    if (lh.readUInt32LE(0) !== 0x04034b50) fail(`entry '${name}' has no local header`);
    const dataOffset = local + 30 + lh.readUInt16LE(26) + lh.readUInt16LE(28);
    if (dataOffset + comp > size) fail(`entry '${name}' runs past the end of the file`);
    entries.push({ name, dataOffset, size: comp });
    p += 46 + nameLen + extraLen + commentLen;
  }
  return entries;
}

/** The tensors of a torch.save zip archive, as file ranges (read later by offset). */
export function indexTorchBin(path: string): SafetensorsEntry[] {
  const fd = openSync(path, 'r');
  try {
    const size = fstatSync(fd).size;
    const head = readAt(fd, 0, Math.min(size, 4), path);
    if (head.byteLength >= 2 && head[0] === 0x80)
      throw new ModelFormatError(`${path}: a legacy (pre-1.6, non-zip) torch file; re-save it with a current torch (torch.save) or as safetensors`);
    const entries = listZip(fd, size, path);
    const pkl = entries.find((e) => e.name.endsWith('/data.pkl') && !e.name.slice(0, -9).includes('/'));
    if (!pkl) throw new ModelFormatError(`${path}: the archive has no <name>/data.pkl: not a torch.save file`);
    const prefix = pkl.name.slice(0, -'data.pkl'.length);
    const order = entries.find((e) => e.name === `${prefix}byteorder`);
    if (order) {
      const text = readAt(fd, order.dataOffset, Math.min(order.size, 16), path).toString('latin1');
      if (text !== 'little') throw new ModelFormatError(`${path}: storages are '${text}'-endian; only little-endian is read`);
    }
    if (pkl.size > 256 << 20) throw new ModelFormatError(`${path}: data.pkl is ${pkl.size} bytes; a state dict's pickle is far smaller`);
    const tensors = unpickleStateDict(readAt(fd, pkl.dataOffset, pkl.size, path), `${path}:${pkl.name}`);
    const storages = new Map(entries.filter((e) => e.name.startsWith(`${prefix}data/`)).map((e) => [e.name.slice(prefix.length + 5), e]));
    const out: SafetensorsEntry[] = [];
    for (const [name, t] of tensors) {
      const fail = (msg: string): never => { throw new ModelFormatError(`${path}: tensor '${name}': ${msg}`); };
      const st = storages.get(t.storage.key) ?? fail(`storage '${t.storage.key}' is missing from the archive`);
      const el = DTYPE_BYTES[t.storage.dtype];
      if (st.size !== t.storage.numel * el) fail(`storage '${t.storage.key}' holds ${st.size} bytes, not ${t.storage.numel} × ${t.storage.dtype}`);
      const count = t.shape.reduce((a, d) => a * d, 1);
      // Row-major contiguous (dimensions of size 1 may carry any stride).
      let expect = 1;
      for (let i = t.shape.length - 1; i >= 0; i--) {
        if (t.shape[i] !== 1 && t.stride[i] !== expect) fail(`not contiguous (size [${t.shape.join(', ')}], stride [${t.stride.join(', ')}])`);
        expect *= t.shape[i]!;
      }
      if (t.offset + count > t.storage.numel) fail(`view [${t.offset}, ${t.offset + count}) exceeds its storage of ${t.storage.numel}`);
      out.push({ name, dtype: t.storage.dtype, shape: t.shape, offset: st.dataOffset + t.offset * el, nbytes: count * el });
    }
    return out;
  } finally {
    closeSync(fd);
  }
}
