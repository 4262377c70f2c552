// Checks the agent through the standard gRPC health service on its Workload API socket.
import { credentials, loadPackageDefinition, type Client } from '@grpc/grpc-js';
import { loadDefinition } from '../../common/grpc/proto.js';
import type { HealthReport } from '../../common/observability/health.js';

// grpc-js generic client methods, called with .call(client, ...).
type GrpcMethod = (...args: unknown[]) => unknown;

export function checkWorkloadApiHealth(target: string, timeoutMs: number): Promise<HealthReport> {
  const pkg = loadPackageDefinition(loadDefinition('grpc/health/v1/health.proto')) as unknown as {
    grpc: { health: { v1: { Health: new (t: string, c: ReturnType<typeof credentials.createInsecure>) => Client & Record<string, GrpcMethod> } } };
  };
  const client = new pkg.grpc.health.v1.Health(target, credentials.createInsecure());
  return new Promise((resolve) => {
    client['Check']!.call(client, { service: 'SpiffeWorkloadAPI' }, { deadline: Date.now() + timeoutMs }, (err: Error | null, res: { status: string }) => {
      client.close();
      if (err) resolve({ ok: false, checks: [{ name: 'workload-api', ok: false, detail: err.message }] });
      else resolve({ ok: res.status === 'SERVING', checks: [{ name: 'workload-api', ok: res.status === 'SERVING', detail: res.status }] });
    });
  });
}
