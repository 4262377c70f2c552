// ListEntries / CountEntries filtering over the state mirror (admin.proto ListEntriesRequest).
// Selector match modes (SPIRE-NOTES §3.3), comparing the entry's selectors E with the given G:
//   SUPERSET  E ⊇ G (default)     EXACT  E = G (as sets)
//   SUBSET    E ⊆ G               ANY    E ∩ G ≠ ∅
// An empty G means "no selector filter". Pages are in ascending entry-ID order; the page token is
// opaque (base64url of the last ID returned).
import { invalidArgument } from '../../common/errors.js';
import { formatSelector, selectorKeys, type Selector } from '../../common/selectors.js';
import type { EntryRecord } from '../datastore/types.js';
import { compareIds, type StateMirror } from '../sync/state-mirror.js';

export type SelectorMatch = 'SELECTOR_MATCH_SUPERSET' | 'SELECTOR_MATCH_EXACT' | 'SELECTOR_MATCH_SUBSET' | 'SELECTOR_MATCH_ANY';

export interface EntryFilter {
  spiffeId?: string;
  parentId?: string;
  selectors?: readonly Selector[];
  selectorMatch?: SelectorMatch;
}

export const DEFAULT_PAGE_SIZE = 1000;
export const MAX_PAGE_SIZE = 10_000;

const MATCH_MODES: ReadonlySet<string> = new Set([
  'SELECTOR_MATCH_SUPERSET',
  'SELECTOR_MATCH_EXACT',
  'SELECTOR_MATCH_SUBSET',
  'SELECTOR_MATCH_ANY',
]);

function selectorsMatch(entry: readonly Selector[], given: ReadonlySet<string>, mode: SelectorMatch): boolean {
  switch (mode) {
    case 'SELECTOR_MATCH_SUPERSET': {
      const keys = selectorKeys(entry);
      for (const g of given) if (!keys.has(g)) return false;
      return true;
    }
    case 'SELECTOR_MATCH_EXACT': {
      const keys = selectorKeys(entry);
      if (keys.size !== given.size) return false;
      for (const g of given) if (!keys.has(g)) return false;
      return true;
    }
    case 'SELECTOR_MATCH_SUBSET':
      return entry.every((s) => given.has(formatSelector(s)));
    case 'SELECTOR_MATCH_ANY':
      return entry.some((s) => given.has(formatSelector(s)));
  }
}

/** A filter prepared once for matching many entries. */
function compile(filter: EntryFilter): (entry: EntryRecord) => boolean {
  const mode = filter.selectorMatch ?? 'SELECTOR_MATCH_SUPERSET';
  if (!MATCH_MODES.has(mode)) throw invalidArgument(`selector_match: unknown mode ${JSON.stringify(mode)}`);
  const given = filter.selectors && filter.selectors.length > 0 ? selectorKeys(filter.selectors) : undefined;
  const { spiffeId, parentId } = filter;
  return (entry) =>
    (!spiffeId || entry.spiffeId === spiffeId) &&
    (!parentId || entry.parentId === parentId) &&
    (!given || selectorsMatch(entry.selectors, given, mode));
}

export function matchesFilter(entry: EntryRecord, filter: EntryFilter): boolean {
  return compile(filter)(entry);
}

/** Candidate IDs in ascending order: from an index when the filter names a parent or SPIFFE ID. */
function candidateIds(mirror: StateMirror, filter: EntryFilter): readonly string[] {
  if (filter.parentId) return [...(mirror.entriesWithParent(filter.parentId)?.keys() ?? [])].sort(compareIds);
  if (filter.spiffeId) return [...(mirror.entriesWithSpiffeId(filter.spiffeId)?.keys() ?? [])].sort(compareIds);
  return mirror.sortedEntryIds();
}

/** First index in sorted `ids` whose ID is greater than `after`. */
function firstAfter(ids: readonly string[], after: string): number {
  let lo = 0;
  let hi = ids.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (compareIds(ids[mid] as string, after) <= 0) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

function decodePageToken(token: string): string {
  if (token === '') return '';
  if (!/^[A-Za-z0-9_-]+$/.test(token)) throw invalidArgument('page_token: malformed');
  const after = Buffer.from(token, 'base64url').toString('utf8');
  if (after === '') throw invalidArgument('page_token: malformed');
  return after;
}

export interface EntryPage {
  entries: EntryRecord[];
  /** "" when there are no more entries. */
  nextPageToken: string;
}

/** One page of matching entries; pageSize 0 = DEFAULT_PAGE_SIZE, capped at MAX_PAGE_SIZE. */
export function listEntries(mirror: StateMirror, filter: EntryFilter, pageSize = 0, pageToken = ''): EntryPage {
  if (!Number.isInteger(pageSize) || pageSize < 0) throw invalidArgument('page_size: must be a non-negative integer');
  const limit = Math.min(pageSize === 0 ? DEFAULT_PAGE_SIZE : pageSize, MAX_PAGE_SIZE);
  const after = decodePageToken(pageToken);
  const matches = compile(filter);
  const ids = candidateIds(mirror, filter);
  const entries: EntryRecord[] = [];
  for (let i = after === '' ? 0 : firstAfter(ids, after); i < ids.length; i++) {
    const entry = mirror.getEntry(ids[i] as string);
    if (!entry || !matches(entry)) continue;
    if (entries.length === limit) {
      const last = entries[entries.length - 1] as EntryRecord;
      return { entries, nextPageToken: Buffer.from(last.id, 'utf8').toString('base64url') };
    }
    entries.push(entry);
  }
  return { entries, nextPageToken: '' };
}

export function countEntries(mirror: StateMirror, filter: EntryFilter): number {
  const matches = compile(filter);
  if (!filter.parentId && !filter.spiffeId && !filter.selectors?.length) return mirror.entryCount();
  let n = 0;
  for (const id of candidateIds(mirror, filter)) {
    const entry = mirror.getEntry(id);
    if (entry && matches(entry)) n++;
  }
  return n;
}
