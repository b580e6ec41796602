// bitllm public API.
export * from './errors.js';
export { KernelContext, cpuInfo, kernelInfo } from './kernels/context.js';
export type { ContextOptions, CpuInfo, Isa } from './kernels/context.js';
export * from './api.js';
