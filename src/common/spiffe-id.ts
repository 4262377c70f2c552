// SPIFFE IDs and trust domains (SPIFFE-ID.md §2; our notes: ../shared/SPIFFE.md §1).
// Parsing is strict: producers must emit lowercase scheme and trust domain, and everything a
// validator must reject is rejected here with the rule that failed.
import { EmblemError } from './errors.js';

export const SPIFFE_SCHEME_PREFIX = 'spiffe://';
export const MAX_TRUST_DOMAIN_BYTES = 255;
/** IDs of at least this length must be accepted (§2.3); longer ones are accepted too, never generated. */
export const MAX_GENERATED_ID_BYTES = 2048;

export type SpiffeIdRule =
  | 'empty'
  | 'scheme'
  | 'trust_domain_missing'
  | 'trust_domain_char'
  | 'trust_domain_length'
  | 'port'
  | 'userinfo'
  | 'query'
  | 'fragment'
  | 'percent_encoding'
  | 'path_empty_segment'
  | 'path_dot_segment'
  | 'path_trailing_slash'
  | 'path_char'
  | 'path_not_absolute'
  | 'root_path'
  | 'wrong_trust_domain';

export class SpiffeIdError extends EmblemError {
  readonly rule: SpiffeIdRule;

  constructor(rule: SpiffeIdRule, message: string) {
    super('invalid_argument', message);
    this.name = 'SpiffeIdError';
    this.rule = rule;
  }
}

export interface SpiffeId {
  /** Trust domain name, e.g. "example.org". */
  readonly trustDomain: string;
  /** Path including the leading slash, or "" for the trust domain ID. */
  readonly path: string;
  /** The full URI, e.g. "spiffe://example.org/ns/web". */
  readonly uri: string;
}

function isTrustDomainChar(c: number): boolean {
  return (c >= 0x61 && c <= 0x7a) || (c >= 0x30 && c <= 0x39) || c === 0x2e || c === 0x2d || c === 0x5f;
}

function isPathChar(c: number): boolean {
  return (
    (c >= 0x61 && c <= 0x7a) ||
    (c >= 0x41 && c <= 0x5a) ||
    (c >= 0x30 && c <= 0x39) ||
    c === 0x2e ||
    c === 0x2d ||
    c === 0x5f
  );
}

function describe(input: string): string {
  return input.length > 80 ? JSON.stringify(input.slice(0, 80) + '…') : JSON.stringify(input);
}

/** Validates a bare trust domain name ("example.org") and returns it. */
export function parseTrustDomain(input: string): string {
  if (typeof input !== 'string' || input.length === 0) {
    throw new SpiffeIdError('trust_domain_missing', 'trust domain is missing');
  }
  if (input.startsWith(SPIFFE_SCHEME_PREFIX)) return parseSpiffeId(input).trustDomain;
  checkTrustDomain(input);
  return input;
}

function checkTrustDomain(td: string): void {
  if (td.length === 0) throw new SpiffeIdError('trust_domain_missing', 'trust domain is missing');
  if (Buffer.byteLength(td) > MAX_TRUST_DOMAIN_BYTES) {
    throw new SpiffeIdError('trust_domain_length', `trust domain is longer than ${MAX_TRUST_DOMAIN_BYTES} bytes`);
  }
  for (let i = 0; i < td.length; i++) {
    const c = td.charCodeAt(i);
    if (isTrustDomainChar(c)) continue;
    const ch = td[i];
    if (ch === ':') throw new SpiffeIdError('port', `trust domain ${describe(td)} has a port (not allowed)`);
    if (ch === '@') throw new SpiffeIdError('userinfo', `trust domain ${describe(td)} has userinfo (not allowed)`);
    if (ch === '%') throw new SpiffeIdError('percent_encoding', `trust domain ${describe(td)} is percent-encoded (not allowed)`);
    if (c >= 0x41 && c <= 0x5a) {
      throw new SpiffeIdError('trust_domain_char', `trust domain ${describe(td)} has an uppercase letter (must be lowercase)`);
    }
    throw new SpiffeIdError(
      'trust_domain_char',
      `trust domain ${describe(td)} has a character ${JSON.stringify(ch)} outside [a-z0-9._-]`,
    );
  }
}

