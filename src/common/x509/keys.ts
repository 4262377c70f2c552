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
  return privateKey.export({ format: 'der', type: 'pkcs8' });
}

/** SubjectPublicKeyInfo DER of a public key, or of the public half of a private key. */
export function exportSpkiDer(key: KeyObject): Buffer {
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
