// SIGKILL of a real emblem-agent, restarted with the same command line (its join token is spent,
// so a re-attestation would fail). After the restart it serves its cached identities (the same
// SVIDs, by serial) before it has even reached the server, does not attest again, resumes its sync
// from its stored revision (a delta, not a full sync) and keeps following the server; workloads
// reconnect and get the same identities. Twice: with the server up, and with the server down while
// the agent restarts.
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { eventually, newJoinToken, spawnServer, type ChildServer } from '../helpers/server-harness.js';
import { newAgentProcess, type AgentProcess } from './lib/agent-process.js';
import { recordOutput, recordServerKeys, recordSecret } from './lib/run-log.js';
import { fetchSvids, fetchUntil, registerWorkload, sleep, watchSvids, writeBundlePem, type HeldSvid, type SvidWatch } from './lib/workload.js';

const count = (text: string, msg: string): number => text.split('\n').filter((l) => l.includes(`"msg":"${msg}"`)).length;
const identities = (svids: HeldSvid[]): string[] => svids.map((s) => `${s.spiffeId}#${s.serial}`).sort();

/** The "applied sync update" records of the agent's current run. */
function syncUpdates(agent: AgentProcess): { full: boolean; revision: number }[] {
  return agent
    .runOutput()
    .split('\n')
    .filter((l) => l.includes('"msg":"applied sync update"'))
    .map((l) => JSON.parse(l) as { full: boolean; revision: number });
}

describe('faults: SIGKILL the agent', function () {
  this.timeout(90_000);
  let server: ChildServer;
  let agent: AgentProcess;
  let agentId: string;
  const watches: SvidWatch[] = [];
  const td = () => server.trustDomain;

  before(async () => {
    server = await spawnServer({ logLevel: 'info' });
    recordOutput('crash-agent server', () => server.stderr());
    const bundlePath = join(server.dir, 'bundle.pem');
    await writeBundlePem(server, bundlePath);
    const token = await newJoinToken(server);
    recordSecret(token.token);
    agentId = token.agent_id;
    agent = newAgentProcess({ serverAddress: server.address, trustDomain: td(), bundlePath, joinToken: token.token });
    await agent.start();
    await registerWorkload(server, agentId, '/agent-crash/a');
    await registerWorkload(server, agentId, '/agent-crash/b');
    await fetchUntil(agent.socket, (s) => s.length === 2);
  });

  after(async () => {
    for (const w of watches) w.cancel();
    await agent?.stop();
    if (server) recordServerKeys(server.dataDir);
    await server?.stop();
  });

  async function killAndCheckRestart(serverUp: boolean): Promise<void> {
    const before = await fetchSvids(agent.socket);
    assert.equal(before.length, 2);
    const watch = watchSvids(agent.socket);
    watches.push(watch);
    assert.ok(await eventually(() => watch.updates.length > 0, 5000), 'the workload stream is answered');
    const attestedBefore = count(server.stderr(), 'agent attested');

    await agent.kill();
    assert.ok(await eventually(() => watch.ended !== undefined, 5000), 'the workload stream ends when the agent dies');
    if (!serverUp) await server.kill();

    const t0 = Date.now();
    await agent.start('socket');
    const cached = await fetchSvids(agent.socket);
    const servedAfterMs = Date.now() - t0;
    assert.deepEqual(identities(cached), identities(before), 'the restarted agent serves the same SVIDs');
    for (const s of cached) assert.ok(s.notAfter * 1000 > Date.now(), 'and they are valid');
    assert.match(agent.runOutput(), /"msg":"using the stored agent SVID"/);

    if (!serverUp) {
      await sleep(1500); // the agent is up and cannot reach the server
      assert.equal(count(agent.runOutput(), 'sync stream up'), 0);
      assert.deepEqual(identities(await fetchSvids(agent.socket)), identities(before), 'still served with the server down');
      await server.restart();
    }
    await agent.waitForOutput(/"msg":"sync stream up"/, 15_000);
    // Logged right after "sync stream up", but it may reach us in a later chunk of output.
    await agent.waitForOutput(/"msg":"applied sync update"/, 5_000);
    const first = syncUpdates(agent)[0];
    assert.ok(first, 'a sync update was applied');
    assert.equal(first.full, false, 'the sync resumed from the stored revision (a delta, not a full sync)');
    assert.equal(count(server.stderr(), 'agent attested'), attestedBefore, 'the server saw no new attestation');
    assert.equal(count(agent.runOutput(), 'agent attested'), 0, 'the agent did not attest again');
    const agents = await server.admin.call<{ agents: { id: string }[] }>('ListAgents', {});
    assert.deepEqual(agents.agents.map((a) => a.id), [agentId], 'still the one agent');

    // Workloads reconnect and get the same identities.
    const again = watchSvids(agent.socket);
    watches.push(again);
    assert.ok(await eventually(() => again.updates.length > 0, 5000), 'a reconnecting workload gets an answer');
    assert.deepEqual(identities(again.latest()!), identities(before), 'a reconnecting workload gets the same identities');

    // The sync follows the server again: a new entry is minted, a deleted one disappears.
    const added = await registerWorkload(server, agentId, `/agent-crash/added-${serverUp ? 'up' : 'down'}`);
    await fetchUntil(agent.socket, (s) => s.some((x) => x.spiffeId === added.spiffe_id), 5000);
    await server.admin.call('DeleteEntry', { id: added.id });
    await fetchUntil(agent.socket, (s) => s.length === 2, 5000);
    console.log(`      server ${serverUp ? 'up' : 'down'}: cached SVIDs served ${servedAfterMs} ms after the restart began`);
  }

  it('with the server up: serves its cached identities, does not re-attest, resumes its sync', async () => {
    await killAndCheckRestart(true);
  });

  it('with the server down during the restart: serves its cached identities, then reconnects without re-attesting', async () => {
    await killAndCheckRestart(false);
  });
});

