import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Registry } from 'prom-client';
import { isEmblemError } from '../../../src/common/errors.js';
import { DATASTORE_OPERATION_KINDS, instrumentDatastore } from '../../../src/server/datastore/instrumented.js';
import { openLevelDatastore } from '../../../src/server/datastore/level/level-store.js';
import type { Datastore } from '../../../src/server/datastore/types.js';

const METRIC = 'emblem_server_datastore_operations_total';

async function count(registry: Registry, labels: Record<string, string>): Promise<number> {
  const metric = await registry.getSingleMetric(METRIC)!.get();
  return metric.values.filter((v) => Object.entries(labels).every(([k, want]) => v.labels[k] === want)).reduce((sum, v) => sum + v.value, 0);
}

describe('instrumented datastore', () => {
  let dir: string;
  let inner: Datastore;
  let registry: Registry;
  let store: Datastore;

  beforeEach(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'emblem-ds-metrics-'));
    inner = await openLevelDatastore({ dataDir: dir });
    registry = new Registry();
    store = instrumentDatastore(inner, registry);
  });

  afterEach(async () => {
    await store.close();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('wraps every Datastore method of the level store', () => {
    const methods = Object.keys(inner).filter((k) => typeof (inner as unknown as Record<string, unknown>)[k] === 'function');
    assert.deepEqual(methods.sort(), [...Object.keys(DATASTORE_OPERATION_KINDS), 'onChange', 'close'].sort());
    for (const m of methods) assert.equal(typeof (store as unknown as Record<string, unknown>)[m], 'function', m);
  });

  it('counts reads, writes and probes by operation, starting from zero', async () => {
    assert.equal(await count(registry, { kind: 'read' }), 0);
    await store.setMeta('k', 'v');
    assert.equal(await store.getMeta('k'), 'v');
    assert.equal(await store.getMeta('absent'), undefined);
    await store.ping();
    assert.equal(await count(registry, { operation: 'getMeta', kind: 'read', outcome: 'ok' }), 2);
    assert.equal(await count(registry, { operation: 'setMeta', kind: 'write', outcome: 'ok' }), 1);
    assert.equal(await count(registry, { kind: 'probe' }), 1);
    assert.equal(await count(registry, { kind: 'read' }), 2);
  });

  it('counts failures as errors and passes the error through unchanged', async () => {
    await assert.rejects(store.deleteEntry('no-such-entry'), (err) => isEmblemError(err, 'not_found'));
    assert.equal(await count(registry, { operation: 'deleteEntry', outcome: 'error' }), 1);
    assert.equal(await count(registry, { operation: 'deleteEntry', outcome: 'ok' }), 0);
  });

  it('passes change notifications through', async () => {
    const seen: number[] = [];
    const off = store.onChange((rev) => seen.push(rev));
    await store.setBundle({ trustDomain: 'example.org', x509Authorities: [], jwtAuthorities: [], refreshHint: 0, sequence: 1 });
    off();
    assert.equal(seen.length, 1);
    assert.equal(seen[0], await store.currentRevision());
  });
});
