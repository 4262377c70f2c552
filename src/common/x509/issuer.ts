// A CA prepared for signing: everything about the CA that every issued certificate repeats
// (issuer Name, AKID, signature algorithm, validity cap) is decoded and encoded once here.
import type { KeyObject, X509Certificate } from 'node:crypto';
import { EmblemError } from '../errors.js';
import { parseSpiffeId } from '../spiffe-id.js';
import { signData, signingAlgorithmFor, verifyData, type SignatureAlgorithm } from './algorithms.js';
import { hasKeyUsage, openX509, parseCertificate, type ParsedCertificate } from './cert-parse.js';
import { authorityKeyIdentifier } from './extensions.js';
import { importSpkiDer, keyKindOf, type KeyKind } from './keys.js';
import { keyIdentifier } from './spki.js';

export interface Issuer {
  readonly certificateDer: Buffer;
  readonly certificate: ParsedCertificate;
  readonly privateKey: KeyObject;
  readonly keyKind: KeyKind;
  readonly algorithm: SignatureAlgorithm;
  /** The CA's subject Name DER: the issuer field of everything it signs. */
  readonly subjectDer: Buffer;
  /** The CA's subject key identifier (its SKID extension, or computed by RFC 5280 method 1). */
  readonly skid: Buffer;
  /** Unix seconds; issued certificates never outlive the CA. */
  readonly notBefore: number;
  readonly notAfter: number;
  /** Trust domain named by the CA's SPIFFE ID (URI SAN), if it has one. */
  readonly trustDomain?: string;
  readonly selfSigned: boolean;
  /**
   * Certificates to send after a leaf this CA issues (Workload API x509_svid order): empty for a
   * self-signed root, else this CA and then `chainAbove` (the upstream intermediates).
   */
  readonly intermediates: readonly Buffer[];
  /** Pre-encoded AuthorityKeyIdentifier extension for issued certificates. */
  readonly authorityKeyIdExtension: Buffer;
}

/**
 * Checks a CA certificate and its private key and precomputes what signing needs.
 * `chainAbove` lists the certificates above this CA, nearest first, excluding the root.
 */
export function prepareIssuer(caCertificateDer: Buffer, caPrivateKey: KeyObject, chainAbove: Buffer[] = []): Issuer {
  const cert = parseCertificate(caCertificateDer, 'CA certificate');
  if (!cert.basicConstraints?.ca) throw new EmblemError('invalid_argument', 'CA certificate does not have basicConstraints cA=true');
  if (cert.keyUsage !== undefined && !hasKeyUsage(cert, 'keyCertSign')) {
    throw new EmblemError('invalid_argument', 'CA certificate keyUsage does not allow keyCertSign');
  }
  if (caPrivateKey.type !== 'private') throw new EmblemError('invalid_argument', 'CA private key is not a private key');
  const keyKind = keyKindOf(caPrivateKey);
  const algorithm = signingAlgorithmFor(keyKind);
  const caX509 = openX509(caCertificateDer, 'CA certificate');
  const caPublicKey = importSpkiDer(cert.spkiDer);
  const probe = Buffer.from('emblem issuer key check');
  if (!verifyData(algorithm, caPublicKey, probe, signData(algorithm, caPrivateKey, probe))) {
    throw new EmblemError('invalid_argument', 'CA private key does not match the CA certificate');
  }
  const selfSigned = cert.subjectDer.equals(cert.issuerDer) && signedBy(caX509, caPublicKey);
  if (selfSigned && chainAbove.length > 0) {
    throw new EmblemError('invalid_argument', 'a self-signed CA cannot have certificates above it');
  }
  checkChainAbove(caX509, chainAbove);
  const skid = cert.skid ?? keyIdentifier(cert.publicKeyBits);
  return {
    certificateDer: caCertificateDer,
    certificate: cert,
    privateKey: caPrivateKey,
    keyKind,
    algorithm,
    subjectDer: cert.subjectDer,
    skid,
    notBefore: cert.notBefore,
    notAfter: cert.notAfter,
    trustDomain: trustDomainOfCa(cert),
    selfSigned,
    intermediates: selfSigned ? [] : [caCertificateDer, ...chainAbove],
    authorityKeyIdExtension: authorityKeyIdentifier(skid),
  };
}

function checkChainAbove(ca: X509Certificate, chainAbove: Buffer[]): void {
  let child = ca;
  chainAbove.forEach((der, i) => {
    const parsed = parseCertificate(der, `certificate ${i} above the CA`);
    const parent = openX509(der, `certificate ${i} above the CA`);
    if (!child.checkIssued(parent) || !signedBy(child, importSpkiDer(parsed.spkiDer))) {
      throw new EmblemError('invalid_argument', `certificate ${i} above the CA did not issue the certificate below it`);
    }
    child = parent;
  });
}

function signedBy(cert: X509Certificate, key: KeyObject): boolean {
  try {
    return cert.verify(key);
  } catch {
    return false;
  }
}

function trustDomainOfCa(cert: ParsedCertificate): string | undefined {
  if (cert.uris.length !== 1) return undefined;
  try {
    return parseSpiffeId(cert.uris[0]!).trustDomain;
  } catch {
    return undefined;
  }
}
