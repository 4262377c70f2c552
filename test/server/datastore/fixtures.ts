// Records for the datastore conformance suite (entries and agents built on test/helpers/records.ts).
import { randomBytes } from 'node:crypto';
import type { TrustBundle } from '../../../src/common/trust-bundle.js';
import type {
  AgentRecord,
  AuthorityRecord,
  ChangeEvent,
  Datastore,
  NewEntry,
  SvidRecord,
} from '../../../src/server/datastore/types.js';
import { EmblemError, type ErrorCode } from '../../../src/common/errors.js';
import assert from 'node:assert/strict';
import { agentRecord, newEntryRecord, TD } from '../../helpers/records.js';

export { TD };

export function newEntry(n: number, overrides: Partial<NewEntry> = {}): NewEntry {
  return newEntryRecord(`entry-${String(n).padStart(6, '0')}`, {
    spiffeId: `spiffe://${TD}/workload/${n}`,
    parentId: `spiffe://${TD}/spire/agent/join_token/node-${n % 7}`,
    selectors: [
      { type: 'unix', value: `uid:${1000 + n}` },
      { type: 'unix', value: 'gid:100' },
    ],
    x509SvidTtl: 3600,
    jwtSvidTtl: 300,
    dnsNames: [`w${n}.example.org`],
    federatesWith: ['other.org'],
    admin: n % 2 === 0,
    hint: `hint-${n}`,
    createdAt: 1_700_000_000 + n,
    ...overrides,
  });
}

export function agent(n: number, overrides: Partial<AgentRecord> = {}): AgentRecord {
  return agentRecord(`spiffe://${TD}/spire/agent/join_token/node-${String(n).padStart(4, '0')}`, {
    selectors: [{ type: 'join_token', value: `node-${n}` }],
    svidSerial: randomBytes(16).toString('hex'),
    svidExpiresAt: 1_800_000_000,
    lastSeen: 1_700_000_000,
    createdAt: 1_700_000_000,
    ...overrides,
  });
}

export function bundle(trustDomain: string, sequence = 1): TrustBundle {
  return {
    trustDomain,
    x509Authorities: [randomBytes(300), randomBytes(1), Buffer.from([0, 255, 0])],
    jwtAuthorities: [
      {
        kid: 'kid-1',
        publicKey: { kty: 'EC', crv: 'P-256', x: randomBytes(32).toString('base64url'), y: randomBytes(32).toString('base64url') },
        expiresAt: 1_800_000_000,
      },
      { kid: 'kid-2', publicKey: { kty: 'RSA', n: randomBytes(256).toString('base64url'), e: 'AQAB' } },
    ],
    sequence,
  };
}

export function x509Authority(id: string, overrides: Partial<AuthorityRecord> = {}): AuthorityRecord {
  return {
    id,
    kind: 'x509',
    status: 'prepared',
    notBefore: 1_700_000_000,
    notAfter: 1_700_086_400,
    certificate: randomBytes(500),
    upstreamChain: [randomBytes(400), randomBytes(410)],
    keyId: `x509-ca-${id}`,
    createdAt: 1_700_000_000,
    ...overrides,
  };
}

export function jwtAuthority(id: string, overrides: Partial<AuthorityRecord> = {}): AuthorityRecord {
  return {
    id,
    kind: 'jwt',
    status: 'active',
    notBefore: 1_700_000_000,
    notAfter: 1_700_086_400,
    publicKey: { kty: 'EC', crv: 'P-256', x: randomBytes(32).toString('base64url'), y: randomBytes(32).toString('base64url') },
    keyId: `jwt-signer-${id}`,
    createdAt: 1_700_000_000,
    ...overrides,
  };
}

export function svid(serial: string, fields: Partial<SvidRecord> = {}): SvidRecord {
  return {
    serial,
    spiffeId: `spiffe://${TD}/workload/a`,
    entryId: 'entry-a',
    agentId: `spiffe://${TD}/spire/agent/join_token/node-1`,
    kind: 'x509',
    notBefore: 1000,
    notAfter: 2000,
    authorityId: 'ca-1',
    issuedAt: 1000,
    ...fields,
  };
}

/** Asserts that `promise` rejects with an EmblemError of `code` whose message matches `message`. */
export async function rejectsWith(promise: Promise<unknown>, code: ErrorCode, message?: RegExp): Promise<void> {
  await assert.rejects(promise, (err: unknown) => {
    assert.ok(err instanceof EmblemError, `expected an EmblemError, got ${String(err)}`);
    assert.equal(err.code, code, err.message);
    if (message) assert.match(err.message, message);
    return true;
  });
}

export const change = (revision: number, kind: ChangeEvent['kind'], id: string, deleted = false): ChangeEvent => ({
  revision,
  kind,
  id,
  deleted,
});

export async function allChanges(store: Datastore): Promise<ChangeEvent[]> {
  return store.listChanges(0, 1_000_000);
}

export async function collectSvids(store: Datastore, query: Parameters<Datastore['listSvids']>[0]): Promise<string[]> {
  const serials: string[] = [];
  let pageToken = '';
  for (let pages = 0; pages < 100; pages++) {
    const page = await store.listSvids({ ...query, pageToken });
    assert.ok(page.items.length <= (query.pageSize ?? Infinity));
    serials.push(...page.items.map((r) => r.serial));
    if (page.nextPageToken === '') return serials;
    assert.ok(page.items.length > 0, 'a page with a next-page token is not empty');
    pageToken = page.nextPageToken;
  }
  throw new Error('pagination did not end');
}
