// The Datastore conformance suite: every implementation (level, PostgreSQL) registers it with its
// own `open`. Each test gets a fresh, empty store.
import assert from 'node:assert/strict';
import type { ChangeEvent, Datastore } from '../../../src/server/datastore/types.js';
import { agent, allChanges, bundle, change, newEntry, rejectsWith, svid, x509Authority } from './fixtures.js';
import { recordTests } from './suite-records.js';

export interface OpenedStore {
  store: Datastore;
  /** Closes the current store and opens the same data again. */
  reopen: () => Promise<Datastore>;
  /** Closes whatever is open and removes the data. */
  cleanup: () => Promise<void>;
}

export function datastoreSuite(name: string, open: () => Promise<OpenedStore>): void {
  describe(`Datastore conformance: ${name}`, () => {
    let opened: OpenedStore;
    let store: Datastore;

    beforeEach(async () => {
      opened = await open();
      store = opened.store;
    });
    afterEach(async () => {
      await opened.cleanup();
    });

    /** Asserts that nothing observable changed since `revision` (no change event, same revision). */
    async function assertRevision(revision: number): Promise<void> {
      assert.equal(await store.currentRevision(), revision);
      assert.deepEqual(await store.listChanges(revision, 10), []);
    }

    describe('basics', () => {
      it('starts empty at revision 0, answers ping', async () => {
        await store.ping();
        assert.equal(await store.currentRevision(), 0);
        assert.equal(await store.oldestRetainedRevision(), 1);
        assert.deepEqual(await store.listChanges(0, 10), []);
        assert.deepEqual(await store.listAllEntries(), []);
        assert.equal(await store.getBundle(), undefined);
      });

      it('meta get/set/overwrite without change events', async () => {
        assert.equal(await store.getMeta('trust_domain'), undefined);
        await store.setMeta('trust_domain', 'example.org');
        await store.setMeta('other', '');
        assert.equal(await store.getMeta('trust_domain'), 'example.org');
        assert.equal(await store.getMeta('other'), '');
        await store.setMeta('trust_domain', 'example.com');
        assert.equal(await store.getMeta('trust_domain'), 'example.com');
        await assertRevision(0);
      });
    });

    describe('entries', () => {
      it('create returns the stored record with the new revision and appends a change event', async () => {
        const created = await store.createEntry(newEntry(1));
        assert.deepEqual(created, { ...newEntry(1), revision: 1 });
        assert.deepEqual(await store.getEntry(created.id), created);
        assert.deepEqual(await allChanges(store), [change(1, 'entry', created.id)]);
        const second = await store.createEntry(newEntry(2, { createdAt: 0 }));
        assert.equal(second.revision, 2);
        const now = Math.floor(Date.now() / 1000);
        assert.ok(Math.abs(second.createdAt - now) <= 5, 'createdAt 0 is set to now');
        assert.equal(await store.getEntry('missing'), undefined);
      });

      it('rejects a duplicate id and writes nothing', async () => {
        const created = await store.createEntry(newEntry(1));
        await rejectsWith(store.createEntry(newEntry(2, { id: created.id })), 'already_exists', /entry-000001/);
        assert.deepEqual(await store.getEntry(created.id), created);
        await assertRevision(1);
        // The rejected entry's similar-key was not taken either.
        await store.createEntry(newEntry(2));
      });

      it('rejects a similar entry (same SPIFFE ID, parent and selector set) and writes nothing', async () => {
        const first = await store.createEntry(newEntry(1));
        const similar = newEntry(1, { id: 'other', hint: 'x', selectors: [...first.selectors].reverse() });
        await rejectsWith(store.createEntry(similar), 'already_exists', /entry-000001/);
        const duplicatedSelector = newEntry(1, { id: 'other', selectors: [...first.selectors, first.selectors[0]] });
        await rejectsWith(store.createEntry(duplicatedSelector), 'already_exists');
        assert.equal(await store.getEntry('other'), undefined);
        await assertRevision(1);
        // Any difference in SPIFFE ID, parent or selectors makes it a different entry.
        await store.createEntry(newEntry(1, { id: 'b', selectors: first.selectors.slice(1) }));
        await store.createEntry(newEntry(1, { id: 'c', parentId: 'spiffe://example.org/other' }));
        await store.createEntry(newEntry(1, { id: 'd', spiffeId: 'spiffe://example.org/other' }));
        assert.equal(await store.currentRevision(), 4);
      });

      it('update replaces every field but id and createdAt', async () => {
        const created = await store.createEntry(newEntry(1));
        const changed = newEntry(9, {
          id: created.id,
          createdAt: 5,
          dnsNames: [],
          federatesWith: [],
          downstream: true,
          expiresAt: 1_900_000_000,
        });
        const updated = await store.updateEntry(changed);
        assert.deepEqual(updated, { ...changed, createdAt: created.createdAt, revision: 2 });
        assert.deepEqual(await store.getEntry(created.id), updated);
        assert.deepEqual(await allChanges(store), [change(1, 'entry', created.id), change(2, 'entry', created.id)]);
        // The old SPIFFE ID/parent/selectors are free again; the new ones are taken.
        await store.createEntry(newEntry(1, { id: 'reuse' }));
        await rejectsWith(store.createEntry(newEntry(9, { id: 'clash' })), 'already_exists');
      });

      it('update of a missing entry is not_found and writes nothing', async () => {
        await store.createEntry(newEntry(1));
        await rejectsWith(store.updateEntry(newEntry(2)), 'not_found', /entry-000002/);
        assert.equal(await store.getEntry(newEntry(2).id), undefined);
        await assertRevision(1);
      });

      it('update that would make the entry similar to another is rejected and writes nothing', async () => {
        const a = await store.createEntry(newEntry(1));
        const b = await store.createEntry(newEntry(2));
        await rejectsWith(store.updateEntry(newEntry(1, { id: b.id })), 'already_exists', new RegExp(a.id));
        assert.deepEqual(await store.getEntry(b.id), b);
        await assertRevision(2);
        // Updating an entry without changing its SPIFFE ID/parent/selectors is not a clash with itself.
        const same = await store.updateEntry({ ...newEntry(2), hint: 'new hint' });
        assert.equal(same.hint, 'new hint');
      });

      it('delete returns the entry, appends a deleted event and frees its similar-key', async () => {
        const created = await store.createEntry(newEntry(1));
        assert.deepEqual(await store.deleteEntry(created.id), created);
        assert.equal(await store.getEntry(created.id), undefined);
        assert.deepEqual(await allChanges(store), [change(1, 'entry', created.id), change(2, 'entry', created.id, true)]);
        await rejectsWith(store.deleteEntry(created.id), 'not_found', /entry-000001/);
        await assertRevision(2);
        const again = await store.createEntry(newEntry(1));
        assert.equal(again.revision, 3);
      });

      it('listAllEntries returns every entry', async () => {
        const created = [];
        for (let n = 0; n < 30; n++) created.push(await store.createEntry(newEntry(n)));
        await store.deleteEntry(created[3].id);
        const all = await store.listAllEntries();
        const expected = created.filter((_, i) => i !== 3);
        assert.deepEqual([...all].sort((x, y) => x.id.localeCompare(y.id)), expected);
      });

      it('does not keep references to the caller objects', async () => {
        const input = newEntry(1);
        const created = await store.createEntry(input);
        input.selectors.push({ type: 'unix', value: 'uid:0' });
        input.dnsNames.push('evil.example.org');
        created.federatesWith.push('evil.org');
        assert.deepEqual(await store.getEntry(created.id), { ...newEntry(1), revision: 1 });
      });
    });

    recordTests({
      get store() {
        return store;
      },
      assertRevision,
    });

    describe('change log', () => {
      async function writeOneOfEach(): Promise<void> {
        await store.createEntry(newEntry(1));
        await store.putAgent(agent(1));
        await store.setBundle(bundle('example.org'));
        await store.setFederatedBundle(bundle('other.org'));
        await store.putAuthority(x509Authority('ca'));
        await store.updateEntry(newEntry(1, { hint: 'h' }));
        await store.deleteEntry(newEntry(1).id);
      }

      it('one event per write, monotonic and gapless, paged by listChanges(since, limit)', async () => {
        await writeOneOfEach();
        const all = await allChanges(store);
        assert.deepEqual(
          all.map((e) => e.revision),
          [1, 2, 3, 4, 5, 6, 7],
        );
        assert.deepEqual(all.map((e) => e.kind), ['entry', 'agent', 'bundle', 'federated_bundle', 'authority', 'entry', 'entry']);
        assert.equal(await store.currentRevision(), 7);
        const paged: ChangeEvent[] = [];
        for (let since = 0; ; ) {
          const page = await store.listChanges(since, 3);
          if (page.length === 0) break;
          assert.ok(page.length <= 3);
          paged.push(...page);
          since = page[page.length - 1].revision;
        }
        assert.deepEqual(paged, all);
        assert.deepEqual(await store.listChanges(5, 100), all.slice(5));
        assert.deepEqual(await store.listChanges(7, 100), []);
        await rejectsWith(store.listChanges(-1, 10), 'invalid_argument');
        await rejectsWith(store.listChanges(0, 0), 'invalid_argument');
      });

      it('concurrent writes get distinct gapless revisions; rejected ones take none', async () => {
        const attempts = Array.from({ length: 60 }, (_, i) => store.createEntry(newEntry(i % 40)));
        const results = await Promise.allSettled(attempts);
        const created = results.filter((r) => r.status === 'fulfilled').map((r) => r.value);
        assert.equal(created.length, 40);
        assert.equal(results.filter((r) => r.status === 'rejected').length, 20);
        assert.deepEqual(
          created.map((e) => e.revision).sort((a, b) => a - b),
          Array.from({ length: 40 }, (_, i) => i + 1),
        );
        const all = await allChanges(store);
        assert.deepEqual(all.map((e) => e.revision), Array.from({ length: 40 }, (_, i) => i + 1));
        for (const e of created) assert.equal(all[e.revision - 1].id, e.id);
      });

      it('onChange is called after each committed write with its revision', async () => {
        const seen: number[] = [];
        const unsubscribe = store.onChange((revision) => seen.push(revision));
        await writeOneOfEach();
        await store.touchAgent(agent(1).id, 5);
        await store.setMeta('k', 'v');
        await store.createJoinToken('h', 1);
        await store.recordSvids([svid('01')]);
        await rejectsWith(store.deleteEntry('missing'), 'not_found');
        assert.deepEqual(seen, [1, 2, 3, 4, 5, 6, 7]);
        unsubscribe();
        await store.putAgent(agent(2));
        assert.equal(seen.length, 7);
      });

      it('onChange sees the write committed when called', async () => {
        const observed: Array<Promise<[number, ChangeEvent[]]>> = [];
        store.onChange((revision) => {
          observed.push(Promise.all([store.currentRevision(), store.listChanges(revision - 1, 10)]));
        });
        await store.createEntry(newEntry(1));
        await Promise.all([store.putAgent(agent(1)), store.putAgent(agent(2))]);
        const results = await Promise.all(observed);
        assert.equal(results.length, 3);
        results.forEach(([current, events], i) => {
          assert.ok(current >= i + 1);
          assert.equal(events[0].revision, i + 1);
        });
      });

      it('a throwing listener does not fail the write or starve other listeners', async () => {
        const warnings: string[] = [];
        const onWarning = (w: Error): void => void warnings.push(w.message);
        process.on('warning', onWarning);
        try {
          store.onChange(() => {
            throw new Error('listener bug');
          });
          const seen: number[] = [];
          store.onChange((r) => seen.push(r));
          await store.createEntry(newEntry(1));
          assert.deepEqual(seen, [1]);
        } finally {
          await new Promise((resolve) => setImmediate(resolve));
          process.off('warning', onWarning);
        }
        assert.ok(warnings.some((w) => w.includes('listener bug')));
      });
    });

    describe('reopen', () => {
      it('keeps every record and the revision counter; revisions are not reused', async () => {
        const e = await store.createEntry(newEntry(1));
        const a = agent(1);
        await store.putAgent(a);
        await store.createJoinToken('tok', 1_800_000_000);
        const b = bundle('example.org');
        await store.setBundle(b);
        const f = bundle('other.org');
        await store.setFederatedBundle(f);
        const x = x509Authority('ca');
        await store.putAuthority(x);
        await store.recordSvids([svid('01')]);
        await store.setMeta('trust_domain', 'example.org');
        await store.deleteEntry(e.id);
        const e2 = await store.createEntry(newEntry(2));
        const changes = await allChanges(store);

        const old = store;
        store = await opened.reopen();
        await rejectsWith(old.getEntry(e2.id), 'unavailable');
        await rejectsWith(old.putAgent(agent(3)), 'unavailable');

        assert.equal(await store.currentRevision(), 7);
        assert.deepEqual(await allChanges(store), changes);
        assert.deepEqual(await store.listAllEntries(), [e2]);
        assert.deepEqual(await store.getAgent(a.id), a);
        assert.deepEqual(await store.getBundle(), b);
        assert.deepEqual(await store.listFederatedBundles(), [f]);
        assert.deepEqual(await store.listAuthorities(), [x]);
        assert.deepEqual((await store.listSvids({})).items, [svid('01')]);
        assert.equal(await store.getMeta('trust_domain'), 'example.org');
        assert.deepEqual(await store.consumeJoinToken('tok'), { expiresAt: 1_800_000_000 });
        // The similar-key of the surviving entry survived too.
        await rejectsWith(store.createEntry(newEntry(2, { id: 'clash' })), 'already_exists');

        const next = await store.createEntry(newEntry(3));
        assert.equal(next.revision, 8);
      });
    });
  });
}
