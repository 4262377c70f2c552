// The server's signing authorities: one active X.509 CA and one active JWT key at a time, their
// successors prepared and published ahead of use, and their predecessors kept in the trust bundle
// until nothing they signed can still be valid. The CA journal (AuthorityRecord rows) is the truth;
// the bundle is derived from it (bundle-builder.ts) and keys live in a KeyManager.
//
// Crash safety: every change is a sequence of individually durable writes ordered so that a kill -9
// between any two leaves a state start() repairs without ever signing with an unpublished key:
// - prepare:  generate key (file) -> journal row 'prepared' -> bundle with the new authority.
//             A key without a row is an orphan, deleted at start. A row missing from the bundle is
//             re-added at start (the bundle is always recomputed from the journal).
// - activate: bundle already holds the new authority (re-synced first) -> old active row 'old' ->
//             new row 'active'. Between the two row writes there is no active row; start() then
//             activates the newest usable prepared one, which is the one being activated.
// - revoke:   row 'revoked' -> bundle without it -> delete key. A revoked row is never published, so
//             a crash before the bundle write is finished at start.
// - prune:    bundle without the expired authority -> delete row -> delete key. Expired authorities
//             are never published, so a crash after any step converges.
// Writes go through one queue, so the rotation timer and operator actions never interleave.
import { randomBytes, type KeyObject } from 'node:crypto';
import { EmblemError, failedPrecondition, invalidArgument, notFound } from '../../common/errors.js';
import type { Logger } from '../../common/logger.js';
import { parseTrustDomain } from '../../common/spiffe-id.js';
import type { TrustBundle } from '../../common/trust-bundle.js';
import type { Issuer } from '../../common/x509/issuer.js';
import type { AuthorityKind, AuthorityRecord, Datastore } from '../datastore/types.js';
import {
  checkUpstream,
  issuerFor,
  newJwtAuthority,
  newX509Authority,
  type UpstreamCa,
  type UpstreamConfig,
} from './authority-factory.js';
import { bundleContents, nextBundle } from './bundle-builder.js';
import { planRepair } from './journal-repair.js';
import type { KeyManager, KeyPair } from './key-manager.js';
import { isExpired, planRotation, type RotationStep } from './rotation.js';

export type { UpstreamConfig };

export interface AuthorityManagerOptions {
  datastore: Datastore;
  keyManager: KeyManager;
  trustDomain: string;
  /** Default 86400 (24 h). */
  caTtlSeconds?: number;
  /** Default: caTtlSeconds. */
  jwtKeyTtlSeconds?: number;
  upstream?: UpstreamConfig;
  /** spiffe_refresh_hint of the published bundle. */
  refreshHintSeconds?: number;
  /** Period of the rotation timer (startTimer); default 10 s. */
  rotationIntervalMs?: number;
  logger: Logger;
  /** Milliseconds since the epoch; for tests. */
  now?: () => number;
}

export interface ActiveX509 {
  issuer: Issuer;
  authority: AuthorityRecord;
}

export interface ActiveJwt {
  privateKey: KeyObject;
  kid: string;
  authority: AuthorityRecord;
}

export interface AuthorityManager {
  /** Loads and repairs the journal, makes sure both kinds have an active authority, syncs the bundle. */
  start(): Promise<void>;
  /** One rotation check (the timer calls this); `nowMs` overrides the clock. */
  rotate(nowMs?: number): Promise<void>;
  startTimer(): void;
  stop(): void;
  /** Every journal row, oldest first. */
  list(): AuthorityRecord[];
  /** Creates and publishes a new authority; failed_precondition if one of that kind is already prepared. */
  prepare(kind: AuthorityKind): Promise<AuthorityRecord>;
  /** Activates a prepared authority; the active one becomes 'old'. */
  activate(id: string): Promise<AuthorityRecord>;
  /** Marks an 'old' authority tainted: agents re-key every SVID it signed. */
  taint(id: string): Promise<AuthorityRecord>;
  /** Removes a tainted authority from the bundle. */
  revoke(id: string): Promise<AuthorityRecord>;
  activeX509(): ActiveX509;
  activeJwt(): ActiveJwt;
  bundle(): TrustBundle;
  /** Authorities reached through taint (tainted or revoked) and not yet expired. */
  taintedAuthorityIds(): string[];
}

