import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SvidCache } from '../../../src/agent/cache/svid-cache.js';
import type { AgentEntry } from '../../../src/agent/cache/types.js';
import type { X509SvidParamsMsg, X509SvidResultMsg } from '../../../src/agent/client/messages.js';
import { ServerClient } from '../../../src/agent/client/server-client.js';
import { ManualClock } from '../../../src/agent/rotation/clock.js';
import { backoffDelayMs, rotationTimeMs } from '../../../src/agent/rotation/rotation-time.js';
import { DueScheduler } from '../../../src/agent/rotation/scheduler.js';
import { prepareKey, type PreparedKey } from '../../../src/agent/rotation/key-pool.js';
import { SvidMinter } from '../../../src/agent/rotation/svid-minter.js';
import { openAgentStore, type AgentStore } from '../../../src/agent/storage/agent-store.js';
import { unavailable } from '../../../src/common/errors.js';
import { readCertificate } from '../../../src/common/x509/cert-info.js';
import { parseCertificate } from '../../../src/common/x509/cert-parse.js';
import { concatDer } from '../../../src/common/x509/chain.js';
import { parseCsr } from '../../../src/common/x509/csr.js';
import { AGENT_ID, createTestPki, NodeApiDouble, TD, type TestPki } from '../client/node-api-double.js';

const entry = (id: string, revision = 1): AgentEntry => ({
  id,
  spiffeId: `spiffe://${TD}/w/${id}`,
  parentId: AGENT_ID,
  selectors: [{ type: 'unix', value: `uid:${id}` }],
  federatesWith: [],
  hint: '',
  jwtSvidTtl: 0,
  createdAt: 1,
  revision,
});

describe('rotation timing', () => {
  it('renews at half the lifetime, jittered by ±10% of the half-life', () => {
    const nb = 1_000_000;
    const na = nb + 3600;
    assert.equal(rotationTimeMs(nb, na, () => 0.5), (nb + 1800) * 1000);
    assert.equal(rotationTimeMs(nb, na, () => 0), (nb + 1620) * 1000);
    assert.ok(Math.abs(rotationTimeMs(nb, na, () => 0.999999) - (nb + 1980) * 1000) < 10);
    for (let i = 0; i < 1000; i++) {
      const t = rotationTimeMs(nb, na) / 1000 - nb;
      assert.ok(t >= 1620 && t <= 1980, `${t}`);
    }
  });

  it('backs off exponentially with jitter up to a cap', () => {
    assert.equal(backoffDelayMs(0, 100, 30_000, () => 0), 50);
    assert.equal(backoffDelayMs(0, 100, 30_000, () => 0.999999999), 99.99999995);
    assert.equal(backoffDelayMs(3, 100, 30_000, () => 0), 400);
    assert.equal(backoffDelayMs(20, 100, 30_000, () => 0), 15_000);
    assert.ok(backoffDelayMs(50, 100, 30_000, () => 0.9999) <= 30_000);
  });

  it('one scheduler timer serves many keys, in due order, with moves and cancels', () => {
    const clock = new ManualClock(0);
    const fired: string[][] = [];
    const s = new DueScheduler((keys) => fired.push(keys), clock);
    for (let i = 0; i < 1000; i++) s.schedule(`k${i}`, 1000 + Math.floor(i / 100));
    s.schedule('early', 10);
    s.schedule('k5', 5); // moved earlier
    s.cancel('k7');
    assert.equal(clock.pending, 1, 'a single timer');
    clock.set(10);
    assert.deepEqual(fired, [['k5'], ['early']]);
    clock.set(1000);
    const expected = Array.from({ length: 100 }, (_, i) => `k${i}`).filter((k) => k !== 'k5' && k !== 'k7');
    assert.equal(fired.length, 3, 'keys due together come in one call');
    assert.deepEqual([...fired[2]!].sort(), expected.sort());
    assert.equal(clock.pending, 1);
    clock.set(5000);
    assert.equal(fired.flat().length, 1000);
    assert.equal(fired.length, 12);
    assert.equal(s.size, 0);
    assert.equal(clock.pending, 0);
  });
});

