import assert from 'node:assert/strict';
import * as grpc from '@grpc/grpc-js';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SvidCache } from '../../../src/agent/cache/svid-cache.js';
import { ServerClient } from '../../../src/agent/client/server-client.js';
import { openAgentStore, type AgentStore } from '../../../src/agent/storage/agent-store.js';
import { SyncClient, type AppliedUpdate } from '../../../src/agent/sync/sync-client.js';
import { encodeSpiffeBundle } from '../../../src/common/bundle-json.js';
import { AGENT_ID, createTestPki, entryMsg, eventually, NodeApiDouble, syncUpdate, TD } from '../client/node-api-double.js';

describe('sync client (real gRPC over mutual TLS)', () => {
  const pki = createTestPki();
  const agent = pki.identity(AGENT_ID);
  let dir: string;
  let double: NodeApiDouble;
  let client: ServerClient;
  let cache: SvidCache;
  let store: AgentStore;
  let sync: SyncClient;
  let applied: AppliedUpdate[];
  let terminated: { reason: string; message: string }[];

  async function startSync(initialRevision = 0): Promise<void> {
    sync = new SyncClient({
      trustDomain: TD,
      transport: client,
      cache,
      store,
      initialRevision,
      onApplied: (u) => applied.push(u),
      onTerminated: (reason, message) => terminated.push({ reason, message }),
      backoff: { initialMs: 20, maxMs: 200 },
    });
    sync.start();
  }

  beforeEach(async () => {
    dir = mkdtempSync(join(tmpdir(), 'emblem-sync-'));
    double = await NodeApiDouble.start({ pki });
    client = new ServerClient({ serverAddress: double.address, trustDomain: TD, bootstrapAnchors: [pki.caDer] });
    client.setAgentSvid({ chain: agent.chain, privateKey: agent.privateKey });
    cache = new SvidCache();
    store = await openAgentStore({ dataDir: dir, trustDomain: TD });
    applied = [];
    terminated = [];
  });
  afterEach(async () => {
    sync?.stop();
    client.close();
    await double.close();
    await store.close();
    rmSync(dir, { recursive: true, force: true });
  });

  const ids = (): string[] => cache.entries().map((e) => e.id).sort();

  it('applies a full set, then deltas and deletions, persisting each', async () => {
    double.onSync = (_req, stream) => stream.write(syncUpdate({ revision: 5, full: true, entries: [entryMsg({ id: 'a' }), entryMsg({ id: 'b' })], bundle: Buffer.from(encodeSpiffeBundle(pki.bundle)) }));
    await startSync();
    await eventually(() => applied.length === 1, 5000, 'full update');
    assert.deepEqual(ids(), ['a', 'b']);
    assert.ok(cache.ready());
    assert.deepEqual(double.syncRequests[0], { since_revision: 0, known_entries: [] });
    assert.deepEqual(double.clientIds, [AGENT_ID], 'the stream is authenticated with the agent SVID');

    double.push(syncUpdate({ revision: 6, entries: [entryMsg({ id: 'b', revision: 2, hint: 'new' }), entryMsg({ id: 'c' })] }));
    await eventually(() => applied.length === 2);
    assert.deepEqual(ids(), ['a', 'b', 'c']);
    assert.equal(cache.entry('b')?.hint, 'new');
    assert.deepEqual(applied[1]!.result.changed.map((e) => e.id).sort(), ['b', 'c']);

    double.push(syncUpdate({ revision: 7, deleted_entry_ids: ['a'], tainted_authority_ids: ['authority-1'] }));
    await eventually(() => applied.length === 3);
    assert.deepEqual(ids(), ['b', 'c']);
    assert.deepEqual(applied[2]!.result.removedIds, ['a']);
    assert.deepEqual(applied[2]!.taintedAuthorityIds, ['authority-1']);
    assert.equal(sync.appliedRevision, 7);

    double.push(syncUpdate({ revision: 8, full: true, entries: [entryMsg({ id: 'z' })] }));
    await eventually(() => applied.length === 4);
    assert.deepEqual(ids(), ['z']);

    const persisted = await store.load();
    assert.equal(persisted.revision, 8);
    assert.deepEqual(persisted.entries.map((e) => e.id), ['z']);
    assert.ok(persisted.bundle?.x509Authorities[0]!.equals(pki.caDer));
  });

  it('takes new bundles (own and federated) and reconnects from the applied revision on a new channel', async () => {
    double.onSync = (req, stream) => {
      if (req.since_revision === 0) stream.write(syncUpdate({ revision: 3, full: true, entries: [entryMsg({ id: 'a', revision: 2 })] }));
    };
    await startSync();
    await eventually(() => applied.length === 1);
    const extraCa = createTestPki().caDer;
    const rotated = { ...pki.bundle, x509Authorities: [pki.caDer, extraCa], sequence: 2 };
    const partner = createTestPki('partner.org').bundle;
    double.push(
      syncUpdate({
        revision: 4,
        bundle: Buffer.from(encodeSpiffeBundle(rotated)),
        federated_changed: true,
        federated_bundles: { 'partner.org': Buffer.from(encodeSpiffeBundle(partner)) },
      }),
    );
    await eventually(() => applied.length === 2);
    assert.equal(cache.bundle()?.sequence, 2);
    assert.deepEqual([...cache.federatedBundles().keys()], ['partner.org']);
    await double.waitForSyncCalls(2);
    assert.deepEqual(double.syncRequests[1], { since_revision: 4, known_entries: [{ id: 'a', revision: 2 }] });
    const persisted = await store.load();
    assert.equal(persisted.bundle?.x509Authorities.length, 2);
    assert.ok(persisted.federatedBundles.has('partner.org'));
  });

  it('stops, wipes and reports when the agent is banned (update then PERMISSION_DENIED)', async () => {
    double.onSync = (_req, stream) => stream.write(syncUpdate({ revision: 1, full: true, entries: [entryMsg({ id: 'a' })], bundle: Buffer.from(encodeSpiffeBundle(pki.bundle)) }));
    await startSync();
    await eventually(() => applied.length === 1);
    for (const s of double.streams) {
      s.write(syncUpdate({ revision: 2, agent_state: 'AGENT_STATE_BANNED' }));
      setImmediate(() => s.emit('error', { code: grpc.status.PERMISSION_DENIED, details: 'agent is banned' }));
    }
    await eventually(() => terminated.length > 0);
    await new Promise((r) => setTimeout(r, 50));
    assert.equal(terminated.length, 1);
    assert.equal(terminated[0]!.reason, 'banned');
    assert.match(terminated[0]!.message, /banned/);
    assert.equal(cache.ready(), false);
    assert.deepEqual(cache.entries(), []);
    const persisted = await store.load();
    assert.deepEqual(persisted.entries, []);
    assert.equal(persisted.bundle, undefined);
    assert.equal(double.syncRequests.length, 1, 'no reconnect after termination');
  });

  it('stops when the server answers PERMISSION_DENIED "evicted"', async () => {
    double.onSync = (_req, stream) => setImmediate(() => stream.emit('error', { code: grpc.status.PERMISSION_DENIED, details: 'agent is evicted or was never attested' }));
    await startSync();
    await eventually(() => terminated.length > 0);
    assert.equal(terminated[0]!.reason, 'evicted');
  });

  it('keeps serving while the server is away and resumes exactly when it returns', async () => {
    double.onSync = (req, stream) => {
      if (req.since_revision === 0) stream.write(syncUpdate({ revision: 10, full: true, entries: [entryMsg({ id: 'a', revision: 4 })] }));
    };
    await startSync();
    await eventually(() => applied.length === 1);
    const port = double.port;
    await double.close();
    await new Promise((r) => setTimeout(r, 300));
    assert.deepEqual(ids(), ['a'], 'the cache keeps serving while disconnected');
    assert.equal(sync.connected, false);

    double = await NodeApiDouble.start({ pki, port });
    double.onSync = (req, stream) => stream.write(syncUpdate({ revision: req.since_revision + 1, entries: [entryMsg({ id: 'b' })] }));
    await double.waitForSyncCalls(1, 10_000);
    assert.deepEqual(double.syncRequests[0], { since_revision: 10, known_entries: [{ id: 'a', revision: 4 }] });
    await eventually(() => applied.length === 2);
    assert.deepEqual(ids(), ['a', 'b']);
    assert.equal(sync.appliedRevision, 11);
    assert.equal(sync.connected, true);
  });

  it('backs off between failed attempts', async () => {
    double.onSync = (_req, stream) => setImmediate(() => stream.emit('error', { code: grpc.status.UNAVAILABLE, details: 'try later' }));
    await startSync();
    const started = Date.now();
    await double.waitForSyncCalls(5, 10_000);
    const elapsed = Date.now() - started;
    // Delays for attempts 0..3 are at least 10 + 20 + 40 + 80 ms (half of each base, equal jitter).
    assert.ok(elapsed >= 150, `5 attempts took only ${elapsed} ms`);
    assert.equal(terminated.length, 0);
  });
});
