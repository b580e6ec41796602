// Post-training quantization: BiLLM binarization (packed planes, GGUF tensors), the naive RTN
// baselines, the calibration Hessian and the float64 linear algebra they use.
export * from './billm.js';
export * from './billm-gguf.js';
export * from './linalg.js';
