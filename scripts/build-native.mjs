// Builds the peer-credential addon (native/peercred) with node-gyp against the headers of the
// Node.js that runs this script, so the build works offline (no header download).
import { spawnSync } from 'node:child_process';
import { dirname, join } from 'node:path';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';

const root = dirname(dirname(fileURLToPath(import.meta.url)));
const require = createRequire(import.meta.url);
const nodeGyp = require.resolve('node-gyp/bin/node-gyp.js');
const nodedir = dirname(dirname(process.execPath));
const result = spawnSync(process.execPath, [nodeGyp, 'rebuild', '-C', join(root, 'native/peercred'), `--nodedir=${nodedir}`], {
  stdio: 'inherit',
});
process.exit(result.status ?? 1);
