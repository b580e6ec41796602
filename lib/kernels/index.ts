// bitllm/kernels: the low-level kernel API (contexts, quantizers, GEMMs, repackers) and the
// TypeScript reference kernels with the same contracts.
export * from './context.js';
export * from './ternary.js';
export * as reference from '../reference/index.js';
export * from './ops.js';
export * from './lut.js';
export * from './td3.js';
export * from './binary.js';
export * from './billm.js';
export * from './dense.js';
/** `kernels.info()`: CPU features plus the ISA and per-kernel variant a context would use. */
export { kernelInfo as info } from './context.js';
export * from './ternary-sparse.js';
export * from './binary-lut.js';
export * from './mamba2.js';
