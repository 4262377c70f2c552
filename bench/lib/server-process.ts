// A real emblem-server for a benchmark: `emblem-server run` (the CLI, through tsx) as a child
// process on a temp dir, with /metrics and /ready on a local port, and an Admin API client on its
// socket. It can be stopped and started again on the same data dir and ports (cold start).
import { rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { connectAdmin, type AdminClient } from '../../src/server/cli/admin-client.js';
import { nodeFlagsFrom, spawnEmblem, type Child } from './children.js';
import { benchTempDir } from './temp-dirs.js';

export const BENCH_TD = 'bench.test';

export interface ServerProcess {
  readonly trustDomain: string;
  /** host:port of the agent-facing API. */
  readonly address: string;
  readonly dir: string;
  readonly metricsUrl: string;
  readonly pid: number;
  readonly admin: AdminClient;
  /** Milliseconds from spawn to the "emblem-server ready" log line of the latest start. */
  readonly startupMs: number;
  /** Stops (SIGTERM) and starts the server again on the same data dir and ports. */
  restart(): Promise<void>;
  /** Stops the server (keeps the temp dir). */
  stop(): Promise<void>;
  /** Stops the server and removes its temp dir. */
  dispose(): Promise<void>;
  logTail(): string;
}

/** A TCP port that was free a moment ago on 127.0.0.1. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address() as { port: number };
      srv.close(() => resolve(port));
    });
  });
}

/** Starts a server; `config` (camelCase config-file keys) overrides the defaults. */
export async function startServerProcess(config: Record<string, unknown> = {}): Promise<ServerProcess> {
  const dir = benchTempDir('emblem-bench-server-');
  const [port, metricsPort] = [await freePort(), await freePort()];
  const socket = join(dir, 'admin.sock');
  const configPath = join(dir, 'server.yaml');
  const full = {
    trustDomain: BENCH_TD,
    bind: `127.0.0.1:${port}`,
    socket,
    dataDir: join(dir, 'data'),
    logLevel: 'info',
    metricsBind: `127.0.0.1:${metricsPort}`,
    healthBind: `127.0.0.1:${metricsPort}`,
    // Benchmarks attest hundreds of agents from one address.
    attestationRateLimit: 1_000_000,
    ...config,
  };
  writeFileSync(configPath, JSON.stringify(full, null, 2)); // JSON is YAML

  let child: Child | undefined;
  let startupMs = NaN;
  const admin = connectAdmin(socket, 120_000);
  const launch = async (): Promise<void> => {
    const started = Date.now();
    const proc = await spawnEmblem('src/server/cli/main.ts', ['run', '--config', configPath], {}, nodeFlagsFrom('EMBLEM_BENCH_SERVER_NODE_FLAGS'));
    child = proc;
    const line = await proc.waitForLine((l) => l.includes('"msg":"emblem-server ready"'), 120_000, 'emblem-server ready');
    startupMs = (JSON.parse(line) as { time: number }).time - started;
  };
  const stop = async (): Promise<void> => {
    await child?.stop();
  };
  try {
    await launch();
  } catch (err) {
    await stop();
    admin.close();
    rmSync(dir, { recursive: true, force: true });
    throw err;
  }
  return {
    trustDomain: BENCH_TD,
    address: `127.0.0.1:${port}`,
    dir,
    metricsUrl: `http://127.0.0.1:${metricsPort}/metrics`,
    get pid() {
      return child!.pid;
    },
    admin,
    get startupMs() {
      return startupMs;
    },
    async restart() {
      await stop();
      await launch();
    },
    stop,
    async dispose() {
      await stop();
      admin.close();
      rmSync(dir, { recursive: true, force: true });
    },
    logTail: () => child?.logTail() ?? '',
  };
}
