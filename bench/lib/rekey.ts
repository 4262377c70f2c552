// B5 and B9's re-key measurement: a new X.509 authority is prepared and activated (every stream
// first receives the new bundle), then the old one is tainted and the clock starts: every agent
// must re-key every SVID the tainted authority signed, and every stream must receive its new one.
import type { AdminClient } from '../../src/server/cli/admin-client.js';
import { rotateX509Authority, taintAuthority } from './admin-ops.js';
import { epochMs, sleep } from './stats.js';
import type { StreamMessage, WorkloadFleet } from './workload-fleet.js';

/**
 * Returns, per stream, the milliseconds from just before the TaintAuthority call until the stream
 * received a message that `own` accepts and whose first SVID differs from the one it held before.
 */
export async function taintAndTimeRekey(admin: AdminClient, fleet: WorkloadFleet, own: (m: StreamMessage, i: number) => boolean): Promise<number[]> {
  const before = fleet.streams.map((s) => s.messages[s.messages.length - 1]?.fps[0]);
  const prepared = epochMs();
  const { oldId } = await rotateX509Authority(admin);
  await fleet.arrivals(() => true, { since: prepared, timeoutMs: 30_000 });
  await sleep(500);
  const t0 = epochMs();
  await taintAuthority(admin, oldId);
  const rekeyed = await fleet.arrivals((m, i) => own(m, i) && m.fps[0] !== before[i], { since: t0, timeoutMs: 60_000 });
  return rekeyed.map((at) => at - t0);
}
