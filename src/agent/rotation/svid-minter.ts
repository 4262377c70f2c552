// Pre-mints an X.509-SVID for every authorised entry, so the Workload API answers from memory.
// - The key pair of each SVID is generated here and never leaves the node; the server only sees CSRs,
//   sent to BatchNewX509SVID in batches of at most 500.
// - New and changed entries are minted as soon as the sync update is applied (no polling).
// - Each SVID is renewed at half its lifetime ±10%, through one scheduler (one timer in all).
// - SVIDs signed by a tainted authority are re-keyed at once.
// - A per-entry refusal (e.g. the entry is no longer authorised) is logged and dropped, and tried
//   again later only if the entry is still there; an RPC failure retries the batch with backoff,
//   cut short by the next sync update (the server is back).
import { errorMessage } from '../../common/errors.js';
import { silentLogger, type Logger } from '../../common/logger.js';
import { parseCertificate, type ParsedCertificate } from '../../common/x509/cert-parse.js';
import { splitDerCertificates } from '../../common/x509/chain.js';
import type { CacheSyncResult, SvidCache } from '../cache/svid-cache.js';
import type { X509SvidParamsMsg, X509SvidResultMsg } from '../client/messages.js';
import type { AgentStore, StoredIdentity } from '../storage/agent-store.js';
import { systemClock, type Clock, type TimerHandle } from './clock.js';
import { prepareKey, type PreparedKey } from './key-pool.js';
import { backoffDelayMs, rotationTimeMs } from './rotation-time.js';
import { DueScheduler } from './scheduler.js';

export const MAX_CSRS_PER_CALL = 500;
/** Batches with the server at once: one being signed while the previous one is served. */
export const MAX_BATCHES_IN_FLIGHT = 2;

export interface X509Signer {
  batchNewX509Svid(params: X509SvidParamsMsg[]): Promise<X509SvidResultMsg[]>;
}

export interface SvidMinterOptions {
  cache: SvidCache;
  store: Pick<AgentStore, 'putIdentities'>;
  signer: X509Signer;
  /** Where fresh key pairs (with their CSRs) come from; default: made on demand. See key-pool.ts. */
  keys?: { take(): PreparedKey };
  clock?: Clock;
  /** Returns a number in [0, 1). */
  random?: () => number;
  logger?: Logger;
  batchSize?: number;
  /** Delay before an entry the server refused is tried again (if it is still authorised). */
  refusedRetryMs?: number;
  /** Backoff of whole-batch retries after an RPC failure. */
  rpcBackoff?: { initialMs: number; maxMs: number };
  /** Called once per SVID stored: why it was minted (metrics). */
  onMinted?: (reason: 'new' | 'expiring' | 'tainted') => void;
}

interface Pending {
  entryId: string;
  revision: number;
  spiffeId: string;
  key: PreparedKey;
}

export class SvidMinter {
  private readonly cache: SvidCache;
  private readonly clock: Clock;
  private readonly random: () => number;
  private readonly log: Logger;
  private readonly batchSize: number;
  private readonly refusedRetryMs: number;
  private readonly rpcBackoff: { initialMs: number; maxMs: number };
  private readonly scheduler: DueScheduler;
  private readonly keys: { take(): PreparedKey };
  /** Entry revision each current SVID was minted for. */
  private readonly mintedRevision = new Map<string, number>();
  private readonly queue = new Set<string>();
  /** Entries whose CSR is with the server right now. */
  private readonly inFlight = new Set<string>();
  /** The server's current list of tainted authorities. */
  private tainted = new Set<string>();
  private running = false;
  private kickQueued = false;
  private stopped = false;
  private failures = 0;
  private retryTimer: TimerHandle | undefined;
  private readonly idleWaiters: (() => void)[] = [];

