// Opens the level datastore of a data directory: <dataDir>/datastore, one LevelDB database (key
// layout in keys.ts). Every write is one atomic batch with sync:true (write-queue.ts), so a
// resolved write survives kill -9 and power loss, and carries its change event. A failed write
// (e.g. disk full) makes the store refuse writes until it can reopen safely (write-recovery.ts).
import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import { Level } from 'level';
import { EmblemError, errorMessage, failedPrecondition, unavailable } from '../../../common/errors.js';
import type { Datastore } from '../types.js';
import { agentMethods } from './agents.js';
import { authorityMethods } from './authorities.js';
import { bundleMethods } from './bundles.js';
import { DEFAULT_CHANGE_LOG_RETENTION, listChanges, readChangeLogState } from './changes.js';
import type { Db, StoreContext } from './context.js';
import { entryMethods } from './entries.js';
import { metaKey, requireKeyPart } from './keys.js';
import { ledgerMethods } from './ledger.js';
import { tokenMethods } from './tokens.js';
import { createWriteQueue } from './write-queue.js';
import { createWriteRecovery } from './write-recovery.js';

export interface LevelDatastoreOptions {
  dataDir: string;
  /** How many of the newest change events to keep (default 100,000). */
  changeLogRetention?: number;
}

const locationOf = (dataDir: string): string => path.join(dataDir, 'datastore');

async function openDb(dataDir: string): Promise<Db> {
  const location = locationOf(dataDir);
  await mkdir(location, { recursive: true, mode: 0o700 });
  const db: Db = new Level<string, string>(location, { keyEncoding: 'utf8', valueEncoding: 'utf8' });
  try {
    await db.open();
  } catch (err) {
    if ((err as { cause?: { code?: unknown } }).cause?.code === 'LEVEL_LOCKED') {
      throw failedPrecondition(`data directory ${dataDir} is in use by another emblem-server process`);
    }
    throw new EmblemError('unavailable', `cannot open the datastore in ${location}: ${errorMessage(err)}`, {
      cause: err,
    });
  }
  return db;
}

export async function openLevelDatastore(options: LevelDatastoreOptions): Promise<Datastore> {
  const db = await openDb(options.dataDir);
  const log = await readChangeLogState(db, options.changeLogRetention ?? DEFAULT_CHANGE_LOG_RETENTION).catch(
    async (err: unknown) => {
      await db.close();
      throw err;
    },
  );

  const listeners = new Set<(revision: number) => void>();
  const notify = (revision: number): void => {
    for (const listener of [...listeners]) {
      try {
        listener(revision);
      } catch (err) {
        // A listener's failure must not fail the committed write or starve the other listeners.
        process.emitWarning(`datastore change listener failed: ${errorMessage(err)}`);
      }
    }
  };

  const recovery = createWriteRecovery(db, locationOf(options.dataDir), log, notify);
  const queue = createWriteQueue(db, log, notify, recovery);
  let closed = false;
  let closing: Promise<void> | undefined;
  const ctx: StoreContext = {
    get db(): Db {
      if (closed) throw unavailable('datastore is closed');
      return db;
    },
    write: (fn) => queue.run(fn),
  };

  return {
    ping: async () => {
      // While writes are refused, an empty write tries to recover and fails with the reason.
      if (recovery.refusing) await ctx.write(async () => undefined);
      await ctx.db.get(metaKey('ping'));
    },

    close: () =>
      (closing ??= (async () => {
        await queue.close();
        closed = true;
        listeners.clear();
        await db.close();
      })()),

    getMeta: async (key) => ctx.db.get(metaKey(key)),
    setMeta: async (key, value) => {
      requireKeyPart('meta key', key);
      return ctx.write(async (tx) => tx.put(metaKey(key), value));
    },

    ...entryMethods(ctx),
    ...agentMethods(ctx),
    ...tokenMethods(ctx),
    ...bundleMethods(ctx),
    ...authorityMethods(ctx),
    ...ledgerMethods(ctx),

    currentRevision: async () => log.revision,
    oldestRetainedRevision: async () => log.oldest,
    listChanges: async (since, limit) => listChanges(ctx.db, log, since, limit),
    onChange: (listener) => {
      listeners.add(listener);
      return () => {
        listeners.delete(listener);
      };
    },
  };
}
