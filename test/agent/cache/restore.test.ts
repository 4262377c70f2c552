import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { restoreCache } from '../../../src/agent/cache/restore.js';
import { SvidCache } from '../../../src/agent/cache/svid-cache.js';
import { ServerClient } from '../../../src/agent/client/server-client.js';
import { SvidMinter } from '../../../src/agent/rotation/svid-minter.js';
import { openAgentStore } from '../../../src/agent/storage/agent-store.js';
import { SyncClient } from '../../../src/agent/sync/sync-client.js';
import { encodeSpiffeBundle } from '../../../src/common/bundle-json.js';
import { AGENT_ID, createTestPki, entryMsg, eventually, NodeApiDouble, syncUpdate, TD } from '../client/node-api-double.js';

describe('restart with the server down', () => {
  it('serves the persisted entries, bundle and SVIDs at once', async () => {
    const pki = createTestPki();
    const dir = mkdtempSync(join(tmpdir(), 'emblem-restart-'));
    const agent = pki.identity(AGENT_ID);
    const double = await NodeApiDouble.start({ pki });
    double.signable.set('a', `spiffe://${TD}/workload/a`);
    double.onSync = (_req, stream) =>
      stream.write(syncUpdate({ revision: 9, full: true, entries: [entryMsg({ id: 'a' })], bundle: Buffer.from(encodeSpiffeBundle(pki.bundle)) }));

    // First life: sync and mint through the (double) server.
    let store = await openAgentStore({ dataDir: dir, trustDomain: TD });
    const client = new ServerClient({ serverAddress: double.address, trustDomain: TD, bootstrapAnchors: [pki.caDer] });
    client.setAgentSvid({ chain: agent.chain, privateKey: agent.privateKey });
    const cache = new SvidCache();
    const minter = new SvidMinter({ cache, store, signer: client });
    const sync = new SyncClient({
      trustDomain: TD,
      transport: client,
      cache,
      store,
      onApplied: (u) => minter.handleSync(u.result, u.taintedAuthorityIds),
      onTerminated: () => assert.fail('not terminated'),
    });
    minter.start();
    sync.start();
    try {
      await eventually(() => cache.x509Identity('a') !== undefined, 5000, 'minted SVID');
      await minter.idle();
    } finally {
      sync.stop();
      minter.stop();
      client.close();
      await double.close();
      await store.close();
    }
    const served = cache.x509Identity('a')!;

    // Second life: the server is gone.
    store = await openAgentStore({ dataDir: dir, trustDomain: TD });
    try {
      const snapshot = await store.load();
      const restarted = new SvidCache();
      let notifications = 0;
      restarted.onChange(() => notifications++);
      restoreCache(restarted, snapshot);
      assert.equal(restarted.ready(), true);
      const [e] = restarted.entriesFor(new Set(['unix:uid:a']));
      assert.equal(e?.id, 'a');
      const identity = restarted.x509Identity('a')!;
      assert.ok(identity.chain[0]!.equals(served.chain[0]!));
      assert.ok(identity.privateKeyPkcs8.equals(served.privateKeyPkcs8));
      assert.equal(snapshot.revision, 9);
      await new Promise((r) => setImmediate(r));
      assert.equal(notifications, 1, 'one notification for the whole restore');
    } finally {
      await store.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
