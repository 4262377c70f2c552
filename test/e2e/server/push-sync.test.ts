// Push sync against a real server: a connected SyncEntries stream receives created, updated and
// deleted entries as they happen (create -> receive latency measured over 200 admin creates), only
// its own, and resumes exactly from known_entries after a reconnect.
import assert from 'node:assert/strict';
import type { EntryMsg, SyncEntriesUpdateMsg } from '../../../src/agent/client/messages.js';
import { attestWithJoinToken, startTestServer, recordSync, type TestAgent, type TestServer } from '../../helpers/server-harness.js';

const CREATES = 200;

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)]!;
}

/** The agent-side view of what a stream delivered: entry ID -> revision. */
function applyUpdates(state: Map<string, number>, updates: readonly SyncEntriesUpdateMsg[]): number {
  let revision = 0;
  for (const u of updates) {
    if (u.full) state.clear();
    for (const e of u.entries) state.set(e.id, e.revision);
    for (const id of u.deleted_entry_ids) state.delete(id);
    revision = Math.max(revision, u.revision);
  }
  return revision;
}

describe('e2e: push sync of entries', function () {
  this.timeout(30_000);
  let server: TestServer;
  let a: TestAgent;
  let b: TestAgent;

  const create = (agent: TestAgent, path: string, extra: Record<string, unknown> = {}) =>
    server.admin.call<EntryMsg>('CreateEntry', { spiffe_id: `spiffe://${server.trustDomain}${path}`, parent_id: agent.id, selectors: [{ type: 'unix', value: 'uid:1' }], ...extra });

  before(async () => {
    server = await startTestServer({}, { logLevel: 'info' });
    a = await attestWithJoinToken(server);
    b = await attestWithJoinToken(server);
  });

  after(async () => {
    a?.close();
    b?.close();
    await server?.stop();
  });

  it(`delivers each created entry to the connected agent (latency over ${CREATES} creates), and only to it`, async () => {
    const sent = new Map<string, number>();
    const latencies: number[] = [];
    const foreign: string[] = [];
    const sync = recordSync(a.client.syncEntries({ since_revision: 0, known_entries: [] }), (u, at) => {
      for (const e of u.entries) {
        const t0 = sent.get(e.spiffe_id);
        if (t0 !== undefined && !u.full) {
          latencies.push(at - t0);
          sent.delete(e.spiffe_id);
        }
        if (e.parent_id !== a.id) foreign.push(e.id);
      }
    });
    try {
      await sync.waitFor((u) => u.full);
      for (let i = 0; i < CREATES; i++) {
        const path = `/latency/${i}`;
        sent.set(`spiffe://${server.trustDomain}${path}`, performance.now());
        await create(a, path);
        if (i % 50 === 0) await create(b, `/not-for-a/${i}`);
      }
      const all = await sync.waitFor(() => latencies.length === CREATES, 5000).then(() => true, () => false);
      assert.ok(all, `received ${latencies.length} of ${CREATES} created entries`);
      assert.deepEqual(foreign, [], 'the stream carries only entries authorised for its agent');
      const sorted = [...latencies].sort((x, y) => x - y);
      const p50 = percentile(sorted, 50);
      const p99 = percentile(sorted, 99);
      console.log(`      push sync create->receive over ${CREATES} creates: p50 ${p50.toFixed(2)} ms, p99 ${p99.toFixed(2)} ms, max ${sorted.at(-1)!.toFixed(2)} ms`);
      assert.ok(p99 < 250, `p99 ${p99.toFixed(1)} ms`);
    } finally {
      sync.cancel();
    }
  });

  it('delivers updates and deletions', async () => {
    const entry = await create(a, '/changing');
    const sync = recordSync(a.client.syncEntries({ since_revision: 0, known_entries: [] }));
    try {
      await sync.waitFor((u) => u.full && u.entries.some((e) => e.id === entry.id));
      const updated = await server.admin.call<EntryMsg>('UpdateEntry', { ...entry, hint: 'x' });
      assert.ok(updated.revision > entry.revision);
      const got = await sync.waitFor((u) => u.entries.some((e) => e.id === entry.id && e.hint === 'x'));
      assert.equal(got.full, false);
      assert.equal(got.entries.find((e) => e.id === entry.id)!.revision, updated.revision);

      await server.admin.call('DeleteEntry', { id: entry.id });
      const gone = await sync.waitFor((u) => u.deleted_entry_ids.includes(entry.id));
      assert.equal(gone.full, false);
      assert.deepEqual(gone.entries, []);
    } finally {
      sync.cancel();
    }
  });

  it('resumes exactly after a reconnect: only what changed meanwhile, by known_entries', async () => {
    const keep = await create(a, '/resume/keep');
    const change = await create(a, '/resume/change');
    const drop = await create(a, '/resume/drop');
    const state = new Map<string, number>();
    const first = recordSync(a.client.syncEntries({ since_revision: 0, known_entries: [] }));
    await first.waitFor((u) => u.full);
    const revision = applyUpdates(state, first.updates.map((x) => x.update));
    first.cancel();
    await first.ended;
    assert.equal(state.get(keep.id), keep.revision);

    // While the agent is away.
    const added = await create(a, '/resume/added');
    const changed = await server.admin.call<EntryMsg>('UpdateEntry', { ...change, hint: 'changed while away' });
    await server.admin.call('DeleteEntry', { id: drop.id });
    await create(b, '/resume/other-agent');

    const known = [...state].map(([id, rev]) => ({ id, revision: rev }));
    const second = recordSync(a.client.syncEntries({ since_revision: revision, known_entries: known }));
    try {
      const delta = await second.waitFor(() => true);
      assert.equal(delta.full, false);
      assert.deepEqual(delta.entries.map((e) => e.id).sort(), [added.id, changed.id].sort());
      assert.deepEqual(delta.deleted_entry_ids, [drop.id]);
      applyUpdates(state, [delta]);

      const truth = await server.admin.call<{ entries: EntryMsg[] }>('ListEntries', { parent_id: a.id, page_size: 0 });
      assert.deepEqual(new Map(truth.entries.map((e) => [e.id, e.revision])), state);
    } finally {
      second.cancel();
    }
  });
});
