import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { AgentEntry } from '../../../src/agent/cache/types.js';
import { openAgentStore, type AgentStore, type StoredIdentity } from '../../../src/agent/storage/agent-store.js';
import { isEmblemError } from '../../../src/common/errors.js';
import type { TrustBundle } from '../../../src/common/trust-bundle.js';
import { createTestPki, TD } from '../client/node-api-double.js';

const entry = (id: string, revision = 1): AgentEntry => ({
  id,
  spiffeId: `spiffe://${TD}/w/${id}`,
  parentId: `spiffe://${TD}/emblem/agent/x`,
  selectors: [{ type: 'unix', value: `uid:${id}` }],
  federatesWith: ['partner.org'],
  hint: 'h',
  jwtSvidTtl: 300,
  createdAt: 10,
  revision,
});

describe('agent store (level)', () => {
  const pki = createTestPki();
  let dir: string;
  let store: AgentStore | undefined;

  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'emblem-agent-store-'));
  });
  afterEach(async () => {
    await store?.close().catch(() => undefined);
    store = undefined;
    rmSync(dir, { recursive: true, force: true });
  });

  const identity = (entryId: string): StoredIdentity => {
    const id = pki.identity(`spiffe://${TD}/w/${entryId}`);
    return { entryId, entryRevision: 1, chain: id.chain, privateKeyPkcs8: id.privateKeyPkcs8, notAfter: 2_000_000_000, authorityId: 'a1' };
  };

  it('creates <dataDir>/agent with mode 0700 and starts empty', async () => {
    store = await openAgentStore({ dataDir: join(dir, 'data'), trustDomain: TD });
    assert.equal(statSync(join(dir, 'data', 'agent')).mode & 0o777, 0o700);
    assert.equal(statSync(join(dir, 'data')).mode & 0o777, 0o700);
    const s = await store.load();
    assert.equal(s.agentSvid, undefined);
    assert.equal(s.bundle, undefined);
    assert.equal(s.revision, 0);
    assert.deepEqual(s.entries, []);
    assert.deepEqual(s.identities, []);
  });

  it('keeps everything across a restart', async () => {
    store = await openAgentStore({ dataDir: dir, trustDomain: TD });
    const agent = pki.identity(`spiffe://${TD}/emblem/agent/x`);
    await store.saveAgentSvid({ agentId: `spiffe://${TD}/emblem/agent/x`, attestationType: 'x509pop', chain: agent.chain, privateKeyPkcs8: agent.privateKeyPkcs8 });
    const partner: TrustBundle = { ...createTestPki('partner.org').bundle, sequence: 7 };
    await store.applySync({
      revision: 42,
      full: true,
      upserted: [entry('a'), entry('b')],
      deletedIds: [],
      bundle: pki.bundle,
      federatedBundles: new Map([['partner.org', partner]]),
    });
    await store.putIdentities([identity('a'), identity('b')]);
    await store.close();

    store = await openAgentStore({ dataDir: dir, trustDomain: TD });
    const s = await store.load();
    assert.equal(s.agentSvid?.agentId, `spiffe://${TD}/emblem/agent/x`);
    assert.equal(s.agentSvid?.attestationType, 'x509pop');
    assert.ok(s.agentSvid?.chain[0]!.equals(agent.chain[0]!));
    assert.ok(s.agentSvid?.privateKeyPkcs8.equals(agent.privateKeyPkcs8));
    assert.ok(s.bundle?.x509Authorities[0]!.equals(pki.caDer));
    assert.equal(s.federatedBundles.get('partner.org')?.sequence, 7);
    assert.equal(s.revision, 42);
    assert.deepEqual(s.entries.map((e) => e.id).sort(), ['a', 'b']);
    assert.deepEqual(s.entries.find((e) => e.id === 'a'), entry('a'));
    assert.deepEqual(s.identities.map((i) => i.entryId).sort(), ['a', 'b']);
    assert.ok(s.identities[0]!.privateKeyPkcs8.length > 0);
  });

  it('applies deltas and full replacements, dropping the SVIDs of removed entries', async () => {
    store = await openAgentStore({ dataDir: dir, trustDomain: TD });
    await store.applySync({ revision: 1, full: true, upserted: [entry('a'), entry('b'), entry('c')], deletedIds: [] });
    await store.putIdentities([identity('a'), identity('b'), identity('c')]);
    await store.applySync({ revision: 2, full: false, upserted: [entry('a', 2)], deletedIds: ['b'] });
    let s = await store.load();
    assert.deepEqual(s.entries.map((e) => [e.id, e.revision]).sort(), [['a', 2], ['c', 1]]);
    assert.deepEqual(s.identities.map((i) => i.entryId).sort(), ['a', 'c']);

    await store.applySync({ revision: 3, full: true, upserted: [entry('d')], deletedIds: [], federatedBundles: new Map() });
    s = await store.load();
    assert.equal(s.revision, 3);
    assert.deepEqual(s.entries.map((e) => e.id), ['d']);
    assert.deepEqual(s.identities, []);
  });

  it('clear() wipes the agent state (banned agent)', async () => {
    store = await openAgentStore({ dataDir: dir, trustDomain: TD });
    const agent = pki.identity(`spiffe://${TD}/emblem/agent/x`);
    await store.saveAgentSvid({ agentId: 'spiffe://example.org/emblem/agent/x', attestationType: 'join_token', chain: agent.chain, privateKeyPkcs8: agent.privateKeyPkcs8 });
    await store.applySync({ revision: 5, full: true, upserted: [entry('a')], deletedIds: [], bundle: pki.bundle });
    await store.putIdentities([identity('a')]);
    await store.clear();
    const s = await store.load();
    assert.equal(s.agentSvid, undefined);
    assert.equal(s.bundle, undefined);
    assert.equal(s.revision, 0);
    assert.deepEqual(s.entries, []);
    assert.deepEqual(s.identities, []);
  });

  it('refuses a second agent on the same data directory with a clear message', async () => {
    store = await openAgentStore({ dataDir: dir, trustDomain: TD });
    await assert.rejects(openAgentStore({ dataDir: dir, trustDomain: TD }), (err: unknown) => {
      assert.ok(isEmblemError(err, 'failed_precondition'));
      assert.match(err.message, /data directory .* in use by another emblem-agent/);
      return true;
    });
  });

  it('refuses a data directory of another trust domain', async () => {
    store = await openAgentStore({ dataDir: dir, trustDomain: TD });
    await store.close();
    store = undefined;
    await assert.rejects(openAgentStore({ dataDir: dir, trustDomain: 'other.org' }), /belongs to trust domain "example.org"/);
  });
});
