// TEMPORARY (uncommitted): placeholders until the helper branches land.
import type { KernelContext } from './context.js';
import type { QuantizedActivations } from '../reference/act_quant.js';
import type { BinaryMatrix } from '../reference/binary.js';
export function quantizeActivationsTopkI8(_c: KernelContext, _x: Float32Array, _B: number, _K: number, _r: number, _o?: QuantizedActivations): QuantizedActivations {
  throw new Error('pending');
}
export function binaryFloatGemm(_c: KernelContext, _w: BinaryMatrix, _u: Float32Array, _B: number, _rs: Float32Array | null, _tb: Float32Array | null, _y: Float32Array): void {
  throw new Error('pending');
}
export function refActQuantTopkI8(_x: Float32Array, _B: number, _K: number, _r: number): QuantizedActivations {
  throw new Error('pending');
}
