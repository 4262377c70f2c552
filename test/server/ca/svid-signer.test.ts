import assert from 'node:assert/strict';
import { createHash, X509Certificate } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { isEmblemError } from '../../../src/common/errors.js';
import { validateJwtSvid } from '../../../src/common/jwt-svid.js';
import { silentLogger } from '../../../src/common/logger.js';
import { readCertificate } from '../../../src/common/x509/cert-info.js';
import { exportSpkiDer, generateKeyPair } from '../../../src/common/x509/keys.js';
import { verifyX509SvidChain } from '../../../src/common/x509/validate.js';
import { createAuthorityManager, type AuthorityManager } from '../../../src/server/ca/authority-manager.js';
import { memoryKeyManager } from '../../../src/server/ca/key-manager.js';
import { createSvidSigner, jwtTokenId, type SvidSigner, type X509SvidRequest } from '../../../src/server/ca/svid-signer.js';
import { openDatastore } from '../../../src/server/datastore/open.js';
import type { Datastore } from '../../../src/server/datastore/types.js';

const TD = 'example.org';

describe('server/ca SVID signer', () => {
  let tmp: string;
  let ds: Datastore;
  let m: AuthorityManager;
  let signer: SvidSigner;
  let now: number;
  const t0 = Math.floor(Date.now() / 1000) * 1000;

  beforeEach(async () => {
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'emblem-signer-'));
    ds = await openDatastore({ kind: 'level', dataDir: tmp });
    now = t0;
    const clock = (): number => now;
    m = createAuthorityManager({ datastore: ds, keyManager: memoryKeyManager(), trustDomain: TD, caTtlSeconds: 7200, jwtKeyTtlSeconds: 600, logger: silentLogger(), now: clock });
    await m.start();
    signer = createSvidSigner({ authorities: m, datastore: ds, trustDomain: TD, defaults: { x509SvidTtl: 1800 }, logger: silentLogger(), now: clock });
  });
  afterEach(async () => {
    await ds.close();
    fs.rmSync(tmp, { recursive: true, force: true });
  });

  const bundleFor = (td: string): Buffer[] | undefined => (td === TD ? m.bundle().x509Authorities : undefined);

  it('signs a batch, records one ledger row per SVID, and applies default TTLs per kind', async () => {
    const key = generateKeyPair().publicKey;
    const requests: X509SvidRequest[] = [
      { spiffeId: `spiffe://${TD}/web`, publicKey: key, dnsNames: ['web.example.org'], ttlSeconds: 0, entryId: 'e1', agentId: 'agent-1', kind: 'x509' },
      { spiffeId: `spiffe://${TD}/db`, publicKey: exportSpkiDer(key), ttlSeconds: 120, entryId: 'e2', agentId: 'agent-1', kind: 'x509' },
      { spiffeId: `spiffe://${TD}/emblem/agent/join_token/x`, publicKey: key, entryId: '', agentId: 'agent-1', kind: 'agent' },
    ];
    const out = await signer.signX509Batch(requests);
    assert.equal(out.length, 3);
    const nowSec = t0 / 1000;
    assert.deepEqual(out.map((s) => s.notAfter - nowSec), [1800, 120, 3600]);
    out.forEach((s, i) => {
      assert.equal(s.chain.length, 1, 'self-signed CA: the chain is the leaf alone');
      const info = readCertificate(s.chain[0]!);
      assert.equal(info.serial, s.serial);
      assert.deepEqual(info.uris, [requests[i]!.spiffeId]);
      assert.equal(info.notBefore, s.notBefore);
      assert.equal(s.authorityId, m.activeX509().authority.id);
      verifyX509SvidChain(s.chain, bundleFor, now);
    });
    assert.deepEqual(readCertificate(out[0]!.chain[0]!).dnsNames, ['web.example.org']);

    const ledger = await ds.listSvids({ agentId: 'agent-1' });
    assert.equal(ledger.items.length, 3);
    const bySerial = new Map(ledger.items.map((r) => [r.serial, r]));
    out.forEach((s, i) => {
      const row = bySerial.get(s.serial);
      assert.ok(row, `ledger row for ${s.serial}`);
      assert.deepEqual(row, {
        serial: s.serial,
        spiffeId: requests[i]!.spiffeId,
        entryId: requests[i]!.entryId,
        agentId: 'agent-1',
        kind: requests[i]!.kind,
        notBefore: s.notBefore,
        notAfter: s.notAfter,
        authorityId: s.authorityId,
        issuedAt: nowSec,
      });
    });
  });

  it('never issues an SVID that outlives its CA', async () => {
    now = t0 + 7000 * 1000; // 200 s before the CA's notAfter; no rotate() on purpose
    const [svid] = await signer.signX509Batch([
      { spiffeId: `spiffe://${TD}/web`, publicKey: generateKeyPair().publicKey, ttlSeconds: 3600, entryId: 'e', agentId: 'a', kind: 'x509' },
    ]);
    assert.equal(svid!.notAfter, m.activeX509().authority.notAfter);
    assert.equal(new X509Certificate(svid!.chain[0]!).validTo, new X509Certificate(m.activeX509().authority.certificate!).validTo);
  });

  it('rejects a whole batch with a bad request and records nothing', async () => {
    const key = generateKeyPair().publicKey;
    const good: X509SvidRequest = { spiffeId: `spiffe://${TD}/ok`, publicKey: key, entryId: 'e', agentId: 'a', kind: 'x509' };
    const bad: X509SvidRequest[] = [
      { ...good, spiffeId: 'spiffe://other.org/x' },
      { ...good, spiffeId: `spiffe://${TD}` },
      { ...good, ttlSeconds: -1 },
      { ...good, ttlSeconds: 1.5 },
      { ...good, kind: 'jwt' as 'x509' },
      { ...good, dnsNames: ['bad name'] },
      { ...good, publicKey: Buffer.from('not a key') },
    ];
    for (const b of bad) {
      await assert.rejects(signer.signX509Batch([good, b]), (err) => isEmblemError(err, 'invalid_argument'), JSON.stringify(b.spiffeId));
    }
    assert.deepEqual((await ds.listSvids({})).items, []);
    assert.deepEqual(await signer.signX509Batch([]), []);
  });

  it('signs JWT-SVIDs capped at the key expiry and records them by token ID', async () => {
    const first = await signer.signJwt({ spiffeId: `spiffe://${TD}/web`, audience: ['db'], entryId: 'e1', agentId: 'agent-1' });
    assert.equal(first.expiresAt, t0 / 1000 + 300, 'default JWT-SVID TTL');
    assert.equal(first.authorityId, m.activeJwt().kid);
    const ok = await validateJwtSvid(first.token, 'db', (td) => (td === TD ? m.bundle().jwtAuthorities : undefined), now);
    assert.equal(ok.spiffeId.uri, `spiffe://${TD}/web`);

    now = t0 + 500 * 1000; // the 600 s key has 100 s left (no rotate() on purpose)
    const capped = await signer.signJwt({ spiffeId: `spiffe://${TD}/web`, audience: ['db'], ttlSeconds: 3600, entryId: 'e1', agentId: 'agent-1' });
    assert.equal(capped.expiresAt, m.activeJwt().authority.notAfter);
    assert.equal(capped.expiresAt, t0 / 1000 + 600);

    const ledger = (await ds.listSvids({ spiffeId: `spiffe://${TD}/web` })).items;
    assert.deepEqual(ledger.map((r) => r.serial).sort(), [jwtTokenId(first.token), jwtTokenId(capped.token)].sort());
    assert.equal(jwtTokenId(first.token), createHash('sha256').update(first.token).digest('hex').slice(0, 32));
    assert.ok(ledger.every((r) => r.kind === 'jwt' && r.authorityId === m.activeJwt().kid));

    now = t0 + 601 * 1000;
    await assert.rejects(signer.signJwt({ spiffeId: `spiffe://${TD}/web`, audience: ['db'], entryId: 'e1', agentId: 'a' }), (err) => isEmblemError(err, 'unavailable'));
    await assert.rejects(signer.signJwt({ spiffeId: 'spiffe://other.org/web', audience: ['db'], entryId: 'e1', agentId: 'a' }), (err) => isEmblemError(err, 'invalid_argument'));
  });

  it('signs a batch of 1,000 including the ledger write (throughput)', async function () {
    const key = exportSpkiDer(generateKeyPair().publicKey);
    const requests: X509SvidRequest[] = Array.from({ length: 1000 }, (_, i) => ({
      spiffeId: `spiffe://${TD}/ns/default/sa/w${i}`, publicKey: key, ttlSeconds: 0, entryId: `e${i}`, agentId: 'bulk', kind: 'x509',
    }));
    await signer.signX509Batch(requests.slice(0, 50)); // warm-up
    const start = process.hrtime.bigint();
    const out = await signer.signX509Batch(requests);
    const ms = Number(process.hrtime.bigint() - start) / 1e6;
    assert.equal(out.length, 1000);
    assert.equal(new Set(out.map((s) => s.serial)).size, 1000);
    let ledgerRows = 0;
    let pageToken = '';
    do {
      const page = await ds.listSvids({ agentId: 'bulk', pageSize: 500, pageToken });
      ledgerRows += page.items.length;
      pageToken = page.nextPageToken;
    } while (pageToken);
    assert.equal(ledgerRows, 1050);
    const rate = Math.round(1000 / (ms / 1000));
    this.test!.title += ` — ${ms.toFixed(0)} ms, ${rate} certs/s`;
    assert.ok(rate > 500, `${rate} certs/s`);
  });
});
