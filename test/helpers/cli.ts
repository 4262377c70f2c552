// Runs the emblem-server CLI (the TypeScript source through tsx) as a child process.
import { execFile } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const REPO_ROOT = join(dirname(fileURLToPath(import.meta.url)), '../..');
export const SERVER_MAIN = join(REPO_ROOT, 'src/server/cli/main.ts');

export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** `emblem-server <args>`; never rejects: a failure shows in `code` and `stderr`. */
export function runServerCli(args: string[], timeoutMs = 20_000): Promise<CliResult> {
  return new Promise((resolve) => {
    execFile(process.execPath, ['--import', 'tsx', SERVER_MAIN, ...args], { cwd: REPO_ROOT, timeout: timeoutMs, encoding: 'utf8' }, (err, stdout, stderr) => {
      const code = err ? (typeof (err as { code?: unknown }).code === 'number' ? (err as { code: number }).code : -1) : 0;
      resolve({ code, stdout, stderr });
    });
  });
}

/** Runs a command that must succeed and print JSON; returns the parsed value. */
export async function runServerCliJson<T = Record<string, unknown>>(args: string[]): Promise<T> {
  const res = await runServerCli(args);
  if (res.code !== 0) throw new Error(`emblem-server ${args.join(' ')} exited ${res.code}: ${res.stderr.trim()}`);
  try {
    return JSON.parse(res.stdout) as T;
  } catch {
    throw new Error(`emblem-server ${args.join(' ')} printed no JSON: ${res.stdout.slice(0, 500)}`);
  }
}
