// Failures of real processes: the server SIGKILLed (workloads keep being served from the agent's
// cache; the agent resumes by itself when the server is back), the agent SIGKILLed (it serves the
// same identity again from its data dir without a join token, even while the server is down), and a
// ban (the agent process exits non-zero and its socket stops answering).
import assert from 'node:assert/strict';
import type { X509SvidResponseMsg } from '../../../src/agent/cli/workload-client.js';
import { isEmblemError } from '../../../src/common/errors.js';
import { probeHealth } from '../../../src/common/observability/http-endpoint.js';
import { runServerCli } from '../../helpers/cli.js';
import { eventually } from '../../helpers/server-harness.js';
import { exited, freePort, idsOf, leafSerial, startSystem, watchX509, type TestSystem, type X509Watch } from '../../helpers/system-harness.js';

const OWN_UID = process.getuid!();

describe('e2e: server and agent restarts, ban (real processes)', function () {
  this.timeout(60_000);
  let sys: TestSystem;
  let healthUrl: string;
  let steadyId: string;
  let steadySerial: string;
  let watch: X509Watch | undefined;

  before(async function () {
    const healthPort = await freePort();
    healthUrl = `http://127.0.0.1:${healthPort}/ready`;
    sys = await startSystem({ agentArgs: ['--health-bind', `127.0.0.1:${healthPort}`] });
    steadyId = `spiffe://${sys.trustDomain}/steady`;
    await sys.createEntry('/steady', OWN_UID);
    steadySerial = serialOf(await fetchUntil((r) => idsOf(r).includes(steadyId)), steadyId);
  });

  after(async function () {
    watch?.cancel();
    await sys?.stop();
  });

  const serialOf = (res: X509SvidResponseMsg, id: string): string => leafSerial(res.svids.find((s) => s.spiffe_id === id)!.x509_svid);

  /** A new connection and a new FetchX509SVID call each time, until `match` holds. */
  async function fetchUntil(match: (r: X509SvidResponseMsg) => boolean, timeoutMs = 5000): Promise<X509SvidResponseMsg> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const client = sys.client();
      try {
        const res = await client.fetchX509(3000);
        if (match(res)) return res;
      } catch (err) {
        if (!isEmblemError(err, 'permission_denied') || Date.now() > deadline) throw err;
      } finally {
        client.close();
      }
      if (Date.now() > deadline) throw new Error('no matching FetchX509SVID response');
      await new Promise((r) => setTimeout(r, 50));
    }
  }

  const syncUps = () => sys.agent.records('sync stream up').length;

  it('server SIGKILLed: new calls get the cached SVID; back on the same data dir and port, the agent resumes by itself', async function () {
    watch = watchX509(sys.client());
    await watch.waitFor((r) => idsOf(r).includes(steadyId));
    const upsBefore = syncUps();

    await sys.server.kill();
    const cached = await fetchUntil(() => true);
    assert.equal(serialOf(cached, steadyId), steadySerial, 'the cached SVID is served while the server is down');
    assert.ok(
      await eventually(async () => {
        const report = await probeHealth(healthUrl, 2000);
        return report.ok && report.checks.some((c) => c.name === 'server-or-cache' && /server unreachable/.test(c.detail ?? ''));
      }, 5000),
      'the agent stays ready on its cache and reports the server unreachable',
    );
    await new Promise((r) => setTimeout(r, 1000)); // let the reconnect backoff grow a little

    await sys.server.restart();
    const back = performance.now();
    // Registered at once: the agent is still backing off and must pick it up when it reconnects.
    const from = watch.updates.length;
    await sys.createEntry('/after-restart', OWN_UID);
    const afterId = `spiffe://${sys.trustDomain}/after-restart`;
    // Worst case: the sync backoff (≤ 30 s) on top of the channel's reconnect backoff (≤ 10 s).
    const update = await watch.waitFor((r) => idsOf(r).includes(afterId), 40_000, from);
    const entryMs = performance.now() - back;
    assert.equal(watch.isEnded(), false, 'the workload stream opened before the crash is still open');
    assert.deepEqual(idsOf(update).sort(), [afterId, steadyId].sort());
    assert.ok(syncUps() > upsBefore, 'the agent logged its reconnection');
    const retries = sys.agent.records('sync stream down; the cache keeps serving').map((r) => Number(r.retryInMs));
    assert.ok(retries.length >= 1, 'the agent logged its reconnect attempts');
    assert.ok(retries.every((ms) => ms <= 30_000), `backoff is capped at 30 s: ${retries.join(', ')}`);
    console.log(`      server restart: entry registered right after the restart reached the open stream ${entryMs.toFixed(0)} ms after the server was healthy (retry delays ${retries.join(', ')} ms)`);
  });

  it('agent SIGKILLed and started without --join-token: same identities, still one agent', async function () {
    await sys.agent.kill();
    const runsBefore = sys.agent.records('agent attested').length;
    await sys.agent.start();
    assert.equal(sys.agent.records('agent attested').length, runsBefore, 'the agent attested again');
    assert.ok(sys.agent.records('using the stored agent SVID').length >= 1);
    const res = await fetchUntil((r) => idsOf(r).includes(steadyId));
    assert.deepEqual(idsOf(res).sort(), [`spiffe://${sys.trustDomain}/after-restart`, steadyId].sort());
    assert.equal(serialOf(res, steadyId), steadySerial, 'the stored SVID is served, not a new one');
    const agents = await sys.listAgents();
    assert.deepEqual(
      agents.map((a) => a.id),
      [sys.agentId],
    );
  });

  it('agent restarted while the server is down serves the same identities, then rejoins the server', async function () {
    await sys.server.kill();
    await sys.agent.kill();
    const upsBefore = syncUps();
    await sys.agent.start();
    const res = await fetchUntil(() => true);
    assert.equal(serialOf(res, steadyId), steadySerial);
    assert.equal(idsOf(res).length, 2);

    await sys.server.restart();
    assert.ok(await eventually(() => syncUps() > upsBefore, 40_000), 'the agent did not reach the server again');
    const agents = await sys.listAgents();
    assert.deepEqual(
      agents.map((a) => a.id),
      [sys.agentId],
    );
  });

  it('ban: the agent process exits non-zero within seconds, says why, and its socket stops answering', async function () {
    const proc = sys.agent.process!;
    const t0 = performance.now();
    const ban = await runServerCli(['agent', 'ban', '--id', sys.agentId, '--socket', sys.server.socket]);
    assert.equal(ban.code, 0, ban.stderr);
    const result = await Promise.race([exited(proc), new Promise<'running'>((r) => setTimeout(() => r('running'), 5000))]);
    if (result === 'running') assert.fail('the banned agent is still running 5 s after the ban');
    const exitMs = performance.now() - t0;
    assert.notEqual(result.code, 0);
    assert.equal(result.code, 2);
    assert.ok(sys.agent.records(/banned/).length >= 1, 'the agent logged that it was banned');
    await assert.rejects(sys.client().fetchX509(2000), (err: unknown) => isEmblemError(err, 'unavailable') || isEmblemError(err, 'deadline_exceeded'));
    console.log(`      ban: agent exited with status ${result.code} ${exitMs.toFixed(0)} ms after the ban command started`);
  });
});
