// Workload API endpoint addresses: the SPIFFE_ENDPOINT_SOCKET URI (SPIFFE_Workload_Endpoint.md §4;
// our notes: SPIFFE.md §5.1).
//   unix:///abs/path (or unix:/abs/path): no authority, absolute path, nothing else;
//   tcp://<ip>:<port>: an IP address host and a port, nothing else.
// Stricter than go-spiffe on one point, as the spec says: `unix://host/path` is rejected.
import { isIP } from 'node:net';
import { invalidArgument } from './errors.js';

export const SPIFFE_ENDPOINT_SOCKET_ENV = 'SPIFFE_ENDPOINT_SOCKET';
export const DEFAULT_WORKLOAD_SOCKET = '/tmp/emblem-agent/public/api.sock';

export type EndpointAddress = { kind: 'unix'; path: string } | { kind: 'tcp'; host: string; port: number };

// RFC 3986 Appendix B: scheme, authority, path, query, fragment (the "//", "?", "#" groups tell
// an absent component from an empty one).
const URI_RE = /^(?:([^:/?#]+):)?(\/\/([^/?#]*))?([^?#]*)(\?[^#]*)?(#.*)?$/;

function fail(uri: string, reason: string): never {
  throw invalidArgument(`workload endpoint address ${JSON.stringify(uri)} ${reason}`);
}

function parseUnix(uri: string, authority: string | undefined, path: string): EndpointAddress {
  if (authority !== undefined && authority.includes('@')) fail(uri, 'must not have userinfo');
  if (authority !== undefined && authority !== '') fail(uri, 'must not have an authority (use unix:///absolute/path)');
  if (path === '') fail(uri, 'has no socket path');
  if (!path.startsWith('/')) fail(uri, 'must have an absolute socket path (use unix:///absolute/path)');
  let decoded: string;
  try {
    decoded = decodeURIComponent(path);
  } catch {
    fail(uri, 'has a malformed percent-encoding in its path');
  }
  if (decoded.includes('\0')) fail(uri, 'has a NUL byte in its path');
  return { kind: 'unix', path: decoded };
}

function parseTcp(uri: string, authority: string | undefined, path: string): EndpointAddress {
  if (authority === undefined) fail(uri, 'must have the form tcp://<ip>:<port>');
  if (authority.includes('@')) fail(uri, 'must not have userinfo');
  if (path !== '') fail(uri, 'must not have a path');
  const m = /^(\[[^\]]*\]|[^:]*)(?::(\d*))?$/.exec(authority);
  if (m === null) fail(uri, 'must have the form tcp://<ip>:<port>');
  const rawHost = m[1] as string;
  const host = rawHost.startsWith('[') ? rawHost.slice(1, -1) : rawHost;
  if (host === '') fail(uri, 'has no host');
  const family = isIP(host);
  if (family === 0 || (family === 6) !== rawHost.startsWith('[')) fail(uri, 'must have an IP address as host');
  if (m[2] === undefined || m[2] === '') fail(uri, 'has no port');
  const port = Number(m[2]);
  if (port < 1 || port > 65535) fail(uri, 'has a port outside 1-65535');
  return { kind: 'tcp', host, port };
}

/** Parses a Workload API endpoint URI (unix or tcp) with the spec's rules. */
export function parseEndpointAddress(uri: string): EndpointAddress {
  if (typeof uri !== 'string' || uri.length === 0) throw invalidArgument('workload endpoint address is empty');
  const m = URI_RE.exec(uri);
  if (m === null || m[1] === undefined) fail(uri, 'must have a tcp or unix scheme');
  const scheme = m[1].toLowerCase();
  const authority = m[3];
  const path = m[4] ?? '';
  if (m[5] !== undefined) fail(uri, 'must not have a query');
  if (m[6] !== undefined) fail(uri, 'must not have a fragment');
  if (scheme === 'unix') return parseUnix(uri, authority, path);
  if (scheme === 'tcp') return parseTcp(uri, authority, path);
  return fail(uri, 'must have a tcp or unix scheme');
}

/** A gRPC target for an address: `unix:///path`, `1.2.3.4:80` or `[::1]:80`. */
export function grpcTarget(addr: EndpointAddress): string {
  if (addr.kind === 'unix') return `unix://${addr.path}`;
  return addr.host.includes(':') ? `[${addr.host}]:${addr.port}` : `${addr.host}:${addr.port}`;
}

/**
 * The endpoint to use: the explicit flag, else SPIFFE_ENDPOINT_SOCKET, else the default socket.
 * The flag may be a bare absolute path or a URI; the environment variable must be a URI, as the
 * spec defines it (go-spiffe refuses a bare path there too). Empty values count as unset.
 */
export function resolveWorkloadEndpoint(flag?: string, env: NodeJS.ProcessEnv = process.env): EndpointAddress {
  if (flag !== undefined && flag !== '') {
    if (!flag.startsWith('/')) return parseEndpointAddress(flag);
    if (flag.includes('\0')) fail(flag, 'has a NUL byte in its path');
    return { kind: 'unix', path: flag };
  }
  const fromEnv = env[SPIFFE_ENDPOINT_SOCKET_ENV];
  if (fromEnv !== undefined && fromEnv !== '') {
    try {
      return parseEndpointAddress(fromEnv);
    } catch (err) {
      throw invalidArgument(`${SPIFFE_ENDPOINT_SOCKET_ENV}: ${(err as Error).message}`, err);
    }
  }
  return { kind: 'unix', path: DEFAULT_WORKLOAD_SOCKET };
}

/** Like resolveWorkloadEndpoint, as a string: the socket path for unix, `host:port` for tcp. */
export function resolveWorkloadSocket(flag?: string, env: NodeJS.ProcessEnv = process.env): string {
  const addr = resolveWorkloadEndpoint(flag, env);
  return addr.kind === 'unix' ? addr.path : grpcTarget(addr);
}
