// JSON encodings of the stored records. Records are rebuilt field by field, so callers' extra
// properties are not stored and optional fields absent on write stay absent on read. Buffers are
// stored as base64 strings.
import type { JsonWebKey } from 'node:crypto';
import type { Selector } from '../../../common/selectors.js';
import type { JwtAuthority, TrustBundle } from '../../../common/trust-bundle.js';
import type { AgentRecord, AuthorityRecord, ChangeEvent, ChangeKind, EntryRecord, SvidRecord } from '../types.js';

const copySelectors = (selectors: readonly Selector[]): Selector[] =>
  selectors.map((s) => ({ type: s.type, value: s.value }));

export function copyEntry(e: EntryRecord): EntryRecord {
  return {
    id: e.id,
    spiffeId: e.spiffeId,
    parentId: e.parentId,
    selectors: copySelectors(e.selectors),
    x509SvidTtl: e.x509SvidTtl,
    jwtSvidTtl: e.jwtSvidTtl,
    dnsNames: [...e.dnsNames],
    federatesWith: [...e.federatesWith],
    admin: e.admin,
    downstream: e.downstream,
    hint: e.hint,
    expiresAt: e.expiresAt,
    createdAt: e.createdAt,
    revision: e.revision,
  };
}

export const encodeEntry = (e: EntryRecord): string => JSON.stringify(copyEntry(e));
export const decodeEntry = (s: string): EntryRecord => JSON.parse(s) as EntryRecord;

export function copyAgent(a: AgentRecord): AgentRecord {
  return {
    id: a.id,
    attestationType: a.attestationType,
    selectors: copySelectors(a.selectors),
    svidSerial: a.svidSerial,
    svidExpiresAt: a.svidExpiresAt,
    banned: a.banned,
    lastSeen: a.lastSeen,
    createdAt: a.createdAt,
    canReattest: a.canReattest,
    ...(a.previousSvidSerial ? { previousSvidSerial: a.previousSvidSerial } : {}),
  };
}

export const encodeAgent = (a: AgentRecord): string => JSON.stringify(copyAgent(a));
export const decodeAgent = (s: string): AgentRecord => JSON.parse(s) as AgentRecord;

interface StoredBundle extends Omit<TrustBundle, 'x509Authorities'> {
  x509Authorities: string[];
}

const copyJwk = (jwk: JsonWebKey): JsonWebKey => JSON.parse(JSON.stringify(jwk)) as JsonWebKey;

function copyJwtAuthority(a: JwtAuthority): JwtAuthority {
  const copy: JwtAuthority = { kid: a.kid, publicKey: copyJwk(a.publicKey) };
  if (a.expiresAt !== undefined) copy.expiresAt = a.expiresAt;
  return copy;
}

export function encodeBundle(b: TrustBundle): string {
  const stored: StoredBundle = {
    trustDomain: b.trustDomain,
    x509Authorities: b.x509Authorities.map((der) => der.toString('base64')),
    jwtAuthorities: b.jwtAuthorities.map(copyJwtAuthority),
    sequence: b.sequence,
  };
  if (b.refreshHint !== undefined) stored.refreshHint = b.refreshHint;
  return JSON.stringify(stored);
}

export function decodeBundle(s: string): TrustBundle {
  const stored = JSON.parse(s) as StoredBundle;
  return { ...stored, x509Authorities: stored.x509Authorities.map((b64) => Buffer.from(b64, 'base64')) };
}

interface StoredAuthority extends Omit<AuthorityRecord, 'certificate' | 'upstreamChain'> {
  certificate?: string;
  upstreamChain?: string[];
}

export function encodeAuthority(a: AuthorityRecord): string {
  const stored: StoredAuthority = {
    id: a.id,
    kind: a.kind,
    status: a.status,
    notBefore: a.notBefore,
    notAfter: a.notAfter,
    keyId: a.keyId,
    createdAt: a.createdAt,
  };
  if (a.certificate !== undefined) stored.certificate = a.certificate.toString('base64');
  if (a.upstreamChain !== undefined) stored.upstreamChain = a.upstreamChain.map((der) => der.toString('base64'));
  if (a.publicKey !== undefined) stored.publicKey = copyJwk(a.publicKey);
  if (a.tainted !== undefined) stored.tainted = a.tainted;
  return JSON.stringify(stored);
}

export function decodeAuthority(s: string): AuthorityRecord {
  const { certificate, upstreamChain, ...rest } = JSON.parse(s) as StoredAuthority;
  const record: AuthorityRecord = rest;
  if (certificate !== undefined) record.certificate = Buffer.from(certificate, 'base64');
  if (upstreamChain !== undefined) record.upstreamChain = upstreamChain.map((b64) => Buffer.from(b64, 'base64'));
  return record;
}

export function encodeSvid(r: SvidRecord): string {
  const copy: SvidRecord = {
    serial: r.serial,
    spiffeId: r.spiffeId,
    entryId: r.entryId,
    agentId: r.agentId,
    kind: r.kind,
    notBefore: r.notBefore,
    notAfter: r.notAfter,
    authorityId: r.authorityId,
    issuedAt: r.issuedAt,
  };
  return JSON.stringify(copy);
}

export const decodeSvid = (s: string): SvidRecord => JSON.parse(s) as SvidRecord;

export const encodeChange = (kind: ChangeKind, id: string, deleted: boolean): string =>
  JSON.stringify({ kind, id, deleted });

export function decodeChange(revision: number, s: string): ChangeEvent {
  const { kind, id, deleted } = JSON.parse(s) as Omit<ChangeEvent, 'revision'>;
  return { revision, kind, id, deleted };
}
