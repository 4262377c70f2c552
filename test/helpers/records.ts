// Datastore records for the server tests: registration entries, agents and trust bundles in the
// trust domain `TD`, with every field a test does not care about at its empty value.
import { generateKeyPair } from '../../src/common/x509/keys.js';
import type { Selector } from '../../src/common/selectors.js';
import type { TrustBundle } from '../../src/common/trust-bundle.js';
import type { AgentRecord, NewEntry } from '../../src/server/datastore/types.js';

export const TD = 'example.org';
export const SERVER_ID = `spiffe://${TD}/emblem/server`;

/** The SPIFFE ID `spiffe://TD/<path>`. */
export const idInTd = (path: string): string => `spiffe://${TD}/${path}`;

/** The SPIFFE ID of a join-token agent named `name`. */
export const joinTokenAgentId = (name: string): string => `spiffe://${TD}/emblem/agent/join_token/${name}`;

/** Selectors from "type:value" strings (the value may itself contain colons). */
export const sel = (...keys: string[]): Selector[] =>
  keys.map((k) => ({ type: k.slice(0, k.indexOf(':')), value: k.slice(k.indexOf(':') + 1) }));

/** The optional fields of an entry at the values the server gives them when they are not set. */
export function entryDefaults(): Omit<NewEntry, 'id' | 'spiffeId' | 'parentId' | 'selectors'> {
  return {
    x509SvidTtl: 0,
    jwtSvidTtl: 0,
    dnsNames: [],
    federatesWith: [],
    admin: false,
    downstream: false,
    hint: '',
    expiresAt: 0,
    createdAt: 0,
  };
}

/**
 * An entry `id` for the workload `spiffe://TD/w/<id>`, under the agent `join_token/n1`,
 * selected by `unix:uid:<id>`; `fields` replace any of these.
 */
export function newEntryRecord(id: string, fields: Partial<NewEntry> = {}): NewEntry {
  return {
    id,
    spiffeId: idInTd(`w/${id}`),
    parentId: joinTokenAgentId('n1'),
    selectors: [{ type: 'unix', value: `uid:${id}` }],
    ...entryDefaults(),
    ...fields,
  };
}

/** An attested join-token agent `id` with no selectors, an SVID valid until 2033, not banned. */
export function agentRecord(id: string, fields: Partial<AgentRecord> = {}): AgentRecord {
  return {
    id,
    attestationType: 'join_token',
    selectors: [],
    svidSerial: '01',
    svidExpiresAt: 2_000_000_000,
    banned: false,
    lastSeen: 0,
    createdAt: 1,
    canReattest: false,
    ...fields,
  };
}

/** A bundle for `trustDomain` holding one fresh P-256 JWT authority (kid `k<sequence>`) and no X.509 ones. */
export function jwtOnlyBundle(trustDomain: string, sequence: number): TrustBundle {
  const { publicKey } = generateKeyPair(); // not generateKeyPairSync: see keys.ts (JWK export deadlock)
  return {
    trustDomain,
    x509Authorities: [],
    jwtAuthorities: [{ kid: `k${sequence}`, publicKey: publicKey.export({ format: 'jwk' }) }],
    sequence,
  };
}
