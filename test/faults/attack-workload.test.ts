// Attacks on the Workload API of a real agent (child process) by local processes of other uids:
// asking for another uid's identity, speaking over a connection passed by a process that then exits,
// and PID reuse (the connecting process exits and a root process takes its PID while the attacker
// still holds the connection).
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { status } from '@grpc/grpc-js';
import { loadDefinition } from '../../src/common/grpc/proto.js';
import { startTestServer, type TestServer } from '../helpers/server-harness.js';
import { servedIds, spawnAgent, waitForServedIds, type AgentProcess } from './lib/attack-agent.js';
import { NOBODY, rawCall, spawnConnector, spawnWithPid, x509SvidIds, type RawCallResult } from './lib/attack-procs.js';

const FETCH_X509 = '/SpiffeWorkloadAPI/FetchX509SVID';
const FETCH_JWT = '/SpiffeWorkloadAPI/FetchJWTSVID';

function encodeJwtRequest(audience: string[], spiffeId: string): string {
  const def = loadDefinition('workload.proto')['SpiffeWorkloadAPI'] as unknown as Record<string, { requestSerialize(v: object): Buffer }>;
  return def['FetchJWTSVID']!.requestSerialize({ audience, spiffe_id: spiffeId }).toString('base64');
}

function assertServed(result: RawCallResult, ids: string[]): void {
  assert.equal(result.status, 0, `expected an SVID message, got ${JSON.stringify(result)}`);
  assert.deepEqual(x509SvidIds(result.message!), ids);
}

function assertDenied(result: RawCallResult): void {
  assert.equal(result.status, status.PERMISSION_DENIED, JSON.stringify(result));
  assert.equal(result.message, undefined, 'no SVID message may precede the refusal');
}

describe('faults: Workload API attacks by local processes', function () {
  this.timeout(30_000);
  let server: TestServer;
  let agent: AgentProcess;
  let rootId: string;
  let nobodyId: string;
  let scratch: string;

  before(async () => {
    server = await startTestServer({}, { logLevel: 'info' });
    agent = await spawnAgent(server);
    const td = server.trustDomain;
    rootId = `spiffe://${td}/wl/root`;
    nobodyId = `spiffe://${td}/wl/nobody`;
    await server.admin.call('CreateEntry', { spiffe_id: rootId, parent_id: agent.id, selectors: [{ type: 'unix', value: 'uid:0' }] });
    await server.admin.call('CreateEntry', { spiffe_id: nobodyId, parent_id: agent.id, selectors: [{ type: 'unix', value: `uid:${NOBODY}` }] });
    await waitForServedIds(agent.socket, [rootId]);
    scratch = mkdtempSync(join(tmpdir(), 'emblem-faults-wl-'));
    chmodSync(scratch, 0o755);
  });

  after(async () => {
    await agent?.stop();
    await server?.stop();
    if (scratch) rmSync(scratch, { recursive: true, force: true });
  });

  afterEach(function () {
    if (this.currentTest?.state === 'failed') process.stderr.write(`agent log tail:\n${agent.stderr().slice(-3000)}\n`);
  });

  it('serves each uid only its own identities: uid B never gets uid A\'s, by X.509 or JWT, and an unknown uid gets none', async () => {
    assert.deepEqual(await servedIds(agent.socket), [rootId]);
    assertServed(await rawCall({ socketPath: agent.socket, path: FETCH_X509 }, NOBODY), [nobodyId]);

    const stealJwt = await rawCall({ socketPath: agent.socket, path: FETCH_JWT, body: encodeJwtRequest(['attack'], rootId) }, NOBODY);
    assertDenied(stealJwt);
    const ownJwt = await rawCall({ socketPath: agent.socket, path: FETCH_JWT, body: encodeJwtRequest(['attack'], nobodyId) }, NOBODY);
    assert.equal(ownJwt.status, 0, JSON.stringify(ownJwt));

    assertDenied(await rawCall({ socketPath: agent.socket, path: FETCH_X509 }, 1234));
    // Without the security header the request is refused before the caller is even identified.
    const headerless = await rawCall({ socketPath: agent.socket, path: FETCH_X509, header: false }, NOBODY);
    assert.equal(headerless.status, status.INVALID_ARGUMENT, JSON.stringify(headerless));
  });

  it('a connection passed to a uid B child speaks for its connector A while A lives (SO_PEERCRED semantics)', async () => {
    const c = spawnConnector({ socketPath: agent.socket, path: FETCH_X509, childUid: NOBODY, mode: 'stay', childWaits: 'nothing' });
    assertServed(await c.result, [rootId]);
  });

  it('refuses a passed connection once its connector A has exited: the uid B holder gets PERMISSION_DENIED', async () => {
    const c = spawnConnector({ socketPath: agent.socket, path: FETCH_X509, childUid: NOBODY, mode: 'exit', childWaits: 'connector-gone' });
    const { connector, child } = await c.pids;
    assert.notEqual(connector, child);
    assertDenied(await c.result);
  });

  it('refuses PID reuse: the attacker connects and exits, a root process takes its PID, the attacker\'s connection gets nothing', async () => {
    const go = join(scratch, 'go-pid-reuse');
    // Attacker: uid 65534 connects, hands the connection to its own child (also 65534), exits.
    const c = spawnConnector({ socketPath: agent.socket, path: FETCH_X509, uid: NOBODY, mode: 'exit', childWaits: { file: go } });
    const { connector } = await c.pids;
    if (c.process.exitCode === null) await once(c.process, 'exit');
    const impostor = await spawnWithPid(connector, 'sleep', ['30']);
    assert.ok(impostor, `could not start a process with pid ${connector} (ns_last_pid needs CAP_SYS_ADMIN)`);
    try {
      assert.match(readFileSync(`/proc/${connector}/status`, 'utf8'), /^Uid:\s+0\s/m, 'the reused pid now belongs to root');
      writeFileSync(go, '');
      const result = await c.result;
      assertDenied(result);
    } finally {
      impostor.kill('SIGKILL');
    }
    // The agent is unharmed and still serves honest callers.
    assert.deepEqual(await servedIds(agent.socket), [rootId]);
    assert.ok(agent.alive());
  });
});
