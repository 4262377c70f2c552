// Validation of registration entries coming from operators (Admin API, CLI files). Input is the
// wire shape (EntryProto, snake_case; missing fields take proto defaults) because that is what the
// Admin service receives; the result is the datastore's NewEntry. Every rejection is an
// EmblemError('invalid_argument') whose message starts with the offending field.
//
// Ranges (seconds; 0 always means "server default"):
//   x509_svid_ttl  60 .. 2,592,000 (30 days)
//   jwt_svid_ttl   30 .. 86,400 (1 day)
// Other limits: at most 100 dns_names (RFC 1123 host names, optional leading "*." wildcard,
// ≤ 253 bytes), 1..64 selectors (no duplicates), at most 64 federates_with (each with a stored
// federated bundle), hint ≤ 1024 bytes, id [A-Za-z0-9._-]{1,128}.
import { randomUUID } from 'node:crypto';
import { EmblemError, invalidArgument } from '../../common/errors.js';
import { formatSelector, validateSelector, type Selector } from '../../common/selectors.js';
import { parseSpiffeIdInTrustDomain, parseTrustDomain, parseWorkloadSpiffeId } from '../../common/spiffe-id.js';
import type { NewEntry } from '../datastore/types.js';
import type { EntryProto } from './convert.js';

export const X509_SVID_TTL_RANGE = { min: 60, max: 2_592_000 } as const;
export const JWT_SVID_TTL_RANGE = { min: 30, max: 86_400 } as const;
export const MAX_DNS_NAMES = 100;
export const MAX_FEDERATES_WITH = 64;
export const MAX_HINT_BYTES = 1024;
export const MAX_SELECTORS = 64;
const ENTRY_ID_RE = /^[A-Za-z0-9._-]{1,128}$/;
const DNS_LABEL_RE = /^[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?$/;

export interface EntryValidationContext {
  trustDomain: string;
  /** Trust domains with a stored federated bundle. */
  knownFederatedTrustDomains: ReadonlySet<string>;
  /** Unix seconds. */
  now: number;
}

export type EntryInput = Partial<EntryProto>;

/** Validates a new entry; generates the id (UUID) when none is given. */
export function validateNewEntry(input: EntryInput, ctx: EntryValidationContext): NewEntry {
  checkObject(input);
  const given = optionalString(input.id, 'id');
  return validateFields(input, given === '' ? randomUUID() : checkEntryId(given), ctx);
}

/** Validates a full replacement of an existing entry (the id is required; created_at is ignored). */
export function validateEntryUpdate(input: EntryInput, ctx: EntryValidationContext): NewEntry {
  checkObject(input);
  const id = optionalString(input.id, 'id');
  if (id === '') throw invalidArgument('id: required to update an entry');
  return validateFields(input, checkEntryId(id), ctx);
}

function checkObject(input: unknown): void {
  if (input === null || typeof input !== 'object') throw invalidArgument('entry: must be an object');
}

function validateFields(input: EntryInput, id: string, ctx: EntryValidationContext): NewEntry {
  return {
    id,
    spiffeId: checkSpiffeId(optionalString(input.spiffe_id, 'spiffe_id'), ctx.trustDomain),
    parentId: checkParentId(optionalString(input.parent_id, 'parent_id'), ctx.trustDomain),
    selectors: checkSelectors(input.selectors),
    x509SvidTtl: checkTtl(input.x509_svid_ttl, 'x509_svid_ttl', X509_SVID_TTL_RANGE),
    jwtSvidTtl: checkTtl(input.jwt_svid_ttl, 'jwt_svid_ttl', JWT_SVID_TTL_RANGE),
    dnsNames: checkDnsNames(input.dns_names),
    federatesWith: checkFederatesWith(input.federates_with, ctx),
    admin: optionalBoolean(input.admin, 'admin'),
    downstream: optionalBoolean(input.downstream, 'downstream'),
    hint: checkHint(input.hint),
    expiresAt: checkExpiresAt(input.expires_at, ctx.now),
    createdAt: 0,
  };
}

function optionalString(v: unknown, field: string): string {
  if (v === undefined || v === null) return '';
  if (typeof v !== 'string') throw invalidArgument(`${field}: must be a string`);
  return v;
}

function optionalBoolean(v: unknown, field: string): boolean {
  if (v === undefined || v === null) return false;
  if (typeof v !== 'boolean') throw invalidArgument(`${field}: must be a boolean`);
  return v;
}

function optionalArray(v: unknown, field: string): unknown[] {
  if (v === undefined || v === null) return [];
  if (!Array.isArray(v)) throw invalidArgument(`${field}: must be a list`);
  return v;
}

function checkEntryId(id: string): string {
  if (!ENTRY_ID_RE.test(id)) throw invalidArgument(`id: ${JSON.stringify(id.slice(0, 140))} must match [A-Za-z0-9._-]{1,128}`);
  return id;
}

/** Rewraps a parser's error so the message names the field. */
function withField<T>(field: string, fn: () => T): T {
  try {
    return fn();
  } catch (err) {
    if (err instanceof EmblemError && err.code === 'invalid_argument') throw invalidArgument(`${field}: ${err.message}`, err);
    throw err;
  }
}

/** True for Emblem's own component IDs, which no entry may issue. */
export function isReservedSpiffeIdPath(path: string): boolean {
  return path === '/emblem/server' || path === '/emblem/agent' || path.startsWith('/emblem/agent/');
}

function checkSpiffeId(value: string, trustDomain: string): string {
  if (value === '') throw invalidArgument('spiffe_id: required');
  const id = withField('spiffe_id', () => {
    const parsed = parseWorkloadSpiffeId(value);
    parseSpiffeIdInTrustDomain(value, trustDomain);
    return parsed;
  });
  if (isReservedSpiffeIdPath(id.path)) {
    throw invalidArgument(`spiffe_id: ${value} is reserved for Emblem's own server and agents`);
  }
  return id.uri;
}

function checkParentId(value: string, trustDomain: string): string {
  if (value === '') throw invalidArgument('parent_id: required');
  return withField('parent_id', () => {
    parseWorkloadSpiffeId(value);
    return parseSpiffeIdInTrustDomain(value, trustDomain).uri;
  });
}

function checkSelectors(v: unknown): Selector[] {
  const list = optionalArray(v, 'selectors');
  if (list.length === 0) throw invalidArgument('selectors: at least one selector is required');
  if (list.length > MAX_SELECTORS) throw invalidArgument(`selectors: at most ${MAX_SELECTORS} are allowed`);
  const seen = new Set<string>();
  return list.map((raw) => {
    const s = raw as Partial<Selector> | null;
    if (s === null || typeof s !== 'object' || typeof s.type !== 'string' || typeof s.value !== 'string') {
      throw invalidArgument('selectors: each selector needs a string type and value');
    }
    const selector = withField('selectors', () => validateSelector({ type: s.type as string, value: s.value as string }));
    const key = formatSelector(selector);
    if (seen.has(key)) throw invalidArgument(`selectors: duplicate selector ${JSON.stringify(key)}`);
    seen.add(key);
    return selector;
  });
}

function checkTtl(v: unknown, field: string, range: { min: number; max: number }): number {
  if (v === undefined || v === null || v === 0) return 0;
  if (typeof v !== 'number' || !Number.isInteger(v)) throw invalidArgument(`${field}: must be an integer number of seconds`);
  if (v < range.min || v > range.max) {
    throw invalidArgument(`${field}: ${v} is outside [${range.min}, ${range.max}] seconds (0 = server default)`);
  }
  return v;
}

/** RFC 1123 host name, optionally with a leading "*." wildcard label. */
export function isValidDnsName(name: string): boolean {
  if (name.length === 0 || name.length > 253) return false;
  const labels = name.split('.');
  const start = labels[0] === '*' ? 1 : 0;
  if (start === 1 && labels.length < 2) return false;
  for (let i = start; i < labels.length; i++) if (!DNS_LABEL_RE.test(labels[i] as string)) return false;
  return true;
}

function checkDnsNames(v: unknown): string[] {
  const list = optionalArray(v, 'dns_names');
  if (list.length > MAX_DNS_NAMES) throw invalidArgument(`dns_names: at most ${MAX_DNS_NAMES} are allowed`);
  const seen = new Set<string>();
  return list.map((name) => {
    if (typeof name !== 'string' || !isValidDnsName(name)) {
      throw invalidArgument(`dns_names: ${JSON.stringify(String(name).slice(0, 260))} is not a valid DNS name`);
    }
    const key = name.toLowerCase();
    if (seen.has(key)) throw invalidArgument(`dns_names: duplicate ${JSON.stringify(name)}`);
    seen.add(key);
    return name;
  });
}

function checkFederatesWith(v: unknown, ctx: EntryValidationContext): string[] {
  const list = optionalArray(v, 'federates_with');
  if (list.length > MAX_FEDERATES_WITH) throw invalidArgument(`federates_with: at most ${MAX_FEDERATES_WITH} are allowed`);
  const seen = new Set<string>();
  return list.map((raw) => {
    if (typeof raw !== 'string') throw invalidArgument('federates_with: each item must be a trust domain name');
    // Accept "example.org" and "spiffe://example.org"; store the bare name.
    const td = withField('federates_with', () => parseTrustDomain(raw));
    if (td === ctx.trustDomain) throw invalidArgument(`federates_with: ${td} is our own trust domain`);
    if (!ctx.knownFederatedTrustDomains.has(td)) throw invalidArgument(`federates_with: unknown federated trust domain ${td}`);
    if (seen.has(td)) throw invalidArgument(`federates_with: duplicate ${td}`);
    seen.add(td);
    return td;
  });
}

function checkHint(v: unknown): string {
  const hint = optionalString(v, 'hint');
  if (Buffer.byteLength(hint) > MAX_HINT_BYTES) throw invalidArgument(`hint: longer than ${MAX_HINT_BYTES} bytes`);
  return hint;
}

function checkExpiresAt(v: unknown, now: number): number {
  if (v === undefined || v === null || v === 0) return 0;
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 0) throw invalidArgument('expires_at: must be a non-negative integer (Unix seconds)');
  if (v <= now) throw invalidArgument(`expires_at: ${v} is in the past`);
  return v;
}

