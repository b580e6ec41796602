// TEMPORARY (uncommitted): placeholders until the helper branches land.
import type { KernelContext } from './context.js';
import type { BinaryMatrix } from '../reference/binary.js';
export function binaryFloatGemm(_c: KernelContext, _w: BinaryMatrix, _u: Float32Array, _B: number, _rs: Float32Array | null, _tb: Float32Array | null, _y: Float32Array): void {
  throw new Error('pending');
}
