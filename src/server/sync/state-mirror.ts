// The server's in-memory copy of everything agents sync: registration entries (indexed by id,
// parent ID and SPIFFE ID; node aliases also by selector), agents, the own bundle, federated bundles
// and the CA journal. It loads once at start and then follows the datastore's change log, so
// serving an agent never queries the datastore (SPIRE-NOTES §9: periodic reloads were the pain).
//
// Following the log: a change event carries only kind/id/deleted, so each page of events is
// applied by re-reading the changed objects (in parallel), then swapping them in synchronously.
// A re-read may return a state newer than the page's last revision; that is harmless because the
// later event is applied too and re-reads the same or a newer state.
import { isEmblemError, unavailable } from '../../common/errors.js';
import type { Logger } from '../../common/logger.js';
import { serverId } from '../../common/spiffe-id.js';
import type { TrustBundle } from '../../common/trust-bundle.js';
import type { AgentRecord, AuthorityRecord, ChangeEvent, Datastore, EntryRecord } from '../datastore/types.js';
import { compareIds, createEntryTable } from './entry-table.js';

/**
 * Called after each applied page of changes, with the mirror's new revision. `previousEntries`
 * holds, for every entry ID in the page, the record as it was before the page (undefined if it
 * did not exist), so consumers can tell what an update or delete replaced.
 */
export type MirrorListener = (
  applied: readonly ChangeEvent[],
  revision: number,
  previousEntries: ReadonlyMap<string, EntryRecord | undefined>,
) => void;

export interface StateMirror {
  readonly trustDomain: string;
  /** spiffe://<td>/emblem/server: the parent ID of node alias entries. */
  readonly serverId: string;
  /** Loads everything at a consistent revision and starts following the change log. */
  start(): Promise<void>;
  /** Stops following (waits for an apply in progress). */
  stop(): Promise<void>;
  /** The change-log revision the mirror reflects. */
  revision(): number;
  /**
   * Resolves once the mirror has applied `revision` (read-your-writes for API handlers, e.g. with
   * the revision a write returned); rejects with `unavailable` when the mirror stops first.
   */
  waitForRevision(revision: number): Promise<void>;
  onApplied(listener: MirrorListener): () => void;

  getEntry(id: string): EntryRecord | undefined;
  entryCount(): number;
  allEntries(): IterableIterator<EntryRecord>;
  /** All entry IDs in ascending order (cached until the set of IDs changes). */
  sortedEntryIds(): readonly string[];
  entriesWithParent(parentId: string): ReadonlyMap<string, EntryRecord> | undefined;
  entriesWithSpiffeId(spiffeId: string): ReadonlyMap<string, EntryRecord> | undefined;
  isNodeAlias(entry: EntryRecord): boolean;
  nodeAliases(): ReadonlyMap<string, EntryRecord>;
  /** Node aliases having the selector "type:value" among theirs. */
  nodeAliasesWithSelector(selectorKey: string): ReadonlyMap<string, EntryRecord> | undefined;

  getAgent(id: string): AgentRecord | undefined;
  allAgents(): IterableIterator<AgentRecord>;
  bundle(): TrustBundle | undefined;
  federatedBundles(): ReadonlyMap<string, TrustBundle>;
  authorities(): ReadonlyMap<string, AuthorityRecord>;
}

export interface StateMirrorOptions {
  logger: Logger;
  trustDomain: string;
  /** Change-log page size (default 1000). */
  changePageSize?: number;
  /** Delay before retrying after a datastore error (default 1000 ms). */
  retryDelayMs?: number;
}

/** What one re-read produced, applied synchronously once the whole page is read. */
type Fetched =
  | { kind: 'entry'; id: string; value: EntryRecord | undefined }
  | { kind: 'agent'; id: string; value: AgentRecord | undefined }
  | { kind: 'bundle'; value: TrustBundle | undefined }
  | { kind: 'federated_bundle'; id: string; value: TrustBundle | undefined }
  | { kind: 'authorities'; value: AuthorityRecord[] };

