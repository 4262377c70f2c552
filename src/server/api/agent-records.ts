// Every write of an agent record (attestation, renewal, renewal confirmation, ban, eviction) goes
// through here: one at a time per agent, each re-reading the stored record first. Without this a
// renewal that read the record before a ban (or an eviction) and wrote after it silently undid the
// ban (or brought the evicted agent back), because Datastore.putAgent replaces the whole record.
// The lock is per datastore object, so every service of one server shares it; a datastore shared by
// several servers would need the same check as a conditional write inside the store.
import type { AgentRecord, Datastore } from '../datastore/types.js';

const queues = new WeakMap<Datastore, Map<string, Promise<unknown>>>();

async function serialised<T>(datastore: Datastore, id: string, task: () => Promise<T>): Promise<T> {
  let perAgent = queues.get(datastore);
  if (!perAgent) queues.set(datastore, (perAgent = new Map()));
  const previous = perAgent.get(id) ?? Promise.resolve();
  const run = previous.then(task, task);
  const settled = run.catch(() => undefined);
  perAgent.set(id, settled);
  void settled.then(() => {
    if (perAgent.get(id) === settled) perAgent.delete(id);
  });
  return run;
}

/**
 * Reads the stored record of `id` (undefined if there is none), lets `change` decide, and stores what
 * it returns (nothing when it returns undefined). `change` may throw to refuse; nothing is written then.
 */
export function updateAgentRecord(
  datastore: Datastore,
  id: string,
  change: (current: AgentRecord | undefined) => Promise<AgentRecord | undefined> | AgentRecord | undefined,
): Promise<AgentRecord | undefined> {
  return serialised(datastore, id, async () => {
    const next = await change(await datastore.getAgent(id));
    if (next) await datastore.putAgent(next);
    return next;
  });
}

/** Datastore.deleteAgent in turn with the other writes of the same agent. */
export function deleteAgentRecord(datastore: Datastore, id: string): Promise<void> {
  return serialised(datastore, id, () => datastore.deleteAgent(id));
}
