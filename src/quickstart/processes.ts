// Helpers of the quick start: waiting for readiness, building the addon on a first run.
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { ADDON_PATH } from '../agent/workload/peercred.js';

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
