// The authorisation crawl over the state mirror (SPIRE-NOTES §3.2). An agent is authorised for:
// - entries whose parent_id is the agent's ID;
// - entries whose parent_id is the spiffe_id of a node alias (an entry parented by
//   spiffe://<td>/emblem/server) whose selectors are a non-empty subset of the agent's node
//   selectors;
// - transitively, entries whose parent_id is the spiffe_id of an entry already authorised.
// Expired entries (expires_at != 0 and <= now) are not authorised and are not crawled through; an
// expired node alias confers nothing. Node alias entries themselves are not sent to agents.
import { isSubset, selectorKeys } from '../../common/selectors.js';
import type { AgentRecord, EntryRecord } from '../datastore/types.js';
import type { StateMirror } from '../sync/state-mirror.js';

export const isExpired = (e: EntryRecord, now: number): boolean => e.expiresAt !== 0 && e.expiresAt <= now;

/** One agent's crawl result; `extendCrawl` grows it in place when an entry is created. */
export interface Crawl {
  entries: Map<string, EntryRecord>;
  /** Agent ID, matched aliases' spiffe_ids and authorised entries' spiffe_ids. */
  visited: Set<string>;
  aliasIds: string[];
  /** Earliest expires_at among the authorised entries and matched aliases; 0 = none. */
  minExpiry: number;
}

function noteExpiry(c: Crawl, e: EntryRecord): void {
  if (e.expiresAt !== 0 && (c.minExpiry === 0 || e.expiresAt < c.minExpiry)) c.minExpiry = e.expiresAt;
}

/** Node aliases whose (non-empty) selectors are all among the agent's node selectors. */
export function matchingAliases(mirror: StateMirror, agent: AgentRecord, now: number): EntryRecord[] {
  const keys = selectorKeys(agent.selectors);
  const checked = new Set<string>();
  const matched: EntryRecord[] = [];
  for (const key of keys) {
    const candidates = mirror.nodeAliasesWithSelector(key);
    if (!candidates) continue;
    for (const alias of candidates.values()) {
      if (checked.has(alias.id)) continue;
      checked.add(alias.id);
      if (alias.selectors.length > 0 && !isExpired(alias, now) && isSubset(alias.selectors, keys)) matched.push(alias);
    }
  }
  return matched;
}

/** Depth-first from the given parent IDs; the visited set makes parent/child cycles terminate. */
function descend(mirror: StateMirror, c: Crawl, stack: string[], now: number, added?: EntryRecord[]): void {
  while (stack.length > 0) {
    const node = stack.pop() as string;
    if (node === mirror.serverId) continue; // node aliases are never handed out through the crawl
    const children = mirror.entriesWithParent(node);
    if (!children) continue;
    for (const e of children.values()) {
      if (isExpired(e, now) || c.entries.has(e.id)) continue;
      c.entries.set(e.id, e);
      noteExpiry(c, e);
      added?.push(e);
      if (!c.visited.has(e.spiffeId)) {
        c.visited.add(e.spiffeId);
        stack.push(e.spiffeId);
      }
    }
  }
}

export function crawl(mirror: StateMirror, agent: AgentRecord, now: number): Crawl {
  const c: Crawl = { entries: new Map(), visited: new Set([agent.id]), aliasIds: [], minExpiry: 0 };
  const stack = [agent.id];
  for (const alias of matchingAliases(mirror, agent, now)) {
    c.aliasIds.push(alias.id);
    noteExpiry(c, alias);
    if (!c.visited.has(alias.spiffeId)) {
      c.visited.add(alias.spiffeId);
      stack.push(alias.spiffeId);
    }
  }
  descend(mirror, c, stack, now);
  return c;
}

/**
 * Adds a newly created (non-alias, unexpired) entry and whatever it makes reachable, if the crawl
 * reaches its parent. Creating an entry can only add to a crawl, so this is exact. Pushes the
 * entries added onto `added`.
 */
export function extendCrawl(mirror: StateMirror, c: Crawl, entry: EntryRecord, now: number, added: EntryRecord[]): void {
  if (!c.visited.has(entry.parentId) || c.entries.has(entry.id) || isExpired(entry, now)) return;
  c.entries.set(entry.id, entry);
  noteExpiry(c, entry);
  added.push(entry);
  if (!c.visited.has(entry.spiffeId)) {
    c.visited.add(entry.spiffeId);
    descend(mirror, c, [entry.spiffeId], now, added);
  }
}

/**
 * Replaces an authorised entry by a newer version with the same parent and spiffe_id (neither
 * expired), which changes nothing else in the crawl. Returns whether the crawl held it.
 */
export function replaceInCrawl(c: Crawl, entry: EntryRecord): boolean {
  if (!c.entries.has(entry.id)) return false;
  c.entries.set(entry.id, entry);
  noteExpiry(c, entry);
  return true;
}

/** The uncached computation: the entries `agentId` is authorised for at `now` (Unix seconds). */
export function authorizedEntries(mirror: StateMirror, agentId: string, now: number = Math.floor(Date.now() / 1000)): EntryRecord[] {
  const agent = mirror.getAgent(agentId);
  if (!agent || agent.banned) return [];
  return [...crawl(mirror, agent, now).entries.values()];
}
