// The rotation schedule (SPIRE-NOTES §4.2): prepare the successor when half of the active
// authority's lifetime is left (at most 30 days before its end), activate it when one sixth is left
// (at most 7 days before its end), and forget an authority once nothing it signed can still be valid.
// Pure functions over journal rows; the authority manager carries out the steps.
import type { AuthorityKind, AuthorityRecord } from '../datastore/types.js';

const DAY = 86_400;
export const MAX_PREPARE_LEAD_SECONDS = 30 * DAY;
export const MAX_ACTIVATE_LEAD_SECONDS = 7 * DAY;

/**
 * Seconds the authority was meant to live. Counted from its creation rather than from notBefore,
 * because a CA certificate's notBefore is backdated a little against clock skew.
 */
export function lifetimeOf(a: AuthorityRecord): number {
  const start = a.createdAt > 0 ? Math.max(a.createdAt, a.notBefore) : a.notBefore;
  return Math.max(0, a.notAfter - start);
}

/** Unix seconds from which the successor of `a` should be prepared. */
export function prepareAt(a: AuthorityRecord): number {
  return a.notAfter - Math.min(lifetimeOf(a) / 2, MAX_PREPARE_LEAD_SECONDS);
}

/** Unix seconds from which the successor of `a` should be active. */
export function activateAt(a: AuthorityRecord): number {
  return a.notAfter - Math.min(lifetimeOf(a) / 6, MAX_ACTIVATE_LEAD_SECONDS);
}

/** Statuses whose authority belongs in the bundle while it has not expired. */
export const PUBLISHED_STATUSES: ReadonlySet<AuthorityRecord['status']> = new Set(['prepared', 'active', 'old', 'tainted']);

/** Past its notAfter (validity is inclusive of notAfter, RFC 5280 §4.1.2.5). */
export const isExpired = (a: AuthorityRecord, nowSec: number): boolean => nowSec > a.notAfter;

/** Newest first: later creation, then later expiry, then ID (so the order is total). */
export function newestFirst(a: AuthorityRecord, b: AuthorityRecord): number {
  return b.createdAt - a.createdAt || b.notAfter - a.notAfter || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0);
}

export type RotationStep =
  | { action: 'prepare'; kind: AuthorityKind }
  /** Activate the prepared authority `id`, or (id undefined) the one the preceding 'prepare' made. */
  | { action: 'activate'; kind: AuthorityKind; id?: string }
  | { action: 'prune'; kind: AuthorityKind; id: string };

/**
 * What the rotator should do now for one kind. Assumes the journal was repaired (at most one active
 * authority per kind). Expired non-active authorities are pruned: SVIDs are capped at their signing
 * authority's notAfter, so none they signed is still valid.
 */
export function planRotation(authorities: readonly AuthorityRecord[], kind: AuthorityKind, nowSec: number): RotationStep[] {
  const ofKind = authorities.filter((a) => a.kind === kind);
  const steps: RotationStep[] = [];
  for (const a of ofKind) {
    if (a.status !== 'active' && isExpired(a, nowSec)) steps.push({ action: 'prune', kind, id: a.id });
  }
  const active = ofKind.find((a) => a.status === 'active');
  const prepared = ofKind
    .filter((a) => a.status === 'prepared' && !isExpired(a, nowSec))
    .sort(newestFirst)[0];
  if (!active || nowSec >= activateAt(active)) {
    if (prepared) steps.push({ action: 'activate', kind, id: prepared.id });
    else steps.push({ action: 'prepare', kind }, { action: 'activate', kind });
  } else if (nowSec >= prepareAt(active) && !prepared) {
    steps.push({ action: 'prepare', kind });
  }
  return steps;
}