  constructor(private readonly opts: SvidMinterOptions) {
    this.cache = opts.cache;
    this.clock = opts.clock ?? systemClock;
    this.random = opts.random ?? Math.random;
    this.log = (opts.logger ?? silentLogger()).child({ component: 'svid-minter' });
    this.batchSize = Math.min(opts.batchSize ?? MAX_CSRS_PER_CALL, MAX_CSRS_PER_CALL);
    this.refusedRetryMs = opts.refusedRetryMs ?? 30_000;
    this.rpcBackoff = opts.rpcBackoff ?? { initialMs: 1_000, maxMs: 60_000 };
    this.scheduler = new DueScheduler((ids) => this.mint(ids), this.clock);
    this.keys = opts.keys ?? { take: prepareKey };
  }

  /**
   * Takes over what the cache holds at start-up: SVIDs loaded from the store (with the revisions
   * they were minted for) are scheduled for renewal; entries without a usable SVID are minted now.
   */
  start(loaded: readonly Pick<StoredIdentity, 'entryId' | 'entryRevision'>[] = []): void {
    for (const l of loaded) this.mintedRevision.set(l.entryId, l.entryRevision);
    const nowSec = this.clock.now() / 1000;
    const toMint: string[] = [];
    for (const entry of this.cache.entries()) {
      const identity = this.cache.x509Identity(entry.id);
      if (!identity || identity.notAfter <= nowSec || this.mintedRevision.get(entry.id) !== entry.revision) toMint.push(entry.id);
      else this.scheduleRenewal(entry.id, identity.chain[0]!);
    }
    this.mint(toMint);
  }

  /**
   * Reacts to an applied sync update: mints new/changed entries, forgets removed ones and re-keys
   * SVIDs of newly tainted authorities. `taintedAuthorityIds` is the server's complete current list
   * (it comes with every update), so only authorities not seen before trigger a re-key.
   */
  handleSync(result: CacheSyncResult, taintedAuthorityIds: readonly string[] = []): void {
    // An update just came from the server, so it is reachable again: retry a failed batch now
    // rather than at the end of its backoff (SVIDs may have expired during the outage).
    if (this.retryTimer) {
      this.retryTimer.cancel();
      this.retryTimer = undefined;
      this.kick();
    }
    for (const id of result.removedIds) this.forget(id);
    const toMint = result.changed.filter((e) => this.mintedRevision.get(e.id) !== e.revision || !this.cache.x509Identity(e.id)).map((e) => e.id);
    this.mint(toMint);
    const newlyTainted = taintedAuthorityIds.filter((id) => !this.tainted.has(id));
    this.tainted = new Set(taintedAuthorityIds);
    if (newlyTainted.length > 0) this.taint(newlyTainted);
  }

  /**
   * Re-keys every X.509-SVID signed by one of these authorities, now, and drops the cached
   * JWT-SVIDs (a tainted ID may be a JWT key; tokens are cheap to mint again on demand).
   */
  taint(authorityIds: readonly string[]): void {
    const tainted = new Set(authorityIds);
    this.cache.dropJwtSvids();
    const ids = this.cache
      .identities()
      .filter((i) => tainted.has(i.authorityId) && !this.queue.has(i.entry.id) && !this.inFlight.has(i.entry.id))
      .map((i) => i.entry.id);
    if (ids.length > 0) this.log.info({ count: ids.length, authorities: [...tainted] }, 're-keying SVIDs signed by a tainted authority');
    this.mint(ids);
  }

  /** When the SVID of an entry is due for renewal (clock ms), if scheduled. */
  renewalDue(entryId: string): number | undefined {
    return this.scheduler.dueAt(entryId);
  }

