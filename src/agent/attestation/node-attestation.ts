// Node attestation over the bidirectional AttestAgent stream:
//   agent → params {join_token | x509pop cert_chain, CSR}
//   server → challenge (x509pop)  agent → challenge_response = signChallenge(x509pop key, challenge)
//   server → result {agent ID, agent SVID chain, bundle}
// The result is checked before it is used: the agent ID is an agent ID of our trust domain, the
// SVID's leaf carries it and the chain verifies against the bundle that came with it.
import type { KeyObject } from 'node:crypto';
import { EmblemError, errorMessage, invalidArgument } from '../../common/errors.js';
import { fromGrpcError } from '../../common/grpc/status.js';
import { decodeSpiffeBundle } from '../../common/bundle-json.js';
import { agentIdPrefix, parseSpiffeIdInTrustDomain } from '../../common/spiffe-id.js';
import type { TrustBundle } from '../../common/trust-bundle.js';
import { splitDerCertificates } from '../../common/x509/chain.js';
import { verifyX509SvidChain } from '../../common/x509/validate.js';
import { signChallenge } from '../../common/x509pop-challenge.js';
import type { AttestAgentResponseMsg, AttestParamsMsg } from '../client/messages.js';
import type { AttestStream, AttestTransport } from '../client/server-client.js';
import { serverCertificateMismatch } from '../client/tls-credentials.js';

export type NodeAttestor = { joinToken: string } | { x509pop: { certChain: Buffer[]; privateKey: KeyObject } };

export interface AttestationResult {
  agentId: string;
  /** DER, leaf first. */
  svidChain: Buffer[];
  bundle: TrustBundle;
}

export const DEFAULT_ATTEST_TIMEOUT_MS = 60_000;
/** The protocol has one challenge; a few are tolerated, an endless stream of them is not. */
const MAX_CHALLENGES = 3;

function attestParams(attestor: NodeAttestor, csr: Buffer): AttestParamsMsg {
  if ('joinToken' in attestor) {
    if (!attestor.joinToken) throw invalidArgument('join token is empty');
    return { join_token: attestor.joinToken, csr };
  }
  if (attestor.x509pop.certChain.length === 0) throw invalidArgument('x509pop certificate chain is empty');
  return { x509pop: { cert_chain: attestor.x509pop.certChain }, csr };
}

/** Checks an attestation result and turns it into the agent's form. */
export function checkAttestResult(trustDomain: string, agentId: string, svidChain: Buffer, bundleJson: Buffer, now = Date.now()): AttestationResult {
  const fail = (why: string, cause?: unknown): EmblemError =>
    new EmblemError('internal', `server returned an unusable attestation result: ${why}`, { cause });
  let id: string;
  try {
    id = parseSpiffeIdInTrustDomain(agentId, trustDomain).uri;
  } catch (err) {
    throw fail(errorMessage(err), err);
  }
  if (!id.startsWith(agentIdPrefix(trustDomain))) throw fail(`${id} is not an agent ID`);
  let bundle: TrustBundle;
  let chain: Buffer[];
  try {
    bundle = decodeSpiffeBundle(trustDomain, bundleJson);
    chain = splitDerCertificates(svidChain);
  } catch (err) {
    throw fail(errorMessage(err), err);
  }
  try {
    const verified = verifyX509SvidChain(chain, (td) => (td === trustDomain ? bundle.x509Authorities : undefined), now);
    if (verified.spiffeId.uri !== id) throw new Error(`the SVID is for ${verified.spiffeId.uri}, not ${id}`);
  } catch (err) {
    throw fail(`agent SVID: ${errorMessage(err)}`, err);
  }
  return { agentId: id, svidChain: chain, bundle };
}

/**
 * Attests the agent. `csr` is a PKCS#10 request for the agent's new key; the caller checks that the
 * returned SVID carries that key (see agent-svid.ts).
 */
export async function attestAgent(
  transport: AttestTransport,
  attestor: NodeAttestor,
  csr: Buffer,
  options: { timeoutMs?: number } = {},
): Promise<AttestationResult> {
  const params = attestParams(attestor, csr);
  const stream = await transport.openAttestStream();
  const timeoutMs = options.timeoutMs ?? DEFAULT_ATTEST_TIMEOUT_MS;

  return new Promise<AttestationResult>((resolve, reject) => {
    let settled = false;
    let challenges = 0;
    const finish = (err: unknown, result?: AttestationResult): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      if (err) {
        stream.cancel();
        reject(err);
      } else {
        stream.end();
        resolve(result!);
      }
    };
    const timer = setTimeout(
      () => finish(new EmblemError('deadline_exceeded', `attestation did not finish within ${timeoutMs} ms`)),
      timeoutMs,
    );

    stream.on('data', (msg: AttestAgentResponseMsg) => {
      try {
        if (settled) return;
        checkPeer(stream, transport.trustDomain);
        if (msg.result) {
          const r = msg.result;
          finish(undefined, checkAttestResult(transport.trustDomain, r.agent_id, r.svid_chain, r.bundle));
        } else if (msg.challenge) {
          if (!('x509pop' in attestor)) throw new EmblemError('internal', 'server sent an x509pop challenge to a join-token agent');
          if (++challenges > MAX_CHALLENGES) throw new EmblemError('internal', 'server sent too many attestation challenges');
          stream.write({ challenge_response: signChallenge(attestor.x509pop.privateKey, msg.challenge) });
        } else {
          throw new EmblemError('internal', 'server sent an empty attestation message');
        }
      } catch (err) {
        finish(err);
      }
    });
    stream.on('error', (err) => finish(fromGrpcError(err)));
    stream.on('end', () => finish(new EmblemError('unavailable', 'server closed the attestation stream without a result')));
    stream.write({ params });
  });
}

/** The attested server must be the server of our trust domain (also under --insecure-bootstrap). */
function checkPeer(stream: AttestStream, trustDomain: string): void {
  const cert = stream.getAuthContext()?.sslPeerCertificate;
  if (!cert) return;
  const reason = serverCertificateMismatch(trustDomain, cert.raw);
  if (reason) throw new EmblemError('permission_denied', `attestation aborted: ${reason}`);
}
