import assert from 'node:assert/strict';
import type { AuthorityRecord } from '../../../src/server/datastore/types.js';
import type { TrustBundle } from '../../../src/common/trust-bundle.js';
import { activateAt, lifetimeOf, planRotation, prepareAt } from '../../../src/server/ca/rotation.js';
import { bundleContents, nextBundle, trustAnchorOf } from '../../../src/server/ca/bundle-builder.js';
import { planRepair } from '../../../src/server/ca/journal-repair.js';

const DAY = 86_400;

function rec(p: Partial<AuthorityRecord> & Pick<AuthorityRecord, 'id'>): AuthorityRecord {
  return {
    kind: 'x509',
    status: 'active',
    notBefore: 990,
    notAfter: 1060,
    certificate: Buffer.from(`cert-${p.id}`),
    keyId: `key-${p.id}`,
    createdAt: 1000,
    ...p,
  };
}

describe('server/ca rotation schedule', () => {
  it('prepares at 1/2 and activates at 1/6 of the lifetime left, counted from creation', () => {
    const a = rec({ id: 'a', notBefore: 990, createdAt: 1000, notAfter: 1060 });
    assert.equal(lifetimeOf(a), 60);
    assert.equal(prepareAt(a), 1030);
    assert.equal(activateAt(a), 1050);
  });

  it('caps the lead times at 30 days and 7 days', () => {
    const a = rec({ id: 'a', notBefore: 0, createdAt: 0, notAfter: 365 * DAY });
    assert.equal(prepareAt(a), 365 * DAY - 30 * DAY);
    assert.equal(activateAt(a), 365 * DAY - 7 * DAY);
  });

  it('plans nothing early, prepare at half time, activate the prepared one at 5/6', () => {
    const a = rec({ id: 'a' });
    assert.deepEqual(planRotation([a], 'x509', 1029), []);
    assert.deepEqual(planRotation([a], 'x509', 1030), [{ action: 'prepare', kind: 'x509' }]);
    const b = rec({ id: 'b', status: 'prepared', createdAt: 1030, notBefore: 1020, notAfter: 1090 });
    assert.deepEqual(planRotation([a, b], 'x509', 1049), []);
    assert.deepEqual(planRotation([a, b], 'x509', 1050), [{ action: 'activate', kind: 'x509', id: 'b' }]);
    // The other kind is planned on its own.
    assert.deepEqual(planRotation([a, b], 'jwt', 1050), [{ action: 'prepare', kind: 'jwt' }, { action: 'activate', kind: 'jwt' }]);
  });

  it('prepares and activates at once when activation is due and nothing is prepared', () => {
    assert.deepEqual(planRotation([rec({ id: 'a' })], 'x509', 1055), [
      { action: 'prepare', kind: 'x509' },
      { action: 'activate', kind: 'x509' },
    ]);
  });

  it('prunes non-active authorities only after their notAfter (inclusive validity)', () => {
    const old = rec({ id: 'old', status: 'old', notAfter: 1060 });
    const revoked = rec({ id: 'rev', status: 'revoked', notAfter: 1060 });
    const active = rec({ id: 'act', createdAt: 1050, notBefore: 1040, notAfter: 1110 });
    assert.deepEqual(planRotation([old, revoked, active], 'x509', 1060), []);
    assert.deepEqual(planRotation([old, revoked, active], 'x509', 1061), [
      { action: 'prune', kind: 'x509', id: 'old' },
      { action: 'prune', kind: 'x509', id: 'rev' },
    ]);
  });
});

