import assert from 'node:assert/strict';
import { status } from '@grpc/grpc-js';
import { Registry } from 'prom-client';
import { MAX_IDENTITY_SERIES, OTHER_IDENTITIES_LABEL, boundedExpirySeries, createAgentMetrics, type CachedIdentityExpiry } from '../../../src/agent/metrics.js';

type Labels = Record<string, string | number>;

async function series(registry: Registry, name: string): Promise<{ labels: Labels; value: number }[]> {
  const metric = registry.getSingleMetric(name);
  assert.ok(metric, `${name} is not registered`);
  return (await metric.get()).values as { labels: Labels; value: number }[];
}

async function value(registry: Registry, name: string, labels: Labels = {}): Promise<number | undefined> {
  return (await series(registry, name)).find((v) => JSON.stringify(v.labels) === JSON.stringify(labels))?.value;
}

const NOW_MS = 1_800_000_000_000;
const NOW = NOW_MS / 1000;
const id = (i: number): string => `spiffe://example.org/workload/${i}`;

describe('agent metrics', () => {
  const fresh = () => createAgentMetrics(new Registry(), { defaultMetrics: false, now: () => NOW_MS });

  it('keeps per-identity expiry to 50 series plus "_other_min" with 500 identities', async () => {
    const m = fresh();
    // Shuffled expiries 1000..1499 s from now, so "soonest" is not just insertion order.
    const identities: CachedIdentityExpiry[] = [];
    for (let i = 0; i < 500; i++) identities.push({ spiffeId: id(i), notAfter: NOW + 1000 + ((i * 7) % 500) });
    m.setIdentitySource(() => identities);

    const values = await series(m.registry, 'emblem_agent_svid_seconds_to_expiry');
    assert.equal(values.length, MAX_IDENTITY_SERIES + 1);
    const own = values.filter((v) => v.labels.spiffe_id !== OTHER_IDENTITIES_LABEL).map((v) => v.value).sort((a, b) => a - b);
    assert.deepEqual(own, Array.from({ length: 50 }, (_, k) => 1000 + k), 'the 50 soonest to expire');
    assert.equal(await value(m.registry, 'emblem_agent_svid_seconds_to_expiry', { spiffe_id: OTHER_IDENTITIES_LABEL }), 1050);
    assert.equal(await value(m.registry, 'emblem_agent_svids_cached'), 500);
    const text = await m.registry.metrics();
    assert.equal(text.split('\n').filter((l) => l.startsWith('emblem_agent_svid_seconds_to_expiry{')).length, 51);
  });

  it('reflects the cache at each scrape: new soonest identities replace old series', async () => {
    const m = fresh();
    let identities: CachedIdentityExpiry[] = Array.from({ length: 60 }, (_, i) => ({ spiffeId: id(i), notAfter: NOW + 100 + i }));
    m.setIdentitySource(() => identities);
    assert.equal(await value(m.registry, 'emblem_agent_svid_seconds_to_expiry', { spiffe_id: id(0) }), 100);

    identities = [{ spiffeId: id(999), notAfter: NOW - 5 }, ...identities.slice(30)];
    const values = await series(m.registry, 'emblem_agent_svid_seconds_to_expiry');
    assert.equal(values.length, 31, '31 identities, all with their own series');
    assert.equal(await value(m.registry, 'emblem_agent_svid_seconds_to_expiry', { spiffe_id: id(0) }), undefined, 'gone from the cache, gone from the scrape');
    assert.equal(await value(m.registry, 'emblem_agent_svid_seconds_to_expiry', { spiffe_id: id(999) }), -5, 'expired shows negative');
    assert.equal(await value(m.registry, 'emblem_agent_svid_seconds_to_expiry', { spiffe_id: OTHER_IDENTITIES_LABEL }), undefined);
    assert.equal(await value(m.registry, 'emblem_agent_svids_cached'), 31);
  });

  it('one series per SPIFFE ID: entries sharing an ID report the soonest expiry', () => {
    const out = boundedExpirySeries(
      [
        { spiffeId: id(1), notAfter: NOW + 300 },
        { spiffeId: id(1), notAfter: NOW + 200 },
        { spiffeId: id(2), notAfter: NOW + 250 },
        { spiffeId: id(3), notAfter: NOW + 900 },
      ],
      NOW,
      2,
    );
    assert.deepEqual(out, [[id(1), 200], [id(2), 250], [OTHER_IDENTITIES_LABEL, 900]]);
  });

  it('no identity source, or a throwing one, gives no series and an unknown count', async () => {
    const m = fresh();
    assert.equal((await series(m.registry, 'emblem_agent_svid_seconds_to_expiry')).length, 0);
    assert.ok(Number.isNaN(await value(m.registry, 'emblem_agent_svids_cached')));
    m.setIdentitySource(() => {
      throw new Error('cache closed');
    });
    assert.equal((await series(m.registry, 'emblem_agent_svid_seconds_to_expiry')).length, 0);
    assert.match(await m.registry.metrics(), /^emblem_agent_svids_cached Nan$/m);
  });

  it('counts Workload API calls and tracks open streams by method', async () => {
    const m = fresh();
    m.workloadCall('FetchJWTSVID', 'OK');
    m.workloadCall('FetchJWTSVID', 'OK');
    m.workloadCall('FetchJWTSVID', 'PERMISSION_DENIED');
    m.streamOpened('FetchX509SVID');
    m.streamOpened('FetchX509SVID');
    m.streamOpened('FetchJWTBundles');
    m.streamClosed('FetchX509SVID');
    assert.equal(await value(m.registry, 'emblem_agent_workload_api_calls_total', { method: 'FetchJWTSVID', code: 'OK' }), 2);
    assert.equal(await value(m.registry, 'emblem_agent_workload_api_calls_total', { method: 'FetchJWTSVID', code: 'PERMISSION_DENIED' }), 1);
    assert.equal(await value(m.registry, 'emblem_agent_workload_api_open_streams', { method: 'FetchX509SVID' }), 1);
    assert.equal(await value(m.registry, 'emblem_agent_workload_api_open_streams', { method: 'FetchJWTBundles' }), 1);
  });

  it('workloadApiHooks() maps the service hooks, naming gRPC status codes', async () => {
    const m = fresh();
    const hooks = m.workloadApiHooks();
    hooks.streamsOpen('FetchX509SVID', 1);
    hooks.messageSent('FetchX509SVID');
    hooks.messageSent('FetchX509SVID');
    hooks.streamsOpen('FetchX509SVID', -1);
    hooks.callEnded('FetchX509SVID', status.CANCELLED);
    hooks.callEnded('ValidateJWTSVID', status.INVALID_ARGUMENT);
    assert.equal(await value(m.registry, 'emblem_agent_workload_api_open_streams', { method: 'FetchX509SVID' }), 0);
    assert.equal(await value(m.registry, 'emblem_agent_workload_api_stream_messages_total', { method: 'FetchX509SVID' }), 2);
    assert.equal(await value(m.registry, 'emblem_agent_workload_api_calls_total', { method: 'FetchX509SVID', code: 'CANCELLED' }), 1);
    assert.equal(await value(m.registry, 'emblem_agent_workload_api_calls_total', { method: 'ValidateJWTSVID', code: 'INVALID_ARGUMENT' }), 1);
  });

  it('counts rotations, reports sync state and reads the bundle sequence at scrape', async () => {
    const m = fresh();
    m.rotation('x509', 'new');
    m.rotation('x509', 'new');
    m.rotation('x509', 'tainted');
    m.rotation('agent', 'expiring');
    assert.equal(await value(m.registry, 'emblem_agent_svid_rotations_total', { kind: 'x509', reason: 'new' }), 2);
    assert.equal(await value(m.registry, 'emblem_agent_svid_rotations_total', { kind: 'x509', reason: 'tainted' }), 1);
    assert.equal(await value(m.registry, 'emblem_agent_svid_rotations_total', { kind: 'agent', reason: 'expiring' }), 1);

    assert.equal(await value(m.registry, 'emblem_agent_sync_connected'), 0);
    m.syncConnected(true);
    assert.equal(await value(m.registry, 'emblem_agent_sync_connected'), 1);
    m.syncConnected(false);
    assert.equal(await value(m.registry, 'emblem_agent_sync_connected'), 0);

    let sequence = 4;
    m.setBundleSequence(() => sequence);
    assert.equal(await value(m.registry, 'emblem_agent_bundle_sequence'), 4);
    sequence = 5;
    assert.equal(await value(m.registry, 'emblem_agent_bundle_sequence'), 5);
  });

  it('bounds method and code labels against unexpected values', async () => {
    const m = fresh();
    for (let i = 0; i < 40; i++) m.workloadCall(`Method${i}`, 'OK');
    assert.equal((await series(m.registry, 'emblem_agent_workload_api_calls_total')).length, 17);
  });

  it('all own metric names carry the emblem_agent_ prefix, next to Node process metrics', async () => {
    const text = await createAgentMetrics(new Registry()).registry.metrics();
    assert.match(text, /^process_resident_memory_bytes /m);
    const own = text.split('\n').filter((l) => l.startsWith('# TYPE') && !/ (process|nodejs)_/.test(l));
    assert.ok(own.length >= 8);
    for (const line of own) assert.match(line, /^# TYPE emblem_agent_/);
  });
});
