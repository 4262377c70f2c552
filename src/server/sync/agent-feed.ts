// The push-sync feed of one agent (Node.SyncEntries): one first update, then a delta whenever
// something this agent receives changes. Everything is read from the state mirror and the
// authorizer's cache; nothing here touches the datastore.
//
// Messages are plain objects in the shape of emblem.server.v1.SyncEntriesUpdate as
// @grpc/proto-loader serialises it (snake_case, enums as strings, map as object). Every update
// carries the complete current tainted_authority_ids list (empty = none tainted); `bundle` is
// empty when unchanged; `federated_bundles` is the full map when `federated_changed`.
import { encodeSpiffeBundle } from '../../common/bundle-json.js';
import type { TrustBundle } from '../../common/trust-bundle.js';
import type { AuthorizationChange, EntryAuthorizer } from '../authorization/authorized-entries.js';
import type { AuthorityRecord, EntryRecord } from '../datastore/types.js';
import { entryToProto, type EntryProto } from '../entries/convert.js';
import type { StateMirror } from './state-mirror.js';
import type { AgentStateName, SyncEntriesUpdateMessage } from '../../common/api/sync-message.js';

export type { AgentStateName, SyncEntriesUpdateMessage };

export interface AgentFeedRequest {
  agentId: string;
  /** The last revision the agent applied; 0 = nothing. */
  sinceRevision: number;
  /** The entries the agent holds (empty on a first sync). */
  knownEntries: readonly { id: string; revision: number }[];
}

export interface AgentFeed {
  close(): void;
  readonly closed: boolean;
}

export interface AgentFeedOptions {
  /** Unix seconds; must match the authorizer's clock. */
  now?: () => number;
}

// Records are replaced (never mutated) by the mirror, so encodings can be shared by every feed.
const protoCache = new WeakMap<EntryRecord, EntryProto>();
const bundleCache = new WeakMap<TrustBundle, Buffer>();

function toProto(e: EntryRecord): EntryProto {
  let p = protoCache.get(e);
  if (!p) protoCache.set(e, (p = entryToProto(e)));
  return p;
}

function encodeBundle(b: TrustBundle | undefined): Buffer {
  if (!b) return Buffer.alloc(0);
  let buf = bundleCache.get(b);
  if (!buf) bundleCache.set(b, (buf = Buffer.from(encodeSpiffeBundle(b), 'utf8')));
  return buf;
}

function federatedMap(mirror: StateMirror): Record<string, Buffer> {
  const out: Record<string, Buffer> = {};
  for (const [td, b] of mirror.federatedBundles()) out[td] = encodeBundle(b);
  return out;
}

/** Authorities whose SVIDs must be re-keyed: tainted now, or revoked after a taint. */
export function taintedAuthorityIds(authorities: ReadonlyMap<string, AuthorityRecord>): string[] {
  const ids: string[] = [];
  for (const a of authorities.values()) if (a.status === 'tainted' || a.tainted === true) ids.push(a.id);
  return ids.sort();
}

const MAX_TIMER_MS = 2_147_000_000;

