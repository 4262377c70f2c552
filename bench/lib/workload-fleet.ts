// Many simulated workloads, each a distinct process under its own uid, with one FetchX509SVID
// stream each, served from a single Node process.
//
// The agent attests a Workload API caller by the kernel credentials of the process that called
// connect() (SO_PEERCRED, pinned with a pidfd) and checks that this process is still alive with
// the same uid/gid. A faithful "1,000 streams, each with its own identity" setup therefore needs
// 1,000 live processes with distinct uids, but 1,000 Node processes would need tens of GB. So a
// small Python launcher (root) does, per workload: create a socket, fork; the child drops to
// uid/gid N (no supplementary groups), connect()s the shared socket to the agent and execs
// `sleep infinity` (it stays alive as the attested workload, about 1 MB each, killed with its
// parent). The launcher then execs the Node stream client, which inherits every connected socket
// and speaks gRPC over HTTP/2 on it. Only the connect() runs as the workload's process; that is
// exactly what the agent inspects.
import { createInterface } from 'node:readline';
import type { Writable } from 'node:stream';
import { spawnChild, REPO_ROOT, type Child } from './children.js';
import { join } from 'node:path';

/** First uid (and gid) given to simulated workloads. */
export const FIRST_WORKLOAD_UID = 20_000;

const LAUNCHER = String.raw`
import ctypes, json, os, signal, socket, sys
libc = ctypes.CDLL(None, use_errno=True)
targets = json.loads(sys.argv[1])
fds = []
for path, uid in targets:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(r)
            os.setgroups([])
            os.setgid(uid)
            os.setuid(uid)
            libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG (set after the uid change, which clears it)
            s.connect(path)
            os.write(w, b'ok')
            os.execv('/bin/sleep', ['sleep', 'infinity'])
        except BaseException as e:
            os.write(w, ('error: %s' % e).encode())
        os._exit(1)
    os.close(w)
    answer = os.read(r, 4096)
    os.close(r)
    if answer != b'ok':
        sys.stderr.write('workload %d (%s): %s\n' % (uid, path, answer.decode()))
        sys.exit(1)
    fds.append(s.detach())
for fd in fds:
    os.set_inheritable(fd, True)
os.environ['EMBLEM_BENCH_FDS'] = ','.join(str(fd) for fd in fds)
os.execv(sys.argv[2], sys.argv[2:])
`;

export interface WorkloadTarget {
  /** The agent's Workload API socket. */
  socket: string;
  uid: number;
}

export interface StreamMessage {
  at: number;
  ids: string[];
  fps: string[];
}

export interface StreamState {
  messages: StreamMessage[];
  end?: { at: number; status: string; message: string };
}

export interface WorkloadFleet {
  readonly size: number;
  /** The Node process holding the streams. */
  readonly clientPid: number;
  readonly streams: StreamState[];
  /**
   * For every stream in `indices` (default: all), the arrival time (epoch ms) of its first message
   * at or after `since` that satisfies `match`. Waits up to `timeoutMs`; throws listing how many are missing.
   */
  arrivals(match: (m: StreamMessage, i: number) => boolean, opts: { since?: number; indices?: number[]; timeoutMs: number }): Promise<number[]>;
  /** For every stream in `indices`, the time (epoch ms) it ended; waits up to `timeoutMs`. */
  ends(indices: number[], timeoutMs: number): Promise<number[]>;
  /** Times the first response of a fresh stream on each workload in `indices`, one after another (ms). */
  fetchRound(indices: number[]): Promise<number[]>;
  close(): Promise<void>;
}

export function assertRoot(): void {
  if (process.getuid?.() !== 0) throw new Error('simulated workloads run under distinct uids: the benchmark must run as root');
}

