// A readable summary of a certificate, for the CLI, logs, the datastore and tests. Structure comes
// from our DER parser; OpenSSL (crypto.X509Certificate) must accept the certificate too and renders
// the subject and issuer names.
import { hasKeyUsage, openX509, parseCertificate } from './cert-parse.js';
import { KEY_USAGE_BITS, OID, type KeyUsageName } from './oids.js';

export type KeyUsageFlags = Record<KeyUsageName, boolean>;

export interface CertificateInfo {
  /** Lowercase hex, no leading zero bytes. */
  serial: string;
  /** Unix seconds. */
  notBefore: number;
  notAfter: number;
  isCa: boolean;
  pathLen?: number;
  uris: string[];
  dnsNames: string[];
  /** Lowercase hex. */
  skid?: string;
  akid?: string;
  /** RFC 2253-like rendering by OpenSSL, attributes joined with ", " (e.g. "C=US, O=Emblem"). */
  subject: string;
  issuer: string;
  subjectDer: Buffer;
  issuerDer: Buffer;
  /** Undefined when the certificate has no keyUsage extension. */
  keyUsage?: KeyUsageFlags;
  keyUsageCritical: boolean;
  /** Extended key usage OIDs, if the extension is present. */
  extKeyUsage?: string[];
  selfIssued: boolean;
  signatureAlgorithm: string;
  /** SHA-256 fingerprint, lowercase hex without separators. */
  fingerprint256: string;
}

/** Summarizes a DER certificate; malformed input is EmblemError('invalid_argument'). */
export function readCertificate(der: Buffer): CertificateInfo {
  const cert = parseCertificate(der);
  const x509 = openX509(der);
  let keyUsage: KeyUsageFlags | undefined;
  if (cert.keyUsage !== undefined) {
    keyUsage = {} as KeyUsageFlags;
    for (const name of Object.keys(KEY_USAGE_BITS) as KeyUsageName[]) keyUsage[name] = hasKeyUsage(cert, name);
  }
  return {
    serial: cert.serial,
    notBefore: cert.notBefore,
    notAfter: cert.notAfter,
    isCa: cert.basicConstraints?.ca ?? false,
    pathLen: cert.basicConstraints?.pathLen,
    uris: cert.uris,
    dnsNames: cert.dnsNames,
    skid: cert.skid?.toString('hex'),
    akid: cert.akid?.toString('hex'),
    subject: x509.subject.split('\n').join(', '),
    issuer: x509.issuer.split('\n').join(', '),
    subjectDer: cert.subjectDer,
    issuerDer: cert.issuerDer,
    keyUsage,
    keyUsageCritical: cert.extensions.some((e) => e.oid === OID.keyUsage && e.critical),
    extKeyUsage: cert.extKeyUsage,
    selfIssued: cert.subjectDer.equals(cert.issuerDer),
    signatureAlgorithm: cert.signatureAlgorithm,
    fingerprint256: x509.fingerprint256.replace(/:/g, '').toLowerCase(),
  };
}
