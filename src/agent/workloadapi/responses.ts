// Builds the Workload API's streamed messages from the identity source (SPIFFE.md §5.4), each with a
// content fingerprint so that a stream only sends when what its caller sees has changed.
import { createHash } from 'node:crypto';
import type { AgentEntry, WorkloadIdentitySource, X509Identity } from '../cache/types.js';
import type { TrustBundle } from '../../common/trust-bundle.js';
import { unavailable } from '../../common/errors.js';
import { SPIFFE_SCHEME_PREFIX, trustDomainId } from '../../common/spiffe-id.js';
import { jwtBundleBytes, x509BundleBytes } from '../../common/workload-bundle.js';
import type { StreamView } from './watch-stream.js';

export interface X509SvidMessage {
  spiffe_id: string;
  x509_svid: Buffer;
  x509_svid_key: Buffer;
  bundle: Buffer;
  hint: string;
}

export interface X509SvidResponse {
  svids: X509SvidMessage[];
  crl: Buffer[];
  federated_bundles: Record<string, Buffer>;
}

export interface X509BundlesResponse {
  crl: Buffer[];
  bundles: Record<string, Buffer>;
}

export interface JwtBundlesResponse {
  bundles: Record<string, Buffer>;
}

// Source data is immutable (a change yields new objects), so encodings and digests are computed once
// per object and shared by every stream.
const x509BytesOf = memoize((b: TrustBundle) => x509BundleBytes(b));
const jwtBytesOf = memoize((b: TrustBundle) => jwtBundleBytes(b));
const x509DigestOf = memoize((b: TrustBundle) => digest([x509BytesOf(b)]));
const jwtDigestOf = memoize((b: TrustBundle) => digest([jwtBytesOf(b)]));
const identityDigestOf = memoize((x: X509Identity) => digest(x.chain));
// Most chains are the leaf alone: its bytes as they are, not a copy kept per identity.
const chainConcatOf = memoize((x: X509Identity) => Buffer.concat(x.chain));
const chainBytesOf = (x: X509Identity): Buffer => (x.chain.length === 1 ? x.chain[0]! : chainConcatOf(x));

function memoize<K extends object, V>(compute: (key: K) => V): (key: K) => V {
  const cache = new WeakMap<K, V>();
  return (key) => {
    let value = cache.get(key);
    if (value === undefined) {
      value = compute(key);
      cache.set(key, value);
    }
    return value;
  };
}

function digest(parts: readonly Buffer[]): string {
  const h = createHash('sha256');
  for (const p of parts) h.update(p);
  return h.digest('base64');
}

/**
 * Keeps the first entry for each non-empty hint and drops later ones entirely. `entries` is in
 * Workload API order (oldest createdAt, then lowest id), so the earliest-created entry wins, as in SPIRE.
 */
export function withUniqueHints<T extends { hint: string }>(entries: readonly T[]): T[] {
  const seen = new Set<string>();
  return entries.filter((e) => {
    if (e.hint === '') return true;
    if (seen.has(e.hint)) return false;
    seen.add(e.hint);
    return true;
  });
}

/** Foreign trust domains the entries federate with, sorted, without the agent's own. */
export function federatedTrustDomains(entries: readonly AgentEntry[], ownTrustDomain: string): string[] {
  const tds = new Set<string>();
  for (const e of entries) {
    for (const td of e.federatesWith) {
      const name = td.startsWith(SPIFFE_SCHEME_PREFIX) ? td.slice(SPIFFE_SCHEME_PREFIX.length) : td;
      if (name !== ownTrustDomain) tds.add(name);
    }
  }
  return [...tds].sort();
}

function ownBundle(source: WorkloadIdentitySource): TrustBundle {
  const bundle = source.bundle();
  if (!bundle) throw unavailable('the agent holds no trust bundle yet');
  return bundle;
}

/** The federated bundles the agent holds for these trust domains (absent ones are skipped). */
function heldFederatedBundles(source: WorkloadIdentitySource, trustDomains: readonly string[]): TrustBundle[] {
  const held = source.federatedBundles();
  const out: TrustBundle[] = [];
  for (const td of trustDomains) {
    const b = held.get(td);
    if (b) out.push(b);
  }
  return out;
}

/**
 * FetchX509SVID: one X509SVID per entitled entry whose SVID is ready, default first. Null when no
 * SVID is ready yet (the response must carry at least one).
 */
export function buildX509SvidView(
  source: WorkloadIdentitySource,
  entries: readonly AgentEntry[],
  trustDomain: string,
): StreamView<X509SvidResponse> | null {
  const bundle = ownBundle(source);
  const bundleBytes = x509BytesOf(bundle);
  const svids: X509SvidMessage[] = [];
  const sentEntries: AgentEntry[] = [];
  const fp: string[] = [`own:${x509DigestOf(bundle)}`];
  for (const entry of withUniqueHints(entries)) {
    const identity = source.x509Identity(entry.id);
    if (!identity) continue;
    svids.push({
      spiffe_id: entry.spiffeId,
      x509_svid: chainBytesOf(identity),
      x509_svid_key: identity.privateKeyPkcs8,
      bundle: bundleBytes,
      hint: entry.hint,
    });
    sentEntries.push(entry);
    fp.push(`svid:${entry.id}|${entry.spiffeId}|${entry.hint}|${identityDigestOf(identity)}`);
  }
  if (svids.length === 0) return null;
  const federated_bundles: Record<string, Buffer> = {};
  for (const b of heldFederatedBundles(source, federatedTrustDomains(sentEntries, trustDomain))) {
    federated_bundles[trustDomainId(b.trustDomain)] = x509BytesOf(b);
    fp.push(`fed:${b.trustDomain}|${x509DigestOf(b)}`);
  }
  return { message: { svids, crl: [], federated_bundles }, fingerprint: fp.join('\n') };
}

/** FetchX509Bundles: the own trust domain's CA certificates plus those of every trust domain the caller's entries federate with. */
export function buildX509BundlesView(
  source: WorkloadIdentitySource,
  entries: readonly AgentEntry[],
  trustDomain: string,
): StreamView<X509BundlesResponse> {
  const { bundles, fingerprint } = bundleMap(source, entries, trustDomain, x509BytesOf, x509DigestOf);
  return { message: { crl: [], bundles }, fingerprint };
}

/** FetchJWTBundles: JWKS (JWT keys only) of the own trust domain plus the caller's federated ones. */
export function buildJwtBundlesView(
  source: WorkloadIdentitySource,
  entries: readonly AgentEntry[],
  trustDomain: string,
): StreamView<JwtBundlesResponse> {
  const { bundles, fingerprint } = bundleMap(source, entries, trustDomain, jwtBytesOf, jwtDigestOf);
  return { message: { bundles }, fingerprint };
}

function bundleMap(
  source: WorkloadIdentitySource,
  entries: readonly AgentEntry[],
  trustDomain: string,
  bytesOf: (b: TrustBundle) => Buffer,
  digestOf: (b: TrustBundle) => string,
): { bundles: Record<string, Buffer>; fingerprint: string } {
  const own = ownBundle(source);
  const all = [own, ...heldFederatedBundles(source, federatedTrustDomains(entries, trustDomain))];
  const bundles: Record<string, Buffer> = {};
  const fp: string[] = [];
  for (const b of all) {
    const key = b === own ? trustDomainId(trustDomain) : trustDomainId(b.trustDomain);
    bundles[key] = bytesOf(b);
    fp.push(`${key}|${digestOf(b)}`);
  }
  return { bundles, fingerprint: fp.join('\n') };
}
