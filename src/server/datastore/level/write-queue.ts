// The single writer of a level datastore, with group commit.
//
// Write functions run strictly one after another, each against the database plus the not yet
// committed writes of earlier functions in the same group, so read-check-write operations are
// atomic with respect to each other. Functions that queue up while a group is being synced form
// the next group: one atomic `batch` with `sync: true` for the whole group. A sequential caller
// gets one batch per write; many concurrent callers share fsyncs instead of waiting for one each.
// A function that throws contributes nothing to the batch. After a failed batch, writes wait on
// `recovery` (write-recovery.ts) before they run.
import { unavailable } from '../../../common/errors.js';
import { writeBatch, type LevelOp } from '../../../common/level-batch.js';
import type { ChangeKind } from '../types.js';
import { encodeChange } from './codec.js';
import type { Db } from './context.js';
import { changeKey } from './keys.js';
import { planChangeLogPrune, type ChangeLogState } from './changes.js';
import type { WriteRecovery } from './write-recovery.js';

export interface Tx {
  /** Reads a key, seeing this group's earlier writes. */
  get(key: string): Promise<string | undefined>;
  put(key: string, value: string): void;
  del(key: string): void;
  /** Appends a change event to this write and returns its revision. */
  change(kind: ChangeKind, id: string, deleted: boolean): number;
}

interface Pending {
  fn: (tx: Tx) => Promise<unknown>;
  resolve: (value: unknown) => void;
  reject: (err: unknown) => void;
}

interface Done {
  item: Pending;
  ok: boolean;
  value: unknown;
  /** Last change revision of this write, if it made any. */
  revision?: number;
}

const MAX_GROUP_WRITES = 1000;
const MAX_GROUP_OPS = 20_000;

export interface WriteQueue {
  run<T>(fn: (tx: Tx) => Promise<T>): Promise<T>;
  /** Refuses new writes and waits for queued ones to finish. */
  close(): Promise<void>;
}

export function createWriteQueue(db: Db, log: ChangeLogState, notify: (revision: number) => void, recovery: WriteRecovery): WriteQueue {
  const pending: Pending[] = [];
  let draining: Promise<void> | undefined;
  let closed = false;

  async function drain(): Promise<void> {
    try {
      while (pending.length > 0) await commitGroup();
    } finally {
      draining = undefined;
    }
  }

  async function commitGroup(): Promise<void> {
    try {
      await recovery.ready();
    } catch (err) {
      for (const item of pending.splice(0, MAX_GROUP_WRITES)) item.reject(err);
      return;
    }
    const committed = new Map<string, string | null>(); // null = deleted
    const ops: LevelOp[] = [];
    const done: Done[] = [];
    let revision = log.revision;

    while (pending.length > 0 && done.length < MAX_GROUP_WRITES && ops.length < MAX_GROUP_OPS) {
      const item = pending.shift() as Pending;
      const staged = new Map<string, string | null>();
      const startRevision = revision;
      let open = true;
      const writable = (): void => {
        if (!open) throw new Error('write used after its function returned');
      };
      const tx: Tx = {
        get: async (key) => {
          const local = staged.has(key) ? staged.get(key) : committed.get(key);
          if (local !== undefined) return local ?? undefined;
          // Synchronous: the writer is serial, and a thread-pool round trip per read would cap
          // read-check-write operations at a few thousand per second.
          return db.getSync(key);
        },
        put: (key, value) => {
          writable();
          staged.set(key, value);
        },
        del: (key) => {
          writable();
          staged.set(key, null);
        },
        change: (kind, id, deleted) => {
          writable();
          revision += 1;
          staged.set(changeKey(revision), encodeChange(kind, id, deleted));
          return revision;
        },
      };
      try {
        const value = await item.fn(tx);
        open = false;
        for (const [key, stagedValue] of staged) {
          committed.set(key, stagedValue);
          ops.push(stagedValue === null ? { type: 'del', key } : { type: 'put', key, value: stagedValue });
        }
        done.push({ item, ok: true, value, revision: revision > startRevision ? revision : undefined });
      } catch (err) {
        open = false;
        revision = startRevision;
        done.push({ item, ok: false, value: err });
      }
    }

    const prune = planChangeLogPrune(log, revision);
    ops.push(...prune.ops);
    if (ops.length > 0) {
      try {
        await writeBatch(db, ops, { sync: true });
      } catch (err) {
        const failure = recovery.failed(err);
        for (const d of done) d.item.reject(d.ok ? failure : d.value);
        return;
      }
    }
    log.revision = revision;
    log.oldest = prune.oldest;
    for (const d of done) if (d.ok && d.revision !== undefined) notify(d.revision);
    for (const d of done) (d.ok ? d.item.resolve : d.item.reject)(d.value);
  }

  return {
    run<T>(fn: (tx: Tx) => Promise<T>): Promise<T> {
      if (closed) return Promise.reject(unavailable('datastore is closed'));
      return new Promise<T>((resolve, reject) => {
        pending.push({ fn, resolve: resolve as (value: unknown) => void, reject });
        draining ??= drain();
      });
    },
    async close(): Promise<void> {
      closed = true;
      await draining;
    },
  };
}