export function openAgentFeed(
  mirror: StateMirror,
  authz: EntryAuthorizer,
  request: AgentFeedRequest,
  send: (update: SyncEntriesUpdateMessage) => void,
  options: AgentFeedOptions = {},
): AgentFeed {
  const { agentId } = request;
  const now = options.now ?? ((): number => Math.floor(Date.now() / 1000));
  /** What the agent holds: entry ID -> revision. */
  const sent = new Map<string, number>();
  let bundleSequence: number | undefined;
  let tainted = '';
  let closed = false;
  let unsubscribe: (() => void) | undefined;
  let expiryTimer: NodeJS.Timeout | undefined;

  const message = (fields: Partial<SyncEntriesUpdateMessage>): SyncEntriesUpdateMessage => ({
    revision: mirror.revision(),
    full: false,
    entries: [],
    deleted_entry_ids: [],
    bundle: Buffer.alloc(0),
    federated_bundles: {},
    federated_changed: false,
    tainted_authority_ids: taintedAuthorityIds(mirror.authorities()),
    agent_state: 'AGENT_STATE_OK',
    ...fields,
  });

  function close(): void {
    if (closed) return;
    closed = true;
    unsubscribe?.();
    if (expiryTimer) clearTimeout(expiryTimer);
  }

  /** Sends BANNED / EVICTED and closes when the agent can no longer sync; true if it did. */
  function endIfGone(): boolean {
    const agent = mirror.getAgent(agentId);
    if (agent && !agent.banned) return false;
    send(message({ agent_state: agent ? 'AGENT_STATE_BANNED' : 'AGENT_STATE_EVICTED' }));
    close();
    return true;
  }

  /** Brings `sent` in line with the authorised set; returns what the agent must apply. */
  function entryDelta(): { entries: EntryProto[]; deleted: string[] } {
    const current = authz.authorizedMap(agentId);
    const entries: EntryProto[] = [];
    const deleted: string[] = [];
    for (const e of current.values()) {
      if (sent.get(e.id) !== e.revision) {
        entries.push(toProto(e));
        sent.set(e.id, e.revision);
      }
    }
    for (const id of sent.keys()) {
      if (!current.has(id)) {
        deleted.push(id);
        sent.delete(id);
      }
    }
    return { entries, deleted };
  }

  /** The entries of `upserted` the agent does not hold at that revision yet. */
  function upserts(upserted: readonly EntryRecord[]): EntryProto[] {
    const out: EntryProto[] = [];
    for (const e of upserted) {
      if (sent.get(e.id) === e.revision) continue;
      out.push(toProto(e));
      sent.set(e.id, e.revision);
    }
    return out;
  }

  function scheduleExpiry(): void {
    if (expiryTimer) clearTimeout(expiryTimer);
    expiryTimer = undefined;
    const at = authz.nextExpiry(agentId);
    if (at === 0 || closed) return;
    const delayMs = Math.min(Math.max(0, (at - now()) * 1000) + 50, MAX_TIMER_MS);
    expiryTimer = setTimeout(onExpiry, delayMs);
    expiryTimer.unref();
  }

  function onExpiry(): void {
    expiryTimer = undefined;
    if (closed) return;
    const { entries, deleted } = entryDelta();
    if (entries.length > 0 || deleted.length > 0) send(message({ entries, deleted_entry_ids: deleted }));
    scheduleExpiry();
  }

  function onChange(change: AuthorizationChange): void {
    if (closed) return;
    const update: Partial<SyncEntriesUpdateMessage> = {};
    let changed = false;
    if (change.recomputedAgents.has(agentId)) {
      if (endIfGone()) return;
      const { entries, deleted } = entryDelta();
      if (entries.length > 0 || deleted.length > 0) {
        update.entries = entries;
        update.deleted_entry_ids = deleted;
        changed = true;
      }
      scheduleExpiry();
    } else {
      const upserted = change.upsertedEntries.get(agentId);
      if (upserted) {
        update.entries = upserts(upserted);
        changed = update.entries.length > 0;
        scheduleExpiry();
      }
    }
    if (change.bundleChanged) {
      const b = mirror.bundle();
      if (b?.sequence !== bundleSequence) {
        bundleSequence = b?.sequence;
        update.bundle = encodeBundle(b);
        changed = true;
      }
    }
    if (change.federatedChanged) {
      update.federated_bundles = federatedMap(mirror);
      update.federated_changed = true;
      changed = true;
    }
    if (change.authoritiesChanged) {
      const ids = taintedAuthorityIds(mirror.authorities());
      if (ids.join('\n') !== tainted) {
        tainted = ids.join('\n');
        changed = true;
      }
    }
    if (changed) send(message(update));
  }

  function first(): void {
    if (endIfGone()) return;
    const full = request.knownEntries.length === 0 && request.sinceRevision === 0;
    if (!full) for (const k of request.knownEntries) sent.set(k.id, k.revision);
    const { entries, deleted } = entryDelta();
    const b = mirror.bundle();
    bundleSequence = b?.sequence;
    const update = message({
      full,
      entries,
      deleted_entry_ids: deleted,
      bundle: encodeBundle(b),
      federated_bundles: federatedMap(mirror),
      federated_changed: true,
    });
    tainted = update.tainted_authority_ids.join('\n');
    unsubscribe = authz.onChange(onChange);
    send(update);
    scheduleExpiry();
  }

  first();
  return {
    close,
    get closed() {
      return closed;
    },
  };
}
