// The key layout of the level datastore. Every value is JSON (codec.ts) except where noted.
//
//   meta/<key>                                       setting (raw string)
//   entry/<id>                                       EntryRecord
//   similar/<sha256(spiffeId, parentId, selectors)>  entry id (the "similar entry" uniqueness rule)
//   agent/<id>                                       AgentRecord
//   token/<hash>                                     { expiresAt }
//   tokenexp/<expiresAt>/<hash>                      "" (expiry index for pruning)
//   bundle                                           own TrustBundle
//   fbundle/<trust domain>                           federated TrustBundle
//   authority/<id>                                   AuthorityRecord
//   svid/<issuedAt>/<serial>                         SvidRecord
//   svidsid/<spiffeId>/<issuedAt>/<serial>           primary svid/ key (index by SPIFFE ID)
//   svidagent/<agentId>/<issuedAt>/<serial>          primary svid/ key (index by agent)
//   svidexp/<notAfter>/<issuedAt>/<serial>           primary svid/ key (index by expiry)
//   change/<revision>                                ChangeEvent without its revision
//
// Numbers in keys are zero-padded to 16 digits so that byte order is numeric order. A key part
// that is not the last one and may contain "/" (SPIFFE IDs) is URI-encoded.
import { createHash } from 'node:crypto';
import { invalidArgument } from '../../../common/errors.js';
import { formatSelector, type Selector } from '../../../common/selectors.js';

const PAD_WIDTH = 16;

/** Zero-padded decimal of a non-negative integer (unix seconds, revisions). */
export function pad(n: number): string {
  if (!Number.isSafeInteger(n) || n < 0) throw invalidArgument(`${n} is not a non-negative integer`);
  return String(n).padStart(PAD_WIDTH, '0');
}

/** Checks a number stored in an index key; `what` names it in the error. */
export function requireTime(what: string, n: number): number {
  if (!Number.isSafeInteger(n) || n < 0) throw invalidArgument(`${what} must be a non-negative integer, got ${n}`);
  return n;
}

/** Checks a string used as (part of) a key. */
export function requireKeyPart(what: string, value: string): string {
  if (typeof value !== 'string' || value.length === 0) throw invalidArgument(`${what} must not be empty`);
  return value;
}

export interface KeyRange {
  gte: string;
  lt: string;
}

/** All keys starting with `prefix` (an ASCII prefix). */
export function prefixRange(prefix: string): KeyRange {
  const last = prefix.charCodeAt(prefix.length - 1);
  return { gte: prefix, lt: prefix.slice(0, -1) + String.fromCharCode(last + 1) };
}

const enc = encodeURIComponent;

export const metaKey = (key: string): string => `meta/${key}`;

export const entryKey = (id: string): string => `entry/${id}`;
export const ENTRY_PREFIX = 'entry/';

/** Entries with the same SPIFFE ID, parent ID and selector set share this key. */
export function similarEntryKey(spiffeId: string, parentId: string, selectors: readonly Selector[]): string {
  const selectorSet = [...new Set(selectors.map(formatSelector))].sort();
  const digest = createHash('sha256').update(JSON.stringify([spiffeId, parentId, selectorSet])).digest('hex');
  return `similar/${digest}`;
}

export const agentKey = (id: string): string => `agent/${id}`;
export const AGENT_PREFIX = 'agent/';

export const tokenKey = (hash: string): string => `token/${hash}`;
export const tokenExpiryKey = (expiresAt: number, hash: string): string => `tokenexp/${pad(expiresAt)}/${hash}`;
export const TOKEN_EXPIRY_PREFIX = 'tokenexp/';
/** The hash at the end of a tokenexp/ key. */
export const hashOfTokenExpiryKey = (key: string): string => key.slice(TOKEN_EXPIRY_PREFIX.length + PAD_WIDTH + 1);

export const BUNDLE_KEY = 'bundle';
export const federatedBundleKey = (trustDomain: string): string => `fbundle/${trustDomain}`;
export const FEDERATED_BUNDLE_PREFIX = 'fbundle/';

export const authorityKey = (id: string): string => `authority/${id}`;
export const AUTHORITY_PREFIX = 'authority/';

export const SVID_PREFIX = 'svid/';
export const svidKey = (issuedAt: number, serial: string): string => `svid/${pad(issuedAt)}/${serial}`;
export const svidBySpiffeIdPrefix = (spiffeId: string): string => `svidsid/${enc(spiffeId)}/`;
export const svidByAgentPrefix = (agentId: string): string => `svidagent/${enc(agentId)}/`;
export const SVID_EXPIRY_PREFIX = 'svidexp/';
export const svidExpiryKey = (notAfter: number, issuedAt: number, serial: string): string =>
  `svidexp/${pad(notAfter)}/${pad(issuedAt)}/${serial}`;
/** The first svidexp/ key with notAfter >= `notAfter`. */
export const svidExpiryBound = (notAfter: number): string => `svidexp/${pad(notAfter)}/`;

export const CHANGE_PREFIX = 'change/';
export const changeKey = (revision: number): string => `change/${pad(revision)}`;
export const revisionOfChangeKey = (key: string): number => Number(key.slice(CHANGE_PREFIX.length));
