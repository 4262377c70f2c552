import assert from 'node:assert/strict';
import { EmblemError } from '../../../src/common/errors.js';
import type { EntryProto } from '../../../src/server/entries/convert.js';
import { entryFromProto, entryToProto } from '../../../src/server/entries/convert.js';
import {
  isValidDnsName,
  validateEntryUpdate,
  validateNewEntry,
  type EntryInput,
  type EntryValidationContext,
} from '../../../src/server/entries/validate.js';
import { entryDefaults } from '../../helpers/records.js';

const NOW = 1_800_000_000;
const ctx: EntryValidationContext = { trustDomain: 'example.org', knownFederatedTrustDomains: new Set(['partner.org']), now: NOW };

const base = (): EntryInput => ({
  spiffe_id: 'spiffe://example.org/ns/web',
  parent_id: 'spiffe://example.org/emblem/agent/join_token/n1',
  selectors: [{ type: 'unix', value: 'uid:1000' }],
});

function rejects(fields: EntryInput, field: string, message?: RegExp): void {
  assert.throws(
    () => validateNewEntry({ ...base(), ...fields }, ctx),
    (err: unknown) => {
      assert.ok(err instanceof EmblemError, String(err));
      assert.equal(err.code, 'invalid_argument');
      assert.ok(err.message.startsWith(`${field}:`), `message names the field: ${err.message}`);
      if (message) assert.match(err.message, message);
      return true;
    },
  );
}

const accepts = (fields: EntryInput) => validateNewEntry({ ...base(), ...fields }, ctx);

