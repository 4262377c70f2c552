import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Level } from 'level';
import { encodeEntry } from '../../../src/server/datastore/level/codec.js';
import { entryKey } from '../../../src/server/datastore/level/keys.js';
import { openDatastore } from '../../../src/server/datastore/open.js';
import type { Datastore } from '../../../src/server/datastore/types.js';
import { newEntry, rejectsWith } from './fixtures.js';
import { datastoreSuite } from './suite.js';

function tempDir(): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), 'emblem-ds-'));
}

datastoreSuite('level', async () => {
  const dataDir = tempDir();
  let current: Datastore = await openDatastore({ kind: 'level', dataDir });
  return {
    store: current,
    reopen: async () => {
      await current.close();
      current = await openDatastore({ kind: 'level', dataDir });
      return current;
    },
    cleanup: async () => {
      await current.close();
      fs.rmSync(dataDir, { recursive: true, force: true });
    },
  };
});

describe('level datastore', () => {
  let dataDir: string;
  const toClose: Datastore[] = [];

  beforeEach(() => {
    dataDir = tempDir();
  });
  afterEach(async () => {
    for (const store of toClose.splice(0)) await store.close();
    fs.rmSync(dataDir, { recursive: true, force: true });
  });

  async function open(changeLogRetention?: number): Promise<Datastore> {
    const store = await openDatastore({ kind: 'level', dataDir, changeLogRetention });
    toClose.push(store);
    return store;
  }

  it('creates <dataDir>/datastore with mode 0700', async () => {
    await open();
    assert.equal(fs.statSync(path.join(dataDir, 'datastore')).mode & 0o777, 0o700);
  });

  it('refuses a second open of the same data directory with a clear error', async () => {
    await open();
    await rejectsWith(
      openDatastore({ kind: 'level', dataDir }),
      'failed_precondition',
      new RegExp(`data directory ${dataDir} is in use by another emblem-server process`),
    );
  });

  it('close is idempotent and waits for queued writes', async () => {
    const store = await openDatastore({ kind: 'level', dataDir });
    const writes = Array.from({ length: 20 }, (_, i) => store.createEntry(newEntry(i)));
    await store.close();
    await store.close();
    await Promise.all(writes);
    const reopened = await open();
    assert.equal((await reopened.listAllEntries()).length, 20);
  });

  it('prunes the change log to its retention and tells callers who are too far behind', async () => {
    const store = await open(5);
    for (let n = 0; n < 12; n++) await store.createEntry(newEntry(n));
    assert.equal(await store.currentRevision(), 12);
    assert.equal(await store.oldestRetainedRevision(), 8);
    assert.deepEqual((await store.listChanges(7, 100)).map((e) => e.revision), [8, 9, 10, 11, 12]);
    await rejectsWith(store.listChanges(6, 100), 'failed_precondition', /too old/);
    await rejectsWith(store.listChanges(0, 100), 'failed_precondition');

    await store.close();
    toClose.length = 0;
    const reopened = await open(5);
    assert.equal(await reopened.currentRevision(), 12);
    assert.equal(await reopened.oldestRetainedRevision(), 8);
    assert.equal((await reopened.createEntry(newEntry(99))).revision, 13);
    assert.equal(await reopened.oldestRetainedRevision(), 9);
  });

  it('groups concurrent writes: 5,000 concurrent creates', async () => {
    const store = await open();
    const t0 = performance.now();
    const created = await Promise.all(Array.from({ length: 5000 }, (_, i) => store.createEntry(newEntry(i))));
    const ms = performance.now() - t0;
    assert.deepEqual(
      created.map((e) => e.revision).sort((a, b) => a - b),
      Array.from({ length: 5000 }, (_, i) => i + 1),
    );
    console.log(`      5,000 concurrent createEntry: ${ms.toFixed(0)} ms (${Math.round((5000 / ms) * 1000)}/s)`);
  });

  it('lists 100,000 entries quickly', async () => {
    // Filled through the raw database (sync off) to keep the test short; the store then opens it.
    const total = 100_000;
    const raw = new Level<string, string>(path.join(dataDir, 'datastore'), { valueEncoding: 'utf8' });
    await raw.open();
    for (let start = 0; start < total; start += 10_000) {
      const ops = Array.from({ length: 10_000 }, (_, i) => {
        const entry = { ...newEntry(start + i), revision: start + i + 1 };
        return { type: 'put' as const, key: entryKey(entry.id), value: encodeEntry(entry) };
      });
      await raw.batch(ops);
    }
    await raw.close();
    const store = await open();
    const t0 = performance.now();
    const all = await store.listAllEntries();
    const ms = performance.now() - t0;
    assert.equal(all.length, total);
    assert.deepEqual(all[12_345], { ...newEntry(12_345), revision: 12_346 });
    console.log(`      listAllEntries of 100,000 entries: ${ms.toFixed(0)} ms`);
    assert.ok(ms < 3000, `listAllEntries took ${ms.toFixed(0)} ms`);
  });
});
