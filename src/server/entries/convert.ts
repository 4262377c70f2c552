// Registration entries between the datastore record (camelCase) and the wire shape of
// emblem.server.v1.Entry as @grpc/proto-loader hands it over (snake_case, int64 as numbers).
// Shared by the Node service (push sync) and the Admin service.
import type { EntryProto } from '../../common/api/entry-message.js';
import type { EntryRecord, NewEntry } from '../datastore/types.js';

export type { EntryProto };

export function entryToProto(entry: EntryRecord): EntryProto {
  return {
    id: entry.id,
    spiffe_id: entry.spiffeId,
    parent_id: entry.parentId,
    selectors: entry.selectors.map((s) => ({ type: s.type, value: s.value })),
    x509_svid_ttl: entry.x509SvidTtl,
    jwt_svid_ttl: entry.jwtSvidTtl,
    dns_names: [...entry.dnsNames],
    federates_with: [...entry.federatesWith],
    admin: entry.admin,
    downstream: entry.downstream,
    hint: entry.hint,
    expires_at: entry.expiresAt,
    created_at: entry.createdAt,
    revision: entry.revision,
  };
}

/**
 * Copies a wire entry into a NewEntry without validating it (use validateNewEntry /
 * validateEntryUpdate for untrusted input). Missing fields take the proto defaults; `revision` is
 * dropped because the store owns it.
 */
export function entryFromProto(p: Partial<EntryProto>): NewEntry {
  return {
    id: p.id ?? '',
    spiffeId: p.spiffe_id ?? '',
    parentId: p.parent_id ?? '',
    selectors: (p.selectors ?? []).map((s) => ({ type: s.type, value: s.value })),
    x509SvidTtl: p.x509_svid_ttl ?? 0,
    jwtSvidTtl: p.jwt_svid_ttl ?? 0,
    dnsNames: [...(p.dns_names ?? [])],
    federatesWith: [...(p.federates_with ?? [])],
    admin: p.admin ?? false,
    downstream: p.downstream ?? false,
    hint: p.hint ?? '',
    expiresAt: p.expires_at ?? 0,
    createdAt: p.created_at ?? 0,
  };
}
