// Tools for attacking a test server over its TLS port: a TCP forwarder that makes connections come
// from another loopback source address, a hand-driven AttestAgent stream (to replay challenge
// responses), one-shot join-token attempts, and an Admin client over mutual TLS.
import type { ClientDuplexStream } from '@grpc/grpc-js';
import { Metadata, type Client } from '@grpc/grpc-js';
import type { KeyObject } from 'node:crypto';
import * as net from 'node:net';
import { attestAgent } from '../../../src/agent/attestation/node-attestation.js';
import type { AttestAgentRequestMsg, AttestAgentResponseMsg } from '../../../src/agent/client/messages.js';
import { ServerClient } from '../../../src/agent/client/server-client.js';
import { serverChannelCredentials, serverNameOptions } from '../../../src/agent/client/tls-credentials.js';
import { isEmblemError, type ErrorCode } from '../../../src/common/errors.js';
import { adminService } from '../../../src/common/grpc/proto.js';
import { fromGrpcError } from '../../../src/common/grpc/status.js';
import { createCsr } from '../../../src/common/x509/csr.js';
import { generateKeyPair } from '../../../src/common/x509/keys.js';
import type { ServerTarget } from '../../helpers/server-harness.js';

export interface Forwarder {
  /** "127.0.0.1:<port>": connect here to reach the server from `sourceAddress`. */
  address: string;
  close(): Promise<void>;
}

/** Listens on 127.0.0.1 and forwards each connection to `target` from the local address `sourceAddress`. */
export async function forwardFrom(sourceAddress: string, target: string): Promise<Forwarder> {
  const [host, port] = [target.slice(0, target.lastIndexOf(':')), Number(target.slice(target.lastIndexOf(':') + 1))];
  const sockets = new Set<net.Socket>();
  const track = (s: net.Socket) => {
    sockets.add(s);
    s.once('close', () => sockets.delete(s));
    s.on('error', () => s.destroy());
  };
  const server = net.createServer((inbound) => {
    const outbound = net.connect({ host, port, localAddress: sourceAddress });
    track(inbound);
    track(outbound);
    inbound.pipe(outbound).pipe(inbound);
    inbound.once('close', () => outbound.destroy());
    outbound.once('close', () => inbound.destroy());
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port: listening } = server.address() as net.AddressInfo;
  return {
    address: `127.0.0.1:${listening}`,
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}

/** One join-token attestation at `address`: 'ok' or the refusal's error code. */
export async function tryJoinToken(target: Pick<ServerTarget, 'trustDomain'>, address: string, anchors: Buffer[], token: string): Promise<ErrorCode | 'ok'> {
  const client = new ServerClient({ serverAddress: address, trustDomain: target.trustDomain, bootstrapAnchors: anchors });
  try {
    await attestAgent(client, { joinToken: token }, createCsr(generateKeyPair()), { timeoutMs: 10_000 });
    return 'ok';
  } catch (err) {
    if (isEmblemError(err)) return err.code;
    throw err;
  } finally {
    client.close();
  }
}

export interface ManualAttest {
  /** Resolves with the next message the server sends (challenge or result). */
  next(): Promise<AttestAgentResponseMsg>;
  write(msg: AttestAgentRequestMsg): void;
  /** Resolves with the error the stream ended with, or undefined after a clean end. */
  ended: Promise<Error | undefined>;
  cancel(): void;
}

/** Drives AttestAgent by hand on a fresh client (no client certificate). */
export async function manualAttest(target: Pick<ServerTarget, 'trustDomain' | 'address'>, anchors: Buffer[]): Promise<ManualAttest & { close(): void }> {
  const client = new ServerClient({ serverAddress: target.address, trustDomain: target.trustDomain, bootstrapAnchors: anchors });
  const stream = (await client.openAttestStream()) as ClientDuplexStream<AttestAgentRequestMsg, AttestAgentResponseMsg>;
  const queue: AttestAgentResponseMsg[] = [];
  const waiters: ((m: AttestAgentResponseMsg) => void)[] = [];
  stream.on('data', (m: AttestAgentResponseMsg) => {
    const w = waiters.shift();
    if (w) w(m);
    else queue.push(m);
  });
  const ended = new Promise<Error | undefined>((resolve) => {
    stream.on('error', (err) => resolve(fromGrpcError(err)));
    stream.on('end', () => setImmediate(() => resolve(undefined)));
  });
  return {
    next: () => {
      const m = queue.shift();
      if (m) return Promise.resolve(m);
      return Promise.race([
        new Promise<AttestAgentResponseMsg>((resolve) => waiters.push(resolve)),
        ended.then((err) => Promise.reject(err ?? new Error('stream ended without a message'))),
      ]);
    },
    write: (msg) => stream.write(msg),
    ended,
    cancel: () => stream.cancel(),
    close: () => client.close(),
  };
}

export interface TlsAdminClient {
  call<Res = Record<string, unknown>>(method: string, request?: object): Promise<Res>;
  close(): void;
}

/** The Admin API on the server's TLS port, presenting `identity` (or no certificate). */
export function adminOverTls(target: Pick<ServerTarget, 'trustDomain' | 'address'>, anchors: Buffer[], identity?: { chain: Buffer[]; privateKey: KeyObject }): TlsAdminClient {
  const Ctor = adminService();
  const client = new Ctor(target.address, serverChannelCredentials(target.trustDomain, { kind: 'anchors', anchors }, identity), serverNameOptions(target.address)) as Client &
    Record<string, (...args: unknown[]) => unknown>;
  return {
    call: (method, request = {}) =>
      new Promise((resolve, reject) => {
        const fn = client[method]!;
        fn.call(client, request, new Metadata(), { deadline: Date.now() + 10_000 }, (err: unknown, res: unknown) => (err ? reject(fromGrpcError(err)) : resolve(res as never)));
      }),
    close: () => client.close(),
  };
}
