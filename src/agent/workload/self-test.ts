// Startup self-test of caller identification (ENGINEERING-NOTES §1.5). Handlers find their caller
// through `call.getPeer()`, which only works because grpc-js reads the socket's remoteAddress: an
// implementation detail that a grpc-js upgrade could break. So at startup the agent calls its own
// socket and checks that a handler identified this very process.
//
// Design: a private gRPC service, emblem.agent.v1.SelfTest/WhoAmI, served next to the Workload API on
// the same socket (the Workload Endpoint spec allows extra, separately named services). It answers
// any caller with that caller's own kernel identity ({token, pid, uid, gid}), which reveals nothing
// the caller does not know. Going through a real handler tests the whole path the Workload API uses;
// it does not depend on the Workload API service. Messages are JSON, so no .proto is needed.
import * as grpc from '@grpc/grpc-js';
import { EmblemError, errorMessage } from '../../common/errors.js';
import type { WorkloadSocket } from './uds-listener.js';

export interface WhoAmIReply {
  token: string;
  pid: number;
  uid: number;
  gid: number;
}

export const SELF_TEST_SERVICE = 'emblem.agent.v1.SelfTest';

const serializeJson = (value: unknown): Buffer => Buffer.from(JSON.stringify(value));

export const selfTestServiceDefinition = {
  WhoAmI: {
    path: `/${SELF_TEST_SERVICE}/WhoAmI`,
    requestStream: false,
    responseStream: false,
    requestSerialize: serializeJson,
    // The request carries nothing; whatever a client sends is ignored.
    requestDeserialize: (): Record<string, never> => ({}),
    responseSerialize: serializeJson,
    responseDeserialize: (bytes: Buffer): unknown => JSON.parse(bytes.toString('utf8')),
  },
} satisfies grpc.ServiceDefinition;

/** Serves WhoAmI on `server`, answering from `socket.peerOf(call)`. Call once, after listenWorkloadSocket. */
export function addSelfTestService(server: grpc.Server, socket: Pick<WorkloadSocket, 'peerOf'>): void {
  server.addService(selfTestServiceDefinition, {
    WhoAmI: (call: grpc.ServerUnaryCall<unknown, WhoAmIReply>, callback: grpc.sendUnaryData<WhoAmIReply>) => {
      const peer = socket.peerOf(call);
      if (!peer) {
        callback({ code: grpc.status.PERMISSION_DENIED, details: 'caller could not be identified' });
        return;
      }
      callback(null, { token: peer.token, pid: peer.pid, uid: peer.uid, gid: peer.gid });
    },
  });
}

// Not required by WhoAmI, but sent so that a server-wide security-header check cannot break the self-test.
function securityHeader(): grpc.Metadata {
  const md = new grpc.Metadata();
  md.set('workload.spiffe.io', 'true');
  return md;
}

/** Calls WhoAmI on the socket at `socketPath`. */
export async function whoAmI(socketPath: string, timeoutMs = 5000): Promise<WhoAmIReply> {
  const Client = grpc.makeGenericClientConstructor(selfTestServiceDefinition, SELF_TEST_SERVICE);
  const client = new Client(`unix://${socketPath}`, grpc.credentials.createInsecure(), { 'grpc.use_local_subchannel_pool': 1 });
  try {
    return await new Promise<WhoAmIReply>((resolve, reject) => {
      client.makeUnaryRequest(
        selfTestServiceDefinition.WhoAmI.path,
        serializeJson,
        (bytes: Buffer) => JSON.parse(bytes.toString('utf8')) as WhoAmIReply,
        {},
        securityHeader(),
        { deadline: Date.now() + timeoutMs },
        (err, reply) => (err || !reply ? reject(err ?? new Error('empty reply')) : resolve(reply)),
      );
    });
  } finally {
    client.close();
  }
}

/**
 * Throws EmblemError('failed_precondition') unless a call to the agent's own socket was attributed to
 * this process (token "uds-peer:…", pid === process.pid, our effective uid and gid).
 * The server must serve addSelfTestService().
 */
export async function selfTestPeerCredentials(socketPath: string, opts: { timeoutMs?: number } = {}): Promise<void> {
  let reply: WhoAmIReply;
  try {
    reply = await whoAmI(socketPath, opts.timeoutMs);
  } catch (err) {
    const details = (err as Partial<grpc.ServiceError>).details ?? errorMessage(err);
    throw new EmblemError('failed_precondition', `workload socket self-test: calling ${socketPath} failed: ${details}`, { cause: err });
  }
  const expected = { pid: process.pid, uid: process.geteuid?.(), gid: process.getegid?.() };
  const ok =
    typeof reply?.token === 'string' &&
    reply.token.startsWith('uds-peer:') &&
    reply.pid === expected.pid &&
    reply.uid === expected.uid &&
    reply.gid === expected.gid;
  if (!ok) {
    throw new EmblemError(
      'failed_precondition',
      `workload socket self-test: the server saw ${JSON.stringify(reply)} instead of this process ${JSON.stringify(expected)}; ` +
        'caller identification does not work with this grpc-js version',
    );
  }
}
