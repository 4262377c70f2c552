// The wire shape of emblem.server.v1.SyncEntriesUpdate (node.proto) as @grpc/proto-loader hands it
// over: written by the server's agent feed, read by the agent's sync client.
import type { EntryProto } from './entry-message.js';

export type AgentStateName = 'AGENT_STATE_OK' | 'AGENT_STATE_BANNED' | 'AGENT_STATE_EVICTED';

export interface SyncEntriesUpdateMessage {
  revision: number;
  /** true: `entries` is the complete authorised set; false: a delta. */
  full: boolean;
  entries: EntryProto[];
  deleted_entry_ids: string[];
  /** SPIFFE bundle JSON of the own trust domain; empty = unchanged. */
  bundle: Buffer;
  federated_bundles: Record<string, Buffer>;
  federated_changed: boolean;
  tainted_authority_ids: string[];
  agent_state: AgentStateName;
}
