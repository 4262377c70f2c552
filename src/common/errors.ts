// Emblem's error model. Code that rejects untrusted input or refuses an operation throws an
// EmblemError with a stable code; src/common/grpc/status.ts is the one place that maps these codes
// to gRPC status codes. Programmer mistakes stay plain Errors and surface as INTERNAL.

export type ErrorCode =
  | 'invalid_argument'
  | 'not_found'
  | 'already_exists'
  | 'permission_denied'
  | 'unauthenticated'
  | 'failed_precondition'
  | 'resource_exhausted'
  | 'unavailable'
  | 'deadline_exceeded'
  | 'unimplemented'
  | 'internal';

export class EmblemError extends Error {
  readonly code: ErrorCode;

  constructor(code: ErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'EmblemError';
    this.code = code;
  }
}

export const invalidArgument = (message: string, cause?: unknown): EmblemError =>
  new EmblemError('invalid_argument', message, { cause });
export const notFound = (message: string): EmblemError => new EmblemError('not_found', message);
export const alreadyExists = (message: string): EmblemError => new EmblemError('already_exists', message);
export const permissionDenied = (message: string): EmblemError => new EmblemError('permission_denied', message);
export const unauthenticated = (message: string): EmblemError => new EmblemError('unauthenticated', message);
export const failedPrecondition = (message: string): EmblemError => new EmblemError('failed_precondition', message);
export const resourceExhausted = (message: string): EmblemError => new EmblemError('resource_exhausted', message);
export const unavailable = (message: string, cause?: unknown): EmblemError =>
  new EmblemError('unavailable', message, { cause });

export function isEmblemError(err: unknown, code?: ErrorCode): err is EmblemError {
  return err instanceof EmblemError && (code === undefined || err.code === code);
}

/** A message safe to show for any thrown value. */
export function errorMessage(err: unknown): string {
  if (err instanceof Error) return err.message;
  return String(err);
}
