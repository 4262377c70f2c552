import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { chmodSync, closeSync, mkdtempSync, openSync, rmSync } from 'node:fs';
import * as net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { isEmblemError } from '../../../src/common/errors.js';
import { peerCredAddon, type NativeError } from '../../../src/agent/workload/peercred.js';
import {
  assertPeerStillValid,
  capturePeerProcess,
  parseProcStatus,
  parseStartTime,
  readStartTime,
  releasePeerProcess,
  type PeerProcess,
} from '../../../src/agent/workload/peer-process.js';

// A plain Unix socket server whose accepted sockets the tests inspect directly.
interface Harness {
  dir: string;
  path: string;
  server: net.Server;
  accepted: net.Socket[];
  nextAccepted(): Promise<net.Socket>;
}

async function startHarness(): Promise<Harness> {
  const dir = mkdtempSync(join(tmpdir(), 'emblem-peer-'));
  chmodSync(dir, 0o755);
  const path = join(dir, 's.sock');
  const accepted: net.Socket[] = [];
  const waiting: ((s: net.Socket) => void)[] = [];
  const server = net.createServer((socket) => {
    accepted.push(socket);
    waiting.shift()?.(socket);
  });
  server.listen(path);
  await once(server, 'listening');
  chmodSync(path, 0o777);
  let taken = 0;
  return {
    dir,
    path,
    server,
    accepted,
    nextAccepted: () =>
      taken < accepted.length ? Promise.resolve(accepted[taken++]!) : new Promise((resolve) => waiting.push((s) => (taken++, resolve(s)))),
  };
}

const fdOf = (socket: net.Socket): number => (socket as unknown as { _handle: { fd: number } })._handle.fd;

/** A child that connects to `path` (as uid/gid if given), runs `afterConnect`, prints "ready" and waits. */
async function connectingChild(path: string, opts: { uid?: number; gid?: number; afterConnect?: string } = {}): Promise<ChildProcess> {
  const script = `
    const s = require('node:net').connect(process.argv[1], () => {
      ${opts.afterConnect ?? ''}
      process.stdout.write('ready\\n');
    });
    s.on('error', (e) => { console.error(e.message); process.exit(1); });
    setInterval(() => {}, 1000);`;
  const child = spawn(process.execPath, ['-e', script, path], { uid: opts.uid, gid: opts.gid, cwd: '/', stdio: ['ignore', 'pipe', 'inherit'] });
  const [chunk] = (await once(child.stdout!, 'data')) as [Buffer];
  assert.equal(chunk.toString().trim(), 'ready');
  return child;
}

async function kill(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = once(child, 'exit');
  child.kill('SIGKILL');
  await exited;
}

const assertChanged = (peer: PeerProcess): void =>
  assert.throws(
    () => assertPeerStillValid(peer),
    (err: unknown) => isEmblemError(err, 'permission_denied') && err.message === 'caller process changed or exited',
  );

