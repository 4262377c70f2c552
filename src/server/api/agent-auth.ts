// Authenticates an agent on the agent-facing API from the client certificate of its TLS
// connection: the chain must be a valid X.509-SVID of our trust domain under /emblem/agent/, the
// agent must be attested and not banned, and the certificate must be the agent's current SVID.
// Reads come from the in-memory mirror; the datastore is read only when the mirror has not yet
// caught up with a write made a moment ago (attestation, renewal).
import { permissionDenied, unauthenticated, errorMessage } from '../../common/errors.js';
import { agentIdPrefix } from '../../common/spiffe-id.js';
import type { TrustBundle } from '../../common/trust-bundle.js';
import { readCertificate } from '../../common/x509/cert-info.js';
import { verifyX509SvidChain } from '../../common/x509/validate.js';
import type { AgentRecord } from '../datastore/types.js';
import type { TlsPeer } from '../transport/tls-listener.js';

export interface AgentAuthDeps {
  trustDomain: string;
  /** Records that the agent now uses its renewed SVID (drops the previous serial). */
  confirmRenewal?(agent: AgentRecord): Promise<void>;
  bundle(): TrustBundle;
  agent(id: string): AgentRecord | undefined;
  loadAgent(id: string): Promise<AgentRecord | undefined>;
  peerOf(call: { getPeer(): string }): TlsPeer | undefined;
}

export interface AuthenticatedAgent {
  agent: AgentRecord;
  peer: TlsPeer;
  svidSerial: string;
}

export const normaliseSerial = (hex: string): string => hex.toLowerCase().replace(/^0+(?=.)/, '');

/** Verifies the caller's certificate chain and returns its SPIFFE ID (no agent checks). */
export function callerSpiffeId(deps: AgentAuthDeps, call: { getPeer(): string }): { id: string; peer: TlsPeer } {
  const peer = deps.peerOf(call);
  if (!peer || peer.certChain.length === 0) throw unauthenticated('a client certificate (X.509-SVID) is required');
  try {
    const verified = verifyX509SvidChain(peer.certChain, (td) => (td === deps.trustDomain ? deps.bundle().x509Authorities : undefined));
    return { id: verified.spiffeId.uri, peer };
  } catch (err) {
    throw unauthenticated(`client certificate rejected: ${errorMessage(err)}`);
  }
}

export async function authenticateAgent(deps: AgentAuthDeps, call: { getPeer(): string }): Promise<AuthenticatedAgent> {
  const { id, peer } = callerSpiffeId(deps, call);
  if (!id.startsWith(agentIdPrefix(deps.trustDomain))) throw permissionDenied('caller is not an agent');
  const serial = normaliseSerial(readCertificate(peer.certChain[0]!).serial);
  const known = (a: AgentRecord) =>
    normaliseSerial(a.svidSerial) === serial || (a.previousSvidSerial !== undefined && normaliseSerial(a.previousSvidSerial) === serial);
  let agent = deps.agent(id);
  if (!agent || !known(agent)) agent = await deps.loadAgent(id);
  if (!agent) throw permissionDenied('agent is evicted or was never attested');
  if (agent.banned) throw permissionDenied('agent is banned');
  if (!known(agent)) throw permissionDenied('agent SVID has been superseded; use the current one');
  if (agent.previousSvidSerial !== undefined && normaliseSerial(agent.svidSerial) === serial && deps.confirmRenewal) {
    await deps.confirmRenewal(agent);
  }
  return { agent, peer, svidSerial: serial };
}
