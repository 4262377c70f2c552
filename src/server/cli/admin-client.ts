// A promise-based client of the Admin API on the server's local Unix socket (the CLI's transport).
import { credentials, Metadata, type Client } from '@grpc/grpc-js';
import { adminService } from '../../common/grpc/proto.js';
import { fromGrpcError } from '../../common/grpc/status.js';

// grpc-js generic client methods, called with .call(client, ...).
type GrpcMethod = (...args: unknown[]) => unknown;

export type AdminCall = <Res = Record<string, unknown>>(method: string, request?: object) => Promise<Res>;

export interface AdminClient {
  call: AdminCall;
  close(): void;
}

/** A status the server sent carries its response headers; a failure to reach it carries none. */
const answeredByServer = (err: unknown): boolean => ((err as { metadata?: Metadata }).metadata?.get('content-type').length ?? 0) > 0;

export function connectAdmin(socketPath: string, timeoutMs = 30_000): AdminClient {
  const Ctor = adminService();
  const client: Client = new Ctor(`unix://${socketPath}`, credentials.createInsecure());
  const call: AdminCall = (method, request = {}) =>
    new Promise((resolve, reject) => {
      const fn = (client as unknown as Record<string, GrpcMethod>)[method];
      if (typeof fn !== 'function') return reject(new Error(`unknown admin method ${method}`));
      fn.call(client, request, new Metadata(), { deadline: Date.now() + timeoutMs }, (err: unknown, res: unknown) => {
        if (err) {
          const e = fromGrpcError(err);
          if (e.code === 'unavailable' && !answeredByServer(err)) e.message = `cannot reach emblem-server on ${socketPath}: ${e.message}`;
          reject(e);
        } else resolve(res as never);
      });
    });
  return { call, close: () => client.close() };
}
