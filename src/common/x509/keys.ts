// Key generation, import/export and the key-type policy shared by CSR checks and issuance.
import { createECDH, createPrivateKey, createPublicKey, type KeyObject } from 'node:crypto';
import { EmblemError } from '../errors.js';

export interface KeyPair {
  privateKey: KeyObject;
  publicKey: KeyObject;
}

/** Key types Emblem accepts in CSRs, leaves and CAs. */
export type KeyKind = 'ec-p256' | 'ec-p384' | 'rsa' | 'ed25519';

export const MIN_RSA_BITS = 2048;
/** Bigger RSA keys only make signature checks slow (a cheap denial of service); nobody needs them. */
export const MAX_RSA_BITS = 8192;

/**
 * A fresh EC P-256 key pair (the default workload and CA key type).
 *
 * Generated through ECDH and imported from JWK rather than with generateKeyPairSync, for two
 * reasons measured on Node 20.20 / OpenSSL 3.0:
 * - a JWK export (KeyObject.export({format: 'jwk'})) of a key from generateKeyPairSync can
 *   deadlock the process: the export holds the key's mutex while allocating, and a GC at that moment
 *   finalizes the key's KeyGenJob, whose destructor takes the same mutex (seen in gdb:
 *   ExportJWKEcKey -> GC -> ~KeyGenJob -> uv_mutex_lock);
 * - the DER exports every SVID key needs (SPKI for the CSR, PKCS#8 for the Workload API and the
 *   store) cost 50-100 µs each through OpenSSL 3's encoder framework, while here the DER is laid
 *   out from the raw key (the exact bytes OpenSSL produces) once, at generation, and
 *   exportSpkiDer / exportPkcs8Der return it.
 */
export function generateKeyPair(): KeyPair {
  const privateKey = generateP256PrivateKey();
  const publicKey = createPublicKey(privateKey);
  knownEncodings.set(publicKey, knownEncodings.get(privateKey)!);
  return { privateKey, publicKey };
}

/**
 * A fresh P-256 private key alone (exportSpkiDer and createCsr work from it), for callers that never
 * need a public KeyObject: one native key object per key instead of two.
 */
export function generateP256PrivateKey(): KeyObject {
  // One ECDH object for all: generateKeys() replaces its key pair each time. A native object per
  // key would pile up until the next GC (V8 does not see their size), and an agent making 1,000
  // keys at once kept ~10 MB more resident afterwards.
  const point = sharedEcdh.generateKeys();
  const d = leftPad(sharedEcdh.getPrivateKey(), P256.size);
  const privateKey = createPrivateKey({
    key: { kty: 'EC', crv: 'P-256', d: d.toString('base64url'), x: point.toString('base64url', 1, 33), y: point.toString('base64url', 33) },
    format: 'jwk',
  });
  knownEncodings.set(privateKey, p256Encodings(d, point));
  return privateKey;
}

const sharedEcdh = createECDH('prime256v1');

/** DER of the keys made by generateKeyPair, keyed by both halves. */
const knownEncodings = new WeakMap<KeyObject, { spki: Buffer; pkcs8: Buffer }>();

// RFC 5480 SPKI and RFC 5208 PKCS#8 around an RFC 5915 ECPrivateKey (version 1, the scalar and the
// public key; the curve is in the algorithm identifier), byte for byte as OpenSSL writes them.
const P256 = {
  size: 32,
  spkiPrefix: Buffer.from('3059301306072a8648ce3d020106082a8648ce3d030107034200', 'hex'),
  pkcs8Prefix: Buffer.from('308187020100301306072a8648ce3d020106082a8648ce3d030107046d306b0201010420', 'hex'),
  pkcs8BeforePoint: Buffer.from('a144034200', 'hex'),
};

/**
 * True when `der` is a P-256 SPKI with an uncompressed point, byte for byte as OpenSSL exports it
 * (so a certificate may carry these bytes as they are, without importing and re-exporting the key).
 */
export function isCanonicalP256Spki(der: Buffer): boolean {
  return der.length === P256.spkiPrefix.length + 65 && der[P256.spkiPrefix.length] === 4 && der.subarray(0, P256.spkiPrefix.length).equals(P256.spkiPrefix);
}

