// The server and agent run in benchmarks as operators run them: compiled JavaScript (what
// `npm run build` makes), not TypeScript through tsx, whose loader adds about 40 MB of resident
// memory and start-up time to every process. The sources are compiled once per benchmark run into a
// private temp dir (never into dist/, which bin/ would then pick up for everyone). Set
// EMBLEM_BENCH_RUNTIME=tsx to run the sources through tsx instead.
import { execFile } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, symlinkSync } from 'node:fs';
import { join } from 'node:path';
import { REPO_ROOT } from './paths.js';
import { benchTempDir } from './temp-dirs.js';

let build: Promise<string> | undefined;

export const useTsx = (): boolean => process.env['EMBLEM_BENCH_RUNTIME'] === 'tsx';

/** Compiles src/ (once per process) and returns the dir holding the compiled tree as dist/. */
export function compiledTree(): Promise<string> {
  build ??= compile();
  return build;
}

async function compile(): Promise<string> {
  const root = benchTempDir('emblem-bench-build-');
  // Paths the compiled code resolves relative to itself, and its package type (ESM).
  for (const name of ['node_modules', 'proto', 'native']) symlinkSync(join(REPO_ROOT, name), join(root, name));
  copyFileSync(join(REPO_ROOT, 'package.json'), join(root, 'package.json'));
  // The programs start through bin/ as installed (copied, not linked: bin/ finds dist/ beside itself).
  mkdirSync(join(root, 'bin'));
  for (const name of ['emblem-server.js', 'emblem-agent.js']) copyFileSync(join(REPO_ROOT, 'bin', name), join(root, 'bin', name));
  const tsc = join(REPO_ROOT, 'node_modules/typescript/bin/tsc');
  const args = [tsc, '-p', join(REPO_ROOT, 'tsconfig.build.json'), '--outDir', join(root, 'dist'), '--sourceMap', 'false', '--declaration', 'false'];
  const output = await new Promise<string>((resolve) => {
    // Type errors still emit JavaScript; only missing output is fatal.
    execFile(process.execPath, args, { cwd: REPO_ROOT, maxBuffer: 16 * 1024 * 1024 }, (_err, stdout, stderr) => resolve(stdout + stderr));
  });
  for (const main of ['server/cli/main.js', 'agent/cli/main.js']) {
    if (!existsSync(join(root, 'dist', main))) throw new Error(`compiling src/ for the benchmark failed:\n${output.slice(-3000)}`);
  }
  return root;
}
