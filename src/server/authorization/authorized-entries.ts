// The per-agent cache of authorised entries (the rules are in crawl.ts). Banned and unknown agents
// are authorised for nothing.
//
// On each applied page of mirror changes, an entry can only matter to agents that reach its old
// or its new parent; those are found by walking up the parent chain in the mirror (affectedBy).
// The common cases are applied in place: a created entry extends the crawls that reach its parent,
// and an update that keeps parent and spiffe_id replaces the record. Anything else (deletes, moves,
// node alias changes, expiry changes, agent changes) drops the affected agents' cache, and they are
// recomputed on their next read.
import type { Logger } from '../../common/logger.js';
import { isSubset, selectorKeys } from '../../common/selectors.js';
import type { ChangeEvent, EntryRecord } from '../datastore/types.js';
import type { StateMirror } from '../sync/state-mirror.js';
import { crawl, extendCrawl, isExpired, replaceInCrawl, type Crawl } from './crawl.js';

export { authorizedEntries } from './crawl.js';

/** One applied page of mirror changes, as seen by authorization consumers (the agent feeds). */
export interface AuthorizationChange {
  revision: number;
  applied: readonly ChangeEvent[];
  /**
   * Agents whose authorised set may have changed in any way (their cache was dropped), or whose
   * own record changed: consumers compare their whole set.
   */
  recomputedAgents: ReadonlySet<string>;
  /** Agents whose set only gained or updated entries, with those entries (disjoint from the above). */
  upsertedEntries: ReadonlyMap<string, readonly EntryRecord[]>;
  bundleChanged: boolean;
  federatedChanged: boolean;
  authoritiesChanged: boolean;
}

export type AuthorizationListener = (change: AuthorizationChange) => void;

export interface EntryAuthorizer {
  /** The authorised entries of an agent, by entry ID: a live view, read it at once, never mutate. */
  authorizedMap(agentId: string): ReadonlyMap<string, EntryRecord>;
  authorizedEntries(agentId: string): EntryRecord[];
  isAuthorized(agentId: string, entryId: string): boolean;
  /** Earliest expires_at (Unix seconds) among the agent's authorised entries and aliases; 0 = none. */
  nextExpiry(agentId: string): number;
  /** Called after the cache is brought up to date for each applied page of mirror changes. */
  onChange(listener: AuthorizationListener): () => void;
  /** Stops following the mirror. */
  close(): void;
}

export interface EntryAuthorizerOptions {
  /** Unix seconds; injectable for expiry tests. */
  now?: () => number;
  /** Where a failing listener is reported. */
  logger?: Logger;
}

const EMPTY: ReadonlyMap<string, EntryRecord> = new Map();

export const nowSeconds = (): number => Math.floor(Date.now() / 1000);

type EntryChangeKind = 'create' | 'update' | 'other';

