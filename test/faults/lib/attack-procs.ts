// Hostile local processes for the Workload API attack tests. The client scripts are plain ESM run
// with `node -e` (no tsx, no node_modules), so they work under any uid, and they speak gRPC as raw
// HTTP/2: that lets a process call over a socket it inherited as a file descriptor, which no gRPC
// library supports.
import { spawn, type ChildProcess, type StdioOptions } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { loadDefinition } from '../../../src/common/grpc/proto.js';

export const NOBODY = 65534;

/** What a raw call printed: the gRPC status (0 with `message` for a streamed first message), or a transport error. */
export interface RawCallResult {
  status?: number;
  details?: string;
  /** base64 of the first response message. */
  message?: string;
  error?: string;
}

export interface RawCallConfig {
  /** Connect to this socket path... */
  socketPath?: string;
  /** ...or speak over this inherited file descriptor. */
  fd?: number;
  path: string;
  /** Send the workload.spiffe.io security header (default true). */
  header?: boolean;
  /** Wait until this pid no longer exists before calling. */
  waitPidGone?: number;
  /** Wait until this file exists before calling. */
  waitFile?: string;
  /** The request message, base64 (default: empty message). */
  body?: string;
  timeoutMs?: number;
}

// One gRPC call (empty request message) over HTTP/2; prints a RawCallResult as JSON and exits.
const RAW_CALL_SCRIPT = `
import http2 from 'node:http2';
import net from 'node:net';
const cfg = JSON.parse(process.argv[1]);
const finish = (r) => { process.stdout.write(JSON.stringify(r) + '\\n', () => process.exit(0)); };
setTimeout(() => finish({ error: 'timeout' }), cfg.timeoutMs ?? 10000).unref();
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
if (cfg.waitPidGone) {
  for (;;) {
    try { process.kill(cfg.waitPidGone, 0); } catch (e) { if (e.code === 'ESRCH') break; }
    await sleep(5);
  }
}
if (cfg.waitFile) {
  const { existsSync } = await import('node:fs');
  while (!existsSync(cfg.waitFile)) await sleep(5);
}
const socket = cfg.fd !== undefined ? new net.Socket({ fd: cfg.fd, readable: true, writable: true }) : net.connect(cfg.socketPath);
socket.on('error', (e) => finish({ error: e.code || e.message }));
const session = http2.connect('http://localhost', { createConnection: () => socket });
session.on('error', (e) => finish({ error: e.code || e.message }));
const headers = { ':method': 'POST', ':path': cfg.path, 'content-type': 'application/grpc', te: 'trailers' };
if (cfg.header !== false) headers['workload.spiffe.io'] = 'true';
const req = session.request(headers);
let status, details, buf = Buffer.alloc(0);
const take = (h) => { if (h['grpc-status'] !== undefined) { status = Number(h['grpc-status']); details = decodeURIComponent(h['grpc-message'] ?? ''); } };
req.on('response', take);
req.on('trailers', take);
req.on('data', (chunk) => {
  buf = Buffer.concat([buf, chunk]);
  if (buf.length >= 5 && buf.length >= 5 + buf.readUInt32BE(1)) finish({ status: 0, message: buf.subarray(5, 5 + buf.readUInt32BE(1)).toString('base64') });
});
req.on('close', () => finish(status === undefined ? { error: 'no status' } : { status, details }));
req.on('error', (e) => finish({ error: e.code || e.message }));
const body = Buffer.from(cfg.body ?? '', 'base64');
const prefix = Buffer.alloc(5);
prefix.writeUInt32BE(body.length, 1);
req.end(Buffer.concat([prefix, body]));
`;

/** node -e <script> <config>, as `uid` (root when omitted). */
export function spawnRawCall(cfg: RawCallConfig, options: { uid?: number; stdio?: StdioOptions } = {}): ChildProcess {
  const ids = options.uid === undefined ? {} : { uid: options.uid, gid: options.uid };
  return spawn(process.execPath, ['--input-type=module', '-e', RAW_CALL_SCRIPT, JSON.stringify(cfg)], { cwd: '/', stdio: options.stdio ?? ['pipe', 'pipe', 'pipe'], ...ids });
}

/** Collects a child's stdout and resolves with its last JSON line once stdout closes. */
export function resultOf(child: ChildProcess): Promise<RawCallResult> {
  let out = '';
  let err = '';
  child.stdout!.setEncoding('utf8').on('data', (c: string) => (out += c));
  child.stderr?.setEncoding('utf8').on('data', (c: string) => (err += c));
  return new Promise((resolve, reject) => {
    child.stdout!.once('close', () => {
      const line = out.trim().split('\n').pop() ?? '';
      try {
        resolve(JSON.parse(line) as RawCallResult);
      } catch {
        reject(new Error(`client printed no result (stdout ${JSON.stringify(out)}, stderr ${err.slice(-1000)})`));
      }
    });
  });
}

export async function rawCall(cfg: RawCallConfig, uid?: number): Promise<RawCallResult> {
  return resultOf(spawnRawCall(cfg, { uid }));
}

/** SPIFFE IDs in a FetchX509SVID response message (base64). */
export function x509SvidIds(messageBase64: string): string[] {
  const def = loadDefinition('workload.proto')['SpiffeWorkloadAPI'] as unknown as Record<string, { responseDeserialize(b: Buffer): { svids: { spiffe_id: string }[] } }>;
  return def['FetchX509SVID']!.responseDeserialize(Buffer.from(messageBase64, 'base64')).svids.map((s) => s.spiffe_id).sort();
}

