// The observability HTTP listener: GET /metrics (Prometheus text), GET /live and GET /ready (JSON
// health reports, 200 or 503). Plain node:http; nothing else is served. probeHealth() is the
// client side used by the `healthcheck` CLI commands.
import { createServer, get, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Registry } from 'prom-client';
import { EmblemError, invalidArgument } from '../errors.js';
import type { Logger } from '../logger.js';
import { summarize, withTimeout, type HealthCheck, type HealthReport } from './health.js';

export type HealthProbe = () => Promise<HealthCheck[]>;

export interface ObservabilityServerOptions {
  host: string;
  /** 0 picks a free port (see the returned `port`). */
  port: number;
  /** Serves GET /metrics when given; 404 otherwise. */
  registry?: Registry;
  /** Serves GET /live when given; 404 otherwise. */
  live?: HealthProbe;
  /** Serves GET /ready when given; 404 otherwise. */
  ready?: HealthProbe;
  logger: Logger;
  /**
   * Cap on one whole live/ready evaluation; past it the probe answers 503 with a failed check.
   * Individual checks built with runChecks() have their own, shorter timeout (2 s by default).
   */
  probeTimeoutMs?: number;
}

export interface ObservabilityServer {
  port: number;
  close(): Promise<void>;
}

export const DEFAULT_PROBE_TIMEOUT_MS = 3_000;

export async function startObservabilityServer(options: ObservabilityServerOptions): Promise<ObservabilityServer> {
  const { host, port, registry, live, ready, logger } = options;
  if (!Number.isInteger(port) || port < 0 || port > 65_535) throw invalidArgument(`observability port ${port} is not 0-65535`);
  if (!host) throw invalidArgument('observability host is empty');
  const probeTimeoutMs = options.probeTimeoutMs ?? DEFAULT_PROBE_TIMEOUT_MS;
  const log = logger.child({ component: 'observability-http' });

  const routes = new Map<string, (res: ServerResponse) => Promise<void>>();
  if (registry) routes.set('/metrics', (res) => serveMetrics(registry, res));
  if (live) routes.set('/live', (res) => serveHealth('live', live, probeTimeoutMs, res));
  if (ready) routes.set('/ready', (res) => serveHealth('ready', ready, probeTimeoutMs, res));

  const server = createServer((req, res) => {
    handle(req, res).catch((err: unknown) => {
      log.error({ err, path: req.url }, 'observability request failed');
      if (!res.headersSent) send(res, 500, 'text/plain; charset=utf-8', 'internal error\n');
      else res.destroy();
    });
  });
  server.requestTimeout = 10_000;
  server.headersTimeout = 5_000;

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const path = new URL(req.url ?? '/', 'http://localhost').pathname;
    const route = routes.get(path);
    if (!route) return send(res, 404, 'text/plain; charset=utf-8', 'not found\n');
    if (req.method !== 'GET') {
      res.setHeader('Allow', 'GET');
      return send(res, 405, 'text/plain; charset=utf-8', 'method not allowed\n');
    }
    await route(res);
  }

  await new Promise<void>((resolve, reject) => {
    const onError = (err: Error): void => reject(new EmblemError('unavailable', `cannot listen on ${host}:${port}: ${err.message}`, { cause: err }));
    server.once('error', onError);
    server.listen(port, host, () => {
      server.off('error', onError);
      resolve();
    });
  });
  server.on('error', (err) => log.error({ err }, 'observability listener error'));
  const bound = (server.address() as AddressInfo).port;
  log.info({ host, port: bound, metrics: !!registry, live: !!live, ready: !!ready }, 'observability endpoint listening');

  return {
    port: bound,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

async function serveMetrics(registry: Registry, res: ServerResponse): Promise<void> {
  const text = await registry.metrics();
  send(res, 200, registry.contentType, text);
}

async function serveHealth(name: string, probe: HealthProbe, timeoutMs: number, res: ServerResponse): Promise<void> {
  let checks: HealthCheck[];
  try {
    checks = await withTimeout(probe(), timeoutMs, () => [{ name, ok: false, detail: `${name} checks timed out after ${timeoutMs} ms` }]);
  } catch (err) {
    checks = [{ name, ok: false, detail: err instanceof Error ? err.message : String(err) }];
  }
  const report = summarize(checks);
  send(res, report.ok ? 200 : 503, 'application/json', JSON.stringify(report) + '\n');
}

function send(res: ServerResponse, statusCode: number, contentType: string, body: string): void {
  res.writeHead(statusCode, { 'Content-Type': contentType, 'Cache-Control': 'no-store', 'Content-Length': Buffer.byteLength(body) });
  res.end(body);
}

/**
 * GETs a /live or /ready URL. Never rejects for an unreachable or unhealthy endpoint: that is
 * `{ok: false}` with a check named "endpoint" saying why. Only a malformed URL throws.
 */
export function probeHealth(url: string, timeoutMs: number): Promise<HealthReport> {
  let target: URL;
  try {
    target = new URL(url);
  } catch {
    throw invalidArgument(`health URL ${JSON.stringify(url)} is not a URL`);
  }
  if (target.protocol !== 'http:') throw invalidArgument(`health URL ${JSON.stringify(url)} must use http:`);
  const failed = (detail: string): HealthReport => ({ ok: false, checks: [{ name: 'endpoint', ok: false, detail }] });

  return new Promise<HealthReport>((resolve) => {
    const finish = (report: HealthReport): void => {
      clearTimeout(timer);
      resolve(report);
    };
    const req = get(target, { agent: false, headers: { Accept: 'application/json' } }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('error', (err) => finish(failed(`${target.href}: ${err.message}`)));
      res.on('end', () => {
        const report = parseReport(Buffer.concat(chunks).toString('utf8'));
        if (!report) finish(failed(`${target.href}: HTTP ${res.statusCode} without a health report`));
        else finish({ ok: res.statusCode === 200 && report.ok, checks: report.checks });
      });
    });
    // A hard cap on the whole exchange (connect, headers and body), not an idle timeout.
    const timer = setTimeout(() => req.destroy(new Error(`no answer within ${timeoutMs} ms`)), timeoutMs);
    req.on('error', (err) => finish(failed(`${target.href}: ${err.message}`)));
  });
}

function parseReport(body: string): HealthReport | undefined {
  let value: unknown;
  try {
    value = JSON.parse(body);
  } catch {
    return undefined;
  }
  if (typeof value !== 'object' || value === null) return undefined;
  const { ok, checks } = value as { ok?: unknown; checks?: unknown };
  if (typeof ok !== 'boolean' || !Array.isArray(checks)) return undefined;
  const valid = checks.every(
    (c: unknown) =>
      typeof c === 'object' && c !== null &&
      typeof (c as HealthCheck).name === 'string' &&
      typeof (c as HealthCheck).ok === 'boolean' &&
      typeof (c as HealthCheck).detail === 'string',
  );
  return valid ? { ok, checks: checks as HealthCheck[] } : undefined;
}
