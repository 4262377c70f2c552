// `npm start`: a server and an agent on this machine, on the embedded store under ./.emblem/ (or
// --data-dir), with an entry for the current user, ready to hand out an SVID. Running it again
// reuses the state: the agent keeps its identity (join tokens are single-use) and the entry stays.
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { userInfo } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { decodeSpiffeBundle } from '../common/bundle-json.js';
import { certificatesToPem } from '../common/pem.js';
import { checkWorkloadApiHealth } from '../agent/cli/health-client.js';
import { connectAdmin } from '../server/cli/admin-client.js';
import { ensureNativeAddon, waitFor } from './processes.js';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const { values: args } = parseArgs({
  options: {
    'data-dir': { type: 'string', default: './.emblem' },
    'trust-domain': { type: 'string', default: 'example.org' },
    port: { type: 'string', default: '8081' },
  },
});
const dataDir = resolve(args['data-dir']!);
const trustDomain = args['trust-domain']!;
const serverAddress = `127.0.0.1:${args.port}`;
const adminSocket = join(dataDir, 'server/private/api.sock');
const workloadSocket = join(dataDir, 'agent/public/api.sock');
const cliScript = (side: 'server' | 'agent') => join(root, `src/${side}/cli/main.ts`);
const children: ChildProcess[] = [];

function start(side: 'server' | 'agent', argv: string[]): ChildProcess {
  const child = spawn(process.execPath, ['--import', 'tsx', cliScript(side), 'run', ...argv, '--log-format', 'pretty', '--log-level', 'warn'], {
    cwd: root,
    stdio: ['ignore', 'inherit', 'inherit'],
  });
  children.push(child);
  child.on('exit', (code, signal) => {
    if (!stopping) {
      console.error(`emblem-${side} exited (${signal ?? code}); stopping`);
      stop(1);
    }
  });
  return child;
}

let stopping = false;
function stop(code: number): void {
  if (stopping) return;
  stopping = true;
  admin.close();
  for (const c of children) if (c.exitCode === null) c.kill('SIGTERM');
  const timer = setTimeout(() => process.exit(code), 5000);
  Promise.all(children.map((c) => (c.exitCode === null ? new Promise((r) => c.once('exit', r)) : null))).then(() => {
    clearTimeout(timer);
    process.exit(code);
  });
}
process.on('SIGINT', () => stop(0));
process.on('SIGTERM', () => stop(0));

/** The Admin API on the server's socket, called in-process (no CLI child processes). */
const admin = connectAdmin(adminSocket, 10_000);
const serverReady = () => admin.call<{ ready: boolean }>('GetHealth').then((h) => h.ready, () => false);
const agentReady = () => checkWorkloadApiHealth(`unix://${workloadSocket}`, 2_000).then((r) => r.ok);

async function main(): Promise<void> {
  await ensureNativeAddon(root);
  mkdirSync(dataDir, { recursive: true, mode: 0o700 });
  start('server', ['--trust-domain', trustDomain, '--data-dir', join(dataDir, 'server'), '--socket', adminSocket, '--bind', serverAddress]);
  await waitFor(serverReady, 30_000, 'emblem-server to become ready');

  const bundlePath = join(dataDir, 'bootstrap-bundle.pem');
  const { bundle } = await admin.call<{ bundle: Buffer }>('GetBundle');
  writeFileSync(bundlePath, certificatesToPem(decodeSpiffeBundle(trustDomain, bundle).x509Authorities));
  const agentDataDir = join(dataDir, 'agent/data');
  const agentArgs = ['--server-address', serverAddress, '--trust-domain', trustDomain, '--trust-bundle', bundlePath, '--data-dir', agentDataDir, '--socket', workloadSocket];
  const attested = existsSync(join(agentDataDir, 'agent'));
  if (!attested) {
    const { token } = await admin.call<{ token: string }>('CreateJoinToken', { ttl: 0 });
    agentArgs.push('--join-token', token);
  }
  start('agent', agentArgs);
  await waitFor(agentReady, 30_000, 'emblem-agent to become ready');

  const { agents } = await admin.call<{ agents: { id: string; banned: boolean }[] }>('ListAgents', { page_size: 1000 });
  const agentId = agents.find((a) => !a.banned)?.id;
  if (!agentId) throw new Error('the agent did not attest');
  const user = userInfo();
  const spiffeId = `spiffe://${trustDomain}/user/${user.username.replace(/[^A-Za-z0-9._-]/g, '_')}`;
  const { entries } = await admin.call<{ entries: { parent_id: string }[] }>('ListEntries', { spiffe_id: spiffeId });
  if (!entries.some((e) => e.parent_id === agentId)) {
    await admin.call('CreateEntry', { spiffe_id: spiffeId, parent_id: agentId, selectors: [{ type: 'unix', value: `uid:${user.uid}` }] });
  }

  console.log(`
Emblem is running (trust domain ${trustDomain}, state in ${dataDir}).
  server:           ${serverAddress}, admin socket ${adminSocket}
  Workload API:     unix://${workloadSocket}
  your identity:    ${spiffeId} (for processes with uid ${user.uid})

Fetch your SVID (in another terminal, from this directory):
  ./bin/emblem-agent.js api fetch x509 --socket ${workloadSocket}
  ./bin/emblem-agent.js api fetch x509 --socket ${workloadSocket} --write /tmp/svid
Any SPIFFE client works too:  export SPIFFE_ENDPOINT_SOCKET=unix://${workloadSocket}
Manage entries:  ./bin/emblem-server.js entry show --socket ${adminSocket}

Ctrl-C stops both.`);
}

main().catch((err: unknown) => {
  console.error(`quick start failed: ${err instanceof Error ? err.message : String(err)}`);
  stop(1);
});