// The "connector": connects to the socket, waits until the agent has accepted (and captured its
// credentials), then hands the connected socket to a child (as fd 3) running the raw-call script,
// optionally as another uid, and either exits at once or waits for the child. It prints
// {"connector": pid, "child": pid} first, then the child prints its result on the shared stdout.
const CONNECTOR_SCRIPT = `
import net from 'node:net';
import { spawn } from 'node:child_process';
const [socketPath, callScript, callCfg, childUid, mode, acceptDelay] = process.argv.slice(1);
const socket = net.connect(socketPath, () => {
  setTimeout(() => {
    const ids = childUid === '' ? {} : { uid: Number(childUid), gid: Number(childUid) };
    const cfg = JSON.parse(callCfg);
    if (cfg.waitParent) cfg.waitPidGone = process.pid;
    const child = spawn(process.execPath, ['--input-type=module', '-e', callScript, JSON.stringify(cfg)], { cwd: '/', stdio: ['inherit', 'inherit', 'inherit', socket], ...ids });
    process.stdout.write(JSON.stringify({ connector: process.pid, child: child.pid }) + '\\n');
    socket.destroy();
    if (mode === 'exit') process.exit(0);
    child.on('exit', () => process.exit(0));
  }, Number(acceptDelay));
});
// Never read: the server's HTTP/2 SETTINGS frame must be left in the socket for the child.
socket.pause();
socket.on('error', (e) => { process.stdout.write(JSON.stringify({ error: e.code }) + '\\n'); process.exit(1); });
`;

export interface Connector {
  process: ChildProcess;
  /** pids printed by the connector once it has handed the socket over. */
  pids: Promise<{ connector: number; child: number }>;
  /** The child's call result. */
  result: Promise<RawCallResult>;
}

/**
 * Runs the connector as `uid` (root when undefined). Its child calls `path` over the inherited
 * connection as `childUid`; with `mode: 'exit'` the connector exits right after the hand-over.
 */
export function spawnConnector(opts: {
  socketPath: string;
  path: string;
  uid?: number;
  childUid?: number;
  mode: 'exit' | 'stay';
  /** What the child waits for before calling: the connector's exit, a file to appear, or nothing. */
  childWaits: 'connector-gone' | { file: string } | 'nothing';
}): Connector {
  const ids = opts.uid === undefined ? {} : { uid: opts.uid, gid: opts.uid };
  const proc = spawn(
    process.execPath,
    [
      '--input-type=module', '-e', CONNECTOR_SCRIPT,
      opts.socketPath,
      RAW_CALL_SCRIPT,
      // waitParent: the connector sets waitPidGone to its own pid for the child.
      JSON.stringify({
        fd: 3,
        path: opts.path,
        waitParent: opts.childWaits === 'connector-gone',
        ...(typeof opts.childWaits === 'object' ? { waitFile: opts.childWaits.file } : {}),
      }),
      opts.childUid === undefined ? '' : String(opts.childUid),
      opts.mode,
      '300',
    ],
    { cwd: '/', stdio: ['pipe', 'pipe', 'pipe'], ...ids },
  );
  let out = '';
  let err = '';
  proc.stdout!.setEncoding('utf8').on('data', (c: string) => (out += c));
  proc.stderr!.setEncoding('utf8').on('data', (c: string) => (err += c));
  const lines = () => out.trim().split('\n').filter(Boolean).map((l) => JSON.parse(l) as Record<string, unknown>);
  const pids = new Promise<{ connector: number; child: number }>((resolve, reject) => {
    const check = () => {
      const first = out.includes('\n') ? lines()[0] : undefined;
      if (first && typeof first['connector'] === 'number') resolve(first as { connector: number; child: number });
      else if (first) reject(new Error(`connector failed: ${JSON.stringify(first)}`));
    };
    proc.stdout!.on('data', check);
    proc.stdout!.once('close', () => reject(new Error(`connector printed no pids: ${out} ${err.slice(-1000)}`)));
  });
  const result = new Promise<RawCallResult>((resolve, reject) => {
    proc.stdout!.once('close', () => {
      const last = lines().at(-1);
      if (last && !('connector' in last)) resolve(last as RawCallResult);
      else reject(new Error(`no call result (stdout ${out}, stderr ${err.slice(-1000)})`));
    });
  });
  pids.catch(() => undefined);
  result.catch(() => undefined);
  return { process: proc, pids, result };
}

/**
 * Starts `command` so that it gets exactly `pid` (which must be free), by setting the kernel's
 * ns_last_pid to pid - 1 just before the fork; retries when another process wins the race.
 * Returns undefined when the kernel does not let us (no CAP_SYS_ADMIN in the pid namespace).
 */
export async function spawnWithPid(pid: number, command: string, args: string[], attempts = 50): Promise<ChildProcess | undefined> {
  for (let i = 0; i < attempts; i++) {
    try {
      writeFileSync('/proc/sys/kernel/ns_last_pid', String(pid - 1));
    } catch {
      return undefined;
    }
    const child = spawn(command, args, { stdio: 'ignore' });
    if (child.pid === pid) return child;
    child.kill('SIGKILL');
    await new Promise((r) => child.once('exit', r));
  }
  return undefined;
}
