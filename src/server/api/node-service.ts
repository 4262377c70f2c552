// The agent-facing Node service: attestation, agent SVID renewal, push sync and signing.
// Every RPC but AttestAgent authenticates the calling agent from its TLS client certificate.
import type { Server, ServerUnaryCall, ServerWritableStream } from '@grpc/grpc-js';
import { EmblemError, errorMessage, invalidArgument, permissionDenied, resourceExhausted } from '../../common/errors.js';
import { unary } from '../../common/grpc/handlers.js';
import { nodeService } from '../../common/grpc/proto.js';
import { grpcCodeOf, toGrpcStatus } from '../../common/grpc/status.js';
import type { Logger } from '../../common/logger.js';
import { concatDer } from '../../common/x509/chain.js';
import { parseCsr } from '../../common/x509/csr.js';
import type { EntryRecord } from '../datastore/types.js';
import { loggableId } from '../../common/spiffe-id.js';
import type { CsrVerifyPool } from '../ca/csr-verify-pool.js';
import { authenticateAgent, normaliseSerial, type AgentAuthDeps } from './agent-auth.js';
import type { AgentConnections } from './agent-connections.js';
import { attestAgentHandler, type AttestDeps } from './attest-handler.js';
import type {
  BatchNewX509SVIDRequestMsg,
  NewJWTSVIDRequestMsg,
  RenewAgentRequestMsg,
  SyncEntriesRequestMsg,
  X509SVIDResultMsg,
} from './node-messages.js';
import { updateAgentRecord } from './agent-records.js';
import type { SignedX509, X509SignRequest } from './signer-port.js';

export const MAX_BATCH_SIZE = 1000;
/** Deltas waiting for a slow agent; past this the stream is closed and the agent resumes exactly. */
const MAX_PENDING_SYNC_UPDATES = 256;

export interface FeedPort {
  open(
    params: { agentId: string; sinceRevision: number; knownEntries: { id: string; revision: number }[] },
    send: (update: object) => void,
    onClose: (reason: 'banned' | 'evicted' | 'closed') => void,
  ): { close(): void };
}

export interface NodeServiceDeps extends AttestDeps, AgentAuthDeps {
  entry(id: string): EntryRecord | undefined;
  isAuthorized(agentId: string, entryId: string): boolean;
  feed: FeedPort;
  connections: AgentConnections;
  /** Checks the CSRs of BatchNewX509SVID (off the main thread for large batches). */
  csrVerifier: Pick<CsrVerifyPool, 'verify'>;
  logger: Logger;
  metrics?: AttestDeps['metrics'] & {
    signed(kind: 'x509' | 'jwt' | 'agent', count: number, seconds: number): void;
    syncStreams(delta: number): void;
  };
}

