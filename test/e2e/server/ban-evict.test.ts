// Banning and evicting connected agents through the admin API: the open sync stream is told
// (AGENT_STATE_BANNED / EVICTED) and ends with PERMISSION_DENIED at once, every other call fails,
// a banned node can never attest again, an evicted x509pop node can.
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { attestAgent } from '../../../src/agent/attestation/node-attestation.js';
import { ServerClient } from '../../../src/agent/client/server-client.js';
import { isEmblemError, type ErrorCode } from '../../../src/common/errors.js';
import { createCsr } from '../../../src/common/x509/csr.js';
import { generateKeyPair } from '../../../src/common/x509/keys.js';
import { createPopCa, createPopLeaf, type PopCa, type PopLeaf } from '../../helpers/pki.js';
import {
  assertNoSecretsLogged,
  attestTestAgent,
  attestWithJoinToken,
  fetchBundle,
  joinTokenOf,
  newServerDir,
  recordSync,
  startTestServer,
  type TestAgent,
  type TestServer,
} from '../../helpers/server-harness.js';

async function rejects(p: Promise<unknown>, code: ErrorCode, pattern?: RegExp): Promise<void> {
  await assert.rejects(p, (err: unknown) => {
    assert.ok(isEmblemError(err), String(err));
    assert.equal(err.code, code, err.message);
    if (pattern) assert.match(err.message, pattern);
    return true;
  });
}

describe('e2e: banning and evicting agents', function () {
  this.timeout(20_000);
  let server: TestServer;
  let ca: PopCa;
  const agents: TestAgent[] = [];
  const secrets: string[] = [];

  const popAgent = async (leaf: PopLeaf) => {
    const agent = await attestTestAgent(server, { x509pop: { certChain: leaf.chain, privateKey: leaf.privateKey } });
    agents.push(agent);
    return agent;
  };

  /** Attests with a fresh client (no retained state) and returns the refusal. */
  const attestAgain = async (leaf: PopLeaf) => {
    const bundle = await fetchBundle(server);
    const client = new ServerClient({ serverAddress: server.address, trustDomain: server.trustDomain, bootstrapAnchors: bundle.x509Authorities });
    try {
      return await attestAgent(client, { x509pop: { certChain: leaf.chain, privateKey: leaf.privateKey } }, createCsr(generateKeyPair()), { timeoutMs: 10_000 });
    } finally {
      client.close();
    }
  };

  const openSync = async (agent: TestAgent) => {
    const sync = recordSync(agent.client.syncEntries({ since_revision: 0, known_entries: [] }));
    await sync.waitFor((u) => u.full);
    return sync;
  };

  before(async () => {
    ca = await createPopCa('Ban Node CA');
    const dir = newServerDir();
    const caFile = join(dir, 'node-ca.pem');
    writeFileSync(caFile, ca.pem);
    server = await startTestServer({ x509popCaBundles: [caFile] }, { dir });
  });

  after(async () => {
    for (const agent of agents) agent.close();
    await server?.stop();
  });

  it('cuts a banned agent off at once: stream told BANNED then PERMISSION_DENIED, every call refused, no re-attestation', async () => {
    const leaf = await createPopLeaf(ca, 'doomed-node');
    const agent = await popAgent(leaf);
    const entry = await server.admin.call<{ id: string }>('CreateEntry', {
      spiffe_id: `spiffe://${server.trustDomain}/doomed/workload`,
      parent_id: agent.id,
      selectors: [{ type: 'unix', value: 'uid:7' }],
    });
    const sync = await openSync(agent);
    assert.ok(sync.updates[0]!.update.entries.some((e) => e.id === entry.id));

    const started = performance.now();
    await server.admin.call('BanAgent', { id: agent.id });
    const banned = await sync.waitFor((u) => u.agent_state === 'AGENT_STATE_BANNED', 1000);
    assert.equal(banned.agent_state, 'AGENT_STATE_BANNED');
    const ended = await Promise.race([sync.ended, new Promise<'open'>((r) => setTimeout(() => r('open'), 1000))]);
    assert.ok(ended !== 'open', 'the stream must end within 1 s of the ban');
    assert.equal(ended?.code, 'permission_denied');
    assert.ok(performance.now() - started < 1000);
    // The server cuts the agent's connections a moment after the stream ends; calls made after
    // that go over a new connection and meet the ban itself.
    await new Promise((r) => setTimeout(r, 200));

    await rejects(agent.client.batchNewX509Svid([{ entry_id: entry.id, csr: createCsr(generateKeyPair()) }]), 'permission_denied', /banned/);
    await rejects(agent.client.newJwtSvid(entry.id, ['a']), 'permission_denied', /banned/);
    await rejects(agent.client.renewAgent(createCsr(generateKeyPair())), 'permission_denied', /banned/);
    const again = recordSync(agent.client.syncEntries({ since_revision: 0, known_entries: [] }));
    const err = await again.ended;
    assert.ok(
      err?.code === 'permission_denied' || again.updates.some((u) => u.update.agent_state === 'AGENT_STATE_BANNED'),
      'a new sync stream of a banned agent is refused',
    );
    await rejects(attestAgain(leaf), 'permission_denied', /banned/);

    const stored = await server.admin.call<{ banned: boolean }>('GetAgent', { id: agent.id });
    assert.equal(stored.banned, true);
  });

  it('evicts an agent: stream told EVICTED and closed, calls refused; an x509pop node may attest again', async () => {
    const leaf = await createPopLeaf(ca, 'evicted-node');
    const agent = await popAgent(leaf);
    const sync = await openSync(agent);

    await server.admin.call('EvictAgent', { id: agent.id });
    await sync.waitFor((u) => u.agent_state === 'AGENT_STATE_EVICTED', 1000);
    const ended = await Promise.race([sync.ended, new Promise<'open'>((r) => setTimeout(() => r('open'), 1000))]);
    assert.ok(ended !== 'open', 'the stream must end within 1 s of the eviction');
    assert.equal(ended?.code, 'permission_denied');
    await new Promise((r) => setTimeout(r, 200));
    await rejects(agent.client.renewAgent(createCsr(generateKeyPair())), 'permission_denied', /evicted/);
    await rejects(server.admin.call('GetAgent', { id: agent.id }), 'not_found');

    const back = await popAgent(leaf);
    assert.equal(back.id, agent.id);
    const resync = await openSync(back);
    assert.equal(resync.updates[0]!.update.agent_state, 'AGENT_STATE_OK');
    resync.cancel();
    // The old SVID stays refused: only the one from the new attestation is current.
    await rejects(agent.client.renewAgent(createCsr(generateKeyPair())), 'permission_denied');
  });

  it('an evicted join-token agent cannot come back with its spent token', async () => {
    const agent = await attestWithJoinToken(server);
    agents.push(agent);
    secrets.push(joinTokenOf(agent.id));
    await server.admin.call('EvictAgent', { id: agent.id });
    const bundle = await fetchBundle(server);
    const client = new ServerClient({ serverAddress: server.address, trustDomain: server.trustDomain, bootstrapAnchors: bundle.x509Authorities });
    try {
      await rejects(attestAgent(client, { joinToken: joinTokenOf(agent.id) }, createCsr(generateKeyPair()), { timeoutMs: 10_000 }), 'permission_denied');
    } finally {
      client.close();
    }
  });

  it('logged no join token, private key or JWT', () => {
    assertNoSecretsLogged(server.logs.text(), secrets);
  });
});
