// JWT-SVIDs (JWT-SVID.md; our notes: SPIFFE.md §3): minting with jose, and validation following
// SPIFFE.md §3.4 step by step, so each failure names the exact rule. Tokens never appear in errors.
import { KeyObject, createPublicKey, type JsonWebKey } from 'node:crypto';
import { SignJWT, calculateJwkThumbprint, compactVerify, errors as joseErrors, type JWK } from 'jose';
import { publicJwk } from './bundle-json.js';
import { EmblemError, invalidArgument } from './errors.js';
import { parseSpiffeId, parseWorkloadSpiffeId, type SpiffeId } from './spiffe-id.js';
import type { JwtAuthority } from './trust-bundle.js';

/** The algorithms JWT-SVID.md §2 allows; anything else (none, HS*, EdDSA, ES256K) is rejected. */
export const JWT_SVID_ALGORITHMS = ['RS256', 'RS384', 'RS512', 'ES256', 'ES384', 'ES512', 'PS256', 'PS384', 'PS512'] as const;
export type JwtSvidAlgorithm = (typeof JWT_SVID_ALGORITHMS)[number];

/**
 * Clock skew allowed on exp, nbf and iat. go-jose uses 60 s; we take a more conservative 30 s:
 * enough for hosts kept in sync by NTP, while an expired token stops working sooner.
 */
export const JWT_LEEWAY_SECONDS = 30;
/** Far above any real JWT-SVID; refuses absurd input before decoding it. */
export const MAX_TOKEN_LENGTH = 64 * 1024;

const isAllowedAlg = (alg: unknown): alg is JwtSvidAlgorithm =>
  typeof alg === 'string' && (JWT_SVID_ALGORITHMS as readonly string[]).includes(alg);

/** The key type (and EC curve) each algorithm needs. */
function keyTypeFor(alg: JwtSvidAlgorithm): { kty: string; crv?: string } {
  if (alg === 'ES256') return { kty: 'EC', crv: 'P-256' };
  if (alg === 'ES384') return { kty: 'EC', crv: 'P-384' };
  if (alg === 'ES512') return { kty: 'EC', crv: 'P-521' };
  return { kty: 'RSA' };
}

export interface MintJwtSvidParams {
  privateKey: KeyObject;
  kid: string;
  spiffeId: string;
  audience: string[];
  ttlSeconds: number;
  /** Current time in milliseconds; defaults to Date.now(). */
  now?: number;
  alg?: JwtSvidAlgorithm;
}

export interface MintedJwtSvid {
  token: string;
  /** Unix seconds (the exp claim). */
  expiresAt: number;
  /** Unix seconds (the iat claim). */
  issuedAt: number;
}

/** Signs a JWT-SVID: header exactly {alg, kid, typ: "JWT"}, claims sub, aud (array), exp, iat. */
export async function mintJwtSvid(p: MintJwtSvidParams): Promise<MintedJwtSvid> {
  const alg = p.alg ?? 'ES256';
  if (!isAllowedAlg(alg)) throw invalidArgument(`unsupported alg ${JSON.stringify(alg)}`);
  if (p.privateKey.type !== 'private') throw invalidArgument('a JWT-SVID must be signed with a private key');
  if (typeof p.kid !== 'string' || p.kid.length === 0) throw invalidArgument('kid must be a non-empty string');
  const id = parseWorkloadSpiffeId(p.spiffeId);
  if (!Array.isArray(p.audience) || p.audience.length === 0) throw invalidArgument('audience must have at least one value');
  for (const a of p.audience) {
    if (typeof a !== 'string' || a.length === 0) throw invalidArgument('each audience must be a non-empty string');
  }
  if (!Number.isSafeInteger(p.ttlSeconds) || p.ttlSeconds <= 0) throw invalidArgument('ttlSeconds must be a positive integer');
  const issuedAt = Math.floor((p.now ?? Date.now()) / 1000);
  const expiresAt = issuedAt + p.ttlSeconds;
  try {
    const token = await new SignJWT({})
      .setProtectedHeader({ alg, kid: p.kid, typ: 'JWT' })
      .setSubject(id.uri)
      .setAudience([...p.audience])
      .setExpirationTime(expiresAt)
      .setIssuedAt(issuedAt)
      .sign(p.privateKey);
    return { token, expiresAt, issuedAt };
  } catch (err) {
    throw invalidArgument(`cannot sign with ${alg}: ${(err as Error).message}`, err);
  }
}

/** RFC 7638 SHA-256 thumbprint of a public key (or of a private key's public part), for use as kid. */
export async function jwkThumbprintKid(publicKey: KeyObject | JsonWebKey): Promise<string> {
  let jwk: JsonWebKey;
  if (publicKey instanceof KeyObject) {
    jwk = (publicKey.type === 'private' ? createPublicKey(publicKey) : publicKey).export({ format: 'jwk' });
  } else {
    jwk = publicKey;
  }
  const pub = publicJwk(jwk);
  if (pub === undefined) throw invalidArgument('cannot compute a thumbprint for an unknown key type');
  return calculateJwkThumbprint(pub as JWK, 'sha256');
}

export interface ValidatedJwtSvid {
  spiffeId: SpiffeId;
  claims: Record<string, unknown>;
  /** Unix seconds (the exp claim). */
  expiresAt: number;
}

const reject = (reason: string): EmblemError => invalidArgument(`invalid JWT-SVID: ${reason}`);

const BASE64URL_RE = /^[A-Za-z0-9_-]+$/;

