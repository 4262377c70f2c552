import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { silentLogger } from '../../../src/common/logger.js';
import { openDatastore } from '../../../src/server/datastore/open.js';
import type { AgentRecord, Datastore } from '../../../src/server/datastore/types.js';
import { createStateMirror, type StateMirror } from '../../../src/server/sync/state-mirror.js';
import {
  agentRecord,
  joinTokenAgentId,
  jwtOnlyBundle as jwtBundle,
  newEntryRecord as entry,
  SERVER_ID as SERVER,
  TD,
} from '../../helpers/records.js';

const agentId = (n: number): string => joinTokenAgentId(`n${n}`);
const agent = (n: number, fields: Partial<AgentRecord> = {}): AgentRecord =>
  agentRecord(agentId(n), { selectors: [{ type: 'join_token', value: `t${n}` }], ...fields });

/** The mirror's entries as sorted "id@revision:parent" strings, for exact comparison with the store. */
function mirrorEntries(m: StateMirror): string[] {
  return [...m.allEntries()].map((e) => `${e.id}@${e.revision}:${e.parentId}`).sort();
}

async function storeEntries(ds: Datastore): Promise<string[]> {
  return (await ds.listAllEntries()).map((e) => `${e.id}@${e.revision}:${e.parentId}`).sort();
}

