// x509pop node attestation: the agent proves possession of the private key of an X.509
// certificate. Two trust models:
// - CA-signed: the certificate chains (through at most 4 presented intermediates) to one of the
//   configured CA certificates;
// - pinned: the certificate is self-signed and its SHA-256 fingerprint is on the configured list
//   (for a small, fixed set of machines).
// The proof itself is a signature over a fresh server nonce (src/common/x509pop-challenge.ts).
import { createHash, X509Certificate } from 'node:crypto';
import { permissionDenied } from '../../common/errors.js';
import type { Selector } from '../../common/selectors.js';
import { agentIdPrefix } from '../../common/spiffe-id.js';

export const MAX_X509POP_INTERMEDIATES = 4;

export interface X509PopTrust {
  /** DER CA certificates of the CA-signed model. */
  caCertificates: Buffer[];
  /** Lowercase hex SHA-256 fingerprints of pinned self-signed certificates. */
  pinnedSha256: ReadonlySet<string>;
}

export interface X509PopIdentity {
  agentId: string;
  leaf: X509Certificate;
  selectors: Selector[];
}

const sha1 = (der: Buffer): string => createHash('sha1').update(der).digest('hex');
const sha256 = (der: Buffer): string => createHash('sha256').update(der).digest('hex');

function parse(der: Buffer, what: string): X509Certificate {
  try {
    return new X509Certificate(der);
  } catch {
    throw permissionDenied(`x509pop: ${what} is not a valid certificate`);
  }
}

function checkValidity(cert: X509Certificate, what: string, nowMs: number): void {
  if (Date.parse(cert.validFrom) > nowMs) throw permissionDenied(`x509pop: ${what} is not yet valid`);
  if (Date.parse(cert.validTo) < nowMs) throw permissionDenied(`x509pop: ${what} has expired`);
}

function issuedBy(child: X509Certificate, issuer: X509Certificate): boolean {
  return issuer.ca && child.checkIssued(issuer) && child.verify(issuer.publicKey);
}

/** Verifies the presented chain under either trust model and derives the agent's ID and selectors. */
export function verifyX509PopChain(trustDomain: string, chainDer: Buffer[], trust: X509PopTrust, nowMs = Date.now()): X509PopIdentity {
  if (chainDer.length === 0) throw permissionDenied('x509pop: no certificate presented');
  if (chainDer.length > MAX_X509POP_INTERMEDIATES + 1) throw permissionDenied('x509pop: too many intermediate certificates');
  const chain = chainDer.map((der, i) => parse(der, i === 0 ? 'leaf certificate' : `intermediate ${i}`));
  const leaf = chain[0]!;
  if (leaf.ca) throw permissionDenied('x509pop: the leaf certificate is a CA certificate');
  chain.forEach((cert, i) => checkValidity(cert, i === 0 ? 'leaf certificate' : `intermediate ${i}`, nowMs));

  const leafSha256 = sha256(chainDer[0]!);
  const pinned = trust.pinnedSha256.has(leafSha256);
  const caFingerprints: string[] = [];
  if (pinned) {
    // Not checkIssued(): OpenSSL's issuer check wants keyCertSign, which a non-CA leaf with a
    // KeyUsage extension never has. Self-signed = same name and a signature by its own key.
    if (chain.length !== 1 || leaf.subject !== leaf.issuer || !leaf.verify(leaf.publicKey)) {
      throw permissionDenied('x509pop: a pinned certificate must be presented alone and be self-signed');
    }
  } else {
    for (let i = 0; i + 1 < chain.length; i++) {
      if (!issuedBy(chain[i]!, chain[i + 1]!)) throw permissionDenied(`x509pop: certificate ${i} is not signed by certificate ${i + 1}`);
    }
    const top = chain[chain.length - 1]!;
    const anchors = trust.caCertificates.map((der) => ({ der, cert: parse(der, 'configured CA certificate') }));
    const anchor = anchors.find((a) => a.cert.fingerprint256 === top.fingerprint256 || issuedBy(top, a.cert));
    if (!anchor) throw permissionDenied('x509pop: certificate does not chain to a trusted CA and is not pinned');
    checkValidity(anchor.cert, 'CA certificate', nowMs);
    for (let i = 1; i < chainDer.length; i++) caFingerprints.push(sha1(chainDer[i]!));
    if (anchor.cert.fingerprint256 !== top.fingerprint256) caFingerprints.push(sha1(anchor.der));
  }

  const selectors: Selector[] = [];
  const cn = /(?:^|\n)CN=([^\n]*)/.exec(leaf.subject)?.[1];
  if (cn) selectors.push({ type: 'x509pop', value: `subject:cn:${cn}` });
  for (const fp of caFingerprints) selectors.push({ type: 'x509pop', value: `ca:fingerprint:${fp}` });
  selectors.push({ type: 'x509pop', value: `serialnumber:${leaf.serialNumber.toLowerCase().replace(/^0+(?=.)/, '')}` });
  return { agentId: `${agentIdPrefix(trustDomain)}x509pop/${sha1(chainDer[0]!)}`, leaf, selectors };
}
