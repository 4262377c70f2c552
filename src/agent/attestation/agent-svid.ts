// Obtaining the agent's own X.509-SVID: a fresh key pair generated on the node, a CSR for it, then
// attestation (or renewal). The returned SVID must carry the new key and the agent's ID.
import { createPublicKey, type KeyObject } from 'node:crypto';
import { EmblemError } from '../../common/errors.js';
import type { TrustBundle } from '../../common/trust-bundle.js';
import { readCertificate } from '../../common/x509/cert-info.js';
import { openX509 } from '../../common/x509/cert-parse.js';
import { createCsr } from '../../common/x509/csr.js';
import { exportPkcs8Der, generateKeyPair, importPkcs8Der, type KeyPair } from '../../common/x509/keys.js';
import type { AttestTransport } from '../client/server-client.js';
import type { AttestationType, StoredAgentSvid } from '../storage/agent-store.js';
import { attestAgent, type NodeAttestor } from './node-attestation.js';

export interface AgentKeyRequest {
  keyPair: KeyPair;
  csr: Buffer;
}

export function newAgentKeyRequest(): AgentKeyRequest {
  const keyPair = generateKeyPair();
  return { keyPair, csr: createCsr(keyPair) };
}

/** Throws unless the leaf of `chain` certifies `publicKey` and (if given) names `agentId`. */
export function checkAgentSvid(chain: readonly Buffer[], publicKey: KeyObject, agentId?: string): void {
  const leaf = chain[0];
  if (!leaf) throw new EmblemError('internal', 'server returned an empty agent SVID chain');
  const leafKey = openX509(leaf, 'agent SVID').publicKey.export({ type: 'spki', format: 'der' });
  const ours = (publicKey.type === 'private' ? createPublicKey(publicKey) : publicKey).export({ type: 'spki', format: 'der' });
  if (!leafKey.equals(ours)) throw new EmblemError('internal', 'server returned an agent SVID for a different key');
  if (agentId !== undefined) {
    const uris = readCertificate(leaf).uris;
    if (uris.length !== 1 || uris[0] !== agentId) {
      throw new EmblemError('internal', `server returned an agent SVID for ${uris.join(', ') || 'no SPIFFE ID'}, expected ${agentId}`);
    }
  }
}

/** Validity of the agent SVID's leaf, Unix seconds. */
export function agentSvidValidity(svid: Pick<StoredAgentSvid, 'chain'>): { notBefore: number; notAfter: number } {
  const info = readCertificate(svid.chain[0]!);
  return { notBefore: info.notBefore, notAfter: info.notAfter };
}

export function attestationTypeOf(attestor: NodeAttestor): AttestationType {
  return 'joinToken' in attestor ? 'join_token' : 'x509pop';
}

export function agentPrivateKey(svid: StoredAgentSvid): KeyObject {
  return importPkcs8Der(svid.privateKeyPkcs8);
}

/** Attests with a fresh key and returns the SVID to store, with the bundle that came with it. */
export async function attestWithNewKey(
  transport: AttestTransport,
  attestor: NodeAttestor,
): Promise<{ svid: StoredAgentSvid; bundle: TrustBundle }> {
  const { keyPair, csr } = newAgentKeyRequest();
  const result = await attestAgent(transport, attestor, csr);
  checkAgentSvid(result.svidChain, keyPair.publicKey, result.agentId);
  return {
    svid: {
      agentId: result.agentId,
      attestationType: attestationTypeOf(attestor),
      chain: result.svidChain,
      privateKeyPkcs8: exportPkcs8Der(keyPair.privateKey),
    },
    bundle: result.bundle,
  };
}
