import assert from 'node:assert/strict';
import { LISTENER_SLICE, SvidCache } from '../../../src/agent/cache/svid-cache.js';
import type { AgentEntry, JwtSvid } from '../../../src/agent/cache/types.js';
import { isEmblemError } from '../../../src/common/errors.js';
import { createTestPki, TD } from '../client/node-api-double.js';

const sel = (...keys: string[]) => keys.map((k) => ({ type: k.slice(0, k.indexOf(':')), value: k.slice(k.indexOf(':') + 1) }));

function entry(id: string, selectors: string[], createdAt = 100, revision = 1): AgentEntry {
  return {
    id,
    spiffeId: `spiffe://${TD}/w/${id}`,
    parentId: `spiffe://${TD}/emblem/agent/x`,
    selectors: sel(...selectors),
    federatesWith: [],
    hint: '',
    jwtSvidTtl: 0,
    createdAt,
    revision,
  };
}

const tick = (): Promise<void> => new Promise((r) => setImmediate(r));

describe('SVID cache', () => {
  describe('entriesFor', () => {
    it('returns the entries whose selectors are all in the set, default first', () => {
      const cache = new SvidCache();
      cache.applySync({
        full: true,
        deletedIds: [],
        upserted: [
          entry('c', ['unix:uid:1000'], 200),
          entry('b', ['unix:uid:1000', 'unix:gid:50'], 100),
          entry('a', ['unix:uid:1000'], 200),
          entry('d', ['unix:uid:1000', 'k8s:ns:x'], 50),
          entry('e', ['unix:uid:2000'], 10),
          entry('none', [], 1),
        ],
      });
      const ids = (keys: string[]) => cache.entriesFor(new Set(keys)).map((e) => e.id);
      // b is older than a and c; a and c tie on createdAt and sort by id.
      assert.deepEqual(ids(['unix:uid:1000', 'unix:gid:50', 'unix:pid:7']), ['b', 'a', 'c']);
      assert.deepEqual(ids(['unix:uid:1000']), ['a', 'c']);
      assert.deepEqual(ids(['unix:uid:1000', 'k8s:ns:x']), ['d', 'a', 'c']);
      assert.deepEqual(ids(['unix:gid:50']), [], 'a subset of an entry selector set is not enough');
      assert.deepEqual(ids([]), [], 'an entry without selectors matches nothing');
    });

    it('duplicate selectors in an entry count once', () => {
      const cache = new SvidCache();
      cache.applySync({ full: true, deletedIds: [], upserted: [entry('a', ['unix:uid:1', 'unix:uid:1'])] });
      assert.deepEqual(cache.entriesFor(new Set(['unix:uid:1'])).map((e) => e.id), ['a']);
    });

    it('follows updates and deletions of the index', () => {
      const cache = new SvidCache();
      cache.applySync({ full: true, deletedIds: [], upserted: [entry('a', ['unix:uid:1']), entry('b', ['unix:uid:1'])] });
      cache.applySync({ full: false, deletedIds: ['b'], upserted: [entry('a', ['unix:uid:2'], 100, 2)] });
      assert.deepEqual(cache.entriesFor(new Set(['unix:uid:1'])), []);
      assert.deepEqual(cache.entriesFor(new Set(['unix:uid:2'])).map((e) => e.id), ['a']);
    });

    it('hands out frozen entries', () => {
      const cache = new SvidCache();
      cache.applySync({ full: true, deletedIds: [], upserted: [entry('a', ['unix:uid:1'])] });
      const [e] = cache.entriesFor(new Set(['unix:uid:1']));
      assert.ok(Object.isFrozen(e) && Object.isFrozen(e!.selectors));
    });

    it('is fast: 1,000 calls against 1,000 entries', () => {
      const cache = new SvidCache();
      const upserted: AgentEntry[] = [];
      for (let i = 0; i < 1000; i++) upserted.push(entry(`e${i}`, [`unix:uid:${i % 100}`, `k8s:ns:ns${i % 10}`, 'unix:gid:0'], i));
      cache.applySync({ full: true, deletedIds: [], upserted });
      const started = process.hrtime.bigint();
      let matched = 0;
      for (let i = 0; i < 1000; i++) {
        matched += cache.entriesFor(new Set([`unix:uid:${i % 100}`, `k8s:ns:ns${i % 10}`, 'unix:gid:0', 'unix:pid:1'])).length;
      }
      const ms = Number(process.hrtime.bigint() - started) / 1e6;
      assert.equal(matched, 1000 * 10);
      console.log(`      1,000 entriesFor calls over 1,000 entries: ${ms.toFixed(1)} ms`);
      assert.ok(ms < 500, `took ${ms} ms`);
    });
  });

  describe('changes', () => {
    it('notifies once per batch, coalescing batches of the same tick', async () => {
      const cache = new SvidCache();
      let calls = 0;
      const off = cache.onChange(() => calls++);
      cache.applySync({ full: true, deletedIds: [], upserted: [entry('a', ['unix:uid:1']), entry('b', ['unix:uid:2'])] });
      assert.equal(calls, 0, 'listeners run after the batch, not during it');
      await tick();
      assert.equal(calls, 1);
      cache.applySync({ full: false, deletedIds: ['a'], upserted: [] });
      cache.setBundle(createTestPki().bundle);
      await tick();
      assert.equal(calls, 2);
      cache.applySync({ full: false, deletedIds: [], upserted: [entry('b', ['unix:uid:2'])] });
      await tick();
      assert.equal(calls, 2, 'an update that changes nothing does not notify');
      off();
      cache.applySync({ full: false, deletedIds: ['b'], upserted: [] });
      await tick();
      assert.equal(calls, 2);
    });

    it('tells many listeners a slice per event-loop turn; a change mid-pass gets one more full pass', async () => {
      const cache = new SvidCache();
      const n = LISTENER_SLICE * 2 + 7;
      const calls = new Array<number>(n).fill(0);
      const offs = calls.map((_, i) => cache.onChange(() => calls[i]!++));
      cache.setBundle(createTestPki().bundle);
      await tick();
      assert.equal(calls.filter((c) => c === 1).length, LISTENER_SLICE, 'the first slice at once');
      cache.setBundle(createTestPki().bundle); // changes while the pass is under way
      offs[n - 1]!(); // a listener gone before its turn is not called
      await new Promise((resolve) => setImmediate(resolve));
      assert.equal(calls.filter((c) => c === 1).length, LISTENER_SLICE * 2);
      await cache.listenersTold();
      assert.deepEqual(calls.slice(0, n - 1), new Array(n - 1).fill(2), 'every listener twice: the pass, then one more');
      await cache.listenersTold(); // nothing under way: at once
      assert.equal(calls[n - 1], 0);
    });

    it('reports changed and removed entries; full sets replace', () => {
      const cache = new SvidCache();
      cache.applySync({ full: true, deletedIds: [], upserted: [entry('a', ['u:1']), entry('b', ['u:2']), entry('c', ['u:3'])] });
      const r = cache.applySync({ full: true, deletedIds: [], upserted: [entry('a', ['u:1']), entry('b', ['u:2'], 100, 2), entry('d', ['u:4'])] });
      assert.deepEqual(r.changed.map((e) => e.id).sort(), ['b', 'd']);
      assert.deepEqual(r.removedIds, ['c']);
      assert.deepEqual(cache.entries().map((e) => e.id).sort(), ['a', 'b', 'd']);
    });

    it('keeps an SVID across entry updates with the same SPIFFE ID, drops it when the ID changes or the entry goes', () => {
      const pki = createTestPki();
      const cache = new SvidCache();
      cache.applySync({ full: true, deletedIds: [], upserted: [entry('a', ['u:1']), entry('b', ['u:2'])] });
      const id = (entryId: string) => {
        const i = pki.identity(`spiffe://${TD}/w/${entryId}`);
        return { entryId, chain: i.chain, privateKeyPkcs8: i.privateKeyPkcs8, notAfter: 4_000_000_000, authorityId: 'x' };
      };
      assert.equal(cache.putIdentities([id('a'), id('b'), id('gone')]), 2);
      cache.applySync({ full: false, deletedIds: [], upserted: [entry('a', ['u:9'], 100, 2)] });
      assert.equal(cache.x509Identity('a')?.entry.revision, 2, 'rebound to the new entry');
      cache.applySync({ full: false, deletedIds: [], upserted: [{ ...entry('a', ['u:9'], 100, 3), spiffeId: `spiffe://${TD}/renamed` }] });
      assert.equal(cache.x509Identity('a'), undefined);
      cache.applySync({ full: false, deletedIds: ['b'], upserted: [] });
      assert.equal(cache.x509Identity('b'), undefined);
    });

    it('never hands out an expired SVID', () => {
      let now = 1_000_000;
      const pki = createTestPki();
      const cache = new SvidCache({ now: () => now });
      cache.applySync({ full: true, deletedIds: [], upserted: [entry('a', ['u:1'])] });
      const i = pki.identity(`spiffe://${TD}/w/a`);
      cache.putIdentities([{ entryId: 'a', chain: i.chain, privateKeyPkcs8: i.privateKeyPkcs8, notAfter: 2000, authorityId: 'x' }]);
      assert.ok(cache.x509Identity('a'));
      now = 2_000_000;
      assert.equal(cache.x509Identity('a'), undefined);
    });

    it('ready() needs a bundle; terminate() empties everything for good', async () => {
      const cache = new SvidCache();
      assert.equal(cache.ready(), false);
      cache.setBundle(createTestPki().bundle);
      cache.applySync({ full: true, deletedIds: [], upserted: [entry('a', ['u:1'])] });
      assert.equal(cache.ready(), true);
      let notified = 0;
      cache.onChange(() => notified++);
      cache.terminate();
      await tick();
      assert.equal(notified, 1);
      assert.equal(cache.ready(), false);
      assert.equal(cache.bundle(), undefined);
      assert.deepEqual(cache.entriesFor(new Set(['u:1'])), []);
      cache.applySync({ full: true, deletedIds: [], upserted: [entry('b', ['u:1'])] });
      assert.deepEqual(cache.entries(), [], 'nothing is accepted after terminate');
      await assert.rejects(cache.fetchJwtSvid('a', ['x']), /shutting down/);
    });
  });

  describe('JWT-SVIDs', () => {
    function setup(lifetime = 300) {
      let now = 1_700_000_000_000;
      const minted: { entryId: string; audience: string[] }[] = [];
      const cache = new SvidCache({
        now: () => now,
        jwtCacheSize: 3,
        mintJwtSvid: async (entryId, audience): Promise<JwtSvid> => {
          minted.push({ entryId, audience });
          return { token: `t${minted.length}`, expiresAt: Math.floor(now / 1000) + lifetime };
        },
      });
      cache.applySync({ full: true, deletedIds: [], upserted: ['a', 'b', 'c', 'd'].map((id) => entry(id, [`u:${id}`])) });
      return { cache, minted, advance: (s: number) => (now += s * 1000) };
    }

    it('reuses a token for the same entry and audience set (any order) while over half its life is left', async () => {
      const { cache, minted, advance } = setup(300);
      const t1 = await cache.fetchJwtSvid('a', ['y', 'x']);
      assert.deepEqual(minted[0]!.audience, ['x', 'y'], 'audience is sorted for the server call');
      assert.equal((await cache.fetchJwtSvid('a', ['x', 'y', 'x'])).token, t1.token);
      advance(149);
      assert.equal((await cache.fetchJwtSvid('a', ['x', 'y'])).token, t1.token);
      advance(2); // 151 s of 300 s gone: less than half left
      assert.notEqual((await cache.fetchJwtSvid('a', ['x', 'y'])).token, t1.token);
      assert.equal(minted.length, 2);
      await cache.fetchJwtSvid('a', ['z']);
      await cache.fetchJwtSvid('b', ['x', 'y']);
      assert.equal(minted.length, 4, 'other audiences and other entries get their own tokens');
    });

    it('serves a still-valid token past half-life while the server cannot be reached', async () => {
      let now = 1_700_000_000_000;
      let serverUp = true;
      const cache = new SvidCache({
        now: () => now,
        mintJwtSvid: async (): Promise<JwtSvid> => {
          if (!serverUp) throw new Error('server unreachable');
          return { token: 'fresh', expiresAt: Math.floor(now / 1000) + 300 };
        },
      });
      cache.applySync({ full: true, deletedIds: [], upserted: [entry('a', ['u:a'])] });
      assert.equal((await cache.fetchJwtSvid('a', ['x'])).token, 'fresh');
      serverUp = false;
      now += 200_000; // 100 s left of 300
      assert.equal((await cache.fetchJwtSvid('a', ['x'])).token, 'fresh', 'the cached token is still valid');
      now += 97_000; // 3 s left: too close to expiry to hand out
      await assert.rejects(cache.fetchJwtSvid('a', ['x']), /unreachable/);
    });

    it('dropJwtSvids() forgets every token (authority taint)', async () => {
      const { cache, minted } = setup();
      await cache.fetchJwtSvid('a', ['x']);
      cache.dropJwtSvids();
      await cache.fetchJwtSvid('a', ['x']);
      assert.equal(minted.length, 2);
    });

    it('shares one server call between concurrent requests', async () => {
      const { cache, minted } = setup();
      const [a, b] = await Promise.all([cache.fetchJwtSvid('a', ['x']), cache.fetchJwtSvid('a', ['x'])]);
      assert.equal(a.token, b.token);
      assert.equal(minted.length, 1);
    });

    it('is a bounded LRU', async () => {
      const { cache, minted } = setup();
      for (const id of ['a', 'b', 'c']) await cache.fetchJwtSvid(id, ['x']);
      await cache.fetchJwtSvid('a', ['x']); // a is now the most recent
      await cache.fetchJwtSvid('d', ['x']); // evicts b
      assert.equal(minted.length, 4);
      await cache.fetchJwtSvid('a', ['x']);
      assert.equal(minted.length, 4);
      await cache.fetchJwtSvid('b', ['x']);
      assert.equal(minted.length, 5);
    });

    it('drops tokens of changed or deleted entries and refuses unknown entries and empty audiences', async () => {
      const { cache, minted } = setup();
      await cache.fetchJwtSvid('a', ['x']);
      cache.applySync({ full: false, deletedIds: [], upserted: [entry('a', ['u:a'], 100, 2)] });
      await cache.fetchJwtSvid('a', ['x']);
      assert.equal(minted.length, 2);
      cache.applySync({ full: false, deletedIds: ['a'], upserted: [] });
      await assert.rejects(cache.fetchJwtSvid('a', ['x']), (err: unknown) => isEmblemError(err, 'not_found'));
      await assert.rejects(cache.fetchJwtSvid('b', []), (err: unknown) => isEmblemError(err, 'invalid_argument'));
      await assert.rejects(cache.fetchJwtSvid('b', ['']), (err: unknown) => isEmblemError(err, 'invalid_argument'));
    });

    it('does not cache a token whose entry was deleted while it was being minted', async () => {
      let release!: () => void;
      const gate = new Promise<void>((r) => (release = r));
      let n = 0;
      const cache = new SvidCache({
        mintJwtSvid: async () => {
          await gate;
          return { token: `t${++n}`, expiresAt: Math.floor(Date.now() / 1000) + 300 };
        },
      });
      cache.applySync({ full: true, deletedIds: [], upserted: [entry('a', ['u:a'])] });
      const pending = cache.fetchJwtSvid('a', ['x']);
      cache.applySync({ full: false, deletedIds: ['a'], upserted: [] });
      cache.applySync({ full: false, deletedIds: [], upserted: [entry('a', ['u:a'], 100, 5)] });
      release();
      assert.equal((await pending).token, 't1');
      assert.equal((await cache.fetchJwtSvid('a', ['x'])).token, 't2');
    });
  });
});
