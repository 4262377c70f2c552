// The agent's durable state in a LevelDB store at <dataDir>/agent (directory mode 0700).
//
// What is kept, and why: the agent SVID and its private key (unencrypted PKCS#8, like SPIRE's
// keys.json: protection is the 0700 directory owned by the agent's user), the agent ID, the own
// and federated bundles (SPIFFE bundle JSON), the last applied sync revision, the authorised
// entries and the minted workload SVIDs with their keys. A restarted agent therefore serves its
// cached identities at once, even with the server down, until they expire.
//
// Every write is sync:true (fsync before it is acknowledged); related keys change in one atomic
// batch. Only one process may hold the store: LevelDB's LOCK file enforces that.
//
// Keys: meta/trust-domain, agent/svid, bundle/own, bundle/fed/<td>, sync/revision, entry/<id>,
//       svid/<entryId>.
import { chmodSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { Level } from 'level';
import type { AgentEntry } from '../cache/types.js';
import { decodeSpiffeBundle, encodeSpiffeBundle } from '../../common/bundle-json.js';
import { EmblemError, failedPrecondition } from '../../common/errors.js';
import { writeBatch, type LevelOp } from '../../common/level-batch.js';
import type { TrustBundle } from '../../common/trust-bundle.js';
import {
  decodeAgentSvid,
  decodeEntry,
  decodeIdentity,
  encodeAgentSvid,
  encodeEntry,
  encodeIdentity,
  type StoredAgentSvid,
  type StoredIdentity,
} from './records.js';

export type { StoredAgentSvid, StoredIdentity, AttestationType } from './records.js';

const K = {
  trustDomain: 'meta/trust-domain',
  agentSvid: 'agent/svid',
  bundle: 'bundle/own',
  fedPrefix: 'bundle/fed/',
  revision: 'sync/revision',
  entryPrefix: 'entry/',
  svidPrefix: 'svid/',
} as const;

/** Everything the store holds, as loaded at start-up. */
export interface AgentSnapshot {
  agentSvid?: StoredAgentSvid;
  bundle?: TrustBundle;
  federatedBundles: Map<string, TrustBundle>;
  /** Last applied sync revision; 0 = none. */
  revision: number;
  entries: AgentEntry[];
  identities: StoredIdentity[];
}

/** One applied sync update, written atomically. */
export interface SyncWrite {
  revision: number;
  /** true: `upserted` is the complete entry set (all other entries and their SVIDs are dropped). */
  full: boolean;
  upserted: readonly AgentEntry[];
  deletedIds: readonly string[];
  bundle?: TrustBundle;
  /** The complete federated bundle map, when it changed. */
  federatedBundles?: ReadonlyMap<string, TrustBundle>;
}

export interface AgentStore {
  /** Directory of the LevelDB store. */
  readonly location: string;
  load(): Promise<AgentSnapshot>;
  saveAgentSvid(svid: StoredAgentSvid): Promise<void>;
  saveBundle(bundle: TrustBundle): Promise<void>;
  applySync(write: SyncWrite): Promise<void>;
  putIdentities(identities: readonly StoredIdentity[]): Promise<void>;
  deleteIdentities(entryIds: readonly string[]): Promise<void>;
  /** Removes all state (a banned agent must not serve anything after a restart). */
  clear(): Promise<void>;
  close(): Promise<void>;
}

const SYNC = { sync: true } as const;

function isLocked(err: unknown): boolean {
  const e = err as { code?: string; cause?: { code?: string } } | undefined;
  return e?.code === 'LEVEL_LOCKED' || e?.cause?.code === 'LEVEL_LOCKED';
}

/** `[prefix, prefix + 0xff)`: every key that starts with `prefix` (keys are ASCII). */
const range = (prefix: string): { gte: string; lt: string } => ({ gte: prefix, lt: prefix + '\xff' });

export interface OpenAgentStoreOptions {
  dataDir: string;
  /** The store remembers its trust domain and refuses to be used for another one. */
  trustDomain: string;
}

export async function openAgentStore(options: OpenAgentStoreOptions): Promise<AgentStore> {
  const location = join(options.dataDir, 'agent');
  try {
    mkdirSync(options.dataDir, { recursive: true, mode: 0o700 });
    mkdirSync(location, { recursive: true, mode: 0o700 });
    chmodSync(location, 0o700);
  } catch (err) {
    throw failedPrecondition(`cannot create agent data directory ${location}: ${(err as Error).message}`);
  }
  // The store is small (entries and SVIDs of one node) and read in full only at start: LevelDB's
  // default 8 MiB block cache and 4 MiB memtable would only add to the agent's resident memory.
  const db = new Level<string, string>(location, { valueEncoding: 'utf8', cacheSize: 512 * 1024, writeBufferSize: 1024 * 1024 });
  try {
    await db.open();
  } catch (err) {
    if (isLocked(err)) {
      throw new EmblemError('failed_precondition', `data directory ${options.dataDir} in use by another emblem-agent`, { cause: err });
    }
    throw new EmblemError('failed_precondition', `cannot open agent data directory ${location}: ${(err as Error).message}`, { cause: err });
  }
  const storedTd = await db.get(K.trustDomain);
  if (storedTd === undefined) {
    await db.put(K.trustDomain, options.trustDomain, SYNC);
  } else if (storedTd !== options.trustDomain) {
    await db.close();
    throw failedPrecondition(
      `data directory ${options.dataDir} belongs to trust domain "${storedTd}", not "${options.trustDomain}" (use another data directory)`,
    );
  }
  return createStore(db, location, options.trustDomain);
}

function createStore(db: Level<string, string>, location: string, trustDomain: string): AgentStore {
  const write = (ops: LevelOp[]): Promise<void> => writeBatch(db, ops, SYNC);

  // Writes run one after another, so a read-then-write (full replace) never interleaves with another.
  let tail: Promise<unknown> = Promise.resolve();
  function serial<T>(fn: () => Promise<T>): Promise<T> {
    const run = tail.then(fn, fn);
    tail = run.catch(() => undefined);
    return run;
  }

  async function keysWithPrefix(prefix: string): Promise<string[]> {
    const out: string[] = [];
    for await (const key of db.keys(range(prefix))) out.push(key);
    return out;
  }

  async function load(): Promise<AgentSnapshot> {
    const snapshot: AgentSnapshot = { federatedBundles: new Map(), revision: 0, entries: [], identities: [] };
    const svid = await db.get(K.agentSvid);
    if (svid !== undefined) snapshot.agentSvid = decodeAgentSvid(svid);
    const bundle = await db.get(K.bundle);
    if (bundle !== undefined) snapshot.bundle = decodeSpiffeBundle(trustDomain, bundle);
    for await (const [key, value] of db.iterator(range(K.fedPrefix))) {
      const td = key.slice(K.fedPrefix.length);
      snapshot.federatedBundles.set(td, decodeSpiffeBundle(td, value));
    }
    const revision = await db.get(K.revision);
    if (revision !== undefined) snapshot.revision = Number(revision);
    for await (const value of db.values(range(K.entryPrefix))) snapshot.entries.push(decodeEntry(value));
    for await (const value of db.values(range(K.svidPrefix))) snapshot.identities.push(decodeIdentity(value));
    return snapshot;
  }

  async function applySync(w: SyncWrite): Promise<void> {
    const ops: LevelOp[] = [{ type: 'put', key: K.revision, value: String(w.revision) }];
    if (w.full) {
      const keep = new Set(w.upserted.map((e) => e.id));
      for (const key of await keysWithPrefix(K.entryPrefix)) {
        const id = key.slice(K.entryPrefix.length);
        if (!keep.has(id)) ops.push({ type: 'del', key }, { type: 'del', key: K.svidPrefix + id });
      }
    }
    for (const id of w.deletedIds) ops.push({ type: 'del', key: K.entryPrefix + id }, { type: 'del', key: K.svidPrefix + id });
    for (const e of w.upserted) ops.push({ type: 'put', key: K.entryPrefix + e.id, value: encodeEntry(e) });
    if (w.bundle) ops.push({ type: 'put', key: K.bundle, value: encodeSpiffeBundle(w.bundle) });
    if (w.federatedBundles) {
      for (const key of await keysWithPrefix(K.fedPrefix)) {
        if (!w.federatedBundles.has(key.slice(K.fedPrefix.length))) ops.push({ type: 'del', key });
      }
      for (const [td, b] of w.federatedBundles) ops.push({ type: 'put', key: K.fedPrefix + td, value: encodeSpiffeBundle(b) });
    }
    await write(ops);
  }

  return {
    location,
    load,
    saveAgentSvid: (svid) => serial(() => db.put(K.agentSvid, encodeAgentSvid(svid), SYNC)),
    saveBundle: (bundle) => serial(() => db.put(K.bundle, encodeSpiffeBundle(bundle), SYNC)),
    applySync: (w) => serial(() => applySync(w)),
    putIdentities: (identities) =>
      serial(() => write(identities.map((i) => ({ type: 'put', key: K.svidPrefix + i.entryId, value: encodeIdentity(i) })))),
    deleteIdentities: (entryIds) => serial(() => write(entryIds.map((id) => ({ type: 'del', key: K.svidPrefix + id })))),
    clear: () =>
      serial(async () => {
        const keys = await keysWithPrefix('');
        await write(keys.filter((k) => k !== K.trustDomain).map((key) => ({ type: 'del', key })));
      }),
    close: () => serial(() => db.close()),
  };
}
