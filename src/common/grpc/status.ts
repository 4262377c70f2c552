// The one place where Emblem errors become gRPC statuses, and gRPC statuses become Emblem errors.
import { Metadata, status, type ServiceError } from '@grpc/grpc-js';
import { EmblemError, type ErrorCode } from '../errors.js';

const toGrpc: Record<ErrorCode, status> = {
  invalid_argument: status.INVALID_ARGUMENT,
  not_found: status.NOT_FOUND,
  already_exists: status.ALREADY_EXISTS,
  permission_denied: status.PERMISSION_DENIED,
  unauthenticated: status.UNAUTHENTICATED,
  failed_precondition: status.FAILED_PRECONDITION,
  resource_exhausted: status.RESOURCE_EXHAUSTED,
  unavailable: status.UNAVAILABLE,
  deadline_exceeded: status.DEADLINE_EXCEEDED,
  unimplemented: status.UNIMPLEMENTED,
  internal: status.INTERNAL,
};

const fromGrpc = new Map<number, ErrorCode>(
  Object.entries(toGrpc).map(([code, grpcCode]) => [grpcCode, code as ErrorCode]),
);

export interface GrpcStatusError {
  code: status;
  details: string;
  metadata: Metadata;
}

/**
 * The longest status message sent. The message travels in the grpc-message trailer; one that echoes
 * a huge input (an ID of 100 KB, say) exceeds the client's HTTP/2 header limit, and the client then
 * never sees the status: its call, and the other calls on that connection, hang until their deadline.
 */
export const MAX_STATUS_DETAILS = 1024;

function boundedDetails(message: string): string {
  if (message.length <= MAX_STATUS_DETAILS) return message;
  let end = MAX_STATUS_DETAILS;
  // Never cut a surrogate pair in two: grpc-js URI-encodes the message, and a lone surrogate throws.
  const last = message.charCodeAt(end - 1);
  if (last >= 0xd800 && last <= 0xdbff) end -= 1;
  return `${message.slice(0, end)}… (${message.length} characters)`;
}

/** Maps any thrown value to a gRPC status error. Unknown errors become INTERNAL with a generic text. */
export function toGrpcStatus(err: unknown): GrpcStatusError {
  if (err instanceof EmblemError) {
    return { code: toGrpc[err.code], details: boundedDetails(err.message), metadata: new Metadata() };
  }
  return { code: status.INTERNAL, details: 'internal error', metadata: new Metadata() };
}

export function grpcCodeOf(code: ErrorCode): status {
  return toGrpc[code];
}

/** Turns an error received from a gRPC call into an EmblemError with the matching code. */
export function fromGrpcError(err: unknown): EmblemError {
  if (err instanceof EmblemError) return err;
  const e = err as Partial<ServiceError>;
  if (typeof e?.code === 'number') {
    const code = fromGrpc.get(e.code) ?? (e.code === status.UNKNOWN || e.code === status.CANCELLED ? 'unavailable' : 'internal');
    return new EmblemError(code, e.details || e.message || 'gRPC error', { cause: err });
  }
  return new EmblemError('internal', err instanceof Error ? err.message : String(err), { cause: err });
}