/** An in-process signer that mints real SVIDs from the CSRs, at the manual clock's time. */
function localSigner(pki: TestPki, cache: SvidCache, clock: ManualClock) {
  const s = {
    calls: [] as X509SvidParamsMsg[][],
    ttl: 3600,
    fail: false,
    refuse: new Set<string>(),
    authority: (_id: string): string => 'authority-1',
    async batchNewX509Svid(params: X509SvidParamsMsg[]): Promise<X509SvidResultMsg[]> {
      s.calls.push(params);
      if (s.fail) throw unavailable('server is down');
      return params.map((p) => {
        const e = cache.entry(p.entry_id);
        if (!e || s.refuse.has(p.entry_id)) {
          return { entry_id: p.entry_id, status: { code: 7, message: 'entry is not authorised for this agent' }, svid_chain: Buffer.alloc(0), expires_at: 0, authority_id: '' };
        }
        const chain = pki.mint(e.spiffeId, parseCsr(p.csr).publicKey, s.ttl, clock.now());
        return { entry_id: p.entry_id, status: { code: 0, message: '' }, svid_chain: concatDer(chain), expires_at: 0, authority_id: s.authority(p.entry_id) };
      });
    },
  };
  return s;
}

describe('SVID minter', () => {
  const pki = createTestPki();
  let dir: string;
  let store: AgentStore;
  let clock: ManualClock;
  let cache: SvidCache;
  let minter: SvidMinter | undefined;

  beforeEach(async () => {
    dir = mkdtempSync(join(tmpdir(), 'emblem-minter-'));
    store = await openAgentStore({ dataDir: dir, trustDomain: TD });
    clock = new ManualClock(Date.now());
    cache = new SvidCache({ now: () => clock.now() });
  });
  afterEach(async () => {
    minter?.stop();
    minter = undefined;
    await store.close();
    rmSync(dir, { recursive: true, force: true });
  });

  function setup(random = () => 0.5) {
    const signer = localSigner(pki, cache, clock);
    const reasons: string[] = [];
    minter = new SvidMinter({
      cache,
      store,
      signer,
      clock,
      random,
      refusedRetryMs: 30_000,
      rpcBackoff: { initialMs: 1000, maxMs: 8000 },
      onMinted: (reason) => reasons.push(reason),
    });
    return { signer, minter, reasons };
  }

  it('mints every entry at start in one batch, stores and persists the SVIDs, keys stay local', async () => {
    cache.applySync({ full: true, deletedIds: [], upserted: [entry('a'), entry('b')] });
    const { signer, minter } = setup();
    minter.start();
    await minter.idle();
    assert.equal(signer.calls.length, 1);
    assert.deepEqual(signer.calls[0]!.map((p) => p.entry_id).sort(), ['a', 'b']);
    const a = cache.x509Identity('a')!;
    assert.equal(readCertificate(a.chain[0]!).uris[0], `spiffe://${TD}/w/a`);
    assert.equal(a.authorityId, 'authority-1');
    const persisted = await store.load();
    assert.deepEqual(persisted.identities.map((i) => [i.entryId, i.entryRevision]).sort(), [['a', 1], ['b', 1]]);
    assert.ok(persisted.identities.every((i) => i.privateKeyPkcs8.length > 0));
  });

  it('schedules renewal at half-life with jitter and renews then', async () => {
    cache.applySync({ full: true, deletedIds: [], upserted: [entry('a')] });
    const { signer, minter, reasons } = setup(() => 0.25); // factor 0.95
    minter.start();
    await minter.idle();
    const first = cache.x509Identity('a')!;
    const info = readCertificate(first.chain[0]!);
    const due = minter.renewalDue('a')!;
    assert.equal(due, info.notBefore * 1000 + ((info.notAfter - info.notBefore) * 1000) / 2 * 0.95);

    clock.set(due - 1);
    await minter.idle();
    assert.equal(signer.calls.length, 1, 'not before it is due');
    clock.set(due);
    await minter.idle();
    assert.equal(signer.calls.length, 2);
    const second = cache.x509Identity('a')!;
    assert.ok(!second.privateKeyPkcs8.equals(first.privateKeyPkcs8), 'renewal uses a fresh key');
    assert.ok(minter.renewalDue('a')! > due);
    assert.deepEqual(reasons, ['new', 'expiring']);
  });

  it('mints new entries at once and re-keys tainted SVIDs at once', async () => {
    cache.applySync({ full: true, deletedIds: [], upserted: [entry('a'), entry('b')] });
    const { signer, minter, reasons } = setup();
    signer.authority = (id) => (id === 'a' ? 'old-authority' : 'authority-1');
    minter.start();
    await minter.idle();
    const before = cache.x509Identity('a')!;

    const result = cache.applySync({ full: false, deletedIds: [], upserted: [entry('c')] });
    signer.authority = () => 'authority-1';
    minter.handleSync(result, ['old-authority']);
    await minter.idle();
    assert.equal(signer.calls.length, 2, 'one batch for the new entry and the tainted SVID');
    assert.deepEqual(signer.calls[1]!.map((p) => p.entry_id).sort(), ['a', 'c']);
    assert.ok(cache.x509Identity('c'));
    assert.notEqual(cache.x509Identity('a'), before);
    assert.equal(cache.x509Identity('a')!.authorityId, 'authority-1');
    assert.deepEqual(reasons.sort(), ['new', 'new', 'new', 'tainted'], 'why each SVID was minted (metrics)');

    // Every update repeats the complete tainted list: the same list again re-keys nothing.
    minter.handleSync({ changed: [], removedIds: [] }, ['old-authority']);
    await minter.idle();
    assert.equal(signer.calls.length, 2);
  });

  it('does not loop when the server still signs with a tainted authority', async () => {
    cache.applySync({ full: true, deletedIds: [], upserted: [entry('a')] });
    const { signer, minter } = setup();
    signer.authority = () => 'bad';
    minter.start();
    await minter.idle();
    minter.handleSync({ changed: [], removedIds: [] }, ['bad']);
    await minter.idle();
    assert.equal(signer.calls.length, 2, 're-keyed once');
    assert.equal(minter.renewalDue('a'), clock.now() + 30_000, 'then tried again later, not at once');
  });

  it('re-mints changed entries, forgets removed ones', async () => {
    cache.applySync({ full: true, deletedIds: [], upserted: [entry('a'), entry('b')] });
    const { signer, minter } = setup();
    minter.start();
    await minter.idle();
    const result = cache.applySync({ full: false, deletedIds: ['b'], upserted: [entry('a', 2)] });
    minter.handleSync(result);
    await minter.idle();
    assert.deepEqual(signer.calls[1]!.map((p) => p.entry_id), ['a']);
    assert.equal(minter.renewalDue('b'), undefined);
    assert.equal((await store.load()).identities.find((i) => i.entryId === 'a')?.entryRevision, 2);
  });

  it('logs and drops refused results, trying again later while the entry exists', async () => {
    cache.applySync({ full: true, deletedIds: [], upserted: [entry('a'), entry('b')] });
    const { signer, minter } = setup();
    signer.refuse.add('b');
    minter.start();
    await minter.idle();
    assert.ok(cache.x509Identity('a'));
    assert.equal(cache.x509Identity('b'), undefined);
    assert.equal(minter.renewalDue('b'), clock.now() + 30_000);
    signer.refuse.clear();
    clock.advance(30_000);
    await minter.idle();
    assert.ok(cache.x509Identity('b'));
  });

  it('retries the whole batch with backoff when the server is unreachable', async () => {
    cache.applySync({ full: true, deletedIds: [], upserted: [entry('a')] });
    const { signer, minter } = setup(() => 0);
    signer.fail = true;
    minter.start();
    await minter.idle();
    assert.equal(signer.calls.length, 1);
    clock.advance(499);
    await minter.idle();
    assert.equal(signer.calls.length, 1);
    clock.advance(1); // attempt 0: 1000 ms base, equal jitter with random 0 → 500 ms
    await minter.idle();
    assert.equal(signer.calls.length, 2);
    signer.fail = false;
    clock.advance(1000); // attempt 1 → 1000 ms
    await minter.idle();
    assert.equal(signer.calls.length, 3);
    assert.ok(cache.x509Identity('a'));
  });

  it('sends at most 500 CSRs per call', async () => {
    const upserted = Array.from({ length: 1201 }, (_, i) => entry(`e${i}`));
    cache.applySync({ full: true, deletedIds: [], upserted });
    const { signer, minter } = setup();
    const started = process.hrtime.bigint();
    minter.start();
    await minter.idle();
    const ms = Number(process.hrtime.bigint() - started) / 1e6;
    console.log(`      minted 1,201 SVIDs (keys, CSRs, local signing, persistence): ${ms.toFixed(0)} ms`);
    assert.deepEqual(signer.calls.map((c) => c.length), [500, 500, 201]);
    assert.equal(cache.identities().length, 1201);
  });

  it('keeps a second batch with the server while the first is being signed, and serves the first at once', async () => {
    const upserted = Array.from({ length: 750 }, (_, i) => entry(`e${i}`));
    cache.applySync({ full: true, deletedIds: [], upserted });
    const { signer, minter } = setup();
    const held: (() => void)[] = [];
    const sign = signer.batchNewX509Svid.bind(signer);
    signer.batchNewX509Svid = async (params) => {
      await new Promise<void>((release) => held.push(release));
      return sign(params);
    };
    minter.start();
    await waitFor(() => held.length === 2);
    assert.deepEqual(signer.calls.length, 0, 'both requests wait in the server');
    held[0]!();
    await waitFor(() => cache.identities().length === 500);
    assert.equal(held.length, 2, 'no third batch while two are in flight');
    held[1]!();
    await minter.idle();
    assert.equal(cache.identities().length, 750);
    assert.deepEqual(signer.calls.map((c) => c.length), [500, 250]);
  });

  it('when one of two batches in flight fails, retries only that one after the backoff', async () => {
    const upserted = Array.from({ length: 600 }, (_, i) => entry(`e${i}`));
    cache.applySync({ full: true, deletedIds: [], upserted });
    const { signer, minter } = setup(() => 0);
    const sign = signer.batchNewX509Svid.bind(signer);
    let call = 0;
    let secondStarted!: () => void;
    const second = new Promise<void>((resolve) => (secondStarted = resolve));
    signer.batchNewX509Svid = async (params) => {
      if (call++ === 0) {
        await second; // fails only once the other batch is in flight too
        throw unavailable('server is down');
      }
      secondStarted();
      return sign(params);
    };
    minter.start();
    await minter.idle();
    assert.equal(cache.identities().length, 100, 'the second batch got through');
    assert.equal(call, 2);
    clock.advance(500);
    await minter.idle();
    assert.equal(call, 3);
    assert.equal(cache.identities().length, 600);
  });

  it('takes keys and CSRs from the key source it is given, once each', async () => {
    cache.applySync({ full: true, deletedIds: [], upserted: [entry('a'), entry('b')] });
    const prepared = [prepareKey(), prepareKey()];
    const handed: PreparedKey[] = [];
    minter = new SvidMinter({
      cache,
      store,
      signer: localSigner(pki, cache, clock),
      clock,
      keys: {
        take: () => {
          const k = prepared.shift() ?? prepareKey();
          handed.push(k);
          return k;
        },
      },
    });
    minter.start();
    await minter.idle();
    assert.equal(handed.length, 2);
    for (const id of ['a', 'b']) {
      const identity = cache.x509Identity(id)!;
      const k = handed.find((h) => h.privateKeyPkcs8.equals(identity.privateKeyPkcs8));
      assert.ok(k, `${id} is served with a key from the source`);
      assert.ok(parseCertificate(identity.chain[0]!, 'leaf').spkiDer.equals(k.spki), 'and its leaf certifies that key');
    }
  });

  it('after a restart, serves stored SVIDs and re-mints only what is stale', async () => {
    cache.applySync({ full: true, deletedIds: [], upserted: [entry('a'), entry('b')] });
    const first = setup();
    first.minter.start();
    await first.minter.idle();
    first.minter.stop();

    const snapshot = await store.load();
    const restarted = new SvidCache({ now: () => clock.now() });
    restarted.applySync({ full: true, deletedIds: [], upserted: [entry('a'), entry('b', 2)] });
    restarted.putIdentities(snapshot.identities);
    cache = restarted;
    const second = setup();
    second.minter.start(snapshot.identities);
    await second.minter.idle();
    assert.deepEqual(second.signer.calls.map((c) => c.map((p) => p.entry_id)), [['b']]);
    assert.ok(second.minter.renewalDue('a'));
  });
});

