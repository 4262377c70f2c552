// A server killed with SIGKILL and started again on the same data dir keeps its bundle (same
// sequence and keys), entries, agents, issuance ledger and pending join tokens, and agents keep
// working with the SVIDs they hold.
import assert from 'node:assert/strict';
import { attestTestAgent, attestWithJoinToken, fetchBundle, newJoinToken, reconnectAgent, spawnServer, type ChildServer, type TestAgent } from '../../helpers/server-harness.js';
import { createCsr } from '../../../src/common/x509/csr.js';
import { generateKeyPair } from '../../../src/common/x509/keys.js';
import { serverId } from '../../../src/common/spiffe-id.js';

interface SvidRow {
  serial: string;
  spiffe_id: string;
  kind: string;
}

async function snapshot(server: ChildServer) {
  const bundle = await server.admin.call<{ bundle: Buffer; sequence: number }>('GetBundle');
  const entries = await server.admin.call<{ entries: { id: string }[] }>('ListEntries', {});
  const agents = await server.admin.call<{ agents: { id: string }[] }>('ListAgents', {});
  const svids = await server.admin.call<{ svids: SvidRow[] }>('ListSVIDs', {});
  const authorities = await server.admin.call<{ authorities: unknown[] }>('ListAuthorities');
  return { bundle, entries: entries.entries, agents: agents.agents, svids: svids.svids, authorities: authorities.authorities };
}

describe('e2e: restart after SIGKILL', function () {
  this.timeout(40_000);
  let server: ChildServer;
  let agent: TestAgent | undefined;

  before(async () => {
    server = await spawnServer();
  });

  after(async () => {
    agent?.close();
    await server?.stop();
  });

  it('keeps bundle, entries, agents, ledger and tokens; agents keep authenticating with their SVIDs', async () => {
    agent = await attestWithJoinToken(server);
    const entry = await server.admin.call<{ id: string }>('CreateEntry', {
      spiffe_id: `spiffe://${server.trustDomain}/restart/workload`,
      parent_id: agent.id,
      selectors: [{ type: 'unix', value: 'uid:1' }],
    });
    await server.admin.call('CreateEntry', { spiffe_id: `spiffe://${server.trustDomain}/restart/other`, parent_id: agent.id, selectors: [{ type: 'unix', value: 'uid:2' }], dns_names: ['x.example'] });
    const [signed] = await agent.client.batchNewX509Svid([{ entry_id: entry.id, csr: createCsr(generateKeyPair()) }]);
    assert.equal(signed!.status?.code, 0);
    const outcast = await attestWithJoinToken(server);
    outcast.close();
    await server.admin.call('BanAgent', { id: outcast.id });
    const pending = await newJoinToken(server);
    const before = await snapshot(server);
    const port = server.port;

    await server.kill();
    await assert.rejects(agent.client.batchNewX509Svid([]), (err: Error & { code?: string }) => err.code === 'unavailable');
    await server.restart();
    assert.equal(server.port, port, 'restarted on the same port');

    const after = await snapshot(server);
    assert.equal(after.bundle.sequence, before.bundle.sequence);
    assert.deepEqual(after.bundle.bundle.toString(), before.bundle.bundle.toString(), 'same bundle document (keys and sequence)');
    assert.deepEqual(after.entries, before.entries);
    assert.deepEqual(after.agents, before.agents);
    assert.deepEqual(after.authorities, before.authorities);
    // The ledger keeps every row; the only new ones are the restarted server's own TLS SVID.
    const key = (r: SvidRow) => JSON.stringify(r);
    const afterRows = new Set(after.svids.map(key));
    for (const row of before.svids) assert.ok(afterRows.has(key(row)), `ledger row ${row.serial} survived`);
    const added = after.svids.filter((r) => !before.svids.some((b) => key(b) === key(r)));
    assert.ok(added.every((r) => r.spiffe_id === serverId(server.trustDomain)), JSON.stringify(added));
    assert.ok(before.svids.some((r) => r.kind === 'x509' && r.spiffe_id.endsWith('/restart/workload')));

    // The agent reconnects with the SVID it already holds (the server's new TLS SVID chains to the
    // same, kept CA) and is served.
    // (A new channel: the old one sits in gRPC's reconnect backoff after the failed call.)
    const client = reconnectAgent(server, agent);
    try {
      const [again] = await client.batchNewX509Svid([{ entry_id: entry.id, csr: createCsr(generateKeyPair()) }]);
      assert.equal(again!.status?.code, 0, again!.status?.message);
    } finally {
      client.close();
    }
    assert.deepEqual((await fetchBundle(server)).sequence, before.bundle.sequence);
    // A ban survives the crash.
    const banned = reconnectAgent(server, outcast);
    try {
      await assert.rejects(banned.batchNewX509Svid([]), (err: Error & { code?: string }) => err.code === 'permission_denied' && /banned/.test(err.message));
    } finally {
      banned.close();
    }

    // A join token issued before the crash still attests once.
    const late = await attestTestAgent(server, { joinToken: pending.token });
    late.close();
    assert.equal(late.id, pending.agent_id);
  });
});
