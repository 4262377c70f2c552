// Requests that are not valid protobuf get INVALID_ARGUMENT, not INTERNAL. grpc-js answers a request
// its deserializer throws on with INTERNAL "Error deserializing request" (the status of a server
// bug), before any handler or interceptor runs. So the request deserializers of our services return
// a MalformedRequest marker instead of throwing (tolerateMalformedRequests, applied by proto.ts),
// and the server interceptor below answers INVALID_ARGUMENT to a call whose message is the marker,
// before a handler sees it. Every Server that registers our services installs the interceptor
// (MALFORMED_REQUEST_INTERCEPTORS).
import { ServerInterceptingCall, status, type ServerInterceptor } from '@grpc/grpc-js';
import type { PackageDefinition } from '@grpc/proto-loader';

export class MalformedRequest {
  constructor(readonly reason: string) {}
}

interface MethodLike {
  path?: unknown;
  requestDeserialize?: (bytes: Buffer) => unknown;
}

/** Makes every method's request deserializer return a MalformedRequest instead of throwing. */
export function tolerateMalformedRequests(definition: PackageDefinition): PackageDefinition {
  for (const entry of Object.values(definition)) {
    // Message and enum definitions carry `format`; services are maps of method definitions.
    if ('format' in entry) continue;
    for (const method of Object.values(entry as Record<string, MethodLike>)) {
      const deserialize = method.requestDeserialize;
      if (typeof method.path !== 'string' || typeof deserialize !== 'function') continue;
      method.requestDeserialize = (bytes: Buffer) => {
        try {
          return deserialize(bytes);
        } catch (err) {
          return new MalformedRequest(err instanceof Error ? err.message : String(err));
        }
      };
    }
  }
  return definition;
}

/** Ends a call with INVALID_ARGUMENT when a request message could not be decoded. */
export const rejectMalformedRequests: ServerInterceptor = (_method, call) => {
  let rejected = false;
  return new ServerInterceptingCall(call, {
    start: (next) =>
      next({
        onReceiveMessage: (message, forward) => {
          if (rejected) return;
          if (message instanceof MalformedRequest) {
            rejected = true;
            call.sendStatus({ code: status.INVALID_ARGUMENT, details: 'request message is not valid protobuf for this method' });
            return;
          }
          forward(message);
        },
        onReceiveHalfClose: (forward) => {
          if (!rejected) forward();
        },
      }),
  });
};

/** For `new Server({ ...options, interceptors: MALFORMED_REQUEST_INTERCEPTORS })`. */
export const MALFORMED_REQUEST_INTERCEPTORS: ServerInterceptor[] = [rejectMalformedRequests];