describe('SVID minter over BatchNewX509SVID (real gRPC over mutual TLS)', () => {
  it('mints authorised entries and drops refused ones', async () => {
    const pki = createTestPki();
    const double = await NodeApiDouble.start({ pki });
    double.signable.set('a', `spiffe://${TD}/w/a`);
    const agent = pki.identity(AGENT_ID);
    const client = new ServerClient({ serverAddress: double.address, trustDomain: TD, bootstrapAnchors: [pki.caDer] });
    client.setAgentSvid({ chain: agent.chain, privateKey: agent.privateKey });
    const cache = new SvidCache();
    const dir = mkdtempSync(join(tmpdir(), 'emblem-minter-grpc-'));
    const store = await openAgentStore({ dataDir: dir, trustDomain: TD });
    const minter = new SvidMinter({ cache, store, signer: client });
    try {
      cache.applySync({ full: true, deletedIds: [], upserted: [entry('a'), entry('b')] });
      minter.start();
      await minter.idle();
      assert.equal(double.batchCalls, 1);
      assert.deepEqual(double.clientIds, [AGENT_ID]);
      assert.ok(cache.x509Identity('a'));
      assert.equal(cache.x509Identity('b'), undefined);
      assert.ok(minter.renewalDue('b'), 'refused entry is retried later');
    } finally {
      minter.stop();
      client.close();
      await double.close();
      await store.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

async function waitFor(condition: () => boolean): Promise<void> {
  for (let i = 0; i < 2000 && !condition(); i++) await new Promise<void>((resolve) => setImmediate(resolve));
  assert.ok(condition(), 'condition not reached');
}
