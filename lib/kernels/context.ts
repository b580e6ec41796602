// KernelContext: one ISA's kernel table plus a thread pool (native Context). No global state:
// several contexts (e.g. one per ISA in tests) live side by side.
import { NativeError } from '../errors.js';
import { type CpuInfo, type Isa, type NativeContext, type NativeContextInfo, binding, loadNative } from '../native.js';

export type { CpuInfo, Isa, NativeContextInfo };

export interface ContextOptions {
  /** Worker threads including the caller; default = physical cores. */
  threads?: number;
  /** Force an ISA; default = BITLLM_ISA or the best this CPU supports. */
  isa?: Isa;
}

export class KernelContext {
  /** The native handle, passed as the first argument of every binding. */
  readonly handle: NativeContext;

  constructor(options: ContextOptions = {}) {
    const addon = loadNative();
    try {
      this.handle = new addon.Context(options);
    } catch (err) {
      throw new NativeError((err as Error).message, { cause: err });
    }
  }

  get threads(): number {
    return this.handle.threads;
  }

  get isa(): Isa {
    return this.handle.info().isa;
  }

  info(): NativeContextInfo {
    return this.handle.info();
  }
}

/** CPU features, the ISAs this build + CPU can run, and the default choice. */
export function cpuInfo(): CpuInfo {
  return loadNative().cpuInfo();
}

/** CPU features plus, for a context with `options`, the ISA and the variant chosen per kernel. */
export function kernelInfo(options: ContextOptions = {}): { cpu: CpuInfo; context: NativeContextInfo } {
  return { cpu: cpuInfo(), context: new KernelContext(options).info() };
}

/** Below this, weight buffers come from the JS heap: one 2 MiB huge page is the smallest unit worth advising. */
export const HUGE_PAGE_BYTES = 2 * 1024 * 1024;

/** Where a repacker puts its output: n zero-filled bytes that live as long as the weights. */
export type WeightAlloc = (bytes: number) => Uint8Array;

/** False when BITLLM_HUGE_PAGES is 0 / off / false: weights then stay in 4 KiB pages (and an F16 head in the file mapping). */
export function hugePagesEnabled(): boolean {
  const v = process.env.BITLLM_HUGE_PAGES;
  return !(v === '0' || v === 'off' || v === 'false');
}

/** The default WeightAlloc of the repackers: a JS-heap buffer, collected like any other. */
export const heapBytes: WeightAlloc = (n) => new Uint8Array(n);

/**
 * Zero-filled bytes for weights that live as long as the model (repacked layers and heads). From 2 MiB up
 * they start on a 2 MiB boundary of a JS ArrayBuffer 2 MiB larger, advised for transparent huge pages
 * (MADV_HUGEPAGE) and faulted in: GEMVs stream them with far fewer TLB misses. The buffer is an ordinary
 * V8 allocation, so the garbage collector frees it like any other. BITLLM_HUGE_PAGES=0 turns the advice
 * off (a plain buffer of n bytes). The result may have a non-zero byteOffset.
 */
export function weightBytes(n: number): Uint8Array {
  if (n < HUGE_PAGE_BYTES || !hugePagesEnabled()) return new Uint8Array(n);
  const buf = new ArrayBuffer(n + HUGE_PAGE_BYTES);
  const off = binding<(b: ArrayBuffer, bytes: number) => number>('prepareWeights')(buf, n);
  return new Uint8Array(buf, off, n);
}

/**
 * Bump allocator for the many matrices of one model, carved from one weightBytes block of `capacity`
 * bytes (the loader sums its matrices' sizes): one block is covered by whole huge pages, where one buffer
 * per matrix would leave every matrix's partial last 2 MiB (and any matrix under 2 MiB) in 4 KiB pages.
 * Slices are 64-byte aligned; a request past the capacity gets a buffer of its own. The block is freed
 * when no slice references it.
 */
export class WeightArena {
  private block: Uint8Array | undefined;
  private used = 0;

  constructor(readonly capacity: number) {
    if (!(Number.isInteger(capacity) && capacity >= 0)) throw new RangeError(`WeightArena: capacity = ${capacity} bytes`);
  }

  /** n, rounded up to the arena's 64-byte slice alignment: what a slice of n bytes takes. */
  static slot(n: number): number {
    return Math.ceil(n / 64) * 64;
  }

  readonly alloc: WeightAlloc = (n) => {
    if (!(Number.isInteger(n) && n >= 0)) throw new RangeError(`WeightArena: ${n} bytes requested`);
    if (this.used + n > this.capacity) return weightBytes(n);
    this.block ??= weightBytes(this.capacity);
    const at = this.used;
    this.used += WeightArena.slot(n);
    return this.block.subarray(at, at + n);
  };
}
