// The server is down (SIGKILL) for several X509-SVID half-lives (10 s SVIDs, 16 s outage). While it
// is down the agent keeps giving workloads the SVIDs it has, as long as they are valid, and never an
// expired one. When the server returns, the agent reconnects and workloads hold a fresh SVID within
// a second of the server being ready.
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { newJoinToken, spawnServer, type ChildServer } from '../helpers/server-harness.js';
import { newAgentProcess, type AgentProcess } from './lib/agent-process.js';
import { recordOutput, recordServerKeys, recordSecret } from './lib/run-log.js';
import { fetchSvids, fetchUntil, registerWorkload, sleep, watchSvids, writeBundlePem, type SvidWatch } from './lib/workload.js';

const SVID_TTL = 10;
const OUTAGE_MS = 16_000;
const RECOVERY_BUDGET_MS = 1000;

/** The time of the last "emblem-server ready" line, from the log record itself. */
function lastReadyAt(log: string): number {
  const lines = log.split('\n').filter((l) => l.includes('"msg":"emblem-server ready"'));
  return (JSON.parse(lines.at(-1)!) as { time: number }).time;
}

describe('faults: the server is down for several SVID half-lives', function () {
  this.timeout(90_000);
  let server: ChildServer;
  let agent: AgentProcess | undefined;
  let watch: SvidWatch | undefined;

  before(async () => {
    server = await spawnServer({ caTtl: '1h', x509SvidTtl: `${SVID_TTL}s`, agentSvidTtl: '10m' });
    recordOutput('outage server', () => server.stderr());
  });

  after(async () => {
    watch?.cancel();
    await agent?.stop();
    if (server) recordServerKeys(server.dataDir);
    await server?.stop();
  });

  it('workloads keep valid SVIDs while they last, and get fresh ones within a second of the server returning', async () => {
    const bundlePath = join(server.dir, 'bundle.pem');
    await writeBundlePem(server, bundlePath);
    const { token, agent_id: agentId } = await newJoinToken(server);
    recordSecret(token);
    agent = newAgentProcess({ serverAddress: server.address, trustDomain: server.trustDomain, bundlePath, joinToken: token });
    await agent.start();
    const id = `spiffe://${server.trustDomain}/outage/web`;
    await registerWorkload(server, agentId, '/outage/web');
    await fetchUntil(agent.socket, (s) => s.some((x) => x.spiffeId === id));
    watch = watchSvids(agent.socket);

    await server.kill();
    const downAt = Date.now();
    const served: { at: number; notAfter: number; serial: string }[] = [];
    let sawValid = 0;
    while (Date.now() - downAt < OUTAGE_MS) {
      const now = Date.now();
      const svids = await fetchSvids(agent.socket, 2000).catch(() => undefined);
      const mine = svids?.find((s) => s.spiffeId === id);
      if (mine) {
        served.push({ at: now, notAfter: mine.notAfter, serial: mine.serial });
        assert.ok(mine.notAfter * 1000 > now - 1000, `the agent served an SVID that expired at ${mine.notAfter} at ${now / 1000}`);
        sawValid++;
      }
      await sleep(250);
    }
    const lastServed = served.at(-1);
    assert.ok(served.length > 0 && served[0]!.at - downAt < 1000, 'the cached SVID was served right after the server went down');
    // While the held SVID was valid it was served; the agent never dropped it early.
    const heldUntil = Math.max(...served.map((s) => s.notAfter)) * 1000;
    assert.ok(heldUntil - downAt <= SVID_TTL * 1000 + 2000, 'no SVID outlives its TTL');
    const gaps = served.filter((s, i) => i > 0 && s.at - served[i - 1]!.at > 1500 && s.at < heldUntil);
    assert.deepEqual(gaps, [], 'no fetch failed while an SVID was still valid');
    assert.ok(lastServed && lastServed.at >= heldUntil - 1500, `the agent served its SVID until it expired (last served ${lastServed?.at}, valid until ${heldUntil})`);
    assert.ok(Date.now() > heldUntil, 'the outage outlasted the SVID');

    const updatesBefore = watch.updates.length;
    await server.restart();
    const readyAt = lastReadyAt(server.stderr());
    const freshAt = await new Promise<number>((resolve, reject) => {
      const deadline = Date.now() + 15_000;
      const poll = (): void => {
        const fresh = watch!.updates.slice(updatesBefore).find((u) => u.svids.some((s) => s.spiffeId === id && s.notAfter * 1000 > u.at + 5000));
        if (fresh) return resolve(fresh.at);
        if (Date.now() > deadline) return reject(new Error('workload got no fresh SVID within 15 s of the restart'));
        setTimeout(poll, 10);
      };
      poll();
    });
    const syncUpAt = (() => {
      const lines = agent.output().split('\n').filter((l) => l.includes('"msg":"sync stream up"'));
      return (JSON.parse(lines.at(-1)!) as { time: number }).time;
    })();
    console.log(`      served the cached SVID ${sawValid} times during the outage; after restart: agent sync up in ${syncUpAt - readyAt} ms, fresh SVID at the workload in ${freshAt - readyAt} ms`);
    assert.ok(watch.ended === undefined, 'the workload stream stayed open throughout');
    assert.ok(freshAt - readyAt <= RECOVERY_BUDGET_MS, `fresh SVID ${freshAt - readyAt} ms after the server was ready (budget ${RECOVERY_BUDGET_MS} ms)`);
  });
});
