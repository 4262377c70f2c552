// B2 and B3: how fast a registration change, and a ban, reach FetchX509SVID streams that are
// already open. One real agent; N simulated workloads (distinct uids) each hold one stream and
// one base entry (selector unix:uid:<uid>). Then, one at a time, for workload k:
//   B2  CreateEntry (Admin API, what `emblem-server entry create` calls) of a second entry for k
//       -> the response on k's stream that carries the new SPIFFE ID;
//   B3  DeleteEntry of that entry -> the response on k's stream without it;
// and finally BanAgent -> every stream ended (or without its SVID).
// Times run from just before the Admin call to the arrival of the message in the workload
// process (both clocks are this machine's wall clock, read with performance.timeOrigin + now()).
import { createEntries, createEntry, createJoinTokens, deleteEntry } from '../lib/admin-ops.js';
import { startAgentProcess } from '../lib/agent-process.js';
import { banAndTimeSvidsGone } from '../lib/ban.js';
import { startServerProcess } from '../lib/server-process.js';
import { epochMs, median, progress, quantile, round, sleep } from '../lib/stats.js';
import { FIRST_WORKLOAD_UID, startWorkloadFleet } from '../lib/workload-fleet.js';
import type { BenchOptions, Figure } from '../run.js';

/** Pause between samples, so each change is measured on a quiet system. */
const GAP_MS = 20;

export async function run(opts: BenchOptions): Promise<Figure[]> {
  const n = opts.quick ? 20 : 200;
  const server = await startServerProcess();
  const cleanups: (() => Promise<void>)[] = [() => server.dispose()];
  try {
    const [token] = await createJoinTokens(server.admin, 1);
    const agent = await startAgentProcess(server, token!);
    cleanups.push(() => agent.dispose());
    const uid = (k: number) => FIRST_WORKLOAD_UID + k;
    const td = server.trustDomain;
    await createEntries(
      server.admin,
      Array.from({ length: n }, (_, k) => ({ spiffeId: `spiffe://${td}/b2/base-${k}`, parentId: agent.id, selectors: [`unix:uid:${uid(k)}`] })),
    );
    await agent.waitForSvids(n, 60_000);
    const fleet = await startWorkloadFleet(Array.from({ length: n }, (_, k) => ({ socket: agent.socket, uid: uid(k) })));
    cleanups.push(() => fleet.close());
    await fleet.arrivals((m) => m.ids.length === 1, { timeoutMs: 60_000 });
    progress(`B2: ${n} streams open`);

    const created: number[] = [];
    const entryIds: string[] = [];
    for (let k = 0; k < n; k++) {
      const extra = `spiffe://${td}/b2/extra-${k}`;
      await sleep(GAP_MS);
      const t0 = epochMs();
      entryIds.push(await createEntry(server.admin, { spiffeId: extra, parentId: agent.id, selectors: [`unix:uid:${uid(k)}`] }));
      const [at] = await fleet.arrivals((m) => m.ids.includes(extra), { since: t0, indices: [k], timeoutMs: 10_000 });
      created.push(at! - t0);
    }
    progress('B2: entries created');
    const deleted: number[] = [];
    for (let k = 0; k < n; k++) {
      const extra = `spiffe://${td}/b2/extra-${k}`;
      await sleep(GAP_MS);
      const t0 = epochMs();
      await deleteEntry(server.admin, entryIds[k]!);
      const [at] = await fleet.arrivals((m) => !m.ids.includes(extra), { since: t0, indices: [k], timeoutMs: 10_000 });
      deleted.push(at! - t0);
    }
    // B3 (ban): every stream still holds its base entry's SVID until the agent is banned.
    await sleep(500);
    const gone = await banAndTimeSvidsGone(server.admin, agent.id, fleet, Array.from({ length: n }, (_, k) => `spiffe://${td}/b2/base-${k}`));
    return [
      { name: 'b2_entry_created_to_stream_p50', value: round(median(created), 1), unit: `ms (${n} entries)` },
      { name: 'b2_entry_created_to_stream_p99', value: round(quantile(created, 0.99), 1), unit: 'ms', target: '<= 100', pass: quantile(created, 0.99) <= 100 },
      { name: 'b3_entry_deleted_to_svid_gone_p50', value: round(median(deleted), 1), unit: `ms (${n} entries)` },
      { name: 'b3_entry_deleted_to_svid_gone_p99', value: round(quantile(deleted, 0.99), 1), unit: 'ms', target: '<= 100', pass: quantile(deleted, 0.99) <= 100 },
      { name: 'b3_ban_to_svid_gone_p50', value: round(median(gone), 1), unit: `ms (${n} streams)` },
      { name: 'b3_ban_to_svid_gone_p99', value: round(quantile(gone, 0.99), 1), unit: `ms (${n} streams)`, target: '<= 100', pass: quantile(gone, 0.99) <= 100 },
    ];
  } finally {
    for (const c of cleanups.reverse()) await c().catch((err: unknown) => console.error(err));
  }
}
