import assert from 'node:assert/strict';
import { Agent, get, request, type IncomingHttpHeaders } from 'node:http';
import { createServer, type Server, type Socket } from 'node:net';
import { isEmblemError } from '../../../src/common/errors.js';
import { silentLogger } from '../../../src/common/logger.js';
import { runChecks, type HealthCheck } from '../../../src/common/observability/health.js';
import { probeHealth, startObservabilityServer, type ObservabilityServer } from '../../../src/common/observability/http-endpoint.js';
import { createServerMetrics } from '../../../src/server/metrics.js';

interface Reply {
  status: number;
  headers: IncomingHttpHeaders;
  body: string;
}

function fetchText(port: number, path: string, method = 'GET'): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, path, method, agent: false }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks).toString('utf8') }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end();
  });
}

const never = <T>(): Promise<T> => new Promise<T>(() => undefined);
const pass = (name: string): HealthCheck => ({ name, ok: true, detail: '' });

describe('observability HTTP endpoint', () => {
  let server: ObservabilityServer | undefined;
  let readyChecks: () => Promise<HealthCheck[]>;

  afterEach(async () => {
    await server?.close();
    server = undefined;
  });

  async function start(extra: Partial<Parameters<typeof startObservabilityServer>[0]> = {}): Promise<ObservabilityServer> {
    readyChecks = async () => [pass('datastore'), pass('authority')];
    server = await startObservabilityServer({
      host: '127.0.0.1',
      port: 0,
      live: async () => [pass('process')],
      ready: () => readyChecks(),
      logger: silentLogger(),
      ...extra,
    });
    return server;
  }

  it('serves Prometheus text on /metrics with the values recorded so far', async () => {
    const metrics = createServerMetrics(undefined, { defaultMetrics: false });
    metrics.signed('x509', 3, 0.004);
    metrics.attestation('join_token', 'ok');
    metrics.setGaugeSources({ entries: () => 42, bundleSequence: () => 7, agents: () => 2 });
    const { port } = await start({ registry: metrics.registry });

    const res = await fetchText(port, '/metrics');
    assert.equal(res.status, 200);
    assert.match(String(res.headers['content-type']), /^text\/plain; version=0\.0\.4/);
    assert.match(res.body, /^emblem_server_svids_signed_total\{kind="x509"\} 3$/m);
    assert.match(res.body, /^emblem_server_attestations_total\{attestor="join_token",outcome="ok"\} 1$/m);
    assert.match(res.body, /^emblem_server_signing_batch_duration_seconds_count\{kind="x509"\} 1$/m);
    assert.match(res.body, /^emblem_server_entries 42$/m);

    metrics.signed('x509', 2, 0.001);
    assert.match((await fetchText(port, '/metrics')).body, /^emblem_server_svids_signed_total\{kind="x509"\} 5$/m);
  });

  it('answers /live and /ready with 200 and the checks when all pass', async () => {
    const { port } = await start();
    for (const [path, names] of [['/live', ['process']], ['/ready', ['datastore', 'authority']]] as const) {
      const res = await fetchText(port, path);
      assert.equal(res.status, 200, path);
      assert.equal(res.headers['content-type'], 'application/json');
      const body = JSON.parse(res.body) as { ok: boolean; checks: HealthCheck[] };
      assert.equal(body.ok, true);
      assert.deepEqual(body.checks.map((c) => c.name), names);
    }
    assert.equal((await fetchText(port, '/ready?verbose=1')).status, 200, 'a query string does not change the route');
  });

  it('answers 503 with the same body shape when any check fails or the probe throws', async () => {
    const { port } = await start();
    readyChecks = async () => [pass('datastore'), { name: 'authority', ok: false, detail: 'no active authority' }];
    let res = await fetchText(port, '/ready');
    assert.equal(res.status, 503);
    assert.deepEqual(JSON.parse(res.body), {
      ok: false,
      checks: [pass('datastore'), { name: 'authority', ok: false, detail: 'no active authority' }],
    });

    readyChecks = async () => {
      throw new Error('datastore closed');
    };
    res = await fetchText(port, '/ready');
    assert.equal(res.status, 503);
    assert.deepEqual(JSON.parse(res.body), { ok: false, checks: [{ name: 'ready', ok: false, detail: 'datastore closed' }] });
  });

  it('reports a hung probe as failed within the probe timeout instead of hanging', async () => {
    const { port } = await start({ probeTimeoutMs: 150 });
    readyChecks = never;
    const started = Date.now();
    const res = await fetchText(port, '/ready');
    const elapsed = Date.now() - started;
    assert.equal(res.status, 503);
    const body = JSON.parse(res.body) as { ok: boolean; checks: HealthCheck[] };
    assert.equal(body.ok, false);
    assert.match(body.checks[0]!.detail, /timed out after 150 ms/);
    assert.ok(elapsed >= 140 && elapsed < 1_000, `took ${elapsed} ms`);
  });

  it('with runChecks, only the hung check fails and the others still report', async () => {
    const { port } = await start();
    readyChecks = () => runChecks({ datastore: never, authority: () => ({ ok: true, detail: 'x509 authority a1' }) }, 100);
    const res = await fetchText(port, '/ready');
    assert.equal(res.status, 503);
    assert.deepEqual(JSON.parse(res.body), {
      ok: false,
      checks: [
        { name: 'datastore', ok: false, detail: 'timed out after 100 ms' },
        { name: 'authority', ok: true, detail: 'x509 authority a1' },
      ],
    });
  });

  it('answers 404 for unknown paths and for /metrics without a registry, 405 for other methods', async () => {
    const { port } = await start();
    assert.equal((await fetchText(port, '/')).status, 404);
    assert.equal((await fetchText(port, '/readyz')).status, 404);
    assert.equal((await fetchText(port, '/metrics')).status, 404);
    for (const method of ['POST', 'PUT', 'DELETE', 'HEAD']) {
      const res = await fetchText(port, '/ready', method);
      assert.equal(res.status, 405, method);
      assert.equal(res.headers.allow, 'GET');
    }
  });

  it('serves only what it is given: a metrics-only listener has no /live or /ready', async () => {
    server = await startObservabilityServer({ host: '127.0.0.1', port: 0, registry: createServerMetrics(undefined, { defaultMetrics: false }).registry, logger: silentLogger() });
    assert.equal((await fetchText(server.port, '/metrics')).status, 200);
    assert.equal((await fetchText(server.port, '/live')).status, 404);
    assert.equal((await fetchText(server.port, '/ready')).status, 404);
  });

  it('rejects a bad port, and a port already in use, with a clear error', async () => {
    await assert.rejects(startObservabilityServer({ host: '127.0.0.1', port: 70_000, logger: silentLogger() }), (e) => isEmblemError(e, 'invalid_argument'));
    const { port } = await start();
    await assert.rejects(startObservabilityServer({ host: '127.0.0.1', port, logger: silentLogger() }), (e) => isEmblemError(e, 'unavailable') && /EADDRINUSE/.test(e.message));
  });

  it('close() returns promptly even with an idle keep-alive connection open', async () => {
    const { port } = await start();
    const agent = new Agent({ keepAlive: true });
    await new Promise<void>((resolve, reject) => {
      get({ host: '127.0.0.1', port, path: '/live', agent }, (res) => {
        res.resume();
        res.on('end', resolve);
      }).on('error', reject);
    });
    const started = Date.now();
    await server!.close();
    server = undefined;
    assert.ok(Date.now() - started < 1_000);
    agent.destroy();
  });
});

