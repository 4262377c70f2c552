// Start-time repair of the CA journal. A kill -9 between two writes, a lost key file or a changed
// upstream configuration can leave rows the server must not sign with; this decides what to drop and
// what to demote. Rows are never promoted here: the rotation plan then activates a usable prepared
// authority or creates a new one.
import type { AuthorityRecord } from '../datastore/types.js';
import { newestFirst } from './rotation.js';

export interface RepairInput {
  authorities: readonly AuthorityRecord[];
  hasKey: (keyId: string) => boolean;
  /** The configured upstream CA certificate; undefined for a self-signed CA. */
  upstreamCertificate?: Buffer;
}

export interface RepairStep {
  /** The row to write (an update), or the row to delete. */
  record: AuthorityRecord;
  reason: string;
}

export interface RepairPlan {
  drop: RepairStep[];
  demote: RepairStep[];
}

function malformed(a: AuthorityRecord): boolean {
  return a.kind === 'x509' ? !a.certificate : !a.publicKey;
}

function matchesUpstream(a: AuthorityRecord, upstreamCertificate: Buffer | undefined): boolean {
  if (a.kind !== 'x509') return true;
  const signer = a.upstreamChain?.[0];
  return upstreamCertificate ? signer !== undefined && signer.equals(upstreamCertificate) : signer === undefined;
}

/**
 * - A malformed row is dropped (it can be neither published nor used).
 * - A prepared row whose key is missing, or that no longer matches the upstream configuration, is
 *   dropped: it never signed anything, so removing it from the bundle is harmless.
 * - An active row in the same situation becomes 'old': SVIDs it signed stay valid until its notAfter.
 * - Of several active rows of one kind (not produced by this code, but possible after manual edits)
 *   the newest stays active and the others become 'old'.
 * - old, tainted and revoked rows never need their key and are left alone.
 */
export function planRepair(input: RepairInput): RepairPlan {
  const drop: RepairStep[] = [];
  const demote: RepairStep[] = [];
  const activeOk: AuthorityRecord[] = [];
  for (const a of input.authorities) {
    if (malformed(a)) {
      drop.push({ record: a, reason: 'row has no certificate or public key' });
      continue;
    }
    if (a.status !== 'prepared' && a.status !== 'active') continue;
    let problem: string | undefined;
    if (!input.hasKey(a.keyId)) problem = 'its private key is missing';
    else if (!matchesUpstream(a, input.upstreamCertificate)) problem = 'the upstream CA configuration changed';
    if (problem === undefined) {
      if (a.status === 'active') activeOk.push(a);
    } else if (a.status === 'prepared') {
      drop.push({ record: a, reason: problem });
    } else {
      demote.push({ record: { ...a, status: 'old' }, reason: problem });
    }
  }
  for (const kind of ['x509', 'jwt'] as const) {
    const extra = activeOk.filter((a) => a.kind === kind).sort(newestFirst).slice(1);
    for (const a of extra) demote.push({ record: { ...a, status: 'old' }, reason: 'a newer authority is active' });
  }
  return { drop, demote };
}
