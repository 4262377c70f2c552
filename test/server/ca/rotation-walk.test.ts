// Walks a 60-second CA through its whole life one second at a time with a controlled clock, and checks
// after every step that every SVID issued so far that is still within its validity verifies against
// the bundle as it is at that moment (SPIFFE.md §6.5: publish before use, remove only after expiry).
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { validateJwtSvid } from '../../../src/common/jwt-svid.js';
import { silentLogger } from '../../../src/common/logger.js';
import { readCertificate } from '../../../src/common/x509/cert-info.js';
import { generateKeyPair } from '../../../src/common/x509/keys.js';
import { verifyX509SvidChain } from '../../../src/common/x509/validate.js';
import { createAuthorityManager } from '../../../src/server/ca/authority-manager.js';
import { memoryKeyManager } from '../../../src/server/ca/key-manager.js';
import { createSvidSigner, type SignedX509Svid } from '../../../src/server/ca/svid-signer.js';
import { openDatastore } from '../../../src/server/datastore/open.js';
import type { Datastore } from '../../../src/server/datastore/types.js';

const TD = 'example.org';
const TTL = 60;

describe('server/ca rotation walk (60 s CA, controlled clock)', () => {
  let tmp: string;
  let ds: Datastore;

  before(async () => {
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'emblem-rotation-'));
    ds = await openDatastore({ kind: 'level', dataDir: tmp });
  });
  after(async () => {
    await ds.close();
    fs.rmSync(tmp, { recursive: true, force: true });
  });

  it('prepares at 30 s, activates at 50 s, drops the old CA after its notAfter, and never strands an SVID', async () => {
    const t0 = Math.floor(Date.now() / 1000) * 1000;
    let now = t0;
    const clock = (): number => now;
    const m = createAuthorityManager({
      datastore: ds,
      keyManager: memoryKeyManager(),
      trustDomain: TD,
      caTtlSeconds: TTL,
      logger: silentLogger(),
      now: clock,
    });
    const signer = createSvidSigner({ authorities: m, datastore: ds, trustDomain: TD, logger: silentLogger(), now: clock });
    await m.start();
    const a = m.activeX509().authority;
    const k0 = m.activeJwt().kid;
    assert.equal(a.notAfter, t0 / 1000 + TTL);

    const workloadKey = generateKeyPair().publicKey;
    const svids: SignedX509Svid[] = [];
    const tokens: { token: string; expiresAt: number }[] = [];
    let seq = m.bundle().sequence;
    let b: string | undefined;
    const events: string[] = [];

    for (let s = 0; s <= 125; s++) {
      now = t0 + s * 1000;
      await m.rotate();
      const bundle = m.bundle();
      const nowSec = now / 1000;
      const x509Ids = bundle.x509Authorities.map((der) => readCertificate(der).skid);

      if (s % 5 === 0) {
        const [svid] = await signer.signX509Batch([
          { spiffeId: `spiffe://${TD}/w/${s}`, publicKey: workloadKey, ttlSeconds: 3600, entryId: `e${s}`, agentId: 'agent', kind: 'x509' },
        ]);
        // Capped at the CA's notAfter, and signed by the authority the manager calls active.
        assert.equal(svid!.notAfter, m.activeX509().authority.notAfter);
        assert.equal(readCertificate(svid!.chain[0]!).akid, svid!.authorityId);
        assert.equal(svid!.authorityId, m.activeX509().authority.id);
        svids.push(svid!);
        const jwt = await signer.signJwt({ spiffeId: `spiffe://${TD}/w/${s}`, audience: ['db'], ttlSeconds: 3600, entryId: `e${s}`, agentId: 'agent' });
        assert.equal(jwt.authorityId, m.activeJwt().kid);
        assert.equal(jwt.expiresAt, m.activeJwt().authority.notAfter, 'a JWT-SVID never outlives its key');
        tokens.push(jwt);
      }

      if (bundle.sequence !== seq) events.push(`${s}: sequence ${seq} -> ${bundle.sequence}`);
      assert.ok(bundle.sequence >= seq, 'the sequence never goes back');
      seq = bundle.sequence;
      assert.deepEqual(await ds.getBundle(), bundle);

      if (s === 29) assert.deepEqual(x509Ids, [a.id], 'nothing prepared before half of the lifetime');
      if (s === 30) {
        assert.equal(x509Ids.length, 2, 'the successor is published at half of the lifetime');
        b = x509Ids[1];
        assert.equal(m.activeX509().authority.id, a.id);
        assert.equal(bundle.jwtAuthorities.length, 2, 'the JWT key follows the same schedule');
      }
      if (s === 49) assert.equal(m.activeX509().authority.id, a.id);
      if (s === 50) {
        assert.equal(m.activeX509().authority.id, b, 'the successor is active at 5/6 of the lifetime');
        assert.notEqual(m.activeJwt().kid, k0);
      }
      if (s === 60) assert.ok(x509Ids.includes(a.id), 'the old CA stays while its SVIDs may be valid (notAfter inclusive)');
      if (s === 61) {
        assert.ok(!x509Ids.includes(a.id), 'the old CA leaves after its notAfter');
        assert.equal(x509Ids[0], b);
        assert.equal(x509Ids.length, 2, "b's successor was prepared at 60 s (half of b's lifetime)");
        assert.ok(!m.list().some((x) => x.id === a.id), 'its journal row is pruned');
        assert.ok(!bundle.jwtAuthorities.some((k) => k.kid === k0));
      }

      for (const svid of svids) {
        if (nowSec > svid.notAfter) {
          assert.throws(() => verifyX509SvidChain(svid.chain, () => bundle.x509Authorities, now));
          continue;
        }
        assert.doesNotThrow(() => verifyX509SvidChain(svid.chain, (td) => (td === TD ? bundle.x509Authorities : undefined), now), `SVID ${svid.serial} at ${s}s`);
      }
      for (const t of tokens) {
        if (nowSec > t.expiresAt) continue;
        await validateJwtSvid(t.token, 'db', (td) => (td === TD ? bundle.jwtAuthorities : undefined), now);
      }
    }
    // The three X.509 CAs (a, b, and b's successor activated at 100 s) and three JWT keys bumped the
    // sequence at each prepare and each removal.
    assert.ok(events.length >= 5, events.join('\n'));
    assert.ok(svids.every((x) => x.notAfter - x.notBefore <= TTL + 10));
    const ledger = await ds.listSvids({ agentId: 'agent', pageSize: 1000 });
    assert.equal(ledger.items.length, svids.length + tokens.length);
  });
});
