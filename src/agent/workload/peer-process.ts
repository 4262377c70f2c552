// The process on the other end of a Workload API connection, as the kernel recorded it at connect(),
// and the PID-reuse guard that must pass before anything is answered to that process.
//
// SO_PEERCRED names the process that called connect(). By the time we answer, that process may have
// exited and its pid been reused, or the socket may have been handed to another process. So:
// - with SO_PEERPIDFD (Linux >= 6.5) we hold a pidfd pinned to the original process for the life of
//   the connection; the process must still be alive, which also means its pid was not reused;
// - without it we record the process start time (field 22 of /proc/<pid>/stat), which changes when
//   the pid is reused.
// In both cases the uid/gid in /proc/<pid>/status must still be those seen at accept time.
import { readFileSync } from 'node:fs';
import { EmblemError } from '../../common/errors.js';
import { peerCredAddon } from './peercred.js';

export interface PeerProcess {
  /** Process id, uid and gid from SO_PEERCRED (effective ids at connect time): authoritative. */
  readonly pid: number;
  readonly uid: number;
  readonly gid: number;
  /** The per-connection token that `call.getPeer()` returns, e.g. "uds-peer:17". */
  readonly token: string;
  /** Real uid and gid from /proc/<pid>/status at accept time. */
  readonly realUid: number;
  readonly realGid: number;
  /** Start time (clock ticks after boot) at accept time; recorded only when there is no pidfd. */
  readonly startTime: string | undefined;
  /** A pidfd pinned to the process, or -1 (unsupported kernel, or released). */
  pidfd: number;
  /** True once the connection closed; the record is then useless. */
  closed: boolean;
}

export interface ProcStatus {
  /** real, effective, saved, filesystem */
  uids: number[];
  gids: number[];
  /** supplementary group ids (the "Groups:" line) */
  groups: number[];
}

const CHANGED = 'caller process changed or exited';

/** Parses the Uid, Gid and Groups lines of /proc/<pid>/status. */
export function parseProcStatus(text: string): ProcStatus {
  const ids = (name: string): number[] | undefined => {
    const line = text.split('\n').find((l) => l.startsWith(`${name}:`));
    if (line === undefined) return undefined;
    const fields = line.slice(name.length + 1).trim();
    return fields === '' ? [] : fields.split(/\s+/).map(Number);
  };
  const uids = ids('Uid');
  const gids = ids('Gid');
  const groups = ids('Groups') ?? [];
  const valid = (list: number[] | undefined, min: number): list is number[] =>
    list !== undefined && list.length >= min && list.every((n) => Number.isInteger(n) && n >= 0);
  if (!valid(uids, 2) || !valid(gids, 2) || !valid(groups, 0)) throw new Error('unexpected /proc/<pid>/status format');
  return { uids, gids, groups };
}

/** Field 22 (starttime) of /proc/<pid>/stat. The comm field may hold spaces and ')', so split after the last ')'. */
export function parseStartTime(stat: string): string {
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  const startTime = fields[22 - 3];
  if (startTime === undefined || !/^\d+$/.test(startTime)) throw new Error('unexpected /proc/<pid>/stat format');
  return startTime;
}

export function readStartTime(pid: number): string {
  return parseStartTime(readFileSync(`/proc/${pid}/stat`, 'latin1'));
}

export function readProcStatusSync(pid: number): ProcStatus {
  return parseProcStatus(readFileSync(`/proc/${pid}/status`, 'latin1'));
}

/**
 * Builds the record for a freshly accepted connection on `fd`. Pass `usePidfd: false` to force the
 * start-time fallback (tests). Throws if the peer is already gone.
 */
export function capturePeerProcess(fd: number, token: string, opts: { usePidfd?: boolean } = {}): PeerProcess {
  const addon = peerCredAddon();
  const cred = addon.getPeerCred(fd);
  const pidfd = opts.usePidfd === false ? -1 : addon.getPeerPidfd(fd);
  try {
    // Without a pidfd, read the start time first: if the pid is reused before the status read, the
    // recorded start time is the old one and the guard fails later, as it should.
    const startTime = pidfd < 0 ? readStartTime(cred.pid) : undefined;
    const status = readProcStatusSync(cred.pid);
    return { ...cred, token, realUid: status.uids[0], realGid: status.gids[0], startTime, pidfd, closed: false };
  } catch (err) {
    if (pidfd >= 0) addon.closeFd(pidfd);
    throw err;
  }
}

/** Closes the pidfd and marks the record closed. Called when the connection closes; idempotent. */
export function releasePeerProcess(peer: PeerProcess): void {
  peer.closed = true;
  if (peer.pidfd >= 0) {
    const pidfd = peer.pidfd;
    peer.pidfd = -1;
    peerCredAddon().closeFd(pidfd);
  }
}

/**
 * The PID-reuse guard. Run it before answering: it throws EmblemError('permission_denied') unless
 * the connecting process is still there with the same ids. Returns the /proc/<pid>/status it read,
 * which is known to be that process's (attestation may derive selectors from it).
 */
export function assertPeerStillValid(peer: PeerProcess): ProcStatus {
  if (peer.closed) throw new EmblemError('permission_denied', CHANGED);
  let status: ProcStatus;
  try {
    if (peer.pidfd >= 0) {
      const addon = peerCredAddon();
      if (!addon.pidfdIsAlive(peer.pidfd)) throw new EmblemError('permission_denied', CHANGED);
      status = readProcStatusSync(peer.pid);
      // If the process exited during the read, the status may belong to a process that reused the pid.
      if (!addon.pidfdIsAlive(peer.pidfd)) throw new EmblemError('permission_denied', CHANGED);
    } else {
      status = readProcStatusSync(peer.pid);
      // Read last: a reuse before or during the status read shows up as a different start time.
      if (peer.startTime === undefined || readStartTime(peer.pid) !== peer.startTime) {
        throw new EmblemError('permission_denied', CHANGED);
      }
    }
  } catch (err) {
    if (err instanceof EmblemError) throw err;
    throw new EmblemError('permission_denied', CHANGED, { cause: err });
  }
  const [realUid, effectiveUid] = status.uids;
  const [realGid, effectiveGid] = status.gids;
  if (effectiveUid !== peer.uid || effectiveGid !== peer.gid || realUid !== peer.realUid || realGid !== peer.realGid) {
    throw new EmblemError('permission_denied', CHANGED);
  }
  return status;
}