  /** Resolves once nothing is queued or in flight (tests, shutdown). */
  idle(): Promise<void> {
    if (this.isIdle()) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  stop(): void {
    this.stopped = true;
    this.scheduler.stop();
    this.retryTimer?.cancel();
    this.queue.clear();
    this.settleIdle();
  }

  // ---------------------------------------------------------------------------------------------

  private forget(entryId: string): void {
    this.scheduler.cancel(entryId);
    this.queue.delete(entryId);
    this.mintedRevision.delete(entryId);
  }

  private mint(entryIds: readonly string[]): void {
    if (this.stopped || entryIds.length === 0) return;
    for (const id of entryIds) {
      this.scheduler.cancel(id);
      this.queue.add(id);
    }
    this.kick();
  }

  /** Runs the worker on the next tick, so mint requests from one sync update form one batch. */
  private kick(): void {
    if (this.running || this.kickQueued || this.retryTimer) return;
    this.kickQueued = true;
    setImmediate(() => {
      this.kickQueued = false;
      void this.work();
    });
  }

  /**
   * Sends the queue to the server in batches, up to MAX_BATCHES_IN_FLIGHT at a time: while the
   * server signs one batch, the SVIDs of the previous one are already being served.
   */
  private async work(): Promise<void> {
    if (this.running || this.stopped) return;
    this.running = true;
    const active = new Set<Promise<void>>();
    try {
      while (!this.stopped && !this.retryTimer) {
        if (this.queue.size === 0 || active.size >= MAX_BATCHES_IN_FLIGHT) {
          if (active.size === 0) break;
          await Promise.race(active);
          continue;
        }
        const batch = this.takeBatch();
        if (batch.length === 0) continue;
        const done: Promise<void> = this.signAndStore(batch).finally(() => active.delete(done));
        active.add(done);
        // Let this batch's request reach the wire before the next one is put together.
        await new Promise<void>((resolve) => setImmediate(resolve));
      }
      await Promise.all(active);
    } finally {
      this.running = false;
      if (this.queue.size > 0 && !this.retryTimer && !this.stopped) this.kick();
      else this.settleIdle();
    }
  }

  /** One batch: the RPC, then the results into the cache and the store. Never rejects. */
  private async signAndStore(batch: Pending[]): Promise<void> {
    for (const p of batch) this.inFlight.add(p.entryId);
    let results: X509SvidResultMsg[];
    try {
      results = await this.opts.signer.batchNewX509Svid(batch.map((p) => ({ entry_id: p.entryId, csr: p.key.csr })));
    } catch (err) {
      for (const p of batch) {
        this.inFlight.delete(p.entryId);
        this.queue.add(p.entryId);
      }
      if (!this.retryTimer && !this.stopped) this.retryLater(err);
      return;
    }
    this.failures = 0;
    try {
      await this.store(batch, results);
    } catch (err) {
      this.log.error({ reason: errorMessage(err) }, 'cannot take minted SVIDs into the cache');
    } finally {
      for (const p of batch) this.inFlight.delete(p.entryId);
    }
  }

  private takeBatch(): Pending[] {
    const batch: Pending[] = [];
    for (const id of this.queue) {
      if (batch.length >= this.batchSize) break;
      this.queue.delete(id);
      const entry = this.cache.entry(id);
      if (!entry) continue;
      batch.push({ entryId: id, revision: entry.revision, spiffeId: entry.spiffeId, key: this.keys.take() });
    }
    return batch;
  }

  private retryLater(err: unknown): void {
    const delay = backoffDelayMs(this.failures++, this.rpcBackoff.initialMs, this.rpcBackoff.maxMs, this.random);
    this.log.warn({ reason: errorMessage(err), pending: this.queue.size, retryInMs: Math.round(delay) }, 'SVID signing failed; will retry');
    this.retryTimer = this.clock.setTimer(() => {
      this.retryTimer = undefined;
      this.kick();
    }, delay);
    this.settleIdle();
  }

  private async store(batch: Pending[], results: X509SvidResultMsg[]): Promise<void> {
    const stored: StoredIdentity[] = [];
    const notBefore = new Map<string, number>();
    batch.forEach((p, i) => {
      const r = results[i]!;
      try {
        if (r.entry_id !== p.entryId) throw new Error(`result ${i} is for entry ${r.entry_id}, expected ${p.entryId}`);
        if (r.status && r.status.code !== 0) throw new Error(r.status.message || `status ${r.status.code}`);
        const chain = splitDerCertificates(r.svid_chain);
        const leaf = this.checkLeaf(p, chain);
        notBefore.set(p.entryId, leaf.notBefore);
        stored.push({
          entryId: p.entryId,
          entryRevision: p.revision,
          chain,
          privateKeyPkcs8: p.key.privateKeyPkcs8,
          notAfter: leaf.notAfter,
          authorityId: r.authority_id,
        });
      } catch (err) {
        this.refused(p, err);
      }
    });
    // An entry that changed while its CSR was in flight gets the SVID of its new revision instead.
    const current = stored.filter((s) => this.cache.entry(s.entryId)?.revision === s.entryRevision);
    if (current.length === 0) return;
    for (const s of current) {
      const previous = this.cache.x509Identity(s.entryId);
      this.opts.onMinted?.(!previous ? 'new' : this.tainted.has(previous.authorityId) ? 'tainted' : 'expiring');
    }
    // Served first, persisted next: the streams do not wait for the disk. A crash in between only
    // loses SVIDs that the restarted agent mints again (it re-keys what it cannot load).
    this.cache.putIdentities(current.map(({ entryRevision: _, ...identity }) => identity));
    for (const s of current) {
      this.mintedRevision.set(s.entryId, s.entryRevision);
      if (this.queue.has(s.entryId)) continue;
      if (this.tainted.has(s.authorityId)) {
        // Signed by an authority already tainted (it raced the taint, or the server has no other
        // authority yet): try again later rather than in a tight loop.
        this.log.warn({ entryId: s.entryId, authorityId: s.authorityId }, 'new SVID is signed by a tainted authority; re-keying later');
        this.scheduler.schedule(s.entryId, this.clock.now() + this.refusedRetryMs);
      } else {
        this.scheduleRenewalAt(s.entryId, notBefore.get(s.entryId)!, s.notAfter);
      }
    }
    try {
      await this.opts.store.putIdentities(current);
    } catch (err) {
      // Still serve them: only a restart would lose them, and they are re-minted then.
      this.log.error({ reason: errorMessage(err) }, 'cannot persist minted SVIDs');
    }
    this.log.debug({ count: current.length }, 'minted X.509-SVIDs');
  }

  /** The leaf must name the entry's SPIFFE ID and certify the key we generated. */
  private checkLeaf(p: Pending, chain: Buffer[]): ParsedCertificate {
    if (!chain[0]) throw new Error('empty SVID chain');
    const leaf = parseCertificate(chain[0], 'SVID');
    if (leaf.uris.length !== 1 || leaf.uris[0] !== p.spiffeId) throw new Error(`SVID is for ${leaf.uris.join(', ')}, expected ${p.spiffeId}`);
    if (!leaf.spkiDer.equals(p.key.spki)) throw new Error('SVID does not certify the key of the CSR');
    return leaf;
  }

  private refused(p: Pending, err: unknown): void {
    this.log.warn({ entryId: p.entryId, reason: errorMessage(err) }, 'server did not issue an SVID for this entry');
    if (this.cache.entry(p.entryId) && !this.queue.has(p.entryId)) {
      this.scheduler.schedule(p.entryId, this.clock.now() + this.refusedRetryMs);
    }
  }

  private scheduleRenewal(entryId: string, leafDer: Buffer): void {
    const leaf = parseCertificate(leafDer, 'SVID');
    this.scheduleRenewalAt(entryId, leaf.notBefore, leaf.notAfter);
  }

  private scheduleRenewalAt(entryId: string, notBefore: number, notAfter: number): void {
    this.scheduler.schedule(entryId, rotationTimeMs(notBefore, notAfter, this.random));
  }

  /** Nothing running and nothing queued that is not waiting for a retry timer. */
  private isIdle(): boolean {
    return !this.running && !this.kickQueued && (this.queue.size === 0 || this.retryTimer !== undefined || this.stopped);
  }

  private settleIdle(): void {
    if (!this.isIdle()) return;
    for (const w of this.idleWaiters.splice(0)) w();
  }
}
