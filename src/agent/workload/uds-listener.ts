// The Workload API's Unix socket listener. grpc-js cannot tell UDS callers apart (getPeer() is
// "unknown"), so we own the net.Server: at accept we read the caller's kernel credentials
// (SO_PEERCRED, plus a pidfd where the kernel has SO_PEERPIDFD), give the connection a token that
// grpc-js then reports as `call.getPeer()`, and hand the socket to the gRPC server through a
// connection injector. Handlers map `call.getPeer()` back to the PeerProcess with `peerOf(call)`.
// The token comes from server-side kernel state only, never from anything the client sends.
//
// Why not server.bindAsync('unix://…'): its listen() uses Node's default backlog of 511, and a burst
// of AF_UNIX connects beyond the backlog fails at once with EAGAIN (ENGINEERING-NOTES §1.7, §1.8).
import * as grpc from '@grpc/grpc-js';
import { once } from 'node:events';
import { chmod, lstat, mkdir, unlink } from 'node:fs/promises';
import * as net from 'node:net';
import { dirname, isAbsolute, resolve } from 'node:path';
import { isMainThread } from 'node:worker_threads';
import { EmblemError, errorMessage } from '../../common/errors.js';
import { MALFORMED_REQUEST_INTERCEPTORS } from '../../common/grpc/malformed-requests.js';
import { silentLogger, type Logger } from '../../common/logger.js';
import { capturePeerProcess, releasePeerProcess, type PeerProcess } from './peer-process.js';
import { peerCredAddon } from './peercred.js';

export interface WorkloadSocketOptions {
  /** Socket file mode, set after listen. Default 0o777: any local process may ask who it is. */
  mode?: number;
  /** listen() backlog; the kernel caps it at net.core.somaxconn. Default 4096. */
  backlog?: number;
  /** Connections beyond this many are closed at once. Default 10000. */
  maxConnections?: number;
  logger?: Logger;
}

export interface WorkloadSocket {
  readonly path: string;
  /** The caller of a handler's call, or undefined if the connection is unknown (or already closed). */
  peerOf(call: { getPeer(): string }): PeerProcess | undefined;
  connectionCount(): number;
  /** Stops accepting, ends every open connection at once and removes the socket file. */
  close(): Promise<void>;
}

/**
 * gRPC server options we recommend for the Workload API server (the caller creates the server):
 * bounded streams per connection, small requests, and bounded HTTP/2 session memory
 * (grpc-js leaves it unlimited unless set). Keepalive is unnecessary on a Unix socket: the kernel
 * closes the connection when the client process exits.
 */
export const RECOMMENDED_WORKLOAD_SERVER_OPTIONS: grpc.ServerOptions = {
  'grpc.max_concurrent_streams': 100,
  'grpc.max_receive_message_length': 256 * 1024,
  'grpc-node.max_session_memory': 10,
  // Undecodable requests get INVALID_ARGUMENT rather than INTERNAL.
  interceptors: MALFORMED_REQUEST_INTERCEPTORS,
};

const TOKEN_PREFIX = 'uds-peer:';
const PROBE_TIMEOUT_MS = 2000;
const LIMIT_WARNING_INTERVAL_MS = 10_000;