describe('probeHealth', () => {
  let server: ObservabilityServer | undefined;
  let silent: Server | undefined;
  const sockets: Socket[] = [];

  afterEach(async () => {
    await server?.close();
    server = undefined;
    for (const s of sockets.splice(0)) s.destroy();
    await new Promise<void>((resolve) => (silent ? silent.close(() => resolve()) : resolve()));
    silent = undefined;
  });

  it('returns ok with the checks from a ready endpoint, and not ok with them from a 503', async () => {
    let healthy = true;
    server = await startObservabilityServer({
      host: '127.0.0.1',
      port: 0,
      live: async () => [pass('process')],
      ready: async () => [{ name: 'stream', ok: healthy, detail: healthy ? 'up' : 'down since 12:00' }],
      logger: silentLogger(),
    });
    assert.deepEqual(await probeHealth(`http://127.0.0.1:${server.port}/ready`, 1_000), { ok: true, checks: [{ name: 'stream', ok: true, detail: 'up' }] });
    healthy = false;
    assert.deepEqual(await probeHealth(`http://127.0.0.1:${server.port}/ready`, 1_000), {
      ok: false,
      checks: [{ name: 'stream', ok: false, detail: 'down since 12:00' }],
    });
  });

  it('reports an unreachable endpoint, a non-report answer and a silent server as not ok, without throwing', async () => {
    server = await startObservabilityServer({ host: '127.0.0.1', port: 0, live: async () => [], logger: silentLogger() });
    const notFound = await probeHealth(`http://127.0.0.1:${server.port}/nothing`, 1_000);
    assert.equal(notFound.ok, false);
    assert.match(notFound.checks[0]!.detail, /HTTP 404 without a health report/);

    const port = server.port;
    await server.close();
    server = undefined;
    const refused = await probeHealth(`http://127.0.0.1:${port}/ready`, 1_000);
    assert.equal(refused.ok, false);
    assert.equal(refused.checks[0]!.name, 'endpoint');
    assert.match(refused.checks[0]!.detail, /ECONNREFUSED/);

    silent = createServer((s) => sockets.push(s));
    await new Promise<void>((resolve) => silent!.listen(0, '127.0.0.1', resolve));
    const silentPort = (silent.address() as { port: number }).port;
    const started = Date.now();
    const hung = await probeHealth(`http://127.0.0.1:${silentPort}/ready`, 150);
    assert.equal(hung.ok, false);
    assert.match(hung.checks[0]!.detail, /no answer within 150 ms/);
    assert.ok(Date.now() - started < 1_000);
  });

  it('an empty check list is healthy', async () => {
    server = await startObservabilityServer({ host: '127.0.0.1', port: 0, live: async () => [], logger: silentLogger() });
    assert.deepEqual(await probeHealth(`http://127.0.0.1:${server.port}/live`, 1_000), { ok: true, checks: [] });
  });

  it('throws for a malformed or non-http URL', () => {
    assert.throws(() => probeHealth('not a url', 100), (e) => isEmblemError(e, 'invalid_argument'));
    assert.throws(() => probeHealth('https://127.0.0.1:1/ready', 100), (e) => isEmblemError(e, 'invalid_argument'));
  });
});
