// PKCS#10 certification requests (RFC 2986). The server takes only one thing from a CSR: the public
// key, after checking the signature proves possession of the private key. Subject, attributes and
// requested extensions are ignored.
import type { KeyObject } from 'node:crypto';
import { EmblemError } from '../errors.js';
import { signatureAlgorithmByOid, signData, signingAlgorithmFor, verifyData } from './algorithms.js';
import { bitString, contextTag, DerCursor, rawOf, readBitString, readOid, readSmallInteger, readTop, sequence, TAG, tlv } from './der.js';
import { exportSpkiDer, keyKindOf, type KeyPair } from './keys.js';
import { importSpki, parseSpki } from './spki.js';

/** Far above any real CSR (an RSA-8192 request is about 1.2 KB); bounds the work done on junk. */
export const MAX_CSR_BYTES = 64 * 1024;

const VERSION_1 = Buffer.from([TAG.INTEGER, 1, 0]);
const EMPTY_NAME = sequence();
const EMPTY_ATTRIBUTES = tlv(contextTag(0, true));

/** A DER CSR with an empty subject and no attributes, signed with the key pair's private key. */
export function createCsr(keyPair: Pick<KeyPair, 'privateKey'> & Partial<Pick<KeyPair, 'publicKey'>>): Buffer {
  const algorithm = signingAlgorithmFor(keyKindOf(keyPair.privateKey));
  const info = sequence(VERSION_1, EMPTY_NAME, exportSpkiDer(keyPair.publicKey ?? keyPair.privateKey), EMPTY_ATTRIBUTES);
  return sequence(info, algorithm.identifier, bitString(signData(algorithm, keyPair.privateKey, info)));
}

export interface ParsedCsr {
  publicKey: KeyObject;
  /** SubjectPublicKeyInfo DER exactly as in the request. */
  spkiDer: Buffer;
}

const reject = (message: string): EmblemError => new EmblemError('invalid_argument', `CSR rejected: ${message}`);

/**
 * Parses a DER CSR with the bounds-checked reader and verifies its self-signature.
 * Accepts EC P-256/P-384 (ecdsa-with-SHA256/384), RSA 2048-8192 (sha256/384/512WithRSAEncryption)
 * and Ed25519. Everything else, and anything malformed, is EmblemError('invalid_argument').
 */
export function parseCsr(der: Buffer): ParsedCsr {
  if (!Buffer.isBuffer(der)) throw reject('not a byte buffer');
  if (der.length > MAX_CSR_BYTES) throw reject(`larger than ${MAX_CSR_BYTES} bytes`);
  const what = 'CSR';
  const top = readTop(der, TAG.SEQUENCE, what);
  const outer = new DerCursor(der, top, what);
  const infoTlv = outer.next(TAG.SEQUENCE, 'certificationRequestInfo');
  const algTlv = outer.next(TAG.SEQUENCE, 'signatureAlgorithm');
  const sig = readBitString(der, outer.next(TAG.BIT_STRING, 'signature'), 'CSR signature');
  outer.expectEnd();
  if (sig.unusedBits !== 0) throw reject('signature has unused bits');

  const info = new DerCursor(der, infoTlv, 'CSR certificationRequestInfo');
  if (readSmallInteger(der, info.next(TAG.INTEGER, 'version'), 'CSR version') !== 0) throw reject('version is not 1');
  info.next(TAG.SEQUENCE, 'subject');
  const spkiTlv = info.next(TAG.SEQUENCE, 'subjectPKInfo');
  // attributes is required by RFC 2986 but some encoders omit it when empty; it is ignored either way.
  info.optional(contextTag(0, true), 'attributes');
  info.expectEnd();

  const alg = new DerCursor(der, algTlv, 'CSR signatureAlgorithm');
  const algOid = readOid(der, alg.next(TAG.OID, 'algorithm'), 'CSR signatureAlgorithm');
  const params = alg.done ? undefined : alg.next(undefined, 'parameters');
  alg.expectEnd();
  const algorithm = signatureAlgorithmByOid(algOid);
  if (!algorithm) throw reject(`signature algorithm ${algOid} is not supported`);
  const rsa = algorithm.keyKinds.includes('rsa');
  if (params && !(rsa && params.tag === TAG.NULL && params.end === params.valueStart)) {
    throw reject(`${algorithm.name} must not have these algorithm parameters`);
  }

  const spkiDer = Buffer.from(rawOf(der, spkiTlv));
  const spki = parseSpki(spkiDer, 'CSR public key');
  if (!algorithm.keyKinds.includes(spki.kind)) throw reject(`${algorithm.name} cannot be used with a ${spki.kind} key`);
  const publicKey = importSpki(spki, 'CSR public key');
  if (keyKindOf(publicKey) !== spki.kind) throw reject('public key does not decode to the declared type');
  if (!verifyData(algorithm, publicKey, rawOf(der, infoTlv), sig.bytes)) {
    throw reject('signature does not verify (no proof of possession of the private key)');
  }
  return { publicKey, spkiDer };
}
