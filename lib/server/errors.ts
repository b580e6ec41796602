// Errors the server answers with, in OpenAI's shape: { error: { message, type, param, code } }.
import { BitllmError } from '../errors.js';

export type ApiErrorType =
  | 'invalid_request_error' | 'authentication_error' | 'not_found_error' | 'rate_limit_error' | 'unavailable_error' | 'server_error';

/** A request the server refuses, with the HTTP status and the OpenAI-shaped body it is answered with. */
export class HttpError extends BitllmError {
  constructor(
    readonly status: number,
    message: string,
    readonly type: ApiErrorType,
    readonly code: string | null = null,
    readonly param: string | null = null,
    readonly headers: Record<string, string> = {},
  ) {
    super(message);
  }

  body(): { error: { message: string; type: ApiErrorType; param: string | null; code: string | null } } {
    return { error: { message: this.message, type: this.type, param: this.param, code: this.code } };
  }
}

/** 400 invalid_request_error naming the parameter at fault. */
export function badRequest(message: string, param: string | null = null, code: string | null = 'invalid_value'): HttpError {
  return new HttpError(400, message, 'invalid_request_error', code, param);
}
