// Start-up: use the stored agent SVID if it is still valid, otherwise attest (first start, or an
// x509pop agent whose SVID expired during an outage). A join-token agent whose SVID expired cannot
// re-attest with its spent token: it stops with AgentSvidExpiredError unless the operator gave a
// new join token.
import { EmblemError, failedPrecondition } from '../../common/errors.js';
import type { Logger } from '../../common/logger.js';
import type { TrustBundle } from '../../common/trust-bundle.js';
import type { AttestTransport } from '../client/server-client.js';
import type { AgentStore, StoredAgentSvid } from '../storage/agent-store.js';
import { agentSvidValidity, attestWithNewKey } from './agent-svid.js';
import type { NodeAttestor } from './node-attestation.js';
import { loggableId } from '../../common/spiffe-id.js';

/** The agent SVID expired and this agent cannot obtain a new one by itself. */
export class AgentSvidExpiredError extends EmblemError {
  constructor(message: string) {
    super('failed_precondition', message);
    this.name = 'AgentSvidExpiredError';
  }
}

export const joinTokenExpiredMessage = (agentId: string): string =>
  `agent SVID of ${loggableId(agentId)} has expired; join-token agents cannot re-attest with a spent token: ` +
  'create a new join token and restart the agent with --join-token';

export interface BootstrapParams {
  transport: AttestTransport;
  store: AgentStore;
  /** The stored SVID (from AgentStore.load()), if any. */
  stored?: StoredAgentSvid;
  /** The configured attestor, if any. */
  attestor?: NodeAttestor;
  logger: Logger;
  /** Milliseconds since the epoch. */
  now?: number;
}

export interface BootstrapResult {
  svid: StoredAgentSvid;
  /** Present when the agent (re-)attested: the bundle received with the SVID (already stored). */
  bundle?: TrustBundle;
  attested: boolean;
}

export async function bootstrapAgent(p: BootstrapParams): Promise<BootstrapResult> {
  const nowSec = Math.floor((p.now ?? Date.now()) / 1000);
  if (p.stored) {
    const { notAfter } = agentSvidValidity(p.stored);
    if (notAfter > nowSec) {
      p.logger.info({ agentId: loggableId(p.stored.agentId), expiresAt: notAfter }, 'using the stored agent SVID');
      return { svid: p.stored, attested: false };
    }
    if (p.stored.attestationType === 'join_token' && !(p.attestor && 'joinToken' in p.attestor)) {
      throw new AgentSvidExpiredError(joinTokenExpiredMessage(p.stored.agentId));
    }
    p.logger.warn({ agentId: loggableId(p.stored.agentId), expiredAt: notAfter }, 'stored agent SVID has expired; attesting again');
  }
  if (!p.attestor) {
    throw failedPrecondition('the agent has not attested yet: give --join-token, or --x509pop-cert and --x509pop-key');
  }
  const { svid, bundle } = await attestWithNewKey(p.transport, p.attestor);
  await p.store.saveBundle(bundle);
  await p.store.saveAgentSvid(svid);
  p.logger.info({ agentId: loggableId(svid.agentId), attestor: svid.attestationType }, 'agent attested');
  return { svid, bundle, attested: true };
}
