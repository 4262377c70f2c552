// Registration entries. An entry's similar-key (keys.ts) enforces that no two entries share the
// SPIFFE ID, parent ID and selector set.
import { alreadyExists, notFound } from '../../../common/errors.js';
import type { Datastore, EntryRecord, NewEntry } from '../types.js';
import { copyEntry, decodeEntry, encodeEntry } from './codec.js';
import type { StoreContext } from './context.js';
import { ENTRY_PREFIX, entryKey, prefixRange, requireKeyPart, similarEntryKey } from './keys.js';

type EntryMethods = Pick<Datastore, 'createEntry' | 'updateEntry' | 'deleteEntry' | 'getEntry' | 'listAllEntries'>;

const similarKeyOf = (e: NewEntry): string => similarEntryKey(e.spiffeId, e.parentId, e.selectors);

const similarExists = (otherId: string) =>
  alreadyExists(`entry ${otherId} already has the same SPIFFE ID, parent ID and selectors`);

const nowSeconds = (): number => Math.floor(Date.now() / 1000);

export function entryMethods(ctx: StoreContext): EntryMethods {
  return {
    createEntry: async (entry) => {
      const id = requireKeyPart('entry id', entry.id);
      return ctx.write(async (tx) => {
        if ((await tx.get(entryKey(id))) !== undefined) throw alreadyExists(`entry ${id} already exists`);
        const similarKey = similarKeyOf(entry);
        const other = await tx.get(similarKey);
        if (other !== undefined) throw similarExists(other);
        const revision = tx.change('entry', id, false);
        const record = copyEntry({ ...entry, createdAt: entry.createdAt || nowSeconds(), revision });
        tx.put(entryKey(id), encodeEntry(record));
        tx.put(similarKey, id);
        return record;
      });
    },

    updateEntry: async (entry) => {
      const id = requireKeyPart('entry id', entry.id);
      return ctx.write(async (tx) => {
        const stored = await tx.get(entryKey(id));
        if (stored === undefined) throw notFound(`entry ${id} not found`);
        const existing = decodeEntry(stored);
        const oldSimilarKey = similarKeyOf(existing);
        const newSimilarKey = similarKeyOf(entry);
        if (newSimilarKey !== oldSimilarKey) {
          const other = await tx.get(newSimilarKey);
          if (other !== undefined && other !== id) throw similarExists(other);
          tx.del(oldSimilarKey);
          tx.put(newSimilarKey, id);
        }
        const revision = tx.change('entry', id, false);
        const record = copyEntry({ ...entry, createdAt: existing.createdAt, revision });
        tx.put(entryKey(id), encodeEntry(record));
        return record;
      });
    },

    deleteEntry: async (id) =>
      ctx.write(async (tx) => {
        const stored = await tx.get(entryKey(id));
        if (stored === undefined) throw notFound(`entry ${id} not found`);
        const existing = decodeEntry(stored);
        tx.del(entryKey(id));
        tx.del(similarKeyOf(existing));
        tx.change('entry', id, true);
        return existing;
      }),

    getEntry: async (id) => {
      const stored = await ctx.db.get(entryKey(id));
      return stored === undefined ? undefined : decodeEntry(stored);
    },

    listAllEntries: async () => {
      const entries: EntryRecord[] = [];
      // Large native reads: this is the full load at server start (100k entries ~ 40 MB).
      const values = ctx.db.values({ ...prefixRange(ENTRY_PREFIX), highWaterMarkBytes: 1 << 20 });
      try {
        for (;;) {
          const chunk = await values.nextv(8192);
          if (chunk.length === 0) break;
          for (const value of chunk) entries.push(decodeEntry(value));
        }
      } finally {
        await values.close();
      }
      return entries;
    },
  };
}
