// Builds the peer-credential addon (native/peercred) with node-gyp against the headers of the
// Node.js that runs this script, so the build works offline (no header download).
import { spawnSync } from 'node:child_process';
import { dirname, join } from 'node:path';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';

const root = dirname(dirname(fileURLToPath(import.meta.url)));
const require = createRequire(import.meta.url);
// The pinned node-gyp (a devDependency); without dev dependencies, the one npm itself ships.
function findNodeGyp() {
  try {
    return require.resolve('node-gyp/bin/node-gyp.js');
  } catch {
    if (process.env.npm_config_node_gyp) return process.env.npm_config_node_gyp;
    console.error('build-native: node-gyp not found; install the dev dependencies (npm ci) or run this through npm');
    process.exit(1);
  }
}
const nodeGyp = findNodeGyp();
const nodedir = dirname(dirname(process.execPath));
const result = spawnSync(process.execPath, [nodeGyp, 'rebuild', '-C', join(root, 'native/peercred'), `--nodedir=${nodedir}`], {
  stdio: 'inherit',
});
process.exit(result.status ?? 1);
