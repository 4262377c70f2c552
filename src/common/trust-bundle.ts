// The in-memory form of one trust domain's bundle (SPIFFE_Trust_Domain_and_Bundle.md §3-§4).
import type { JsonWebKey } from 'node:crypto';
// Encoding to and from SPIFFE bundle JSON, PEM and the Workload API forms is in bundle-json.ts,
// pem.ts and workload-bundle.ts.

export interface JwtAuthority {
  /** Key ID, required for JWT-SVID keys. */
  kid: string;
  /** Public JWK (kty, crv, x, y / n, e), without `use` and `kid`. */
  publicKey: JsonWebKey;
  /** Unix seconds after which the key is no longer used to sign; informational. */
  expiresAt?: number;
}

export interface TrustBundle {
  /** Trust domain name, e.g. "example.org". A bundle does not carry it on the wire. */
  trustDomain: string;
  /** DER CA certificates (X.509 authorities). */
  x509Authorities: Buffer[];
  jwtAuthorities: JwtAuthority[];
  /** spiffe_sequence: bumped on every change of contents. */
  sequence: number;
  /** spiffe_refresh_hint in seconds, if set. */
  refreshHint?: number;
}
