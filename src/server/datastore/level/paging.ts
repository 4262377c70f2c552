// Page sizes and opaque page tokens. A token is the last key of the previous page (base64url), so
// pages stay stable while new records are added; a token outside the query's key range is rejected.
import { invalidArgument } from '../../../common/errors.js';
import type { KeyRange } from './keys.js';

export const DEFAULT_PAGE_SIZE = 1000;
export const MAX_PAGE_SIZE = 10_000;

/** undefined or 0 means the default; larger than the maximum is capped. */
export function pageSize(requested: number | undefined): number {
  if (requested === undefined || requested === 0) return DEFAULT_PAGE_SIZE;
  if (!Number.isSafeInteger(requested) || requested < 0) {
    throw invalidArgument(`page size must be a non-negative integer, got ${requested}`);
  }
  return Math.min(requested, MAX_PAGE_SIZE);
}

export const encodePageToken = (lastKey: string): string => Buffer.from(lastKey, 'utf8').toString('base64url');

/** The key after which the next page starts, or undefined for the first page. */
export function decodePageToken(token: string | undefined, range: KeyRange): string | undefined {
  if (token === undefined || token === '') return undefined;
  const key = Buffer.from(token, 'base64url').toString('utf8');
  if (encodePageToken(key) !== token || key < range.gte || key >= range.lt) {
    throw invalidArgument('invalid page token (it belongs to another query or was altered)');
  }
  return key;
}

/** Iterator bounds for a page: the whole range, or the part after the token's key. */
export const pageRange = (range: KeyRange, after: string | undefined): { gte?: string; gt?: string; lt: string } =>
  after === undefined ? range : { gt: after, lt: range.lt };
