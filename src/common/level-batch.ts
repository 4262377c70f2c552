// One atomic LevelDB write of many operations. abstract-level's array form of batch() copies and
// checks every operation object (measured ~8 µs per op: 30 ms for the 4,000 ledger rows of 1,000
// SVIDs); the chained form writes the same WriteBatch at about a third of that.
import type { Level } from 'level';

export type LevelOp = { type: 'put'; key: string; value: string } | { type: 'del'; key: string };

export async function writeBatch(db: Level<string, string>, ops: readonly LevelOp[], options: { sync: boolean }): Promise<void> {
  if (ops.length === 0) return;
  const batch = db.batch();
  try {
    for (const op of ops) {
      if (op.type === 'put') batch.put(op.key, op.value);
      else batch.del(op.key);
    }
  } catch (err) {
    // An operation the batch refused: nothing was written; release the batch before reporting.
    await batch.close();
    throw err;
  }
  await batch.write(options);
}
