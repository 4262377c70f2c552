// The agent's extra services next to the Workload API on its socket: gRPC health (serving once the
// identity source is ready) and server reflection (SPIFFE_Workload_Endpoint.md §7) describing the
// Workload API, health and reflection itself. Neither requires the workload.spiffe.io header.
import type { Server } from '@grpc/grpc-js';
import type { WorkloadIdentitySource } from '../cache/types.js';
import { loadDefinition } from '../../common/grpc/proto.js';
import type { Logger } from '../../common/logger.js';
import { addHealthService, HEALTH_PROTO } from './health.js';
import { addReflectionService } from './reflection.js';

export const WORKLOAD_API_SERVICE = 'SpiffeWorkloadAPI';

export interface HealthReflectionDeps {
  source: WorkloadIdentitySource;
  logger: Logger;
}

export function addHealthAndReflection(server: Server, deps: HealthReflectionDeps): void {
  addHealthService(server, {
    services: [WORKLOAD_API_SERVICE],
    isServing: () => deps.source.ready(),
    onChange: (listener) => deps.source.onChange(listener),
    logger: deps.logger,
  });
  addReflectionService(server, [loadDefinition('workload.proto'), loadDefinition(HEALTH_PROTO)]);
}
