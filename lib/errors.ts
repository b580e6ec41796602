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

/**
 * A batch row or sequence call the sequence-state pool rejects (lib/model/state.ts): an unknown or disposed
 * sequence, a position that does not continue the sequence, a token id outside the vocabulary. Nothing
 * changed. `code` says which (ERR_UNKNOWN_SEQUENCE, ERR_BAD_POSITION, ERR_BAD_TOKEN, ERR_BAD_ARGUMENT).
 */
export class SequenceError extends BitllmError {
  constructor(message: string, readonly code: string, options?: { cause?: unknown }) {
    super(message, options);
  }
}

/** The sequence-state pool has no free KV blocks for a batch (its token budget is spent). Nothing changed. */
export class KvPoolFullError extends BitllmError {}
