import assert from 'node:assert/strict';
import { Registry } from 'prom-client';
import { OVERFLOW_LABEL } from '../../../src/common/observability/labels.js';
import { createServerMetrics } from '../../../src/server/metrics.js';

type Labels = Record<string, string | number>;

async function values(registry: Registry, name: string): Promise<{ labels: Labels; value: number; metricName?: string }[]> {
  const metric = registry.getSingleMetric(name);
  assert.ok(metric, `${name} is not registered`);
  return (await metric.get()).values as { labels: Labels; value: number; metricName?: string }[];
}

async function value(registry: Registry, name: string, labels: Labels = {}, metricName = name): Promise<number | undefined> {
  const found = (await values(registry, name)).find(
    (v) => (v.metricName ?? name) === metricName && JSON.stringify(v.labels) === JSON.stringify(labels),
  );
  return found?.value;
}

describe('server metrics', () => {
  it('counts attestations by attestor and outcome', async () => {
    const m = createServerMetrics(undefined, { defaultMetrics: false });
    m.attestation('join_token', 'ok');
    m.attestation('join_token', 'ok');
    m.attestation('x509pop', 'refused');
    assert.equal(await value(m.registry, 'emblem_server_attestations_total', { attestor: 'join_token', outcome: 'ok' }), 2);
    assert.equal(await value(m.registry, 'emblem_server_attestations_total', { attestor: 'x509pop', outcome: 'refused' }), 1);
    assert.equal(await value(m.registry, 'emblem_server_attestations_total', { attestor: 'x509pop', outcome: 'ok' }), undefined);
  });

  it('bounds the attestor label: past 16 distinct names the rest count under "_other"', async () => {
    const m = createServerMetrics(undefined, { defaultMetrics: false });
    for (let i = 0; i < 100; i++) m.attestation(`attestor-${i}`, 'refused');
    const series = await values(m.registry, 'emblem_server_attestations_total');
    assert.equal(series.length, 17);
    assert.equal(await value(m.registry, 'emblem_server_attestations_total', { attestor: OVERFLOW_LABEL, outcome: 'refused' }), 84);
    m.attestation('attestor-3', 'refused');
    assert.equal(await value(m.registry, 'emblem_server_attestations_total', { attestor: 'attestor-3', outcome: 'refused' }), 2);
  });

  it('counts signed SVIDs by kind and observes one latency sample per batch', async () => {
    const m = createServerMetrics(undefined, { defaultMetrics: false });
    m.signed('x509', 100, 0.02);
    m.signed('x509', 1, 0.0004);
    m.signed('jwt', 1, 0.0002);
    m.signed('agent', 0, 0.001);
    const name = 'emblem_server_signing_batch_duration_seconds';
    assert.equal(await value(m.registry, 'emblem_server_svids_signed_total', { kind: 'x509' }), 101);
    assert.equal(await value(m.registry, 'emblem_server_svids_signed_total', { kind: 'jwt' }), 1);
    assert.equal(await value(m.registry, 'emblem_server_svids_signed_total', { kind: 'agent' }), undefined);
    assert.equal(await value(m.registry, name, { kind: 'x509' }, `${name}_count`), 2);
    assert.ok(Math.abs((await value(m.registry, name, { kind: 'x509' }, `${name}_sum`))! - 0.0204) < 1e-9);
    assert.equal(await value(m.registry, name, { le: 0.0005, kind: 'x509' }, `${name}_bucket`), 1);
    assert.equal(await value(m.registry, name, { le: 0.025, kind: 'x509' }, `${name}_bucket`), 2);
  });

  it('tracks connected agents from stream deltas and observes push latency', async () => {
    const m = createServerMetrics(undefined, { defaultMetrics: false });
    m.syncStreams(1);
    m.syncStreams(1);
    m.syncStreams(1);
    m.syncStreams(-1);
    assert.equal(await value(m.registry, 'emblem_server_connected_agents'), 2);
    m.syncPushLatency(0.003);
    m.syncPushLatency(0.2);
    const name = 'emblem_server_sync_push_latency_seconds';
    assert.equal(await value(m.registry, name, {}, `${name}_count`), 2);
    assert.equal(await value(m.registry, name, { le: 0.005 }, `${name}_bucket`), 1);
  });

  it('evaluates gauge sources at scrape time, every scrape', async () => {
    const m = createServerMetrics(undefined, { defaultMetrics: false });
    assert.ok(Number.isNaN(await value(m.registry, 'emblem_server_entries')), 'unknown before sources are set');
    let entries = 10;
    let reads = 0;
    m.setGaugeSources({
      entries: () => {
        reads++;
        return entries;
      },
      bundleSequence: () => 3,
      agents: () => 5,
    });
    assert.equal(reads, 0, 'setting sources reads nothing');
    assert.match(await m.registry.metrics(), /^emblem_server_entries 10$/m);
    entries = 11;
    const text = await m.registry.metrics();
    assert.match(text, /^emblem_server_entries 11$/m);
    assert.match(text, /^emblem_server_bundle_sequence 3$/m);
    assert.match(text, /^emblem_server_agents 5$/m);
    assert.equal(reads, 2);
  });

  it('a throwing source reads as NaN and does not fail the scrape', async () => {
    const m = createServerMetrics(undefined, { defaultMetrics: false });
    m.setGaugeSources({
      entries: () => {
        throw new Error('datastore closed');
      },
      bundleSequence: () => 9,
      agents: () => 1,
    });
    const text = await m.registry.metrics();
    assert.match(text, /^emblem_server_entries Nan$/m);
    assert.match(text, /^emblem_server_bundle_sequence 9$/m);
  });

  it('registers Node process metrics unless told not to, in the registry given', async () => {
    const registry = new Registry();
    const m = createServerMetrics(registry);
    assert.equal(m.registry, registry);
    const text = await registry.metrics();
    assert.match(text, /^process_cpu_user_seconds_total /m);
    assert.match(text, /^nodejs_heap_size_used_bytes /m);
    assert.doesNotMatch(await createServerMetrics(undefined, { defaultMetrics: false }).registry.metrics(), /process_cpu/);
    for (const line of text.split('\n').filter((l) => l.startsWith('# TYPE emblem'))) assert.match(line, /^# TYPE emblem_server_/);
  });
});
