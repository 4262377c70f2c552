// Running the CLIs as child processes, for the quick start.
import { execFile, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { ADDON_PATH } from '../agent/workload/peercred.js';

export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** `cwd` must be the repository root: `--import tsx` is resolved from there. */
export function runCli(script: string, argv: string[], cwd: string, timeoutMs = 30_000): Promise<CliResult> {
  return new Promise((resolve) => {
    execFile(process.execPath, ['--import', 'tsx', script, ...argv], { cwd, timeout: timeoutMs }, (err, stdout, stderr) => {
      const code = err ? (typeof (err as { code?: unknown }).code === 'number' ? (err as { code: number }).code : 1) : 0;
      resolve({ code, stdout, stderr });
    });
  });
}

export async function waitFor(check: () => Promise<boolean>, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await check()) return;
    await new Promise((r) => setTimeout(r, 250));
  }
  throw new Error(`timed out waiting for ${what}`);
}

/**
 * `npm ci` does not build the peer-credential addon (no install script), and the agent cannot
 * identify workloads without it: build it on the first run (offline, with g++ and python3).
 */
export async function ensureNativeAddon(root: string): Promise<void> {
  if (existsSync(ADDON_PATH)) return;
  console.log('Building the peer-credential addon (first run only; needs g++ and python3)...');
  const child = spawn(process.execPath, [join(root, 'scripts/build-native.mjs')], { cwd: root, stdio: ['ignore', 'inherit', 'inherit'] });
  const code = await new Promise<number | null>((resolve) => child.once('exit', resolve));
  if (code !== 0 || !existsSync(ADDON_PATH)) throw new Error('building the peer-credential addon failed (see above); fix that and run npm run build:native');
}
