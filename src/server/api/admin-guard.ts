// Who may call the Admin API. On the local Unix socket every caller is an admin: access is
// controlled by the socket directory's mode (0700, the server's user). On the TCP listener the
// caller must present an X.509-SVID of our trust domain whose SPIFFE ID belongs to an entry
// flagged `admin`.
import type { ServerUnaryCall, sendUnaryData } from '@grpc/grpc-js';
import { permissionDenied } from '../../common/errors.js';
import { unary } from '../../common/grpc/handlers.js';
import type { StateMirror } from '../sync/state-mirror.js';
import { callerSpiffeId, type AgentAuthDeps } from './agent-auth.js';

type Handler<Req, Res> = (call: ServerUnaryCall<Req, Res>, callback: sendUnaryData<Res>) => void;

export interface AdminGuard {
  unary<Req, Res>(fn: (request: Req, call: ServerUnaryCall<Req, Res>) => Promise<Res>): Handler<Req, Res>;
}

export const localAdminGuard: AdminGuard = { unary: (fn) => unary(fn) };

export function remoteAdminGuard(auth: AgentAuthDeps, mirror: StateMirror): AdminGuard {
  const check = (call: { getPeer(): string }) => {
    const { id } = callerSpiffeId(auth, call);
    const entries = mirror.entriesWithSpiffeId(id);
    const isAdmin = entries !== undefined && [...entries.values()].some((e) => e.admin);
    if (!isAdmin) throw permissionDenied(`${id} is not an admin identity`);
  };
  return {
    unary: (fn) =>
      unary(async (request, call) => {
        check(call);
        return fn(request, call);
      }),
  };
}