function checkPath(path: string): void {
  if (path.length === 0) return;
  if (path[0] !== '/') throw new SpiffeIdError('path_not_absolute', 'path must start with "/"');
  let segStart = 1;
  for (let i = 1; i <= path.length; i++) {
    if (i < path.length && path[i] !== '/') {
      const c = path.charCodeAt(i);
      if (!isPathChar(c)) {
        const ch = path[i];
        if (ch === '?') throw new SpiffeIdError('query', 'a SPIFFE ID must not have a query');
        if (ch === '#') throw new SpiffeIdError('fragment', 'a SPIFFE ID must not have a fragment');
        if (ch === '%') throw new SpiffeIdError('percent_encoding', 'a SPIFFE ID path must not be percent-encoded');
        throw new SpiffeIdError('path_char', `path segment has a character ${JSON.stringify(ch)} outside [a-zA-Z0-9._-]`);
      }
      continue;
    }
    const segment = path.slice(segStart, i);
    if (segment.length === 0) {
      if (i === path.length) throw new SpiffeIdError('path_trailing_slash', 'path must not end with "/"');
      throw new SpiffeIdError('path_empty_segment', 'path must not contain empty segments ("//")');
    }
    if (segment === '.' || segment === '..') {
      throw new SpiffeIdError('path_dot_segment', 'path must not contain "." or ".." segments');
    }
    segStart = i + 1;
  }
}

/** Parses and validates a SPIFFE ID string. Throws SpiffeIdError naming the rule that failed. */
export function parseSpiffeId(input: string): SpiffeId {
  if (typeof input !== 'string' || input.length === 0) throw new SpiffeIdError('empty', 'SPIFFE ID is empty');
  if (!input.startsWith(SPIFFE_SCHEME_PREFIX)) {
    throw new SpiffeIdError('scheme', `SPIFFE ID ${describe(input)} must start with "spiffe://" (lowercase)`);
  }
  const rest = input.slice(SPIFFE_SCHEME_PREFIX.length);
  let tdEnd = rest.length;
  for (let i = 0; i < rest.length; i++) {
    const ch = rest[i];
    if (ch === '/') {
      tdEnd = i;
      break;
    }
    if (ch === '?' || ch === '#') {
      tdEnd = i;
      break;
    }
  }
  const trustDomain = rest.slice(0, tdEnd);
  if (trustDomain.length === 0) throw new SpiffeIdError('trust_domain_missing', 'SPIFFE ID has no trust domain');
  checkTrustDomain(trustDomain);
  const tail = rest.slice(tdEnd);
  if (tail.startsWith('?')) throw new SpiffeIdError('query', 'a SPIFFE ID must not have a query');
  if (tail.startsWith('#')) throw new SpiffeIdError('fragment', 'a SPIFFE ID must not have a fragment');
  checkPath(tail);
  return { trustDomain, path: tail, uri: input };
}

/** True when the string is a valid SPIFFE ID. */
export function isSpiffeId(input: string): boolean {
  try {
    parseSpiffeId(input);
    return true;
  } catch {
    return false;
  }
}

/** Builds an ID from a trust domain and path segments, validating the result. */
export function spiffeIdFromSegments(trustDomain: string, ...segments: string[]): SpiffeId {
  const path = segments.map((s) => '/' + s).join('');
  return parseSpiffeId(SPIFFE_SCHEME_PREFIX + trustDomain + path);
}

/** "spiffe://<td>": the trust domain ID (the key used in Workload API bundle maps). */
export function trustDomainId(trustDomain: string): string {
  return SPIFFE_SCHEME_PREFIX + trustDomain;
}

/** Parses an ID and also requires it to be in the given trust domain. */
export function parseSpiffeIdInTrustDomain(input: string, trustDomain: string): SpiffeId {
  const id = parseSpiffeId(input);
  if (id.trustDomain !== trustDomain) {
    throw new SpiffeIdError('wrong_trust_domain', `SPIFFE ID ${describe(input)} is not in trust domain "${trustDomain}"`);
  }
  return id;
}

/** Parses an ID that will be put into a leaf SVID: it must have a non-root path. */
export function parseWorkloadSpiffeId(input: string): SpiffeId {
  const id = parseSpiffeId(input);
  if (id.path === '') throw new SpiffeIdError('root_path', `SPIFFE ID ${describe(input)} has no path (a leaf SVID needs one)`);
  return id;
}

/** Reserved IDs of Emblem's own components. */
export const serverId = (trustDomain: string): string => `${SPIFFE_SCHEME_PREFIX}${trustDomain}/emblem/server`;
export const agentIdPrefix = (trustDomain: string): string => `${SPIFFE_SCHEME_PREFIX}${trustDomain}/emblem/agent/`;

/**
 * A SPIFFE ID fit for a log line: a join-token agent ID (or a parent ID naming one) embeds the
 * token, so only its first 4 characters are kept. Other IDs are returned unchanged.
 */
export function loggableId(id: string): string {
  return id.replace(/\/join_token\/([^/]{4})[^/]*/, '/join_token/$1…');
}
