// AttestAgent: the bidirectional node-attestation exchange.
//   agent → params {join_token | x509pop cert chain, CSR}
//   server → challenge (x509pop only)      agent → challenge_response
//   server → result {agent ID, agent SVID chain, bundle}
import type { ServerDuplexStream } from '@grpc/grpc-js';
import { randomBytes } from 'node:crypto';
import { EmblemError, errorMessage, invalidArgument, permissionDenied } from '../../common/errors.js';
import { toGrpcStatus } from '../../common/grpc/status.js';
import type { Logger } from '../../common/logger.js';
import { encodeSpiffeBundle } from '../../common/bundle-json.js';
import type { Selector } from '../../common/selectors.js';
import type { TrustBundle } from '../../common/trust-bundle.js';
import { concatDer } from '../../common/x509/chain.js';
import { parseCsr } from '../../common/x509/csr.js';
import { verifyChallengeResponse } from '../../common/x509pop-challenge.js';
import { redeemJoinToken } from '../attestation/join-token.js';
import type { RateLimiter } from '../attestation/rate-limit.js';
import { verifyX509PopChain, type X509PopTrust } from '../attestation/x509pop.js';
import type { AgentRecord, AttestationType, Datastore } from '../datastore/types.js';
import { updateAgentRecord } from './agent-records.js';
import type { AgentSigner, SignedX509 } from './signer-port.js';
import type { AttestAgentRequestMsg, AttestAgentResponseMsg } from './node-messages.js';
import { loggableId } from '../../common/spiffe-id.js';

export interface AttestDeps {
  trustDomain: string;
  datastore: Datastore;
  signer: AgentSigner;
  bundle(): TrustBundle;
  x509popTrust: X509PopTrust;
  agentSvidTtl: number;
  rateLimiter: RateLimiter;
  remoteAddress(call: { getPeer(): string }): string;
  /** Resolves once the in-memory state reflects every committed write. */
  syncState(): Promise<void>;
  logger: Logger;
  metrics?: {
    attestation(attestor: string, outcome: 'ok' | 'refused'): void;
    signed?(kind: 'x509' | 'jwt' | 'agent', count: number, seconds: number): void;
  };
}

const CHALLENGE_TIMEOUT_MS = 30_000;
const MAX_ATTEST_MESSAGES = 4;

/** Pulls messages from a duplex call one at a time. */
function messageReader(call: ServerDuplexStream<AttestAgentRequestMsg, AttestAgentResponseMsg>) {
  const queue: AttestAgentRequestMsg[] = [];
  let waiting: ((m: AttestAgentRequestMsg | undefined) => void) | undefined;
  let ended = false;
  let count = 0;
  call.on('data', (m: AttestAgentRequestMsg) => {
    if (++count > MAX_ATTEST_MESSAGES) return;
    if (waiting) {
      const w = waiting;
      waiting = undefined;
      w(m);
    } else queue.push(m);
  });
  const finish = () => {
    ended = true;
    waiting?.(undefined);
    waiting = undefined;
  };
  call.on('end', finish);
  call.on('cancelled', finish);
  call.on('error', finish);
  return (): Promise<AttestAgentRequestMsg> =>
    new Promise((resolve, reject) => {
      const next = queue.shift();
      if (next) return resolve(next);
      if (ended) return reject(invalidArgument('attestation stream ended early'));
      const timer = setTimeout(() => {
        waiting = undefined;
        reject(permissionDenied('attestation timed out waiting for the agent'));
      }, CHALLENGE_TIMEOUT_MS);
      waiting = (m) => {
        clearTimeout(timer);
        if (m) resolve(m);
        else reject(invalidArgument('attestation stream ended early'));
      };
    });
}

export function attestAgentHandler(deps: AttestDeps) {
  return (call: ServerDuplexStream<AttestAgentRequestMsg, AttestAgentResponseMsg>): void => {
    const next = messageReader(call);
    let attestor = 'unknown';
    const run = async (): Promise<void> => {
      deps.rateLimiter.take(deps.remoteAddress(call));
      const first = await next();
      const params = first.params;
      if (!params) throw invalidArgument('the first attestation message must carry params');
      const csr = parseCsr(params.csr);

      let agentId: string;
      let selectors: Selector[] = [];
      let type: AttestationType;
      if (params.attestor === 'join_token' && params.join_token) {
        attestor = type = 'join_token';
        agentId = await redeemJoinToken(deps.datastore, deps.trustDomain, params.join_token);
      } else if (params.attestor === 'x509pop' && params.x509pop) {
        attestor = type = 'x509pop';
        const identity = verifyX509PopChain(deps.trustDomain, params.x509pop.cert_chain, deps.x509popTrust);
        const challenge = randomBytes(32);
        call.write({ challenge });
        const answer = await next();
        if (!answer.challenge_response || !verifyChallengeResponse(identity.leaf.publicKey, challenge, answer.challenge_response)) {
          throw permissionDenied('x509pop: challenge response does not verify with the certificate key');
        }
        agentId = identity.agentId;
        selectors = identity.selectors;
      } else {
        throw invalidArgument('attestation params must name join_token or x509pop');
      }

      // The ban check and the write happen in turn with a concurrent ban, so a ban is never undone.
      let svid: SignedX509 | undefined;
      await updateAgentRecord(deps.datastore, agentId, async (existing): Promise<AgentRecord> => {
        if (existing?.banned) throw permissionDenied('agent is banned');
        const started = process.hrtime.bigint();
        [svid] = await deps.signer.signX509Batch([
          { spiffeId: agentId, publicKey: csr.publicKey, dnsNames: [], ttlSeconds: deps.agentSvidTtl, entryId: '', agentId, kind: 'agent' },
        ]);
        deps.metrics?.signed?.('agent', 1, Number(process.hrtime.bigint() - started) / 1e9);
        const now = Math.floor(Date.now() / 1000);
        return {
          id: agentId,
          attestationType: type,
          selectors,
          svidSerial: svid!.serial,
          svidExpiresAt: svid!.notAfter,
          banned: false,
          lastSeen: now,
          createdAt: existing?.createdAt ?? now,
          canReattest: type === 'x509pop',
        };
      });
      await deps.syncState();
      deps.metrics?.attestation(attestor, 'ok');
      deps.logger.info({ agentId: loggableId(agentId), attestor, selectors: selectors.length }, 'agent attested');
      call.write({ result: { agent_id: agentId, svid_chain: concatDer(svid!.chain), bundle: Buffer.from(encodeSpiffeBundle(deps.bundle())) } });
      call.end();
    };
    run().catch((err: unknown) => {
      deps.metrics?.attestation(attestor, 'refused');
      const level = err instanceof EmblemError ? 'warn' : 'error';
      deps.logger[level]({ attestor, remote: deps.remoteAddress(call), reason: errorMessage(err) }, 'agent attestation refused');
      call.emit('error', toGrpcStatus(err));
    });
  };
}
