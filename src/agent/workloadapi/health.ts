// The standard gRPC health service (grpc.health.v1.Health, grpc/grpc doc/health-checking.md).
// Serving means the agent can answer Workload API calls (the identity source is ready). It needs no
// Workload API security header: it is a separate service.
import type { Server, ServerUnaryCall, ServerWritableStream, ServiceDefinition, sendUnaryData } from '@grpc/grpc-js';
import { notFound } from '../../common/errors.js';
import { toGrpcStatus } from '../../common/grpc/status.js';
import { loadDefinition } from '../../common/grpc/proto.js';
import type { Logger } from '../../common/logger.js';
import { serveWatchStream } from './watch-stream.js';

export const HEALTH_SERVICE = 'grpc.health.v1.Health';
export const HEALTH_PROTO = 'grpc/health/v1/health.proto';

export type ServingStatus = 'SERVING' | 'NOT_SERVING' | 'SERVICE_UNKNOWN';

interface HealthCheckRequest {
  service: string;
}

interface HealthCheckResponse {
  status: ServingStatus;
}

export interface HealthDeps {
  /** Service names that report a status besides "" (the server as a whole). */
  services: readonly string[];
  isServing: () => boolean;
  /** Change notifications, to push status changes to Watch streams. */
  onChange?: (listener: () => void) => () => void;
  logger: Logger;
}

export function createHealthHandlers(deps: HealthDeps) {
  const known = new Set(['', ...deps.services]);
  const statusOf = (service: string): ServingStatus => {
    if (!known.has(service)) return 'SERVICE_UNKNOWN';
    return deps.isServing() ? 'SERVING' : 'NOT_SERVING';
  };
  return {
    Check(call: ServerUnaryCall<HealthCheckRequest, HealthCheckResponse>, callback: sendUnaryData<HealthCheckResponse>): void {
      const st = statusOf(call.request.service);
      if (st === 'SERVICE_UNKNOWN') callback(toGrpcStatus(notFound(`unknown service ${JSON.stringify(call.request.service)}`)));
      else callback(null, { status: st });
    },
    // Watch sends the current status at once and again on every change, SERVICE_UNKNOWN included.
    Watch(call: ServerWritableStream<HealthCheckRequest, HealthCheckResponse>): void {
      serveWatchStream({
        call,
        subscribe: deps.onChange ?? (() => () => {}),
        build: async () => {
          const st = statusOf(call.request.service);
          return { message: { status: st }, fingerprint: st };
        },
        logger: deps.logger,
        onEnd: () => {},
      });
    },
  };
}

export function addHealthService(server: Server, deps: HealthDeps): void {
  const service = loadDefinition(HEALTH_PROTO)[HEALTH_SERVICE] as ServiceDefinition;
  server.addService(service, createHealthHandlers(deps));
}
