// Admin API operations the scenarios need, over the server's local socket (what the CLI uses).
import { writeFileSync } from 'node:fs';
import type { AdminClient } from '../../src/server/cli/admin-client.js';
import { mapLimit } from './stats.js';

export interface EntrySpec {
  spiffeId: string;
  parentId: string;
  /** "type:value" */
  selectors: string[];
  x509SvidTtl?: number;
}

export interface JoinToken {
  token: string;
  agentId: string;
}

const toProto = (e: EntrySpec) => ({
  spiffe_id: e.spiffeId,
  parent_id: e.parentId,
  selectors: e.selectors.map((s) => {
    const at = s.indexOf(':');
    return { type: s.slice(0, at), value: s.slice(at + 1) };
  }),
  x509_svid_ttl: e.x509SvidTtl ?? 0,
});

export async function createJoinTokens(admin: AdminClient, count: number, ttlSeconds = 3600): Promise<JoinToken[]> {
  return mapLimit(Array.from({ length: count }), 16, async () => {
    const res = await admin.call<{ token: string; agent_id: string }>('CreateJoinToken', { ttl: ttlSeconds });
    return { token: res.token, agentId: res.agent_id };
  });
}

/** Creates entries with BatchCreateEntry (1,000 per call, `concurrency` calls in flight); returns their IDs in order. */
export async function createEntries(admin: AdminClient, entries: readonly EntrySpec[], concurrency = 4): Promise<string[]> {
  const chunks: EntrySpec[][] = [];
  for (let i = 0; i < entries.length; i += 1000) chunks.push(entries.slice(i, i + 1000));
  const ids = await mapLimit(chunks, concurrency, async (chunk) => {
    const res = await admin.call<{ results: { status: { code: number; message: string }; entry: { id: string } | null }[] }>('BatchCreateEntry', {
      entries: chunk.map(toProto),
    });
    return res.results.map((r, i) => {
      if (r.status.code !== 0 || !r.entry) throw new Error(`creating entry ${chunk[i]!.spiffeId} failed: ${r.status.message}`);
      return r.entry.id;
    });
  });
  return ids.flat();
}

/** CreateEntry (one entry, one call: what `emblem-server entry create` does). */
export async function createEntry(admin: AdminClient, entry: EntrySpec): Promise<string> {
  const res = await admin.call<{ id: string }>('CreateEntry', toProto(entry));
  return res.id;
}

export async function deleteEntry(admin: AdminClient, id: string): Promise<void> {
  await admin.call('DeleteEntry', { id });
}

export async function banAgent(admin: AdminClient, id: string): Promise<void> {
  await admin.call('BanAgent', { id });
}

/** Writes the server's SPIFFE bundle (JSON) to `path`, for an agent's --trust-bundle. */
export async function writeTrustBundle(admin: AdminClient, path: string): Promise<void> {
  const res = await admin.call<{ bundle: Buffer }>('GetBundle');
  writeFileSync(path, res.bundle);
}

interface AuthorityMsg {
  id: string;
  kind: string;
  status: string;
}

/** The X.509 authorities, oldest first. */
async function x509Authorities(admin: AdminClient): Promise<AuthorityMsg[]> {
  const res = await admin.call<{ authorities: AuthorityMsg[] }>('ListAuthorities');
  return res.authorities.filter((a) => a.kind === 'x509');
}

/**
 * Prepares and activates a new X.509 authority; returns the ID of the one it replaced (now "old").
 * The caller taints that one with `taintAuthority` when it wants agents to re-key.
 */
export async function rotateX509Authority(admin: AdminClient): Promise<{ oldId: string; newId: string }> {
  const before = await x509Authorities(admin);
  const active = before.find((a) => a.status === 'active');
  if (!active) throw new Error('no active X.509 authority');
  const prepared = before.find((a) => a.status === 'prepared') ?? (await admin.call<AuthorityMsg>('PrepareAuthority', { kind: 'x509' }));
  await admin.call('ActivateAuthority', { id: prepared.id });
  return { oldId: active.id, newId: prepared.id };
}

export async function taintAuthority(admin: AdminClient, id: string): Promise<void> {
  await admin.call('TaintAuthority', { id });
}

/** Scrapes a Prometheus endpoint and sums the samples of `metric` whose labels include `labels`. */
export async function scrapeSum(url: string, metric: string, labels: Record<string, string> = {}): Promise<number> {
  const res = await fetch(url);
  if (!res.ok) throw new Error(`GET ${url}: HTTP ${res.status}`);
  const text = await res.text();
  let sum = 0;
  for (const line of text.split('\n')) {
    if (!line.startsWith(metric)) continue;
    const m = /^(\w+)(\{[^}]*\})?\s+(\S+)$/.exec(line);
    if (!m || m[1] !== metric) continue;
    const labelText = m[2] ?? '';
    if (Object.entries(labels).every(([k, v]) => labelText.includes(`${k}="${v}"`))) sum += Number(m[3]);
  }
  return sum;
}
