// Mints X509-SVID leaves (SPIFFE X509-SVID §3-§4, SPIRE's workload profile). This is the issuance
// hot path: everything fixed is encoded once at module load or in prepareIssuer, and each mint is
// a handful of buffer copies plus one crypto.sign.
import { KeyObject } from 'node:crypto';
import { EmblemError } from '../errors.js';
import { MAX_GENERATED_ID_BYTES, parseWorkloadSpiffeId } from '../spiffe-id.js';
import { randomSerial, signCertificate } from './certificate.js';
import {
  basicConstraints,
  extKeyUsageServerClient,
  keyUsage,
  subjectAltName,
  subjectKeyIdentifier,
} from './extensions.js';
import type { Issuer } from './issuer.js';
import { exportSpkiDer, type KeyKind } from './keys.js';
import { encodeName, MAX_COMMON_NAME } from './names.js';
import { keyIdentifier, parseSpki } from './spki.js';

export interface MintX509SvidParams {
  /** The workload's SPIFFE ID; must have a non-root path. */
  spiffeId: string;
  /** The workload's public key, or its SubjectPublicKeyInfo DER (e.g. parseCsr().spkiDer). */
  publicKey: KeyObject | Buffer;
  /** Extra DNS SANs; the first also becomes the subject CN (as SPIRE does). */
  dnsNames?: string[];
  ttlSeconds: number;
  /** Milliseconds since the epoch; defaults to Date.now(). */
  now?: number;
}

export interface MintedX509Svid {
  der: Buffer;
  /** Lowercase hex, 32 digits. */
  serial: string;
  /** Unix seconds. */
  notBefore: number;
  notAfter: number;
}

/** SPIRE backdates notBefore by 10 s to absorb clock skew between server and peers. */
export const BACKDATE_SECONDS = 10;

const LEAF_ORGANIZATION = 'Emblem';
const FIXED_SUBJECT = encodeName({ country: 'US', organization: LEAF_ORGANIZATION });

// Key usage per key type. SPIFFE requires digitalSignature and allows keyEncipherment and
// keyAgreement; SPIRE sets all three regardless of key type. RFC 5280 §4.2.1.3 ties
// keyEncipherment to key transport (RSA) and keyAgreement to key agreement (EC Diffie-Hellman), and
// an Ed25519 key can do neither, so we set only what the key can actually do. TLS 1.3 (and 1.2 with
// ECDHE) only needs digitalSignature; validators (go-spiffe, ours) check nothing else.
const KEY_USAGE_BY_KIND: Record<KeyKind, Buffer> = {
  'ec-p256': keyUsage(['digitalSignature', 'keyAgreement']),
  'ec-p384': keyUsage(['digitalSignature', 'keyAgreement']),
  rsa: keyUsage(['digitalSignature', 'keyEncipherment']),
  ed25519: keyUsage(['digitalSignature']),
};
const LEAF_BASIC_CONSTRAINTS = basicConstraints(false);
const LEAF_EXT_KEY_USAGE = extKeyUsageServerClient();

const DNS_LABEL = /^[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?$/;

/** Host names (RFC 1123 labels), optionally with one leading "*." wildcard label. */
export function checkDnsName(name: string): void {
  const bad = (why: string): EmblemError => new EmblemError('invalid_argument', `DNS name ${JSON.stringify(name.slice(0, 80))} ${why}`);
  if (typeof name !== 'string' || name.length === 0) throw new EmblemError('invalid_argument', 'DNS name is empty');
  if (name.length > 253) throw bad('is longer than 253 characters');
  const labels = name.split('.');
  labels.forEach((label, i) => {
    if (label === '*' && i === 0 && labels.length > 2) return;
    if (label === '*') throw bad('has a wildcard that is not the leftmost label of a name with at least 3 labels');
    if (!DNS_LABEL.test(label)) throw bad(`has an invalid label ${JSON.stringify(label.slice(0, 80))}`);
  });
}

/** Issues one X509-SVID leaf signed by `issuer`. */
export function mintX509Svid(issuer: Issuer, params: MintX509SvidParams): MintedX509Svid {
  const id = parseWorkloadSpiffeId(params.spiffeId);
  if (id.uri.length > MAX_GENERATED_ID_BYTES) {
    throw new EmblemError('invalid_argument', `SPIFFE ID is longer than ${MAX_GENERATED_ID_BYTES} bytes`);
  }
  const dnsNames = params.dnsNames ?? [];
  for (const name of dnsNames) checkDnsName(name);
  const ttl = params.ttlSeconds;
  if (!Number.isSafeInteger(ttl) || ttl <= 0) throw new EmblemError('invalid_argument', `ttlSeconds must be a positive integer, got ${ttl}`);

  const nowSeconds = Math.floor((params.now ?? Date.now()) / 1000);
  if (nowSeconds >= issuer.notAfter) {
    throw new EmblemError('failed_precondition', `the issuing CA expired at ${new Date(issuer.notAfter * 1000).toISOString()}`);
  }
  const notBefore = nowSeconds - BACKDATE_SECONDS;
  const notAfter = Math.min(nowSeconds + ttl, issuer.notAfter);

  const spkiDer = params.publicKey instanceof KeyObject ? exportSpkiDer(params.publicKey) : params.publicKey;
  if (!Buffer.isBuffer(spkiDer)) throw new EmblemError('invalid_argument', 'publicKey must be a KeyObject or SPKI DER Buffer');
  const spki = parseSpki(spkiDer, 'workload public key');

  // RFC 5280 §4.1.2.6: CN is bounded to 64 characters; longer first DNS names stay SAN-only.
  const first = dnsNames[0];
  const subjectName =
    first !== undefined && first.length <= MAX_COMMON_NAME
      ? encodeName({ country: 'US', organization: LEAF_ORGANIZATION, commonName: first })
      : FIXED_SUBJECT;
  if (subjectName.equals(issuer.subjectDer)) {
    throw new EmblemError('failed_precondition', 'the leaf subject would equal the CA subject; give the CA a distinct subject');
  }

  const serial = randomSerial();
  const der = signCertificate(
    {
      serial,
      algorithm: issuer.algorithm,
      issuerName: issuer.subjectDer,
      notBefore,
      notAfter,
      subjectName,
      spkiDer,
      extensions: [
        KEY_USAGE_BY_KIND[spki.kind],
        LEAF_EXT_KEY_USAGE,
        LEAF_BASIC_CONSTRAINTS,
        subjectKeyIdentifier(keyIdentifier(spki.publicKeyBits)),
        issuer.authorityKeyIdExtension,
        // Not critical: the subject is never empty (X509-SVID §2 only requires critical for an empty subject).
        subjectAltName([id.uri], dnsNames, false),
      ],
    },
    issuer.privateKey,
  );
  return { der, serial: serial.toString('hex'), notBefore, notAfter };
}