describe('state mirror', () => {
  let dir: string;
  let ds: Datastore;
  let mirror: StateMirror | undefined;

  beforeEach(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'emblem-mirror-'));
    ds = await openDatastore({ kind: 'level', dataDir: dir });
  });

  afterEach(async () => {
    await mirror?.stop();
    mirror = undefined;
    await ds.close();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  const start = async (): Promise<StateMirror> => {
    mirror = createStateMirror(ds, { logger: silentLogger(), trustDomain: TD });
    await mirror.start();
    return mirror;
  };

  it('loads entries, agents, bundles and authorities at start', async () => {
    await ds.createEntry(entry('a'));
    await ds.createEntry(entry('b', { parentId: `spiffe://${TD}/w/a` }));
    await ds.createEntry(entry('alias', { parentId: SERVER, selectors: [{ type: 'join_token', value: 't1' }] }));
    for (let i = 0; i < 3; i++) await ds.putAgent(agent(i));
    await ds.setBundle(jwtBundle(TD, 4));
    await ds.setFederatedBundle(jwtBundle('partner.org', 2));
    await ds.putAuthority({ id: 'ca1', kind: 'jwt', status: 'active', notBefore: 0, notAfter: 1, keyId: 'k', createdAt: 0 });

    const m = await start();
    assert.equal(m.revision(), await ds.currentRevision());
    assert.deepEqual(mirrorEntries(m), await storeEntries(ds));
    assert.equal(m.entryCount(), 3);
    assert.deepEqual([...(m.entriesWithParent(agentId(1))?.keys() ?? [])], ['a']);
    assert.deepEqual([...(m.entriesWithSpiffeId(`spiffe://${TD}/w/a`)?.keys() ?? [])], ['a']);
    assert.deepEqual([...m.nodeAliases().keys()], ['alias']);
    assert.deepEqual([...(m.nodeAliasesWithSelector('join_token:t1')?.keys() ?? [])], ['alias']);
    assert.deepEqual([...m.allAgents()].map((a) => a.id).sort(), [agentId(0), agentId(1), agentId(2)]);
    assert.equal(m.bundle()?.sequence, 4);
    assert.deepEqual([...m.federatedBundles().keys()], ['partner.org']);
    assert.deepEqual([...m.authorities().keys()], ['ca1']);
    assert.deepEqual(m.sortedEntryIds(), ['a', 'alias', 'b']);
  });

  it('follows writes made after start and notifies listeners', async () => {
    const m = await start();
    const seen: string[] = [];
    const revisions: [number, number][] = [];
    m.onApplied((applied, revision) => {
      for (const ev of applied) seen.push(`${ev.kind}:${ev.id}:${ev.deleted}`);
      revisions.push([revision, applied[applied.length - 1]!.revision]);
    });

    const created = await ds.createEntry(entry('x'));
    await m.waitForRevision(created.revision);
    assert.equal(m.getEntry('x')?.revision, created.revision);

    const updated = await ds.updateEntry(entry('x', { parentId: agentId(2) }));
    await m.waitForRevision(updated.revision);
    assert.equal(m.entriesWithParent(agentId(1)), undefined, 'old parent index emptied');
    assert.deepEqual([...(m.entriesWithParent(agentId(2))?.keys() ?? [])], ['x']);

    await ds.putAgent(agent(7));
    await ds.setBundle(jwtBundle(TD, 9));
    await ds.setFederatedBundle(jwtBundle('partner.org', 1));
    await ds.deleteEntry('x');
    await m.waitForRevision(await ds.currentRevision());
    assert.equal(m.getEntry('x'), undefined);
    assert.equal(m.entryCount(), 0);
    assert.equal(m.getAgent(agentId(7))?.id, agentId(7));
    assert.equal(m.bundle()?.sequence, 9);
    assert.ok(m.federatedBundles().has('partner.org'));

    await ds.deleteAgent(agentId(7));
    await ds.deleteFederatedBundle('partner.org');
    await m.waitForRevision(await ds.currentRevision());
    assert.equal(m.getAgent(agentId(7)), undefined);
    assert.equal(m.federatedBundles().size, 0);
    assert.deepEqual(seen, [
      'entry:x:false',
      'entry:x:false',
      `agent:${agentId(7)}:false`,
      'bundle::false',
      'federated_bundle:partner.org:false',
      'entry:x:true',
      `agent:${agentId(7)}:true`,
      'federated_bundle:partner.org:true',
    ]);
    for (const [reported, last] of revisions) assert.equal(reported, last);
  });

  it('reports the previous entry records to listeners', async () => {
    const m = await start();
    const created = await ds.createEntry(entry('p'));
    await m.waitForRevision(created.revision);
    const previous: (string | undefined)[] = [];
    m.onApplied((_applied, _revision, prev) => previous.push(prev.get('p')?.parentId));
    const updated = await ds.updateEntry(entry('p', { parentId: agentId(2) }));
    await m.waitForRevision(updated.revision);
    await ds.deleteEntry('p');
    await m.waitForRevision(await ds.currentRevision());
    assert.deepEqual(previous, [agentId(1), agentId(2)]);
  });

  it('rejects waiters when stopped', async () => {
    const m = await start();
    const waiting = m.waitForRevision(m.revision() + 1000);
    await m.stop();
    await assert.rejects(waiting, /stopped/);
    await assert.rejects(m.waitForRevision(m.revision() + 1), /stopped/);
  });

  it('catches up with writes made while it was loading', async () => {
    for (let i = 0; i < 200; i++) await ds.createEntry(entry(`pre${i}`));
    mirror = createStateMirror(ds, { logger: silentLogger(), trustDomain: TD });
    const writes = (async () => {
      for (let i = 0; i < 50; i++) {
        await ds.createEntry(entry(`during${i}`));
        if (i % 5 === 0) await ds.deleteEntry(`pre${i}`);
      }
    })();
    await mirror.start();
    await writes;
    await mirror.waitForRevision(await ds.currentRevision());
    assert.deepEqual(mirrorEntries(mirror), await storeEntries(ds));
  });

  it('ends exact after a burst of 1,000 concurrent creates plus updates and deletes', async () => {
    const m = await start();
    let pages = 0;
    m.onApplied(() => pages++);
    await Promise.all(Array.from({ length: 1000 }, (_, i) => ds.createEntry(entry(`e${String(i).padStart(4, '0')}`))));
    await Promise.all(
      Array.from({ length: 100 }, (_, i) =>
        i % 2 === 0 ? ds.deleteEntry(`e${String(i).padStart(4, '0')}`) : ds.updateEntry(entry(`e${String(i).padStart(4, '0')}`, { parentId: agentId(3) })),
      ),
    );
    await m.waitForRevision(await ds.currentRevision());
    assert.deepEqual(mirrorEntries(m), await storeEntries(ds));
    assert.equal(m.entryCount(), 950);
    assert.equal(m.entriesWithParent(agentId(3))?.size, 50);
    assert.equal(m.sortedEntryIds().length, 950);
    assert.ok(pages < 1100, `coalesced into ${pages} applied pages`);
  });

  it('cold-starts 10,000 entries quickly', async () => {
    const n = 10_000;
    const batch = 1000;
    for (let i = 0; i < n; i += batch) {
      await Promise.all(
        Array.from({ length: batch }, (_, j) =>
          ds.createEntry(entry(`c${i + j}`, { parentId: agentId((i + j) % 200), dnsNames: ['a.example.org'], hint: 'h' })),
        ),
      );
    }
    const t0 = performance.now();
    const m = await start();
    const ms = performance.now() - t0;
    assert.equal(m.entryCount(), n);
    console.log(`      cold start of ${n} entries: ${ms.toFixed(0)} ms`);
    assert.ok(ms < 1000, `cold start took ${ms} ms`);
  });
});
