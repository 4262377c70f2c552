// The datastore contract of emblem-server. Every implementation (level today, PostgreSQL next)
// must pass test/server/datastore/suite.ts. Rules every implementation keeps:
// - A promise that resolves means the write is durable: it survives kill -9 of the server.
// - Every write of an entry, agent, bundle, federated bundle or authority appends a ChangeEvent in
//   the same atomic write; revisions increase monotonically and are never reused.
// - Rejected writes (not found, already exists) change nothing and throw EmblemError.
import type { Selector } from '../../common/selectors.js';
import type { JsonWebKey } from 'node:crypto';
import type { TrustBundle } from '../../common/trust-bundle.js';

export interface EntryRecord {
  id: string;
  spiffeId: string;
  parentId: string;
  selectors: Selector[];
  /** Seconds; 0 = server default. */
  x509SvidTtl: number;
  jwtSvidTtl: number;
  dnsNames: string[];
  /** Trust domain names. */
  federatesWith: string[];
  admin: boolean;
  downstream: boolean;
  hint: string;
  /** Unix seconds; 0 = never. */
  expiresAt: number;
  createdAt: number;
  /** Change-log revision of the last write to this entry (set by the store). */
  revision: number;
}

/** What a caller provides to create an entry; the store sets revision (and createdAt if 0). */
export type NewEntry = Omit<EntryRecord, 'revision'>;

export type AttestationType = 'join_token' | 'x509pop';

export interface AgentRecord {
  id: string;
  attestationType: AttestationType;
  selectors: Selector[];
  /** Hex serial of the current agent SVID. */
  svidSerial: string;
  svidExpiresAt: number;
  /**
   * Serial of the SVID the current one replaced, still accepted until the agent first presents the
   * new one (a crash between signing and saving the renewed SVID must not lock the agent out).
   */
  previousSvidSerial?: string;
  banned: boolean;
  lastSeen: number;
  createdAt: number;
  canReattest: boolean;
}

export type AuthorityKind = 'x509' | 'jwt';
export type AuthorityStatus = 'prepared' | 'active' | 'old' | 'tainted' | 'revoked';

/** One entry of the CA journal. */
export interface AuthorityRecord {
  /** X.509: hex subject key identifier; JWT: kid. */
  id: string;
  kind: AuthorityKind;
  status: AuthorityStatus;
  notBefore: number;
  notAfter: number;
  /** X.509: DER CA certificate. */
  certificate?: Buffer;
  /** X.509 intermediate: DER chain above the CA certificate, up to the upstream root. */
  upstreamChain?: Buffer[];
  /** JWT: public JWK. */
  publicKey?: JsonWebKey;
  /** Identifier of the private key in the key manager. */
  keyId: string;
  createdAt: number;
  /** Set when a tainted authority's status was reached through taint (kept when later revoked). */
  tainted?: boolean;
}

export type SvidKind = 'x509' | 'jwt' | 'agent';

/** One row of the issuance ledger. */
export interface SvidRecord {
  /** Hex serial (X.509) or token ID (JWT: hex of the first 16 bytes of its SHA-256). */
  serial: string;
  spiffeId: string;
  /** Empty for agent SVIDs. */
  entryId: string;
  agentId: string;
  kind: SvidKind;
  notBefore: number;
  notAfter: number;
  authorityId: string;
  issuedAt: number;
}

export interface SvidQuery {
  spiffeId?: string;
  agentId?: string;
  /** Only SVIDs with notAfter <= this (unix seconds). */
  expiresBefore?: number;
  /** Only SVIDs with notAfter > this (unix seconds). */
  notExpiredAt?: number;
  pageSize?: number;
  pageToken?: string;
}

export interface Page<T> {
  items: T[];
  /** Empty when there are no more items. */
  nextPageToken: string;
}

export type ChangeKind = 'entry' | 'agent' | 'bundle' | 'federated_bundle' | 'authority';

