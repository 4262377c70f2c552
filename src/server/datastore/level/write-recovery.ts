// What the level datastore does after a failed write (disk full, read-only or failing disk).
//
// The open database must not be written to again: the failed append may have left a torn record in
// LevelDB's log, and at the next open LevelDB drops what follows a torn record in its log block, so
// writes acknowledged after the failure would vanish at the next restart (seen with a full disk).
// So once a write fails, writes are refused with the cause ("datastore unavailable: …") while reads
// keep being served from the open database. Before each later write (and each health ping) a probe
// file shows whether the directory takes writes again; when it does, the database is closed and
// reopened (LevelDB's recovery drops the torn tail and starts a new log) and the change-log position
// is read again, then writes resume. No restart is needed.
import { randomBytes } from 'node:crypto';
import { open, readdir, stat, unlink } from 'node:fs/promises';
import path from 'node:path';
import { EmblemError, errorMessage } from '../../../common/errors.js';
import { readChangeLogState, type ChangeLogState } from './changes.js';
import type { Db } from './context.js';

/** Room the probe asks for on top of the live log files, which a reopen turns into a table. */
const PROBE_MARGIN_BYTES = 1 << 20;
const PROBE_MAX_BYTES = 64 << 20;

export interface WriteRecovery {
  /** Records a failed write and returns the error for its callers. */
  failed(err: unknown): EmblemError;
  /** Resolves when writes may go ahead (reopening the database first if needed); else throws the refusal. */
  ready(): Promise<void>;
  /** True while writes are refused. */
  readonly refusing: boolean;
}

/** ENOSPC and EDQUOT are resource_exhausted (gRPC's own example); other I/O failures unavailable. */
function refusal(cause: unknown, detail: string): EmblemError {
  const text = errorMessage(cause);
  const full = /ENOSPC|EDQUOT|no space left|quota exceeded/i.test(text);
  return new EmblemError(full ? 'resource_exhausted' : 'unavailable', `datastore unavailable: ${detail}`, { cause });
}

async function liveLogBytes(location: string): Promise<number> {
  let total = 0;
  for (const name of await readdir(location)) {
    if (name.endsWith('.log')) total += (await stat(path.join(location, name))).size;
  }
  return total;
}

/** Writes, syncs and removes a file of `bytes` bytes in `dir`. */
async function probeWrite(dir: string, bytes: number): Promise<void> {
  const file = path.join(dir, `.write-probe-${randomBytes(4).toString('hex')}`);
  const handle = await open(file, 'wx', 0o600);
  try {
    const chunk = Buffer.alloc(Math.min(bytes, 1 << 20));
    for (let done = 0; done < bytes; done += chunk.length) await handle.write(chunk, 0, Math.min(chunk.length, bytes - done));
    await handle.sync();
  } finally {
    await handle.close();
    await unlink(file).catch(() => undefined);
  }
}

export function createWriteRecovery(
  db: Db,
  location: string,
  log: ChangeLogState,
  notify: (revision: number) => void,
): WriteRecovery {
  let failure: EmblemError | undefined;

  async function reopen(): Promise<void> {
    const probeBytes = Math.min(PROBE_MAX_BYTES, (await liveLogBytes(location)) + PROBE_MARGIN_BYTES);
    await probeWrite(location, probeBytes);
    if (db.status === 'open') await db.close();
    await db.open();
    const fresh = await readChangeLogState(db, log.retention);
    const before = log.revision;
    log.revision = fresh.revision;
    log.oldest = fresh.oldest;
    // A write reported as failed may still have landed (a failed fsync after a complete append).
    if (fresh.revision > before) notify(fresh.revision);
  }

  return {
    get refusing() {
      return failure !== undefined;
    },

    failed(err) {
      const e = refusal(err, errorMessage(err));
      failure ??= e;
      return e;
    },

    async ready() {
      if (!failure) return;
      try {
        await reopen();
      } catch (err) {
        throw refusal(err, `${errorMessage(err)} (writes are refused until ${location} can be written again; reads are still served)`);
      }
      failure = undefined;
    },
  };
}
