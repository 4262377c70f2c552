// Child processes of a benchmark run: spawned in their own process group, their stderr log kept
// (tail only) and scanned line by line, and all of them killed if the runner exits early.
import { spawn, type ChildProcess, type SpawnOptions } from 'node:child_process';
import { join } from 'node:path';
import { compiledTree, useTsx } from './build.js';
import { REPO_ROOT } from './paths.js';

export { REPO_ROOT };

const LOG_TAIL_CHARS = 64 * 1024;

export interface Child {
  readonly proc: ChildProcess;
  readonly pid: number;
  /** The last 64 KiB of stderr. */
  logTail(): string;
  /** Resolves with the next stderr line matching `match` (lines already read are not searched). */
  waitForLine(match: (line: string) => boolean, timeoutMs: number, what: string): Promise<string>;
  /** Resolves when the process has exited. */
  readonly exited: Promise<number | null>;
  /** SIGTERM (SIGKILL after `graceMs`) to the whole process group; resolves once it exited. */
  stop(graceMs?: number): Promise<void>;
  /** SIGKILL to the whole process group. */
  kill(): Promise<void>;
}

const live = new Set<ChildProcess>();
const killGroup = (proc: ChildProcess, signal: NodeJS.Signals): void => {
  try {
    if (proc.pid) process.kill(-proc.pid, signal);
  } catch {
    // already gone
  }
};
process.once('exit', () => {
  for (const proc of live) killGroup(proc, 'SIGKILL');
});
// Children run in their own process groups, so a signal to the runner does not reach them: pass it
// on, then exit as the signal would have (which runs the 'exit' handler above).
for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
  process.once(signal, () => {
    for (const proc of live) killGroup(proc, 'SIGTERM');
    process.exit(128 + (signal === 'SIGINT' ? 2 : signal === 'SIGTERM' ? 15 : 1));
  });
}

/** Spawns `command` in a new process group with stderr captured (stdout as `options.stdio` says). */
export function spawnChild(command: string, args: string[], options: SpawnOptions = {}): Child {
  const proc = spawn(command, args, { cwd: REPO_ROOT, stdio: ['ignore', 'ignore', 'pipe'], ...options, detached: true });
  if (!proc.pid) throw new Error(`could not spawn ${command}`);
  live.add(proc);
  const exited = new Promise<number | null>((resolve) => {
    proc.once('exit', (code) => {
      live.delete(proc);
      resolve(code);
    });
  });
  let tail = '';
  let partial = '';
  const watchers = new Set<(line: string) => void>();
  proc.stderr?.setEncoding('utf8');
  proc.stderr?.on('data', (chunk: string) => {
    tail = (tail + chunk).slice(-LOG_TAIL_CHARS);
    partial += chunk;
    let nl: number;
    while ((nl = partial.indexOf('\n')) >= 0) {
      const line = partial.slice(0, nl);
      partial = partial.slice(nl + 1);
      for (const w of [...watchers]) w(line);
    }
  });

  const child: Child = {
    proc,
    pid: proc.pid,
    logTail: () => tail,
    exited,
    waitForLine(match, timeoutMs, what) {
      return new Promise((resolve, reject) => {
        const done = (err: Error | undefined, line?: string): void => {
          clearTimeout(timer);
          watchers.delete(watcher);
          if (err) reject(err);
          else resolve(line!);
        };
        const watcher = (line: string): void => {
          if (match(line)) done(undefined, line);
        };
        const timer = setTimeout(() => done(new Error(`timed out after ${timeoutMs} ms waiting for ${what}; log tail:\n${tail.slice(-3000)}`)), timeoutMs);
        void exited.then((code) => done(new Error(`process exited (code ${code}) before ${what}; log tail:\n${tail.slice(-3000)}`)));
        watchers.add(watcher);
      });
    },
    async stop(graceMs = 5000) {
      if (proc.exitCode !== null || proc.signalCode !== null) return;
      killGroup(proc, 'SIGTERM');
      const timer = setTimeout(() => killGroup(proc, 'SIGKILL'), graceMs);
      await exited;
      clearTimeout(timer);
      killGroup(proc, 'SIGKILL'); // anything left in the group
    },
    async kill() {
      killGroup(proc, 'SIGKILL');
      if (proc.exitCode === null && proc.signalCode === null) await exited;
    },
  };
  return child;
}

/**
 * `node --import tsx <script> ...args` from the repository root. With EMBLEM_BENCH_PROFILE_DIR set,
 * the process writes a V8 CPU profile there when it exits (open it in Chrome DevTools).
 */
export function spawnTsx(script: string, args: string[], options: SpawnOptions = {}): Child {
  return spawnChild(process.execPath, [...profileFlags(), '--import', 'tsx', join(REPO_ROOT, script), ...args], options);
}

/**
 * An Emblem program (`src/.../main.ts`) as operators run it: compiled and started through its bin/
 * script (see build.ts), or through tsx with EMBLEM_BENCH_RUNTIME=tsx, with `nodeFlags` first.
 * Honours EMBLEM_BENCH_PROFILE_DIR like spawnTsx.
 */
export async function spawnEmblem(script: string, args: string[], options: SpawnOptions = {}, nodeFlags: string[] = []): Promise<Child> {
  if (useTsx()) return spawnChild(process.execPath, [...nodeFlags, ...profileFlags(), '--import', 'tsx', join(REPO_ROOT, script), ...args], options);
  const root = await compiledTree();
  const side = /^src\/(server|agent)\/cli\/main\.ts$/.exec(script)?.[1];
  const program = side ? join(root, 'bin', `emblem-${side}.js`) : join(root, 'dist', script.replace(/^src\//, '').replace(/\.ts$/, '.js'));
  return spawnChild(process.execPath, [...nodeFlags, ...profileFlags(), program, ...args], options);
}

/** Extra Node flags from an environment variable (space-separated), e.g. EMBLEM_BENCH_AGENT_NODE_FLAGS. */
export function nodeFlagsFrom(variable: string): string[] {
  return (process.env[variable] ?? '').split(/\s+/).filter(Boolean);
}

function profileFlags(): string[] {
  const dir = process.env['EMBLEM_BENCH_PROFILE_DIR'];
  return dir ? ['--cpu-prof', `--cpu-prof-dir=${dir}`] : [];
}
