// Pure-TypeScript reference kernels: the correctness oracle for every native variant.
export * from './act_quant.js';
export * from './numeric.js';
export * from './ternary.js';
export * from './ops.js';
export * from './lut.js';
export * from './td3.js';
export * from './binary.js';
export * from './billm.js';
export * from './dense.js';
export * from './ternary-sparse.js';
export * from './binary-lut.js';
export * from './mamba2.js';
export * from './select.js';
