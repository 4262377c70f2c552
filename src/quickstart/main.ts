// `npm start`: a server and an agent on this machine, on the embedded store under ./.emblem/ (or
// --data-dir), with an entry for the current user, ready to hand out an SVID. Running it again
// reuses the state: the agent keeps its identity (join tokens are single-use) and the entry stays.
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { userInfo } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { ensureNativeAddon, runCli, waitFor } from './processes.js';

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
  for (const c of children) if (c.exitCode === null) c.kill('SIGTERM');
  const timer = setTimeout(() => process.exit(code), 5000);
  Promise.all(children.map((c) => (c.exitCode === null ? new Promise((r) => c.once('exit', r)) : null))).then(() => {
    clearTimeout(timer);
    process.exit(code);
  });
}
process.on('SIGINT', () => stop(0));
process.on('SIGTERM', () => stop(0));

const server = (...argv: string[]) => runCli(cliScript('server'), [...argv, '--socket', adminSocket], root);

async function main(): Promise<void> {
  await ensureNativeAddon(root);
  mkdirSync(dataDir, { recursive: true, mode: 0o700 });
  start('server', ['--trust-domain', trustDomain, '--data-dir', join(dataDir, 'server'), '--socket', adminSocket, '--bind', serverAddress]);
  await waitFor(async () => (await server('healthcheck')).code === 0, 30_000, 'emblem-server to become ready');

  const bundlePath = join(dataDir, 'bootstrap-bundle.pem');
  writeFileSync(bundlePath, (await server('bundle', 'show')).stdout);
  const agentDataDir = join(dataDir, 'agent/data');
  const agentArgs = ['--server-address', serverAddress, '--trust-domain', trustDomain, '--trust-bundle', bundlePath, '--data-dir', agentDataDir, '--socket', workloadSocket];
  const attested = existsSync(join(agentDataDir, 'agent'));
  if (!attested) {
    const token = JSON.parse((await server('token', 'generate', '--output', 'json')).stdout) as { token: string };
    agentArgs.push('--join-token', token.token);
  }
  start('agent', agentArgs);
  const agentHealthy = async () => (await runCli(cliScript('agent'), ['healthcheck', '--socket', workloadSocket], root)).code === 0;
  await waitFor(agentHealthy, 30_000, 'emblem-agent to become ready');

  const agents = JSON.parse((await server('agent', 'list', '--output', 'json')).stdout) as { agents: { id: string; banned: boolean }[] };
  const agentId = agents.agents.find((a) => !a.banned)?.id;
  if (!agentId) throw new Error('the agent did not attest');
  const user = userInfo();
  const spiffeId = `spiffe://${trustDomain}/user/${user.username.replace(/[^A-Za-z0-9._-]/g, '_')}`;
  const existing = JSON.parse((await server('entry', 'show', '--spiffe-id', spiffeId, '--output', 'json')).stdout) as { entries: { parent_id: string }[] };
  if (!existing.entries.some((e) => e.parent_id === agentId)) {
    const created = await server('entry', 'create', '--spiffe-id', spiffeId, '--parent-id', agentId, '--selector', `unix:uid:${user.uid}`);
    if (created.code !== 0) throw new Error(`could not register ${spiffeId}: ${created.stderr.trim()}`);
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
