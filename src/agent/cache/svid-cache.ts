// The agent's in-memory view of what it may hand out: authorised entries, minted X.509-SVIDs,
// bundles and cached JWT-SVIDs. The Workload API reads it through WorkloadIdentitySource; the sync
// client and the SVID minter write it in batches. Each write method is one batch, and listeners are
// told once per batch at most (batches in the same tick, or during a notification pass, are
// coalesced into one pass).
// Persistence is the writers' job (src/agent/storage); this module never touches the disk.
import type { AgentEntry, JwtSvid, WorkloadIdentitySource, X509Identity } from './types.js';
import { EntryIndex, freezeEntry } from './entry-index.js';
import { JwtSvidCache, type JwtMinter } from './jwt-cache.js';
import { EmblemError, invalidArgument, notFound, unavailable } from '../../common/errors.js';
import { silentLogger, type Logger } from '../../common/logger.js';
import type { TrustBundle } from '../../common/trust-bundle.js';

export interface SvidCacheOptions {
  /** Mints a JWT-SVID through the server (NewJWTSVID). May also be set later with setJwtMinter. */
  mintJwtSvid?: JwtMinter;
  jwtCacheSize?: number;
  /** Milliseconds since the epoch. */
  now?: () => number;
  logger?: Logger;
}

/** A sync update as the cache applies it. */
export interface CacheSyncChange {
  /** true: `upserted` is the complete authorised set. */
  full: boolean;
  upserted: readonly AgentEntry[];
  deletedIds: readonly string[];
  bundle?: TrustBundle;
  /** The complete federated bundle map, when it changed. */
  federatedBundles?: ReadonlyMap<string, TrustBundle>;
}

/** A minted SVID before it is bound to its (current) entry. */
export type MintedX509Svid = Omit<X509Identity, 'entry'> & { entryId: string };

/** What an applied sync change did to the entries. */
export interface CacheSyncResult {
  /** Entries that are new or whose revision changed. */
  changed: AgentEntry[];
  /** IDs of entries that are gone (their SVIDs are gone too). */
  removedIds: string[];
}

/** Listeners told per event-loop turn; see notifyPass(). */
export const LISTENER_SLICE = 50;

export class SvidCache implements WorkloadIdentitySource {
  private readonly index = new EntryIndex();
  private readonly x509 = new Map<string, X509Identity>();
  private ownBundle: TrustBundle | undefined;
  private federated: ReadonlyMap<string, TrustBundle> = new Map();
  private readonly listeners = new Set<() => void>();
  private notifying = false;
  private changedSincePass = false;
  private readonly passWaiters: (() => void)[] = [];
  private terminated = false;
  private jwtMinter: JwtMinter | undefined;
  private readonly jwt: JwtSvidCache;
  private readonly log: Logger;
  private readonly now: () => number;

  constructor(options: SvidCacheOptions = {}) {
    this.jwtMinter = options.mintJwtSvid;
    this.now = options.now ?? Date.now;
    this.log = options.logger ?? silentLogger();
    this.jwt = new JwtSvidCache({
      mint: (entryId, audience) => {
        if (!this.jwtMinter) return Promise.reject(unavailable('the agent is not connected to the server yet'));
        return this.jwtMinter(entryId, audience);
      },
      ...(options.jwtCacheSize === undefined ? {} : { maxSize: options.jwtCacheSize }),
      ...(options.now === undefined ? {} : { now: options.now }),
    });
  }

  // --- WorkloadIdentitySource -------------------------------------------------------------

  ready(): boolean {
    return !this.terminated && this.ownBundle !== undefined;
  }

  entriesFor(workloadSelectors: ReadonlySet<string>): AgentEntry[] {
    return this.index.match(workloadSelectors);
  }

  /** The entry's SVID, unless it has expired (an expired SVID is never handed out). */
  x509Identity(entryId: string): X509Identity | undefined {
    const identity = this.x509.get(entryId);
    if (!identity || identity.notAfter * 1000 <= this.now()) return undefined;
    return identity;
  }

  bundle(): TrustBundle | undefined {
    return this.ownBundle;
  }

  federatedBundles(): ReadonlyMap<string, TrustBundle> {
    return this.federated;
  }

  async fetchJwtSvid(entryId: string, audience: string[]): Promise<JwtSvid> {
    if (!Array.isArray(audience) || audience.length === 0) throw invalidArgument('a JWT-SVID needs at least one audience');
    if (audience.some((a) => typeof a !== 'string' || a.length === 0)) throw invalidArgument('JWT-SVID audiences must be non-empty strings');
    if (this.terminated) throw new EmblemError('unavailable', 'the agent is shutting down');
    if (!this.index.has(entryId)) throw notFound(`entry ${JSON.stringify(entryId)} is not authorised for this agent`);
    return this.jwt.fetch(entryId, audience);
  }

  onChange(listener: () => void): () => void {
    this.listeners.add(listener);
    return () => {
      this.listeners.delete(listener);
    };
  }

  // --- reads for the agent's own components ------------------------------------------------

  entry(id: string): AgentEntry | undefined {
    return this.index.get(id);
  }

