// A real emblem-agent as a child process (`node --import tsx src/agent/cli/main.ts run …`) attested
// to a test server with a fresh join token, its Workload API socket in a temp dir that any uid can
// reach; plus what the fault tests read from it (RSS, liveness, identities served).
import { spawn, type ChildProcess } from 'node:child_process';
import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connectWorkloadApi } from '../../../src/agent/cli/workload-client.js';
import { certificatesToPem } from '../../../src/common/pem.js';
import { REPO_ROOT } from '../../helpers/cli.js';
import { fetchBundle, newJoinToken, type ServerTarget } from '../../helpers/server-harness.js';

export const AGENT_MAIN = join(REPO_ROOT, 'src/agent/cli/main.ts');

export interface AgentProcess {
  pid: number;
  /** The agent's SPIFFE ID (join-token form). */
  id: string;
  /** Workload API socket path. */
  socket: string;
  dir: string;
  stderr(): string;
  alive(): boolean;
  /** Resident set size in KiB (VmRSS of /proc/<pid>/status). */
  rssKib(): number;
  /** SIGTERM (SIGKILL after 5 s), then removes the temp dir. */
  stop(): Promise<void>;
}

const live = new Set<ChildProcess>();
process.once('exit', () => {
  for (const child of live) child.kill('SIGKILL');
});

export function readRssKib(pid: number): number {
  const m = /^VmRSS:\s+(\d+) kB$/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  if (!m) throw new Error(`no VmRSS for pid ${pid}`);
  return Number(m[1]);
}

const exited = (child: ChildProcess) => child.exitCode !== null || child.signalCode !== null;

export async function spawnAgent(
  target: ServerTarget,
  options: { logLevel?: string; extraArgs?: string[]; env?: NodeJS.ProcessEnv } = {},
): Promise<AgentProcess> {
  const dir = mkdtempSync(join(tmpdir(), 'emblem-faults-agent-'));
  chmodSync(dir, 0o755); // workloads of any uid must reach the socket below
  const socket = join(dir, 'public', 'api.sock');
  const bundleFile = join(dir, 'bundle.pem');
  writeFileSync(bundleFile, certificatesToPem((await fetchBundle(target)).x509Authorities));
  const { token, agent_id: id } = await newJoinToken(target);
  const args = [
    '--import', 'tsx', AGENT_MAIN, 'run',
    '--server-address', target.address,
    '--trust-domain', target.trustDomain,
    '--join-token', token,
    '--trust-bundle', bundleFile,
    '--data-dir', join(dir, 'data'),
    '--socket', socket,
    '--log-level', options.logLevel ?? 'info',
    ...(options.extraArgs ?? []),
  ];
  const child = spawn(process.execPath, args, { cwd: REPO_ROOT, stdio: ['ignore', 'ignore', 'pipe'], env: options.env ?? process.env });
  live.add(child);
  child.once('exit', () => live.delete(child));
  let output = '';
  child.stderr!.setEncoding('utf8');
  const ready = new Promise<void>((resolve, reject) => {
    child.stderr!.on('data', (chunk: string) => {
      // Keep the head (start-up) and a bounded tail: a long fuzz run must not grow this without end.
      output = output.length > 4_000_000 ? output.slice(0, 100_000) + output.slice(-1_000_000) + chunk : output + chunk;
      if (output.includes('"msg":"emblem-agent ready"')) resolve();
    });
    child.once('exit', (code) => reject(new Error(`emblem-agent exited (code ${code}) before it was ready:\n${output.slice(-2000)}`)));
  });
  const stop = async () => {
    if (!exited(child)) {
      const gone = new Promise<void>((resolve) => child.once('exit', () => resolve()));
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
      await gone;
      clearTimeout(timer);
    }
    rmSync(dir, { recursive: true, force: true });
  };
  const timer = setTimeout(() => child.kill('SIGKILL'), 30_000);
  try {
    await ready;
  } catch (err) {
    await stop();
    throw err;
  } finally {
    clearTimeout(timer);
  }
  return {
    pid: child.pid!,
    id,
    socket,
    dir,
    stderr: () => output,
    alive: () => !exited(child),
    rssKib: () => readRssKib(child.pid!),
    stop,
  };
}

/** The SPIFFE IDs a Workload API client of this process's uid gets (FetchX509SVID), or the error code. */
export async function servedIds(socket: string, timeoutMs = 5000): Promise<string[] | { error: string }> {
  const client = connectWorkloadApi({ kind: 'unix', path: socket });
  try {
    const res = await client.fetchX509(timeoutMs);
    return res.svids.map((s) => s.spiffe_id).sort();
  } catch (err) {
    return { error: (err as { code?: string }).code ?? String(err) };
  } finally {
    client.close();
  }
}

/** Waits until this process's uid is served exactly `ids` (the agent minted them). */
export async function waitForServedIds(socket: string, ids: string[], timeoutMs = 10_000): Promise<void> {
  const want = [...ids].sort();
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    last = await servedIds(socket);
    if (JSON.stringify(last) === JSON.stringify(want)) return;
    if (Date.now() > deadline) throw new Error(`agent serves ${JSON.stringify(last)}, expected ${JSON.stringify(want)}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}
