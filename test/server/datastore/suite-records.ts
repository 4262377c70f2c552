// Conformance tests for agents, join tokens, bundles, authorities and the issuance ledger (part of
// suite.ts).
import assert from 'node:assert/strict';
import type { Datastore, SvidRecord } from '../../../src/server/datastore/types.js';
import {
  agent,
  allChanges,
  bundle,
  change,
  collectSvids,
  jwtAuthority,
  rejectsWith,
  svid,
  x509Authority,
} from './fixtures.js';

export interface SuiteEnv {
  /** The store of the current test. */
  readonly store: Datastore;
  /** Asserts that nothing observable changed since `revision` (no change event, same revision). */
  assertRevision(revision: number): Promise<void>;
}

export function recordTests(env: SuiteEnv): void {
  let store: Datastore;
  const assertRevision = (revision: number): Promise<void> => env.assertRevision(revision);
  beforeEach(() => {
    store = env.store;
  });

  describe('agents', () => {
    it('put/get/replace with change events', async () => {
      const a = agent(1);
      await store.putAgent(a);
      assert.deepEqual(await store.getAgent(a.id), a);
      const banned = { ...a, banned: true, selectors: [] };
      await store.putAgent(banned);
      assert.deepEqual(await store.getAgent(a.id), banned);
      assert.equal(await store.getAgent('spiffe://example.org/missing'), undefined);
      assert.deepEqual(await allChanges(store), [change(1, 'agent', a.id), change(2, 'agent', a.id)]);
    });

    it('lists with pagination', async () => {
      const ids = [];
      for (let n = 0; n < 25; n++) {
        await store.putAgent(agent(n));
        ids.push(agent(n).id);
      }
      const seen: string[] = [];
      let pageToken = '';
      let pages = 0;
      do {
        const page = await store.listAgents({ pageSize: 10, pageToken });
        assert.ok(page.items.length <= 10);
        seen.push(...page.items.map((x) => x.id));
        pageToken = page.nextPageToken;
        pages += 1;
      } while (pageToken !== '');
      assert.equal(pages, 3);
      assert.deepEqual([...seen].sort(), [...ids].sort());
      const all = await store.listAgents();
      assert.equal(all.items.length, 25);
      assert.equal(all.nextPageToken, '');
      const exact = await store.listAgents({ pageSize: 25 });
      assert.equal(exact.nextPageToken, '', 'no token when the page ends exactly at the last agent');
      await rejectsWith(store.listAgents({ pageToken: 'not-a-token' }), 'invalid_argument');
      await rejectsWith(store.listAgents({ pageSize: -1 }), 'invalid_argument');
    });

    it('delete: change event, not_found when absent', async () => {
      const a = agent(1);
      await store.putAgent(a);
      await store.deleteAgent(a.id);
      assert.equal(await store.getAgent(a.id), undefined);
      assert.deepEqual((await allChanges(store))[1], change(2, 'agent', a.id, true));
      await rejectsWith(store.deleteAgent(a.id), 'not_found', /node-0001/);
      await assertRevision(2);
    });

    it('touch updates lastSeen without a change event; not_found when absent', async () => {
      const a = agent(1);
      await store.putAgent(a);
      await store.touchAgent(a.id, 1_750_000_000);
      assert.deepEqual(await store.getAgent(a.id), { ...a, lastSeen: 1_750_000_000 });
      await rejectsWith(store.touchAgent(agent(2).id, 1), 'not_found');
      assert.equal(await store.getAgent(agent(2).id), undefined);
      await assertRevision(1);
    });
  });

  describe('join tokens', () => {
    it('consume once; the second consume gets nothing', async () => {
      await store.createJoinToken('aa11', 1_800_000_000);
      await rejectsWith(store.createJoinToken('aa11', 1), 'already_exists');
      assert.deepEqual(await store.consumeJoinToken('aa11'), { expiresAt: 1_800_000_000 });
      assert.equal(await store.consumeJoinToken('aa11'), undefined);
      assert.equal(await store.consumeJoinToken('never'), undefined);
      await assertRevision(0);
    });

    it('concurrent consumes of one token: exactly one wins', async () => {
      await store.createJoinToken('bb22', 1_800_000_000);
      const results = await Promise.all(Array.from({ length: 10 }, () => store.consumeJoinToken('bb22')));
      assert.equal(results.filter((r) => r !== undefined).length, 1);
    });

    it('prune deletes tokens that expired before now', async () => {
      await store.createJoinToken('t100', 100);
      await store.createJoinToken('t199', 199);
      await store.createJoinToken('t200', 200);
      await store.createJoinToken('t300', 300);
      assert.equal(await store.pruneJoinTokens(200), 2);
      assert.equal(await store.pruneJoinTokens(200), 0);
      assert.equal(await store.consumeJoinToken('t100'), undefined);
      assert.equal(await store.consumeJoinToken('t199'), undefined);
      assert.deepEqual(await store.consumeJoinToken('t200'), { expiresAt: 200 });
      assert.equal(await store.pruneJoinTokens(1000), 1);
      assert.equal(await store.consumeJoinToken('t300'), undefined);
      await assertRevision(0);
    });
  });

  describe('bundles', () => {
    it('own bundle round-trips Buffers and JWKs exactly', async () => {
      const b = bundle('example.org', 7);
      await store.setBundle(b);
      assert.deepEqual(await store.getBundle(), b);
      const hinted = { ...bundle('example.org', 8), refreshHint: 300, x509Authorities: [] };
      await store.setBundle(hinted);
      assert.deepEqual(await store.getBundle(), hinted);
      assert.deepEqual(await allChanges(store), [change(1, 'bundle', ''), change(2, 'bundle', '')]);
    });

    it('federated bundles: set, get, list, delete', async () => {
      const one = bundle('one.org');
      const two = { ...bundle('two.org', 3), refreshHint: 60 };
      await store.setFederatedBundle(two);
      await store.setFederatedBundle(one);
      assert.deepEqual(await store.getFederatedBundle('one.org'), one);
      assert.deepEqual(await store.getFederatedBundle('two.org'), two);
      assert.equal(await store.getFederatedBundle('three.org'), undefined);
      const listed = await store.listFederatedBundles();
      assert.deepEqual([...listed].sort((a, b) => a.trustDomain.localeCompare(b.trustDomain)), [one, two]);
      await store.deleteFederatedBundle('one.org');
      assert.equal(await store.getFederatedBundle('one.org'), undefined);
      await rejectsWith(store.deleteFederatedBundle('one.org'), 'not_found', /one\.org/);
      assert.deepEqual(await allChanges(store), [
        change(1, 'federated_bundle', 'two.org'),
        change(2, 'federated_bundle', 'one.org'),
        change(3, 'federated_bundle', 'one.org', true),
      ]);
      assert.equal(await store.getBundle(), undefined, 'federated bundles are not the own bundle');
    });
  });

  describe('authorities', () => {
    it('put, replace, list, delete with change events', async () => {
      const x = x509Authority('aabb');
      const j = jwtAuthority('kid-1');
      await store.putAuthority(x);
      await store.putAuthority(j);
      const sortById = <T extends { id: string }>(list: T[]): T[] => [...list].sort((a, b) => a.id.localeCompare(b.id));
      assert.deepEqual(sortById(await store.listAuthorities()), sortById([x, j]));
      const tainted = { ...x, status: 'tainted' as const, tainted: true };
      await store.putAuthority(tainted);
      assert.deepEqual(sortById(await store.listAuthorities()), sortById([tainted, j]));
      await store.deleteAuthority(j.id);
      assert.deepEqual(await store.listAuthorities(), [tainted]);
      await rejectsWith(store.deleteAuthority(j.id), 'not_found', /kid-1/);
      assert.deepEqual(await allChanges(store), [
        change(1, 'authority', 'aabb'),
        change(2, 'authority', 'kid-1'),
        change(3, 'authority', 'aabb'),
        change(4, 'authority', 'kid-1', true),
      ]);
    });
  });

  describe('issuance ledger', () => {
    const A = 'spiffe://example.org/workload/a';
    const B = 'spiffe://example.org/workload/a/b'; // a prefix of A's ID must not match A
    const agent1 = 'spiffe://example.org/spire/agent/join_token/node-1';
    const agent2 = 'spiffe://example.org/spire/agent/join_token/node-2';
    const rows: SvidRecord[] = [
      svid('01', { spiffeId: A, agentId: agent1, issuedAt: 100, notAfter: 500 }),
      svid('02', { spiffeId: B, agentId: agent1, issuedAt: 110, notAfter: 300 }),
      svid('03', { spiffeId: A, agentId: agent2, issuedAt: 120, notAfter: 400, kind: 'jwt' }),
      svid('04', { spiffeId: agent2, agentId: '', entryId: '', issuedAt: 130, notAfter: 200, kind: 'agent' }),
      svid('05', { spiffeId: A, agentId: agent1, issuedAt: 140, notAfter: 600 }),
    ];

    beforeEach(async () => {
      await store.recordSvids(rows.slice(0, 2));
      await store.recordSvids(rows.slice(2));
      await store.recordSvids([]);
    });

    it('records rows exactly, without change events', async () => {
      assert.deepEqual((await store.listSvids({})).items, rows);
      await assertRevision(0);
    });

    it('filters by spiffeId, agentId and expiry, oldest issued first', async () => {
      assert.deepEqual(await collectSvids(store, { spiffeId: A }), ['01', '03', '05']);
      assert.deepEqual(await collectSvids(store, { spiffeId: B }), ['02']);
      assert.deepEqual(await collectSvids(store, { agentId: agent1 }), ['01', '02', '05']);
      assert.deepEqual(await collectSvids(store, { spiffeId: A, agentId: agent1 }), ['01', '05']);
      assert.deepEqual(await collectSvids(store, { spiffeId: 'spiffe://example.org/none' }), []);
      assert.deepEqual(await collectSvids(store, { spiffeId: A, notExpiredAt: 400 }), ['01', '05']);
      assert.deepEqual(await collectSvids(store, { agentId: agent1, expiresBefore: 500 }), ['01', '02']);
    });

    it('expiry-only queries are ordered by notAfter', async () => {
      assert.deepEqual(await collectSvids(store, { expiresBefore: 400 }), ['04', '02', '03']);
      assert.deepEqual(await collectSvids(store, { notExpiredAt: 400 }), ['01', '05']);
      assert.deepEqual(await collectSvids(store, { notExpiredAt: 200, expiresBefore: 500 }), ['02', '03', '01']);
      assert.deepEqual(await collectSvids(store, { notExpiredAt: 500, expiresBefore: 500 }), []);
      assert.deepEqual(await collectSvids(store, { notExpiredAt: 600 }), []);
    });

    it('paginates every kind of query', async () => {
      assert.deepEqual(await collectSvids(store, { pageSize: 2 }), ['01', '02', '03', '04', '05']);
      assert.deepEqual(await collectSvids(store, { pageSize: 1, spiffeId: A }), ['01', '03', '05']);
      assert.deepEqual(await collectSvids(store, { pageSize: 2, agentId: agent1 }), ['01', '02', '05']);
      assert.deepEqual(await collectSvids(store, { pageSize: 2, spiffeId: A, agentId: agent1 }), ['01', '05']);
      assert.deepEqual(await collectSvids(store, { pageSize: 2, expiresBefore: 450 }), ['04', '02', '03']);
      const exact = await store.listSvids({ pageSize: 5 });
      assert.equal(exact.nextPageToken, '', 'no token when the page ends exactly at the last row');
    });

    it('rejects bad page tokens and bad bounds', async () => {
      const first = await store.listSvids({ pageSize: 1, spiffeId: A });
      assert.notEqual(first.nextPageToken, '');
      await rejectsWith(store.listSvids({ pageToken: first.nextPageToken, agentId: agent1 }), 'invalid_argument');
      await rejectsWith(store.listSvids({ pageToken: '%%%' }), 'invalid_argument');
      await rejectsWith(store.listSvids({ expiresBefore: -1 }), 'invalid_argument');
      await rejectsWith(store.listSvids({ pageSize: 1.5 }), 'invalid_argument');
    });

    it('a page is filled even when most rows are filtered out', async () => {
      const MANY = 'spiffe://example.org/workload/many';
      const many = Array.from({ length: 300 }, (_, i) =>
        svid(`m${String(i).padStart(3, '0')}`, {
          spiffeId: MANY,
          issuedAt: 1000 + i,
          agentId: i % 100 === 0 ? agent2 : agent1,
        }),
      );
      await store.recordSvids(many);
      const page = await store.listSvids({ spiffeId: MANY, agentId: agent2, pageSize: 2 });
      assert.deepEqual(page.items.map((r) => r.serial), ['m000', 'm100']);
      const rest = await store.listSvids({ spiffeId: MANY, agentId: agent2, pageToken: page.nextPageToken });
      assert.deepEqual(rest.items.map((r) => r.serial), ['m200']);
      assert.equal(rest.nextPageToken, '');
    });
  });
}