export const DEFAULT_CA_TTL_SECONDS = 86_400;
export const DEFAULT_ROTATION_INTERVAL_MS = 10_000;

function checkTtl(name: string, value: number): number {
  if (!Number.isSafeInteger(value) || value <= 0) throw invalidArgument(`${name} must be a positive whole number of seconds, got ${value}`);
  return value;
}

function byCreation(a: AuthorityRecord, b: AuthorityRecord): number {
  return a.createdAt - b.createdAt || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0);
}

export function createAuthorityManager(options: AuthorityManagerOptions): AuthorityManager {
  const { datastore, keyManager, logger } = options;
  const trustDomain = parseTrustDomain(options.trustDomain);
  const caTtl = checkTtl('caTtlSeconds', options.caTtlSeconds ?? DEFAULT_CA_TTL_SECONDS);
  const jwtTtl = checkTtl('jwtKeyTtlSeconds', options.jwtKeyTtlSeconds ?? caTtl);
  const refreshHint = options.refreshHintSeconds;
  if (refreshHint !== undefined) checkTtl('refreshHintSeconds', refreshHint);
  const clock = options.now ?? Date.now;
  const upstream: UpstreamCa | undefined = options.upstream ? checkUpstream(options.upstream) : undefined;

  const records = new Map<string, AuthorityRecord>();
  const keys = new Map<string, KeyPair>();
  let stored: TrustBundle | undefined;
  let x509: ActiveX509 | undefined;
  let jwt: ActiveJwt | undefined;
  let started = false;
  let timer: NodeJS.Timeout | undefined;
  let queue: Promise<unknown> = Promise.resolve();
  let warnedUpstreamEnd = false;

  function exclusive<T>(fn: () => Promise<T>): Promise<T> {
    const run = queue.then(fn, fn);
    queue = run.catch(() => undefined);
    return run;
  }

  const toSec = (ms: number): number => Math.floor(ms / 1000);
  const ofKind = (kind: AuthorityKind): AuthorityRecord[] => [...records.values()].filter((a) => a.kind === kind);
  const activeOf = (kind: AuthorityKind): AuthorityRecord | undefined => ofKind(kind).find((a) => a.status === 'active');

  function requireStarted(): void {
    if (!started) throw new EmblemError('unavailable', 'the authority manager has not started');
  }

  function find(id: string): AuthorityRecord {
    if (typeof id !== 'string' || id.length === 0) throw invalidArgument('authority ID is required');
    const a = records.get(id);
    if (!a) throw notFound(`authority ${id} not found`);
    return a;
  }

  async function keyOf(a: AuthorityRecord): Promise<KeyPair | undefined> {
    const cached = keys.get(a.keyId);
    if (cached) return cached;
    const pair = await keyManager.get(a.keyId);
    if (pair) keys.set(a.keyId, pair);
    return pair;
  }

  async function save(a: AuthorityRecord): Promise<AuthorityRecord> {
    await datastore.putAuthority(a);
    records.set(a.id, a);
    return a;
  }

  async function forgetKey(keyId: string): Promise<void> {
    keys.delete(keyId);
    try {
      await keyManager.delete(keyId);
    } catch (err) {
      // The row is gone or unpublished already; an orphan key is removed at the next start.
      logger.warn({ keyId, err }, 'could not delete an authority key');
    }
  }

  async function syncBundle(nowSec: number): Promise<void> {
    const next = nextBundle(stored, bundleContents([...records.values()], nowSec), trustDomain, refreshHint);
    if (!next) return;
    await datastore.setBundle(next);
    stored = next;
    logger.info({ sequence: next.sequence, x509Authorities: next.x509Authorities.length, jwtAuthorities: next.jwtAuthorities.length }, 'trust bundle updated');
  }

  async function loadActive(a: AuthorityRecord): Promise<void> {
    const pair = await keyOf(a);
    if (!pair) throw new EmblemError('internal', `the key of active authority ${a.id} is missing`);
    if (a.kind === 'x509') x509 = { issuer: issuerFor(a, pair.privateKey), authority: a };
    else jwt = { privateKey: pair.privateKey, kid: a.id, authority: a };
  }

  async function doPrepare(kind: AuthorityKind, nowMs: number): Promise<AuthorityRecord> {
    const keyId = `${kind}-${randomBytes(8).toString('hex')}`;
    const pair = await keyManager.generate(keyId);
    let record: AuthorityRecord;
    try {
      record =
        kind === 'x509'
          ? newX509Authority({ trustDomain, keyPair: pair, keyId, ttlSeconds: caTtl, nowMs, upstream }).record
          : await newJwtAuthority({ keyPair: pair, keyId, ttlSeconds: jwtTtl, nowMs });
      if (records.has(record.id)) throw new EmblemError('internal', `authority ID ${record.id} already exists`);
    } catch (err) {
      await forgetKey(keyId);
      throw err;
    }
    keys.set(keyId, pair);
    await save(record);
    await syncBundle(toSec(nowMs));
    logger.info({ authorityId: record.id, kind, notAfter: record.notAfter }, 'authority prepared');
    return record;
  }

  async function doActivate(id: string, nowMs: number): Promise<AuthorityRecord> {
    const next = find(id);
    const nowSec = toSec(nowMs);
    if (next.status !== 'prepared') throw failedPrecondition(`authority ${id} is ${next.status}; only a prepared authority can be activated`);
    if (isExpired(next, nowSec)) throw failedPrecondition(`authority ${id} has expired`);
    if (!(await keyOf(next))) throw failedPrecondition(`the key of authority ${id} is missing`);
    await syncBundle(nowSec); // published before first use, even if an earlier bundle write was lost
    const current = activeOf(next.kind);
    if (current) await save({ ...current, status: 'old' });
    const activated = await save({ ...next, status: 'active' });
    await loadActive(activated);
    logger.info({ authorityId: id, kind: next.kind, previous: current?.id }, 'authority activated');
    return activated;
  }

  /** With an upstream CA about to expire, a successor would not outlive the active authority. */
  function successorWouldOutlive(kind: AuthorityKind, nowSec: number): boolean {
    const active = activeOf(kind);
    if (kind !== 'x509' || !upstream || !active) return true;
    if (Math.min(nowSec + caTtl, upstream.notAfter) > active.notAfter) return true;
    if (!warnedUpstreamEnd) {
      warnedUpstreamEnd = true;
      logger.warn({ upstreamNotAfter: upstream.notAfter }, 'the upstream CA expires before a new intermediate could outlive the active one; renew the upstream CA');
    }
    return false;
  }

  async function doPrune(id: string, nowSec: number): Promise<void> {
    const a = records.get(id);
    if (!a) return;
    await syncBundle(nowSec); // bundleContents leaves out expired authorities
    await datastore.deleteAuthority(id);
    records.delete(id);
    await forgetKey(a.keyId);
    logger.info({ authorityId: id, kind: a.kind, status: a.status }, 'expired authority removed');
  }

  async function runStep(step: RotationStep, nowMs: number, prepared: Map<AuthorityKind, AuthorityRecord>): Promise<void> {
    const nowSec = toSec(nowMs);
    if (step.action === 'prune') return doPrune(step.id, nowSec);
    if (step.action === 'prepare') {
      if (!successorWouldOutlive(step.kind, nowSec)) return;
      prepared.set(step.kind, await doPrepare(step.kind, nowMs));
      return;
    }
    const id = step.id ?? prepared.get(step.kind)?.id;
    if (id !== undefined) await doActivate(id, nowMs);
  }

  async function doRotate(nowMs: number): Promise<void> {
    const prepared = new Map<AuthorityKind, AuthorityRecord>();
    for (const kind of ['x509', 'jwt'] as const) {
      for (const step of planRotation([...records.values()], kind, toSec(nowMs))) await runStep(step, nowMs, prepared);
    }
    await syncBundle(toSec(nowMs));
  }

  async function doStart(): Promise<void> {
    const nowMs = clock();
    records.clear();
    keys.clear();
    for (const a of await datastore.listAuthorities()) records.set(a.id, a);
    stored = await datastore.getBundle();

    const keyIds = new Set(await keyManager.list());
    const plan = planRepair({ authorities: [...records.values()], hasKey: (k) => keyIds.has(k), upstreamCertificate: upstream?.certificate });
    for (const { record, reason } of plan.drop) {
      logger.warn({ authorityId: record.id, kind: record.kind, status: record.status, reason }, 'dropping authority from the journal');
      await datastore.deleteAuthority(record.id);
      records.delete(record.id);
    }
    for (const { record, reason } of plan.demote) {
      logger.warn({ authorityId: record.id, kind: record.kind, reason }, 'active authority retired');
      await save(record);
    }
    const referenced = new Set([...records.values()].map((a) => a.keyId));
    for (const keyId of keyIds) {
      if (referenced.has(keyId)) continue;
      logger.info({ keyId }, 'deleting a key no authority refers to');
      await keyManager.delete(keyId);
    }

    await doRotate(nowMs);
    for (const kind of ['x509', 'jwt'] as const) {
      const active = activeOf(kind);
      if (!active) throw new EmblemError('internal', `no active ${kind} authority after start`);
      await loadActive(active);
    }
    started = true;
    logger.info({ x509Authority: x509?.authority.id, jwtAuthority: jwt?.kid, sequence: stored?.sequence }, 'authorities ready');
  }

  const rotate = (nowMs?: number): Promise<void> =>
    exclusive(async () => {
      requireStarted();
      await doRotate(nowMs ?? clock());
    });

  return {
    start: () => exclusive(doStart),
    rotate,

    startTimer() {
      if (timer) return;
      timer = setInterval(() => {
        rotate().catch((err: unknown) => logger.error({ err }, 'authority rotation failed'));
      }, options.rotationIntervalMs ?? DEFAULT_ROTATION_INTERVAL_MS);
      timer.unref();
    },

    stop() {
      if (timer) clearInterval(timer);
      timer = undefined;
    },

    list: () => [...records.values()].sort(byCreation),

    prepare(kind) {
      if (kind !== 'x509' && kind !== 'jwt') return Promise.reject(invalidArgument(`authority kind must be "x509" or "jwt", got ${JSON.stringify(kind)}`));
      return exclusive(async () => {
        requireStarted();
        const nowSec = toSec(clock());
        const existing = ofKind(kind).find((a) => a.status === 'prepared' && !isExpired(a, nowSec));
        if (existing) throw failedPrecondition(`${kind} authority ${existing.id} is already prepared; activate it first`);
        return doPrepare(kind, clock());
      });
    },

    activate: (id) =>
      exclusive(async () => {
        requireStarted();
        return doActivate(id, clock());
      }),

    taint: (id) =>
      exclusive(async () => {
        requireStarted();
        const a = find(id);
        if (a.status === 'active') throw failedPrecondition(`authority ${id} is active; activate a successor before tainting it`);
        if (a.status !== 'old') throw failedPrecondition(`authority ${id} is ${a.status}; only an old authority can be tainted`);
        const tainted = await save({ ...a, status: 'tainted', tainted: true });
        logger.warn({ authorityId: id, kind: a.kind }, 'authority tainted');
        return tainted;
      }),

    revoke: (id) =>
      exclusive(async () => {
        requireStarted();
        const a = find(id);
        if (a.status !== 'tainted') throw failedPrecondition(`authority ${id} is ${a.status}; only a tainted authority can be revoked`);
        const revoked = await save({ ...a, status: 'revoked' });
        await syncBundle(toSec(clock()));
        await forgetKey(a.keyId);
        if (a.kind === 'x509' && a.upstreamChain?.length) {
          logger.warn({ authorityId: id }, 'revoked an intermediate: its SVIDs still chain to the upstream root in the bundle until they expire');
        }
        logger.warn({ authorityId: id, kind: a.kind }, 'authority revoked');
        return revoked;
      }),

    activeX509() {
      requireStarted();
      return x509!;
    },

    activeJwt() {
      requireStarted();
      return jwt!;
    },

    bundle() {
      requireStarted();
      return stored!;
    },

    taintedAuthorityIds() {
      const nowSec = toSec(clock());
      return [...records.values()].filter((a) => a.tainted === true && !isExpired(a, nowSec)).sort(byCreation).map((a) => a.id);
    },
  };
}