function decodePart(part: string, what: string): Record<string, unknown> {
  if (!BASE64URL_RE.test(part)) throw reject(`token ${what} is not base64url`);
  let value: unknown;
  try {
    value = JSON.parse(Buffer.from(part, 'base64url').toString('utf8'));
  } catch {
    throw reject(`token ${what} is not JSON`);
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw reject(`token ${what} is not a JSON object`);
  return value as Record<string, unknown>;
}

function numericDate(claims: Record<string, unknown>, name: string): number | undefined {
  const v = claims[name];
  if (v === undefined) return undefined;
  if (typeof v !== 'number' || !Number.isFinite(v)) throw reject(`token ${name} claim is not a number`);
  return v;
}

function audienceList(claims: Record<string, unknown>): string[] {
  const aud = claims.aud;
  if (aud === undefined) throw reject('token has no aud claim');
  const list = typeof aud === 'string' ? [aud] : aud;
  if (!Array.isArray(list) || !list.every((a) => typeof a === 'string')) throw reject('token aud claim is malformed');
  if (list.length === 0) throw reject('token has no audience');
  return list as string[];
}

function verificationKey(authority: JwtAuthority, alg: JwtSvidAlgorithm): KeyObject {
  const want = keyTypeFor(alg);
  const jwk = authority.publicKey;
  if (jwk.kty !== want.kty || (want.crv !== undefined && jwk.crv !== want.crv)) {
    throw reject(`key "${authority.kid}" (${jwk.kty}${jwk.crv ? ' ' + jwk.crv : ''}) cannot verify alg "${alg}"`);
  }
  try {
    // Only the public members: jose and Node must never see `use` (jose refuses use other than "sig").
    return createPublicKey({ key: publicJwk(jwk) as JsonWebKey, format: 'jwk' });
  } catch {
    throw reject(`key "${authority.kid}" is not a usable public key`);
  }
}

/**
 * Validates a JWT-SVID for `audience` against the JWT keys of the sub's trust domain, in the order
 * of SPIFFE.md §3.4. Throws EmblemError('invalid_argument') naming the failed rule.
 */
export async function validateJwtSvid(
  token: string,
  audience: string,
  keysFor: (trustDomain: string) => JwtAuthority[] | undefined,
  now: number = Date.now(),
): Promise<ValidatedJwtSvid> {
  if (typeof audience !== 'string' || audience.length === 0) throw invalidArgument('an expected audience is required');
  if (typeof token !== 'string' || token.length === 0) throw reject('token is empty');
  if (token.length > MAX_TOKEN_LENGTH) throw reject(`token is longer than ${MAX_TOKEN_LENGTH} bytes`);
  if (token.trimStart().startsWith('{')) throw reject('JWS JSON serialization is not allowed (compact only)');
  const parts = token.split('.');
  if (parts.length !== 3) throw reject(`token must be a compact JWS of 3 parts, got ${parts.length}`);

  // 1. alg before anything else.
  const header = decodePart(parts[0] as string, 'header');
  if (header.alg === undefined) throw reject('token header has no alg');
  if (!isAllowedAlg(header.alg)) throw reject(`unsupported alg ${JSON.stringify(header.alg)}`);
  const alg = header.alg;
  // 2. typ, then kid (required by go-spiffe and SPIRE although optional in the spec).
  if (header.typ !== undefined && header.typ !== 'JWT' && header.typ !== 'JOSE') {
    throw reject(`token typ ${JSON.stringify(header.typ)} is not JWT or JOSE`);
  }
  if (header.kid === undefined) throw reject('token header has no kid');
  if (typeof header.kid !== 'string' || header.kid.length === 0) throw reject('token header kid is not a non-empty string');
  const kid = header.kid;

  // 3. sub and exp from the not yet verified claims.
  const claims = decodePart(parts[1] as string, 'payload');
  if (claims.sub === undefined || claims.sub === '') throw reject('token has no sub claim');
  if (typeof claims.sub !== 'string') throw reject('token sub claim is not a string');
  let spiffeId: SpiffeId;
  try {
    spiffeId = parseSpiffeId(claims.sub);
  } catch (err) {
    throw reject(`token sub is not a valid SPIFFE ID: ${(err as Error).message}`);
  }
  const exp = numericDate(claims, 'exp');
  if (exp === undefined) throw reject('token has no exp claim');

  // 4-5. The key set of the sub's trust domain, then the key by kid.
  const keys = keysFor(spiffeId.trustDomain);
  if (keys === undefined) throw reject(`no JWT bundle for trust domain "${spiffeId.trustDomain}"`);
  const authority = keys.find((k) => k.kid === kid);
  if (authority === undefined) throw reject(`key "${kid}" not found in bundle for trust domain "${spiffeId.trustDomain}"`);

  // 6. Signature.
  const key = verificationKey(authority, alg);
  try {
    await compactVerify(token, key, { algorithms: [alg] });
  } catch (err) {
    if (err instanceof joseErrors.JWSSignatureVerificationFailed) throw reject('token signature is invalid');
    throw reject(`token could not be verified: ${(err as Error).message}`);
  }

  // 7. Time claims with leeway, then audience.
  const nowSeconds = now / 1000;
  if (exp + JWT_LEEWAY_SECONDS <= nowSeconds) throw reject('token has expired');
  const nbf = numericDate(claims, 'nbf');
  if (nbf !== undefined && nbf - JWT_LEEWAY_SECONDS > nowSeconds) throw reject('token is not valid yet (nbf is in the future)');
  const iat = numericDate(claims, 'iat');
  if (iat !== undefined && iat - JWT_LEEWAY_SECONDS > nowSeconds) throw reject('token was issued in the future (iat)');
  if (!audienceList(claims).includes(audience)) throw reject(`audience ${JSON.stringify(audience)} not in token`);

  return { spiffeId, claims, expiresAt: exp };
}
