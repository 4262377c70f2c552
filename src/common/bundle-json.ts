// SPIFFE bundle JSON (a JWK Set, SPIFFE_Trust_Domain_and_Bundle.md §4; our notes: SPIFFE.md §2.5,
// §3.6, §4) and SPIFFE Bundle Maps (§5).
//
// Decoding is strict where the spec says a bundle is malformed and lenient where it says "ignore":
//   rejected: not JSON, not an object, `keys` missing or not an array, `spiffe_sequence` or
//     `spiffe_refresh_hint` not a non-negative integer, an x5c value that is not base64 DER of one
//     certificate, a jwt-svid key that is not a valid public key, two jwt-svid keys with one kid;
//   ignored: unknown top-level members, entries with a missing or unknown `use` (including
//     `wit-svid`) or `kty`, x509-svid entries with no x5c (of several x5c values only the first
//     is used), and jwt-svid entries without a kid. The spec requires a kid on jwt-svid keys but
//     does not say to reject the bundle; such a key can never match a token (we require kid on
//     tokens), so ignoring it is the safe lenient choice. go-spiffe rejects that bundle instead.
import { X509Certificate, createPublicKey, type JsonWebKey } from 'node:crypto';
import { invalidArgument, isEmblemError } from './errors.js';
import { checkCertificateDer } from './pem.js';
import { parseTrustDomain } from './spiffe-id.js';
import type { JwtAuthority, TrustBundle } from './trust-bundle.js';

export const USE_X509_SVID = 'x509-svid';
export const USE_JWT_SVID = 'jwt-svid';

/** The public members of each key type we know, in the order we write them. */
const PUBLIC_MEMBERS: Record<string, readonly string[]> = {
  EC: ['crv', 'x', 'y'],
  RSA: ['n', 'e'],
  OKP: ['crv', 'x'],
};

type JsonObject = Record<string, unknown>;

const isObject = (v: unknown): v is JsonObject => typeof v === 'object' && v !== null && !Array.isArray(v);

/**
 * Only the public members of a JWK (`kty` and its key parameters), dropping `use`, `kid`, `alg`
 * and any private parameter. Returns undefined for an unknown `kty`; throws when a known key
 * type lacks a member.
 */
export function publicJwk(jwk: JsonObject | JsonWebKey): JsonWebKey | undefined {
  const kty = (jwk as JsonObject).kty;
  if (typeof kty !== 'string') return undefined;
  if (!Object.hasOwn(PUBLIC_MEMBERS, kty)) return undefined;
  const members = PUBLIC_MEMBERS[kty] as readonly string[];
  const out: JsonObject = { kty };
  for (const m of members) {
    const v = (jwk as JsonObject)[m];
    if (typeof v !== 'string' || v.length === 0) throw invalidArgument(`${kty} key has no "${m}" parameter`);
    out[m] = v;
  }
  return out as JsonWebKey;
}

const BASE64_RE = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;

function x509Entry(der: Buffer): JsonObject {
  const jwk = publicJwk(new X509Certificate(der).publicKey.export({ format: 'jwk' }));
  if (jwk === undefined) throw invalidArgument('X.509 authority has a key type that cannot be written as a JWK');
  return { ...jwk, use: USE_X509_SVID, x5c: [der.toString('base64')] };
}

function jwtEntry(a: JwtAuthority): JsonObject {
  const jwk = publicJwk(a.publicKey);
  if (jwk === undefined) throw invalidArgument(`JWT authority "${a.kid}" has an unknown key type`);
  if (a.kid.length === 0) throw invalidArgument('JWT authority has an empty kid');
  return { ...jwk, use: USE_JWT_SVID, kid: a.kid };
}

function bundleObject(b: TrustBundle, withRefreshHint: boolean): JsonObject {
  const obj: JsonObject = { keys: [...b.x509Authorities.map(x509Entry), ...b.jwtAuthorities.map(jwtEntry)] };
  obj.spiffe_sequence = b.sequence;
  if (withRefreshHint && b.refreshHint !== undefined) obj.spiffe_refresh_hint = b.refreshHint;
  return obj;
}

