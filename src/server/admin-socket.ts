// The admin API's local Unix socket. Its directory is created with mode 0700, so only the server's
// user (and root) can connect: filesystem access is the authorisation for local admin calls.
import { ServerCredentials, type Server } from '@grpc/grpc-js';
import { chmodSync, lstatSync, mkdirSync, unlinkSync } from 'node:fs';
import { createConnection } from 'node:net';
import { dirname } from 'node:path';
import { failedPrecondition } from '../common/errors.js';

function probe(path: string): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = createConnection(path);
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });
}

/** Binds `server` on the socket path; refuses to steal a socket a live server answers on. */
export async function bindAdminSocket(server: Server, path: string): Promise<void> {
  const dir = dirname(path);
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  chmodSync(dir, 0o700);
  let exists = false;
  try {
    exists = lstatSync(path).isSocket();
  } catch {
    exists = false;
  }
  if (exists) {
    if (await probe(path)) throw failedPrecondition(`another emblem-server is serving on ${path}`);
    unlinkSync(path);
  }
  await new Promise<void>((resolve, reject) =>
    server.bindAsync(`unix://${path}`, ServerCredentials.createInsecure(), (err) => (err ? reject(err) : resolve())),
  );
  chmodSync(path, 0o600);
}
