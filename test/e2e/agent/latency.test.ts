// Measured latencies of a real agent process (printed; only loose bounds are asserted):
// - FetchX509SVID first response, warm cache, 200 sequential calls, each on a new connection;
// - entry created (admin API) → the SVID on an already open FetchX509SVID stream, 50 entries.
import assert from 'node:assert/strict';
import { isEmblemError } from '../../../src/common/errors.js';
import { idsOf, percentile, startSystem, watchX509, type TestSystem } from '../../helpers/system-harness.js';

const OWN_UID = process.getuid!();

describe('e2e: Workload API latency (real server and agent processes)', function () {
  this.timeout(40_000);
  let sys: TestSystem;

  before(async function () {
    sys = await startSystem();
    await sys.createEntry('/latency/base', OWN_UID);
  });

  after(async function () {
    await sys?.stop();
  });

  it('FetchX509SVID first response including connect: p99 < 1 s over 200 sequential calls', async function () {
    const warm = sys.client();
    for (let i = 0; ; i++) {
      try {
        await warm.fetchX509(3000);
        break;
      } catch (err) {
        if (!isEmblemError(err, 'permission_denied') || i > 100) throw err;
        await new Promise((r) => setTimeout(r, 20));
      }
    }
    warm.close();

    const samples: number[] = [];
    for (let i = 0; i < 200; i++) {
      const t0 = performance.now();
      const client = sys.client();
      const res = await client.fetchX509(3000);
      samples.push(performance.now() - t0);
      client.close();
      assert.equal(res.svids.length, 1);
    }
    const [p50, p99] = [percentile(samples, 50), percentile(samples, 99)];
    console.log(`      FetchX509SVID first response (new connection each): p50 ${p50.toFixed(2)} ms, p99 ${p99.toFixed(2)} ms, max ${Math.max(...samples).toFixed(2)} ms`);
    assert.ok(p99 < 1000, `p99 ${p99} ms`);
  });

  it('entry created → SVID on an open stream: p99 < 1 s over 50 entries', async function () {
    const watch = watchX509(sys.client());
    try {
      await watch.waitFor((r) => r.svids.length >= 1);
      const samples: number[] = [];
      for (let i = 0; i < 50; i++) {
        const id = `spiffe://${sys.trustDomain}/latency/e${i}`;
        const from = watch.updates.length;
        const t0 = performance.now();
        await sys.createEntry(`/latency/e${i}`, OWN_UID);
        await watch.waitFor((r) => idsOf(r).includes(id), 5000, from);
        samples.push(performance.now() - t0);
      }
      assert.equal(watch.isEnded(), false);
      assert.equal(idsOf(watch.updates.at(-1)!.res).length, 51);
      const [p50, p99] = [percentile(samples, 50), percentile(samples, 99)];
      console.log(`      entry created → open stream: p50 ${p50.toFixed(1)} ms, p99 ${p99.toFixed(1)} ms, max ${Math.max(...samples).toFixed(1)} ms`);
      assert.ok(p99 < 1000, `p99 ${p99} ms`);
    } finally {
      watch.cancel();
    }
  });
});