/** SPIFFE bundle JSON of one trust domain (the trust domain name itself is not in it). */
export function encodeSpiffeBundle(b: TrustBundle): string {
  return JSON.stringify(bundleObject(b, true));
}

function parseJson(json: string | Buffer, what: string): unknown {
  try {
    return JSON.parse(typeof json === 'string' ? json : json.toString('utf8'));
  } catch {
    throw invalidArgument(`${what} is not valid JSON`);
  }
}

function nonNegativeInteger(obj: JsonObject, member: string, where: string): number | undefined {
  const v = obj[member];
  if (v === undefined) return undefined;
  // JSON numbers above 2^53 lose precision in JavaScript, so they are refused rather than rounded.
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0) {
    throw invalidArgument(`${where}: "${member}" must be a non-negative integer (at most 2^53-1)`);
  }
  return v;
}

function decodeX509Entry(entry: JsonObject, n: number, where: string): Buffer | undefined {
  const x5c = entry.x5c;
  if (!Array.isArray(x5c) || x5c.length === 0) return undefined;
  const first: unknown = x5c[0];
  if (typeof first !== 'string' || first.length === 0 || !BASE64_RE.test(first)) {
    throw invalidArgument(`${where}: key ${n} has an x5c value that is not base64`);
  }
  return checkCertificateDer(Buffer.from(first, 'base64'), `${where}: key ${n} x5c certificate`);
}

function decodeJwtEntry(entry: JsonObject, n: number, where: string): JwtAuthority | undefined {
  const kid = entry.kid;
  if (typeof kid !== 'string' || kid.length === 0) return undefined;
  let jwk: JsonWebKey;
  try {
    jwk = publicJwk(entry) as JsonWebKey;
    createPublicKey({ key: jwk, format: 'jwk' });
  } catch (err) {
    const detail = isEmblemError(err) ? `: ${err.message}` : '';
    throw invalidArgument(`${where}: key ${n} (kid "${kid}") is not a valid public key${detail}`, err);
  }
  return { kid, publicKey: jwk };
}

function bundleFromObject(trustDomain: string, obj: unknown, where: string): TrustBundle {
  if (!isObject(obj)) throw invalidArgument(`${where} must be a JSON object`);
  if (!('keys' in obj)) throw invalidArgument(`${where} has no "keys" member`);
  if (!Array.isArray(obj.keys)) throw invalidArgument(`${where}: "keys" must be an array`);
  const sequence = nonNegativeInteger(obj, 'spiffe_sequence', where) ?? 0;
  const refreshHint = nonNegativeInteger(obj, 'spiffe_refresh_hint', where);

  const x509Authorities: Buffer[] = [];
  const jwtAuthorities: JwtAuthority[] = [];
  obj.keys.forEach((entry: unknown, i: number) => {
    const n = i + 1;
    if (!isObject(entry)) return;
    if (entry.use !== USE_X509_SVID && entry.use !== USE_JWT_SVID) return;
    if (typeof entry.kty !== 'string' || !Object.hasOwn(PUBLIC_MEMBERS, entry.kty)) return;
    if (entry.use === USE_X509_SVID) {
      // The certificate is what X.509 validation uses; the JWK key parameters beside it are not read.
      const der = decodeX509Entry(entry, n, where);
      if (der !== undefined && !x509Authorities.some((d) => d.equals(der))) x509Authorities.push(der);
      return;
    }
    const authority = decodeJwtEntry(entry, n, where);
    if (authority === undefined) return;
    if (jwtAuthorities.some((a) => a.kid === authority.kid)) {
      throw invalidArgument(`${where}: kid "${authority.kid}" appears on more than one jwt-svid key`);
    }
    jwtAuthorities.push(authority);
  });

  const bundle: TrustBundle = { trustDomain, x509Authorities, jwtAuthorities, sequence };
  if (refreshHint !== undefined) bundle.refreshHint = refreshHint;
  return bundle;
}

