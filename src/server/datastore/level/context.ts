// What every part of the level datastore shares: the database handle and the single writer.
import type { Level } from 'level';
import type { Tx } from './write-queue.js';

/** The one LevelDB database of a data directory: UTF-8 keys and UTF-8 (JSON) values. */
export type Db = Level<string, string>;

export interface StoreContext {
  /** The database for reads; throws unavailable once the store is closed. */
  readonly db: Db;
  /**
   * Runs `fn` as one atomic, synced write. Write functions run one at a time, so a read through
   * `tx` followed by a write is atomic with respect to every other write.
   */
  write<T>(fn: (tx: Tx) => Promise<T>): Promise<T>;
}
