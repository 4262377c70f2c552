// Modes of what holds secrets, with the server, the agent and the CLI started under umask 000 so
// that every mode must be set on purpose rather than inherited from a friendly umask:
// - server: data dir, keys dir and datastore dir 0700, key files 0600, admin socket 0600 in a 0700
//   directory; directories that already existed with loose modes are tightened;
// - agent: data dir and its store 0700, Workload API socket 0777 in a 0755 directory;
// - `emblem-agent api fetch x509 --write DIR`: key 0600 (also when it replaces an existing file),
//   certificates 0644, and DIR not writable by others.
import assert from 'node:assert/strict';
import { chmodSync, mkdirSync, readdirSync, statSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { newJoinToken, spawnServer, startTestServer, type ChildServer } from '../helpers/server-harness.js';
import { newAgentProcess, runAgentCli, type AgentProcess } from './lib/agent-process.js';
import { recordOutput, recordSecret, recordServerKeys } from './lib/run-log.js';
import { fetchUntil, registerWorkload, writeBundlePem } from './lib/workload.js';

const modeOf = (path: string): string => (statSync(path).mode & 0o777).toString(8).padStart(4, '0');

/** Runs `fn` with the process umask set to `mask` (children inherit it). */
async function withUmask<T>(mask: number, fn: () => Promise<T>): Promise<T> {
  const old = process.umask(mask);
  try {
    return await fn();
  } finally {
    process.umask(old);
  }
}

describe('faults: modes of key files, data directories and sockets (umask 000)', function () {
  this.timeout(60_000);
  let server: ChildServer;
  let agent: AgentProcess;
  let agentId: string;

  before(async () => {
    await withUmask(0, async () => {
      server = await spawnServer({ logLevel: 'info' });
      recordOutput('secrets-modes server', () => server.stderr());
      const bundlePath = join(server.dir, 'bundle.pem');
      await writeBundlePem(server, bundlePath);
      const token = await newJoinToken(server);
      recordSecret(token.token, 'join token');
      agentId = token.agent_id;
      agent = newAgentProcess({ serverAddress: server.address, trustDomain: server.trustDomain, bundlePath, joinToken: token.token });
      await agent.start();
    });
    await registerWorkload(server, agentId, '/modes/web');
    await fetchUntil(agent.socket, (s) => s.length === 1);
  });

  after(async () => {
    await agent?.stop();
    if (server) recordServerKeys(server.dataDir);
    await server?.stop();
  });

  it('server: data, keys and datastore directories 0700, key files 0600, admin socket 0600 in a 0700 directory', () => {
    assert.equal(modeOf(server.dataDir), '0700', 'data dir');
    assert.equal(modeOf(join(server.dataDir, 'keys')), '0700', 'keys dir');
    assert.equal(modeOf(join(server.dataDir, 'datastore')), '0700', 'datastore dir');
    const keyFiles = readdirSync(join(server.dataDir, 'keys'));
    assert.ok(keyFiles.length >= 2, 'X.509 and JWT key files');
    for (const f of keyFiles) assert.equal(modeOf(join(server.dataDir, 'keys', f)), '0600', `key file ${f}`);
    assert.ok(statSync(server.socket).isSocket());
    assert.equal(modeOf(server.socket), '0600', 'admin socket');
    assert.equal(modeOf(dirname(server.socket)), '0700', 'admin socket directory');
  });

  it('agent: data directory and store 0700, Workload API socket 0777 in a 0755 directory', () => {
    assert.equal(modeOf(agent.dataDir), '0700', 'agent data dir');
    assert.equal(modeOf(join(agent.dataDir, 'agent')), '0700', 'agent store (holds the agent key)');
    assert.ok(statSync(agent.socket).isSocket());
    assert.equal(modeOf(agent.socket), '0777', 'Workload API socket');
    assert.equal(modeOf(dirname(agent.socket)), '0755', 'Workload API socket directory');
  });

  it('api fetch x509 --write: key 0600 (also over an existing 0644 file), certificates 0644, directory not writable by others', async () => {
    const out = join(agent.dir, 'written', 'svid');
    const write = () => withUmask(0, () => runAgentCli(['api', 'fetch', 'x509', '--socket', agent.socket, '--write', out]));
    const first = await write();
    assert.equal(first.code, 0, first.stderr);
    assert.equal(modeOf(join(out, 'svid.0.key')), '0600', 'new key file');
    assert.equal(modeOf(join(out, 'svid.0.pem')), '0644');
    assert.equal(modeOf(join(out, 'bundle.0.pem')), '0644');
    assert.equal(statSync(out).mode & 0o022, 0, `--write directory ${modeOf(out)} is not group/world-writable`);

    chmodSync(join(out, 'svid.0.key'), 0o644); // e.g. left by an older tool
    const second = await write();
    assert.equal(second.code, 0, second.stderr);
    assert.equal(modeOf(join(out, 'svid.0.key')), '0600', 'a replaced key file is 0600 too');
  });

  it('server: directories that already existed with loose modes are tightened', async () => {
    const base = join(agent.dir, 'loose');
    const loose = await withUmask(0, async () => {
      mkdirSync(join(base, 'data', 'keys'), { recursive: true, mode: 0o777 });
      mkdirSync(join(base, 'admin'), { recursive: true, mode: 0o777 });
      return startTestServer({}, { dir: base, logLevel: 'debug' });
    });
    try {
      recordOutput('secrets-modes loose server (in-process)', () => loose.logs.text());
      assert.equal(modeOf(join(base, 'data', 'keys')), '0700', 'keys dir tightened');
      for (const f of readdirSync(join(base, 'data', 'keys'))) assert.equal(modeOf(join(base, 'data', 'keys', f)), '0600');
      assert.equal(modeOf(join(base, 'admin')), '0700', 'admin socket dir tightened');
      assert.equal(modeOf(join(base, 'admin', 'api.sock')), '0600');
      assert.equal(modeOf(join(base, 'data', 'datastore')), '0700');
    } finally {
      recordServerKeys(join(base, 'data'));
      await loose.close();
    }
  });
});
