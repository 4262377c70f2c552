import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { isEmblemError } from '../../../src/common/errors.js';
import { silentLogger } from '../../../src/common/logger.js';
import { readCertificate } from '../../../src/common/x509/cert-info.js';
import { createAuthorityManager, type AuthorityManager } from '../../../src/server/ca/authority-manager.js';
import { diskKeyManager } from '../../../src/server/ca/key-manager.js';
import { openDatastore } from '../../../src/server/datastore/open.js';
import type { AuthorityRecord, Datastore } from '../../../src/server/datastore/types.js';

const TD = 'example.org';

/** Bundle order follows creation time, which ties within one second: compare as sets. */
const sorted = (bufs: readonly Buffer[] | undefined): Buffer[] => [...(bufs ?? [])].sort(Buffer.compare);

describe('server/ca authority manager: start, restart, repair, taint, revoke', () => {
  let tmp: string;
  let dataDir: string;
  let keyDir: string;
  let ds: Datastore | undefined;

  beforeEach(() => {
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'emblem-authorities-'));
    dataDir = path.join(tmp, 'data');
    keyDir = path.join(tmp, 'keys');
  });
  afterEach(async () => {
    await ds?.close();
    ds = undefined;
    fs.rmSync(tmp, { recursive: true, force: true });
  });

  /** Opens the store (closing a previous one: a restart) and starts a fresh manager on it. */
  async function boot(opts: { caTtlSeconds?: number; refreshHintSeconds?: number } = {}): Promise<AuthorityManager> {
    await ds?.close();
    ds = await openDatastore({ kind: 'level', dataDir });
    const m = createAuthorityManager({ datastore: ds, keyManager: diskKeyManager(keyDir), trustDomain: TD, logger: silentLogger(), ...opts });
    await m.start();
    return m;
  }

  const byStatus = (m: AuthorityManager, kind: 'x509' | 'jwt', status: AuthorityRecord['status']): AuthorityRecord[] =>
    m.list().filter((a) => a.kind === kind && a.status === status);

  it('first start creates and publishes one active X.509 CA and one JWT key', async () => {
    const m = await boot({ refreshHintSeconds: 300 });
    const rows = m.list();
    assert.deepEqual(rows.map((a) => [a.kind, a.status]).sort(), [['jwt', 'active'], ['x509', 'active']]);

    const { issuer, authority } = m.activeX509();
    const info = readCertificate(authority.certificate!);
    assert.equal(info.isCa, true);
    assert.equal(info.selfIssued, true);
    assert.deepEqual(info.uris, [`spiffe://${TD}`]);
    assert.equal(authority.id, info.skid, 'X.509 authority ID is the SKID');
    assert.equal(authority.notAfter - authority.createdAt, 86_400, 'default CA TTL is 24 h');
    assert.equal(issuer.notAfter, authority.notAfter);

    const jwt = m.activeJwt();
    assert.equal(jwt.kid, jwt.authority.id);
    assert.equal(jwt.authority.notAfter - jwt.authority.createdAt, 86_400, 'JWT key TTL defaults to the CA TTL');

    const bundle = m.bundle();
    assert.ok(bundle.sequence >= 1);
    assert.equal(bundle.refreshHint, 300);
    assert.deepEqual(bundle.x509Authorities, [authority.certificate]);
    assert.deepEqual(bundle.jwtAuthorities.map((k) => k.kid), [jwt.kid]);
    assert.deepEqual(await ds!.getBundle(), bundle, 'the stored bundle is the one served');

    assert.equal(fs.statSync(keyDir).mode & 0o777, 0o700);
    const files = fs.readdirSync(keyDir).sort();
    assert.deepEqual(files, rows.map((a) => `${a.keyId}.pem`).sort());
    for (const f of files) assert.equal(fs.statSync(path.join(keyDir, f)).mode & 0o777, 0o600, f);
    assert.ok(!fs.readFileSync(path.join(keyDir, files[0]!), 'utf8').includes(authority.id));
  });

  it('a restart reuses the authorities and leaves the bundle (and its sequence) unchanged', async () => {
    const first = await boot();
    const ids = first.list().map((a) => a.id);
    const bundle = first.bundle();
    const second = await boot();
    assert.deepEqual(second.list().map((a) => a.id), ids);
    assert.equal(second.activeX509().authority.id, first.activeX509().authority.id);
    assert.equal(second.activeJwt().kid, first.activeJwt().kid);
    assert.deepEqual(second.bundle(), bundle);
    assert.equal((await ds!.getBundle())!.sequence, bundle.sequence);
  });

  it('prepare publishes at once, activate switches signing, taint and revoke follow the rules', async () => {
    const m = await boot();
    const a = m.activeX509().authority;
    const seq0 = m.bundle().sequence;

    const b = await m.prepare('x509');
    assert.equal(b.status, 'prepared');
    assert.equal(m.bundle().sequence, seq0 + 1);
    assert.deepEqual(sorted(m.bundle().x509Authorities), sorted([a.certificate!, b.certificate!]));
    await assert.rejects(m.prepare('x509'), (err) => isEmblemError(err, 'failed_precondition'), 'one prepared at a time');
    await assert.rejects(m.prepare('rsa' as 'x509'), (err) => isEmblemError(err, 'invalid_argument'));

    await assert.rejects(m.activate(a.id), (err) => isEmblemError(err, 'failed_precondition'), 'only a prepared one');
    await assert.rejects(m.activate('nope'), (err) => isEmblemError(err, 'not_found'));
    await assert.rejects(m.taint(a.id), (err) => isEmblemError(err, 'failed_precondition'), 'the active one cannot be tainted');
    await assert.rejects(m.taint(b.id), (err) => isEmblemError(err, 'failed_precondition'), 'a prepared one cannot be tainted');
    await assert.rejects(m.revoke(a.id), (err) => isEmblemError(err, 'failed_precondition'), 'only a tainted one can be revoked');
    assert.deepEqual(m.taintedAuthorityIds(), []);

    await m.activate(b.id);
    assert.equal(m.activeX509().authority.id, b.id);
    assert.deepEqual(byStatus(m, 'x509', 'old').map((x) => x.id), [a.id]);
    assert.equal(m.bundle().sequence, seq0 + 1, 'activation does not change the bundle');

    const tainted = await m.taint(a.id);
    assert.equal(tainted.status, 'tainted');
    assert.equal(tainted.tainted, true);
    assert.deepEqual(m.taintedAuthorityIds(), [a.id]);
    assert.equal(m.bundle().sequence, seq0 + 1, 'a tainted authority stays in the bundle');
    await assert.rejects(m.taint(a.id), (err) => isEmblemError(err, 'failed_precondition'));

    const revoked = await m.revoke(a.id);
    assert.equal(revoked.status, 'revoked');
    assert.equal(m.bundle().sequence, seq0 + 2);
    assert.deepEqual(m.bundle().x509Authorities, [b.certificate]);
    assert.deepEqual((await ds!.getBundle())!.x509Authorities, [b.certificate]);
    assert.deepEqual(m.taintedAuthorityIds(), [a.id], 'agents still re-key SVIDs of a revoked authority');
    assert.equal(fs.existsSync(path.join(keyDir, `${a.keyId}.pem`)), false, 'the revoked key is deleted');
    await assert.rejects(m.revoke(a.id), (err) => isEmblemError(err, 'failed_precondition'));

    // The same for the JWT key.
    const k0 = m.activeJwt().kid;
    const k1 = await m.prepare('jwt');
    assert.deepEqual(m.bundle().jwtAuthorities.map((k) => k.kid).sort(), [k0, k1.id].sort());
    await m.activate(k1.id);
    assert.equal(m.activeJwt().kid, k1.id);
    await assert.rejects(m.taint(k1.id), (err) => isEmblemError(err, 'failed_precondition'));
    await m.taint(k0);
    await m.revoke(k0);
    assert.deepEqual(m.bundle().jwtAuthorities.map((k) => k.kid), [k1.id]);

    // All of it survives a restart.
    const again = await boot();
    assert.deepEqual(again.list(), m.list());
    assert.deepEqual(again.bundle(), m.bundle());
    assert.deepEqual(again.taintedAuthorityIds().sort(), [a.id, k0].sort());
  });

  it('repairs a bundle write lost after the journal write (prepare, revoke)', async () => {
    const m = await boot();
    const before = m.bundle();
    const b = await m.prepare('x509');
    await ds!.setBundle(before); // as if killed between the journal write and the bundle write
    const again = await boot();
    assert.deepEqual(sorted(again.bundle().x509Authorities), sorted([m.activeX509().authority.certificate!, b.certificate!]));
    assert.ok(again.bundle().sequence > before.sequence);

    // revoke: the journal says revoked, the bundle write was lost.
    await again.activate(b.id);
    const old = byStatus(again, 'x509', 'old')[0]!;
    await again.taint(old.id);
    const beforeRevoke = again.bundle();
    await again.revoke(old.id);
    await ds!.setBundle(beforeRevoke);
    const third = await boot();
    assert.deepEqual(third.bundle().x509Authorities, [b.certificate]);
    assert.equal(third.bundle().sequence, beforeRevoke.sequence + 1);
  });

  it('finishes an activation cut between its two journal writes', async () => {
    const m = await boot();
    const a = m.activeX509().authority;
    const b = await m.prepare('x509');
    await ds!.putAuthority({ ...a, status: 'old' }); // first write of activate(b), then kill -9
    const again = await boot();
    assert.equal(again.activeX509().authority.id, b.id);
    assert.deepEqual(byStatus(again, 'x509', 'old').map((x) => x.id), [a.id]);
    assert.equal(again.list().length, 3);
  });

  it('removes orphan keys, drops prepared rows without key, retires an active authority without key', async () => {
    const m = await boot();
    const a = m.activeX509().authority;
    const prepared = await m.prepare('jwt');
    fs.writeFileSync(path.join(keyDir, 'x509-orphan.pem'), fs.readFileSync(path.join(keyDir, `${a.keyId}.pem`)), { mode: 0o600 });
    fs.rmSync(path.join(keyDir, `${a.keyId}.pem`));
    fs.rmSync(path.join(keyDir, `${prepared.keyId}.pem`));

    const again = await boot();
    assert.equal(fs.existsSync(path.join(keyDir, 'x509-orphan.pem')), false);
    assert.equal(again.list().find((x) => x.id === prepared.id), undefined);
    assert.ok(!again.bundle().jwtAuthorities.some((k) => k.kid === prepared.id));
    assert.equal(again.list().find((x) => x.id === a.id)?.status, 'old');
    const fresh = again.activeX509().authority;
    assert.notEqual(fresh.id, a.id);
    assert.deepEqual(sorted(again.bundle().x509Authorities), sorted([a.certificate!, fresh.certificate!]), 'SVIDs of the retired CA stay valid');
  });

  it('refuses bad options and calls before start', async () => {
    ds = await openDatastore({ kind: 'level', dataDir });
    const base = { datastore: ds, keyManager: diskKeyManager(keyDir), trustDomain: TD, logger: silentLogger() };
    assert.throws(() => createAuthorityManager({ ...base, caTtlSeconds: 0 }), (err) => isEmblemError(err, 'invalid_argument'));
    assert.throws(() => createAuthorityManager({ ...base, trustDomain: 'Bad TD' }), (err) => isEmblemError(err, 'invalid_argument'));
    const m = createAuthorityManager(base);
    assert.throws(() => m.activeX509(), (err) => isEmblemError(err, 'unavailable'));
    await assert.rejects(m.prepare('x509'), (err) => isEmblemError(err, 'unavailable'));
    assert.deepEqual(await ds.listAuthorities(), []);
  });
});
