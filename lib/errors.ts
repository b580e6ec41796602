// Typed errors. Messages name the file, key, field or argument at fault.

export class BitllmError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = new.target.name;
  }
}

/** The native addon is missing, cannot load, or rejected a request (e.g. an unsupported ISA). */
export class NativeError extends BitllmError {}

/** A model file or tensor is malformed: wrong shape, unknown type id, truncated data. */
export class ModelFormatError extends BitllmError {}
