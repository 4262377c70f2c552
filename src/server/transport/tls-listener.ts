// The server's TCP listener for the agent-facing API. We own the tls.Server (rather than letting
// grpc-js bind) for three reasons: the server SVID rotates and setSecureContext swaps it without a
// restart; the client certificate chain of every connection is available to handlers (grpc-js's
// auth context does not expose the chain); and a banned agent's connections can be cut at once.
// Each accepted TLS socket gets an opaque token as its remoteAddress, which grpc-js reports through
// call.getPeer(), and is then injected into the grpc.Server (same technique as the agent's Unix
// socket, ENGINEERING-NOTES §1.3).
import type { Server, ServerCredentials as GrpcServerCredentials } from '@grpc/grpc-js';
import { ServerCredentials } from '@grpc/grpc-js';
import type { KeyObject } from 'node:crypto';
import { createServer, type TLSSocket, type Server as TlsServer } from 'node:tls';
import type { Logger } from '../../common/logger.js';
import { certificatesToPem } from '../../common/pem.js';

export interface TlsIdentity {
  /** DER certificates, leaf first. */
  chain: Buffer[];
  privateKey: KeyObject;
}

export interface TlsPeer {
  token: string;
  /** DER certificates the client presented, leaf first; empty when it presented none. */
  certChain: Buffer[];
  remoteAddress: string;
  socket: TLSSocket;
}

export interface ServerTransport {
  readonly port: number;
  peerOf(call: { getPeer(): string }): TlsPeer | undefined;
  setIdentity(identity: TlsIdentity): void;
  /** Destroys every connection whose peer matches (e.g. all connections of a banned agent). */
  dropConnections(match: (peer: TlsPeer) => boolean): number;
  connectionCount(): number;
  /** True while the connection with this peer token is open. */
  isOpen(token: string): boolean;
  close(): Promise<void>;
}

const TOKEN_PREFIX = 'tlspeer-';

function peerChain(socket: TLSSocket): Buffer[] {
  const chain: Buffer[] = [];
  let cert = socket.getPeerCertificate(true);
  const seen = new Set<string>();
  while (cert && cert.raw && !seen.has(cert.fingerprint256)) {
    seen.add(cert.fingerprint256);
    chain.push(Buffer.from(cert.raw));
    cert = cert.issuerCertificate;
  }
  return chain;
}

function secureContextOptions(identity: TlsIdentity) {
  return {
    cert: certificatesToPem(identity.chain),
    key: identity.privateKey.export({ type: 'pkcs8', format: 'pem' }) as string,
  };
}

export async function listenTls(
  server: Server,
  options: { host: string; port: number; identity: TlsIdentity; logger: Logger; credentials?: GrpcServerCredentials },
): Promise<ServerTransport> {
  const injector = server.createConnectionInjector(options.credentials ?? ServerCredentials.createInsecure());
  const peers = new Map<string, TlsPeer>();
  let counter = 0;

  const tlsServer: TlsServer = createServer({
    ...secureContextOptions(options.identity),
    ALPNProtocols: ['h2'],
    minVersion: 'TLSv1.2',
    // The client certificate is verified by the API layer against the trust bundle (and the agent
    // record), since attestation itself happens before the agent has a certificate.
    requestCert: true,
    rejectUnauthorized: false,
  });

  tlsServer.on('secureConnection', (socket: TLSSocket) => {
    const token = `${TOKEN_PREFIX}${++counter}`;
    const remoteAddress = socket.remoteAddress ?? '';
    const peer: TlsPeer = { token, certChain: peerChain(socket), remoteAddress, socket };
    Object.defineProperty(socket, 'remoteAddress', { value: token, configurable: true });
    peers.set(token, peer);
    socket.once('close', () => peers.delete(token));
    injector.injectConnection(socket);
  });
  tlsServer.on('tlsClientError', (err) => options.logger.debug({ err: err.message }, 'TLS handshake failed'));

  await new Promise<void>((resolve, reject) => {
    tlsServer.once('error', reject);
    tlsServer.listen(options.port, options.host, 1024, () => {
      tlsServer.off('error', reject);
      resolve();
    });
  });
  const address = tlsServer.address();
  const port = typeof address === 'object' && address ? address.port : options.port;

  return {
    port,
    peerOf(call) {
      const peer = call.getPeer();
      const colon = peer.lastIndexOf(':');
      return peers.get(colon > 0 ? peer.slice(0, colon) : peer);
    },
    setIdentity(identity) {
      tlsServer.setSecureContext(secureContextOptions(identity));
    },
    dropConnections(match) {
      let n = 0;
      for (const peer of peers.values()) {
        if (match(peer)) {
          peer.socket.destroy();
          n++;
        }
      }
      return n;
    },
    connectionCount: () => peers.size,
    isOpen: (token) => peers.has(token),
    async close() {
      await new Promise<void>((resolve) => {
        tlsServer.close(() => resolve());
        for (const peer of peers.values()) peer.socket.destroy();
      });
      injector.destroy();
    },
  };
}