describe('server/ca bundle builder', () => {
  const jwk = { kty: 'EC', crv: 'P-256', x: 'xx', y: 'yy' };

  it('publishes prepared, active, old and tainted unexpired authorities; never revoked or expired ones', () => {
    const rows = [
      rec({ id: 'p', status: 'prepared', createdAt: 1003 }),
      rec({ id: 'a', status: 'active', createdAt: 1002 }),
      rec({ id: 'o', status: 'old', createdAt: 1001 }),
      rec({ id: 't', status: 'tainted', createdAt: 1000 }),
      rec({ id: 'r', status: 'revoked' }),
      rec({ id: 'e', status: 'old', notAfter: 1010 }),
      rec({ id: 'k1', kind: 'jwt', certificate: undefined, publicKey: jwk, notAfter: 2000 }),
      rec({ id: 'k2', kind: 'jwt', status: 'revoked', certificate: undefined, publicKey: jwk }),
    ];
    const c = bundleContents(rows, 1020);
    assert.deepEqual(c.x509Authorities.map((b) => b.toString()), ['cert-t', 'cert-o', 'cert-a', 'cert-p']);
    assert.deepEqual(c.jwtAuthorities, [{ kid: 'k1', publicKey: jwk, expiresAt: 2000 }]);
  });

  it('publishes the upstream root once for intermediates sharing it', () => {
    const root = Buffer.from('root');
    const a = rec({ id: 'a', upstreamChain: [Buffer.from('up'), root] });
    const b = rec({ id: 'b', status: 'prepared', upstreamChain: [Buffer.from('up'), root] });
    assert.equal(trustAnchorOf(a), root);
    assert.deepEqual(bundleContents([a, b], 1020).x509Authorities, [root]);
  });

  it('bumps the sequence only when the contents change', () => {
    const contents = bundleContents([rec({ id: 'a' })], 1020);
    const first = nextBundle(undefined, contents, 'example.org', 300);
    assert.ok(first);
    assert.equal(first.sequence, 1);
    assert.equal(first.refreshHint, 300);
    const copy: TrustBundle = { ...first, x509Authorities: first.x509Authorities.map((b) => Buffer.from(b)) };
    assert.equal(nextBundle(copy, contents, 'example.org', 300), undefined);
    assert.equal(nextBundle(copy, contents, 'example.org', 60)?.sequence, 2);
    const more = bundleContents([rec({ id: 'a' }), rec({ id: 'b', status: 'prepared' })], 1020);
    assert.equal(nextBundle(copy, more, 'example.org', 300)?.sequence, 2);
  });
});

describe('server/ca journal repair', () => {
  it('drops prepared rows without key, retires an active one without key, keeps old rows without key', () => {
    const rows = [
      rec({ id: 'p', status: 'prepared' }),
      rec({ id: 'a', status: 'active' }),
      rec({ id: 'o', status: 'old' }),
      rec({ id: 'j', kind: 'jwt', status: 'active', certificate: undefined, publicKey: { kty: 'EC' } }),
    ];
    const plan = planRepair({ authorities: rows, hasKey: (k) => k === 'key-j' });
    assert.deepEqual(plan.drop.map((s) => s.record.id), ['p']);
    assert.deepEqual(plan.demote.map((s) => [s.record.id, s.record.status]), [['a', 'old']]);
  });

  it('keeps the newest of several active rows of a kind', () => {
    const rows = [rec({ id: 'a1', createdAt: 1000 }), rec({ id: 'a2', createdAt: 1010 })];
    const plan = planRepair({ authorities: rows, hasKey: () => true });
    assert.deepEqual(plan.demote.map((s) => s.record.id), ['a1']);
  });

  it('retires authorities that do not match the configured upstream, and drops malformed rows', () => {
    const up = Buffer.from('upstream');
    const rows = [
      rec({ id: 'self' }),
      rec({ id: 'inter', status: 'prepared', upstreamChain: [up] }),
      rec({ id: 'bad', certificate: undefined }),
    ];
    const withUpstream = planRepair({ authorities: rows, hasKey: () => true, upstreamCertificate: up });
    assert.deepEqual(withUpstream.drop.map((s) => s.record.id), ['bad']);
    assert.deepEqual(withUpstream.demote.map((s) => s.record.id), ['self']);
    const selfSigned = planRepair({ authorities: rows, hasKey: () => true });
    assert.deepEqual(selfSigned.drop.map((s) => s.record.id).sort(), ['bad', 'inter']);
    assert.deepEqual(selfSigned.demote, []);
  });
});
