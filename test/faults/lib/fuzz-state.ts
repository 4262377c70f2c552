// The server state the fuzzer watches, read over the admin socket: entries, agents, the bundle, the
// authorities, federated bundles and the issuance ledger. Between two snapshots, a part of the state
// may change only through calls the server answered OK; everything refused must change nothing.
import { createHash } from 'node:crypto';
import type { AdminClient } from '../../../src/server/cli/admin-client.js';

export type Domain = 'entries' | 'agents' | 'bundle' | 'authorities' | 'federated';
export const DOMAINS: readonly Domain[] = ['entries', 'agents', 'bundle', 'authorities', 'federated'];

export interface StateSnapshot {
  digest: Record<Domain, string>;
  entryCount: number;
  agentCount: number;
  ledger: number;
}

/** What the calls answered OK since the last snapshot may have changed. */
export interface Effects {
  touched: Set<Domain>;
  entryDelta: number;
  /** Known change of the agent count; undefined once an attestation (new or re-attest) succeeded. */
  agentDelta: number | undefined;
  issued: number;
  /** The ledger also grows by other means (an agent minting for workloads, authority changes). */
  ledgerUnknown: boolean;
}

export const noEffects = (ledgerUnknown = false): Effects => ({ touched: new Set(), entryDelta: 0, agentDelta: 0, issued: 0, ledgerUnknown });

const digest = (v: unknown): string => createHash('sha256').update(JSON.stringify(v)).digest('hex').slice(0, 16);

async function allPages<T>(admin: AdminClient, method: string, field: string, request: object = {}): Promise<T[]> {
  const items: T[] = [];
  let token = '';
  do {
    const res = await admin.call<Record<string, unknown>>(method, { ...request, page_size: 1000, page_token: token });
    items.push(...(res[field] as T[]));
    token = String(res['next_page_token'] ?? '');
  } while (token);
  return items;
}

export async function snapshotState(admin: AdminClient): Promise<StateSnapshot> {
  const entries = await allPages<{ id: string }>(admin, 'ListEntries', 'entries');
  const agents = (await allPages<Record<string, unknown>>(admin, 'ListAgents', 'agents')).map(({ last_seen: _ignored, ...rest }) => rest);
  const bundle = await admin.call<{ bundle: Buffer; sequence: number }>('GetBundle');
  const authorities = await admin.call<{ authorities: unknown[] }>('ListAuthorities');
  const federated = await admin.call<{ bundles: Record<string, Buffer> }>('ListFederatedBundles');
  const ledger = await allPages<unknown>(admin, 'ListSVIDs', 'svids');
  const byId = <T extends { id?: unknown }>(list: T[]) => [...list].sort((a, b) => String(a.id).localeCompare(String(b.id)));
  return {
    digest: {
      entries: digest(byId(entries)),
      agents: digest(byId(agents)),
      bundle: digest([bundle.sequence, bundle.bundle.toString('base64')]),
      authorities: digest(authorities.authorities),
      federated: digest(Object.entries(federated.bundles).sort(([a], [b]) => a.localeCompare(b)).map(([k, v]) => [k, v.toString('base64')])),
    },
    entryCount: entries.length,
    agentCount: agents.length,
    ledger: ledger.length,
  };
}

/** Differences between `after` and what `before` plus `effects` allow; empty when consistent. */
export function unexplainedChanges(before: StateSnapshot, after: StateSnapshot, effects: Effects): string[] {
  const problems: string[] = [];
  for (const domain of DOMAINS) {
    if (!effects.touched.has(domain) && before.digest[domain] !== after.digest[domain]) problems.push(`${domain} changed, yet no call that may change it succeeded`);
  }
  if (after.entryCount !== before.entryCount + effects.entryDelta) {
    problems.push(`entry count ${after.entryCount}, expected ${before.entryCount} + ${effects.entryDelta}`);
  }
  if (effects.agentDelta !== undefined && after.agentCount !== before.agentCount + effects.agentDelta) {
    problems.push(`agent count ${after.agentCount}, expected ${before.agentCount} + ${effects.agentDelta}`);
  }
  if (!effects.ledgerUnknown && after.ledger !== before.ledger + effects.issued) {
    problems.push(`ledger has ${after.ledger} SVIDs, expected ${before.ledger} + ${effects.issued} issued by accepted calls`);
  }
  return problems;
}