/** SPKI and PKCS#8 DER of a P-256 key from its private scalar (32 bytes) and uncompressed point (65 bytes). */
export function p256Encodings(d: Buffer, point: Buffer): { spki: Buffer; pkcs8: Buffer } {
  if (d.length !== P256.size || point.length !== 1 + 2 * P256.size || point[0] !== 4) {
    throw new EmblemError('invalid_argument', 'P-256 key material must be a 32-byte scalar and a 65-byte uncompressed point');
  }
  return {
    spki: Buffer.concat([P256.spkiPrefix, point]),
    pkcs8: Buffer.concat([P256.pkcs8Prefix, d, P256.pkcs8BeforePoint, point]),
  };
}

function leftPad(bytes: Buffer, size: number): Buffer {
  return bytes.length >= size ? bytes : Buffer.concat([Buffer.alloc(size - bytes.length), bytes]);
}

/** Unencrypted PKCS#8 DER, the form the Workload API returns (x509_svid_key). */
export function exportPkcs8Der(privateKey: KeyObject): Buffer {
  if (privateKey.type !== 'private') throw new EmblemError('invalid_argument', 'exportPkcs8Der needs a private key');
  const known = knownEncodings.get(privateKey);
  return known ? Buffer.from(known.pkcs8) : privateKey.export({ format: 'der', type: 'pkcs8' });
}

/** SubjectPublicKeyInfo DER of a public key, or of the public half of a private key. */
export function exportSpkiDer(key: KeyObject): Buffer {
  const known = knownEncodings.get(key);
  if (known) return Buffer.from(known.spki);
  const pub = key.type === 'private' ? createPublicKey(key) : key;
  if (pub.type !== 'public') throw new EmblemError('invalid_argument', 'exportSpkiDer needs an asymmetric key');
  return pub.export({ format: 'der', type: 'spki' });
}

export function importPkcs8Der(der: Buffer): KeyObject {
  try {
    return createPrivateKey({ key: der, format: 'der', type: 'pkcs8' });
  } catch (err) {
    throw new EmblemError('invalid_argument', 'not a valid unencrypted PKCS#8 DER private key', { cause: err });
  }
}

export function importSpkiDer(der: Buffer): KeyObject {
  try {
    return createPublicKey({ key: der, format: 'der', type: 'spki' });
  } catch (err) {
    throw new EmblemError('invalid_argument', 'not a valid SubjectPublicKeyInfo DER public key', { cause: err });
  }
}

/** PKCS#8 PEM ("-----BEGIN PRIVATE KEY-----"). */
export function privateKeyToPem(privateKey: KeyObject): string {
  if (privateKey.type !== 'private') throw new EmblemError('invalid_argument', 'privateKeyToPem needs a private key');
  return privateKey.export({ format: 'pem', type: 'pkcs8' }) as string;
}

/** Reads an unencrypted PEM private key (PKCS#8, SEC1 "EC PRIVATE KEY" or PKCS#1 "RSA PRIVATE KEY"). */
export function privateKeyFromPem(pem: string): KeyObject {
  try {
    return createPrivateKey({ key: pem, format: 'pem' });
  } catch (err) {
    throw new EmblemError('invalid_argument', 'not a valid unencrypted PEM private key', { cause: err });
  }
}

/** Classifies a key and enforces the key policy; throws invalid_argument for anything else. */
export function keyKindOf(key: KeyObject): KeyKind {
  const type = key.asymmetricKeyType;
  if (type === 'ec') {
    const curve = key.asymmetricKeyDetails?.namedCurve;
    if (curve === 'prime256v1') return 'ec-p256';
    if (curve === 'secp384r1') return 'ec-p384';
    throw new EmblemError('invalid_argument', `EC curve ${curve ?? '(unknown)'} is not supported (use P-256 or P-384)`);
  }
  if (type === 'rsa') {
    checkRsaBits(key.asymmetricKeyDetails?.modulusLength ?? 0);
    return 'rsa';
  }
  if (type === 'ed25519') return 'ed25519';
  throw new EmblemError('invalid_argument', `key type ${type ?? '(unknown)'} is not supported (use EC P-256/P-384, RSA or Ed25519)`);
}

export function checkRsaBits(bits: number): void {
  if (bits < MIN_RSA_BITS) throw new EmblemError('invalid_argument', `RSA key of ${bits} bits is too small (minimum ${MIN_RSA_BITS})`);
  if (bits > MAX_RSA_BITS) throw new EmblemError('invalid_argument', `RSA key of ${bits} bits is too large (maximum ${MAX_RSA_BITS})`);
}
