// Simulated agents: the agent's own client modules (ServerClient, attestAgent, CSRs) speaking the
// real Node API over mutual TLS, without the rest of an agent. Used where a benchmark needs many
// agents (B6) or wants to drive BatchNewX509SVID directly (B1).
import type { ClientReadableStream } from '@grpc/grpc-js';
import { attestAgent } from '../../src/agent/attestation/node-attestation.js';
import type { SyncEntriesUpdateMsg } from '../../src/agent/client/messages.js';
import { ServerClient } from '../../src/agent/client/server-client.js';
import { decodeSpiffeBundle } from '../../src/common/bundle-json.js';
import { createCsr } from '../../src/common/x509/csr.js';
import { generateKeyPair } from '../../src/common/x509/keys.js';
import type { AdminClient } from '../../src/server/cli/admin-client.js';
import type { JoinToken } from './admin-ops.js';
import { mapLimit } from './stats.js';

export interface ServerEndpoint {
  address: string;
  trustDomain: string;
  admin: AdminClient;
}

export interface SimAgent {
  id: string;
  client: ServerClient;
  close(): void;
}

/** The server's X.509 authorities, as an agent's --trust-bundle would hold them. */
export async function serverAnchors(server: ServerEndpoint): Promise<Buffer[]> {
  const res = await server.admin.call<{ bundle: Buffer }>('GetBundle');
  return decodeSpiffeBundle(server.trustDomain, res.bundle).x509Authorities;
}

/** Attests one simulated agent with a join token; its client then holds the agent SVID (mTLS). */
export async function attestSimAgent(server: ServerEndpoint, anchors: Buffer[], token: string): Promise<SimAgent> {
  const client = new ServerClient({ serverAddress: server.address, trustDomain: server.trustDomain, bootstrapAnchors: anchors, rpcTimeoutMs: 120_000 });
  try {
    const keyPair = generateKeyPair();
    const result = await attestAgent(client, { joinToken: token }, createCsr(keyPair), { timeoutMs: 120_000 });
    client.update({ agentSvid: { chain: result.svidChain, privateKey: keyPair.privateKey }, bundle: result.bundle });
    return { id: result.agentId, client, close: () => client.close() };
  } catch (err) {
    client.close();
    throw err;
  }
}

export async function attestSimAgents(server: ServerEndpoint, tokens: readonly JoinToken[], concurrency = 16): Promise<SimAgent[]> {
  const anchors = await serverAnchors(server);
  return mapLimit(tokens, concurrency, (t) => attestSimAgent(server, anchors, t.token));
}

export interface SyncFollower {
  /** Updates received so far. */
  updates: number;
  /** Entries in the last full update plus the deltas since (a rough count). */
  entries: number;
  /** Resolves with the first (full) update. */
  first: Promise<void>;
  error: Error | undefined;
  cancel(): void;
}

/** Opens SyncEntries (from scratch) and keeps it open, counting what arrives. */
export function followSync(agent: SimAgent): SyncFollower {
  const stream: ClientReadableStream<SyncEntriesUpdateMsg> = agent.client.syncEntries({ since_revision: 0, known_entries: [] });
  let resolveFirst!: () => void;
  let rejectFirst!: (err: Error) => void;
  const follower: SyncFollower = {
    updates: 0,
    entries: 0,
    first: new Promise((resolve, reject) => {
      resolveFirst = resolve;
      rejectFirst = reject;
    }),
    error: undefined,
    cancel: () => stream.cancel(),
  };
  follower.first.catch(() => undefined);
  stream.on('data', (u: SyncEntriesUpdateMsg) => {
    follower.updates++;
    follower.entries = u.full ? u.entries.length : follower.entries + u.entries.length - u.deleted_entry_ids.length;
    resolveFirst();
  });
  stream.on('error', (err: Error) => {
    follower.error = err;
    rejectFirst(err);
  });
  stream.on('end', () => rejectFirst(new Error('sync stream ended')));
  return follower;
}