/** Parses the SPIFFE bundle JSON of `trustDomain`. */
export function decodeSpiffeBundle(trustDomain: string, json: string | Buffer): TrustBundle {
  const td = parseTrustDomain(trustDomain);
  const where = `bundle for "${td}"`;
  return bundleFromObject(td, parseJson(json, where), where);
}

/**
 * A SPIFFE Bundle Map, keyed by trust domain name. Bundles in a map omit the refresh hint, as the
 * spec recommends.
 */
export function encodeBundleMap(bundles: Iterable<TrustBundle>): string {
  const trustDomains: JsonObject = {};
  for (const b of bundles) {
    if (Object.hasOwn(trustDomains, b.trustDomain)) throw invalidArgument(`trust domain "${b.trustDomain}" appears twice`);
    trustDomains[b.trustDomain] = bundleObject(b, false);
  }
  return JSON.stringify({ trust_domains: trustDomains });
}

/** Parses a SPIFFE Bundle Map, rejecting duplicate trust domains (also when JSON.parse would hide them). */
export function decodeBundleMap(json: string | Buffer): Map<string, TrustBundle> {
  const text = typeof json === 'string' ? json : json.toString('utf8');
  const obj = parseJson(text, 'bundle map');
  if (!isObject(obj)) throw invalidArgument('bundle map must be a JSON object');
  for (const dup of findDuplicateMembers(text)) {
    if (dup.path.length === 0) throw invalidArgument(`bundle map has the member "${dup.name}" twice`);
    if (dup.path.length === 1 && dup.path[0] === 'trust_domains') {
      throw invalidArgument(`bundle map has the trust domain "${dup.name}" twice`);
    }
  }
  if (!('trust_domains' in obj)) throw invalidArgument('bundle map has no "trust_domains" member');
  if (!isObject(obj.trust_domains)) throw invalidArgument('bundle map: "trust_domains" must be an object');
  const out = new Map<string, TrustBundle>();
  for (const [key, value] of Object.entries(obj.trust_domains)) {
    const td = parseTrustDomain(key);
    if (out.has(td)) throw invalidArgument(`bundle map has the trust domain "${td}" twice`);
    out.set(td, bundleFromObject(td, value, `bundle map entry "${key}"`));
  }
  return out;
}

interface Duplicate {
  /** Member names leading to the object holding the duplicate. */
  path: string[];
  name: string;
}

interface Container {
  isObject: boolean;
  path: string[];
  names: Set<string>;
  expectName: boolean;
  lastName: string;
}

/** Duplicate member names in every object of a JSON text that JSON.parse has already accepted. */
export function findDuplicateMembers(text: string): Duplicate[] {
  const dups: Duplicate[] = [];
  const stack: Container[] = [];
  const open = (isObj: boolean): void => {
    const parent = stack[stack.length - 1];
    const path = parent === undefined ? [] : parent.isObject ? [...parent.path, parent.lastName] : [...parent.path, '[]'];
    stack.push({ isObject: isObj, path, names: new Set(), expectName: isObj, lastName: '' });
  };
  for (let i = 0; i < text.length; i++) {
    const ch = text[i];
    const top = stack[stack.length - 1];
    if (ch === '{' || ch === '[') open(ch === '{');
    else if (ch === '}' || ch === ']') stack.pop();
    else if (ch === ',' && top?.isObject) top.expectName = true;
    else if (ch === '"') {
      const start = i;
      for (i++; text[i] !== '"'; i++) if (text[i] === '\\') i++;
      if (top?.isObject && top.expectName) {
        const name = JSON.parse(text.slice(start, i + 1)) as string;
        if (top.names.has(name)) dups.push({ path: top.path, name });
        top.names.add(name);
        top.lastName = name;
        top.expectName = false;
      }
    }
  }
  return dups;
}
