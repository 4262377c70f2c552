// The own trust bundle is derived from the CA journal, never edited by hand: every published,
// unexpired authority contributes its trust anchor (its own CA certificate, or for an intermediate
// signed by an upstream CA the upstream root it chains to) and every JWT key its public key.
import type { AuthorityRecord } from '../datastore/types.js';
import type { JwtAuthority, TrustBundle } from '../../common/trust-bundle.js';
import { PUBLISHED_STATUSES, isExpired } from './rotation.js';

export interface BundleContents {
  x509Authorities: Buffer[];
  jwtAuthorities: JwtAuthority[];
}

/** The root an X.509 authority's SVIDs validate against: the top of its upstream chain, else itself. */
export function trustAnchorOf(a: AuthorityRecord): Buffer | undefined {
  const chain = a.upstreamChain ?? [];
  return chain.length > 0 ? chain[chain.length - 1] : a.certificate;
}

export function isPublished(a: AuthorityRecord, nowSec: number): boolean {
  return PUBLISHED_STATUSES.has(a.status) && !isExpired(a, nowSec);
}

/** Oldest first, so a bundle grows at the end as authorities are prepared. */
function oldestFirst(a: AuthorityRecord, b: AuthorityRecord): number {
  return a.createdAt - b.createdAt || a.notAfter - b.notAfter || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0);
}

export function bundleContents(authorities: readonly AuthorityRecord[], nowSec: number): BundleContents {
  const published = authorities.filter((a) => isPublished(a, nowSec)).sort(oldestFirst);
  const x509Authorities: Buffer[] = [];
  for (const a of published) {
    if (a.kind !== 'x509') continue;
    const anchor = trustAnchorOf(a);
    if (anchor && !x509Authorities.some((c) => c.equals(anchor))) x509Authorities.push(anchor);
  }
  const jwtAuthorities: JwtAuthority[] = [];
  for (const a of published) {
    if (a.kind !== 'jwt' || !a.publicKey) continue;
    jwtAuthorities.push({ kid: a.id, publicKey: a.publicKey, expiresAt: a.notAfter });
  }
  return { x509Authorities, jwtAuthorities };
}

function sameJwk(a: JwtAuthority['publicKey'], b: JwtAuthority['publicKey']): boolean {
  const keysA = Object.keys(a).filter((k) => a[k as keyof typeof a] !== undefined).sort();
  const keysB = Object.keys(b).filter((k) => b[k as keyof typeof b] !== undefined).sort();
  return keysA.length === keysB.length && keysA.every((k, i) => k === keysB[i] && a[k as keyof typeof a] === b[k as keyof typeof b]);
}

/** Same authorities (as sets, ignoring order) and the same refresh hint. */
export function sameContents(bundle: TrustBundle, contents: BundleContents, refreshHint: number | undefined): boolean {
  if (bundle.refreshHint !== refreshHint) return false;
  const x = bundle.x509Authorities;
  if (x.length !== contents.x509Authorities.length) return false;
  if (!contents.x509Authorities.every((c) => x.some((d) => d.equals(c)))) return false;
  const j = bundle.jwtAuthorities;
  if (j.length !== contents.jwtAuthorities.length) return false;
  return contents.jwtAuthorities.every((want) =>
    j.some((have) => have.kid === want.kid && have.expiresAt === want.expiresAt && sameJwk(have.publicKey, want.publicKey)),
  );
}

/**
 * The bundle to store so that it holds exactly `contents`, with spiffe_sequence bumped; undefined
 * when `current` already does (nothing to write).
 */
export function nextBundle(
  current: TrustBundle | undefined,
  contents: BundleContents,
  trustDomain: string,
  refreshHint: number | undefined,
): TrustBundle | undefined {
  if (current && current.trustDomain === trustDomain && sameContents(current, contents, refreshHint)) return undefined;
  const bundle: TrustBundle = {
    trustDomain,
    x509Authorities: contents.x509Authorities,
    jwtAuthorities: contents.jwtAuthorities,
    sequence: (current?.sequence ?? 0) + 1,
  };
  if (refreshHint !== undefined) bundle.refreshHint = refreshHint;
  return bundle;
}
