// Consumes the server's SyncEntries push stream. On (re)connect it sends the last applied revision
// and the (id, revision) of every cached entry, so the server answers with an exact delta. Each
// update is persisted (one atomic batch), then applied to the cache (one notification), then handed
// to the SVID minter. A broken stream is reopened with capped exponential backoff and jitter
// (100 ms doubling to 30 s; reset once a stream delivered an update), or at once when the transport
// reports that its connection to the server is back; meanwhile the cache keeps serving.
// BANNED / EVICTED (in an update or as PERMISSION_DENIED) ends everything: the cache and the store
// are wiped and onTerminated is called.
import type { ClientReadableStream } from '@grpc/grpc-js';
import { EmblemError, errorMessage } from '../../common/errors.js';
import { decodeSpiffeBundle } from '../../common/bundle-json.js';
import { fromGrpcError } from '../../common/grpc/status.js';
import { silentLogger, type Logger } from '../../common/logger.js';
import type { TrustBundle } from '../../common/trust-bundle.js';
import type { CacheSyncResult, SvidCache } from '../cache/svid-cache.js';
import { toAgentEntry, type SyncEntriesRequestMsg, type SyncEntriesUpdateMsg } from '../client/messages.js';
import { terminationFromError, terminationFromState, terminationMessage, type TerminationReason } from '../client/termination.js';
import type { AgentStore } from '../storage/agent-store.js';
import { systemClock, type Clock, type TimerHandle } from '../rotation/clock.js';
import { backoffDelayMs } from '../rotation/rotation-time.js';

export interface SyncTransport {
  syncEntries(request: SyncEntriesRequestMsg): ClientReadableStream<SyncEntriesUpdateMsg>;
  /** The latest own bundle: the server is authenticated against it from now on. */
  setBundle(bundle: TrustBundle): void;
  onChannelChange(listener: () => void): () => void;
  /** Optional: calls `listener` once, when the connection to the server comes back; returns a cancel function. */
  onReconnected?(listener: () => void): () => void;
}

export interface AppliedUpdate {
  revision: number;
  result: CacheSyncResult;
  taintedAuthorityIds: string[];
  bundleChanged: boolean;
}

export interface SyncClientOptions {
  trustDomain: string;
  transport: SyncTransport;
  cache: SvidCache;
  store: Pick<AgentStore, 'applySync' | 'clear'>;
  /** Last applied revision (from the store); 0 = nothing yet. */
  initialRevision?: number;
  /** Called after each applied update (the SVID minter listens here). */
  onApplied?: (update: AppliedUpdate) => void;
  /** The agent was banned or evicted: it must stop serving and exit non-zero. */
  onTerminated: (reason: TerminationReason, message: string) => void;
  backoff?: { initialMs: number; maxMs: number };
  clock?: Clock;
  random?: () => number;
  logger?: Logger;
}

export const DEFAULT_SYNC_BACKOFF = { initialMs: 100, maxMs: 30_000 };

export class SyncClient {
  private revision: number;
  private stream: ClientReadableStream<SyncEntriesUpdateMsg> | undefined;
  private reconnectTimer: TimerHandle | undefined;
  private cancelReconnectWait: (() => void) | undefined;
  private attempt = 0;
  private started = false;
  private stopped = false;
  private terminated = false;
  private healthy = false;
  private unsubscribe: (() => void) | undefined;
  private readonly clock: Clock;
  private readonly random: () => number;
  private readonly log: Logger;
  private readonly backoff: { initialMs: number; maxMs: number };

  constructor(private readonly opts: SyncClientOptions) {
    this.revision = opts.initialRevision ?? 0;
    this.clock = opts.clock ?? systemClock;
    this.random = opts.random ?? Math.random;
    this.log = (opts.logger ?? silentLogger()).child({ component: 'sync' });
    this.backoff = opts.backoff ?? DEFAULT_SYNC_BACKOFF;
  }

  /** Last applied revision. */
  get appliedRevision(): number {
    return this.revision;
  }

  /** True while a stream is open and has delivered at least one update. */
  get connected(): boolean {
    return this.stream !== undefined && this.healthy;
  }

  start(): void {
    if (this.started || this.stopped) return;
    this.started = true;
    this.unsubscribe = this.opts.transport.onChannelChange(() => this.restart());
    this.open();
  }

  /** Reopens the stream now (new channel after an SVID or bundle change). */
  restart(): void {
    if (!this.started || this.stopped) return;
    this.closeStream();
    this.cancelReconnect();
    this.attempt = 0;
    this.open();
  }

  stop(): void {
    this.stopped = true;
    this.unsubscribe?.();
    this.cancelReconnect();
    this.closeStream();
  }

  private cancelReconnect(): void {
    this.reconnectTimer?.cancel();
    this.reconnectTimer = undefined;
    this.cancelReconnectWait?.();
    this.cancelReconnectWait = undefined;
  }

  // ---------------------------------------------------------------------------------------------

