// B3's ban measurement, shared by the scenarios that hold open streams on one agent.
import type { AdminClient } from '../../src/server/cli/admin-client.js';
import { banAgent } from './admin-ops.js';
import { epochMs } from './stats.js';
import type { WorkloadFleet } from './workload-fleet.js';

/**
 * Bans `agentId` and returns, per stream in `fleet`, the milliseconds from just before the BanAgent
 * call until that stream lost `ids[i]`: the stream ended, or a message without the SVID arrived.
 */
export async function banAndTimeSvidsGone(admin: AdminClient, agentId: string, fleet: WorkloadFleet, ids: readonly string[]): Promise<number[]> {
  const t0 = epochMs();
  await banAgent(admin, agentId);
  return Promise.all(
    ids.map(async (id, i) => {
      const [lost] = await Promise.race([
        fleet.ends([i], 30_000),
        fleet.arrivals((m) => !m.ids.includes(id), { since: t0, indices: [i], timeoutMs: 30_000 }),
      ]);
      return lost! - t0;
    }),
  );
}
