// Real emblem-servers for end-to-end tests, on temp dirs, an ephemeral 127.0.0.1 port and a temp
// admin socket:
// - startTestServer: in-process (startServer), every log line captured;
// - spawnServer: `node --import tsx src/server/cli/main.ts run --config …` as a child process, which
//   can be SIGKILLed and restarted on the same data dir and port;
// plus agents of those servers (attested through the agent's own client modules) and raw Node API
// clients for calls an agent would never make.
import * as grpc from '@grpc/grpc-js';
import type { ClientReadableStream } from '@grpc/grpc-js';
import { spawn, type ChildProcess } from 'node:child_process';
import type { KeyObject } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { attestAgent, type NodeAttestor } from '../../src/agent/attestation/node-attestation.js';
import type { SyncEntriesUpdateMsg } from '../../src/agent/client/messages.js';
import { ServerClient } from '../../src/agent/client/server-client.js';
import { serverChannelCredentials, serverNameOptions } from '../../src/agent/client/tls-credentials.js';
import { decodeSpiffeBundle } from '../../src/common/bundle-json.js';
import type { RawConfig } from '../../src/common/config-file.js';
import { nodeService } from '../../src/common/grpc/proto.js';
import { fromGrpcError } from '../../src/common/grpc/status.js';
import type { EmblemError } from '../../src/common/errors.js';
import { createLogger, type Logger } from '../../src/common/logger.js';
import type { TrustBundle } from '../../src/common/trust-bundle.js';
import { createCsr } from '../../src/common/x509/csr.js';
import { generateKeyPair, type KeyPair } from '../../src/common/x509/keys.js';
import { connectAdmin, type AdminClient } from '../../src/server/cli/admin-client.js';
import { buildServerConfig } from '../../src/server/config.js';
import { startServer, type RunningServer, type ServerTestHooks } from '../../src/server/server.js';
import { REPO_ROOT, SERVER_MAIN } from './cli.js';

export const TEST_TD = 'e2e.test';

export interface LogCapture {
  lines: string[];
  text(): string;
  /** Parsed JSON log records. */
  records(): Record<string, unknown>[];
}

export function captureLogs(level = 'debug'): { logger: Logger; logs: LogCapture } {
  const lines: string[] = [];
  const logger = createLogger({ level, destination: { write: (line: string) => void lines.push(line) } });
  const logs: LogCapture = {
    lines,
    text: () => lines.join(''),
    records: () => lines.map((l) => JSON.parse(l) as Record<string, unknown>),
  };
  return { logger, logs };
}

/** What agents and raw clients need to reach a server. */
export interface ServerTarget {
  trustDomain: string;
  address: string;
  admin: AdminClient;
}

/** The server's current bundle, as GetBundle serves it. */
export async function fetchBundle(target: ServerTarget): Promise<TrustBundle> {
  const res = await target.admin.call<{ bundle: Buffer; sequence: number }>('GetBundle');
  return decodeSpiffeBundle(target.trustDomain, res.bundle);
}

export async function newJoinToken(target: ServerTarget, ttl = 0): Promise<{ token: string; agent_id: string; expires_at: number }> {
  return target.admin.call('CreateJoinToken', { ttl });
}

export interface TestServer extends ServerTarget {
  port: number;
  dir: string;
  dataDir: string;
  socket: string;
  logs: LogCapture;
  running: RunningServer;
  /** Closes the server (keeps the data dir). */
  close(): Promise<void>;
  /** Closes the server and removes its temp dir. */
  stop(): Promise<void>;
}

export function newServerDir(): string {
  return mkdtempSync(join(tmpdir(), 'emblem-e2e-'));
}

