// B7 and B6 on one server holding E registration entries (100,000) for A agents (1,000).
//   B7  cold start: SIGTERM, then `emblem-server run` again on the same data dir; time from spawn
//       to the "emblem-server ready" log line (median of several restarts). Includes starting Node
//       and loading the TypeScript through tsx, which the empty-datastore start shows on its own.
//   B6  A simulated agents (join-token attestation, then SyncEntries kept open, E/A entries each)
//       connected and nothing changing: datastore reads per second from the server's own
//       emblem_server_datastore_operations_total counter (scraped from /metrics before and after),
//       and the server's CPU time from /proc/<pid>/stat over the quiet window.
import { createEntries, createJoinTokens, scrapeSum } from '../lib/admin-ops.js';
import { startCpuSample } from '../lib/proc-stats.js';
import { startServerProcess } from '../lib/server-process.js';
import { attestSimAgents, followSync, type SimAgent } from '../lib/sim-agents.js';
import { median, progress, round, sleep, waitUntil } from '../lib/stats.js';
import type { BenchOptions, Figure } from '../run.js';

const OPS = 'emblem_server_datastore_operations_total';

export async function run(opts: BenchOptions): Promise<Figure[]> {
  const agents = opts.quick ? 20 : 1000;
  const perAgent = opts.quick ? 50 : 100;
  const quietSeconds = opts.quick ? 3 : 60;
  const restarts = opts.quick ? 1 : 3;
  const figures: Figure[] = [];
  const server = await startServerProcess();
  const emptyStartMs = server.startupMs;
  let sims: SimAgent[] = [];
  try {
    const tokens = await createJoinTokens(server.admin, agents, 7200);
    const td = server.trustDomain;
    const specs = tokens.flatMap((t, a) =>
      Array.from({ length: perAgent }, (_, k) => ({ spiffeId: `spiffe://${td}/b6/agent-${a}/w-${k}`, parentId: t.agentId, selectors: [`unix:uid:${10_000 + k}`] })),
    );
    const createStarted = performance.now();
    await createEntries(server.admin, specs, 48);
    progress(`B6/B7: ${specs.length} entries created in ${round((performance.now() - createStarted) / 1000)} s`);

    const startups: number[] = [];
    for (let i = 0; i < restarts; i++) {
      await server.restart();
      startups.push(server.startupMs);
    }
    const coldMs = median(startups);
    figures.push(
      { name: 'b7_cold_start_empty', value: round(emptyStartMs, 0), unit: 'ms (no entries: Node start + server start)' },
      { name: 'b7_cold_start', value: round(coldMs, 0), unit: `ms (${specs.length} entries, median of ${restarts})`, target: '<= 3000', pass: coldMs <= 3000 },
    );

    const attestStarted = performance.now();
    sims = await attestSimAgents(server, tokens, 32);
    const followers = sims.map(followSync);
    await Promise.all(followers.map((f) => f.first));
    await waitUntil(() => followers.every((f) => f.entries === perAgent), 60_000, 'every agent to hold its entries');
    progress(`B6: ${sims.length} agents attested and synced in ${round((performance.now() - attestStarted) / 1000)} s`);
    await sleep(opts.quick ? 1000 : 5000); // let the attestation burst settle

    const reads0 = await scrapeSum(server.metricsUrl, OPS, { kind: 'read' });
    const writes0 = await scrapeSum(server.metricsUrl, OPS, { kind: 'write' });
    const cpu = startCpuSample(server.pid);
    await sleep(quietSeconds * 1000);
    const usage = cpu.stop();
    const reads = (await scrapeSum(server.metricsUrl, OPS, { kind: 'read' })) - reads0;
    const writes = (await scrapeSum(server.metricsUrl, OPS, { kind: 'write' })) - writes0;
    if (followers.some((f) => f.error)) throw new Error(`a sync stream failed: ${followers.find((f) => f.error)!.error!.message}`);
    const readRate = reads / usage.wallSeconds;
    const cpuPercent = usage.coreFraction * 100;
    figures.push(
      { name: 'b6_quiet_datastore_reads_per_second', value: round(readRate, 2), unit: `reads/s (${agents} agents, ${specs.length} entries, ${quietSeconds} s)`, target: '0', pass: reads === 0 },
      { name: 'b6_quiet_datastore_writes_per_second', value: round(writes / usage.wallSeconds, 2), unit: 'writes/s' },
      { name: 'b6_quiet_server_cpu', value: round(cpuPercent, 2), unit: '% of one core', target: '< 5', pass: cpuPercent < 5 },
    );
    return figures;
  } finally {
    for (const s of sims) s.close();
    await server.dispose();
  }
}
