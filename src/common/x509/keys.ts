// Key generation, import/export and the key-type policy shared by CSR checks and issuance.
import { createPrivateKey, createPublicKey, generateKeyPairSync, type KeyObject } from 'node:crypto';
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

/** A fresh EC P-256 key pair (the default workload and CA key type). */
export function generateKeyPair(): KeyPair {
  return generateKeyPairSync('ec', { namedCurve: 'P-256' });
}

/** Unencrypted PKCS#8 DER, the form the Workload API returns (x509_svid_key). */
export function exportPkcs8Der(privateKey: KeyObject): Buffer {
  if (privateKey.type !== 'private') throw new EmblemError('invalid_argument', 'exportPkcs8Der needs a private key');
  return ecDer(privateKey, 'pkcs8') ?? privateKey.export({ format: 'der', type: 'pkcs8' });
}

/** SubjectPublicKeyInfo DER of a public key, or of the public half of a private key. */
export function exportSpkiDer(key: KeyObject): Buffer {
  if (key.type !== 'public' && key.type !== 'private') throw new EmblemError('invalid_argument', 'exportSpkiDer needs an asymmetric key');
  const fast = ecDer(key, 'spki');
  if (fast) return fast;
  return (key.type === 'private' ? createPublicKey(key) : key).export({ format: 'der', type: 'spki' });
}

// EC keys (every SVID key) are exported by placing the raw key material from a JWK export into the
// fixed DER layout OpenSSL itself produces (RFC 5480 SPKI; RFC 5208 PKCS#8 around an RFC 5915
// ECPrivateKey with the public key and without the curve parameters, which the algorithm
// identifier carries). OpenSSL 3's encoder framework makes a DER export cost 50-100 µs per key; the
// JWK export costs about 6 µs. Tests check the output is byte-identical to KeyObject.export().
interface EcLayout {
  /** Coordinate and private scalar length in bytes. */
  size: number;
  /** SPKI up to the uncompressed point. */
  spki: Buffer;
  /** PKCS#8 up to the private scalar, and the bytes between the scalar and the uncompressed point. */
  pkcs8: Buffer;
  pkcs8Middle: Buffer;
}

const EC_LAYOUTS: Record<string, EcLayout> = {
  'P-256': {
    size: 32,
    spki: Buffer.from('3059301306072a8648ce3d020106082a8648ce3d030107034200', 'hex'),
    pkcs8: Buffer.from('308187020100301306072a8648ce3d020106082a8648ce3d030107046d306b0201010420', 'hex'),
    pkcs8Middle: Buffer.from('a144034200', 'hex'),
  },
  'P-384': {
    size: 48,
    spki: Buffer.from('3076301006072a8648ce3d020106052b81040022036200', 'hex'),
    pkcs8: Buffer.from('3081b6020100301006072a8648ce3d020106052b8104002204819e30819b0201010430', 'hex'),
    pkcs8Middle: Buffer.from('a164036200', 'hex'),
  },
};

const UNCOMPRESSED_POINT = Buffer.from([4]);

/** The DER of an EC P-256/P-384 key through its JWK, or undefined to use the generic export. */
function ecDer(key: KeyObject, type: 'spki' | 'pkcs8'): Buffer | undefined {
  if (key.asymmetricKeyType !== 'ec') return undefined;
  const jwk = key.export({ format: 'jwk' });
  const layout = jwk.crv !== undefined ? EC_LAYOUTS[jwk.crv] : undefined;
  if (!layout || typeof jwk.x !== 'string' || typeof jwk.y !== 'string') return undefined;
  const x = Buffer.from(jwk.x, 'base64url');
  const y = Buffer.from(jwk.y, 'base64url');
  if (x.length !== layout.size || y.length !== layout.size) return undefined;
  if (type === 'spki') return Buffer.concat([layout.spki, UNCOMPRESSED_POINT, x, y]);
  if (typeof jwk.d !== 'string') return undefined;
  const d = Buffer.from(jwk.d, 'base64url');
  if (d.length !== layout.size) return undefined;
  return Buffer.concat([layout.pkcs8, d, layout.pkcs8Middle, UNCOMPRESSED_POINT, x, y]);
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