export function addNodeService(server: Server, deps: NodeServiceDeps): void {
  const log = deps.logger.child({ component: 'node-api' });
  const authenticate = async (call: { getPeer(): string }) => {
    const auth = await authenticateAgent(deps, call);
    deps.connections.add(auth.agent.id, auth.peer.token);
    return auth;
  };

  server.addService(nodeService().service, {
    AttestAgent: attestAgentHandler({ ...deps, logger: log }),

    RenewAgent: unary(async (req: RenewAgentRequestMsg, call: ServerUnaryCall<RenewAgentRequestMsg, unknown>) => {
      const auth = await authenticate(call);
      const { agent } = auth;
      const csr = parseCsr(req.csr);
      let svid: SignedX509 | undefined;
      // Re-checked on the stored record, in turn with bans and evictions: a renewal that passed
      // authentication just before a ban or an eviction must not undo it.
      await updateAgentRecord(deps.datastore, agent.id, async (current) => {
        if (!current) throw permissionDenied('agent is evicted or was never attested');
        if (current.banned) throw permissionDenied('agent is banned');
        const serial = normaliseSerial(auth.svidSerial);
        if (normaliseSerial(current.svidSerial) !== serial && (current.previousSvidSerial === undefined || normaliseSerial(current.previousSvidSerial) !== serial)) {
          throw permissionDenied('agent SVID has been superseded; use the current one');
        }
        const started = process.hrtime.bigint();
        [svid] = await deps.signer.signX509Batch([
          { spiffeId: agent.id, publicKey: csr.publicKey, dnsNames: [], ttlSeconds: deps.agentSvidTtl, entryId: '', agentId: agent.id, kind: 'agent' },
        ]);
        deps.metrics?.signed('agent', 1, Number(process.hrtime.bigint() - started) / 1e9);
        return {
          ...current,
          svidSerial: svid!.serial,
          svidExpiresAt: svid!.notAfter,
          // The SVID this call authenticated with stays valid until the agent uses the new one.
          previousSvidSerial: serial,
          lastSeen: Math.floor(Date.now() / 1000),
        };
      });
      await deps.syncState();
      return { svid_chain: concatDer(svid!.chain) };
    }),

    SyncEntries: (call: ServerWritableStream<SyncEntriesRequestMsg, object>) => {
      syncEntries(deps, authenticate, log, call).catch((err: unknown) => call.emit('error', toGrpcStatus(err)));
    },

    BatchNewX509SVID: unary(async (req: BatchNewX509SVIDRequestMsg, call: ServerUnaryCall<BatchNewX509SVIDRequestMsg, unknown>) => {
      const { agent } = await authenticate(call);
      if (req.params.length > MAX_BATCH_SIZE) throw invalidArgument(`at most ${MAX_BATCH_SIZE} CSRs per batch`);
      const results: X509SVIDResultMsg[] = req.params.map((p) => ({
        entry_id: p.entry_id,
        status: { code: 0, message: '' },
        svid_chain: Buffer.alloc(0),
        expires_at: 0,
        authority_id: '',
      }));
      const fail = (index: number, err: unknown) => {
        if (err instanceof EmblemError) results[index]!.status = { code: grpcCodeOf(err.code), message: err.message };
        else {
          log.error({ entryId: req.params[index]!.entry_id, reason: errorMessage(err) }, 'unexpected error while preparing an SVID');
          results[index]!.status = { code: grpcCodeOf('internal'), message: 'internal error' };
        }
      };
      const authorisedEntry = (entryId: string): EntryRecord => {
        const entry = deps.entry(entryId);
        if (!entry || !deps.isAuthorized(agent.id, entryId)) {
          log.warn({ agentId: loggableId(agent.id), entryId }, 'refused to sign: entry is not authorised for this agent');
          throw permissionDenied(`entry ${entryId} is not authorised for this agent`);
        }
        return entry;
      };
      // Authorisation first, per item: the CSR of an entry the agent may not have is not even checked.
      const authorised: number[] = [];
      req.params.forEach((p, index) => {
        try {
          authorisedEntry(p.entry_id);
          authorised.push(index);
        } catch (err) {
          fail(index, err);
        }
      });
      const checks = await deps.csrVerifier.verify(authorised.map((index) => req.params[index]!.csr));
      const toSign: { index: number; request: X509SignRequest }[] = [];
      checks.forEach((check, i) => {
        const index = authorised[i]!;
        try {
          if ('error' in check) throw check.error;
          // Read again: the entry, or the agent's right to it, may have changed while the CSRs were checked.
          const entry = authorisedEntry(req.params[index]!.entry_id);
          toSign.push({
            index,
            request: {
              spiffeId: entry.spiffeId,
              publicKey: check.spki,
              dnsNames: entry.dnsNames,
              ttlSeconds: entry.x509SvidTtl,
              entryId: entry.id,
              agentId: agent.id,
              kind: 'x509',
            },
          });
        } catch (err) {
          fail(index, err);
        }
      });
      if (toSign.length > 0) {
        const started = process.hrtime.bigint();
        const signed = await deps.signer.signX509Batch(toSign.map((t) => t.request));
        deps.metrics?.signed('x509', signed.length, Number(process.hrtime.bigint() - started) / 1e9);
        signed.forEach((svid, i) => {
          const r = results[toSign[i]!.index]!;
          r.svid_chain = concatDer(svid.chain);
          r.expires_at = svid.notAfter;
          r.authority_id = svid.authorityId;
        });
      }
      return { results };
    }),

    NewJWTSVID: unary(async (req: NewJWTSVIDRequestMsg, call: ServerUnaryCall<NewJWTSVIDRequestMsg, unknown>) => {
      const { agent } = await authenticate(call);
      if (req.audience.length === 0 || req.audience.some((a) => a.length === 0)) throw invalidArgument('audience must be specified');
      const entry = deps.entry(req.entry_id);
      if (!entry || !deps.isAuthorized(agent.id, req.entry_id)) {
        log.warn({ agentId: loggableId(agent.id), entryId: req.entry_id }, 'refused JWT-SVID: entry is not authorised for this agent');
        throw permissionDenied(`entry ${req.entry_id} is not authorised for this agent`);
      }
      const started = process.hrtime.bigint();
      const jwt = await deps.signer.signJwt({ spiffeId: entry.spiffeId, audience: req.audience, ttlSeconds: entry.jwtSvidTtl, entryId: entry.id, agentId: agent.id });
      deps.metrics?.signed('jwt', 1, Number(process.hrtime.bigint() - started) / 1e9);
      return { token: jwt.token, expires_at: jwt.expiresAt };
    }),
  });
}

async function syncEntries(
  deps: NodeServiceDeps,
  authenticate: (call: { getPeer(): string }) => Promise<{ agent: { id: string } }>,
  log: Logger,
  call: ServerWritableStream<SyncEntriesRequestMsg, object>,
): Promise<void> {
  const { agent } = await authenticate(call);
  const pending: object[] = [];
  let draining = false;
  let closed = false;

  const flush = () => {
    while (pending.length > 0 && !closed) {
      const ok = call.write(pending.shift()!);
      if (!ok) {
        draining = true;
        call.once('drain', () => {
          draining = false;
          flush();
        });
        return;
      }
    }
  };
  let feed: { close(): void } | undefined;
  const finish = (err?: unknown) => {
    if (closed) return;
    closed = true;
    feed?.close();
    deps.metrics?.syncStreams(-1);
    if (err) call.emit('error', toGrpcStatus(err));
    else call.end();
  };
  feed = deps.feed.open(
    { agentId: agent.id, sinceRevision: call.request.since_revision, knownEntries: call.request.known_entries },
    (update) => {
      if (closed) return;
      if (pending.length >= MAX_PENDING_SYNC_UPDATES) {
        log.warn({ agentId: loggableId(agent.id) }, 'agent is not reading its sync stream; closing it (the agent resumes exactly)');
        finish(resourceExhausted('sync stream fell too far behind; reconnect'));
        return;
      }
      pending.push(update);
      if (!draining) flush();
    },
    (reason) => {
      if (reason === 'banned' || reason === 'evicted') {
        // Let the final update (with agent_state) reach the agent, end the stream, then cut every
        // connection the agent has (its other calls in flight end with it).
        setImmediate(() => {
          finish(permissionDenied(`agent is ${reason}`));
          setTimeout(() => deps.connections.cut(agent.id), 100).unref();
        });
      } else finish();
    },
  );
  deps.metrics?.syncStreams(1);
  call.on('cancelled', () => finish());
  call.on('close', () => finish());
  call.on('error', () => finish());
}
