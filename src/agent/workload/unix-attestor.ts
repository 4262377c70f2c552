// The unix workload attestor: selectors describing the calling process (SPIRE-NOTES §2.5).
//   unix:uid:N  unix:user:NAME  unix:gid:N  unix:group:NAME
//   unix:supplementary_gid:N  unix:supplementary_group:NAME      (the "Groups:" line of /proc/<pid>/status)
//   unix:path:/abs/exe  unix:sha256:HEX                          (only with discoverWorkloadPath)
// uid and gid come from SO_PEERCRED (what the kernel recorded at connect), not from /proc. Names come
// from /etc/passwd and /etc/group only (no NSS); an id without a name gets no name selector.
// The caller must run assertPeerStillValid() around it: /proc reads race with the process exiting.
import { createHash } from 'node:crypto';
import { readFileSync, statSync } from 'node:fs';
import { open, readFile, readlink } from 'node:fs/promises';
import { EmblemError, errorMessage } from '../../common/errors.js';
import type { Selector } from '../../common/selectors.js';
import { parseProcStatus, type PeerProcess, type ProcStatus } from './peer-process.js';

export interface UnixAttestorOptions {
  /** Add unix:path and unix:sha256 selectors for the caller's executable. */
  discoverWorkloadPath: boolean;
  /** Largest executable to hash, in bytes. 0 = no limit; negative = do not hash (no sha256 selector). */
  workloadSizeLimit: number;
  /** Defaults /etc/passwd and /etc/group. */
  passwdPath?: string;
  groupPath?: string;
}

const CHANGED = 'caller process changed or exited';
const HASH_CHUNK_BYTES = 1 << 20;
const HASH_CACHE_ENTRIES = 256;

/**
 * `status` is the caller's /proc/<pid>/status if the PID-reuse guard has just read it (saves a read:
 * the agent identifies the caller before every message, so with 1,000 open streams one change
 * means 1,000 of these).
 */
export async function attestUnix(peer: PeerProcess, opts: UnixAttestorOptions, status?: ProcStatus): Promise<Selector[]> {
  // /proc and the stat calls are read synchronously, like the PID-reuse guard does: they never wait
  // for a disk, and each async call would cost a thread-pool round trip.
  status ??= parseProcStatus(await procRead(peer.pid, async () => readFileSync(`/proc/${peer.pid}/status`, 'latin1')));
  const [userNames, groupNames] = await Promise.all([idNames(opts.passwdPath ?? '/etc/passwd'), idNames(opts.groupPath ?? '/etc/group')]);
  const values: string[] = [`uid:${peer.uid}`];
  const user = userNames.get(peer.uid);
  if (user !== undefined) values.push(`user:${user}`);
  values.push(`gid:${peer.gid}`);
  const group = groupNames.get(peer.gid);
  if (group !== undefined) values.push(`group:${group}`);
  const supplementary = [...new Set(status.groups)];
  for (const gid of supplementary) values.push(`supplementary_gid:${gid}`);
  for (const gid of supplementary) {
    const name = groupNames.get(gid);
    if (name !== undefined) values.push(`supplementary_group:${name}`);
  }
  if (opts.discoverWorkloadPath) {
    // A deleted executable reads as "/path (deleted)"; that selector then matches no entry, as it should.
    const path = await procRead(peer.pid, () => readlink(`/proc/${peer.pid}/exe`));
    values.push(`path:${path}`);
    if (opts.workloadSizeLimit >= 0) values.push(`sha256:${await hashExecutable(peer.pid, path, opts.workloadSizeLimit)}`);
  }
  return values.map((value) => ({ type: 'unix', value }));
}

/** Runs a /proc read; a vanished process becomes permission_denied, other failures unavailable. */
async function procRead<T>(pid: number, read: () => Promise<T>): Promise<T> {
  try {
    return await read();
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ESRCH') throw new EmblemError('permission_denied', CHANGED, { cause: err });
    throw new EmblemError('unavailable', `could not inspect caller process ${pid}: ${errorMessage(err)}`, { cause: err });
  }
}

// --- /etc/passwd and /etc/group, parsed once per file version --------------------------------------

interface NameTable {
  version: string;
  names: Map<number, string>;
}

const nameTables = new Map<string, NameTable>();

/** id -> name from a passwd- or group-format file (name:password:id:...). The first entry for an id wins. */
async function idNames(file: string): Promise<Map<number, string>> {
  const st = statSync(file, { bigint: true });
  const version = `${st.dev}:${st.ino}:${st.size}:${st.mtimeNs}:${st.ctimeNs}`;
  const cached = nameTables.get(file);
  if (cached?.version === version) return cached.names;
  const names = parseIdNames(await readFile(file, 'utf8'));
  nameTables.set(file, { version, names });
  return names;
}

export function parseIdNames(text: string): Map<number, string> {
  const names = new Map<number, string>();
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#') || line.startsWith('+') || line.startsWith('-')) continue;
    const fields = line.split(':');
    const name = fields[0];
    const idText = fields[2];
    if (fields.length < 3 || !name || idText === undefined || !/^\d+$/.test(idText)) continue;
    const id = Number(idText);
    if (!names.has(id)) names.set(id, name);
  }
  return names;
}

// --- executable hash --------------------------------------------------------------------------------

// file identity -> sha256 hex. A running executable cannot be written (ETXTBSY) and any change to a
// file moves its ctime, so the key identifies the content.
const hashCache = new Map<string, string>();

/**
 * sha256 of the caller's executable, read through /proc/<pid>/exe: the file the process really runs,
 * even if the path now names another file.
 */
async function hashExecutable(pid: number, path: string, sizeLimit: number): Promise<string> {
  const handle = await procRead(pid, () => open(`/proc/${pid}/exe`, 'r'));
  try {
    const st = await handle.stat({ bigint: true });
    const tooBig = (size: bigint): EmblemError =>
      new EmblemError(
        'permission_denied',
        `workload executable ${path} is ${size} bytes, over the workload size limit of ${sizeLimit} bytes; not hashing it`,
      );
    if (sizeLimit > 0 && st.size > BigInt(sizeLimit)) throw tooBig(st.size);
    const key = `${st.dev}:${st.ino}:${st.size}:${st.mtimeNs}:${st.ctimeNs}`;
    const cached = hashCache.get(key);
    if (cached !== undefined) return cached;

    const hash = createHash('sha256');
    const buffer = Buffer.allocUnsafe(HASH_CHUNK_BYTES);
    let total = 0n;
    for (;;) {
      const { bytesRead } = await handle.read(buffer, 0, buffer.length, null);
      if (bytesRead === 0) break;
      total += BigInt(bytesRead);
      if (sizeLimit > 0 && total > BigInt(sizeLimit)) throw tooBig(total);
      hash.update(buffer.subarray(0, bytesRead));
    }
    const digest = hash.digest('hex');
    if (hashCache.size >= HASH_CACHE_ENTRIES) hashCache.delete(hashCache.keys().next().value as string);
    hashCache.set(key, digest);
    return digest;
  } catch (err) {
    if (err instanceof EmblemError) throw err;
    throw new EmblemError('unavailable', `could not hash workload executable ${path}: ${errorMessage(err)}`, { cause: err });
  } finally {
    await handle.close();
  }
}
