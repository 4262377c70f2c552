// Wrappers that turn async functions into grpc-js handlers, so every error leaves through
// toGrpcStatus (the one error-to-status mapping) and no handler forgets to answer.
import type { sendUnaryData, ServerUnaryCall } from '@grpc/grpc-js';
import { toGrpcStatus } from './status.js';

export function unary<Req, Res>(
  fn: (request: Req, call: ServerUnaryCall<Req, Res>) => Promise<Res>,
  onError?: (err: unknown, call: ServerUnaryCall<Req, Res>) => void,
): (call: ServerUnaryCall<Req, Res>, callback: sendUnaryData<Res>) => void {
  return (call, callback) => {
    fn(call.request, call).then(
      (response) => callback(null, response),
      (err: unknown) => {
        onError?.(err, call);
        callback(toGrpcStatus(err));
      },
    );
  };
}
