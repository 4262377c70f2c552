// The agent's Prometheus metrics (names prefixed emblem_agent_). Per-identity expiry is the one
// place a label comes from data, so it is bounded: the soonest-to-expire identities get their own
// series and the rest fold into one "_other_min" series.
import { status } from '@grpc/grpc-js';
import { Counter, Gauge, Registry, collectDefaultMetrics } from 'prom-client';
import { boundedLabel, readSource } from '../common/observability/labels.js';
import { talliedMetric } from '../common/observability/tally.js';

export type RotationKind = 'x509' | 'agent';
export type RotationReason = 'expiring' | 'tainted' | 'new';

export interface CachedIdentityExpiry {
  spiffeId: string;
  /** Unix seconds, as in X509Identity.notAfter. */
  notAfter: number;
}

/** Structurally the Workload API service's optional metrics hooks (src/agent/workloadapi/service.ts). */
export interface WorkloadApiHooks {
  callEnded(method: string, code: number): void;
  streamsOpen(method: string, delta: 1 | -1): void;
  messageSent(method: string): void;
}

export interface AgentMetrics {
  registry: Registry;
  /** One finished Workload API call; `code` is the gRPC status name, e.g. "OK", "PERMISSION_DENIED". */
  workloadCall(method: string, code: string): void;
  streamOpened(method: string): void;
  streamClosed(method: string): void;
  /** One streamed Workload API message handed to the transport. */
  workloadMessage(method: string): void;
  rotation(kind: RotationKind, reason: RotationReason): void;
  setIdentitySource(source: () => CachedIdentityExpiry[]): void;
  setBundleSequence(source: () => number): void;
  syncConnected(up: boolean): void;
  /** The same counters shaped as the Workload API service's `metrics` dependency. */
  workloadApiHooks(): WorkloadApiHooks;
}

export interface AgentMetricsOptions {
  /** Node process metrics (CPU, memory, event loop, GC); default true. */
  defaultMetrics?: boolean;
  /** Milliseconds since the epoch; tests pass a fixed clock. */
  now?: () => number;
}

/** Most per-identity expiry series exposed, not counting the "_other_min" series. */
export const MAX_IDENTITY_SERIES = 50;
export const OTHER_IDENTITIES_LABEL = '_other_min';
const MAX_METHODS = 16;
const MAX_CODES = 20;

export function createAgentMetrics(registry: Registry = new Registry(), options: AgentMetricsOptions = {}): AgentMetrics {
  const registers = [registry];
  const now = options.now ?? Date.now;
  if (options.defaultMetrics ?? true) collectDefaultMetrics({ register: registry });

  // Counted on every Workload API call, stream and message: tallied, and applied at scrape time.
  const calls = talliedMetric('counter', {
    name: 'emblem_agent_workload_api_calls_total',
    help: 'Finished Workload API calls by method and gRPC status code.',
    labelNames: ['method', 'code'] as const,
    registers,
  });
  const openStreams = talliedMetric('gauge', {
    name: 'emblem_agent_workload_api_open_streams',
    help: 'Open Workload API streams by method.',
    labelNames: ['method'] as const,
    registers,
  });
  const messages = talliedMetric('counter', {
    name: 'emblem_agent_workload_api_stream_messages_total',
    help: 'Messages sent on Workload API streams by method.',
    labelNames: ['method'] as const,
    registers,
  });
  const rotations = new Counter({
    name: 'emblem_agent_svid_rotations_total',
    help: 'SVIDs minted by kind (x509 workload, agent) and reason (new, expiring, tainted).',
    labelNames: ['kind', 'reason'] as const,
    registers,
  });
  const connected = new Gauge({
    name: 'emblem_agent_sync_connected',
    help: '1 while the sync stream to the server is up, else 0.',
    registers,
  });

  let identities: (() => CachedIdentityExpiry[]) | undefined;
  // undefined when no source is set or it throws: no per-identity series, and NaN for the count.
  const readIdentities = (): CachedIdentityExpiry[] | undefined => {
    try {
      return identities?.();
    } catch {
      return undefined;
    }
  };
  new Gauge({
    name: 'emblem_agent_svid_seconds_to_expiry',
    help: `Seconds until each cached X.509-SVID expires: the ${MAX_IDENTITY_SERIES} soonest by SPIFFE ID, then the minimum of the rest as spiffe_id="${OTHER_IDENTITIES_LABEL}".`,
    labelNames: ['spiffe_id'] as const,
    registers,
    collect() {
      this.reset();
      for (const [spiffeId, seconds] of boundedExpirySeries(readIdentities() ?? [], now() / 1000)) this.set({ spiffe_id: spiffeId }, seconds);
    },
  });
  new Gauge({
    name: 'emblem_agent_svids_cached',
    help: 'X.509-SVIDs held in the agent cache.',
    registers,
    collect() {
      this.set(readIdentities()?.length ?? NaN);
    },
  });

  let bundleSequence: (() => number) | undefined;
  new Gauge({
    name: 'emblem_agent_bundle_sequence',
    help: 'Sequence number of the trust bundle the agent holds.',
    registers,
    collect() {
      this.set(bundleSequence ? readSource(bundleSequence) : NaN);
    },
  });

  const methodLabel = boundedLabel(MAX_METHODS);
  const codeLabel = boundedLabel(MAX_CODES);
  const metrics: AgentMetrics = {
    registry,
    workloadCall(method, code) {
      calls.add({ method: methodLabel(method), code: codeLabel(code) });
    },
    streamOpened(method) {
      openStreams.add({ method: methodLabel(method) }, 1);
    },
    streamClosed(method) {
      openStreams.add({ method: methodLabel(method) }, -1);
    },
    workloadMessage(method) {
      messages.add({ method: methodLabel(method) });
    },
    rotation(kind, reason) {
      rotations.inc({ kind, reason });
    },
    setIdentitySource(source) {
      identities = source;
    },
    setBundleSequence(source) {
      bundleSequence = source;
    },
    syncConnected(up) {
      connected.set(up ? 1 : 0);
    },
    workloadApiHooks() {
      return {
        callEnded: (method, code) => metrics.workloadCall(method, statusName(code)),
        streamsOpen: (method, delta) => (delta > 0 ? metrics.streamOpened(method) : metrics.streamClosed(method)),
        messageSent: (method) => metrics.workloadMessage(method),
      };
    },
  };
  return metrics;
}

/**
 * Seconds to expiry per SPIFFE ID (several entries may share one; the soonest counts), keeping the
 * `max` soonest IDs and folding the rest into one OTHER_IDENTITIES_LABEL series holding their minimum.
 */
export function boundedExpirySeries(
  identities: readonly CachedIdentityExpiry[],
  nowSeconds: number,
  max = MAX_IDENTITY_SERIES,
): [string, number][] {
  const soonest = new Map<string, number>();
  for (const { spiffeId, notAfter } of identities) {
    const prev = soonest.get(spiffeId);
    if (prev === undefined || notAfter < prev) soonest.set(spiffeId, notAfter);
  }
  const sorted = [...soonest].sort((a, b) => a[1] - b[1] || (a[0] < b[0] ? -1 : 1));
  const series: [string, number][] = sorted.slice(0, max).map(([id, notAfter]) => [id, notAfter - nowSeconds]);
  const rest = sorted[max];
  if (rest) series.push([OTHER_IDENTITIES_LABEL, rest[1] - nowSeconds]);
  return series;
}

function statusName(code: number): string {
  return (status as unknown as Record<number, string | undefined>)[code] ?? String(code);
}