  entries(): AgentEntry[] {
    return this.index.all();
  }

  identities(): X509Identity[] {
    return [...this.x509.values()];
  }

  get entryCount(): number {
    return this.index.size;
  }

  isTerminated(): boolean {
    return this.terminated;
  }

  // --- writes (one batch each) -------------------------------------------------------------

  setJwtMinter(mint: JwtMinter | undefined): void {
    this.jwtMinter = mint;
  }

  applySync(change: CacheSyncChange): CacheSyncResult {
    if (this.terminated) return { changed: [], removedIds: [] };
    const removed = new Set<string>();
    if (change.full) {
      const keep = new Set(change.upserted.map((e) => e.id));
      for (const id of this.index.ids()) if (!keep.has(id)) removed.add(id);
    }
    for (const id of change.deletedIds) if (this.index.has(id)) removed.add(id);
    for (const id of removed) this.dropEntry(id);

    const changed: AgentEntry[] = [];
    for (const raw of change.upserted) {
      const old = this.index.get(raw.id);
      if (old && old.revision === raw.revision) continue;
      const entry = freezeEntry(raw);
      this.index.set(entry);
      changed.push(entry);
      removed.delete(entry.id);
      if (!old) continue;
      this.jwt.dropEntry(entry.id);
      const identity = this.x509.get(entry.id);
      // A new SPIFFE ID makes the old SVID wrong; otherwise it stays valid until the re-mint.
      if (identity && old.spiffeId !== entry.spiffeId) this.x509.delete(entry.id);
      else if (identity) this.x509.set(entry.id, Object.freeze({ ...identity, entry }));
    }
    let dirty = changed.length > 0 || removed.size > 0;
    if (change.bundle) {
      this.ownBundle = change.bundle;
      dirty = true;
    }
    if (change.federatedBundles) {
      this.federated = new Map(change.federatedBundles);
      dirty = true;
    }
    if (dirty) this.changed();
    return { changed, removedIds: [...removed] };
  }

  setBundle(bundle: TrustBundle): void {
    if (this.terminated) return;
    this.ownBundle = bundle;
    this.changed();
  }

  /** Stores minted SVIDs; an SVID whose entry is gone is ignored. Returns how many were stored. */
  putIdentities(identities: readonly MintedX509Svid[]): number {
    if (this.terminated) return 0;
    let stored = 0;
    for (const i of identities) {
      const entry = this.index.get(i.entryId);
      if (!entry) continue;
      this.x509.set(
        entry.id,
        Object.freeze({
          entry,
          chain: Object.freeze([...i.chain]) as Buffer[],
          privateKeyPkcs8: i.privateKeyPkcs8,
          notAfter: i.notAfter,
          authorityId: i.authorityId,
        }),
      );
      stored++;
    }
    if (stored > 0) this.changed();
    return stored;
  }

  /** Forgets every cached JWT-SVID (e.g. a signing authority was tainted); they are re-minted on demand. */
  dropJwtSvids(): void {
    this.jwt.clear();
  }

  removeIdentities(entryIds: readonly string[]): void {
    let any = false;
    for (const id of entryIds) any = this.x509.delete(id) || any;
    if (any) this.changed();
  }

  /**
   * Stops serving for good (banned or evicted agent): every entry, SVID, bundle and token is
   * dropped and ready() turns false.
   */
  terminate(): void {
    if (this.terminated) return;
    this.terminated = true;
    this.index.clear();
    this.x509.clear();
    this.jwt.clear();
    this.ownBundle = undefined;
    this.federated = new Map();
    this.changed();
  }

  /** Resolves once every listener has been told of every change so far. */
  listenersTold(): Promise<void> {
    if (!this.notifying) return Promise.resolve();
    return new Promise((resolve) => this.passWaiters.push(resolve));
  }

  private dropEntry(id: string): void {
    this.index.delete(id);
    this.x509.delete(id);
    this.jwt.dropEntry(id);
  }

  private changed(): void {
    this.changedSincePass = true;
    if (this.notifying) return;
    this.notifying = true;
    queueMicrotask(() => this.notifyPass());
  }

  /**
   * Tells every listener, LISTENER_SLICE per event-loop turn: the Workload API streams of the first
   * slice write their messages (and the socket sends them) while the next slice is being built,
   * instead of 1,000 streams' writes all waiting for the last one. A change during a pass starts
   * another pass once it ends (listeners read the current state when called, so none misses it).
   */
  private notifyPass(): void {
    this.changedSincePass = false;
    const listeners = [...this.listeners];
    let next = 0;
    const slice = (): void => {
      for (const end = Math.min(next + LISTENER_SLICE, listeners.length); next < end; next++) {
        const listener = listeners[next]!;
        if (!this.listeners.has(listener)) continue;
        try {
          listener();
        } catch (err) {
          this.log.error({ err }, 'identity cache listener failed');
        }
      }
      if (next < listeners.length) setImmediate(slice);
      else if (this.changedSincePass) this.notifyPass();
      else {
        this.notifying = false;
        for (const resolve of this.passWaiters.splice(0)) resolve();
      }
    };
    slice();
  }

}
