import { BitllmError } from '../errors.js';

/** A vocabulary is unusable (unknown model or pre-tokenizer, bad special id) or a token id is out of range. */
export class TokenizerError extends BitllmError {}