export function createEntryAuthorizer(mirror: StateMirror, options: EntryAuthorizerOptions = {}): EntryAuthorizer {
  const now = options.now ?? nowSeconds;
  const cache = new Map<string, Crawl>();
  /** Node alias ID -> cached agents that matched it (only aliases, so it stays small). */
  const aliasMembers = new Map<string, Set<string>>();
  const listeners = new Set<AuthorizationListener>();

  function forget(agentId: string): void {
    const c = cache.get(agentId);
    if (!c) return;
    cache.delete(agentId);
    for (const id of c.aliasIds) {
      const members = aliasMembers.get(id);
      members?.delete(agentId);
      if (members?.size === 0) aliasMembers.delete(id);
    }
  }

  function compute(agentId: string): Crawl | undefined {
    const t = now();
    const cached = cache.get(agentId);
    if (cached && (cached.minExpiry === 0 || cached.minExpiry > t)) return cached;
    forget(agentId);
    const agent = mirror.getAgent(agentId);
    if (!agent || agent.banned) return undefined;
    const c = crawl(mirror, agent, t);
    cache.set(agentId, c);
    for (const id of c.aliasIds) {
      let members = aliasMembers.get(id);
      if (!members) aliasMembers.set(id, (members = new Set()));
      members.add(agentId);
    }
    return c;
  }

  /**
   * Adds to `out` the cached agents that may reach `parentId`: walks up through entries whose
   * spiffe_id is the node to the roots (agent IDs, node aliases). Over-approximates on purpose
   * (expiry is ignored); callers check or recompute exactly.
   */
  function agentsReaching(parentId: string, out: Set<string>, walked = new Set<string>()): void {
    const stack = [parentId];
    while (stack.length > 0) {
      const node = stack.pop() as string;
      if (walked.has(node) || node === mirror.serverId) continue;
      walked.add(node);
      if (cache.has(node)) out.add(node);
      const holders = mirror.entriesWithSpiffeId(node);
      if (!holders) continue;
      for (const e of holders.values()) {
        if (!mirror.isNodeAlias(e)) stack.push(e.parentId);
        else for (const a of aliasMembers.get(e.id) ?? []) out.add(a);
      }
    }
  }

  /** Cached agents that match `alias` (a new or changed node alias). */
  function cachedMembersOf(alias: EntryRecord, out: Set<string>): void {
    if (alias.selectors.length === 0) return;
    for (const agentId of cache.keys()) {
      const agent = mirror.getAgent(agentId);
      if (agent && isSubset(alias.selectors, selectorKeys(agent.selectors))) out.add(agentId);
    }
  }

  function classify(old: EntryRecord | undefined, current: EntryRecord | undefined, t: number): EntryChangeKind {
    if (!current || mirror.isNodeAlias(current) || isExpired(current, t)) return 'other';
    if (!old) return 'create';
    const sameShape = old.parentId === current.parentId && old.spiffeId === current.spiffeId;
    return sameShape && !mirror.isNodeAlias(old) && !isExpired(old, t) ? 'update' : 'other';
  }

  /** Brings the cache up to date with one page. */
  function applyPage(
    applied: readonly ChangeEvent[],
    previous: ReadonlyMap<string, EntryRecord | undefined>,
  ): { recomputed: Set<string>; upserted: Map<string, EntryRecord[]> } {
    const t = now();
    const invalid = new Set<string>();
    const walked = new Set<string>();
    const inPlace: { kind: 'create' | 'update'; entry: EntryRecord }[] = [];
    for (const ev of applied) if (ev.kind === 'agent') invalid.add(ev.id);
    for (const [id, old] of previous) {
      const current = mirror.getEntry(id);
      const kind = classify(old, current, t);
      if (kind !== 'other') {
        inPlace.push({ kind, entry: current as EntryRecord });
        continue;
      }
      for (const rec of [old, current]) {
        if (!rec) continue;
        if (!mirror.isNodeAlias(rec)) agentsReaching(rec.parentId, invalid, walked);
        else if (rec === old) for (const a of aliasMembers.get(rec.id) ?? []) invalid.add(a);
        else cachedMembersOf(rec, invalid);
      }
    }
    for (const agentId of invalid) forget(agentId);
    const upserted = new Map<string, EntryRecord[]>();
    for (const { kind, entry } of inPlace) {
      const candidates = new Set<string>();
      agentsReaching(entry.parentId, candidates);
      for (const agentId of candidates) {
        const c = cache.get(agentId);
        if (!c) continue;
        let added = upserted.get(agentId);
        if (!added) upserted.set(agentId, (added = []));
        if (kind === 'create') extendCrawl(mirror, c, entry, t, added);
        else if (replaceInCrawl(c, entry)) added.push(entry);
        if (added.length === 0) upserted.delete(agentId);
      }
    }
    return { recomputed: invalid, upserted };
  }

  const unsubscribe = mirror.onApplied((applied, revision, previous) => {
    const { recomputed, upserted } = applyPage(applied, previous);
    const change: AuthorizationChange = {
      revision,
      applied,
      recomputedAgents: recomputed,
      upsertedEntries: upserted,
      bundleChanged: applied.some((e) => e.kind === 'bundle'),
      federatedChanged: applied.some((e) => e.kind === 'federated_bundle'),
      authoritiesChanged: applied.some((e) => e.kind === 'authority'),
    };
    for (const listener of listeners) {
      try {
        listener(change);
      } catch (err) {
        options.logger?.error({ err }, 'authorization listener failed');
      }
    }
  });

  return {
    authorizedMap: (agentId) => compute(agentId)?.entries ?? EMPTY,
    authorizedEntries: (agentId) => [...(compute(agentId)?.entries.values() ?? [])],
    isAuthorized: (agentId, entryId) => compute(agentId)?.entries.has(entryId) ?? false,
    nextExpiry: (agentId) => compute(agentId)?.minExpiry ?? 0,
    onChange(listener) {
      listeners.add(listener);
      return () => listeners.delete(listener);
    },
    close() {
      unsubscribe();
      listeners.clear();
      cache.clear();
      aliasMembers.clear();
    },
  };
}
