// KernelContext: one ISA's kernel table plus a thread pool (native Context). No global state:
// several contexts (e.g. one per ISA in tests) live side by side.
import { NativeError } from '../errors.js';
import { type CpuInfo, type Isa, type NativeContext, type NativeContextInfo, loadNative } from '../native.js';

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
