// The change log: one event per write of an entry, agent, bundle, federated bundle or authority,
// under change/<revision>. The newest `retention` events are kept; older ones are deleted a bounded
// number at a time inside later write batches.
import { failedPrecondition, invalidArgument } from '../../../common/errors.js';
import type { ChangeEvent } from '../types.js';
import { decodeChange } from './codec.js';
import type { Db } from './context.js';
import { CHANGE_PREFIX, changeKey, prefixRange, revisionOfChangeKey } from './keys.js';
import type { LevelOp } from '../../../common/level-batch.js';

export const DEFAULT_CHANGE_LOG_RETENTION = 100_000;
/** Bounds the deletions added to one write batch when the log is over its retention. */
const MAX_PRUNE_PER_WRITE = 1000;

export interface ChangeLogState {
  /** Revision of the last committed change (0 for a new store). */
  revision: number;
  /** Lowest revision still in the log; revision + 1 when the log is empty. */
  oldest: number;
  /** How many of the newest events to keep (at least 1, so the revision survives a restart). */
  retention: number;
}

export async function readChangeLogState(db: Db, retention: number): Promise<ChangeLogState> {
  if (!Number.isSafeInteger(retention) || retention < 1) {
    throw invalidArgument(`change log retention must be a positive integer, got ${retention}`);
  }
  const range = prefixRange(CHANGE_PREFIX);
  const [last] = await db.keys({ ...range, reverse: true, limit: 1 }).all();
  const [first] = await db.keys({ ...range, limit: 1 }).all();
  const revision = last === undefined ? 0 : revisionOfChangeKey(last);
  const oldest = first === undefined ? revision + 1 : revisionOfChangeKey(first);
  return { revision, oldest, retention };
}

/** Deletions that bring the log back within its retention once `newRevision` is committed. */
export function planChangeLogPrune(log: ChangeLogState, newRevision: number): { ops: LevelOp[]; oldest: number } {
  const excess = newRevision - log.oldest + 1 - log.retention;
  const count = Math.min(Math.max(excess, 0), MAX_PRUNE_PER_WRITE);
  const ops: LevelOp[] = [];
  for (let i = 0; i < count; i++) ops.push({ type: 'del', key: changeKey(log.oldest + i) });
  return { ops, oldest: log.oldest + count };
}

const revisionTooOld = (since: number, log: ChangeLogState) =>
  failedPrecondition(
    `revision ${since} is too old: the change log starts after revision ${log.oldest - 1}; resynchronise from a full listing`,
  );

export async function listChanges(db: Db, log: ChangeLogState, since: number, limit: number): Promise<ChangeEvent[]> {
  if (!Number.isSafeInteger(since) || since < 0) throw invalidArgument(`revision must be a non-negative integer, got ${since}`);
  if (!Number.isSafeInteger(limit) || limit < 1) throw invalidArgument(`limit must be a positive integer, got ${limit}`);
  if (since < log.oldest - 1) throw revisionTooOld(since, log);
  const entries = await db.iterator({ gt: changeKey(since), lt: prefixRange(CHANGE_PREFIX).lt, limit }).all();
  const events = entries.map(([key, value]) => decodeChange(revisionOfChangeKey(key), value));
  // A prune committed between the check above and the read would leave a gap at the front.
  if (events.length > 0 ? events[0].revision !== since + 1 : since < log.oldest - 1) throw revisionTooOld(since, log);
  return events;
}
