// The server's Prometheus metrics (names prefixed emblem_server_). Event counters and histograms
// are fed by the API handlers; state gauges (entries, agents, bundle sequence) are read from their
// sources at scrape time, so they cannot drift from the truth.
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import { boundedLabel, readSource } from '../common/observability/labels.js';

export type SignedKind = 'x509' | 'jwt' | 'agent';
export type AttestationOutcome = 'ok' | 'refused';

export interface ServerGaugeSources {
  /** Registration entries in the datastore (or the server's entry cache). */
  entries: () => number;
  /** The trust bundle's current sequence number. */
  bundleSequence: () => number;
  /** Attested agents known to the server. */
  agents: () => number;
  /** Worker threads checking CSR signatures (src/server/ca/csr-verify-pool.ts). */
  csrVerifyWorkers?: () => number;
}

export interface ServerMetrics {
  registry: Registry;
  attestation(attestor: string, outcome: AttestationOutcome): void;
  /** One signing batch: `count` SVIDs of `kind` signed in `seconds`. */
  signed(kind: SignedKind, count: number, seconds: number): void;
  /** +1 when an agent's sync stream opens, -1 when it closes. */
  syncStreams(delta: number): void;
  /** Time from a state change to its push on the sync streams. */
  syncPushLatency(seconds: number): void;
  setGaugeSources(sources: ServerGaugeSources): void;
}

export interface ServerMetricsOptions {
  /** Node process metrics (CPU, memory, event loop, GC); default true. */
  defaultMetrics?: boolean;
}

const SIGNING_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5];
const PUSH_BUCKETS = [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];
const MAX_ATTESTORS = 16;

export function createServerMetrics(registry: Registry = new Registry(), options: ServerMetricsOptions = {}): ServerMetrics {
  const registers = [registry];
  if (options.defaultMetrics ?? true) collectDefaultMetrics({ register: registry });

  const attestations = new Counter({
    name: 'emblem_server_attestations_total',
    help: 'Agent attestations by attestor and outcome (ok or refused).',
    labelNames: ['attestor', 'outcome'] as const,
    registers,
  });
  const svidsSigned = new Counter({
    name: 'emblem_server_svids_signed_total',
    help: 'SVIDs signed, by kind (x509 workload, jwt workload, agent).',
    labelNames: ['kind'] as const,
    registers,
  });
  const signingSeconds = new Histogram({
    name: 'emblem_server_signing_batch_duration_seconds',
    help: 'Wall time of one signing batch, by kind.',
    labelNames: ['kind'] as const,
    buckets: SIGNING_BUCKETS,
    registers,
  });
  const connectedAgents = new Gauge({
    name: 'emblem_server_connected_agents',
    help: 'Agents with an open sync stream to this server.',
    registers,
  });
  const pushLatency = new Histogram({
    name: 'emblem_server_sync_push_latency_seconds',
    help: 'Time from a state change to its push on the agents\' sync streams.',
    buckets: PUSH_BUCKETS,
    registers,
  });

  let sources: ServerGaugeSources | undefined;
  const sourceGauge = (name: string, help: string, pick: (s: ServerGaugeSources) => () => number): void => {
    new Gauge({
      name,
      help,
      registers,
      collect() {
        this.set(sources ? readSource(pick(sources)) : NaN);
      },
    });
  };
  sourceGauge('emblem_server_entries', 'Registration entries.', (s) => s.entries);
  sourceGauge('emblem_server_agents', 'Attested agents known to the server.', (s) => s.agents);
  sourceGauge('emblem_server_bundle_sequence', 'Sequence number of the trust bundle.', (s) => s.bundleSequence);
  sourceGauge(
    'emblem_server_csr_verify_workers',
    'Worker threads checking CSR signatures; they start with the first large batch.',
    (s) => s.csrVerifyWorkers ?? (() => NaN),
  );

  const attestorLabel = boundedLabel(MAX_ATTESTORS);

  return {
    registry,
    attestation(attestor, outcome) {
      attestations.inc({ attestor: attestorLabel(attestor), outcome });
    },
    signed(kind, count, seconds) {
      if (count > 0) svidsSigned.inc({ kind }, count);
      signingSeconds.observe({ kind }, seconds);
    },
    syncStreams(delta) {
      connectedAgents.inc(delta);
    },
    syncPushLatency(seconds) {
      pushLatency.observe(seconds);
    },
    setGaugeSources(next) {
      sources = next;
    },
  };
}
