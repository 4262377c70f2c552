import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { silentLogger } from '../../../src/common/logger.js';
import type { Selector } from '../../../src/common/selectors.js';
import {
  authorizedEntries,
  createEntryAuthorizer,
  type EntryAuthorizer,
} from '../../../src/server/authorization/authorized-entries.js';
import { openDatastore } from '../../../src/server/datastore/open.js';
import type { AgentRecord, Datastore, NewEntry } from '../../../src/server/datastore/types.js';
import { createStateMirror, type StateMirror } from '../../../src/server/sync/state-mirror.js';
import { agentRecord, idInTd as id, joinTokenAgentId, newEntryRecord, sel, SERVER_ID as SERVER, TD } from '../../helpers/records.js';

const A = joinTokenAgentId('a');
const B = joinTokenAgentId('b');

let seq = 0;
const entry = (entryId: string, parentId: string, spiffeId: string, fields: Partial<NewEntry> = {}): NewEntry =>
  newEntryRecord(entryId, { spiffeId, parentId, selectors: sel(`unix:uid:${seq++}`), ...fields });
const agent = (agentId: string, selectors: Selector[], fields: Partial<AgentRecord> = {}): AgentRecord =>
  agentRecord(agentId, { selectors, ...fields });

/** Deterministic PRNG (mulberry32) so a failing random sequence can be replayed. */
function prng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