describe('peer credentials addon and the PID-reuse guard', () => {
  let h: Harness;
  const children: ChildProcess[] = [];
  const peers: PeerProcess[] = [];

  beforeEach(async () => {
    h = await startHarness();
  });
  afterEach(async () => {
    for (const p of peers.splice(0)) releasePeerProcess(p);
    await Promise.all(children.splice(0).map(kill));
    for (const s of h.accepted) s.destroy();
    await new Promise((resolve) => h.server.close(resolve));
    rmSync(h.dir, { recursive: true, force: true });
  });

  const capture = (socket: net.Socket, opts?: { usePidfd?: boolean }): PeerProcess => {
    const peer = capturePeerProcess(fdOf(socket), 'uds-peer:test', opts);
    peers.push(peer);
    return peer;
  };

  it('reads pid, uid and gid of a connection from this process, with a pidfd', async () => {
    const client = net.connect(h.path);
    const socket = await h.nextAccepted();
    try {
      assert.deepEqual(peerCredAddon().getPeerCred(fdOf(socket)), { pid: process.pid, uid: 0, gid: 0 });
      const peer = capture(socket);
      assert.equal(peer.pid, process.pid);
      assert.ok(peer.pidfd >= 0, 'this kernel (>= 6.5) supports SO_PEERPIDFD');
      assert.equal(peer.startTime, undefined);
      assert.equal(peerCredAddon().pidfdIsAlive(peer.pidfd), true);
      assertPeerStillValid(peer);
    } finally {
      client.destroy();
    }
  });

  it('records the start time instead when there is no pidfd', async () => {
    const client = net.connect(h.path);
    const socket = await h.nextAccepted();
    try {
      const peer = capture(socket, { usePidfd: false });
      assert.equal(peer.pidfd, -1);
      assert.equal(peer.startTime, readStartTime(process.pid));
      assertPeerStillValid(peer);
    } finally {
      client.destroy();
    }
  });

  it('sees a child running as nobody as uid/gid 65534', async () => {
    const child = await connectingChild(h.path, { uid: 65534, gid: 65534 });
    children.push(child);
    const peer = capture(await h.nextAccepted());
    assert.deepEqual({ pid: peer.pid, uid: peer.uid, gid: peer.gid }, { pid: child.pid, uid: 65534, gid: 65534 });
    assert.deepEqual([peer.realUid, peer.realGid], [65534, 65534]);
    assertPeerStillValid(peer);
  });

  for (const usePidfd of [true, false]) {
    it(`rejects a caller that exited (${usePidfd ? 'pidfd' : 'start time'})`, async () => {
      const child = await connectingChild(h.path);
      children.push(child);
      const peer = capture(await h.nextAccepted(), { usePidfd });
      assertPeerStillValid(peer);
      await kill(child);
      assertChanged(peer);
    });
  }

  it('rejects a record whose start time does not match the process', async () => {
    const child = await connectingChild(h.path);
    children.push(child);
    const peer = capture(await h.nextAccepted(), { usePidfd: false });
    assertPeerStillValid(peer);
    assertChanged({ ...peer, startTime: String(Number(peer.startTime) + 1) });
    assertChanged({ ...peer, startTime: undefined });
  });

  it('rejects a caller whose uid/gid no longer match', async () => {
    const child = await connectingChild(h.path, { afterConnect: 'process.setgid(65534); process.setuid(65534);' });
    children.push(child);
    const peer = capture(await h.nextAccepted());
    // Kernel credentials were recorded at connect(), as root; the process then dropped to nobody.
    assert.equal(peer.uid, 0);
    assertChanged(peer);
  });

  it('rejects a record that claims other ids, and a released record', async () => {
    const child = await connectingChild(h.path);
    children.push(child);
    const peer = capture(await h.nextAccepted());
    assertChanged({ ...peer, uid: 1234 });
    assertChanged({ ...peer, gid: 1234 });
    assertChanged({ ...peer, realUid: 1234 });
    releasePeerProcess(peer);
    assert.equal(peer.pidfd, -1);
    assertChanged(peer);
    releasePeerProcess(peer); // idempotent
  });

  it('throws errors with errno for bad descriptors', () => {
    const addon = peerCredAddon();
    const fd = openSync(process.execPath, 'r');
    try {
      assert.throws(() => addon.getPeerCred(fd), (err: NativeError) => err.code === 'ENOTSOCK' && err.errno > 0);
    } finally {
      closeSync(fd);
    }
    assert.throws(() => addon.getPeerCred(-1), TypeError);
    assert.throws(() => addon.getPeerCred(1.5), TypeError);
    assert.throws(() => addon.pidfdIsAlive(1_000_000), (err: NativeError) => err.code === 'EBADF');
    assert.throws(() => addon.closeFd(1_000_000), (err: NativeError) => err.code === 'EBADF' && err.syscall === 'close');
  });

  it('parses /proc status and stat text', () => {
    const status = 'Name:\tx\nUid:\t1\t2\t3\t4\nGid:\t5\t6\t7\t8\nGroups:\t10 20 \n';
    assert.deepEqual(parseProcStatus(status), { uids: [1, 2, 3, 4], gids: [5, 6, 7, 8], groups: [10, 20] });
    assert.deepEqual(parseProcStatus('Uid:\t0\t0\t0\t0\nGid:\t0\t0\t0\t0\nGroups:\t\n').groups, []);
    assert.throws(() => parseProcStatus('Uid:\t0\t0\t0\t0\n'));
    // comm may hold spaces and ')'; starttime is field 22.
    const rest = Array.from({ length: 30 }, (_, i) => String(i + 3)).join(' ');
    assert.equal(parseStartTime(`42 (a) b) ${rest}`), '22');
    assert.throws(() => parseStartTime('42 (x) R 1'));
  });
});
