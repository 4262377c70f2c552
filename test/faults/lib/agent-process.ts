// `emblem-agent run` as a child process that fault tests can SIGKILL and start again on the same
// data directory and socket. stdout and stderr are both kept (and registered in run-log.ts).
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { REPO_ROOT, runServerCli, type CliResult } from '../../helpers/cli.js';
import { recordAgentKeys, recordOutput } from './run-log.js';

export const AGENT_MAIN = join(REPO_ROOT, 'src/agent/cli/main.ts');

const live = new Set<ChildProcess>();
process.once('exit', () => {
  for (const child of live) child.kill('SIGKILL');
});

export interface AgentProcessOptions {
  serverAddress: string;
  trustDomain: string;
  /** PEM file with the server's bundle (bootstrap trust). */
  bundlePath: string;
  joinToken?: string;
  extraArgs?: string[];
}

export interface AgentProcess {
  dir: string;
  dataDir: string;
  socket: string;
  /** All output (stdout + stderr) of every run so far. */
  output(): string;
  /** Output of the current run only. */
  runOutput(): string;
  /** Exit code of the current run, or null while it runs. */
  exitCode(): number | null;
  /**
   * Starts a run; resolves when it logs "emblem-agent ready" (`until: 'ready'`) or when its
   * Workload API socket accepts (`until: 'socket'`, for a start while the server is down).
   */
  start(until?: 'ready' | 'socket'): Promise<void>;
  /** SIGKILL: no shutdown code runs. */
  kill(): Promise<void>;
  /** Resolves with the first match of `re` in this run's output after `from` characters. */
  waitForOutput(re: RegExp, timeoutMs?: number, from?: number): Promise<RegExpExecArray>;
  /** SIGTERM (SIGKILL after 5 s); keeps the data dir. */
  shutdown(): Promise<void>;
  /** shutdown(), records the keys in its data dir as secrets (run-log.ts), then removes the temp dir. */
  stop(): Promise<void>;
}

function waitForExit(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => child.once('exit', () => resolve()));
}

export function socketAccepts(path: string): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect(path);
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}

export function newAgentProcess(options: AgentProcessOptions): AgentProcess {
  const dir = mkdtempSync(join(tmpdir(), 'emblem-fault-agent-'));
  const dataDir = join(dir, 'data');
  const socket = join(dir, 'public', 'api.sock');
  let all = '';
  let current = '';
  let child: ChildProcess | undefined;
  let runs = 0;
  const name = `agent ${dir}`;
  recordOutput(name, () => all);

  const args = (): string[] => [
    '--import',
    'tsx',
    AGENT_MAIN,
    'run',
    '--server-address',
    options.serverAddress,
    '--trust-domain',
    options.trustDomain,
    '--trust-bundle',
    options.bundlePath,
    '--data-dir',
    dataDir,
    '--socket',
    socket,
    '--log-level',
    'debug',
    ...(options.joinToken ? ['--join-token', options.joinToken] : []),
    ...(options.extraArgs ?? []),
  ];

  const waitForOutput = (re: RegExp, timeoutMs = 15_000, from = 0): Promise<RegExpExecArray> =>
    new Promise((resolve, reject) => {
      const proc = child;
      const started = Date.now();
      const check = (): void => {
        const m = re.exec(current.slice(from));
        if (m) return resolve(m);
        if (!proc || proc.exitCode !== null || proc.signalCode !== null) {
          return reject(new Error(`emblem-agent exited (${proc?.exitCode ?? proc?.signalCode}) before logging ${re}:\n${current.slice(-3000)}`));
        }
        if (Date.now() - started > timeoutMs) return reject(new Error(`emblem-agent did not log ${re} within ${timeoutMs} ms:\n${current.slice(-3000)}`));
        setTimeout(check, 20);
      };
      check();
    });

  const agent: AgentProcess = {
    dir,
    dataDir,
    socket,
    output: () => all,
    runOutput: () => current,
    exitCode: () => child?.exitCode ?? null,
    async start(until = 'ready') {
      if (child && child.exitCode === null && child.signalCode === null) throw new Error('emblem-agent is already running');
      runs += 1;
      current = '';
      all += `--- run ${runs} ---\n`;
      const proc = spawn(process.execPath, args(), { cwd: REPO_ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
      child = proc;
      live.add(proc);
      proc.once('exit', () => live.delete(proc));
      const onData = (chunk: string): void => {
        all += chunk;
        current += chunk;
      };
      proc.stdout!.setEncoding('utf8').on('data', onData);
      proc.stderr!.setEncoding('utf8').on('data', onData);
      try {
        if (until === 'ready') {
          await waitForOutput(/"msg":"emblem-agent ready"/, 20_000);
        } else {
          const deadline = Date.now() + 20_000;
          while (!(await socketAccepts(socket))) {
            if (proc.exitCode !== null) throw new Error(`emblem-agent exited with ${proc.exitCode}:\n${current.slice(-3000)}`);
            if (Date.now() > deadline) throw new Error(`emblem-agent socket ${socket} did not open:\n${current.slice(-3000)}`);
            await new Promise((r) => setTimeout(r, 50));
          }
        }
      } catch (err) {
        proc.kill('SIGKILL');
        await waitForExit(proc);
        throw err;
      }
    },
    async kill() {
      if (!child) return;
      child.kill('SIGKILL');
      await waitForExit(child);
    },
    waitForOutput,
    async shutdown() {
      const proc = child;
      if (proc && proc.exitCode === null && proc.signalCode === null) {
        proc.kill('SIGTERM');
        const timer = setTimeout(() => proc.kill('SIGKILL'), 5_000);
        await waitForExit(proc);
        clearTimeout(timer);
      }
    },
    async stop() {
      await agent.shutdown();
      if (runs > 0) await recordAgentKeys(dataDir, options.trustDomain).catch(() => 0);
      rmSync(dir, { recursive: true, force: true });
    },
  };
  return agent;
}

/** `emblem-agent <args>` (e.g. `api fetch x509`); its stderr is registered as a log source. */
export function runAgentCli(args: string[], timeoutMs = 20_000): Promise<CliResult> {
  return new Promise((resolve) => {
    execFile(process.execPath, ['--import', 'tsx', AGENT_MAIN, ...args], { cwd: REPO_ROOT, timeout: timeoutMs, encoding: 'utf8' }, (err, stdout, stderr) => {
      const code = err ? (typeof (err as { code?: unknown }).code === 'number' ? (err as { code: number }).code : -1) : 0;
      recordOutput(`emblem-agent ${args.slice(0, 3).join(' ')} (stderr)`, () => stderr);
      resolve({ code, stdout, stderr });
    });
  });
}

/** runServerCli, with its stderr registered as a log source. */
export async function runServerCliLogged(args: string[]): Promise<CliResult> {
  const res = await runServerCli(args);
  recordOutput(`emblem-server ${args.slice(0, 2).join(' ')} (stderr)`, () => res.stderr);
  return res;
}