describe('entry authorization', () => {
  let dir: string;
  let ds: Datastore;
  let mirror: StateMirror;
  let authz: EntryAuthorizer;
  let clock = 1_800_000_000;

  beforeEach(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'emblem-authz-'));
    ds = await openDatastore({ kind: 'level', dataDir: dir });
    mirror = createStateMirror(ds, { logger: silentLogger(), trustDomain: TD });
    await mirror.start();
    clock = Math.floor(Date.now() / 1000);
    authz = createEntryAuthorizer(mirror, { now: () => clock });
    await ds.putAgent(agent(A, sel('join_token:a', 'group:blue', 'zone:1')));
    await ds.putAgent(agent(B, sel('join_token:b', 'group:blue')));
    await synced();
  });

  afterEach(async () => {
    authz.close();
    await mirror.stop();
    await ds.close();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  const synced = async (): Promise<void> => mirror.waitForRevision(await ds.currentRevision());
  const ids = (agentId: string): string[] => authz.authorizedEntries(agentId).map((e) => e.id).sort();

  it('authorises entries parented by the agent itself, and only those', async () => {
    await ds.createEntry(entry('e1', A, id('w1')));
    await ds.createEntry(entry('e2', B, id('w2')));
    await synced();
    assert.deepEqual(ids(A), ['e1']);
    assert.deepEqual(ids(B), ['e2']);
    assert.equal(authz.isAuthorized(A, 'e1'), true);
    assert.equal(authz.isAuthorized(A, 'e2'), false);
    assert.equal(authz.isAuthorized(A, 'missing'), false);
  });

  it('authorises through a node alias whose selectors are a subset of the agent selectors', async () => {
    await ds.createEntry(entry('alias-blue', SERVER, id('nodes/blue'), { selectors: sel('group:blue') }));
    await ds.createEntry(entry('alias-blue-z1', SERVER, id('nodes/blue-z1'), { selectors: sel('group:blue', 'zone:1') }));
    await ds.createEntry(entry('alias-empty', SERVER, id('nodes/any'), { selectors: [] }));
    await ds.createEntry(entry('on-blue', id('nodes/blue'), id('w/blue')));
    await ds.createEntry(entry('on-blue-z1', id('nodes/blue-z1'), id('w/blue-z1')));
    await ds.createEntry(entry('on-any', id('nodes/any'), id('w/any')));
    await synced();
    // A has group:blue and zone:1; B has group:blue only, so alias-blue-z1 is not a subset of B's.
    assert.deepEqual(ids(A), ['on-blue', 'on-blue-z1']);
    assert.deepEqual(ids(B), ['on-blue']);
    // An alias with no selectors never matches; alias entries themselves are not handed out.
    assert.equal(authz.isAuthorized(A, 'on-any'), false);
    assert.equal(authz.isAuthorized(A, 'alias-blue'), false);
    assert.deepEqual(authorizedEntries(mirror, B, clock).map((e) => e.id), ['on-blue']);
  });

  it('authorises transitively and survives parent/child cycles', async () => {
    await ds.createEntry(entry('t1', A, id('x')));
    await ds.createEntry(entry('t2', id('x'), id('y')));
    await ds.createEntry(entry('t3', id('y'), id('x'))); // cycle back to x
    await ds.createEntry(entry('t4', id('y'), id('z')));
    await ds.createEntry(entry('loop1', id('p'), id('q'))); // an unreachable loop
    await ds.createEntry(entry('loop2', id('q'), id('p')));
    await synced();
    assert.deepEqual(ids(A), ['t1', 't2', 't3', 't4']);
    assert.deepEqual(ids(B), []);
  });

  it('does not authorise expired entries or what hangs below them', async () => {
    await ds.createEntry(entry('old', A, id('old'), { expiresAt: clock - 1 }));
    await ds.createEntry(entry('under-old', id('old'), id('under-old')));
    await ds.createEntry(entry('soon', A, id('soon'), { expiresAt: clock + 60 }));
    await ds.createEntry(entry('under-soon', id('soon'), id('under-soon')));
    await synced();
    assert.deepEqual(ids(A), ['soon', 'under-soon']);
    assert.equal(authz.nextExpiry(A), clock + 60);
    clock += 60; // expiry is "expires_at <= now"
    assert.deepEqual(ids(A), []);
    assert.equal(authz.nextExpiry(A), 0);
  });

  it('extends a warm cache when an entry links an existing subtree', async () => {
    await ds.createEntry(entry('child', id('mid'), id('leaf')));
    await ds.createEntry(entry('grandchild', id('leaf'), id('leaf2')));
    await ds.createEntry(entry('expired-child', id('mid'), id('gone'), { expiresAt: clock - 1 }));
    await synced();
    assert.deepEqual(ids(A), []); // warm the cache
    const seen: string[][] = [];
    authz.onChange((c) => seen.push([...(c.upsertedEntries.get(A) ?? [])].map((e) => e.id).sort()));
    await ds.createEntry(entry('link', A, id('mid')));
    await synced();
    assert.deepEqual(ids(A), ['child', 'grandchild', 'link']);
    assert.deepEqual(seen, [['child', 'grandchild', 'link']]);
  });

  it('authorises nothing for banned or unknown agents', async () => {
    await ds.createEntry(entry('e1', A, id('w1')));
    await synced();
    assert.deepEqual(ids(A), ['e1']);
    await ds.putAgent(agent(A, sel('join_token:a'), { banned: true }));
    await synced();
    assert.deepEqual(ids(A), []);
    assert.equal(authz.isAuthorized(A, 'e1'), false);
    assert.deepEqual(ids(`spiffe://${TD}/emblem/agent/join_token/nobody`), []);
    await ds.putAgent(agent(A, sel('join_token:a')));
    await synced();
    assert.deepEqual(ids(A), ['e1']);
  });

  it('follows alias selector changes and agent selector changes', async () => {
    await ds.createEntry(entry('alias', SERVER, id('nodes/g'), { selectors: sel('group:blue') }));
    await ds.createEntry(entry('w', id('nodes/g'), id('w')));
    await synced();
    assert.deepEqual([ids(A), ids(B)], [['w'], ['w']]);
    await ds.updateEntry(entry('alias', SERVER, id('nodes/g'), { selectors: sel('zone:1') }));
    await synced();
    assert.deepEqual([ids(A), ids(B)], [['w'], []]);
    await ds.putAgent(agent(A, sel('join_token:a')));
    await synced();
    assert.deepEqual(ids(A), []);
  });

  it('keeps the cache equal to a fresh crawl through random concurrent changes', async function () {
    this.timeout(20_000);
    const rand = prng(20260101);
    const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rand() * xs.length)] as T;
    const agents = [A, B, `spiffe://${TD}/emblem/agent/join_token/c`];
    const groups = ['group:blue', 'group:red', 'zone:1'];
    const nodes = [...agents, ...Array.from({ length: 16 }, (_, i) => id(`n${i}`)), SERVER];
    const live = new Set<string>();
    let next = 0;
    /** plain: neither a node alias nor expired (changes the cache applies in place). */
    const randomEntry = (entryId: string, plain = false): NewEntry => {
      const parent = pick(plain ? nodes.slice(0, -1) : nodes);
      const expiresAt = rand() < 0.1 && !plain ? clock - 5 : rand() < 0.1 ? clock + 3600 : 0;
      const selectors = parent === SERVER ? sel(pick(groups)) : sel(`unix:uid:${next++}`);
      return entry(entryId, parent, pick(nodes.slice(agents.length, -1)), { selectors, expiresAt });
    };
    for (let round = 0; round < 100; round++) {
      const ops: Promise<unknown>[] = [];
      for (let k = 0; k < 8; k++) {
        const r = rand();
        // Every other round only creates plain entries, so the in-place path runs on warm caches.
        if (r < 0.45 || live.size === 0 || round % 2 === 0) {
          const e = randomEntry(`r${next++}`, round % 2 === 0);
          live.add(e.id);
          ops.push(ds.createEntry(e));
        } else if (r < 0.7) {
          ops.push(ds.updateEntry(randomEntry(pick([...live]))).catch(() => undefined));
        } else if (r < 0.85) {
          const victim = pick([...live]);
          live.delete(victim);
          ops.push(ds.deleteEntry(victim).catch(() => undefined));
        } else {
          ops.push(ds.putAgent(agent(pick(agents), sel(pick(groups), pick(groups)), { banned: rand() < 0.1 })));
        }
      }
      await Promise.allSettled(ops);
      await synced();
      for (const a of agents) {
        const fresh = authorizedEntries(mirror, a, clock).map((e) => `${e.id}@${e.revision}`).sort();
        const cached = authz.authorizedEntries(a).map((e) => `${e.id}@${e.revision}`).sort();
        assert.deepEqual(cached, fresh, `round ${round}, agent ${a}`);
      }
    }
  });
});
