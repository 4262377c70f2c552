// TypeScript shapes of the node.proto messages as the agent sends and receives them through
// @grpc/proto-loader (snake_case fields, int64 as number, bytes as Buffer, enums as strings,
// defaults filled, and the name of the set oneof member in a virtual field), plus the conversion of
// a wire Entry to the agent's AgentEntry.
import type { EntryProto, SelectorProto } from '../../common/api/entry-message.js';
import type { AgentEntry } from '../cache/types.js';
import type { AgentStateName, SyncEntriesUpdateMessage } from '../../common/api/sync-message.js';

/** emblem.server.v1.Selector on the wire. */
export type SelectorMsg = SelectorProto;

/** emblem.server.v1.Entry on the wire. */
export type EntryMsg = EntryProto;

export interface StatusMsg {
  code: number;
  message: string;
}

// --- AttestAgent ---------------------------------------------------------------------------

export interface AttestParamsMsg {
  join_token?: string;
  x509pop?: { cert_chain: Buffer[] };
  csr: Buffer;
}

export type AttestAgentRequestMsg = { params: AttestParamsMsg } | { challenge_response: Buffer };

export interface AttestResultMsg {
  agent_id: string;
  svid_chain: Buffer;
  bundle: Buffer;
}

export interface AttestAgentResponseMsg {
  step?: 'challenge' | 'result';
  challenge?: Buffer | null;
  result?: AttestResultMsg | null;
}

// --- RenewAgent ----------------------------------------------------------------------------

export interface RenewAgentRequestMsg {
  csr: Buffer;
}

export interface RenewAgentResponseMsg {
  svid_chain: Buffer;
}

// --- SyncEntries ---------------------------------------------------------------------------

export interface EntryRevisionMsg {
  id: string;
  revision: number;
}

export interface SyncEntriesRequestMsg {
  since_revision: number;
  known_entries: EntryRevisionMsg[];
}

/** The server's SyncEntriesUpdate; one definition shared with the server's agent feed. */
export type { AgentStateName };
export type SyncEntriesUpdateMsg = SyncEntriesUpdateMessage;

// --- BatchNewX509SVID / NewJWTSVID ---------------------------------------------------------

export interface X509SvidParamsMsg {
  entry_id: string;
  csr: Buffer;
}

export interface BatchNewX509SvidRequestMsg {
  params: X509SvidParamsMsg[];
}

export interface X509SvidResultMsg {
  entry_id: string;
  status: StatusMsg | null;
  svid_chain: Buffer;
  expires_at: number;
  authority_id: string;
}

export interface BatchNewX509SvidResponseMsg {
  results: X509SvidResultMsg[];
}

export interface NewJwtSvidRequestMsg {
  entry_id: string;
  audience: string[];
}

export interface NewJwtSvidResponseMsg {
  token: string;
  expires_at: number;
}

/** The agent's view of a wire entry (fields the agent does not use are dropped). */
export function toAgentEntry(e: EntryMsg): AgentEntry {
  return {
    id: e.id,
    spiffeId: e.spiffe_id,
    parentId: e.parent_id,
    selectors: (e.selectors ?? []).map((s) => ({ type: s.type, value: s.value })),
    federatesWith: [...(e.federates_with ?? [])],
    hint: e.hint ?? '',
    jwtSvidTtl: e.jwt_svid_ttl ?? 0,
    createdAt: e.created_at ?? 0,
    revision: e.revision ?? 0,
  };
}
