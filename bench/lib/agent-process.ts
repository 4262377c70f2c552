// A real emblem-agent for a benchmark: `emblem-agent run` (the CLI, through tsx) as a child
// process attesting with a join token, on a temp dir with its own Workload API socket.
import { chmodSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { scrapeSum, writeTrustBundle } from './admin-ops.js';
import { nodeFlagsFrom, spawnEmblem, type Child } from './children.js';
import { benchTempDir } from './temp-dirs.js';
import { freePort, type ServerProcess } from './server-process.js';
import { sleep } from './stats.js';

export interface AgentProcess {
  /** spiffe://<td>/emblem/agent/join_token/<token> */
  readonly id: string;
  readonly socket: string;
  readonly pid: number;
  readonly child: Child;
  readonly metricsUrl: string;
  /** Waits until the agent caches `count` X.509-SVIDs (emblem_agent_svids_cached). */
  waitForSvids(count: number, timeoutMs: number): Promise<void>;
  /** SIGTERM, then removes the temp dir. */
  dispose(): Promise<void>;
}

export async function startAgentProcess(server: ServerProcess, joinToken: { token: string; agentId: string }): Promise<AgentProcess> {
  const dir = benchTempDir('emblem-bench-agent-');
  chmodSync(dir, 0o755); // workloads run under other uids and must reach the socket
  const socket = join(dir, 'api.sock');
  const bundlePath = join(dir, 'bundle.json');
  await writeTrustBundle(server.admin, bundlePath);
  const metricsPort = await freePort();
  const metricsUrl = `http://127.0.0.1:${metricsPort}/metrics`;
  const child = await spawnEmblem('src/agent/cli/main.ts', [
    'run',
    '--server-address', server.address,
    '--trust-domain', server.trustDomain,
    '--join-token', joinToken.token,
    '--trust-bundle', bundlePath,
    '--data-dir', join(dir, 'data'),
    '--socket', socket,
    '--log-level', 'info',
    '--metrics-bind', `127.0.0.1:${metricsPort}`,
  ], {}, nodeFlagsFrom('EMBLEM_BENCH_AGENT_NODE_FLAGS'));
  try {
    await child.waitForLine((l) => l.includes('"msg":"emblem-agent ready"'), 60_000, 'emblem-agent ready');
  } catch (err) {
    await child.kill();
    rmSync(dir, { recursive: true, force: true });
    throw err;
  }
  return {
    id: joinToken.agentId,
    socket,
    pid: child.pid,
    child,
    metricsUrl,
    async waitForSvids(count, timeoutMs) {
      const deadline = Date.now() + timeoutMs;
      let cached = 0;
      while ((cached = await scrapeSum(metricsUrl, 'emblem_agent_svids_cached')) < count) {
        if (Date.now() > deadline) throw new Error(`agent caches ${cached} SVIDs, expected ${count}, after ${timeoutMs} ms`);
        await sleep(50);
      }
    },
    async dispose() {
      await child.stop();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