export function createStateMirror(datastore: Datastore, options: StateMirrorOptions): StateMirror {
  const { logger, trustDomain } = options;
  const pageSize = options.changePageSize ?? 1000;
  const retryDelayMs = options.retryDelayMs ?? 1000;
  const aliasParent = serverId(trustDomain);

  const table = createEntryTable(aliasParent);
  const entries = table.entries;
  const agents = new Map<string, AgentRecord>();
  let ownBundle: TrustBundle | undefined;
  const federated = new Map<string, TrustBundle>();
  const authorities = new Map<string, AuthorityRecord>();

  let revision = 0;
  const listeners = new Set<MirrorListener>();
  const waiters: { revision: number; resolve: () => void; reject: (err: Error) => void }[] = [];
  let unsubscribe: (() => void) | undefined;
  let running: Promise<void> | undefined;
  let again = false;
  let stopped = false;
  let retryTimer: NodeJS.Timeout | undefined;

  function setAuthorities(list: AuthorityRecord[]): void {
    authorities.clear();
    for (const a of list) authorities.set(a.id, a);
  }

  async function fetchChange(ev: ChangeEvent): Promise<Fetched> {
    switch (ev.kind) {
      case 'entry':
        return { kind: 'entry', id: ev.id, value: ev.deleted ? undefined : await datastore.getEntry(ev.id) };
      case 'agent':
        return { kind: 'agent', id: ev.id, value: ev.deleted ? undefined : await datastore.getAgent(ev.id) };
      case 'bundle':
        return { kind: 'bundle', value: await datastore.getBundle() };
      case 'federated_bundle':
        return { kind: 'federated_bundle', id: ev.id, value: ev.deleted ? undefined : await datastore.getFederatedBundle(ev.id) };
      case 'authority':
        return { kind: 'authorities', value: await datastore.listAuthorities() };
    }
  }

  function applyFetched(f: Fetched): void {
    switch (f.kind) {
      case 'entry':
        if (f.value) table.put(f.value);
        else table.remove(f.id);
        return;
      case 'agent':
        if (f.value) agents.set(f.id, f.value);
        else agents.delete(f.id);
        return;
      case 'bundle':
        ownBundle = f.value;
        return;
      case 'federated_bundle':
        if (f.value) federated.set(f.id, f.value);
        else federated.delete(f.id);
        return;
      case 'authorities':
        setAuthorities(f.value);
        return;
    }
  }

  /**
   * Re-reads each changed object once (the last event per object decides) and applies the page;
   * returns the entries' previous records.
   */
  async function applyPage(changes: readonly ChangeEvent[]): Promise<Map<string, EntryRecord | undefined>> {
    const last = new Map<string, ChangeEvent>();
    for (const ev of changes) {
      const key = ev.kind === 'authority' ? 'authority' : `${ev.kind}\u0000${ev.id}`;
      last.delete(key);
      last.set(key, ev);
    }
    const fetched = await Promise.all([...last.values()].map(fetchChange));
    const previous = new Map<string, EntryRecord | undefined>();
    for (const f of fetched) {
      if (f.kind === 'entry') previous.set(f.id, entries.get(f.id));
      applyFetched(f);
    }
    return previous;
  }

  function emit(applied: readonly ChangeEvent[], previous: ReadonlyMap<string, EntryRecord | undefined>): void {
    for (const listener of listeners) {
      try {
        listener(applied, revision, previous);
      } catch (err) {
        logger.error({ err }, 'state mirror listener failed');
      }
    }
    for (let i = waiters.length - 1; i >= 0; i--) {
      const w = waiters[i] as (typeof waiters)[number];
      if (w.revision <= revision) {
        waiters.splice(i, 1);
        w.resolve();
      }
    }
  }

  async function drain(): Promise<void> {
    for (;;) {
      let changes: ChangeEvent[];
      try {
        changes = await datastore.listChanges(revision, pageSize);
      } catch (err) {
        // The log was pruned past our revision: the events in between are gone, so rebuild from
        // the tables and tell listeners what differs.
        if (!isEmblemError(err, 'failed_precondition')) throw err;
        logger.warn({ revision }, 'change log pruned past the mirror revision; resynchronising from the tables');
        await resync();
        continue;
      }
      if (changes.length === 0 || stopped) return;
      const previous = await applyPage(changes);
      revision = Math.max(revision, (changes[changes.length - 1] as ChangeEvent).revision);
      emit(changes, previous);
      if (changes.length < pageSize) return;
    }
  }

  /** Runs one catch-up at a time; requests arriving meanwhile cause exactly one more pass. */
  function requestCatchUp(): Promise<void> {
    if (running) {
      again = true;
      return running;
    }
    running = (async () => {
      try {
        do {
          again = false;
          await drain();
        } while (again && !stopped);
      } catch (err) {
        logger.warn({ err }, 'state mirror could not read the change log; retrying');
        if (!stopped && !retryTimer) {
          retryTimer = setTimeout(() => {
            retryTimer = undefined;
            void requestCatchUp();
          }, retryDelayMs);
          retryTimer.unref();
        }
      } finally {
        running = undefined;
      }
    })();
    return running;
  }

  async function readAll() {
    const allAgents: AgentRecord[] = [];
    const loadAgents = async (): Promise<void> => {
      let pageToken = '';
      do {
        const page = await datastore.listAgents({ pageSize: 10_000, pageToken });
        allAgents.push(...page.items);
        pageToken = page.nextPageToken;
      } while (pageToken !== '');
    };
    const [allEntries, bundle, feds, auths] = await Promise.all([
      datastore.listAllEntries(),
      datastore.getBundle(),
      datastore.listFederatedBundles(),
      datastore.listAuthorities(),
      loadAgents(),
    ]);
    return { allEntries, allAgents, bundle, feds, auths };
  }

  async function loadAll(): Promise<void> {
    const { allEntries, allAgents, bundle, feds, auths } = await readAll();
    for (const e of allEntries) table.put(e);
    for (const a of allAgents) agents.set(a.id, a);
    ownBundle = bundle;
    for (const b of feds) federated.set(b.trustDomain, b);
    setAuthorities(auths);
  }

  /** Replaces the whole state with a fresh read and emits one event per object that differs. */
  async function resync(): Promise<void> {
    const target = await datastore.currentRevision();
    const { allEntries, allAgents, bundle, feds, auths } = await readAll();
    const events: ChangeEvent[] = [];
    const previous = new Map<string, EntryRecord | undefined>();
    const event = (kind: ChangeEvent['kind'], id: string, deleted: boolean) => events.push({ revision: target, kind, id, deleted });
    const freshEntries = new Set(allEntries.map((e) => e.id));
    for (const [id, old] of [...entries]) {
      if (freshEntries.has(id)) continue;
      previous.set(id, old);
      table.remove(id);
      event('entry', id, true);
    }
    for (const e of allEntries) {
      const old = entries.get(e.id);
      if (old && old.revision === e.revision) continue;
      previous.set(e.id, old);
      table.put(e);
      event('entry', e.id, false);
    }
    const freshAgents = new Map(allAgents.map((a) => [a.id, a]));
    for (const id of new Set([...agents.keys(), ...freshAgents.keys()])) {
      const next = freshAgents.get(id);
      if (next && JSON.stringify(next) === JSON.stringify(agents.get(id))) continue;
      if (next) agents.set(id, next);
      else agents.delete(id);
      event('agent', id, !next);
    }
    ownBundle = bundle;
    event('bundle', '', !bundle);
    const freshFeds = new Map(feds.map((b) => [b.trustDomain, b]));
    for (const td of new Set([...federated.keys(), ...freshFeds.keys()])) {
      const next = freshFeds.get(td);
      if (next) federated.set(td, next);
      else federated.delete(td);
      event('federated_bundle', td, !next);
    }
    setAuthorities(auths);
    event('authority', '', false);
    revision = Math.max(revision, target);
    emit(events, previous);
  }

  return {
    trustDomain,
    serverId: aliasParent,

    async start() {
      const started = Date.now();
      // Everything read after this revision is at least as new; replaying the log from here
      // re-reads whatever changed during the load.
      revision = await datastore.currentRevision();
      await loadAll();
      unsubscribe = datastore.onChange((rev) => {
        if (rev > revision && !stopped) void requestCatchUp();
      });
      await requestCatchUp();
      logger.info(
        { entries: entries.size, agents: agents.size, revision, ms: Date.now() - started },
        'state mirror loaded',
      );
    },

    async stop() {
      stopped = true;
      unsubscribe?.();
      if (retryTimer) clearTimeout(retryTimer);
      await running;
      for (const w of waiters.splice(0)) w.reject(unavailable('the state mirror is stopped'));
    },

    revision: () => revision,

    waitForRevision(target) {
      if (target <= revision) return Promise.resolve();
      if (stopped) return Promise.reject(unavailable('the state mirror is stopped'));
      return new Promise((resolve, reject) => {
        waiters.push({ revision: target, resolve, reject });
        void requestCatchUp();
      });
    },

    onApplied(listener) {
      listeners.add(listener);
      return () => listeners.delete(listener);
    },

    getEntry: (id) => entries.get(id),
    entryCount: () => entries.size,
    allEntries: () => entries.values(),
    sortedEntryIds: () => table.sortedIds(),
    entriesWithParent: (parentId) => table.withParent(parentId),
    entriesWithSpiffeId: (spiffeId) => table.withSpiffeId(spiffeId),
    isNodeAlias: (entry) => entry.parentId === aliasParent,
    nodeAliases: () => table.aliases(),
    nodeAliasesWithSelector: (key) => table.aliasesWithSelector(key),

    getAgent: (id) => agents.get(id),
    allAgents: () => agents.values(),
    bundle: () => ownBundle,
    federatedBundles: () => federated,
    authorities: () => authorities,
  };
}

export { compareIds };
