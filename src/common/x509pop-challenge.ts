// The x509pop proof of possession, shared by the agent (signer) and the server (verifier).
// The signed message is exactly the challenge bytes the server sent:
//   EC:      ECDSA with SHA-256 over the challenge, DER-encoded signature (RFC 3279 Ecdsa-Sig-Value)
//   RSA:     RSASSA-PKCS1-v1_5 with SHA-256 over the challenge
//   Ed25519: pure Ed25519 over the challenge (no pre-hash; Ed25519 does not take one)
import { constants, sign, verify, type KeyObject } from 'node:crypto';
import { invalidArgument } from './errors.js';

/** Length of the nonce the server should send (and the least the agent accepts). */
export const CHALLENGE_BYTES = 32;
/** An upper bound so a hostile server cannot make the agent sign huge inputs. */
export const MAX_CHALLENGE_BYTES = 1024;

type Scheme = 'ec' | 'rsa' | 'ed25519';

function schemeOf(key: KeyObject): Scheme {
  const type = key.asymmetricKeyType;
  if (type === 'ec' || type === 'rsa' || type === 'ed25519') return type;
  throw invalidArgument(`x509pop: key type ${type ?? '(unknown)'} is not supported (use EC, RSA or Ed25519)`);
}

function checkChallenge(challenge: Buffer): void {
  if (challenge.length < CHALLENGE_BYTES || challenge.length > MAX_CHALLENGE_BYTES) {
    throw invalidArgument(`x509pop: challenge must be ${CHALLENGE_BYTES}-${MAX_CHALLENGE_BYTES} bytes, got ${challenge.length}`);
  }
}

/** The challenge_response for `challenge`, signed with the private key of the x509pop leaf. */
export function signChallenge(privateKey: KeyObject, challenge: Buffer): Buffer {
  if (privateKey.type !== 'private') throw invalidArgument('x509pop: signChallenge needs a private key');
  checkChallenge(challenge);
  const scheme = schemeOf(privateKey);
  if (scheme === 'ed25519') return sign(null, challenge, privateKey);
  if (scheme === 'rsa') return sign('sha256', challenge, { key: privateKey, padding: constants.RSA_PKCS1_PADDING });
  return sign('sha256', challenge, { key: privateKey, dsaEncoding: 'der' });
}

/** True when `response` is a valid signature of `challenge` by the key of `publicKey` (the leaf's key). */
export function verifyChallengeResponse(publicKey: KeyObject, challenge: Buffer, response: Buffer): boolean {
  if (response.length === 0 || challenge.length < CHALLENGE_BYTES || challenge.length > MAX_CHALLENGE_BYTES) return false;
  let scheme: Scheme;
  try {
    scheme = schemeOf(publicKey);
  } catch {
    return false;
  }
  try {
    if (scheme === 'ed25519') return verify(null, challenge, publicKey, response);
    if (scheme === 'rsa') return verify('sha256', challenge, { key: publicKey, padding: constants.RSA_PKCS1_PADDING }, response);
    return verify('sha256', challenge, { key: publicKey, dsaEncoding: 'der' }, response);
  } catch {
    return false;
  }
}
