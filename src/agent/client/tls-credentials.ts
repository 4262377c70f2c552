// TLS for the agent's connections to the server. The server is authenticated by its X.509-SVID:
// OpenSSL verifies the chain against the agent's trust anchors, then we require the URI SAN to be
// exactly spiffe://<td>/emblem/server (the host name is not checked; servers are addressed by IP
// or any DNS name). The agent's own SVID is the client certificate on every RPC but AttestAgent.
import { credentials, type ChannelCredentials } from '@grpc/grpc-js';
import type { KeyObject } from 'node:crypto';
import { isIP } from 'node:net';
import { connect, createSecureContext, type PeerCertificate } from 'node:tls';
import { EmblemError, unavailable } from '../../common/errors.js';
import { certificatesToPem } from '../../common/pem.js';
import { parseHostPort } from '../../common/config-file.js';
import { serverId } from '../../common/spiffe-id.js';
import { readCertificate } from '../../common/x509/cert-info.js';
import { importPkcs8Der } from '../../common/x509/keys.js';

export interface ClientTlsIdentity {
  /** DER, leaf first. */
  chain: Buffer[];
  privateKey: KeyObject | Buffer;
}

export type ServerTrust = { kind: 'anchors'; anchors: Buffer[] } | { kind: 'insecure' };

/** undefined when the certificate is the server's SVID of `trustDomain`, else the reason it is not. */
export function serverCertificateMismatch(trustDomain: string, certDer: Buffer | undefined): string | undefined {
  if (!certDer || certDer.length === 0) return 'the server presented no certificate';
  let uris: string[];
  try {
    uris = readCertificate(certDer).uris;
  } catch (err) {
    return `the server certificate cannot be parsed: ${(err as Error).message}`;
  }
  const expected = serverId(trustDomain);
  if (uris.length !== 1 || uris[0] !== expected) {
    return `the server presented ${uris.length === 0 ? 'no SPIFFE ID' : uris.join(', ')}, expected ${expected}`;
  }
  return undefined;
}

/** Node's checkServerIdentity replacement: ignores the host name, requires the server's SPIFFE ID. */
export function checkServerIdentityFor(trustDomain: string): (hostname: string, cert: PeerCertificate) => Error | undefined {
  return (_hostname, cert) => {
    const reason = serverCertificateMismatch(trustDomain, cert?.raw);
    return reason === undefined ? undefined : new Error(`server identity check failed: ${reason}`);
  };
}

function keyPem(key: KeyObject | Buffer): string {
  const obj = Buffer.isBuffer(key) ? importPkcs8Der(key) : key;
  return obj.export({ type: 'pkcs8', format: 'pem' }) as string;
}

/** Channel credentials for the server: verify per `trust`, present `client` if given. */
export function serverChannelCredentials(trustDomain: string, trust: ServerTrust, client?: ClientTlsIdentity): ChannelCredentials {
  if (trust.kind === 'anchors' && trust.anchors.length === 0) {
    throw new EmblemError('failed_precondition', 'no trust anchors to verify the server with');
  }
  const context = createSecureContext({
    minVersion: 'TLSv1.2',
    ...(trust.kind === 'anchors' ? { ca: certificatesToPem(trust.anchors) } : {}),
    ...(client ? { cert: certificatesToPem(client.chain), key: keyPem(client.privateKey) } : {}),
  });
  return credentials.createFromSecureContext(context, {
    checkServerIdentity: checkServerIdentityFor(trustDomain),
    rejectUnauthorized: trust.kind === 'anchors',
  });
}

/** Options that stop Node warning about an IP address as TLS server name (SNI must be a DNS name). */
export function serverNameOptions(serverAddress: string): Record<string, string> {
  const { host } = parseHostPort(serverAddress, 'server address');
  return isIP(host) ? { 'grpc.ssl_target_name_override': 'emblem-server' } : {};
}

/**
 * --insecure-bootstrap: connects once without verifying the chain and checks the server's URI SAN,
 * so a misaddressed agent does not send its join token to the wrong service. Returns the DER leaf.
 */
export function probeServerIdentity(serverAddress: string, trustDomain: string, timeoutMs = 10_000): Promise<Buffer> {
  const { host, port } = parseHostPort(serverAddress, 'server address');
  return new Promise((resolve, reject) => {
    const socket = connect({
      host,
      port,
      ...(isIP(host) ? {} : { servername: host }),
      ALPNProtocols: ['h2'],
      rejectUnauthorized: false,
    });
    const timer = setTimeout(() => {
      socket.destroy();
      reject(unavailable(`server ${serverAddress} did not complete a TLS handshake within ${timeoutMs} ms`));
    }, timeoutMs);
    socket.once('secureConnect', () => {
      clearTimeout(timer);
      const der = socket.getPeerCertificate()?.raw;
      socket.destroy();
      const reason = serverCertificateMismatch(trustDomain, der);
      if (reason) reject(new EmblemError('permission_denied', `insecure bootstrap: ${reason}`));
      else resolve(Buffer.from(der!));
    });
    socket.once('error', (err) => {
      clearTimeout(timer);
      reject(unavailable(`cannot reach server ${serverAddress}: ${err.message}`, err));
    });
  });
}
