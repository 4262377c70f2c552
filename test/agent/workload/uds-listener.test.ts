import assert from 'node:assert/strict';
import { assertReadableByOtherUsers } from '../../helpers/other-users.js';
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { once } from 'node:events';
import { chmodSync, existsSync, mkdtempSync, readFileSync, realpathSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import * as net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { isEmblemError } from '../../../src/common/errors.js';
import { toGrpcStatus } from '../../../src/common/grpc/status.js';
import { attestCaller } from '../../../src/agent/workload/attest-caller.js';
import { addSelfTestService, selfTestPeerCredentials, whoAmI } from '../../../src/agent/workload/self-test.js';
import {
  listenWorkloadSocket,
  RECOMMENDED_WORKLOAD_SERVER_OPTIONS,
  type WorkloadSocket,
} from '../../../src/agent/workload/uds-listener.js';

const GRPC_PATH = createRequire(import.meta.url).resolve('@grpc/grpc-js');
const json = (v: unknown): Buffer => Buffer.from(JSON.stringify(v));
const unjson = (b: Buffer): unknown => JSON.parse(b.toString());

// A tiny test service whose handler attests its caller the way the Workload API will.
const ATTEST_PATH = '/emblem.test.Peer/Attest';
const testService = {
  Attest: {
    path: ATTEST_PATH,
    requestStream: false,
    responseStream: false,
    requestSerialize: json,
    requestDeserialize: unjson,
    responseSerialize: json,
    responseDeserialize: unjson,
  },
} satisfies grpc.ServiceDefinition;

interface AttestReply {
  pid: number;
  uid: number;
  gid: number;
  token: string;
  selectors: string[];
}

// Runs as a separate process (possibly as nobody): calls ATTEST_PATH while claiming, in metadata, to be pid 1 / uid 0.
const CLIENT_SCRIPT = `
import { createRequire } from 'node:module';
const [grpcPath, socketPath, method] = process.argv.slice(2);
const grpc = createRequire(import.meta.url)(grpcPath);
const client = new grpc.Client('unix://' + socketPath, grpc.credentials.createInsecure());
const md = new grpc.Metadata();
md.set('x-peer-pid', '1');
md.set('x-peer-uid', '0');
const ser = (v) => Buffer.from(JSON.stringify(v));
const de = (b) => JSON.parse(b.toString());
client.makeUnaryRequest(method, ser, de, {}, md, { deadline: Date.now() + 5000 }, (err, reply) => {
  process.stdout.write(JSON.stringify(err ? { error: err.details, code: err.code } : { reply, pid: process.pid }));
  client.close();
});
`;

async function waitFor(condition: () => boolean, what: string, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

function attestInProcess(path: string): Promise<AttestReply> {
  const client = new grpc.Client(`unix://${path}`, grpc.credentials.createInsecure(), { 'grpc.use_local_subchannel_pool': 1 });
  return new Promise<AttestReply>((resolve, reject) => {
    client.makeUnaryRequest(ATTEST_PATH, json, unjson, {}, new grpc.Metadata(), { deadline: Date.now() + 5000 }, (err, reply) => {
      client.close();
      if (err) reject(err);
      else resolve(reply as AttestReply);
    });
  });
}

const getentName = (db: 'passwd' | 'group', id: number): string => execFileSync('getent', [db, String(id)], { encoding: 'utf8' }).split(':')[0]!;

describe('workload socket listener', () => {
  let dir: string;
  let path: string;
  let server: grpc.Server;
  let ws: WorkloadSocket | undefined;
  const extraClosers: (() => Promise<void> | void)[] = [];

  beforeEach(async () => {
    dir = mkdtempSync(join(tmpdir(), 'emblem-uds-'));
    chmodSync(dir, 0o755);
    path = join(dir, 'agent', 'api.sock'); // the parent directory does not exist yet
    server = new grpc.Server(RECOMMENDED_WORKLOAD_SERVER_OPTIONS);
    server.addService(testService, {
      Attest: (call: grpc.ServerUnaryCall<unknown, AttestReply>, callback: grpc.sendUnaryData<AttestReply>) => {
        attestCaller(ws!, call, { discoverWorkloadPath: true, workloadSizeLimit: 0 }).then(
          ({ peer, selectorKeys }) => callback(null, { pid: peer.pid, uid: peer.uid, gid: peer.gid, token: peer.token, selectors: [...selectorKeys] }),
          (err: unknown) => callback(toGrpcStatus(err)),
        );
      },
    });
    ws = await listenWorkloadSocket(server, path);
    addSelfTestService(server, ws);
  });

  afterEach(async () => {
    for (const close of extraClosers.splice(0)) await close();
    await ws?.close();
    server.forceShutdown();
    rmSync(dir, { recursive: true, force: true });
  });

  it('creates the parent directory 0755 and the socket 0777', () => {
    assert.equal(statSync(join(dir, 'agent')).mode & 0o777, 0o755);
    const st = statSync(path);
    assert.ok(st.isSocket());
    assert.equal(st.mode & 0o777, 0o777);
  });

  it('creates missing directories 0755 and the socket with its mode whatever the umask', async () => {
    const deepPath = join(dir, 'deep', 'er', 'api.sock');
    const deepServer = new grpc.Server();
    const previous = process.umask(0o077);
    let deep: WorkloadSocket;
    try {
      deep = await listenWorkloadSocket(deepServer, deepPath);
    } finally {
      process.umask(previous);
    }
    extraClosers.push(() => deepServer.forceShutdown(), () => deep.close());
    assert.equal(statSync(join(dir, 'deep')).mode & 0o777, 0o755);
    assert.equal(statSync(join(dir, 'deep', 'er')).mode & 0o777, 0o755);
    assert.equal(statSync(deepPath).mode & 0o777, 0o777);
  });

  it('identifies a caller in this process, and the self-test passes', async () => {
    const me = await whoAmI(path);
    assert.match(me.token, /^uds-peer:\d+$/);
    assert.deepEqual({ pid: me.pid, uid: me.uid, gid: me.gid }, { pid: process.pid, uid: 0, gid: 0 });
    const reply = await attestInProcess(path);
    assert.equal(reply.pid, process.pid);
    assert.ok(reply.selectors.includes('unix:uid:0'));
    assert.ok(reply.selectors.includes('unix:user:root'));
    await selfTestPeerCredentials(path);
    await waitFor(() => ws!.connectionCount() === 0, 'the registry to empty');
  });

  it('identifies child processes running as root and as nobody, ignoring what they claim in metadata', async () => {
    assertReadableByOtherUsers(GRPC_PATH);
    const script = join(dir, 'client.mjs');
    writeFileSync(script, CLIENT_SCRIPT, { mode: 0o644 });
    const run = async (ids: { uid?: number; gid?: number }): Promise<{ reply: AttestReply; pid: number }> => {
      const child = spawn(process.execPath, [script, GRPC_PATH, path, ATTEST_PATH], { ...ids, cwd: dir, stdio: ['ignore', 'pipe', 'inherit'] });
      let out = '';
      child.stdout.on('data', (chunk: Buffer) => (out += chunk.toString()));
      const [code] = (await once(child, 'exit')) as [number];
      assert.equal(code, 0);
      const result = JSON.parse(out) as { reply?: AttestReply; pid: number; error?: string };
      assert.equal(result.error, undefined);
      return result as { reply: AttestReply; pid: number };
    };
    const [asRoot, asNobody] = await Promise.all([run({}), run({ uid: 65534, gid: 65534 })]);

    assert.deepEqual([asRoot.reply.pid, asRoot.reply.uid, asRoot.reply.gid], [asRoot.pid, 0, 0]);
    assert.deepEqual([asNobody.reply.pid, asNobody.reply.uid, asNobody.reply.gid], [asNobody.pid, 65534, 65534]);
    assert.notEqual(asRoot.reply.token, asNobody.reply.token);

    const exe = realpathSync(process.execPath);
    const sha256 = createHash('sha256').update(readFileSync(exe)).digest('hex');
    // spawn() with uid/gid clears supplementary groups, so there are none.
    assert.deepEqual(asNobody.reply.selectors, [
      'unix:uid:65534',
      `unix:user:${getentName('passwd', 65534)}`,
      'unix:gid:65534',
      `unix:group:${getentName('group', 65534)}`,
      `unix:path:${exe}`,
      `unix:sha256:${sha256}`,
    ]);
    await waitFor(() => ws!.connectionCount() === 0, 'the registry to empty after the clients exited');
  });

  it('answers PermissionDenied to a connection it did not accept (self-test fails behind bindAsync)', async () => {
    const other = new grpc.Server();
    const otherPath = join(dir, 'plain.sock');
    addSelfTestService(other, ws!); // getPeer() is "unknown" on a bindAsync socket: ws cannot know the caller
    await new Promise<void>((resolve, reject) =>
      other.bindAsync(`unix://${otherPath}`, grpc.ServerCredentials.createInsecure(), (err) => (err ? reject(err) : resolve())),
    );
    extraClosers.push(() => other.forceShutdown());
    await assert.rejects(
      selfTestPeerCredentials(otherPath),
      (err: unknown) => isEmblemError(err, 'failed_precondition') && /caller could not be identified/.test(err.message),
    );
    assert.equal(ws!.peerOf({ getPeer: () => 'unknown' }), undefined);
    await assert.rejects(
      attestCaller(ws!, { getPeer: () => 'uds-peer:999999' }, { discoverWorkloadPath: false, workloadSizeLimit: -1 }),
      (err: unknown) => isEmblemError(err, 'permission_denied') && err.message === 'caller could not be identified',
    );
  });

  it('accepts 1000 simultaneous connections without EAGAIN', async function () {
    this.timeout(15000);
    const errors: string[] = [];
    const clients: net.Socket[] = [];
    // All connect() calls happen before this process can accept any: the backlog must hold them all.
    for (let i = 0; i < 1000; i++) clients.push(net.connect(path).on('error', (err: NodeJS.ErrnoException) => errors.push(err.code ?? err.message)));
    try {
      await waitFor(() => ws!.connectionCount() + errors.length >= 1000, '1000 connections', 10000);
      assert.deepEqual(errors, []);
      assert.equal(ws!.connectionCount(), 1000);
    } finally {
      for (const c of clients) c.destroy();
    }
    await waitFor(() => ws!.connectionCount() === 0, 'the registry to empty');
  });

  it('closes connections beyond maxConnections', async () => {
    const limitedPath = join(dir, 'limited.sock');
    const limitedServer = new grpc.Server();
    const limited = await listenWorkloadSocket(limitedServer, limitedPath, { maxConnections: 2, mode: 0o770 });
    extraClosers.push(() => limitedServer.forceShutdown(), () => limited.close());
    assert.equal(statSync(limitedPath).mode & 0o777, 0o770);
    const clients = [net.connect(limitedPath), net.connect(limitedPath)];
    extraClosers.push(() => clients.forEach((c) => c.destroy()));
    await waitFor(() => limited.connectionCount() === 2, 'two connections');
    const third = net.connect(limitedPath).resume();
    clients.push(third);
    await once(third, 'close');
    assert.equal(limited.connectionCount(), 2);
  });

  it('replaces a stale socket file but never steals a live socket or removes other files', async () => {
    // A socket file left behind by a killed process.
    const stalePath = join(dir, 'stale.sock');
    const killer = spawnSync(process.execPath, ['-e', "require('net').createServer().listen(process.argv[1], () => process.kill(process.pid, 'SIGKILL'))", stalePath]);
    assert.equal(killer.signal, 'SIGKILL');
    assert.ok(statSync(stalePath).isSocket());
    const staleServer = new grpc.Server();
    const replaced = await listenWorkloadSocket(staleServer, stalePath);
    addSelfTestService(staleServer, replaced);
    extraClosers.push(() => staleServer.forceShutdown(), () => replaced.close());
    await selfTestPeerCredentials(stalePath);

    // The live socket of this test's listener.
    await assert.rejects(
      listenWorkloadSocket(new grpc.Server(), path),
      (err: unknown) => isEmblemError(err, 'failed_precondition') && err.message === `another agent is serving on ${path}`,
    );
    assert.equal((await whoAmI(path)).pid, process.pid);

    const filePath = join(dir, 'not-a-socket');
    writeFileSync(filePath, 'keep me');
    await assert.rejects(listenWorkloadSocket(new grpc.Server(), filePath), /exists and is not a socket/);
    assert.equal(readFileSync(filePath, 'utf8'), 'keep me');

    const invalid = (err: unknown): boolean => isEmblemError(err, 'invalid_argument');
    await assert.rejects(listenWorkloadSocket(new grpc.Server(), 'relative.sock'), invalid);
    await assert.rejects(listenWorkloadSocket(new grpc.Server(), join(dir, 'x.sock'), { mode: 0o1777 }), invalid);
    await assert.rejects(listenWorkloadSocket(new grpc.Server(), join(dir, 'x.sock'), { backlog: 0 }), invalid);
  });

  it('close() ends open connections and removes the socket file', async () => {
    const client = net.connect(path).resume(); // read, so the client sees the server end the connection
    await waitFor(() => ws!.connectionCount() === 1, 'the connection');
    const closed = once(client, 'close');
    await ws!.close();
    await closed;
    assert.equal(ws!.connectionCount(), 0);
    assert.equal(existsSync(path), false);
    await ws!.close(); // idempotent
    ws = undefined;
  });
});
