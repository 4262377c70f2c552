import assert from 'node:assert/strict';
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { once } from 'node:events';
import { chmodSync, mkdtempSync, readFileSync, realpathSync, rmSync, statSync, utimesSync, writeFileSync } from 'node:fs';
import * as net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { isEmblemError } from '../../../src/common/errors.js';
import { capturePeerProcess, releasePeerProcess, type PeerProcess } from '../../../src/agent/workload/peer-process.js';
import { attestUnix, parseIdNames, type UnixAttestorOptions } from '../../../src/agent/workload/unix-attestor.js';
import { attestCaller } from '../../../src/agent/workload/attest-caller.js';

const NO_PATH: UnixAttestorOptions = { discoverWorkloadPath: false, workloadSizeLimit: -1 };
const fdOf = (socket: net.Socket): number => (socket as unknown as { _handle: { fd: number } })._handle.fd;

describe('unix workload attestor', () => {
  let dir: string;
  let server: net.Server;
  let path: string;
  const accepted: net.Socket[] = [];
  const waiting: ((s: net.Socket) => void)[] = [];
  const children: ChildProcess[] = [];
  const clients: net.Socket[] = [];
  const peers: PeerProcess[] = [];

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'emblem-unix-'));
    chmodSync(dir, 0o755);
    path = join(dir, 's.sock');
    server = net.createServer((s) => {
      accepted.push(s);
      waiting.shift()?.(s);
    });
    server.listen(path);
    await once(server, 'listening');
    chmodSync(path, 0o777);
  });
  after(async () => {
    for (const s of accepted) s.destroy();
    await new Promise((resolve) => server.close(resolve));
    rmSync(dir, { recursive: true, force: true });
  });
  afterEach(async () => {
    for (const p of peers.splice(0)) releasePeerProcess(p);
    for (const c of clients.splice(0)) c.destroy();
    await Promise.all(
      children.splice(0).map(async (child) => {
        if (child.exitCode !== null || child.signalCode !== null) return;
        const exited = once(child, 'exit');
        child.kill('SIGKILL');
        await exited;
      }),
    );
  });

  const nextPeer = async (): Promise<PeerProcess> => {
    const socket = await new Promise<net.Socket>((resolve) => waiting.push(resolve));
    const peer = capturePeerProcess(fdOf(socket), `uds-peer:${accepted.length}`);
    peers.push(peer);
    return peer;
  };
  const selfPeer = async (): Promise<PeerProcess> => {
    const accepting = nextPeer();
    clients.push(net.connect(path));
    return accepting;
  };
  /** A child that sets `setup` (as root), connects, and waits. */
  const childPeer = async (setup: string, ids: { uid?: number; gid?: number } = {}): Promise<{ child: ChildProcess; peer: PeerProcess }> => {
    const accepting = nextPeer();
    const script = `${setup}; require('node:net').connect(process.argv[1]); setInterval(() => {}, 1000);`;
    const child = spawn(process.execPath, ['-e', script, path], { ...ids, cwd: '/', stdio: ['ignore', 'ignore', 'inherit'] });
    children.push(child);
    return { child, peer: await accepting };
  };

  it('attests this process: uid, user, gid, group and supplementary groups', async () => {
    const peer = await selfPeer();
    const groupsLine = /^Groups:(.*)$/m.exec(readFileSync('/proc/self/status', 'utf8'))![1]!.trim();
    const groups = groupsLine === '' ? [] : groupsLine.split(/\s+/);
    const selectors = await attestUnix(peer, NO_PATH);
    assert.ok(selectors.every((s) => s.type === 'unix'));
    assert.deepEqual(
      selectors.map((s) => s.value),
      [
        'uid:0',
        'user:root',
        'gid:0',
        'group:root',
        ...groups.map((g) => `supplementary_gid:${g}`),
        ...groups.filter((g) => g === '0').map(() => 'supplementary_group:root'),
      ],
    );
  });

  it('reports supplementary groups by id, and by name where the group has one', async () => {
    const { peer } = await childPeer('process.setgroups([4242, 0, 4242]); process.setgid(65534); process.setuid(54321)');
    const values = (await attestUnix(peer, NO_PATH)).map((s) => s.value);
    // uid 54321 has no name, so there is no user selector; gid 4242 has no name either.
    // The kernel keeps the group list sorted and unique.
    assert.deepEqual(values, [
      'uid:54321',
      'gid:65534',
      `group:${execFileSync('getent', ['group', '65534'], { encoding: 'utf8' }).split(':')[0]}`,
      'supplementary_gid:0',
      'supplementary_gid:4242',
      'supplementary_group:root',
    ]);
  });

  it('adds path and sha256 of the executable, and honours the size limit', async function () {
    this.timeout(10000);
    const peer = await selfPeer();
    const exe = realpathSync(process.execPath);
    const size = statSync(exe).size;
    const expected = createHash('sha256').update(readFileSync(exe)).digest('hex');
    const values = async (limit: number): Promise<string[]> =>
      (await attestUnix(peer, { discoverWorkloadPath: true, workloadSizeLimit: limit })).map((s) => s.value).filter((v) => /^(path|sha256):/.test(v));

    assert.deepEqual(await values(0), [`path:${exe}`, `sha256:${expected}`]);
    assert.deepEqual(await values(size), [`path:${exe}`, `sha256:${expected}`]);
    assert.deepEqual(await values(-1), [`path:${exe}`]);
    await assert.rejects(
      values(size - 1),
      (err: unknown) =>
        isEmblemError(err, 'permission_denied') && err.message.includes(`${exe} is ${size} bytes, over the workload size limit of ${size - 1} bytes`),
    );
  });

  it('fails with permission_denied once the process is gone, and attestCaller checks the caller afterwards', async () => {
    const { child, peer } = await childPeer('');
    const socket = { peerOf: () => peer };
    const call = { getPeer: () => peer.token };
    const attested = await attestCaller(socket, call, NO_PATH);
    assert.equal(attested.peer, peer);
    assert.ok(attested.selectorKeys.has('unix:uid:0'));
    assert.equal(attested.selectorKeys.size, attested.selectors.length);
    // Attestation itself succeeds for a record whose start time is not the process's; the guard after it does not.
    const impostor: PeerProcess = { ...peer, pidfd: -1, startTime: '1' };
    await attestUnix(impostor, NO_PATH);
    await assert.rejects(attestCaller({ peerOf: () => impostor }, call, NO_PATH), (err: unknown) => isEmblemError(err, 'permission_denied'));

    const exited = once(child, 'exit');
    child.kill('SIGKILL');
    await exited;
    const denied = (err: unknown): boolean => isEmblemError(err, 'permission_denied') && err.message === 'caller process changed or exited';
    await assert.rejects(attestUnix(peer, NO_PATH), denied);
    await assert.rejects(attestCaller(socket, call, NO_PATH), denied);
  });

  it('rereads /etc/passwd and /etc/group when they change', async () => {
    const peer = await selfPeer();
    const passwdPath = join(dir, 'passwd');
    const groupPath = join(dir, 'group');
    const write = (file: string, text: string, mtime: number): void => {
      writeFileSync(file, text);
      utimesSync(file, mtime, mtime);
    };
    write(passwdPath, '# comment\nbroken line\nalpha:x:0:0::/:/bin/sh\nshadowed:x:0:0::/:/bin/sh\n', 1000);
    write(groupPath, 'wheel:x:0:\n', 1000);
    const names = async (): Promise<string[]> =>
      (await attestUnix(peer, { ...NO_PATH, passwdPath, groupPath })).map((s) => s.value).filter((v) => /^(user|group):/.test(v));

    assert.deepEqual(await names(), ['user:alpha', 'group:wheel']);
    write(passwdPath, 'beta:x:0:0::/:/bin/sh\n', 2000);
    write(groupPath, 'other:x:1:\n', 2000);
    // uid 0 is now "beta"; gid 0 has no name, so no group selector.
    assert.deepEqual(await names(), ['user:beta']);
  });

  it('parses passwd and group lines', () => {
    const names = parseIdNames('root:x:0:0:root:/root:/bin/bash\n+nis\n#c\n:x:5:\nbad:x:notanumber:\nfirst:x:7:\nsecond:x:7:\nshort:x\n');
    assert.deepEqual([...names], [
      [0, 'root'],
      [7, 'first'],
    ]);
  });
});
