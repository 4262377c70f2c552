// Bundle forms on the Workload API (SPIFFE.md §2.6, §5.4) and the agent's bootstrap trust bundle.
//
// X.509 bundles are the CA certificates as concatenated DER. JWT bundles are a plain JWK Set of
// the jwt-svid keys only, each with `kty`, its key parameters and `kid`, and no `use` member and no
// spiffe_* members, exactly like SPIRE. Reasons for omitting `use`: go-spiffe (go-jose), java-spiffe
// (Nimbus) and py-spiffe accept keys without it, while JavaScript verifiers built on jose skip any
// key whose `use` is not "sig" (see ENGINEERING-NOTES.md §4.3); the spec only requires that the set
// holds no keys of other uses, which the absence of x509 entries already guarantees.
import type { JsonWebKey } from 'node:crypto';
import { createPublicKey } from 'node:crypto';
import { decodeSpiffeBundle, publicJwk, USE_JWT_SVID } from './bundle-json.js';
import { invalidArgument } from './errors.js';
import { parseCertificatesFlexible, splitAndCheckDerCertificates } from './pem.js';
import { parseTrustDomain } from './spiffe-id.js';
import type { JwtAuthority, TrustBundle } from './trust-bundle.js';

/** FetchX509SVID `bundle` / FetchX509Bundles value: concatenated DER of the CA certificates. */
export function x509BundleBytes(b: TrustBundle): Buffer {
  return Buffer.concat(b.x509Authorities);
}

/** FetchJWTBundles value: JWKS JSON bytes of the JWT keys, `{keys:[{kty, crv, x, y, kid}]}`. */
export function jwtBundleBytes(b: TrustBundle): Buffer {
  const keys = b.jwtAuthorities.map((a) => {
    const jwk = publicJwk(a.publicKey);
    if (jwk === undefined) throw invalidArgument(`JWT authority "${a.kid}" has an unknown key type`);
    return { ...jwk, kid: a.kid };
  });
  return Buffer.from(JSON.stringify({ keys }));
}

/** Client side of x509BundleBytes: splits and checks the DER certificates. */
export function parseX509BundleBytes(bytes: Buffer): Buffer[] {
  return splitAndCheckDerCertificates(bytes);
}

/**
 * Client side of jwtBundleBytes. Accepts keys with `use` absent or "jwt-svid" (SPIRE omits it,
 * SPIFFE bundles set it) and skips keys with another `use` or an unknown `kty`. A key without a
 * kid, an invalid key or a duplicate kid is an error, as in go-spiffe.
 */
export function parseJwtBundleBytes(bytes: Buffer | string): JwtAuthority[] {
  let obj: unknown;
  try {
    obj = JSON.parse(typeof bytes === 'string' ? bytes : bytes.toString('utf8'));
  } catch {
    throw invalidArgument('JWT bundle is not valid JSON');
  }
  if (typeof obj !== 'object' || obj === null || Array.isArray(obj)) throw invalidArgument('JWT bundle must be a JSON object');
  const keys = (obj as { keys?: unknown }).keys;
  if (!Array.isArray(keys)) throw invalidArgument('JWT bundle has no "keys" array');
  const out: JwtAuthority[] = [];
  keys.forEach((entry: unknown, i: number) => {
    if (typeof entry !== 'object' || entry === null) return;
    const e = entry as Record<string, unknown>;
    if (e.use !== undefined && e.use !== USE_JWT_SVID) return;
    let jwk: JsonWebKey | undefined;
    try {
      jwk = publicJwk(e);
      if (jwk !== undefined) createPublicKey({ key: jwk, format: 'jwk' });
    } catch (err) {
      throw invalidArgument(`JWT bundle key ${i + 1} is not a valid public key`, err);
    }
    if (jwk === undefined) return;
    if (typeof e.kid !== 'string' || e.kid.length === 0) throw invalidArgument(`JWT bundle key ${i + 1} has no kid`);
    const kid = e.kid;
    if (out.some((a) => a.kid === kid)) throw invalidArgument(`JWT bundle has kid "${kid}" twice`);
    out.push({ kid, publicKey: jwk });
  });
  return out;
}

/**
 * The agent's bootstrap trust bundle (`--trust-bundle`): SPIFFE bundle JSON (detected by a leading
 * "{") or PEM / concatenated DER certificates. It must hold at least one X.509 authority, since the
 * agent uses it to authenticate the server.
 */
export function bundleFromTrustAnchorsFile(trustDomain: string, fileContents: Buffer | string): TrustBundle {
  const td = parseTrustDomain(trustDomain);
  const text = typeof fileContents === 'string' ? fileContents : fileContents.toString('utf8');
  const looksJson = text.trimStart().startsWith('{');
  const bundle: TrustBundle = looksJson
    ? decodeSpiffeBundle(td, fileContents)
    : { trustDomain: td, x509Authorities: parseCertificatesFlexible(fileContents), jwtAuthorities: [], sequence: 0 };
  if (bundle.x509Authorities.length === 0) throw invalidArgument(`trust bundle for "${td}" has no X.509 authorities`);
  return bundle;
}