describe('entry validation', () => {
  it('accepts a minimal entry, fills defaults and generates an id', () => {
    const e = accepts({});
    assert.match(e.id, /^[0-9a-f-]{36}$/);
    assert.deepEqual({ ...e, id: '' }, {
      id: '',
      spiffeId: 'spiffe://example.org/ns/web',
      parentId: 'spiffe://example.org/emblem/agent/join_token/n1',
      selectors: [{ type: 'unix', value: 'uid:1000' }],
      ...entryDefaults(),
    });
    assert.notEqual(accepts({}).id, e.id);
  });

  it('id: keeps a valid one, rejects a bad one', () => {
    assert.equal(accepts({ id: 'web-1.prod_A' }).id, 'web-1.prod_A');
    assert.equal(accepts({ id: 'x'.repeat(128) }).id.length, 128);
    rejects({ id: 'has space' }, 'id');
    rejects({ id: 'x'.repeat(129) }, 'id');
    rejects({ id: 'a/b' }, 'id');
  });

  it('spiffe_id: a workload ID in our trust domain, not reserved', () => {
    assert.equal(accepts({ spiffe_id: 'spiffe://example.org/emblem/other' }).spiffeId, 'spiffe://example.org/emblem/other');
    rejects({ spiffe_id: '' }, 'spiffe_id', /required/);
    rejects({ spiffe_id: 'spiffe://example.org' }, 'spiffe_id', /no path/);
    rejects({ spiffe_id: 'spiffe://other.org/ns/web' }, 'spiffe_id', /not in trust domain/);
    rejects({ spiffe_id: 'spiffe://Example.org/ns/web' }, 'spiffe_id', /uppercase/);
    rejects({ spiffe_id: 'spiffe://example.org/ns//web' }, 'spiffe_id');
    rejects({ spiffe_id: 'spiffe://example.org/emblem/server' }, 'spiffe_id', /reserved/);
    rejects({ spiffe_id: 'spiffe://example.org/emblem/agent/join_token/x' }, 'spiffe_id', /reserved/);
  });

  it('parent_id: a SPIFFE ID with a path in our trust domain', () => {
    assert.equal(accepts({ parent_id: 'spiffe://example.org/emblem/server' }).parentId, 'spiffe://example.org/emblem/server');
    assert.equal(accepts({ parent_id: 'spiffe://example.org/ns/parent' }).parentId, 'spiffe://example.org/ns/parent');
    rejects({ parent_id: '' }, 'parent_id', /required/);
    rejects({ parent_id: 'spiffe://other.org/emblem/server' }, 'parent_id', /not in trust domain/);
    rejects({ parent_id: 'spiffe://example.org' }, 'parent_id');
    rejects({ parent_id: 'http://example.org/x' }, 'parent_id');
  });

  it('selectors: at least one, each valid, no duplicates', () => {
    assert.equal(accepts({ selectors: [{ type: 'unix', value: 'uid:1' }, { type: 'unix', value: 'gid:1' }] }).selectors.length, 2);
    rejects({ selectors: [] }, 'selectors', /at least one/);
    rejects({ selectors: [{ type: 'UNIX', value: 'uid:1' }] }, 'selectors');
    rejects({ selectors: [{ type: 'unix', value: '' }] }, 'selectors');
    rejects({ selectors: [{ type: 'unix', value: 'uid:1' }, { type: 'unix', value: 'uid:1' }] }, 'selectors', /duplicate/);
    rejects({ selectors: [{ type: 'unix' } as never] }, 'selectors');
  });

  it('x509_svid_ttl: 0 or 60..2592000; jwt_svid_ttl: 0 or 30..86400', () => {
    assert.equal(accepts({ x509_svid_ttl: 60 }).x509SvidTtl, 60);
    assert.equal(accepts({ x509_svid_ttl: 2_592_000 }).x509SvidTtl, 2_592_000);
    rejects({ x509_svid_ttl: 59 }, 'x509_svid_ttl');
    rejects({ x509_svid_ttl: 2_592_001 }, 'x509_svid_ttl');
    rejects({ x509_svid_ttl: -1 }, 'x509_svid_ttl');
    rejects({ x509_svid_ttl: 60.5 }, 'x509_svid_ttl');
    assert.equal(accepts({ jwt_svid_ttl: 30 }).jwtSvidTtl, 30);
    assert.equal(accepts({ jwt_svid_ttl: 86_400 }).jwtSvidTtl, 86_400);
    rejects({ jwt_svid_ttl: 29 }, 'jwt_svid_ttl');
    rejects({ jwt_svid_ttl: 86_401 }, 'jwt_svid_ttl');
  });

  it('dns_names: RFC 1123 names, optional leading wildcard, at most 100, no duplicates', () => {
    assert.deepEqual(accepts({ dns_names: ['web.example.org', '*.svc.local', 'localhost', 'a-1.b'] }).dnsNames, [
      'web.example.org',
      '*.svc.local',
      'localhost',
      'a-1.b',
    ]);
    assert.equal(accepts({ dns_names: Array.from({ length: 100 }, (_, i) => `h${i}.example.org`) }).dnsNames.length, 100);
    rejects({ dns_names: Array.from({ length: 101 }, (_, i) => `h${i}.example.org`) }, 'dns_names', /at most 100/);
    for (const bad of ['', '-a.example.org', 'a-.example.org', 'a..b', 'a.*.b', '*', 'under_score.org', 'x'.repeat(64) + '.org', 'a b']) {
      rejects({ dns_names: [bad] }, 'dns_names');
      assert.equal(isValidDnsName(bad), false, bad);
    }
    rejects({ dns_names: ['A.example.org', 'a.example.org'] }, 'dns_names', /duplicate/);
  });

  it('federates_with: valid trust domains with a stored bundle', () => {
    assert.deepEqual(accepts({ federates_with: ['partner.org'] }).federatesWith, ['partner.org']);
    assert.deepEqual(accepts({ federates_with: ['spiffe://partner.org'] }).federatesWith, ['partner.org']);
    rejects({ federates_with: ['unknown.org'] }, 'federates_with', /unknown federated trust domain unknown\.org/);
    rejects({ federates_with: ['Partner.org'] }, 'federates_with');
    rejects({ federates_with: ['example.org'] }, 'federates_with', /own trust domain/);
    rejects({ federates_with: ['partner.org', 'partner.org'] }, 'federates_with', /duplicate/);
  });

  it('hint: at most 1024 bytes', () => {
    assert.equal(accepts({ hint: 'é'.repeat(512) }).hint.length, 512);
    rejects({ hint: 'é'.repeat(513) }, 'hint');
  });

  it('expires_at: 0 or in the future', () => {
    assert.equal(accepts({ expires_at: NOW + 1 }).expiresAt, NOW + 1);
    rejects({ expires_at: NOW }, 'expires_at', /past/);
    rejects({ expires_at: -5 }, 'expires_at');
  });

  it('admin and downstream must be booleans', () => {
    assert.equal(accepts({ admin: true, downstream: true }).downstream, true);
    rejects({ admin: 'yes' as never }, 'admin');
  });

  it('updates require an id and validate every field the same way', () => {
    assert.throws(() => validateEntryUpdate(base(), ctx), /^EmblemError: id: required/);
    assert.equal(validateEntryUpdate({ ...base(), id: 'e1', created_at: 5 }, ctx).createdAt, 0);
    assert.throws(() => validateEntryUpdate({ ...base(), id: 'e1', selectors: [] }, ctx), /selectors:/);
  });

  it('converts between the record and the wire shape', () => {
    const wire: EntryProto = {
      id: 'e1',
      spiffe_id: 'spiffe://example.org/a',
      parent_id: 'spiffe://example.org/b',
      selectors: [{ type: 'unix', value: 'uid:1' }],
      x509_svid_ttl: 60,
      jwt_svid_ttl: 30,
      dns_names: ['a.example.org'],
      federates_with: ['partner.org'],
      admin: true,
      downstream: true,
      hint: 'h',
      expires_at: 9,
      created_at: 8,
      revision: 7,
    };
    const record = { ...entryFromProto(wire), revision: 7 };
    assert.deepEqual(entryToProto(record), wire);
    assert.deepEqual(entryFromProto({}).selectors, []);
  });
});