export async function listenWorkloadSocket(
  server: grpc.Server,
  socketPath: string,
  opts: WorkloadSocketOptions = {},
): Promise<WorkloadSocket> {
  if (!isAbsolute(socketPath)) throw new EmblemError('invalid_argument', `workload socket path ${JSON.stringify(socketPath)} must be absolute`);
  const path = resolve(socketPath);
  const mode = opts.mode ?? 0o777;
  const backlog = opts.backlog ?? 4096;
  const maxConnections = opts.maxConnections ?? 10_000;
  if (!Number.isInteger(mode) || mode < 0 || mode > 0o777) throw new EmblemError('invalid_argument', `socket mode ${mode} must be within 0..0o777`);
  for (const [name, value] of [['backlog', backlog], ['maxConnections', maxConnections]] as const) {
    if (!Number.isInteger(value) || value < 1) throw new EmblemError('invalid_argument', `${name} must be a positive integer`);
  }
  const logger = opts.logger ?? silentLogger();
  peerCredAddon(); // fail now, with "run npm run build:native", rather than on every connection

  await prepareSocketPath(path);

  const connections = new Map<string, { peer: PeerProcess; socket: net.Socket }>();
  const injector = server.createConnectionInjector(grpc.ServerCredentials.createInsecure());
  let counter = 0;
  let lastLimitWarning = 0;

  const onConnection = (socket: net.Socket): void => {
    if (connections.size >= maxConnections) {
      socket.destroy();
      const now = Date.now();
      if (now - lastLimitWarning > LIMIT_WARNING_INTERVAL_MS) {
        lastLimitWarning = now;
        logger.warn({ path, maxConnections }, 'workload socket connection limit reached; closing new connections');
      }
      return;
    }
    const fd = (socket as unknown as { _handle?: { fd?: unknown } })._handle?.fd;
    if (typeof fd !== 'number' || fd < 0) {
      logger.error({ path }, 'accepted workload connection has no file descriptor; closing it');
      socket.destroy();
      return;
    }
    const token = `${TOKEN_PREFIX}${++counter}`;
    let peer: PeerProcess;
    try {
      peer = capturePeerProcess(fd, token);
    } catch (err) {
      // ENOENT/ESRCH: the caller exited right after connect(), which is harmless.
      const code = (err as NodeJS.ErrnoException).code;
      const level = code === 'ENOENT' || code === 'ESRCH' ? 'debug' : 'warn';
      logger[level]({ path, err: errorMessage(err) }, 'could not identify workload connection; closing it');
      socket.destroy();
      return;
    }
    // Shadows net.Socket's remoteAddress getter on this instance; grpc-js's getPeer() reads it
    // through the HTTP/2 session's socket proxy.
    Object.defineProperty(socket, 'remoteAddress', { value: token });
    connections.set(token, { peer, socket });
    socket.once('close', () => {
      connections.delete(token);
      try {
        releasePeerProcess(peer);
      } catch (err) {
        logger.error({ path, err: errorMessage(err) }, 'closing a workload pidfd failed');
      }
    });
    injector.injectConnection(socket);
  };

  const netServer = net.createServer(onConnection);
  // accept() errors (EMFILE, ...) must not crash the agent.
  const onServerError = (err: Error): void => logger.error({ path, err: errorMessage(err) }, 'workload socket accept failed');
  try {
    await listen(netServer, path, backlog);
  } catch (err) {
    injector.destroy();
    throw err;
  }
  netServer.on('error', onServerError);
  try {
    await chmod(path, mode);
  } catch (err) {
    netServer.close();
    injector.destroy();
    throw err;
  }
  logger.info({ path, mode: mode.toString(8), backlog }, 'workload socket listening');

  let closing: Promise<void> | undefined;
  return {
    path,
    peerOf(call) {
      return connections.get(call.getPeer())?.peer;
    },
    connectionCount: () => connections.size,
    close() {
      closing ??= (async () => {
        const stopped = new Promise<void>((resolve) => netServer.close(() => resolve()));
        const sockets = [...connections.values()].map(({ socket }) => socket);
        const socketsClosed = sockets.filter((s) => !s.closed).map((s) => once(s, 'close'));
        for (const socket of sockets) socket.destroy();
        injector.destroy();
        await Promise.all([stopped, ...socketsClosed]);
      })();
      return closing;
    },
  };
}

/**
 * Creates the parent directory if needed, and removes a stale socket file left by a crashed agent.
 * A socket file is removed only if nothing answers a connect probe; anything that is not a socket is
 * never removed.
 */
async function prepareSocketPath(path: string): Promise<void> {
  // mkdir's mode is filtered by the umask; set 0755 explicitly on every directory it created.
  const firstCreated = await mkdir(dirname(path), { recursive: true, mode: 0o755 });
  if (firstCreated !== undefined) {
    for (let dir = dirname(path); dir.length >= firstCreated.length; dir = dirname(dir)) await chmod(dir, 0o755);
  }
  let isSocket: boolean;
  try {
    isSocket = (await lstat(path)).isSocket();
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
    throw err;
  }
  if (!isSocket) throw new EmblemError('failed_precondition', `${path} exists and is not a socket; refusing to replace it`);
  if (await someoneIsListening(path)) throw new EmblemError('failed_precondition', `another agent is serving on ${path}`);
  await unlink(path).catch((err: NodeJS.ErrnoException) => {
    if (err.code !== 'ENOENT') throw err;
  });
}

/** True unless connecting is refused (or the file vanished). When in doubt, assume it is live. */
function someoneIsListening(path: string): Promise<boolean> {
  return new Promise((resolve) => {
    const probe = net.connect(path);
    const done = (live: boolean): void => {
      clearTimeout(timer);
      probe.destroy();
      resolve(live);
    };
    const timer = setTimeout(() => done(true), PROBE_TIMEOUT_MS);
    probe.once('connect', () => done(true));
    probe.once('error', (err: NodeJS.ErrnoException) => done(err.code !== 'ECONNREFUSED' && err.code !== 'ENOENT'));
  });
}

/**
 * listen() under umask 0o177, so the socket file is never more open than the mode chmod then sets.
 * The bind happens synchronously inside listen(), so the umask change covers exactly that call
 * (worker threads cannot change the umask; there the socket starts with the process umask).
 */
function listen(netServer: net.Server, path: string, backlog: number): Promise<void> {
  return new Promise((resolve, reject) => {
    netServer.once('error', reject);
    const previousUmask = isMainThread ? process.umask(0o177) : undefined;
    try {
      netServer.listen({ path, backlog }, () => {
        netServer.off('error', reject);
        resolve();
      });
    } finally {
      if (previousUmask !== undefined) process.umask(previousUmask);
    }
  });
}