export interface ChangeEvent {
  revision: number;
  kind: ChangeKind;
  /** Entry ID, agent ID, trust domain name or authority ID ("" for the own bundle). */
  id: string;
  /** true when the object was deleted. */
  deleted: boolean;
}

export interface Datastore {
  /** Answers when the store can serve reads and writes (health checks). */
  ping(): Promise<void>;
  close(): Promise<void>;

  /** Small key/value settings, e.g. the trust domain the data directory was created for. */
  getMeta(key: string): Promise<string | undefined>;
  setMeta(key: string, value: string): Promise<void>;

  // Registration entries. createEntry rejects a duplicate id and a "similar" entry (same
  // spiffeId, parentId and selector set) with already_exists.
  createEntry(entry: NewEntry): Promise<EntryRecord>;
  /** Replaces every field but id and createdAt; not_found if absent. */
  updateEntry(entry: NewEntry): Promise<EntryRecord>;
  /** not_found if absent; returns the deleted entry. */
  deleteEntry(id: string): Promise<EntryRecord>;
  getEntry(id: string): Promise<EntryRecord | undefined>;
  /** Every entry (used to build the in-memory index at start). */
  listAllEntries(): Promise<EntryRecord[]>;

  // Attested agents.
  /** Creates or replaces the agent record. */
  putAgent(agent: AgentRecord): Promise<void>;
  getAgent(id: string): Promise<AgentRecord | undefined>;
  listAgents(page?: { pageSize?: number; pageToken?: string }): Promise<Page<AgentRecord>>;
  /** Evict: not_found if absent. */
  deleteAgent(id: string): Promise<void>;
  /** Records liveness without a change event (it is not part of what agents sync). */
  touchAgent(id: string, lastSeen: number): Promise<void>;

  // Join tokens, stored by SHA-256 hash only.
  createJoinToken(hash: string, expiresAt: number): Promise<void>;
  /** Atomically deletes the token and returns its expiry, or undefined if it did not exist. */
  consumeJoinToken(hash: string): Promise<{ expiresAt: number } | undefined>;
  /** Deletes tokens that expired before `now`; returns how many. */
  pruneJoinTokens(now: number): Promise<number>;

  // Own trust bundle and federated bundles.
  getBundle(): Promise<TrustBundle | undefined>;
  /** Stores the bundle as given (the caller bumps `sequence`). */
  setBundle(bundle: TrustBundle): Promise<void>;
  getFederatedBundle(trustDomain: string): Promise<TrustBundle | undefined>;
  listFederatedBundles(): Promise<TrustBundle[]>;
  setFederatedBundle(bundle: TrustBundle): Promise<void>;
  /** not_found if absent. */
  deleteFederatedBundle(trustDomain: string): Promise<void>;

  // CA journal.
  putAuthority(authority: AuthorityRecord): Promise<void>;
  listAuthorities(): Promise<AuthorityRecord[]>;
  deleteAuthority(id: string): Promise<void>;

  // Issuance ledger.
  recordSvids(records: SvidRecord[]): Promise<void>;
  listSvids(query: SvidQuery): Promise<Page<SvidRecord>>;

  // Change log.
  currentRevision(): Promise<number>;
  /**
   * Lowest revision still in the change log (old events are pruned); currentRevision() + 1 when the
   * log is empty. listChanges(since) is complete only for since >= oldestRetainedRevision() - 1.
   */
  oldestRetainedRevision(): Promise<number>;
  /**
   * Events with revision > since, oldest first, at most `limit`. failed_precondition when events
   * after `since` were already pruned: the caller must resynchronise from a full listing.
   */
  listChanges(since: number, limit: number): Promise<ChangeEvent[]>;
  /**
   * Calls `listener` with the new revision after each committed write (from this process, and for
   * shared stores from other servers too). Returns an unsubscribe function.
   */
  onChange(listener: (revision: number) => void): () => void;
}
