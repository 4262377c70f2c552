// What the Workload API serves from: the agent's cache of authorised entries, minted SVIDs and
// bundles. Implemented by the agent's SVID cache (src/agent/cache/); consumed by
// src/agent/workloadapi/. All data is immutable once handed out: a change produces new objects and
// an onChange notification.
import type { Selector } from '../../common/selectors.js';
import type { TrustBundle } from '../../common/trust-bundle.js';

/** An authorised registration entry as the agent knows it. */
export interface AgentEntry {
  id: string;
  spiffeId: string;
  parentId: string;
  selectors: Selector[];
  federatesWith: string[];
  hint: string;
  jwtSvidTtl: number;
  createdAt: number;
  revision: number;
}

/** A ready X.509-SVID for one entry. */
export interface X509Identity {
  entry: AgentEntry;
  /** DER certificates, leaf first (then intermediates, if any). */
  chain: Buffer[];
  /** Unencrypted PKCS#8 DER of the SVID's private key. */
  privateKeyPkcs8: Buffer;
  /** Unix seconds. */
  notAfter: number;
  /** ID of the authority that signed the leaf. */
  authorityId: string;
}

export interface JwtSvid {
  token: string;
  /** Unix seconds. */
  expiresAt: number;
}

export interface WorkloadIdentitySource {
  /** True once the agent has attested and holds a bundle. */
  ready(): boolean;
  /**
   * Entries whose selectors are all contained in `workloadSelectors` (keys "type:value"), in the
   * Workload API order: the default identity first (oldest createdAt, then lowest id).
   */
  entriesFor(workloadSelectors: ReadonlySet<string>): AgentEntry[];
  /** The minted SVID of an entry, if one is ready. */
  x509Identity(entryId: string): X509Identity | undefined;
  /** The bundle of the agent's own trust domain. */
  bundle(): TrustBundle | undefined;
  /** Federated bundles by trust domain name. */
  federatedBundles(): ReadonlyMap<string, TrustBundle>;
  /** Mints (or returns a cached, more than half-life fresh) JWT-SVID for an entry and audience list. */
  fetchJwtSvid(entryId: string, audience: string[]): Promise<JwtSvid>;
  /** Called after any change (entries, SVIDs, bundles). Returns an unsubscribe function. */
  onChange(listener: () => void): () => void;
}