export async function startWorkloadFleet(targets: readonly WorkloadTarget[], timeoutMs = 120_000): Promise<WorkloadFleet> {
  assertRoot();
  const spec = JSON.stringify(targets.map((t) => [t.socket, t.uid]));
  const child: Child = spawnChild('python3', ['-c', LAUNCHER, spec, process.execPath, '--import', 'tsx', join(REPO_ROOT, 'bench/lib/stream-client.ts')], {
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  const streams: StreamState[] = targets.map(() => ({ messages: [] }));
  const wakers = new Set<() => void>();
  const wake = (): void => {
    for (const w of [...wakers]) w();
  };
  let fetched: ((ms: number[]) => void) | undefined;
  let ready!: () => void;
  const readyPromise = new Promise<void>((resolve) => (ready = resolve));
  createInterface({ input: child.proc.stdout! }).on('line', (line) => {
    const ev = JSON.parse(line) as { t: string; i: number; at: number; ids: string[]; fps: string[]; status: string; message: string; ms: number[] };
    if (ev.t === 'm') streams[ev.i]!.messages.push({ at: ev.at, ids: ev.ids, fps: ev.fps });
    else if (ev.t === 'end') streams[ev.i]!.end = { at: ev.at, status: ev.status, message: ev.message };
    else if (ev.t === 'fetched') fetched?.(ev.ms);
    else if (ev.t === 'ready') ready();
    wake();
  });
  const stdin = child.proc.stdin as Writable;
  const failed = child.exited.then((code) => {
    throw new Error(`workload client exited (code ${code}):\n${child.logTail().slice(-3000)}`);
  });
  failed.catch(() => undefined);

  const waitFor = async <T>(compute: () => T | undefined, ms: number, what: () => string): Promise<T> => {
    let settle!: () => void;
    const changed = (): Promise<void> => new Promise((resolve) => (settle = resolve));
    const deadline = Date.now() + ms;
    for (;;) {
      const value = compute();
      if (value !== undefined) return value;
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`timed out after ${ms} ms: ${what()}`);
      const next = changed();
      wakers.add(settle);
      let timer: NodeJS.Timeout | undefined;
      try {
        await Promise.race([next, failed, new Promise<void>((resolve) => (timer = setTimeout(resolve, left)))]);
      } finally {
        clearTimeout(timer);
        wakers.delete(settle);
      }
    }
  };

  try {
    await Promise.race([readyPromise, failed, new Promise((_, reject) => setTimeout(() => reject(new Error('workload client did not start')), timeoutMs).unref())]);
  } catch (err) {
    await child.kill();
    throw err;
  }
  const all = targets.map((_, i) => i);

  return {
    size: targets.length,
    clientPid: child.pid,
    streams,
    async arrivals(match, opts) {
      const indices = opts.indices ?? all;
      const since = opts.since ?? 0;
      const found: (number | undefined)[] = new Array(indices.length);
      const compute = (): number[] | undefined => {
        let missing = 0;
        indices.forEach((i, k) => {
          if (found[k] !== undefined) return;
          const hit = streams[i]!.messages.find((m) => m.at >= since && match(m, i));
          if (hit) found[k] = hit.at;
          else missing++;
        });
        return missing === 0 ? (found as number[]) : undefined;
      };
      return waitFor(compute, opts.timeoutMs, () => `${found.filter((f) => f === undefined).length} of ${indices.length} streams have no matching message`);
    },
    async ends(indices, ms) {
      const compute = (): number[] | undefined => (indices.every((i) => streams[i]!.end) ? indices.map((i) => streams[i]!.end!.at) : undefined);
      return waitFor(compute, ms, () => `${indices.filter((i) => !streams[i]!.end).length} of ${indices.length} streams still open`);
    },
    async fetchRound(indices) {
      const result = new Promise<number[]>((resolve) => (fetched = resolve));
      stdin.write(JSON.stringify({ cmd: 'fetch', indices }) + '\n');
      return Promise.race([result, failed]);
    },
    async close() {
      stdin.end();
      await child.stop(2000);
    },
  };
}
