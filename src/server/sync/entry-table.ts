// The mirror's registration entries with the lookups the authorizer and the admin API need: by id,
// by parent ID, by SPIFFE ID, node aliases (parent = the server ID) and node aliases by selector.
import { formatSelector } from '../../common/selectors.js';
import type { EntryRecord } from '../datastore/types.js';

type Multimap = Map<string, Map<string, EntryRecord>>;

function addTo(index: Multimap, key: string, entry: EntryRecord): void {
  let bucket = index.get(key);
  if (!bucket) index.set(key, (bucket = new Map()));
  bucket.set(entry.id, entry);
}

function removeFrom(index: Multimap, key: string, id: string): void {
  const bucket = index.get(key);
  if (!bucket) return;
  bucket.delete(id);
  if (bucket.size === 0) index.delete(key);
}

/** Code-unit order: stable, locale-independent, and what page tokens rely on. */
export function compareIds(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

export interface EntryTable {
  readonly entries: ReadonlyMap<string, EntryRecord>;
  put(entry: EntryRecord): void;
  remove(id: string): void;
  /** All entry IDs in ascending order (cached until the set of IDs changes). */
  sortedIds(): readonly string[];
  withParent(parentId: string): ReadonlyMap<string, EntryRecord> | undefined;
  withSpiffeId(spiffeId: string): ReadonlyMap<string, EntryRecord> | undefined;
  aliases(): ReadonlyMap<string, EntryRecord>;
  aliasesWithSelector(selectorKey: string): ReadonlyMap<string, EntryRecord> | undefined;
}

/** `aliasParent` is spiffe://<td>/emblem/server: entries under it are node aliases. */
export function createEntryTable(aliasParent: string): EntryTable {
  const entries = new Map<string, EntryRecord>();
  const byParent: Multimap = new Map();
  const bySpiffeId: Multimap = new Map();
  const aliases = new Map<string, EntryRecord>();
  const aliasesBySelector: Multimap = new Map();
  let sortedIds: string[] | undefined;

  function unindex(old: EntryRecord): void {
    removeFrom(byParent, old.parentId, old.id);
    removeFrom(bySpiffeId, old.spiffeId, old.id);
    if (aliases.delete(old.id)) for (const s of old.selectors) removeFrom(aliasesBySelector, formatSelector(s), old.id);
  }

  return {
    entries,
    put(entry) {
      const old = entries.get(entry.id);
      if (old) unindex(old);
      else sortedIds = undefined; // an update keeps the set of IDs, and so the sorted order
      entries.set(entry.id, entry);
      addTo(byParent, entry.parentId, entry);
      addTo(bySpiffeId, entry.spiffeId, entry);
      if (entry.parentId === aliasParent) {
        aliases.set(entry.id, entry);
        for (const s of entry.selectors) addTo(aliasesBySelector, formatSelector(s), entry);
      }
    },
    remove(id) {
      const old = entries.get(id);
      if (!old) return;
      unindex(old);
      entries.delete(id);
      sortedIds = undefined;
    },
    sortedIds() {
      if (!sortedIds) sortedIds = [...entries.keys()].sort(compareIds);
      return sortedIds;
    },
    withParent: (parentId) => byParent.get(parentId),
    withSpiffeId: (spiffeId) => bySpiffeId.get(spiffeId),
    aliases: () => aliases,
    aliasesWithSelector: (key) => aliasesBySelector.get(key),
  };
}
