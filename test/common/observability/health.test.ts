import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { runChecks, summarize, timedCheck, unixSocketAccepts, withTimeout } from '../../../src/common/observability/health.js';

describe('health checks', () => {
  it('timedCheck reports a passing, a failing and a throwing check', async () => {
    assert.deepEqual(await timedCheck('a', () => ({ ok: true, detail: 'fine' })), { name: 'a', ok: true, detail: 'fine' });
    assert.deepEqual(await timedCheck('b', async () => ({ ok: false })), { name: 'b', ok: false, detail: '' });
    assert.deepEqual(
      await timedCheck('c', () => {
        throw new Error('datastore is closed');
      }),
      { name: 'c', ok: false, detail: 'datastore is closed' },
    );
    assert.deepEqual(await timedCheck('d', () => Promise.reject(new Error('rejected'))), { name: 'd', ok: false, detail: 'rejected' });
  });

  it('timedCheck fails a hung check after its timeout', async () => {
    const started = Date.now();
    const check = await timedCheck('datastore', () => new Promise(() => undefined), 80);
    assert.deepEqual(check, { name: 'datastore', ok: false, detail: 'timed out after 80 ms' });
    assert.ok(Date.now() - started < 500);
  });

  it('runChecks runs checks concurrently and keeps their order', async () => {
    const started = Date.now();
    const checks = await runChecks({
      slow: () => new Promise((r) => setTimeout(() => r({ ok: true, detail: 'slow' }), 100)),
      fast: () => ({ ok: true, detail: 'fast' }),
      slow2: () => new Promise((r) => setTimeout(() => r({ ok: false, detail: 'slow2' }), 100)),
    });
    assert.ok(Date.now() - started < 190, 'checks ran one after another');
    assert.deepEqual(checks.map((c) => c.name), ['slow', 'fast', 'slow2']);
    assert.deepEqual(summarize(checks), { ok: false, checks });
    assert.equal(summarize(checks.slice(0, 2)).ok, true);
  });

  it('withTimeout passes through a value or a rejection that arrives in time', async () => {
    assert.equal(await withTimeout(Promise.resolve(1), 50, () => 2), 1);
    await assert.rejects(withTimeout(Promise.reject(new Error('no')), 50, () => 2), /no/);
    assert.equal(await withTimeout(new Promise<number>(() => undefined), 20, () => 2), 2);
  });

  describe('unixSocketAccepts', () => {
    let dir: string;
    let server: Server | undefined;

    beforeEach(() => {
      dir = mkdtempSync(join(tmpdir(), 'emblem-health-'));
    });
    afterEach(async () => {
      await new Promise<void>((resolve) => (server ? server.close(() => resolve()) : resolve()));
      server = undefined;
      rmSync(dir, { recursive: true, force: true });
    });

    it('passes while a listener accepts, fails once it is gone or the path is not a socket', async () => {
      const path = join(dir, 'agent.sock');
      server = createServer((s) => s.destroy());
      await new Promise<void>((resolve) => server!.listen(path, resolve));
      assert.deepEqual(await unixSocketAccepts(path, 500), { ok: true, detail: path });

      await new Promise<void>((resolve) => server!.close(() => resolve()));
      server = undefined;
      const gone = await unixSocketAccepts(path, 500);
      assert.equal(gone.ok, false);
      assert.match(gone.detail!, /ENOENT|ECONNREFUSED/);

      const file = join(dir, 'plain-file');
      writeFileSync(file, '');
      const notSocket = await unixSocketAccepts(file, 500);
      assert.equal(notSocket.ok, false);
      assert.match(notSocket.detail!, /ECONNREFUSED|ENOTSOCK/);
    });
  });
});