/** An in-process server; `dir` reuses a data dir (restart), else a fresh temp dir is made. */
export async function startTestServer(overrides: RawConfig = {}, options: { dir?: string; logLevel?: string; hooks?: ServerTestHooks } = {}): Promise<TestServer> {
  const dir = options.dir ?? newServerDir();
  const socket = join(dir, 'admin', 'api.sock');
  const dataDir = join(dir, 'data');
  const config = buildServerConfig({ trustDomain: TEST_TD, bind: '127.0.0.1:0', socket, dataDir, ...overrides });
  const { logger, logs } = captureLogs(options.logLevel);
  let running: RunningServer;
  try {
    running = await startServer(config, logger, options.hooks);
  } catch (err) {
    if (!options.dir) rmSync(dir, { recursive: true, force: true });
    throw err;
  }
  const admin = connectAdmin(socket, 10_000);
  let closed = false;
  const close = async () => {
    if (closed) return;
    closed = true;
    admin.close();
    await running.close();
  };
  return {
    trustDomain: config.trustDomain,
    address: `127.0.0.1:${running.port}`,
    port: running.port,
    dir,
    dataDir,
    socket,
    logs,
    running,
    admin,
    close,
    async stop() {
      await close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

// --- child-process servers -------------------------------------------------------------------

const liveChildren = new Set<ChildProcess>();
process.once('exit', () => {
  for (const child of liveChildren) child.kill('SIGKILL');
});

export interface ChildServer extends ServerTarget {
  dir: string;
  dataDir: string;
  socket: string;
  configPath: string;
  port: number;
  /** Everything the current and earlier runs wrote to stderr (the JSON log). */
  stderr(): string;
  /** SIGKILL: no shutdown code runs. */
  kill(): Promise<void>;
  /** Starts the server again on the same config, data dir and port. */
  restart(): Promise<void>;
  /** SIGTERM (SIGKILL after 5 s), then removes the temp dir. */
  stop(): Promise<void>;
}

function waitForExit(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => child.once('exit', () => resolve()));
}

async function waitUntilHealthy(admin: AdminClient, child: ChildProcess, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`emblem-server exited with code ${child.exitCode}`);
    try {
      const res = await admin.call<{ ready: boolean }>('GetHealth');
      if (res.ready) return;
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline) throw new Error('emblem-server did not become healthy');
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** `emblem-server run` as a child process, with `config` (camelCase keys) in a YAML file. */
export async function spawnServer(config: RawConfig = {}): Promise<ChildServer> {
  const dir = newServerDir();
  const socket = join(dir, 'admin', 'api.sock');
  const dataDir = join(dir, 'data');
  const configPath = join(dir, 'server.yaml');
  const full = { trustDomain: TEST_TD, bind: '127.0.0.1:0', socket, dataDir, logLevel: 'debug', ...config };
  writeFileSync(configPath, JSON.stringify(full, null, 2)); // JSON is YAML
  let output = '';
  let child: ChildProcess | undefined;
  let port = 0;
  let admin: AdminClient | undefined;

  const launch = async (): Promise<void> => {
    const args = ['--import', 'tsx', SERVER_MAIN, 'run', '--config', configPath, ...(port ? ['--bind', `127.0.0.1:${port}`] : [])];
    const proc = spawn(process.execPath, args, { cwd: REPO_ROOT, stdio: ['ignore', 'ignore', 'pipe'] });
    child = proc;
    liveChildren.add(proc);
    proc.once('exit', () => liveChildren.delete(proc));
    let pending = '';
    const ready = new Promise<number>((resolve, reject) => {
      proc.stderr!.setEncoding('utf8');
      proc.stderr!.on('data', (chunk: string) => {
        output += chunk;
        pending += chunk;
        let nl: number;
        while ((nl = pending.indexOf('\n')) >= 0) {
          const line = pending.slice(0, nl);
          pending = pending.slice(nl + 1);
          const m = /"msg":"emblem-server ready"/.test(line) ? /"bind":"[^"]*:(\d+)"/.exec(line) : null;
          if (m) resolve(Number(m[1]));
        }
      });
      proc.once('exit', (code) => reject(new Error(`emblem-server exited (code ${code}) before it was ready:\n${output.slice(-2000)}`)));
    });
    const timer = setTimeout(() => proc.kill('SIGKILL'), 20_000);
    try {
      port = await ready;
      admin?.close();
      admin = connectAdmin(socket, 10_000);
      await waitUntilHealthy(admin, proc, 10_000);
    } finally {
      clearTimeout(timer);
    }
  };

  const kill = async (): Promise<void> => {
    if (!child) return;
    child.kill('SIGKILL');
    await waitForExit(child);
  };

  try {
    await launch();
  } catch (err) {
    admin?.close();
    await kill();
    rmSync(dir, { recursive: true, force: true });
    throw err;
  }
  const server: ChildServer = {
    trustDomain: String(full.trustDomain),
    dir,
    dataDir,
    socket,
    configPath,
    get port() {
      return port;
    },
    get address() {
      return `127.0.0.1:${port}`;
    },
    get admin() {
      return admin!;
    },
    stderr: () => output,
    kill,
    restart: launch,
    async stop() {
      admin?.close();
      if (child && child.exitCode === null && child.signalCode === null) {
        const proc = child;
        proc.kill('SIGTERM');
        const timer = setTimeout(() => proc.kill('SIGKILL'), 5_000);
        await waitForExit(proc);
        clearTimeout(timer);
      }
      rmSync(dir, { recursive: true, force: true });
    },
  };
  return server;
}

// --- agents ------------------------------------------------------------------------------------

export interface TestAgent {
  id: string;
  client: ServerClient;
  keyPair: KeyPair;
  /** Agent SVID, leaf first. */
  chain: Buffer[];
  bundle: TrustBundle;
  close(): void;
}

/** Attests through the agent's client modules and returns a connected mTLS client. */
export async function attestTestAgent(target: ServerTarget, attestor: NodeAttestor): Promise<TestAgent> {
  const bundle = await fetchBundle(target);
  const client = new ServerClient({ serverAddress: target.address, trustDomain: target.trustDomain, bootstrapAnchors: bundle.x509Authorities, rpcTimeoutMs: 10_000 });
  try {
    const keyPair = generateKeyPair();
    const result = await attestAgent(client, attestor, createCsr(keyPair), { timeoutMs: 10_000 });
    client.update({ agentSvid: { chain: result.svidChain, privateKey: keyPair.privateKey }, bundle: result.bundle });
    return { id: result.agentId, client, keyPair, chain: result.svidChain, bundle: result.bundle, close: () => client.close() };
  } catch (err) {
    client.close();
    throw err;
  }
}

export async function attestWithJoinToken(target: ServerTarget): Promise<TestAgent> {
  const { token } = await newJoinToken(target);
  return attestTestAgent(target, { joinToken: token });
}

/** A client of an agent whose SVID is already known (e.g. after a server restart). */
export function reconnectAgent(target: ServerTarget, agent: Pick<TestAgent, 'chain' | 'keyPair' | 'bundle'>): ServerClient {
  const client = new ServerClient({ serverAddress: target.address, trustDomain: target.trustDomain, bootstrapAnchors: agent.bundle.x509Authorities, rpcTimeoutMs: 10_000 });
  client.setAgentSvid({ chain: agent.chain, privateKey: agent.keyPair.privateKey });
  return client;
}

// --- sync streams ------------------------------------------------------------------------------

export interface SyncRecorder {
  /** Every update received, with the time it arrived (performance.now()). */
  updates: { update: SyncEntriesUpdateMsg; at: number }[];
  /** The status the stream ended with (an EmblemError; undefined while open or after a clean end). */
  error: EmblemError | undefined;
  /** Resolves when the stream has ended, with its error if any. */
  ended: Promise<EmblemError | undefined>;
  /** The first update (from `from` on) satisfying `match`, waiting up to `timeoutMs`. */
  waitFor(match: (u: SyncEntriesUpdateMsg) => boolean, timeoutMs?: number, from?: number): Promise<SyncEntriesUpdateMsg>;
  cancel(): void;
}

/** Follows a SyncEntries stream, keeping every update. */
export function recordSync(stream: ClientReadableStream<SyncEntriesUpdateMsg>, onUpdate?: (u: SyncEntriesUpdateMsg, at: number) => void): SyncRecorder {
  const updates: SyncRecorder['updates'] = [];
  const waiters = new Set<() => void>();
  const wake = () => {
    for (const w of [...waiters]) w();
  };
  let finished = false;
  const recorder: SyncRecorder = {
    updates,
    error: undefined,
    ended: new Promise((resolve) => {
      const finish = (err?: EmblemError) => {
        if (finished) return;
        finished = true;
        recorder.error = err;
        resolve(err);
        wake();
      };
      stream.on('error', (err) => finish(fromGrpcError(err)));
      stream.on('end', () => setImmediate(() => finish()));
    }),
    waitFor(match, timeoutMs = 2000, from = 0) {
      return new Promise((resolve, reject) => {
        let timer: NodeJS.Timeout | undefined;
        const check = () => {
          const found = updates.slice(from).find((u) => match(u.update));
          if (found || finished) {
            waiters.delete(check);
            clearTimeout(timer);
            if (found) resolve(found.update);
            else reject(new Error(`sync stream ended (${recorder.error?.message ?? 'cleanly'}) without the expected update`));
          }
        };
        timer = setTimeout(() => {
          waiters.delete(check);
          reject(new Error(`no matching sync update within ${timeoutMs} ms (${updates.length} received)`));
        }, timeoutMs);
        waiters.add(check);
        check();
      });
    },
    cancel: () => stream.cancel(),
  };
  stream.on('data', (update: SyncEntriesUpdateMsg) => {
    const at = performance.now();
    updates.push({ update, at });
    onUpdate?.(update, at);
    wake();
  });
  return recorder;
}

// --- raw Node API clients ----------------------------------------------------------------------

type RawStub = grpc.Client & Record<string, (...args: unknown[]) => unknown>;

export interface RawNodeClient {
  unary<Res = Record<string, unknown>>(method: string, request: object): Promise<Res>;
  stub: RawStub;
  close(): void;
}

/** A Node API client that verifies the server with `anchors` and presents `identity` (or nothing). */
export function rawNodeClient(target: Pick<ServerTarget, 'address' | 'trustDomain'>, anchors: Buffer[], identity?: { chain: Buffer[]; privateKey: KeyObject }): RawNodeClient {
  const Ctor = nodeService();
  const creds = serverChannelCredentials(target.trustDomain, { kind: 'anchors', anchors }, identity);
  const stub = new Ctor(target.address, creds, serverNameOptions(target.address)) as unknown as RawStub;
  return {
    stub,
    unary: (method, request) =>
      new Promise((resolve, reject) => {
        const fn = stub[method] as (req: object, opts: object, cb: (err: unknown, res: unknown) => void) => void;
        fn.call(stub, request, { deadline: Date.now() + 10_000 }, (err, res) => (err ? reject(fromGrpcError(err)) : resolve(res as never)));
      }),
    close: () => stub.close(),
  };
}

/** Resolves `true` once `check` holds, polling every 20 ms; `false` after `timeoutMs`. */
export async function eventually(check: () => boolean | Promise<boolean>, timeoutMs = 2000): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await check()) return true;
    if (Date.now() > deadline) return false;
    await new Promise((r) => setTimeout(r, 20));
  }
}

// --- secrets in logs ---------------------------------------------------------------------------

/** The token embedded in a join-token agent ID. */
export function joinTokenOf(agentId: string): string {
  const m = /\/join_token\/([0-9a-f]+)$/.exec(agentId);
  if (!m) throw new Error(`${agentId} is not a join-token agent ID`);
  return m[1]!;
}

const JWT_RE = /eyJ[A-Za-z0-9_-]{4,}\.eyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]+/;

/** Fails when `text` holds a PEM private key, anything shaped like a JWT, or one of `secrets`. */
export function assertNoSecretsLogged(text: string, secrets: readonly string[]): void {
  if (text.length === 0) throw new Error('no log lines were captured');
  if (/PRIVATE KEY/.test(text)) throw new Error('a private key was logged');
  const jwt = JWT_RE.exec(text);
  if (jwt) throw new Error(`a JWT was logged: ${jwt[0].slice(0, 40)}…`);
  for (const secret of secrets) {
    const at = text.indexOf(secret);
    if (at >= 0) throw new Error(`secret ${secret.slice(0, 6)}… was logged: …${text.slice(Math.max(0, at - 200), at + secret.length + 20)}`);
  }
}
