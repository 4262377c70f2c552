// Signature algorithms: which one a signing key uses, and which (algorithm, key) pairs a
// signature check accepts.
import { sign, verify, type KeyObject } from 'node:crypto';
import { nullValue, oid, sequence } from './der.js';
import type { KeyKind } from './keys.js';
import { OID } from './oids.js';

export interface SignatureAlgorithm {
  readonly oid: string;
  /** Digest for crypto.sign/verify; null for Ed25519 (pure EdDSA). */
  readonly hash: 'sha256' | 'sha384' | 'sha512' | null;
  /** AlgorithmIdentifier DER, as it appears in certificates and CSRs. */
  readonly identifier: Buffer;
  /** Key kinds this algorithm may be used with. */
  readonly keyKinds: readonly KeyKind[];
  readonly name: string;
}

function alg(name: string, dotted: string, hash: SignatureAlgorithm['hash'], keyKinds: KeyKind[], withNull: boolean): SignatureAlgorithm {
  // RFC 5758 §3.2: ECDSA identifiers omit parameters; RFC 4055 §5: RSA ones carry NULL; RFC 8410: Ed25519 none.
  const identifier = withNull ? sequence(oid(dotted), nullValue()) : sequence(oid(dotted));
  return { name, oid: dotted, hash, identifier, keyKinds };
}

const ECDSA_SHA256 = alg('ecdsa-with-SHA256', OID.ecdsaWithSha256, 'sha256', ['ec-p256', 'ec-p384'], false);
const ECDSA_SHA384 = alg('ecdsa-with-SHA384', OID.ecdsaWithSha384, 'sha384', ['ec-p256', 'ec-p384'], false);
const RSA_SHA256 = alg('sha256WithRSAEncryption', OID.sha256WithRsa, 'sha256', ['rsa'], true);
const RSA_SHA384 = alg('sha384WithRSAEncryption', OID.sha384WithRsa, 'sha384', ['rsa'], true);
const RSA_SHA512 = alg('sha512WithRSAEncryption', OID.sha512WithRsa, 'sha512', ['rsa'], true);
const ED25519 = alg('Ed25519', OID.ed25519, null, ['ed25519'], false);

const BY_OID = new Map<string, SignatureAlgorithm>(
  [ECDSA_SHA256, ECDSA_SHA384, RSA_SHA256, RSA_SHA384, RSA_SHA512, ED25519].map((a) => [a.oid, a]),
);

/** The algorithm Emblem signs with for a key kind (hash strength matched to the curve). */
export function signingAlgorithmFor(kind: KeyKind): SignatureAlgorithm {
  switch (kind) {
    case 'ec-p256':
      return ECDSA_SHA256;
    case 'ec-p384':
      return ECDSA_SHA384;
    case 'rsa':
      return RSA_SHA256;
    case 'ed25519':
      return ED25519;
  }
}

export function signatureAlgorithmByOid(dotted: string): SignatureAlgorithm | undefined {
  return BY_OID.get(dotted);
}

/** Signs with the algorithm; ECDSA signatures come out DER-encoded as X.509 wants them. */
export function signData(algorithm: SignatureAlgorithm, privateKey: KeyObject, data: Buffer): Buffer {
  return sign(algorithm.hash, data, privateKey);
}

/** False for a bad signature, including one OpenSSL cannot even decode. */
export function verifyData(algorithm: SignatureAlgorithm, publicKey: KeyObject, data: Buffer, signature: Buffer): boolean {
  try {
    return verify(algorithm.hash, data, publicKey, signature);
  } catch {
    return false;
  }
}
