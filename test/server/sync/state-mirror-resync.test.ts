// When the change log has been pruned past the mirror's revision (the server was far behind), the
// mirror must rebuild from the tables rather than skip the lost events.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { silentLogger } from '../../../src/common/logger.js';
import { openDatastore } from '../../../src/server/datastore/open.js';
import type { ChangeEvent, Datastore } from '../../../src/server/datastore/types.js';
import { createStateMirror } from '../../../src/server/sync/state-mirror.js';
import { agent, newEntry, TD } from '../datastore/fixtures.js';

/** The real store, with change notifications held back until release() (the mirror falls behind). */
function withHeldNotifications(store: Datastore): { store: Datastore; hold(): void; release(): void } {
  const listeners: ((rev: number) => void)[] = [];
  let held = false;
  store.onChange((rev) => {
    if (!held) for (const l of listeners) l(rev);
  });
  const wrapped = Object.create(store) as Datastore;
  wrapped.onChange = (l) => {
    listeners.push(l);
    return () => listeners.splice(listeners.indexOf(l), 1);
  };
  return {
    store: wrapped,
    hold: () => {
      held = true;
    },
    release: () => {
      held = false;
      void store.currentRevision().then((rev) => listeners.forEach((l) => l(rev)));
    },
  };
}

describe('state mirror resync after change-log pruning', () => {
  let dir: string;
  let store: Datastore;

  beforeEach(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mirror-resync-'));
    store = await openDatastore({ kind: 'level', dataDir: dir, changeLogRetention: 10 });
  });
  afterEach(async () => {
    await store.close();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('rebuilds from the tables and reports what changed', async () => {
    for (let i = 0; i < 5; i++) await store.createEntry(newEntry(i));
    await store.putAgent(agent(1));
    const held = withHeldNotifications(store);
    const mirror = createStateMirror(held.store, { logger: silentLogger(), trustDomain: TD });
    await mirror.start();
    const seen: ChangeEvent[] = [];
    mirror.onApplied((applied) => seen.push(...applied));

    held.hold();
    const removed = await store.deleteEntry(newEntry(0).id);
    for (let i = 5; i < 40; i++) await store.createEntry(newEntry(i));
    await store.putAgent({ ...agent(1), banned: true });
    await assert.rejects(store.listChanges(mirror.revision(), 10), /too old/);

    held.release();
    await mirror.waitForRevision(await store.currentRevision());
    assert.equal(mirror.entryCount(), 39);
    assert.equal(mirror.getEntry(removed.id), undefined);
    assert.equal(mirror.getAgent(agent(1).id)?.banned, true);
    const entryEvents = seen.filter((e) => e.kind === 'entry');
    assert.equal(entryEvents.length, 36, 'one event per entry that differs (35 created, 1 deleted)');
    assert.ok(entryEvents.some((e) => e.id === removed.id && e.deleted));
    assert.ok(seen.some((e) => e.kind === 'agent' && e.id === agent(1).id));
    await mirror.stop();
  });
});
