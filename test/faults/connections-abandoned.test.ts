// 5,000 connections opened and abandoned on the Workload API socket of a real agent, in bursts:
// closed at once without a request, held open without ever reading, half-closed, and abandoned in
// the middle of a FetchX509SVID whose answer is never read. Meanwhile a well-behaved client keeps
// getting its SVID within a bound; afterwards the agent holds no connection and its memory returns
// to within a margin of the baseline.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import * as http2 from 'node:http2';
import * as net from 'node:net';
import { connectWorkloadApi } from '../../src/agent/cli/workload-client.js';
import { startTestServer, type TestServer } from '../helpers/server-harness.js';
import { spawnAgent, waitForServedIds, type AgentProcess } from './lib/attack-agent.js';

const TOTAL = 5000;
const BURST = 500;
const RSS_MARGIN_KIB = 30 * 1024;
const PROBE_BOUND_MS = 2000;
const RSS_WAIT_MS = 120_000;

/** Connections the kernel lists as bound to `path`, minus the listening socket itself. */
function openConnections(path: string): number {
  return readFileSync('/proc/net/unix', 'utf8')
    .split('\n')
    .filter((line) => line.endsWith(` ${path}`) && line.split(/\s+/)[5] !== '01').length;
}

async function until(check: () => boolean, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) return false;
    await new Promise((r) => setTimeout(r, 100));
  }
  return true;
}

const connect = (path: string): Promise<net.Socket> =>
  new Promise((resolve, reject) => {
    const s = net.connect(path, () => resolve(s));
    s.once('error', reject);
  });

type Style = 'destroy' | 'idle' | 'half-close' | 'unread-request';
const STYLES: readonly Style[] = ['destroy', 'idle', 'half-close', 'unread-request'];

/** Opens one connection in `style`; resolves with a function that abandons it for good. */
async function openAbandoned(path: string, style: Style): Promise<() => void> {
  const socket = await connect(path);
  socket.on('error', () => undefined);
  switch (style) {
    case 'destroy':
      socket.destroy();
      return () => undefined;
    case 'idle':
      socket.pause(); // never reads the server's SETTINGS
      return () => socket.destroy();
    case 'half-close':
      socket.pause();
      socket.end();
      return () => socket.destroy();
    case 'unread-request': {
      const session = http2.connect('http://localhost', { createConnection: () => socket });
      session.on('error', () => undefined);
      const req = session.request({ ':method': 'POST', ':path': '/SpiffeWorkloadAPI/FetchX509SVID', 'content-type': 'application/grpc', te: 'trailers', 'workload.spiffe.io': 'true' });
      req.on('error', () => undefined);
      req.pause();
      req.end(Buffer.from([0, 0, 0, 0, 0]));
      return () => {
        session.destroy();
        socket.destroy();
      };
    }
  }
}

describe('faults: abandoned connections on the Workload API socket', function () {
  this.timeout(200_000);
  let server: TestServer;
  let agent: AgentProcess;
  let workloadId: string;

  before(async () => {
    server = await startTestServer({}, { logLevel: 'info' });
    agent = await spawnAgent(server);
    workloadId = `spiffe://${server.trustDomain}/conn/workload`;
    await server.admin.call('CreateEntry', { spiffe_id: workloadId, parent_id: agent.id, selectors: [{ type: 'unix', value: 'uid:0' }] });
    await waitForServedIds(agent.socket, [workloadId]);
  });

  after(async () => {
    await agent?.stop();
    await server?.stop();
  });

  it(`stays responsive through ${TOTAL} abandoned connections, then drops them all and returns to its memory baseline`, async () => {
    // Warm-up, so that the baseline includes what any served connection allocates once.
    for (let i = 0; i < 4; i++) await Promise.all(STYLES.map(async (style) => (await openAbandoned(agent.socket, style))()));
    const warm = connectWorkloadApi({ kind: 'unix', path: agent.socket });
    for (let i = 0; i < 20; i++) await warm.fetchX509(5000);
    warm.close();
    assert.ok(await until(() => openConnections(agent.socket) === 0, 5000), 'warm-up connections closed');
    await new Promise((r) => setTimeout(r, 1000));
    const baseline = agent.rssKib();

    // The well-behaved client: one connection, a fetch every 50 ms, each timed.
    const probe = connectWorkloadApi({ kind: 'unix', path: agent.socket });
    const latencies: number[] = [];
    const failures: string[] = [];
    let probing = true;
    const prober = (async () => {
      while (probing) {
        const started = performance.now();
        try {
          const res = await probe.fetchX509(PROBE_BOUND_MS);
          if (res.svids[0]?.spiffe_id !== workloadId) failures.push(`wrong identity ${res.svids[0]?.spiffe_id}`);
        } catch (err) {
          failures.push(String(err));
        }
        latencies.push(performance.now() - started);
        await new Promise((r) => setTimeout(r, 50));
      }
    })();

    let peakConnections = 0;
    let peakRss = baseline;
    const started = performance.now();
    for (let opened = 0; opened < TOTAL; opened += BURST) {
      const abandon = await Promise.all(Array.from({ length: BURST }, (_, i) => openAbandoned(agent.socket, STYLES[i % STYLES.length]!)));
      await new Promise((r) => setTimeout(r, 100));
      peakConnections = Math.max(peakConnections, openConnections(agent.socket));
      peakRss = Math.max(peakRss, agent.rssKib());
      for (const a of abandon) a();
    }
    const burstSeconds = (performance.now() - started) / 1000;
    probing = false;
    await prober;
    probe.close();

    const sorted = [...latencies].sort((a, b) => a - b);
    const p99 = sorted[Math.floor(sorted.length * 0.99)] ?? 0;
    const max = sorted.at(-1) ?? 0;
    assert.deepEqual(failures, [], 'every probe got its SVID');
    assert.ok(latencies.length >= 10, `only ${latencies.length} probes ran`);
    assert.ok(max < PROBE_BOUND_MS, `slowest probe ${max.toFixed(0)} ms`);
    assert.ok(peakConnections >= BURST / 2, `the bursts really held connections open (peak ${peakConnections})`);

    assert.ok(await until(() => openConnections(agent.socket) === 0, 10_000), `${openConnections(agent.socket)} connections still open on the agent side`);
    // The agent is idle now: V8's memory reducer collects and returns the memory within about a
    // minute or so (measured: 25-61 s after a burst like this one); nothing forces it from outside.
    const idleSince = performance.now();
    let rss = agent.rssKib();
    await until(() => (rss = agent.rssKib()) <= baseline + RSS_MARGIN_KIB, RSS_WAIT_MS);
    const settleSeconds = (performance.now() - idleSince) / 1000;
    process.stdout.write(
      `      ${TOTAL} connections in ${burstSeconds.toFixed(1)} s; probes ${latencies.length}, p99 ${p99.toFixed(1)} ms, max ${max.toFixed(1)} ms; ` +
        `peak ${peakConnections} open; agent RSS ${(baseline / 1024).toFixed(0)} MiB -> peak ${(peakRss / 1024).toFixed(0)} MiB -> ${(rss / 1024).toFixed(0)} MiB after ${settleSeconds.toFixed(0)} s idle\n`,
    );
    assert.ok(rss <= baseline + RSS_MARGIN_KIB, `agent RSS ${rss} KiB, baseline ${baseline} KiB (+${RSS_MARGIN_KIB} KiB allowed)`);
    assert.ok(agent.alive());
    assert.doesNotMatch(agent.stderr(), /"level":(50|60)/, 'the agent logged no error');
  });
});