  private open(): void {
    if (this.stopped || this.stream) return;
    const request: SyncEntriesRequestMsg = {
      since_revision: this.revision,
      known_entries: this.opts.cache.entries().map((e) => ({ id: e.id, revision: e.revision })),
    };
    let stream: ClientReadableStream<SyncEntriesUpdateMsg>;
    try {
      stream = this.opts.transport.syncEntries(request);
    } catch (err) {
      this.scheduleReconnect(err);
      return;
    }
    this.stream = stream;
    this.healthy = false;
    let applying: Promise<void> = Promise.resolve();
    const current = (): boolean => this.stream === stream;

    stream.on('data', (update: SyncEntriesUpdateMsg) => {
      // Backpressure: read the next update only once this one is stored and applied.
      stream.pause();
      applying = applying
        .then(() => (current() ? this.apply(update) : undefined))
        .then(
          () => {
            if (current()) stream.resume();
          },
          (err: unknown) => {
            if (!current()) return;
            this.log.warn({ reason: errorMessage(err) }, 'cannot apply a sync update; reconnecting');
            this.closeStream();
            this.scheduleReconnect(err);
          },
        );
    });
    stream.on('error', (raw: unknown) => {
      if (!current()) return;
      const err = fromGrpcError(raw);
      // Updates received before the error are applied first (a ban arrives as update + error).
      void applying.then(() => {
        if (!current()) return;
        this.stream = undefined;
        const reason = terminationFromError(err);
        if (reason) void this.terminate(reason);
        else this.scheduleReconnect(err);
      });
    });
    stream.on('end', () => {
      if (!current()) return;
      void applying.then(() => {
        if (!current()) return;
        this.stream = undefined;
        this.scheduleReconnect(new EmblemError('unavailable', 'server ended the sync stream'));
      });
    });
  }

  private closeStream(): void {
    const stream = this.stream;
    this.stream = undefined;
    this.healthy = false;
    if (stream) {
      stream.cancel();
      stream.on('error', () => undefined);
    }
  }

  private scheduleReconnect(err: unknown): void {
    if (this.stopped || this.terminated || this.reconnectTimer) return;
    this.healthy = false;
    const delay = backoffDelayMs(this.attempt++, this.backoff.initialMs, this.backoff.maxMs, this.random);
    this.log.warn({ reason: errorMessage(err), retryInMs: Math.round(delay) }, 'sync stream down; the cache keeps serving');
    const reconnect = (): void => {
      this.cancelReconnect();
      this.open();
    };
    this.reconnectTimer = this.clock.setTimer(reconnect, delay);
    // The server coming back ends the wait early: the backoff is for a server that answers badly.
    this.cancelReconnectWait = this.opts.transport.onReconnected?.(() => {
      if (this.reconnectTimer) reconnect();
    });
  }

  private async apply(update: SyncEntriesUpdateMsg): Promise<void> {
    if (this.stopped || this.terminated) return;
    const reason = terminationFromState(update.agent_state);
    if (reason) return this.terminate(reason);

    const td = this.opts.trustDomain;
    const upserted = update.entries.map(toAgentEntry);
    const bundle = update.bundle && update.bundle.length > 0 ? decodeSpiffeBundle(td, update.bundle) : undefined;
    let federatedBundles: Map<string, TrustBundle> | undefined;
    if (update.federated_changed) {
      federatedBundles = new Map();
      for (const [name, json] of Object.entries(update.federated_bundles ?? {})) federatedBundles.set(name, decodeSpiffeBundle(name, json));
    }
    const write = {
      revision: update.revision,
      full: update.full,
      upserted,
      deletedIds: update.deleted_entry_ids,
      ...(bundle ? { bundle } : {}),
      ...(federatedBundles ? { federatedBundles } : {}),
    };
    await this.opts.store.applySync(write);
    if (this.stopped || this.terminated) return;
    const result = this.opts.cache.applySync(write);
    this.revision = update.revision;
    if (!this.healthy) {
      this.healthy = true;
      this.attempt = 0;
      this.log.info({ revision: this.revision, entries: this.opts.cache.entryCount }, 'sync stream up');
    }
    this.log.debug(
      { revision: this.revision, full: update.full, changed: result.changed.length, removed: result.removedIds.length },
      'applied sync update',
    );
    this.opts.onApplied?.({
      revision: update.revision,
      result,
      taintedAuthorityIds: update.tainted_authority_ids ?? [],
      bundleChanged: bundle !== undefined,
    });
    // Last: a new trust anchor set replaces the channel, which restarts this stream from the
    // revision just applied.
    if (bundle) this.opts.transport.setBundle(bundle);
  }

  private async terminate(reason: TerminationReason): Promise<void> {
    if (this.terminated) return;
    this.terminated = true;
    const message = terminationMessage(reason);
    this.log.error({ reason }, message);
    this.stop();
    this.opts.cache.terminate();
    // Let every open Workload API stream end (the cache tells them a slice at a time) and its
    // status go out before the store is wiped and the agent shuts down.
    await this.opts.cache.listenersTold();
    await new Promise<void>((resolve) => setImmediate(resolve));
    try {
      await this.opts.store.clear();
    } catch (err) {
      this.log.error({ reason: errorMessage(err) }, 'cannot wipe the agent data directory');
    }
    this.opts.onTerminated(reason, message);
  }
}
